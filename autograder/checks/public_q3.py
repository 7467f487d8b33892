"""Public checks of Questions 3.1a (`decoder.py`) and 3.1b (`decoder_with_attention.py`):
shapes, use of the state, dropout, attention weights, vectorization (the tensor operations) and gradients.

They need neither the reference solution nor data, so they also ship with the students'
repository as its public tests (`make release`), giving the same messages as the autograder.
"""

import torch

from autograder.checks import check, fails
from autograder.child.compare import (DID_NOT_RUN, CheckFailure, expect_same_jacobians, expect_same_operations, expect_tensor,
                                      expect_varies, fail)

# (batch, num_locations, encoder_dim, decoder_dim, embed_dim, attention_dim, vocab_size)
SIZES = [(1, 256, 1280, 256, 100, 100, 190), (5, 9, 48, 16, 12, 7, 30), (8, 196, 512, 64, 20, 11, 50)]


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def sizes_of(vocab, embed, decoder_dim, encoder_dim, attention_dim):
    return dict(vocab=vocab, embed=embed, decoder_dim=decoder_dim, encoder_dim=encoder_dim, attention_dim=attention_dim)


def step_inputs(batch, locations, encoder_dim, decoder_dim, vocab, seed=0, dtype=torch.float32):
    g = seeded(seed)
    return (torch.randint(0, vocab, (batch,), generator=g),
            torch.randn(batch, decoder_dim, generator=g, dtype=dtype),
            torch.randn(batch, decoder_dim, generator=g, dtype=dtype),
            torch.randn(batch, locations, encoder_dim, generator=g, dtype=dtype))


def check_step(what, outputs, batch, decoder_dim, vocab, dtype=None):
    """(scores, h, c) checked for shape (and for `dtype`: only the shape tests judge it)."""
    if not isinstance(outputs, tuple) or len(outputs) != 3:
        fail(f"{what} returned {type(outputs).__name__}{f' of length {len(outputs)}' if isinstance(outputs, (tuple, list)) else ''}; "
             f"expected a tuple (scores, h, c)")
    scores, h, c = outputs
    expect_tensor(f"{what}: scores", scores, (batch, vocab), dtype)
    expect_tensor(f"{what}: h", h, (batch, decoder_dim), dtype)
    expect_tensor(f"{what}: c", c, (batch, decoder_dim), dtype)
    return scores, h, c


ATTENTION_REPLACED = ("(your Attention.forward has a problem counted in its own tests, so the step was given a "
                      "fixed context, the mean of the encoder features, in place of its attention here)")


def attention_problem(sub):
    """None when the student's Attention passes its public tests, else their message: the decoder's
    tests then give the step a fixed context instead, so one mistake is charged once."""
    try:
        attention_shape(sub)
        attention_weights(sub)
        return None
    except CheckFailure as error:
        return str(error)


def fixed_context(inputs):
    """A context for the step's `inputs` (word, h, c, encoder_out) that needs no attention: the mean
    of the encoder features over the locations, (batch, encoder_dim)."""
    return inputs[3].mean(dim=1)


def noting(note, check):
    """Run `check()`; a failure's message gets `note` appended, unless the step did not run at all (a stub,
    a file that cannot run: what replaced the attention is no matter then)."""
    try:
        return check()
    except CheckFailure as error:
        if error.reason in DID_NOT_RUN:
            raise
        raise CheckFailure(f"{error} {note}".strip(), error.reason) from None


def _shapes(sub, use_attention):
    cases = [(sizes_of(vocab, embed, decoder_dim, encoder_dim, attention_dim),
              step_inputs(batch, locations, encoder_dim, decoder_dim, vocab))
             for batch, locations, encoder_dim, decoder_dim, embed, attention_dim, vocab in SIZES]
    replaced = use_attention and attention_problem(sub) is not None
    note = ATTENTION_REPLACED if replaced else ""
    outputs = noting(note, lambda: sub.run("decoder.steps", use_attention=use_attention, cases=cases,
                                           contexts=[fixed_context(inputs) for _, inputs in cases] if replaced else None))
    noting(note, lambda: _check_shapes(outputs))
    return note or None


def _check_shapes(outputs):
    for (batch, locations, encoder_dim, decoder_dim, _, _, vocab), output in zip(SIZES, outputs):
        what = (f"forward with batch {batch}, {locations} locations, encoder_dim {encoder_dim}, decoder_dim "
                f"{decoder_dim}, vocabulary {vocab}")
        for name, value in zip(("scores", "h", "c"), check_step(what, output, batch, decoder_dim, vocab, torch.float32)):
            expect_varies(f"{what}: {name}", value)


