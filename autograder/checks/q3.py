"""Checks of Questions 3.1a (`decoder.py`) and 3.1b (`decoder_with_attention.py`)."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from autograder import calibration
from autograder.checks import check, count_layer_calls, median_seconds
from autograder.compare import NotRun, expect_close, expect_tensor, fail

DECODER, ATTENTION = "decoder.py", "decoder_with_attention.py"
# (batch, num_locations, encoder_dim, decoder_dim, embed_dim, attention_dim, vocab_size)
SIZES = [(1, 256, 1280, 256, 100, 100, 190), (5, 9, 48, 16, 12, 7, 30), (8, 196, 512, 64, 20, 11, 50)]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _step_inputs(batch, locations, encoder_dim, decoder_dim, vocab, seed=0, dtype=torch.float32):
    g = _gen(seed)
    return (torch.randint(0, vocab, (batch,), generator=g),
            torch.randn(batch, decoder_dim, generator=g, dtype=dtype),
            torch.randn(batch, decoder_dim, generator=g, dtype=dtype),
            torch.randn(batch, locations, encoder_dim, generator=g, dtype=dtype))


def _decoder(module, use_attention, vocab, embed, decoder_dim, encoder_dim, attention_dim, dropout=0.5):
    if use_attention:
        return module.DecoderWithAttention(vocab, embed, decoder_dim, encoder_dim, attention_dim, dropout)
    return module.Decoder(vocab, embed, decoder_dim, encoder_dim, dropout)


def _load_same_weights(model, reference):
    try:
        model.load_state_dict(reference.state_dict())
    except RuntimeError as error:
        fail(f"the provided layers of {type(model).__name__} were changed; they must stay as given "
             f"({str(error).splitlines()[0]})")


def _check_step(what, outputs, batch, decoder_dim, vocab):
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
        model = _decoder(module, use_attention, vocab, embed, decoder_dim, encoder_dim, attention_dim).eval()
        with torch.no_grad():
            _check_step(f"forward with batch {batch}, {locations} locations, encoder_dim {encoder_dim}, "
                        f"decoder_dim {decoder_dim}, vocabulary {vocab}",
                        model(*_step_inputs(batch, locations, encoder_dim, decoder_dim, vocab)), batch, decoder_dim, vocab)


def _equivalence(sub, filename, use_attention, swap_attention=False):
    batch, locations, encoder_dim, decoder_dim, embed, attention_dim, vocab = 6, 20, 40, 24, 10, 9, 35
    torch.manual_seed(0)
    reference = _decoder(sub.reference(filename), use_attention, vocab, embed, decoder_dim, encoder_dim, attention_dim)
    model = _decoder(sub.student(filename), use_attention, vocab, embed, decoder_dim, encoder_dim, attention_dim)
    _load_same_weights(model, reference)
    note = ""
    if swap_attention:
        model.attention = _reference_attention_like(sub, model.attention)
        note = " (your Attention.forward has a problem counted in its own tests, so a correct one was used here)"
    inputs = _step_inputs(batch, locations, encoder_dim, decoder_dim, vocab)
    for mode in ("eval", "train"):
        getattr(model, mode)(), getattr(reference, mode)()
        torch.manual_seed(7)
        expected = reference(*inputs)
        torch.manual_seed(7)
        got = _check_step("forward", model(*inputs), batch, decoder_dim, vocab)
        for name, g, e in zip(("scores", "h", "c"), got, expected):
            expect_close(f"{name} in {mode} mode (same weights{' and random seed' if mode == 'train' else ''})", g, e,
                         hint=("Dropout goes on the new hidden state, before self.fc, only there." if mode == "train"
                               else "Check the order of the steps in the docstring.") + note)
    # gradients, eval mode
    model.eval(), reference.eval()
    model.zero_grad(), reference.zero_grad()
    target = torch.randint(0, vocab, (batch,), generator=_gen(3))
    for net in (reference, model):
        scores, h, c = net(*inputs)
        (F.cross_entropy(scores, target) + (h * 0.3).sum() + (c * 0.1).sum()).backward()
    reference_grads = dict(reference.named_parameters())
    for name, parameter in model.named_parameters():
        expected = reference_grads[name].grad
        if expected is None:
            continue
        if parameter.grad is None:
            fail(f"parameter {name} received no gradient; the step must use it{note}")
        expect_close(f"gradient of {name}", parameter.grad, expected, rtol=1e-3, atol=1e-5, hint=note.strip())
    return note.strip() or None


def _state_used(sub, filename, use_attention):
    batch, locations, encoder_dim, decoder_dim, embed, attention_dim, vocab = 4, 9, 12, 10, 8, 5, 30
    torch.manual_seed(0)
    model = _decoder(sub.student(filename), use_attention, vocab, embed, decoder_dim, encoder_dim, attention_dim).eval()
    word, h, c, encoder_out = _step_inputs(batch, locations, encoder_dim, decoder_dim, vocab)
    with torch.no_grad():
        scores, _, _ = _check_step("forward", model(word, h, c, encoder_out), batch, decoder_dim, vocab)
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
    model = _decoder(sub.student(filename), use_attention, vocab, embed, decoder_dim, encoder_dim,
                     attention_dim, dropout=0.0).double().eval()
    word, h, c, encoder_out = _step_inputs(batch, locations, encoder_dim, decoder_dim, vocab, dtype=torch.float64)
    inputs = [h.requires_grad_(True), c.requires_grad_(True)]
    if use_attention:
        inputs.append(encoder_out.requires_grad_(True))
        function = lambda h, c, e: model(word, h, c, e)  # noqa: E731
    else:
        function = lambda h, c: model(word, h, c, encoder_out)  # noqa: E731
    try:
        ok = torch.autograd.gradcheck(function, tuple(inputs), eps=1e-6, atol=1e-5, raise_exception=False)
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


@check("3.1a-equivalence")
def decoder_equivalence(sub):
    _equivalence(sub, DECODER, use_attention=False)


@check("3.1a-state-and-dropout")
def decoder_state(sub):
    _state_used(sub, DECODER, use_attention=False)


@check("3.1a-gradients")
def decoder_gradients(sub):
    _gradcheck(sub, DECODER, use_attention=False)


# ---- 3.1b: attention ------------------------------------------------------------------------
def _attention(sub, encoder_dim, decoder_dim, attention_dim, reference=False):
    module = sub.reference(ATTENTION) if reference else sub.student(ATTENTION)
    return module.Attention(encoder_dim, decoder_dim, attention_dim)


def _context(what, attention, encoder_out, hidden):
    out = attention(encoder_out, hidden)
    batch, locations, encoder_dim = encoder_out.shape
    if isinstance(out, torch.Tensor) and tuple(out.shape) == (batch, locations):
        fail(f"{what} returned a tensor of shape {tuple(out.shape)}, one value per location: that is the attention "
             f"weights; return their weighted sum of the encoder features, shape ({batch}, {encoder_dim})")
    return expect_tensor(what, out, (batch, encoder_dim), encoder_out.dtype)


@check("3.1b-attention-shape")
def attention_shape(sub):
    for batch, locations, encoder_dim, decoder_dim, _, attention_dim, _ in SIZES:
        attention = _attention(sub, encoder_dim, decoder_dim, attention_dim)
        g = _gen(batch)
        with torch.no_grad():
            _context(f"Attention.forward with batch {batch}, {locations} locations, encoder_dim {encoder_dim}",
                     attention, torch.randn(batch, locations, encoder_dim, generator=g),
                     torch.randn(batch, decoder_dim, generator=g))


PAD = 3  # extra zero features, so that the context (encoder_dim) and the weights (locations) differ in shape


def attention_weights_of(attention, batch, locations, decoder_dim, seed=0, scale=1.0):
    """The student's attention weights, read off the context: with encoder features that are the
    one-hot vectors of the locations (plus PAD zero features), the first `locations` features of
    the context are exactly the weights (batch, locations)."""
    one_hot = torch.eye(locations, locations + PAD)
    encoder_out = one_hot.expand(batch, locations, locations + PAD).contiguous() * scale
    hidden = torch.randn(batch, decoder_dim, generator=_gen(seed))
    with torch.no_grad():
        context = _context("Attention.forward", attention, encoder_out, hidden)
    return context[:, :locations] / scale


@check("3.1b-attention-weights")
def attention_weights(sub):
    batch, locations, decoder_dim = 4, 256, 32
    torch.manual_seed(0)
    attention = _attention(sub, locations + PAD, decoder_dim, 20)
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
    encoder_out = torch.randn(3, 30, 16, generator=_gen(1))
    attention = _attention(sub, 16, decoder_dim, 8)
    with torch.no_grad():
        context = _context("Attention.forward", attention, encoder_out, torch.randn(3, decoder_dim, generator=_gen(2)))
    low, high = encoder_out.min(dim=1).values, encoder_out.max(dim=1).values
    if (context < low - 1e-5).any() or (context > high + 1e-5).any():
        fail("the context lies outside the range of the encoder features at some dimension: it must be their "
             "weighted sum with weights that sum to 1 (a weighted average, not a sum or a concatenation)")
    # and it depends on the hidden state
    torch.manual_seed(0)
    attention = _attention(sub, 40 + PAD, decoder_dim, 8)
    a1 = attention_weights_of(attention, 2, 40, decoder_dim, seed=5)
    a2 = attention_weights_of(attention, 2, 40, decoder_dim, seed=6)
    if torch.allclose(a1, a2, atol=1e-7):
        fail("the attention weights do not change with the decoder's hidden state: add decoder_att(decoder_hidden) "
             "to the projected encoder features of every location")


@check("3.1b-attention-equivalence")
def attention_equivalence(sub):
    torch.manual_seed(0)
    reference = _attention(sub, 24, 12, 10, reference=True)
    attention = _attention(sub, 24, 12, 10)
    _load_same_weights(attention, reference)
    encoder_out = torch.randn(5, 33, 24, generator=_gen(0), requires_grad=True)
    hidden = torch.randn(5, 12, generator=_gen(1), requires_grad=True)
    expected = reference(encoder_out, hidden)
    got = _context("Attention.forward", attention, encoder_out, hidden)
    expect_close("the attention-weighted encoding (same weights)", got, expected,
                 hint="Scores: full_att(relu(encoder_att(encoder_out) + decoder_att(hidden) at every location)); "
                      "softmax over the locations; weighted sum of encoder_out.")
    weights = torch.randn(5, 24, generator=_gen(2))
    e_grads = torch.autograd.grad((expected * weights).sum(), [encoder_out, hidden] + list(reference.parameters()))
    g_grads = torch.autograd.grad((got * weights).sum(), [encoder_out, hidden] + list(attention.parameters()),
                                  allow_unused=True)
    names = ["encoder_out", "decoder_hidden"] + [n for n, _ in attention.named_parameters()]
    for name, g, e in zip(names, g_grads, e_grads):
        if g is None:
            fail(f"the context does not depend on {name}")
        expect_close(f"gradient with respect to {name}", g, e, rtol=1e-3, atol=1e-5)


@check("3.1b-attention-vectorized")
def attention_vectorized(sub):
    batch, locations, encoder_dim, decoder_dim = 16, 256, 1280, 256
    attention = _attention(sub, encoder_dim, decoder_dim, 100)
    reference = _attention(sub, encoder_dim, decoder_dim, 100, reference=True)
    encoder_out = torch.randn(batch, locations, encoder_dim, generator=_gen(0))
    hidden = torch.randn(batch, decoder_dim, generator=_gen(1))
    with torch.no_grad():
        counts = count_layer_calls(attention, lambda: _context("Attention.forward", attention, encoder_out, hidden),
                                   nn.Linear)
        looped = {name: n for name, n in counts.items() if n > 1}
        if looped:
            name, n = max(looped.items(), key=lambda item: item[1])
            fail(f"layer {name} ran {n} times in one call with a batch of {batch} and {locations} locations: the "
                 f"attention loops over the batch or the locations; apply it once to the whole tensor")
        attention(encoder_out, hidden), reference(encoder_out, hidden)  # warm-up
        ratio = median_seconds(lambda: attention(encoder_out, hidden), 5) / median_seconds(
            lambda: reference(encoder_out, hidden), 5)
    if ratio > 5:
        fail(f"one attention step takes {ratio:.1f} times as long as a vectorized one (allowed: 5x) for a batch of "
             f"{batch} with {locations} locations; avoid Python loops over examples or locations")


# ---- 3.1b: the decoder ------------------------------------------------------------------------
def _attention_is_correct(sub):
    try:
        attention_equivalence(sub)
        return True
    except Exception:
        return False


def _reference_attention_like(sub, attention):
    """A correct Attention with the same weights as `attention`."""
    reference = sub.reference(ATTENTION).Attention(attention.encoder_att.in_features, attention.decoder_att.in_features,
                                                   attention.encoder_att.out_features)
    reference.load_state_dict(attention.state_dict())
    return reference


@check("3.1b-decoder-shape")
def attention_decoder_shapes(sub):
    _shapes(sub, ATTENTION, use_attention=True)


@check("3.1b-decoder-equivalence")
def attention_decoder_equivalence(sub):
    _state_used(sub, ATTENTION, use_attention=True)
    return _equivalence(sub, ATTENTION, use_attention=True, swap_attention=not _attention_is_correct(sub))


@check("3.1b-gradients")
def attention_decoder_gradients(sub):
    _gradcheck(sub, ATTENTION, use_attention=True)


# ---- BLEU thresholds --------------------------------------------------------------------------
GRADING_LAYER = "blocks"  # 320-d; pooled 2x2 to an 8x8 grid, so that a short training takes seconds


def grading_features(sub):
    """Sydney-Captions and the features the BLEU tests train on: (613, 64, 320) float32.

    The default features of the homework (1280-d head, 16x16 grid) make an attention step ~60x
    dearer; the tests only need a decoder that learns, so they use the last block's 320-d
    features average-pooled to 8x8 locations."""
    from data import DataError, features, sydney_captions

    try:
        dataset = sydney_captions.load()
        grid = features.load(layer=GRADING_LAYER, extract_if_missing=False)  # (613, 256, 320)
    except DataError as error:
        raise NotRun(f"the captioning data is not available ({error}). Set SYDNEY_DIR and run `make features`, "
                     f"then grade again.") from None
    side = int(grid.shape[1] ** 0.5)
    images = grid.view(len(grid), side, side, -1).permute(0, 3, 1, 2)  # (613, 320, 16, 16)
    pooled = F.avg_pool2d(images, 2)  # (613, 320, 8, 8)
    return dataset, pooled.flatten(2).transpose(1, 2).contiguous()  # (613, 64, 320)


def _bleu(sub, filename, use_attention, test_id):
    dataset, features = grading_features(sub)
    spec = calibration.get(test_id)
    budget = spec["budget"]
    module = sub.student(filename)
    note = ""
    torch.manual_seed(budget["seed"])
    model = _decoder(module, use_attention, len(dataset.vocab), 100, 256, features.shape[-1], 100)
    if use_attention and not _attention_is_correct(sub):
        model.attention = _reference_attention_like(sub, model.attention)
        note = " (your Attention.forward has a problem counted in its own tests, so a correct one was used here)"
    bleu = train_decoder(sub.reference("train.py"), model, dataset, features, **budget)
    threshold = spec["threshold"]
    if bleu < threshold:
        fail(f"after {budget['epochs']} epoch(s) on the first {budget['train_images']} training images (the hand-out's "
             f"recipe otherwise, seed {budget['seed']}, 8x8 grid of 320-d features), your decoder's greedy captions "
             f"reach validation BLEU-4 {bleu:.4f}; at least {threshold:.4f} is required.{note}")
    return f"validation BLEU-4 {bleu:.4f} (required {threshold:.4f}).{note}"


def train_decoder(train, model, dataset, features, train_images, epochs, seed, batch_size=8, learning_rate=4e-4):
    """Train `model` with the provided training loop; greedy validation BLEU-4."""
    torch.manual_seed(seed)
    vocab = dataset.vocab
    pairs = train.training_pairs(dataset.split("train")[:train_images], vocab)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    steps = (len(pairs) + batch_size - 1) // batch_size
    for _ in range(epochs):
        batches = train.caption_batches(pairs, features, batch_size, generator, vocab.pad)
        train.train_epoch(model, batches, optimizer, nn.CrossEntropyLoss(), 5.0, steps)
    bleu, _, _ = train.evaluate(model, dataset.split("val"), features, vocab, dataset.max_caption_length)
    return bleu


@check("3.1a-bleu")
def decoder_bleu(sub):
    return _bleu(sub, DECODER, False, "3.1a-bleu")


@check("3.1b-bleu")
def attention_decoder_bleu(sub):
    return _bleu(sub, ATTENTION, True, "3.1b-bleu")
