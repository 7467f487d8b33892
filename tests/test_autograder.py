"""The autograder: the rubric is valid, the reference gets full marks (the same twice), the
skeleton gets zero and still completes, every plausible wrong submission loses points where it
should, broken submissions and missing data are reported as such."""

import json
import os
import subprocess
import sys

import pytest

from autograder import rubric as rubric_module
from autograder.checks import all_checks
from tests.conftest import (ASSIGNMENT, ROOT, SOLUTION, autograder_outcome, graded_two_at_a_time, make_tree,
                            selected_tests)
from tests.wrong_submissions import WRONG_SUBMISSIONS


def test_rubric_matches_the_checks():
    rubric = rubric_module.load()
    ids = {t.id for t in rubric.tests if not t.manual}
    assert ids == set(all_checks()), "every autograded rubric test needs a check and every check a rubric entry"
    assert rubric.max_points() == 100
    assert set(rubric.questions) == {"1.1", "1.2", "1.3", "2.2", "3.1a", "3.1b"}
    assert {t.id for t in rubric.tests if t.manual} == {"1.3-proof-rank", "1.3-proof-heads"}


def test_public_tests_are_exactly_the_checks_of_the_public_modules():
    # the public modules ship to students: a hidden check there would leak, a public test outside would be missing
    rubric = rubric_module.load()
    checks = all_checks()
    for test in (t for t in rubric.tests if not t.manual):
        module = checks[test.id].__module__.rsplit(".", 1)[-1]
        assert module.startswith("public_") == test.public, f"{test.id} is in {module} but public = {test.public}"
    python_questions = {n for n, q in rubric.questions.items() if q.file.endswith(".py")}
    assert {t.question for t in rubric.public_tests()} == python_questions, "every Python question has public tests"


def test_the_notebook_has_check_cells_for_every_question():
    # Question 1's public checks are the notebook's own check cells (nbgrader test cells, locked)
    import json

    cells = json.loads((ASSIGNMENT / "q1.ipynb").read_text())["cells"]
    checks = [c for c in cells if c["metadata"].get("nbgrader", {}).get("grade") and c["cell_type"] == "code"]
    assert len(checks) == 3 and all(c["metadata"]["nbgrader"]["locked"] for c in checks)
    answers = [c for c in cells if c["metadata"].get("nbgrader", {}).get("solution")]
    assert all("SOLUTION" not in "".join(c["source"]) for c in answers)


def test_rubric_rejects_an_unknown_key(tmp_path):
    text = rubric_module.RUBRIC_FILE.read_text().replace("\npublic = true", "\npublik = true", 1)
    (tmp_path / "rubric.toml").write_text(text)
    with pytest.raises(rubric_module.RubricError, match="unknown key.*publik"):
        rubric_module.load(tmp_path / "rubric.toml")


def test_rubric_rejects_an_unknown_visibility(tmp_path):
    text = rubric_module.RUBRIC_FILE.read_text().replace('visibility = "visible"', 'visibility = "public"', 1)
    (tmp_path / "rubric.toml").write_text(text)
    with pytest.raises(rubric_module.RubricError, match="visibility 'public' is not one of"):
        rubric_module.load(tmp_path / "rubric.toml")


@pytest.mark.parametrize("name, file, changes, test_id, words", WRONG_SUBMISSIONS, ids=[w[0] for w in WRONG_SUBMISSIONS])
def test_wrong_submission_loses_points_with_a_message(tmp_path, name, file, changes, test_id, words):
    status, message = autograder_outcome(make_tree(tmp_path, changes, file), test_id)
    assert status == "failed", f"{name!r} passed {test_id}: it would score full marks on its question"
    for word in words:
        assert word in message, f"{name!r}: the message of {test_id} should mention {word!r}; it says: {message}"


def test_the_corpus_is_large_and_covers_every_question():
    assert len(WRONG_SUBMISSIONS) >= 20
    assert {test_id.split("-")[0] for *_, test_id, _ in WRONG_SUBMISSIONS} == {"1.1", "1.2", "1.3", "2.2", "3.1a", "3.1b"}


