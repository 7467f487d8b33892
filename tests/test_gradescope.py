"""The Gradescope bundle (`make gradescope`): unpacked into a folder laid out like /autograder/,
its run_autograder grades a submission and writes results/results.json."""

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile

import pytest

from autograder import gradescope
from autograder import rubric as rubric_module
from autograder.submission import GRADED_FILES
from tests.conftest import ASSIGNMENT, ROOT, SOLUTION, selected_tests


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, sydney_dir):
    path = tmp_path_factory.mktemp("dist") / "autograder.zip"
    gradescope.build(path, sydney_dir)
    return path


def _unpack_like_gradescope(bundle, root):
    """/autograder/source holds the zip's contents (modes kept), /autograder/run_autograder a copy."""
    source = root / "source"
    with zipfile.ZipFile(bundle) as zipped:
        zipped.extractall(source)
        for info in zipped.infolist():
            mode = info.external_attr >> 16
            if mode:
                os.chmod(source / info.filename, mode)
    shutil.copy(source / "run_autograder", root / "run_autograder")
    (root / "submission").mkdir()
    return root


def _run(root, **env):
    environment = dict(os.environ, AUTOGRADER_ROOT=str(root), HW2_PYTHON=sys.executable,
                       HW2_CACHE_DIR=str(ROOT / "data" / "cache"), **env)
    environment.pop("SYDNEY_DIR", None)  # the bundled copy must be the one used
    result = subprocess.run([str(root / "run_autograder")], capture_output=True, text=True, env=environment,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads((root / "results" / "results.json").read_text()), result.stdout


def test_the_bundle_has_gradescope_layout(bundle):
    with zipfile.ZipFile(bundle) as zipped:
        names = set(zipped.namelist())
        for script in ("setup.sh", "run_autograder"):
            assert script in names  # at the root of the zip, as Gradescope requires
            assert zipped.getinfo(script).external_attr >> 16 & stat.S_IXUSR, f"{script} is not executable"
    for needed in ("autograder/rubric.toml", "autograder/calibration.json", "solution/decoder.py",
                   "assignment/train.py", "requirements.txt", "requirements-instructors.txt", "Makefile", "sydney-captions/dataset.json"):
        assert needed in names
    assert not [n for n in names if "__pycache__" in n or n.startswith(("data/cache", "tests/", ".venv"))]
    for script in ("setup.sh", "run_autograder"):
        subprocess.run(["bash", "-n", str(ROOT / "gradescope" / script)], check=True)  # syntax


def test_the_bundle_needs_the_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="SYDNEY_DIR"):
        gradescope.build(tmp_path / "autograder.zip", tmp_path)
    assert not (tmp_path / "autograder.zip").exists()


def _graded_like_the_rubric(tmp_path):
    """results.json of a grading of every rubric test (the visible ones passed, the others failed), as the
    grader writes it, in tmp_path."""
    from autograder.results import MANUAL, GradingResults, TestResult

    rubric = rubric_module.load()
    results = GradingResults("tree", {n: q.title for n, q in rubric.questions.items()}, results=[
        TestResult(t.id, t.question, t.name, 0.0, t.visibility, MANUAL, 0.0, f"graded by hand ({t.points:g} points)")
        if t.manual else
        TestResult(t.id, t.question, t.name, t.points, t.visibility, "passed" if t.visibility == "visible" else "failed",
                   t.points if t.visibility == "visible" else 0.0, "") for t in rubric.tests])
    results.write(tmp_path)
    return rubric


