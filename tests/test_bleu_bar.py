"""The bar of 3.1a-bleu and 3.1b-bleu, without training: the reference's threshold, or, when a cheaper
test already charged the decoder's step, only that the training learned (the untrained decoder's BLEU-4
plus q3.LEARNED_MARGIN), and a step that does no work fails whatever its BLEU-4. The trained and the
untrained BLEU-4 are stubbed; the step's checks and probes run for real, in this process. A step that is
one of the mistakes the grader knows is decoded by the grader's copy of it (q3.known_mistake)."""

import pytest

from autograder.checks import FAILED, PASSED, all_checks, outcome, q3
from autograder.submission import LocalSubmission
from tests.conftest import make_tree
from tests.wrong_submissions import DECODER_STEP_MISTAKES

THRESHOLD = 0.28
UNTRAINED = 0.001
BAR = UNTRAINED + q3.LEARNED_MARGIN


def _mistake(name):
    return next((file, changes) for n, file, changes, _, _ in DECODER_STEP_MISTAKES if n == name)


@pytest.fixture
def bleu_test(monkeypatch, tmp_path):
    """grade(test id, tree changes, file, BLEU-4 the training reaches) -> (status, message, trained), with
    the training and the data stubbed; `trained` lists the trainings asked for ((attention, use))."""
    trained = []

    def grade(test_id, changes=(), file=None, bleu=0.3, own_step_bleu=None):
        """`bleu`: what the statement's step decodes; `own_step_bleu`: what the grader's copy of a known
        mistaken step decodes."""
        def trained_decoder(sub, use_attention, budget, use=()):
            trained.append((use_attention, tuple(use)))
            return object()

        def validation_bleu(sub, model):
            known = isinstance(model, q3.KnownStepDecoder)
            return own_step_bleu if known and own_step_bleu is not None else bleu

        monkeypatch.setattr(q3, "trained_decoder", trained_decoder)
        monkeypatch.setattr(q3, "validation_bleu", validation_bleu)
        monkeypatch.setattr(q3, "untrained_bleu", lambda sub, use_attention, seed, step=None: UNTRAINED)
        monkeypatch.setattr(q3, "grading_data", lambda: None)
        monkeypatch.setattr(q3.thresholds, "get", lambda test_id: {
            "budget": {"train_images": 250, "epochs": 2, "seed": 42}, "threshold": THRESHOLD})
        sub = LocalSubmission(make_tree(tmp_path, changes, file, name=f"student-{len(trained)}-{test_id}"))
        try:
            return (*outcome(all_checks()[test_id], sub), trained)
        finally:
            sub.cleanup()

    return grade


def test_a_correct_step_is_held_to_the_reference_threshold(bleu_test):
    status, message, trained = bleu_test("3.1a-bleu", bleu=0.30)
    assert status == PASSED and "the reference's threshold, 0.2800" in message, message
    status, message, _ = bleu_test("3.1a-bleu", bleu=0.10)
    assert status == FAILED and "at least 0.2800 is required" in message and "step's mistake" not in message, message


def test_a_charged_step_is_asked_only_that_its_training_learned(bleu_test):
    file, changes = _mistake("the LSTM cell's result unpacked as c, h")
    status, message, _ = bleu_test("3.1a-bleu", changes, file, bleu=BAR + 0.001)
    assert status == PASSED, message
    assert "counted in 3.1a-equivalence;" in message and f"at least {BAR:.4f}" in message, message
    assert f"an untrained decoder gets {UNTRAINED:.4f}" in message and "not the reference's 0.2800" in message
    status, message, _ = bleu_test("3.1a-bleu", changes, file, bleu=BAR - 0.001)
    assert status == FAILED and f"validation BLEU-4 {BAR - 0.001:.4f}" in message, message
    assert "counted in 3.1a-equivalence;" in message and "the grader's copy of your step" in message, message


@pytest.mark.parametrize("test_id, name, known", [
    ("3.1a-bleu", "the state passed to the LSTM cell as (c, h)", "the state passed to the LSTM cell as (c, h)"),
    ("3.1b-bleu", "the context before the word embedding", "the context before the word embedding in the LSTM's input"),
    ("3.1b-bleu", "the LSTM cell's result unpacked as c, h, with attention", "the LSTM cell's result unpacked as c, h")])
def test_a_known_mistake_is_decoded_by_the_graders_copy_of_the_step(bleu_test, test_id, name, known):
    """What the statement's step cannot read (BLEU-4 0.0000 for these) the grader's copy of the mistaken
    step reads: the training that learned passes the learned bar, one that did not still fails."""
    file, changes = _mistake(name)
    status, message, _ = bleu_test(test_id, changes, file, bleu=0.0, own_step_bleu=BAR + 0.001)
    assert status == PASSED and f"the grader's copy of your step ({known})" in message, message
    status, message, _ = bleu_test(test_id, changes, file, bleu=0.0, own_step_bleu=BAR - 0.001)
    assert status == FAILED and f"the grader's copy of your step ({known})" in message, message


@pytest.mark.parametrize("name", ["h and c detached", "h and c detached, with attention"])
def test_an_unknown_mistake_is_decoded_by_the_statements_step(bleu_test, name):
    file, changes = _mistake(name)
    status, message, _ = bleu_test("3.1b-bleu" if "attention" in name else "3.1a-bleu", changes, file, bleu=BAR + 0.001,
                                   own_step_bleu=0.0)
    assert status == PASSED and "generated by the statement's step" in message, message


