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


# ---- what a grading returns is checked, and stored under the client's own name ----------------------

def forged(student, only=("1.1",), tamper=None, status="graded"):
    """A Graded as a grading process (or a worker) could return it for `student`: full marks on the tests of
    `only`, as this grader writes them, changed by `tamper` (results.json as a dict)."""
    import json

    from autograder import rubric
    from autograder.batch import Graded
    from autograder.results import PASSED, GradingResults, TestResult

    tests = rubric.load().select(list(only))
    results = GradingResults(f"/submissions/{student}", {}, sandbox="bubblewrap (namespaces)",
                             selection=tuple(t.id for t in tests))
    results.results = [TestResult(t.id, t.question, t.name, t.points, t.visibility, PASSED, t.points) for t in tests]
    data = results.to_gradescope()
    if tamper is not None:
        tamper(data)
    return Graded(student, status, {"results.json": json.dumps(data), "feedback.md": "# feedback\n",
                                    "status.txt": status + "\n"}, data)


def _add_test(data):
    data["tests"].append({**data["tests"][0], "extra_data": {**data["tests"][0]["extra_data"], "id": "9.9-free"}})


def _over_max(data):
    data["tests"][0]["score"] = 100.0
    data["score"] += 98.0
    data["extra_data"]["points_by_question"]["1.1"] += 98.0


def _points_not_of_tests(data):
    data["extra_data"]["points_by_question"]["1.1"] = 9.0


def _unknown_reason(data):
    data["tests"][0]["extra_data"]["reason"] = "bribed"


def _unsandboxed(data):
    data["extra_data"]["sandbox"] = "NONE: student code ran with the grader's privileges (--unsandboxed)"


@pytest.mark.parametrize("graded, why", [
    (lambda: forged("mallory", tamper=_add_test), "test '9.9-free' is not one of the tests graded"),
    (lambda: forged("mallory", tamper=_over_max), "has 100 of 2 points"),
    (lambda: forged("mallory", tamper=_points_not_of_tests), "question 1.1 has 9 points, its tests 4"),
    (lambda: forged("mallory", tamper=_unknown_reason), "unknown reason 'bribed'"),
    (lambda: forged("mallory", tamper=lambda d: d["tests"][0]["extra_data"].update(reason=[])), "unknown reason '[]'"),
    (lambda: forged("mallory", tamper=lambda d: d["tests"].append(["not", "a", "test"])), "has no extra_data"),
    (lambda: forged("mallory", tamper=_unsandboxed), "ran unsandboxed"),
    (lambda: forged("../x/authorized_keys"), "it is named '../x/authorized_keys', not 'mallory'"),
    (lambda: forged("mallory", status="brilliant"), "unknown status 'brilliant'"),
    (lambda: forged("mallory", only=("1.1", "1.2")), "test '1.2-parameter-counts' is not one of the tests graded"),
    (lambda: forged("mallory", tamper=lambda d: d["extra_data"].update(selected_tests=[])), "selection of tests"),
])
def test_a_grading_that_is_not_of_the_tests_asked_for_is_a_grader_error_row(graded, why):
    """The client checks what a grading process or a worker returns against the rubric and the selection;
    a result it refuses is the student's `grader error` row naming why, never their points."""
    from autograder import rubric
    from autograder.batch import checked

    tests = rubric.load().select(["1.1"])
    assert checked("mallory", forged("mallory"), tests).status == "graded"  # the honest one is kept
    refused = checked("mallory", graded(), tests)
    assert refused.status == "grader error" and refused.results is None
    assert why in refused.files["error.txt"], refused.files["error.txt"]


