"""The rubric (autograder/rubric.toml) holds everything an instructor decides about a test, and the
grader refuses a rubric that does not match its checks, naming what is missing."""

import pytest

from autograder import rubric as rubric_module
from autograder import thresholds
from autograder.checks import all_checks
from autograder.rubric import RubricError

TEST = '''
[questions."2.2"]
title = "CNN"
file = "h2-q2.py"

[[tests]]
id = "2.2-accuracy"
question = "2.2"
name = "accuracy"
points = 5
visibility = "after_due_date"
'''
TRAINING = '''[tests.training]
train_size = 100
seed = 1
margin = 0.05
[tests.training_reduced]
train_size = 10
seed = 1
margin = 0.1
'''


def _load(tmp_path, text):
    path = tmp_path / "rubric.toml"
    path.write_text(text)
    return rubric_module.load(path)


def test_the_rubric_and_the_checks_match():
    rubric_module.load().require_checks(all_checks())


def test_a_test_without_a_check_and_a_check_without_a_test_are_named(tmp_path):
    rubric = _load(tmp_path, TEST + TRAINING)
    with pytest.raises(RubricError, match=r"the check 1.1-output-sizes \(autograder/checks/\) has no test in rubric.toml"):
        rubric.require_checks(all_checks())
    with pytest.raises(RubricError, match=r"rubric test 2.2-accuracy has no check: add a function decorated "
                                          r"@check\('2.2-accuracy'\)"):
        rubric.require_checks({})


def test_a_training_test_holds_its_budget_and_margin_for_both_budgets(tmp_path, monkeypatch):
    test = _load(tmp_path, TEST + TRAINING).tests[0]
    monkeypatch.setenv("HW2_BUDGET", "grading")
    assert thresholds.training(test) == ({"train_size": 100, "seed": 1}, 0.05)
    monkeypatch.setenv("HW2_BUDGET", "test")
    assert thresholds.training(test) == ({"train_size": 10, "seed": 1}, 0.1)


@pytest.mark.parametrize("extra, message", [
    (TRAINING.split("[tests.training_reduced]")[0], "needs both"),
    (TRAINING.replace("margin = 0.05\n", ""), "needs margin"),
    (TRAINING.replace("train_size = 100", 'train_size = "many"'), "numbers only"),
    ("time_allowance = 0\n", "time_allowance must be a positive number"),
    ("seconds = 3\n", "unknown key"),
])
def test_a_wrong_setting_is_named(tmp_path, extra, message):
    with pytest.raises(RubricError, match=message):
        _load(tmp_path, TEST + extra)


def test_every_visible_test_is_public_and_every_public_test_visible():
    """What a student sees at once (Gradescope's visible tests) is what they run themselves (the public tests,
    GitHub Classroom's): the same tests, the same total."""
    rubric = rubric_module.load()
    autograded = [t for t in rubric.tests if not t.manual]
    visible = {t.id for t in autograded if t.visibility == "visible"}
    assert visible == {t.id for t in rubric.public_tests()}
    assert sum(t.points for t in autograded if t.id in visible) == sum(t.points for t in rubric.public_tests()) > 0


@pytest.mark.parametrize("flags, message", [
    ('visibility = "visible"\n', "is visible but not public: .*public = true, its check in autograder/checks/public_"),
    ('visibility = "after_due_date"\npublic = true\n', "is public but its visibility is 'after_due_date'"),
    ('visibility = "hidden"\npublic = true\n', "is public but its visibility is 'hidden'"),
])
def test_a_visible_test_that_is_not_public_and_the_converse_are_refused(tmp_path, flags, message):
    text = TEST.replace('visibility = "after_due_date"\n', flags)
    with pytest.raises(RubricError, match=f"test 2.2-accuracy: it {message}"):
        _load(tmp_path, text)
    # a test graded by hand is neither run by students nor by the autograder: any visibility
    _load(tmp_path, TEST.replace('visibility = "after_due_date"\n', 'visibility = "visible"\nmanual = true\n'))


def test_the_grading_time_settings_are_the_rubrics_unless_overridden(tmp_path, monkeypatch):
    from autograder.grade import time_settings

    rubric = _load(tmp_path, "[grading]\ntime_allowance = 3\n" + TEST + TRAINING)
    monkeypatch.delenv("HW2_TIME_ALLOWANCE", raising=False)
    monkeypatch.setenv("HW2_TOTAL_SECONDS", "60")
    assert time_settings(rubric) == {"time_allowance": 3.0, "floor_seconds": 20.0, "total_seconds": 60.0,
                                     "overridden": ["total_seconds"]}
    monkeypatch.setenv("HW2_TEST_FLOOR", "soon")
    with pytest.raises(RubricError, match="HW2_TEST_FLOOR='soon'"):
        time_settings(rubric)
    with pytest.raises(RubricError, match=r"\[grading\] minutes"):
        _load(tmp_path, "[grading]\nminutes = 3\n" + TEST)