def test_gradescope_gets_no_test_for_the_proofs_and_the_visible_total_of_the_public_tests(tmp_path):
    """Gradescope shows a test without a status as passed: the proofs graded by hand are its manual
    questions, not autograder tests; the autograder's total there is the autograded points, and its
    visible tests are the public tests students run (GitHub Classroom's total)."""
    rubric = _graded_like_the_rubric(tmp_path)
    assert any(t["extra_data"]["manual"] for t in json.loads((tmp_path / "results.json").read_text())["tests"])
    result = subprocess.run([sys.executable, "-m", "autograder.gradescope", "results", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert {t["extra_data"]["id"] for t in results["tests"]} == {t.id for t in rubric.tests if not t.manual}
    assert all(t["status"] in ("passed", "failed") for t in results["tests"])
    assert sum(t["max_score"] for t in results["tests"]) == rubric.max_points() == 100
    assert [t["id"] for t in results["extra_data"]["graded_by_hand"]] == [t.id for t in rubric.tests if t.manual]
    public = sum(t.points for t in rubric.public_tests())
    assert sum(t["max_score"] for t in results["tests"] if t["visibility"] == "visible") == public
    assert results["output"].startswith(f"Visible tests: {public:g} / {public:g} points;"), results["output"]
    assert results["score"] == public


def _reference(bundle, tmp_path):
    root = _unpack_like_gradescope(bundle, tmp_path / "autograder")
    for name in GRADED_FILES:
        shutil.copy(SOLUTION / name, root / "submission" / name)
    return root, {"HW2_ONLY": "3.1a"}  # one question: the whole grade runs in test_autograder


def _skeleton_in_a_nested_folder(bundle, tmp_path):
    root = _unpack_like_gradescope(bundle, tmp_path / "autograder")
    nested = root / "submission" / "homework2-main"  # a repository uploaded with its top folder
    nested.mkdir()
    for name in GRADED_FILES:
        shutil.copy(ASSIGNMENT / name, nested / name)
    return root, {}


# test: how its /autograder folder is made (the root, run_autograder's environment), in a folder of its own
RUNS = {"test_run_autograder_grades_the_reference": _reference,
        "test_run_autograder_grades_the_skeleton_in_a_nested_folder": _skeleton_in_a_nested_folder}


@pytest.fixture(scope="module")
def graded(bundle, tmp_path_factory, request):
    """{test: (results.json, stdout, the /autograder folder)} of the RUNS selected (-k), both at once (each
    grading keeps about one core busy)."""
    from concurrent.futures import ThreadPoolExecutor

    runs = {test: RUNS[test](bundle, tmp_path_factory.mktemp(test[5:40])) for test in selected_tests(request, *RUNS)}
    with ThreadPoolExecutor(2) as pool:
        futures = {test: pool.submit(_run, root, **env) for test, (root, env) in runs.items()}
        return {test: (*future.result(), runs[test][0]) for test, future in futures.items()}


@pytest.mark.slow
def test_run_autograder_grades_the_reference(graded):
    results, _, root = graded["test_run_autograder_grades_the_reference"]
    rubric = rubric_module.load()
    assert results["score"] == rubric.max_points("3.1a") == 22
    assert len(results["tests"]) == len(rubric.select(["3.1a"]))
    assert all(t["score"] == t["max_score"] for t in results["tests"])
    assert (root / "results" / "feedback.md").is_file()


@pytest.mark.slow
def test_run_autograder_grades_the_skeleton_in_a_nested_folder(graded):
    results, stdout, _ = graded["test_run_autograder_grades_the_skeleton_in_a_nested_folder"]
    rubric = rubric_module.load()
    assert "homework2-main" in stdout
    assert results["score"] == 0
    autograded = [t for t in rubric.tests if not t.manual]  # the proofs are Gradescope's manual questions
    assert [t["extra_data"]["id"] for t in results["tests"]] == [t.id for t in autograded]
    by_visibility = {t["visibility"] for t in results["tests"]}
    assert by_visibility == {test.visibility for test in autograded}
    assert all(t["status"] == "failed" and "not implemented yet" in t["output"] for t in results["tests"]), \
        [t["output"][:200] for t in results["tests"] if "not implemented yet" not in t["output"]]
    public = sum(t.points for t in rubric.public_tests())
    assert results["output"].startswith(f"Visible tests: 0 / {public:g} points;"), results["output"]
