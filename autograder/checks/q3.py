"""Hidden checks of Questions 3.1a and 3.1b: equivalence with the reference step and attention,
vectorization, and the BLEU thresholds. The public ones are in `public_q3.py`."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from autograder import calibration
from autograder.checks import check, count_layer_calls, median_seconds
from autograder.checks.public_q3 import (ATTENTION, DECODER, build_decoder, check_state_used, check_step, context_of,
                                         seeded, step_inputs, student_attention)
from autograder.compare import NotRun, expect_close, fail


def _attention(sub, encoder_dim, decoder_dim, attention_dim, reference=False):
    if not reference:
        return student_attention(sub, encoder_dim, decoder_dim, attention_dim)
    return sub.reference(ATTENTION).Attention(encoder_dim, decoder_dim, attention_dim)


def _load_same_weights(model, reference):
    try:
        model.load_state_dict(reference.state_dict())
    except RuntimeError as error:
        fail(f"the provided layers of {type(model).__name__} were changed; they must stay as given "
             f"({str(error).splitlines()[0]})")


def _equivalence(sub, filename, use_attention, swap_attention=False):
    batch, locations, encoder_dim, decoder_dim, embed, attention_dim, vocab = 6, 20, 40, 24, 10, 9, 35
    torch.manual_seed(0)
    reference = build_decoder(sub.reference(filename), use_attention, vocab, embed, decoder_dim, encoder_dim, attention_dim)
    model = build_decoder(sub.student(filename), use_attention, vocab, embed, decoder_dim, encoder_dim, attention_dim)
    _load_same_weights(model, reference)
    note = ""
    if swap_attention:
        model.attention = _reference_attention_like(sub, model.attention)
        note = " (your Attention.forward has a problem counted in its own tests, so a correct one was used here)"
    inputs = step_inputs(batch, locations, encoder_dim, decoder_dim, vocab)
    for mode in ("eval", "train"):
        getattr(model, mode)(), getattr(reference, mode)()
        torch.manual_seed(7)
        expected = reference(*inputs)
        torch.manual_seed(7)
        got = check_step("forward", model(*inputs), batch, decoder_dim, vocab)
        for name, g, e in zip(("scores", "h", "c"), got, expected):
            expect_close(f"{name} in {mode} mode (same weights{' and random seed' if mode == 'train' else ''})", g, e,
                         hint=("Dropout goes on the new hidden state, before self.fc, only there." if mode == "train"
                               else "Check the order of the steps in the docstring.") + note)
    # gradients, eval mode
    model.eval(), reference.eval()
    model.zero_grad(), reference.zero_grad()
    target = torch.randint(0, vocab, (batch,), generator=seeded(3))
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


# ---- 3.1a -------------------------------------------------------------------------------------
@check("3.1a-equivalence")
def decoder_equivalence(sub):
    _equivalence(sub, DECODER, use_attention=False)


# ---- 3.1b: attention ------------------------------------------------------------------------
@check("3.1b-attention-equivalence")
def attention_equivalence(sub):
    torch.manual_seed(0)
    reference = _attention(sub, 24, 12, 10, reference=True)
    attention = _attention(sub, 24, 12, 10)
    _load_same_weights(attention, reference)
    encoder_out = torch.randn(5, 33, 24, generator=seeded(0), requires_grad=True)
    hidden = torch.randn(5, 12, generator=seeded(1), requires_grad=True)
    expected = reference(encoder_out, hidden)
    got = context_of("Attention.forward", attention, encoder_out, hidden)
    expect_close("the attention-weighted encoding (same weights)", got, expected,
                 hint="Scores: full_att(relu(encoder_att(encoder_out) + decoder_att(hidden) at every location)); "
                      "softmax over the locations; weighted sum of encoder_out.")
    weights = torch.randn(5, 24, generator=seeded(2))
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
    encoder_out = torch.randn(batch, locations, encoder_dim, generator=seeded(0))
    hidden = torch.randn(batch, decoder_dim, generator=seeded(1))
    with torch.no_grad():
        counts = count_layer_calls(attention, lambda: context_of("Attention.forward", attention, encoder_out, hidden),
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


@check("3.1b-decoder-equivalence")
def attention_decoder_equivalence(sub):
    check_state_used(sub, ATTENTION, use_attention=True)
    return _equivalence(sub, ATTENTION, use_attention=True, swap_attention=not _attention_is_correct(sub))


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
    model = build_decoder(module, use_attention, len(dataset.vocab), 100, 256, features.shape[-1], 100)
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
