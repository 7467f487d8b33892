"""Hidden checks of Questions 3.1a and 3.1b: equivalence with the reference step and attention,
vectorization, and the BLEU thresholds. The public ones are in `public_q3.py`.

The student's code runs only in the probes (`sub.run`); the reference runs here."""

import torch
import torch.nn.functional as F

from autograder import calibration
from autograder.checks import check
from autograder.checks.public_q3 import check_context, check_state_used, check_step, seeded, sizes_of, step_inputs
from autograder.compare import CheckFailure, NotRun, expect_close, fail
from autograder.probes import ATTENTION, DECODER, build_decoder, median_seconds
from autograder.submission import reference_definition

SWAPPED = "(your Attention.forward has a problem counted in its own tests, so a correct one was used here)"


def _reference_attention(sub, encoder_dim, decoder_dim, attention_dim):
    return sub.reference(ATTENTION).Attention(encoder_dim, decoder_dim, attention_dim)


def _equivalence(sub, use_attention, swap_attention=False):
    batch, locations, encoder_dim, decoder_dim, embed, attention_dim, vocab = 6, 20, 40, 24, 10, 9, 35
    torch.manual_seed(0)
    reference = build_decoder(sub.reference(ATTENTION if use_attention else DECODER), use_attention, vocab, embed,
                              decoder_dim, encoder_dim, attention_dim)
    inputs = step_inputs(batch, locations, encoder_dim, decoder_dim, vocab)
    target = torch.randint(0, vocab, (batch,), generator=seeded(3))
    note, context = "", None
    if swap_attention:  # the student's step gets the correct context for these inputs
        note = " " + SWAPPED
        with torch.no_grad():
            context = reference.attention(inputs[3], inputs[1])
    found = sub.run("decoder.with-weights", use_attention=use_attention,
                    sizes=sizes_of(vocab, embed, decoder_dim, encoder_dim, attention_dim),
                    state=reference.state_dict(), inputs=inputs, target=target, train_seed=7, context=context)
    for mode in ("eval", "train"):
        getattr(reference, mode)()
        torch.manual_seed(7)
        with torch.no_grad():
            expected = reference(*inputs)
        got = check_step("forward", found.get(mode), batch, decoder_dim, vocab)
        for name, g, e in zip(("scores", "h", "c"), got, expected):
            expect_close(f"{name} in {mode} mode (same weights{' and random seed' if mode == 'train' else ''})", g, e,
                         hint=("Dropout goes on the new hidden state, before self.fc, only there." if mode == "train"
                               else "Check the order of the steps in the docstring.") + note)
    # gradients, eval mode
    reference.eval()
    scores, h, c = reference(*inputs)
    (F.cross_entropy(scores, target) + (h * 0.3).sum() + (c * 0.1).sum()).backward()
    gradients = found["gradients"]
    for name, parameter in reference.named_parameters():
        if parameter.grad is None or (swap_attention and name.startswith("attention.")):
            continue
        if gradients.get(name) is None:
            fail(f"parameter {name} received no gradient; the step must use it{note}")
        expect_close(f"gradient of {name}", gradients[name], parameter.grad, rtol=1e-3, atol=1e-5, hint=note.strip())
    return note.strip() or None


# ---- 3.1a -------------------------------------------------------------------------------------
@check("3.1a-equivalence")
def decoder_equivalence(sub):
    _equivalence(sub, use_attention=False)


# ---- 3.1b: attention ------------------------------------------------------------------------
@check("3.1b-attention-equivalence")
def attention_equivalence(sub):
    torch.manual_seed(0)
    reference = _reference_attention(sub, 24, 12, 10)
    encoder_out = torch.randn(5, 33, 24, generator=seeded(0), requires_grad=True)
    hidden = torch.randn(5, 12, generator=seeded(1), requires_grad=True)
    weights = torch.randn(5, 24, generator=seeded(2))
    found = sub.run("attention.with-weights", state=reference.state_dict(), encoder_out=encoder_out.detach(),
                    hidden=hidden.detach(), weights=weights)
    expected = reference(encoder_out, hidden)
    got = check_context("Attention.forward", found["output"], encoder_out)
    expect_close("the attention-weighted encoding (same weights)", got, expected,
                 hint="Scores: full_att(relu(encoder_att(encoder_out) + decoder_att(hidden) at every location)); "
                      "softmax over the locations; weighted sum of encoder_out.")
    names = ["encoder_out", "decoder_hidden"] + [n for n, _ in reference.named_parameters()]
    e_grads = torch.autograd.grad((expected * weights).sum(), [encoder_out, hidden] + list(reference.parameters()))
    for name, e in zip(names, e_grads):
        g = found["gradients"].get(name)
        if g is None:
            fail(f"the context does not depend on {name}")
        expect_close(f"gradient with respect to {name}", g, e, rtol=1e-3, atol=1e-5)