def test_the_graders_copies_are_the_statements_step_with_each_mistake():
    """Each copy differs from the statement's step, and from every other copy, on the same weights."""
    import torch

    from autograder.checks.public_q3 import step_inputs
    from autograder.child.probes import build_decoder
    from autograder.submission import load_reference

    for use_attention, module in ((False, "decoder.py"), (True, "decoder_with_attention.py")):
        torch.manual_seed(0)
        model = build_decoder(load_reference(module), use_attention, 35, 10, 24, 40, 9).eval()
        inputs = step_inputs(6, 20, 40, 24, 35)
        with torch.no_grad():
            outputs = [model(*inputs)] + [step(model, *inputs) for step in q3.known_steps(use_attention).values()]
        assert len(outputs) == (16 if use_attention else 8)
        for i, a in enumerate(outputs):
            for b in outputs[i + 1:]:
                assert not all(torch.allclose(x, y) for x, y in zip(a, b))


def test_the_message_names_every_test_that_charged_the_step(bleu_test):
    file, changes = _mistake("h and c detached")
    status, message, _ = bleu_test("3.1a-bleu", changes, file, bleu=0.0)
    assert status == FAILED and "counted in 3.1a-equivalence, 3.1a-gradients;" in message, message


@pytest.mark.parametrize("test_id, name", [
    ("3.1a-bleu", "scores from the word only, the state returned untouched"),
    ("3.1b-bleu", "scores from the word only, the state returned untouched, with attention")])
def test_a_step_that_does_no_work_fails_whatever_its_bleu(bleu_test, test_id, name):
    file, changes = _mistake(name)
    status, message, trained = bleu_test(test_id, changes, file, bleu=0.9)
    assert status == FAILED and "does no work" in message and "neither the previous hidden state" in message, message
    assert trained == [], "a step that does no work is stopped before its training"


def test_a_step_that_returns_constants_does_no_work(bleu_test):
    file, changes = _mistake("a decoder with attention that returns zeros")
    status, message, trained = bleu_test("3.1b-bleu", changes, file, bleu=0.9)
    assert status == FAILED and "does no work" in message and trained == [], message


def test_with_attention_the_decoder_step_alone_lowers_the_bar(bleu_test):
    file, changes = _mistake("the context before the word embedding")
    status, message, trained = bleu_test("3.1b-bleu", changes, file, bleu=BAR + 0.001)
    assert status == PASSED and "counted in 3.1b-decoder-equivalence;" in message, message
    assert trained == [(True, ())]
    # a wrong Attention is replaced by the stand-in and charged in its own tests: the threshold stays
    status, message, trained = bleu_test("3.1b-bleu", [("self.relu(att1 + att2.unsqueeze(1))", "(att1 + att2.unsqueeze(1))")],
                                         "decoder_with_attention.py", bleu=BAR + 0.001)
    assert status == FAILED and "at least 0.2800 is required" in message and "step's mistake" not in message, message
    assert "a correct one was used here" in message and trained[-1] == (True, ("Attention",)), message


def test_the_step_tests_are_the_rubrics():
    from autograder import rubric

    tests = {t.id: t for t in rubric.load().tests}
    for use_attention, ids in q3.STEP_TESTS.items():
        for test_id in ids:
            assert test_id in all_checks() and tests[test_id].question == ("3.1b" if use_attention else "3.1a")


def test_a_cheaper_test_out_of_this_tests_time_charges_nothing(monkeypatch):
    """A cheaper test stopped because the BLEU test's time ran out judged nothing: the BLEU test fails as
    timed out rather than lower its bar."""
    from autograder.checks import REGISTRY, CheckFailure
    from autograder.child.compare import TIMED_OUT

    def out_of_time(sub):
        raise CheckFailure("timed out: used 60 s of CPU time (the limit is 54 s)", TIMED_OUT)

    all_checks()
    for test_id in q3.STEP_TESTS[False]:
        monkeypatch.setitem(REGISTRY, test_id, lambda sub: None)
    assert q3.step_charged_in(object(), False) == []
    monkeypatch.setitem(REGISTRY, "3.1a-gradients", lambda sub: q3.fail("a wrong gradient"))
    assert q3.step_charged_in(object(), False) == ["3.1a-gradients"]
    monkeypatch.setitem(REGISTRY, "3.1a-equivalence", out_of_time)
    with pytest.raises(CheckFailure) as raised:
        q3.step_charged_in(object(), False)
    assert raised.value.reason == TIMED_OUT


@pytest.mark.parametrize("test_id, name, known", [
    ("3.1a-equivalence", "the state passed to the LSTM cell as (c, h)", "the state passed to the LSTM cell as (c, h)"),
    ("3.1b-decoder-equivalence", "the context before the word embedding",
     "the context before the word embedding in the LSTM's input")])
def test_the_equivalence_test_names_a_known_mistake(tmp_path, test_id, name, known):
    """The step the BLEU test recognises is named where it is charged, in its equivalence test."""
    file, changes = _mistake(name)
    sub = LocalSubmission(make_tree(tmp_path, changes, file, name="student"))
    try:
        status, message = outcome(all_checks()[test_id], sub)[:2]
    finally:
        sub.cleanup()
    assert status == FAILED and f"Your step gives what the statement's step gives with {known}." in message, message