def test_a_grading_returns_only_its_own_files_and_the_client_writes_under_its_own_name(tmp_path):
    """A file name from elsewhere (a path, an authorized_keys) is refused, and store() writes only a plain
    child of --out whatever it is given."""
    from autograder import rubric
    from autograder.batch import Graded, checked, store

    tests = rubric.load().select(["1.1"])
    sneaky = forged("mallory")
    sneaky.files["../../authorized_keys"] = "ssh-ed25519 AAAA mallory"
    refused = checked("mallory", sneaky, tests)
    assert refused.status == "grader error"
    assert "unexpected file(s) '../../authorized_keys'" in refused.files["error.txt"]
    huge = forged("mallory")
    huge.files["feedback.md"] = "x" * (9 * 2**20)
    assert "feedback.md has" in checked("mallory", huge, tests).files["error.txt"]

    out = tmp_path / "out"
    for name in ("../x", "a/b", "..", ".hidden", "", "gradebook.csv", "/etc"):
        with pytest.raises(ValueError, match="not a plain folder name"):
            store(out, name, Graded.error(name, "grader error", "no"), "x")
    store(out, "mallory", refused, "mallory")
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["error.txt", "status.txt", "submission.txt"]


def test_gradebook_cells_that_would_be_formulas_are_text(tmp_path):
    """A submission named like a spreadsheet formula lands as text (a leading '), numbers stay numbers;
    the same helper guards report-tests.csv and the similarity CSVs."""
    from autograder.batch import INSECURE_MARK, _row, spreadsheet_text, write_gradebook

    results = {"extra_data": {"points_by_question": {"1.1": 4.0}, "sandbox": "bubblewrap (x)"}}
    rows = {"_HYPERLINK-1a2b3c": _row(results, "graded", ["1.1"], '=HYPERLINK("http://evil","open")'),
            "ada": _row(results, "graded", ["1.1"], "ada", insecure=True)}
    with open(write_gradebook(tmp_path, rows, ["1.1"]), newline="") as f:
        book = {row["student"]: row for row in csv.DictReader(f)}
    assert book["_HYPERLINK-1a2b3c"]["submission"] == "'=HYPERLINK(\"http://evil\",\"open\")"
    assert book["_HYPERLINK-1a2b3c"]["total"] == "4" and book["_HYPERLINK-1a2b3c"]["1.1"] == "4"
    assert book["ada"]["sandbox"] == f"bubblewrap, {INSECURE_MARK}"
    for text in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert spreadsheet_text(text) == "'" + text
    assert spreadsheet_text("ada") == "ada" and spreadsheet_text("3.1a") == "3.1a"


def test_a_grading_stopped_at_its_bounds_has_no_points_and_says_why():
    """Killed for time during the tests: `timed out`; before them, or for memory: `grader error`; either
    way no points and no total in the gradebook, and the reason names the limit."""
    from autograder.batch import DEADLINE_MARGIN_SECONDS, _row, _stopped

    request = {"kind": "grade", "student": "mallory"}
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        early = _stopped(request, folder, ("time", 600.0), 3 * 2**30)
        (Path(folder) / "out").mkdir()
        (Path(folder) / "out" / "results.json").write_text("{}")
        during = _stopped(request, folder, ("time", 600.0), 3 * 2**30)
        memory = _stopped(request, folder, ("memory", 3.5 * 2**30), 3 * 2**30)
    assert early.status == "grader error" and "before the tests" in early.files["error.txt"]
    assert during.status == "timed out" and f"plus {DEADLINE_MARGIN_SECONDS} s" in during.files["error.txt"]
    assert memory.status == "grader error" and "limit of 3 GB (HW2_GRADER_MEMORY_GB)" in memory.files["error.txt"]
    assert _row(None, "timed out", ["1.1"], "mallory")[:2] == ["", ""]
    assert _row(None, "unreadable zip", ["1.1"], "mallory")[:2] == ["0", "0"]


def test_the_grading_process_limits_come_from_the_grading_settings():
    from autograder.batch import DEADLINE_MARGIN_SECONDS, grading_limits
    from autograder.rubric import RubricError

    seconds, memory = grading_limits({"HW2_TOTAL_SECONDS": "30", "HW2_GRADER_MEMORY_GB": "2.5"})
    assert seconds == 30 + DEADLINE_MARGIN_SECONDS and memory == int(2.5 * 2**30)
    with pytest.raises(RubricError, match="HW2_GRADER_MEMORY_GB='lots'"):
        grading_limits({"HW2_GRADER_MEMORY_GB": "lots"})


