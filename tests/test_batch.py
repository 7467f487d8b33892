"""Batch grading of a class: folders and zips, a gradebook, statuses, and resuming."""

import csv
import shutil
import zipfile

from autograder.batch import grade_all
from tests.conftest import SOLUTION


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


def test_grade_all_writes_a_gradebook_and_resumes(tmp_path):
    out = tmp_path / "grades"
    path, rows = grade_all(_class(tmp_path), out, jobs=2, only=["3.1a"], log=lambda *_: None)
    with open(path) as f:
        book = {row["student"]: row for row in csv.DictReader(f)}
    assert set(book) == {"ada", "grace", "linus", "empty", "corrupt"}
    assert book["ada"]["3.1a"] == book["grace"]["3.1a"] == "22" and book["ada"]["status"] == "graded"
    assert book["linus"]["3.1a"] == "0" and book["linus"]["status"] == "import error"
    assert "SystemExit" in (out / "linus" / "feedback.md").read_text()
    assert book["empty"]["status"] == "missing files" and book["empty"]["total"] == "0"
    assert book["corrupt"]["status"] == "unreadable zip"
    for student in ("ada", "grace", "linus", "empty"):
        assert (out / student / "results.json").is_file() and (out / student / "feedback.md").is_file()

    stamp = (out / "ada" / "results.json").stat().st_mtime_ns
    _, rows_again = grade_all(tmp_path / "submissions", out, jobs=2, only=["3.1a"], log=lambda *_: None)
    assert (out / "ada" / "results.json").stat().st_mtime_ns == stamp, "a graded student was graded again"
    assert rows_again["ada"] == rows["ada"]
