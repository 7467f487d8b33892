"""Hidden checks of Questions 3.1a and 3.1b: equivalence with the reference step and attention,
the attention step's CPU time, and the BLEU thresholds. The public ones are in `public_q3.py`.

The student's code runs only in the probes (`sub.run`); the reference runs here."""

import functools
import itertools

import torch
import torch.nn as nn
import torch.nn.functional as F

from autograder import thresholds
from autograder.checks import NotRun, check, data_missing
from autograder.checks.q2 import expect_few_operations
from autograder.checks.public_q3 import (attention_loops, check_context, check_state_used, check_step, fixed_context,
                                         operation_cases, seeded, sizes_of, step_inputs)
from autograder.child.compare import (DID_NOT_RUN, TIMED_OUT, WRONG, CheckFailure, expect_close, expect_tensor,
                                      expect_varies, fail)
from autograder.child.probes import ATTENTION, DECODER, build_decoder, median_seconds

SWAPPED = "(your Attention.forward has a problem counted in its own tests, so a correct one was used here)"


def _reference_attention(sub, encoder_dim, decoder_dim, attention_dim):
    return sub.reference(ATTENTION).Attention(encoder_dim, decoder_dim, attention_dim)


EQUIVALENCE_SIZES = dict(batch=6, locations=20, encoder_dim=40, decoder_dim=24, embed=10, attention_dim=9, vocab=35)


def _step_probe(sub, use_attention, swap_attention):
    """The equivalence test's probe: (the statement's decoder with seeded weights, the step's inputs, a
    target, what the student's step with the same weights returned: "decoder.with-weights"). With
    `swap_attention` the student's step gets the correct attention's context."""
    n = EQUIVALENCE_SIZES
    torch.manual_seed(0)
    reference = build_decoder(sub.reference(ATTENTION if use_attention else DECODER), use_attention, n["vocab"],
                              n["embed"], n["decoder_dim"], n["encoder_dim"], n["attention_dim"])
    inputs = step_inputs(n["batch"], n["locations"], n["encoder_dim"], n["decoder_dim"], n["vocab"])
    target = torch.randint(0, n["vocab"], (n["batch"],), generator=seeded(3))
    context = None
    if swap_attention:
        with torch.no_grad():
            context = reference.attention(inputs[3], inputs[1])
    found = sub.run("decoder.with-weights", use_attention=use_attention,
                    sizes=sizes_of(n["vocab"], n["embed"], n["decoder_dim"], n["encoder_dim"], n["attention_dim"]),
                    state=reference.state_dict(), inputs=inputs, target=target, train_seed=7, context=context)
    return reference, inputs, target, found


def _equivalence(sub, use_attention, swap_attention=False):
    batch, decoder_dim, vocab = EQUIVALENCE_SIZES["batch"], EQUIVALENCE_SIZES["decoder_dim"], EQUIVALENCE_SIZES["vocab"]
    reference, inputs, target, found = _step_probe(sub, use_attention, swap_attention)
    note = " " + SWAPPED if swap_attention else ""
    for mode in ("eval", "train"):
        getattr(reference, mode)()
        torch.manual_seed(7)
        with torch.no_grad():
            expected = reference(*inputs)
        got = check_step("forward", found.get(mode), batch, decoder_dim, vocab)
        hint = "Dropout goes on the new hidden state, before self.fc, only there."
        if mode == "eval":
            mistake = _matching_mistake(reference, inputs, got, use_attention)
            hint = (f"Your step gives what the statement's step gives with {mistake[0]}." if mistake else
                    "Check the order of the steps in the docstring.")
        for name, g, e in zip(("scores", "h", "c"), got, expected):
            expect_close(f"{name} in {mode} mode (same weights{' and random seed' if mode == 'train' else ''})", g, e,
                         hint=hint + note)
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
        expect_few_operations("your Attention.forward", found, lambda: reference(*operation_cases()[-1]),
                              "a batch of 8 with 16 locations", "a Python loop over features or attention units? "
                              "Apply each layer to the whole tensor")
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


