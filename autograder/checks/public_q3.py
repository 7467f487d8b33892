"""Public checks of Questions 3.1a (`decoder.py`) and 3.1b (`decoder_with_attention.py`):
shapes, use of the state, dropout, attention weights and gradients.

They need neither the reference solution nor data, so they also ship with the students'
repository as its public tests (`make release`), giving the same messages as the autograder.
"""

import torch

from autograder.checks import check
from autograder.compare import expect_tensor, fail

DECODER, ATTENTION = "decoder.py", "decoder_with_attention.py"
# (batch, num_locations, encoder_dim, decoder_dim, embed_dim, attention_dim, vocab_size)
SIZES = [(1, 256, 1280, 256, 100, 100, 190), (5, 9, 48, 16, 12, 7, 30), (8, 196, 512, 64, 20, 11, 50)]


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def step_inputs(batch, locations, encoder_dim, decoder_dim, vocab, seed=0, dtype=torch.float32):
    g = seeded(seed)
    return (torch.randint(0, vocab, (batch,), generator=g),
            torch.randn(batch, decoder_dim, generator=g, dtype=dtype),
            torch.randn(batch, decoder_dim, generator=g, dtype=dtype),
            torch.randn(batch, locations, encoder_dim, generator=g, dtype=dtype))


def build_decoder(module, use_attention, vocab, embed, decoder_dim, encoder_dim, attention_dim, dropout=0.5):
    if use_attention:
        return module.DecoderWithAttention(vocab, embed, decoder_dim, encoder_dim, attention_dim, dropout)
    return module.Decoder(vocab, embed, decoder_dim, encoder_dim, dropout)


def check_step(what, outputs, batch, decoder_dim, vocab):
    if not isinstance(outputs, tuple) or len(outputs) != 3:
        fail(f"{what} returned {type(outputs).__name__}{f' of length {len(outputs)}' if isinstance(outputs, (tuple, list)) else ''}; "
             f"expected a tuple (scores, h, c)")
    scores, h, c = outputs
    expect_tensor(f"{what}: scores", scores, (batch, vocab))
    expect_tensor(f"{what}: h", h, (batch, decoder_dim))
    expect_tensor(f"{what}: c", c, (batch, decoder_dim))
    return scores, h, c


def _shapes(sub, filename, use_attention):
    module = sub.student(filename)
    for batch, locations, encoder_dim, decoder_dim, embed, attention_dim, vocab in SIZES:
        model = build_decoder(module, use_attention, vocab, embed, decoder_dim, encoder_dim, attention_dim).eval()
        with torch.no_grad():
            check_step(f"forward with batch {batch}, {locations} locations, encoder_dim {encoder_dim}, "
                        f"decoder_dim {decoder_dim}, vocabulary {vocab}",
                        model(*step_inputs(batch, locations, encoder_dim, decoder_dim, vocab)), batch, decoder_dim, vocab)


def check_state_used(sub, filename, use_attention):
    batch, locations, encoder_dim, decoder_dim, embed, attention_dim, vocab = 4, 9, 12, 10, 8, 5, 30
    torch.manual_seed(0)
    model = build_decoder(sub.student(filename), use_attention, vocab, embed, decoder_dim, encoder_dim, attention_dim).eval()
    word, h, c, encoder_out = step_inputs(batch, locations, encoder_dim, decoder_dim, vocab)
    with torch.no_grad():
        scores, _, _ = check_step("forward", model(word, h, c, encoder_out), batch, decoder_dim, vocab)
        for name, args in (("hidden state h", (word, h + 1, c, encoder_out)), ("cell state c", (word, h, c + 1, encoder_out)),
                           ("word", ((word + 1) % vocab, h, c, encoder_out))):
            if torch.allclose(model(*args)[0], scores):
                fail(f"changing the previous {name} does not change the scores: the LSTM step must read the "
                     f"word embedding and the previous (h, c)")
        if not torch.equal(model(word, h, c, encoder_out)[0], scores):
            fail("in eval mode two calls with the same inputs give different scores: dropout must be off in eval mode")
        model.train()
        if torch.equal(model(word, h, c, encoder_out)[0], model(word, h, c, encoder_out)[0]):
            fail("in training mode (dropout 0.5) two calls give identical scores: apply self.dropout to the new "
                 "hidden state before self.fc")


def _gradcheck(sub, filename, use_attention):
    batch, locations, encoder_dim, decoder_dim, embed, attention_dim, vocab = 2, 3, 4, 5, 3, 4, 6
    torch.manual_seed(0)
    model = build_decoder(sub.student(filename), use_attention, vocab, embed, decoder_dim, encoder_dim,
                     attention_dim, dropout=0.0).double().eval()
    word, h, c, encoder_out = step_inputs(batch, locations, encoder_dim, decoder_dim, vocab, dtype=torch.float64)
    inputs = [h.requires_grad_(True), c.requires_grad_(True)]
    if use_attention:
        inputs.append(encoder_out.requires_grad_(True))
        function = lambda h, c, e: model(word, h, c, e)  # noqa: E731
    else:
        function = lambda h, c: model(word, h, c, encoder_out)  # noqa: E731
    try:
        ok = torch.autograd.gradcheck(function, tuple(inputs), eps=1e-6, atol=1e-5, raise_exception=False)
    except NotImplementedError:
        raise
    except Exception as error:
        fail(f"gradcheck in float64 could not run ({type(error).__name__}: {error}); the step must work in "
             f"float64 after .double()")
    if not ok:
        fail("gradcheck in float64: autograd's gradients of (scores, h, c) with respect to the inputs disagree "
             "with finite differences (in-place changes, .detach(), or a non-differentiable step?)")


