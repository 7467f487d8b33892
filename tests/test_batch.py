"""Batch grading of a class: folders and zips, a gradebook, statuses, and resuming."""

import csv
import shutil
import zipfile

import pytest

from autograder.batch import grade_all
from tests.conftest import SOLUTION


ONLY = ["3.1a-output-shape", "3.1a-equivalence"]  # 4 + 6 points of one question, no training


def _class(tmp_path):
    root = tmp_path / "submissions"
    root.mkdir()
    good = root / "ada"
    shutil.copytree(SOLUTION, good, ignore=shutil.ignore_patterns("__pycache__", "utils.py", "train.py"))
    with zipfile.ZipFile(root / "grace.zip", "w") as zipped:  # a zip with a top folder, as students make them
        for path in good.iterdir():
            zipped.write(path, f"hw2/{path.name}")
    broken = root / "linus"
    shutil.copytree(good, broken)
    (broken / "decoder.py").write_text("import sys\nsys.exit(3)\n")
    (root / "empty").mkdir()
    (root / "corrupt.zip").write_bytes(b"not a zip")
    return root


@pytest.mark.slow
def test_grade_all_writes_a_gradebook_and_resumes(tmp_path):
    out = tmp_path / "grades"
    path, rows = grade_all(_class(tmp_path), out, jobs=2, only=ONLY, log=lambda *_: None)
    with open(path) as f:
        book = {row["student"]: row for row in csv.DictReader(f)}
    assert set(book) == {"ada", "grace", "linus", "empty", "corrupt"}
    assert book["ada"]["3.1a"] == book["grace"]["3.1a"] == "10" and book["ada"]["status"] == "graded"
    assert book["linus"]["3.1a"] == "0" and book["linus"]["status"] == "import error"
    assert "SystemExit" in (out / "linus" / "feedback.md").read_text()
    assert book["empty"]["status"] == "missing files" and book["empty"]["total"] == "0"
    assert book["corrupt"]["status"] == "unreadable zip"
    for student in ("ada", "grace", "linus", "empty"):
        assert (out / student / "results.json").is_file() and (out / student / "feedback.md").is_file()

    stamp = (out / "ada" / "results.json").stat().st_mtime_ns
    _, rows_again = grade_all(tmp_path / "submissions", out, jobs=2, only=ONLY, log=lambda *_: None)
    assert (out / "ada" / "results.json").stat().st_mtime_ns == stamp, "a graded student was graded again"
    assert rows_again["ada"] == rows["ada"]


def test_a_students_folder_does_not_depend_on_who_else_is_in_the_class(tmp_path):
    """Names keep their letters, whatever the script; a name that had to change gets a hash of the
    original, so adding a classmate never moves anyone to another folder."""
    from autograder.batch import find_submissions, safe_name

    root = tmp_path / "class"
    (root / "李娜").mkdir(parents=True)
    alone = find_submissions(root)
    (root / "张伟").mkdir()
    (root / "Jose Maria").mkdir()
    (root / "jose_maria").mkdir()
    (root / "notes.txt").write_text("not a submission")
    (root / ".DS_Store").write_text("")
    logged = []
    together = find_submissions(root, logged.append)
    assert {v.name: k for k, v in together.items()}["李娜"] == {v.name: k for k, v in alone.items()}["李娜"] == "李娜"
    assert len(set(together)) == 4 and together["jose_maria"].name == "jose_maria"
    assert safe_name("Jose Maria", {}).startswith("Jose_Maria-") and safe_name("gradebook.csv", {}) != "gradebook.csv"
    assert "notes.txt" in logged[0] and ".DS_Store" in logged[0]
    assert safe_name("Alice", {"alice"}) == "Alice-2", "names differing in case only would share a folder on macOS"


def test_only_a_final_grading_of_the_same_submission_is_kept(tmp_path):
    """A stored grading is reused only for the same submission, the same tests and budget, when it
    ran to the end: never incomplete, interrupted or a grader error."""
    import json
    import os

    from autograder.batch import _previous

    out, folder = tmp_path / "out", tmp_path / "out" / "ada"
    folder.mkdir(parents=True)
    extra = {"selected_tests": ["1.1-output-sizes"], "budget": os.environ.get("HW2_BUDGET", "grading"),
             "points_by_question": {"1.1": 2.0}}

    def stored(submission="ada", status="graded", **more):
        (folder / "submission.txt").write_text(submission + "\n")
        (folder / "status.txt").write_text(status + "\n")
        (folder / "results.json").write_text(json.dumps({"extra_data": {**extra, **more}}))
        return _previous(out, "ada", tmp_path / "class" / "ada", ["1.1"], ["1.1-output-sizes"])

    assert stored()[:3] == ["2", "2", "graded"]
    assert stored(submission="ada.zip") is None
    assert stored(status="grader error") is None
    assert stored(status="incomplete") is None and stored(incomplete=True) is None
    assert stored(interrupted=True) is None
    assert stored(selected_tests=["1.1-parameter-counts"]) is None


def test_a_zip_made_on_windows_unpacks_into_its_folders(tmp_path):
    """PowerShell's Compress-Archive writes `hw2\\q1.ipynb`: the files land in hw2/, not beside it."""
    from autograder.batch import _unpack

    archive = tmp_path / "win.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in SOLUTION.iterdir():
            if path.is_file():
                zipped.writestr(f"hw2\\{path.name}", path.read_bytes())
    (tmp_path / "into").mkdir()
    tree = _unpack(archive, tmp_path / "into")
    assert tree == tmp_path / "into" / "hw2" and (tree / "q1.ipynb").is_file()


def test_a_grading_that_is_not_final_has_no_total_in_the_gradebook():
    """A grading platform importing the gradebook must record no grade for a grader error or an
    incomplete grading, rather than the points the grader could not give."""
    from autograder.batch import _row

    results = {"extra_data": {"points_by_question": {"1.1": 4.0, "3.1a": 17.0}, "sandbox": "bubblewrap (x)"}}
    assert _row(results, "graded", ["1.1", "3.1a"], "ada") == ["4", "17", "21", "graded", "bubblewrap", "ada"]
    assert _row(results, "incomplete", ["1.1", "3.1a"], "ada")[:3] == ["4", "17", ""]
    assert _row(None, "grader error", ["1.1", "3.1a"], "ada")[:3] == ["", "", ""]
    assert _row(results, "import error", ["1.1", "3.1a"], "ada")[2] == "21"  # the student's own mistake: a total