def _grading_sizes():
    dataset, features = grading_data()
    return dict(vocab=len(dataset.vocab), encoder_dim=features.shape[-1], **DECODER_SIZES)


def _statement_decoder(sub, use_attention, sizes):
    return build_decoder(sub.reference(ATTENTION if use_attention else DECODER), use_attention, sizes["vocab"],
                         sizes["embed"], sizes["decoder_dim"], sizes["encoder_dim"], sizes["attention_dim"])


def validation_bleu(sub, model):
    """Mean sentence BLEU-4, computed here, of `model`'s greedy captions of the validation images (the
    hand-out's decoding and scoring)."""
    dataset, features = grading_data()
    train = sub.reference("train.py")
    images = dataset.split("val")
    captions, _ = train.greedy_decode(model, features[[image.imgid for image in images]], dataset.vocab,
                                      dataset.max_caption_length)
    references = [[list(caption) for caption in image.captions] for image in images]
    return train.bleu4(captions, references)[0]


def trained_decoder(sub, use_attention, budget, use=()):
    """The statement's decoder, here, with the weights the student's code trains in the child with the
    provided train.py under `budget` (`use`: ("Attention",) to train with the stand-in). The child
    gets the training captions and features only and returns the trained weights."""
    dataset, features = grading_data()
    train = sub.reference("train.py")
    pairs = train.training_pairs(dataset.split("train")[:budget["train_images"]], dataset.vocab)
    rows = sorted({imgid for imgid, _ in pairs})
    row_of = {imgid: row for row, imgid in enumerate(rows)}
    sizes = _grading_sizes()
    run = sub.run_with_standins if use else sub.run
    state = run("decoder.train", use_attention=use_attention, sizes=sizes,
                pairs=[(row_of[imgid], caption) for imgid, caption in pairs], features=features[rows],
                pad=dataset.vocab.pad, epochs=budget["epochs"], seed=budget["seed"], use=tuple(use))
    model = _statement_decoder(sub, use_attention, sizes)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        fail("the trained decoder's weights did not come back as a state_dict of tensors")
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        fail(f"the trained decoder's parameters are not the provided layers ({str(error).splitlines()[0][:300]}); "
             f"keep the layers of __init__ as given")
    return model


def trained_bleu(sub, use_attention, budget, use=()):
    """Validation BLEU-4, computed here, of the decoder the student's code trains (`trained_decoder`):
    the statement's step with those weights captions the validation images here (greedy, as the
    hand-out), scored with the hand-out's mean sentence BLEU-4. No student code chooses the captions
    that are scored."""
    return validation_bleu(sub, trained_decoder(sub, use_attention, budget, use))