# ---- 3.1a -------------------------------------------------------------------------------------
@check("3.1a-output-shape")
def decoder_shapes(sub):
    _shapes(sub, DECODER, use_attention=False)


@check("3.1a-state-and-dropout")
def decoder_state(sub):
    check_state_used(sub, DECODER, use_attention=False)


@check("3.1a-gradients")
def decoder_gradients(sub):
    _gradcheck(sub, DECODER, use_attention=False)


# ---- 3.1b: attention ------------------------------------------------------------------------
# ---- 3.1b: attention ------------------------------------------------------------------------
def student_attention(sub, encoder_dim, decoder_dim, attention_dim):
    return sub.student(ATTENTION).Attention(encoder_dim, decoder_dim, attention_dim)


def context_of(what, attention, encoder_out, hidden):
    out = attention(encoder_out, hidden)
    batch, locations, encoder_dim = encoder_out.shape
    if isinstance(out, torch.Tensor) and tuple(out.shape) == (batch, locations):
        fail(f"{what} returned a tensor of shape {tuple(out.shape)}, one value per location: that is the attention "
             f"weights; return their weighted sum of the encoder features, shape ({batch}, {encoder_dim})")
    return expect_tensor(what, out, (batch, encoder_dim), encoder_out.dtype)


@check("3.1b-attention-shape")
def attention_shape(sub):
    for batch, locations, encoder_dim, decoder_dim, _, attention_dim, _ in SIZES:
        attention = student_attention(sub, encoder_dim, decoder_dim, attention_dim)
        g = seeded(batch)
        with torch.no_grad():
            context_of(f"Attention.forward with batch {batch}, {locations} locations, encoder_dim {encoder_dim}",
                     attention, torch.randn(batch, locations, encoder_dim, generator=g),
                     torch.randn(batch, decoder_dim, generator=g))


PAD = 3  # extra zero features, so that the context (encoder_dim) and the weights (locations) differ in shape


def attention_weights_of(attention, batch, locations, decoder_dim, seed=0, scale=1.0):
    """The student's attention weights, read off the context: with encoder features that are the
    one-hot vectors of the locations (plus PAD zero features), the first `locations` features of
    the context are exactly the weights (batch, locations)."""
    one_hot = torch.eye(locations, locations + PAD)
    encoder_out = one_hot.expand(batch, locations, locations + PAD).contiguous() * scale
    hidden = torch.randn(batch, decoder_dim, generator=seeded(seed))
    with torch.no_grad():
        context = context_of("Attention.forward", attention, encoder_out, hidden)
    return context[:, :locations] / scale


@check("3.1b-attention-weights")
def attention_weights(sub):
    batch, locations, decoder_dim = 4, 256, 32
    torch.manual_seed(0)
    attention = student_attention(sub, locations + PAD, decoder_dim, 20)
    alpha = attention_weights_of(attention, batch, locations, decoder_dim)
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
    encoder_out = torch.randn(3, 30, 16, generator=seeded(1))
    attention = student_attention(sub, 16, decoder_dim, 8)
    with torch.no_grad():
        context = context_of("Attention.forward", attention, encoder_out, torch.randn(3, decoder_dim, generator=seeded(2)))
    low, high = encoder_out.min(dim=1).values, encoder_out.max(dim=1).values
    if (context < low - 1e-5).any() or (context > high + 1e-5).any():
        fail("the context lies outside the range of the encoder features at some dimension: it must be their "
             "weighted sum with weights that sum to 1 (a weighted average, not a sum or a concatenation)")
    # and it depends on the hidden state
    torch.manual_seed(0)
    attention = student_attention(sub, 40 + PAD, decoder_dim, 8)
    a1 = attention_weights_of(attention, 2, 40, decoder_dim, seed=5)
    a2 = attention_weights_of(attention, 2, 40, decoder_dim, seed=6)
    if torch.allclose(a1, a2, atol=1e-7):
        fail("the attention weights do not change with the decoder's hidden state: add decoder_att(decoder_hidden) "
             "to the projected encoder features of every location")


# ---- 3.1b: the decoder ------------------------------------------------------------------------
@check("3.1b-decoder-shape")
def attention_decoder_shapes(sub):
    _shapes(sub, ATTENTION, use_attention=True)


@check("3.1b-gradients")
def attention_decoder_gradients(sub):
    _gradcheck(sub, ATTENTION, use_attention=True)