@pytest.mark.slow
def test_reference_scores_full_marks_and_the_same_twice_from_any_checkout(graded_reference):
    """Two gradings of solution/ at once with the grading's budget (tests/conftest.py, graded_reference): one
    from this checkout, one from a copy under /tmp with SYDNEY_DIR given through a symbolic link.
    Bind order, links and checkouts under /tmp simply work."""
    first, second = (graded.results for graded in graded_reference)
    failed = [(t["extra_data"]["id"], t["output"]) for t in first["tests"]
              if t.get("status") != "passed" and not t["extra_data"]["manual"]]
    assert not failed, failed
    assert first["score"] == 100 and first["extra_data"]["budget"] == "grading"
    assert [(t["name"], t["score"], t["output"]) for t in first["tests"]] == \
           [(t["name"], t["score"], t["output"]) for t in second["tests"]]
    feedback = graded_reference[0].feedback
    assert "Score 100 / 100" in feedback and "INCOMPLETE" not in feedback


@pytest.mark.slow
def test_results_json_follows_the_gradescope_format(graded_reference):
    graded = graded_reference[0]
    results = graded.results
    assert set(results) >= {"score", "execution_time", "output", "tests"}
    assert {t["number"] for t in results["tests"]} == set(rubric_module.load().questions)
    for test in results["tests"]:
        assert set(test) >= {"name", "number", "score", "max_score", "output", "visibility"}
        if test["extra_data"]["manual"]:  # the proofs: listed, with no status (Gradescope's manual questions)
            assert "status" not in test
        else:
            assert test["status"] in ("passed", "failed")
        assert test["visibility"] in rubric_module.VISIBILITIES
    assert "Score 100 / 100" in graded.feedback and "total" in graded.stdout and "3.1a" in graded.stdout


@pytest.mark.slow
def test_skeleton_scores_zero_with_not_implemented_messages(graded_skeleton):
    results = graded_skeleton.results
    assert results["score"] == 0 and len(results["tests"]) == len(rubric_module.load().tests)
    for test in results["tests"]:
        assert test["score"] == 0, test
        if test["extra_data"]["manual"]:  # the proofs: listed, flagged, worth nothing here
            assert test["max_score"] == 0 and "graded by hand" in test["output"] and "status" not in test
        else:
            assert "not implemented yet" in test["output"], test


# 3.1b without its training test: that it keeps its points is what matters, not that it learns
UNTRAINED_3_1B = [t.id for t in rubric_module.load().select(["3.1b"]) if t.id != "3.1b-bleu"]


def _broken(tmp_path):
    tree = make_tree(tmp_path)
    (tree / "decoder.py").write_text("def broken(:\n")
    (tree / "h2-q2.py").unlink()
    return tree, tmp_path / "out", ["--only", ",".join(["2.2", "3.1a", *UNTRAINED_3_1B])], None


def _without_data(tmp_path):
    env = dict(os.environ, SYDNEY_DIR=str(tmp_path / "nowhere"), HW2_CACHE_DIR=str(tmp_path / "empty-cache"))
    return SOLUTION, tmp_path / "out", ["--only", "3.1a"], env


def _notebook_with_a_cell_of_its_own(tmp_path):
    """An answer cell that uses a name defined only in a cell the student added."""
    notebook = json.loads((SOLUTION / "q1.ipynb").read_text())
    cells = notebook["cells"]
    index = next(i for i, c in enumerate(cells) if c["metadata"].get("nbgrader", {}).get("grade_id") == "mlp_counts")
    cells.insert(index, {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                         "source": "HIDDEN_UNITS = 100  # the student's own cell\n"})
    source = "".join(cells[index + 1]["source"])
    cells[index + 1]["source"] = source.replace("def mlp_counts():\n", "def mlp_counts():\n    assert HIDDEN_UNITS\n", 1)
    tree = make_tree(tmp_path)
    (tree / "q1.ipynb").write_text(json.dumps(notebook))
    return tree, tmp_path / "out", ["--only", "1.2"], None


# test: how its grading is made (tree, out, arguments, environment), in a folder of its own
GRADINGS = {"test_broken_submission_is_graded_to_completion": _broken,
            "test_missing_data_is_not_run_and_grading_incomplete": _without_data,
            "test_check_q1_and_grading_give_a_notebook_the_same_verdict": _notebook_with_a_cell_of_its_own}


@pytest.fixture(scope="module")
def graded(tmp_path_factory, request):
    """{test: (results.json, stdout)} of the GRADINGS whose test is selected (-k), two at a time."""
    return graded_two_at_a_time({test: GRADINGS[test](tmp_path_factory.mktemp(test[5:40]))
                                 for test in selected_tests(request, *GRADINGS)})