def untrained_bleu(sub, use_attention, seed, step=None):
    """Validation BLEU-4, computed here, of the statement's decoder before any training: the provided
    layers initialised as the child initialises them before it trains (torch.manual_seed(seed)),
    decoded and scored as `trained_bleu` does (`step`: by the grader's copy of a known mistaken step).
    What a decoder gets without learning anything."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = _statement_decoder(sub, use_attention, _grading_sizes())
    return validation_bleu(sub, KnownStepDecoder(model, step) if step else model)


# What "your training learned" asks when a cheaper test already charged the decoder's step: validation
# BLEU-4 at least the untrained decoder's (`untrained_bleu`, computed per grading) plus this margin,
# instead of the reference's threshold. The captions are still generated here, with the weights the
# student's code trained, by the statement's step or the grader's copy of a known mistaken step (below).
# Measured (experiments/bleu_learned_bar.py, one thread, on a shared machine); in brackets the same
# weights decoded by the mistaken step itself (the student's code, run by the experiment, never by the
# grader: for the mistakes of STEP_MISTAKES the grader's copy decodes the same captions):
#                                          reduced budget (60 images, 1 epoch)            grading budget
#                                          seed 42          seed 43         seed 44         seed 42
#   untrained decoder, 3.1a and 3.1b       0.0000           0.0000          0.0000          0.0000
#   3.1a reference                         0.1483           0.1505          0.1411          0.3363
#   3.1a h and c detached                  0.0875           0.0840          0.0802          0.3229
#   3.1a cell's result unpacked as c, h    0.0866 (0.0911)  0.0000 (0.1505) 0.0852 (0.2118) 0.2835 (0.3269)
#   3.1a state passed as (c, h)            0.0061 (0.1495)  0.0049 (0.1505) 0.0452 (0.0778) 0.2581 (0.3350)
#   3.1b reference                         0.1130           0.1300          0.1494          0.3207
#   3.1b h and c detached                  0.1381           0.1097          0.1429          0.2973
#   3.1b cell's result unpacked as c, h    0.0025 (0.1498)  0.0000 (0.1495) 0.0000 (0.1495) 0.1159 (0.3470)
#   3.1b input [context, word]             0.0000 (0.1277)  0.0000 (0.1402) 0.0000 (0.1301) 0.0000 (0.3253)
#   3.1a scores from the previous h        0.0000 (0.1306)                                  0.0000 (0.2439)
#   3.1b scores from the previous h        0.0000 (0.1143)                                  0.0000 (0.1102)
#   no work: returns zeros                 the training fails (no gradient reaches the weights)
#   no work: scores from the word only,    3.1a 0.1700      0.1179          0.0801          0.1849
#     the state untouched                  3.1b 0.0000      0.0021          0.0055          0.0000
# BLEU-4 cannot tell a step that does no work from one that learned (the word-only step, which ignores
# the image, reaches 0.17 where the reference gets 0.15), so such a step is stopped before training
# (`_step_does_work`) whatever its BLEU-4. Otherwise nothing that learned nothing readable scored above
# 0.0055; 0.02 is above that noise and below every figure of a mistake whose learning the decoding
# reads: by the statement's step 0.0452 and up; the steps whose learning only their own step reads (in
# brackets: 0.0778 and up) are decoded by the grader's copy of them (STEP_MISTAKES below).
LEARNED_MARGIN = 0.02
# The cheaper tests of each decoder's step (with attention: its decoder part, not Attention's tests).
STEP_TESTS = {False: ("3.1a-output-shape", "3.1a-equivalence", "3.1a-state-and-dropout", "3.1a-gradients"),
              True: ("3.1b-decoder-shape", "3.1b-decoder-equivalence", "3.1b-gradients")}


def _step_does_work(sub, use_attention, use):
    """Fails when the student's step does no work: it does not run, or its scores change with neither the
    previous h nor the previous c (then the decoder ignores the image it starts from, and with a
    constant output it trains nothing). One probe, as cheap as running the step."""
    note = f" {SWAPPED}" if use else ""
    batch, locations, encoder_dim, decoder_dim, embed, attention_dim, vocab = 3, 4, 6, 5, 4, 3, 7
    inputs = step_inputs(batch, locations, encoder_dim, decoder_dim, vocab)
    try:
        found = sub.run("decoder.state", use_attention=use_attention,
                        sizes=sizes_of(vocab, embed, decoder_dim, encoder_dim, attention_dim), inputs=inputs,
                        context=fixed_context(inputs) if use else None)
        scores = check_step("forward", found.get("base"), batch, decoder_dim, vocab)[0]
        changed = [expect_tensor(f"the scores with another {name}", found.get(key), (batch, vocab), None)
                   for key, name in (("h", "hidden state h"), ("c", "cell state c"))]
    except CheckFailure as error:  # a stub or a file that cannot run keeps its reason, as in the step's own tests
        reason = error.reason if error.reason in DID_NOT_RUN else WRONG
        raise CheckFailure(f"this test judges that your decoder learns, and its step does not run yet: {error}"
                           f"{note if reason == WRONG else ''}", reason) from None
    if all(torch.allclose(other, scores) for other in changed):
        fail("this test judges that your decoder learns, and its step does no work yet: its scores change with "
             "neither the previous hidden state h nor the cell state c, so nothing of the image's initial state or "
             f"of the words before reaches them (decode_step must run on the word and the previous (h, c)){note}")


def step_charged_in(sub, use_attention):
    """The ids of the cheaper tests of the decoder's step (STEP_TESTS) that the submission fails: the
    tests that already charge a mistake of its step. Each runs as the grader runs it, within this test's
    time: when that runs out, this test fails as timed out."""
    from autograder.checks import REGISTRY

    charged = []
    for test_id in STEP_TESTS[use_attention]:
        try:
            REGISTRY[test_id](sub)
        except CheckFailure as error:
            if error.reason == TIMED_OUT:  # this test's time ran out, which judges nothing of that test
                raise
            charged.append(test_id)
    return charged



# ---- mistakes the grader knows: their captions generated by the grader's own copy of the step --------
# The statement's step cannot read what some mistaken steps learned (the table above: the [context,
# word] input gets 0.0000 at every budget, though its own step reaches 0.33). For the common ones the
# grader holds its own copy of the mistaken step: when the student's step gives the same scores, h and c
# as one of them on the equivalence test's inputs and weights, the captions are generated by that copy,
# here, with the weights the student's code trained. Still no student code chooses what is scored.
STEP_MISTAKES = {"context_first": "the context before the word embedding in the LSTM's input",
                 "state_swapped": "the state passed to the LSTM cell as (c, h)",
                 "result_swapped": "the LSTM cell's result unpacked as c, h",
                 "scores_before": "the scores computed from the previous hidden state, before the LSTM cell"}


def _mistaken_step(context_first, state_swapped, result_swapped, scores_before):
    """The statement's step (on a statement decoder's layers) with the STEP_MISTAKES flagged True."""
    def step(model, word, h, c, encoder_out):
        x = model.embedding(word)  # (batch, embed_dim)
        if hasattr(model, "attention"):
            context = model.attention(encoder_out, h)  # (batch, encoder_dim)
            x = torch.cat([context, x] if context_first else [x, context], dim=1)  # (batch, embed_dim + encoder_dim)
        new_h, new_c = model.decode_step(x, (c, h) if state_swapped else (h, c))  # (batch, decoder_dim) each
        if result_swapped:
            new_h, new_c = new_c, new_h
        scores = model.fc(model.dropout(h if scores_before else new_h))  # (batch, vocab_size)
        return scores, new_h, new_c  # (batch, decoder_dim) x 2
    return step


def known_steps(use_attention):
    """{what is wrong: the grader's copy of that step}: every combination of STEP_MISTAKES (the context's
    place only with attention)."""
    steps = {}
    for flags in itertools.product((False, True), repeat=len(STEP_MISTAKES)):
        if any(flags) and (use_attention or not flags[0]):
            steps["; ".join(what for what, on in zip(STEP_MISTAKES.values(), flags) if on)] = _mistaken_step(*flags)
    return steps


class KnownStepDecoder(nn.Module):
    """A statement decoder (`model`, its layers and initial state) whose step is the grader's copy of a
    known mistake (`step`), for greedy_decode."""

    def __init__(self, model, step):
        super().__init__()
        self.model, self.step = model, step
        if hasattr(model, "attention"):
            self.attention = model.attention  # greedy_decode records its weights

    def init_hidden_state(self, encoder_out):
        return self.model.init_hidden_state(encoder_out)

    def forward(self, word, decoder_hidden_state, decoder_cell_state, encoder_out):
        return self.step(self.model, word, decoder_hidden_state, decoder_cell_state, encoder_out)


def _matching_mistake(reference, inputs, got, use_attention):
    """(what is wrong, the grader's copy) of the `known_steps` whose eval-mode scores, h and c on `inputs`,
    with `reference`'s weights, are `got` (the student's step's, checked for shape); None if none is."""
    for what, step in known_steps(use_attention).items():
        with torch.no_grad():
            expected = step(reference.eval(), *inputs)
        if all(g.shape == e.shape and torch.allclose(g.float(), e, rtol=1e-4, atol=1e-5)
               for g, e in zip(got, expected)):
            return what, step
    return None


def known_mistake(sub, use_attention, use):
    """(what is wrong, the grader's copy of the step) when the student's step is one of `known_steps`: the
    same scores, h and c in eval mode as that copy on the equivalence test's inputs and weights (with
    `use`, the correct attention's context); None otherwise."""
    reference, inputs, _, found = _step_probe(sub, use_attention, swap_attention=bool(use))
    try:
        got = check_step("forward", found.get("eval"), EQUIVALENCE_SIZES["batch"], EQUIVALENCE_SIZES["decoder_dim"],
                         EQUIVALENCE_SIZES["vocab"])
    except CheckFailure:
        return None
    return _matching_mistake(reference, inputs, got, use_attention)


def _bleu(sub, use_attention, test_id):
    """Judges that the student's decoder learns with the provided training loop (a wrong Attention is
    replaced by a correct one); a decoder step that does no work fails it. The bar is the reference's
    threshold, or, when a cheaper test already charged a mistake of the step, only that the training
    learned (LEARNED_MARGIN above an untrained decoder). Either way the captions scored are generated
    here, by the statement's step, or by the grader's copy of the student's step when it is a known
    mistake (`known_mistake`), with the weights the student's code trained."""
    spec = thresholds.get(test_id)
    budget, threshold = spec["budget"], spec["threshold"]
    grading_data()  # the data first: without it the test is not run
    note, use = "", ()
    if use_attention and not _attention_is_correct(sub):
        note, use = " " + SWAPPED, ("Attention",)
    _step_does_work(sub, use_attention, use)
    model = trained_decoder(sub, use_attention, budget, use)
    bleu = validation_bleu(sub, model)
    if bleu >= threshold:
        return f"validation BLEU-4 {bleu:.4f} (required: the reference's threshold, {threshold:.4f}).{note}"
    recipe = (f"after {budget['epochs']} epoch(s) on the first {budget['train_images']} training images (the "
              f"hand-out's recipe otherwise, seed {budget['seed']}, 8x8 grid of 320-d features)")
    charged = step_charged_in(sub, use_attention)
    if not charged:
        fail(f"{recipe}, your trained decoder's greedy captions reach validation BLEU-4 {bleu:.4f}; at least "
             f"{threshold:.4f} is required (the reference's threshold).{note}")
    known = known_mistake(sub, use_attention, use)
    step, decoded = None, "the statement's step"
    if known:
        step, decoded = known[1], f"the grader's copy of your step ({known[0]})"
        bleu = validation_bleu(sub, KnownStepDecoder(model, step))
    untrained = untrained_bleu(sub, use_attention, budget["seed"], step)
    bar = untrained + LEARNED_MARGIN
    asked = (f"your step's mistake is counted in {', '.join(charged)}; here only that your training learned is "
             f"asked: BLEU-4 at least {bar:.4f} (an untrained decoder gets {untrained:.4f}), not the reference's "
             f"{threshold:.4f}. The captions are generated by {decoded} with the weights your code trained.")
    if bleu < bar:
        fail(f"{recipe}, your trained decoder's greedy captions reach validation BLEU-4 {bleu:.4f}; {asked}{note}")
    return f"validation BLEU-4 {bleu:.4f}: {asked}{note}"


@check("3.1a-bleu")
def decoder_bleu(sub):
    return _bleu(sub, False, "3.1a-bleu")


@check("3.1b-bleu")
def attention_decoder_bleu(sub):
    return _bleu(sub, True, "3.1b-bleu")
