"""Hidden checks of Questions 3.1a and 3.1b: equivalence with the reference step and attention,
the attention step's CPU time, and the BLEU thresholds. The public ones are in `public_q3.py`.

The student's code runs only in the probes (`sub.run`); the reference runs here."""

import functools

import torch
import torch.nn.functional as F

from autograder import thresholds
from autograder.checks import NotRun, check, data_missing
from autograder.checks.public_q3 import (attention_loops, check_context, check_state_used, check_step, fixed_context,
                                         operation_cases, seeded, sizes_of, step_inputs)
from autograder.child.compare import CheckFailure, expect_close, expect_tensor, expect_varies, fail
from autograder.child.probes import ATTENTION, DECODER, build_decoder, median_seconds

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


@check("3.1b-attention-speed")
def attention_speed(sub):
    """The CPU time of the student's attention step against additive attention's. A loop over the batch or
    the locations is 3.1b-attention-vectorized's to charge (public): then the time is not judged here."""
    encoder_dim, decoder_dim = 1280, 256
    batch, locations = 16, 256
    encoder_out = torch.randn(batch, locations, encoder_dim, generator=seeded(0))
    hidden = torch.randn(batch, decoder_dim, generator=seeded(1))
    found = sub.run("attention.speed", cases=operation_cases(), encoder_out=encoder_out, hidden=hidden,
                    attention_dim=100)
    # only that it computes something from its inputs: its shape and values are other tests' to judge
    expect_varies("Attention.forward's output", expect_tensor("Attention.forward's output", found["output"], None, None))
    if attention_loops(found):
        return "the time was not judged: your Attention.forward loops, which 3.1b-attention-vectorized counts"
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
GRADING_LAYER = "blocks"  # 320-d; pooled 2x2 to an 8x8 grid, so that a short training takes seconds
DECODER_SIZES = dict(embed=100, decoder_dim=256, attention_dim=100)


@functools.lru_cache(maxsize=1)
def grading_data():
    """Sydney-Captions and the features the BLEU tests train on, (613, 64, 320) float32, loaded once
    here in the grading process (the child never sees the dataset).

    The default features of the homework (1280-d head, 16x16 grid) make an attention step ~60x
    dearer; the tests only need a decoder that learns, so they use the last block's 320-d
    features average-pooled to 8x8 locations."""
    from data import DataError, features, sydney_captions

    try:
        dataset = sydney_captions.load()
        grid = features.load(layer=GRADING_LAYER, extract_if_missing=False)  # (613, 256, 320)
    except DataError as error:
        raise data_missing("the captioning data", error, "Set SYDNEY_DIR and run `make features`") from None
    side = int(grid.shape[1] ** 0.5)
    images = grid.view(len(grid), side, side, -1).permute(0, 3, 1, 2)  # (613, 320, 16, 16)
    pooled = F.avg_pool2d(images, 2)  # (613, 320, 8, 8)
    return dataset, pooled.flatten(2).transpose(1, 2).contiguous()  # (613, 64, 320)


def trained_bleu(sub, use_attention, budget, use=()):
    """Validation BLEU-4, computed here, of the decoder the student's code trains in the child with
    the provided train.py under `budget` (`use`: ("Attention",) to train with the stand-in). The
    child gets the training captions and features only and returns the trained weights; the
    statement's decoder with those weights captions the validation images here (greedy, as the
    hand-out), scored with the hand-out's mean sentence BLEU-4."""
    dataset, features = grading_data()
    train = sub.reference("train.py")
    pairs = train.training_pairs(dataset.split("train")[:budget["train_images"]], dataset.vocab)
    rows = sorted({imgid for imgid, _ in pairs})
    row_of = {imgid: row for row, imgid in enumerate(rows)}
    sizes = dict(vocab=len(dataset.vocab), encoder_dim=features.shape[-1], **DECODER_SIZES)
    run = sub.run_with_standins if use else sub.run
    state = run("decoder.train", use_attention=use_attention, sizes=sizes,
                pairs=[(row_of[imgid], caption) for imgid, caption in pairs], features=features[rows],
                pad=dataset.vocab.pad, epochs=budget["epochs"], seed=budget["seed"], use=tuple(use))
    model = build_decoder(sub.reference(ATTENTION if use_attention else DECODER), use_attention, sizes["vocab"],
                          sizes["embed"], sizes["decoder_dim"], sizes["encoder_dim"], sizes["attention_dim"])
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        fail("the trained decoder's weights did not come back as a state_dict of tensors")
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        fail(f"the trained decoder's parameters are not the provided layers ({str(error).splitlines()[0][:300]}); "
             f"keep the layers of __init__ as given")
    images = dataset.split("val")
    captions, _ = train.greedy_decode(model, features[[image.imgid for image in images]], dataset.vocab,
                                      dataset.max_caption_length)
    references = [[list(caption) for caption in image.captions] for image in images]
    return train.bleu4(captions, references)[0]


def _bleu(sub, use_attention, test_id):
    """Judges that the student's decoder learns with the provided training loop (a wrong Attention is
    replaced by a correct one); a decoder step that does not run does no work and fails it."""
    spec = thresholds.get(test_id)
    budget, threshold = spec["budget"], spec["threshold"]
    grading_data()  # the data first: without it the test is not run
    note, use = "", ()
    if use_attention and not _attention_is_correct(sub):
        note, use = " " + SWAPPED, ("Attention",)
    batch, locations, encoder_dim, decoder_dim, embed, attention_dim, vocab = 3, 4, 6, 5, 4, 3, 7
    inputs = step_inputs(batch, locations, encoder_dim, decoder_dim, vocab)
    try:
        check_step("forward", sub.run("decoder.steps", use_attention=use_attention, cases=[
            (sizes_of(vocab, embed, decoder_dim, encoder_dim, attention_dim), inputs)],
            contexts=[fixed_context(inputs)] if use else None)[0], batch, decoder_dim, vocab)
    except CheckFailure as error:
        fail(f"this test judges that your decoder learns, and its step does not run yet: {error}{note}")
    bleu = trained_bleu(sub, use_attention, budget, use)
    if bleu < threshold:
        try:
            _equivalence(sub, use_attention, swap_attention=bool(use))
        except CheckFailure:
            note += (" (your forward step does not match the statement's, counted in the equivalence test; "
                     "the captions are generated with the statement's step and the weights your code trained)")
        fail(f"after {budget['epochs']} epoch(s) on the first {budget['train_images']} training images (the hand-out's "
             f"recipe otherwise, seed {budget['seed']}, 8x8 grid of 320-d features), your trained decoder's greedy "
             f"captions reach validation BLEU-4 {bleu:.4f}; at least {threshold:.4f} is required.{note}")
    return f"validation BLEU-4 {bleu:.4f} (required {threshold:.4f}).{note}"


@check("3.1a-bleu")
def decoder_bleu(sub):
    return _bleu(sub, False, "3.1a-bleu")


@check("3.1b-bleu")
def attention_decoder_bleu(sub):
    return _bleu(sub, True, "3.1b-bleu")