HANG = '''"""Loaded by the grading processes of a test (PYTHONPATH): the grading of `mallory` hangs after its first
test, in the grading process itself (as a grader whose decoding of an answer never ends would)."""
import json
import time

_dumps, _written = json.dumps, []


def dumps(obj, *args, **kwargs):
    if isinstance(obj, dict) and "mallory" in str(obj.get("extra_data", {}).get("tree", "")):
        _written.append(1)
        if len(_written) == 2:
            time.sleep(3600)
    return _dumps(obj, *args, **kwargs)


json.dumps = dumps
'''


@pytest.mark.slow
def test_a_grading_process_that_hangs_is_killed_and_the_batch_goes_on(tmp_path, monkeypatch):
    """The grading of mallory hangs in the grading process: it is killed at its deadline (the total time
    plus the margin), mallory's row is `timed out` with the reason, and the next student is graded; the
    submission named like a formula is text in the gradebook."""
    from autograder import batch

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HANG)
    root = tmp_path / "submissions"
    keep = shutil.ignore_patterns("__pycache__", "utils.py", "train.py")
    for name in ('=HYPERLINK("evil.example","open")', "mallory", "zoe"):  # graded in this order, one at a time
        shutil.copytree(SOLUTION, root / name, ignore=keep)
    monkeypatch.setenv("PYTHONPATH", str(hook))
    monkeypatch.setenv("HW2_TOTAL_SECONDS", "10")  # a grading of 1.1 takes a few seconds: the deadline is 20 s
    monkeypatch.setattr(batch, "DEADLINE_MARGIN_SECONDS", 10)
    out = tmp_path / "grades"
    path, rows = grade_all(root, out, jobs=1, only=["1.1"], log=lambda *_: None)
    with open(path, newline="") as f:
        book = {row["submission"]: row for row in csv.DictReader(f)}
    assert book["mallory"]["status"] == "timed out" and book["mallory"]["total"] == ""
    error = (out / "mallory" / "error.txt").read_text()
    assert "still running after 20 s" in error and "during the tests of this submission" in error
    assert book["zoe"]["status"] == "graded" and book["zoe"]["total"] == "4"
    formula = book["'=HYPERLINK(\"evil.example\",\"open\")"]
    assert formula["status"] == "graded" and formula["total"] == "4"


@pytest.mark.slow
def test_a_single_grading_stops_past_its_memory_limit(tmp_path):
    """`python -m autograder grade` watches its own memory: past HW2_GRADER_MEMORY_GB it stops, naming the limit."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    done = subprocess.run([sys.executable, "-m", "autograder", "grade", str(SOLUTION), "--only", "1.1", "--out",
                           str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HW2_GRADER_MEMORY_GB": "0.2"})
    assert done.returncode != 0
    assert "more than its limit of 0.2 GB (HW2_GRADER_MEMORY_GB); grading stopped" in done.stderr


def test_the_grading_memory_counts_its_forked_workers_and_not_other_children():
    """The forked workers of a parallel grading decode and check the children's answers: their memory is
    the grading process's (Pss: shared pages once); a child running another command (the sandboxed
    child has its own limit) is not."""
    import os
    import subprocess as sp
    import sys
    import time

    from autograder.batch import _resident_bytes, _workers

    read, write = os.pipe()
    worker = os.fork()
    if worker == 0:  # a worker: 200 MB of its own
        block = bytearray(200 * 2**20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        os.write(write, b"x")
        time.sleep(30)
        os._exit(0)
    other = sp.Popen([sys.executable, "-c", "b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); "
                                            "import time; time.sleep(30)"])
    try:
        os.read(read, 1)
        time.sleep(1)
        assert _workers(os.getpid()) == [worker]
        mine = _resident_bytes(os.getpid())
        os.kill(worker, 9)
        os.waitpid(worker, 0)
        assert mine - _resident_bytes(os.getpid()) > 150 * 2**20
    finally:
        other.kill()
        other.wait()
        os.close(read)
        os.close(write)