@check("3.1b-attention-vectorized")
def attention_vectorized(sub):
    batch, locations, encoder_dim, decoder_dim = 16, 256, 1280, 256
    encoder_out = torch.randn(batch, locations, encoder_dim, generator=seeded(0))
    hidden = torch.randn(batch, decoder_dim, generator=seeded(1))
    found = sub.run("attention.speed", encoder_out=encoder_out, hidden=hidden, attention_dim=100)
    check_context("Attention.forward", found["output"], encoder_out)
    looped = {name: n for name, n in found["counts"].items() if n > 1}
    if looped:
        name, n = max(looped.items(), key=lambda item: item[1])
        fail(f"layer {name} ran {n} times in one call with a batch of {batch} and {locations} locations: the "
             f"attention loops over the batch or the locations; apply it once to the whole tensor")
    reference = _reference_attention(sub, encoder_dim, decoder_dim, 100)
    with torch.no_grad():
        reference(encoder_out, hidden)  # warm-up
        ratio = found["seconds"] / median_seconds(lambda: reference(encoder_out, hidden), 5)
    if ratio > 5:
        fail(f"one attention step takes {ratio:.1f} times as long as a vectorized one (allowed: 5x) for a batch of "
             f"{batch} with {locations} locations; avoid Python loops over examples or locations")


# ---- 3.1b: the decoder ------------------------------------------------------------------------
def _attention_is_correct(sub):
    try:
        attention_equivalence(sub)
        return True
    except (CheckFailure, NotRun):
        return False


@check("3.1b-decoder-equivalence")
def attention_decoder_equivalence(sub):
    check_state_used(sub, use_attention=True)
    return _equivalence(sub, use_attention=True, swap_attention=not _attention_is_correct(sub))


# ---- BLEU thresholds --------------------------------------------------------------------------
def val_bleu(sub, captions):
    """Mean sentence BLEU-4 of greedy captions of the validation images, as the hand-out computes it."""
    from data import DataError, sydney_captions

    try:
        images = sydney_captions.load().split("val")
    except DataError as error:
        raise NotRun(f"the captioning data is not available ({error}). Set SYDNEY_DIR, then grade again.") from None
    if (not isinstance(captions, list) or len(captions) != len(images)
            or not all(isinstance(c, list) and all(isinstance(w, str) for w in c) for c in captions)):
        fail(f"the captions generated for the {len(images)} validation images are not {len(images)} lists of words")
    references = [[list(caption) for caption in image.captions] for image in images]
    return sub.reference("train.py").bleu4(captions, references)[0]


def _bleu(sub, use_attention, test_id):
    spec = calibration.get(test_id)
    budget = spec["budget"]
    note, source = "", None
    if use_attention and not _attention_is_correct(sub):
        note = " " + SWAPPED
        source = reference_definition(ATTENTION, "Attention")
    bleu = val_bleu(sub, sub.run("decoder.val-captions", use_attention=use_attention, budget=budget,
                                 attention_source=source))
    threshold = spec["threshold"]
    if bleu < threshold:
        fail(f"after {budget['epochs']} epoch(s) on the first {budget['train_images']} training images (the hand-out's "
             f"recipe otherwise, seed {budget['seed']}, 8x8 grid of 320-d features), your decoder's greedy captions "
             f"reach validation BLEU-4 {bleu:.4f}; at least {threshold:.4f} is required.{note}")
    return f"validation BLEU-4 {bleu:.4f} (required {threshold:.4f}).{note}"


@check("3.1a-bleu")
def decoder_bleu(sub):
    return _bleu(sub, False, "3.1a-bleu")


@check("3.1b-bleu")
def attention_decoder_bleu(sub):
    return _bleu(sub, True, "3.1b-bleu")