@pytest.mark.slow
def test_broken_submission_is_graded_to_completion(graded):
    results, _ = graded["test_broken_submission_is_graded_to_completion"]
    untrained = UNTRAINED_3_1B
    by_question = {}
    for test in results["tests"]:
        by_question.setdefault(test["number"], []).append(test)
    assert all(t["score"] == 0 and "h2-q2.py is missing" in t["output"] for t in by_question["2.2"])
    assert all(t["score"] == 0 and "SyntaxError" in t["output"] and "line 1" in t["output"] for t in by_question["3.1a"])
    # 3.1b is untouched and keeps its points
    assert [t["extra_data"]["id"] for t in by_question["3.1b"]] == untrained
    assert all(t["status"] == "passed" for t in by_question["3.1b"])


@pytest.mark.slow
def test_missing_data_is_not_run_and_grading_incomplete(graded):
    results, stdout = graded["test_missing_data_is_not_run_and_grading_incomplete"]
    bleu = next(t for t in results["tests"] if t["extra_data"]["id"] == "3.1a-bleu")
    assert bleu["extra_data"]["not_run"] and bleu["output"].startswith("NOT RUN (not your fault)")
    assert "SYDNEY_DIR" in bleu["output"] and "make features" in bleu["output"]
    assert results["extra_data"]["incomplete"] and "INCOMPLETE" in results["output"] and "INCOMPLETE" in stdout
    others = [t for t in results["tests"] if t is not bleu]
    assert all(t["status"] == "passed" for t in others)


def test_grader_without_thresholds_stops_with_the_fix(tmp_path, monkeypatch):
    from autograder import thresholds
    from autograder.grade import grade

    monkeypatch.setattr(thresholds, "CALIBRATION_FILE", tmp_path / "calibration.json")
    with pytest.raises(thresholds.CalibrationError, match="make calibrate"):
        grade(SOLUTION, only=["2.2"], log=lambda *_: None)
    result = subprocess.run([sys.executable, "-m", "autograder", "grade", str(tmp_path / "nowhere")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "is not a folder" in result.stderr


def test_what_students_see_follows_the_tests_visibility(tmp_path):
    """Before the due date a student sees the visible tests only: Gradescope's top-level output and
    feedback-before-due-date.md hold no result of a later test; feedback.md (the instructor's) all."""
    from autograder.results import GradingResults, TestResult

    results = GradingResults("tree", {"2.2": "CNN"}, results=[
        TestResult("a", "2.2", "shape", 3, "visible", "passed", 3, ""),
        TestResult("b", "2.2", "equivalence", 5, "after_due_date", "failed", 0, "SECRET-AFTER-DUE"),
        TestResult("c", "2.2", "hidden one", 2, "hidden", "failed", 0, "SECRET-HIDDEN")])
    results.write(tmp_path)
    output = json.loads((tmp_path / "results.json").read_text())["output"]
    assert "3 / 3" in output and "8" not in output.split(";")[0] and "SECRET" not in output
    before = (tmp_path / "feedback-before-due-date.md").read_text()
    after = (tmp_path / "feedback-after-due-date.md").read_text()
    everything = (tmp_path / "feedback.md").read_text()
    assert "SECRET" not in before and "equivalence" not in before and "shape" in before
    assert "SECRET-AFTER-DUE" in after and "SECRET-HIDDEN" not in after
    assert "SECRET-AFTER-DUE" in everything and "SECRET-HIDDEN" in everything


@pytest.mark.slow
def test_check_q1_and_grading_give_a_notebook_the_same_verdict(tmp_path, graded):
    """An answer cell that uses a name defined only in a cell the student added fails both
    `make check-q1` (python -m autograder.child.notebook) and the grading, with NameError."""
    tree, *_ = _notebook_with_a_cell_of_its_own(tmp_path)
    local = subprocess.run([sys.executable, "-m", "autograder.child.notebook", str(tree / "q1.ipynb")], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert local.returncode == 1 and "NameError" in local.stderr and "HIDDEN_UNITS" in local.stderr, local.stderr
    results, _ = graded["test_check_q1_and_grading_give_a_notebook_the_same_verdict"]
    test = next(t for t in results["tests"] if t["extra_data"]["id"] == "1.2-parameter-counts")
    assert test["score"] == 0 and "NameError" in test["output"] and "HIDDEN_UNITS" in test["output"]