def check_state_used(sub, use_attention):
    replaced = use_attention and attention_problem(sub) is not None
    note = ATTENTION_REPLACED if replaced else ""
    noting(note, lambda: _check_state_used(sub, use_attention, replaced))
    return note or None


def _check_state_used(sub, use_attention, replaced):
    batch, locations, encoder_dim, decoder_dim, embed, attention_dim, vocab = 4, 9, 12, 10, 8, 5, 30
    inputs = step_inputs(batch, locations, encoder_dim, decoder_dim, vocab)
    found = sub.run("decoder.state", use_attention=use_attention,
                    sizes=sizes_of(vocab, embed, decoder_dim, encoder_dim, attention_dim), inputs=inputs,
                    context=fixed_context(inputs) if replaced else None)
    scores, _, _ = check_step("forward", found["base"], batch, decoder_dim, vocab)
    for key, name in (("h", "hidden state h"), ("c", "cell state c"), ("word", "word")):
        changed = expect_tensor(f"the scores with another {name}", found[key], (batch, vocab), None)
        if torch.allclose(changed, scores):
            fail(f"changing the previous {name} does not change the scores: the LSTM step must read the "
                 f"word embedding and the previous (h, c)")
    if not torch.equal(expect_tensor("the scores of a second call", found["again"], (batch, vocab), None), scores):
        fail("in eval mode two calls with the same inputs give different scores: dropout must be off in eval mode")
    first, second = (expect_tensor("the scores in training mode", s, (batch, vocab), None) for s in found["train"])
    if torch.equal(first, second):
        fail("in training mode (dropout 0.5) two calls give identical scores: apply self.dropout to the new "
             "hidden state before self.fc")


def _gradcheck(sub, use_attention):
    replaced = use_attention and attention_problem(sub) is not None
    note = ATTENTION_REPLACED if replaced else ""
    noting(note, lambda: _check_gradients(sub, use_attention, replaced))
    return note or None


def _check_gradients(sub, use_attention, replaced):
    batch, locations, encoder_dim, decoder_dim, embed, attention_dim, vocab = 2, 3, 4, 5, 3, 4, 6
    inputs = step_inputs(batch, locations, encoder_dim, decoder_dim, vocab, dtype=torch.float64)
    jacobians = sub.run("decoder.jacobians", use_attention=use_attention,
                        sizes=sizes_of(vocab, embed, decoder_dim, encoder_dim, attention_dim), inputs=inputs,
                        context=fixed_context(inputs) if replaced else None)
    expect_same_jacobians("(scores, h, c) with respect to the inputs", jacobians, atol=1e-5)
    if jacobians[0].abs().max() == 0:
        fail("(scores, h, c) do not depend on the previous h and c at all: the step must run the LSTM cell on them")


# ---- 3.1a -------------------------------------------------------------------------------------
@check("3.1a-output-shape")
def decoder_shapes(sub):
    _shapes(sub, use_attention=False)


@check("3.1a-state-and-dropout")
def decoder_state(sub):
    check_state_used(sub, use_attention=False)


@check("3.1a-gradients")
def decoder_gradients(sub):
    _gradcheck(sub, use_attention=False)


# ---- 3.1b: attention ------------------------------------------------------------------------
def check_context(what, out, encoder_out, dtype=None):
    """The context (batch, encoder_dim) checked for shape (and for `dtype`: only the shape test judges it)."""
    batch, locations, encoder_dim = encoder_out.shape
    if isinstance(out, torch.Tensor) and tuple(out.shape) == (batch, locations):
        fail(f"{what} returned a tensor of shape {tuple(out.shape)}, one value per location: that is the attention "
             f"weights; return their weighted sum of the encoder features, shape ({batch}, {encoder_dim})")
    return expect_tensor(what, out, (batch, encoder_dim), dtype)


@check("3.1b-attention-shape")
def attention_shape(sub):
    cases = []
    for batch, locations, encoder_dim, decoder_dim, _, attention_dim, _ in SIZES:
        g = seeded(batch)
        cases.append((encoder_dim, decoder_dim, attention_dim, None, torch.randn(batch, locations, encoder_dim, generator=g),
                      torch.randn(batch, decoder_dim, generator=g)))
    for case, out in zip(cases, sub.run("attention.contexts", cases=cases)):
        batch, locations, encoder_dim = case[4].shape
        what = f"Attention.forward with batch {batch}, {locations} locations, encoder_dim {encoder_dim}"
        expect_varies(what, check_context(what, out, case[4], case[4].dtype))


PAD = 3  # extra zero features, so that the context (encoder_dim) and the weights (locations) differ in shape


def one_hot_case(batch, locations, decoder_dim, attention_dim, init_seed, seed=0):
    """A case for the probe "attention.contexts" whose context reveals the attention weights: with
    encoder features that are the one-hot vectors of the locations (plus PAD zero features), the
    first `locations` features of the context are exactly the weights (batch, locations)."""
    encoder_out = torch.eye(locations, locations + PAD).expand(batch, locations, locations + PAD).contiguous()
    return (locations + PAD, decoder_dim, attention_dim, init_seed, encoder_out,
            torch.randn(batch, decoder_dim, generator=seeded(seed)))


def weights_of(case, context):
    """The attention weights (batch, locations) read off the context of a one_hot_case."""
    encoder_out = case[4]
    return check_context("Attention.forward", context, encoder_out)[:, :encoder_out.shape[1]]


@check("3.1b-attention-weights")
def attention_weights(sub):
    batch, locations, decoder_dim = 4, 256, 32
    encoder_out = torch.randn(3, 30, 16, generator=seeded(1))
    cases = [one_hot_case(batch, locations, decoder_dim, 20, init_seed=0),
             (16, decoder_dim, 8, 0, encoder_out, torch.randn(3, decoder_dim, generator=seeded(2))),
             # the same attention, two hidden states
             one_hot_case(2, 40, decoder_dim, 8, init_seed=0, seed=5), one_hot_case(2, 40, decoder_dim, 8, init_seed=0, seed=6)]
    contexts = sub.run("attention.contexts", cases=cases)
    alpha = weights_of(cases[0], contexts[0])
    sums = alpha.sum(dim=1)
    worst = sums[(sums - 1).abs().argmax()].item()
    if not torch.allclose(sums, torch.ones(batch), atol=1e-4):
        fail(f"attention weights sum to {worst:.3g} over the {locations} locations; they must sum to 1 "
             f"(a softmax over the locations, dim=1 of the (batch, num_locations) scores)")
    if alpha.min() < -1e-6:
        fail(f"an attention weight is {alpha.min().item():.3g}; weights from a softmax are never negative")
    if torch.allclose(alpha, torch.full_like(alpha, 1 / locations), atol=1e-7):
        fail("every attention weight equals 1/num_locations: the scores do not depend on the image or the "
             "hidden state")
    # the context is a convex combination of the encoder features, for any features
    context = check_context("Attention.forward", contexts[1], encoder_out)
    low, high = encoder_out.min(dim=1).values, encoder_out.max(dim=1).values
    if (context < low - 1e-5).any() or (context > high + 1e-5).any():
        fail("the context lies outside the range of the encoder features at some dimension: it must be their "
             "weighted sum with weights that sum to 1 (a weighted average, not a sum or a concatenation)")
    # and it depends on the hidden state
    if torch.allclose(weights_of(cases[2], contexts[2]), weights_of(cases[3], contexts[3]), atol=1e-7):
        fail("the attention weights do not change with the decoder's hidden state: add decoder_att(decoder_hidden) "
             "to the projected encoder features of every location")


def operation_cases():
    """Two (encoder_out, hidden) whose tensor operations are counted, 2 images of 4 locations and 8 of 16: a
    vectorized Attention.forward performs the same on both."""
    encoder_dim, decoder_dim = 1280, 256
    return [(torch.randn(2, 4, encoder_dim, generator=seeded(2)), torch.randn(2, decoder_dim, generator=seeded(3))),
            (torch.randn(8, 16, encoder_dim, generator=seeded(4)), torch.randn(8, decoder_dim, generator=seeded(5)))]


def expect_no_attention_loop(found):
    counts = found["operations"] if isinstance(found.get("operations"), list) else [None, None]
    expect_same_operations("Attention.forward", counts[0], counts[-1], "a batch of 2 with 4 locations",
                           "a batch of 8 with 16 locations", "it loops over the batch or the locations; apply "
                           "each layer once to the whole tensor")


def attention_loops(found):
    """Whether the operations of the probe "attention.speed" (`found`) grow with the batch or the locations
    (3.1b-attention-vectorized fails)."""
    return fails(expect_no_attention_loop, found)


@check("3.1b-attention-vectorized")
def attention_vectorized(sub):
    small, large = operation_cases()
    # the probe also times a call on `large` (a few milliseconds here): only the operations are judged
    found = sub.run("attention.speed", cases=[small, large], encoder_out=large[0], hidden=large[1], attention_dim=100)
    # only that it computes something from its inputs: its shape and values are other tests' to judge
    output = expect_tensor("Attention.forward's output", found["output"], None, None)
    expect_varies("Attention.forward's output", output)
    expect_no_attention_loop(found)


# ---- 3.1b: the decoder ------------------------------------------------------------------------
@check("3.1b-decoder-shape")
def attention_decoder_shapes(sub):
    return _shapes(sub, use_attention=True)


@check("3.1b-gradients")
def attention_decoder_gradients(sub):
    return _gradcheck(sub, use_attention=True)
