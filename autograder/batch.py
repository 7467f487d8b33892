"""Grade a whole class: every tree under a folder, JOBS at a time, with a gradebook.

    make grade-all SUBMISSIONS=<dir> [JOBS=2] [OUT=<dir>] [ONLY=2.2] [REGRADE=1]
    python -m autograder grade-all <dir> --out <dir> --jobs 2 [--only ...] [--regrade]

`<dir>` holds one folder per student (laid out like assignment/) or one `<student>.zip`.
Each student gets `<out>/<student>/results.json` and `feedback.md`; `<out>/gradebook.csv` has
one row per student: points per question, total, status. A run that is interrupted resumes:
students whose results.json exists are skipped unless --regrade. Data and features are cached
on disk once for the whole batch (`make grade-all` prepares them first).
"""

import csv
import json
import shutil
import tempfile
import zipfile
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from autograder import rubric as rubric_module
from autograder.grade import grade
from autograder.submission import GRADED_FILES, locate_tree

STATUSES = ("graded", "missing files", "timed out", "crashed", "incomplete", "unreadable zip")


def find_submissions(folder):
    """{student: path} for every sub-folder and .zip of `folder`, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of submissions (one folder or .zip per student)")
    found = {}
    for path in sorted(folder.iterdir()):
        if path.is_dir() and not path.name.startswith("."):
            found[path.name] = path
        elif path.suffix == ".zip":
            found[path.stem] = path
    return found


def _unpack(archive, into):
    """Extract a student's zip; return the folder that holds the graded files."""
    with zipfile.ZipFile(archive) as zipped:
        for member in zipped.namelist():  # refuse paths that would leave the folder
            if member.startswith("/") or ".." in Path(member).parts:
                raise zipfile.BadZipFile(f"unsafe path {member!r} in the archive")
        zipped.extractall(into)
    return locate_tree(into)


def status_of(results, tree):
    outputs = [t["output"] for t in results["tests"]]
    if any(not (Path(tree) / name).is_file() for name in GRADED_FILES):
        return "missing files"
    if any("timed out" in o for o in outputs):
        return "timed out"
    if any("grading process stopped" in o for o in outputs):
        return "crashed"
    if results.get("extra_data", {}).get("incomplete"):
        return "incomplete"
    return "graded"


def grade_student(student, path, out, only):
    target = out / student
    with tempfile.TemporaryDirectory(prefix="hw2-submission-") as tmp:
        tree = path
        if path.suffix == ".zip":
            try:
                tree = _unpack(path, tmp)
            except (zipfile.BadZipFile, OSError) as error:
                target.mkdir(parents=True, exist_ok=True)
                (target / "error.txt").write_text(f"{path.name} could not be unpacked: {error}\n")
                return student, None, "unreadable zip"
        results = grade(tree, target, only, log=lambda *_: None).to_gradescope()
        status = status_of(results, tree)
    (target / "status.txt").write_text(status + "\n")
    return student, results, status


def write_gradebook(out, rows, questions):
    path = Path(out) / "gradebook.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", *questions, "total", "status"])
        for student in sorted(rows):
            writer.writerow([student, *rows[student]])
    return path


def _row(results, status, questions):
    per_question = {q: 0.0 for q in questions}
    for test in (results or {}).get("tests", []):
        per_question[test["number"]] += test["score"]
    return [*(f"{per_question[q]:g}" for q in questions), f"{sum(per_question.values()):g}", status]


def grade_all(submissions, out, jobs=2, only=None, regrade=False, log=print):
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rubric = rubric_module.load()
    questions = [q for q in rubric.questions if only is None or q in only]
    found = find_submissions(submissions)
    rows, todo = {}, {}
    for student, path in found.items():
        done = out / student / "results.json"
        if done.is_file() and (out / student / "status.txt").is_file() and not regrade:
            rows[student] = _row(json.loads(done.read_text()), (out / student / "status.txt").read_text().strip(),
                                 questions)
        else:
            if regrade:
                shutil.rmtree(out / student, ignore_errors=True)
            todo[student] = path
    log(f"{len(found)} submissions: {len(rows)} already graded (--regrade to redo), {len(todo)} to grade, {jobs} at a time")
    # one grading process per job: each seeds torch for its own reference computations
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    with pool, tqdm(total=len(todo), unit="student") as bar:
        futures = [pool.submit(grade_student, student, path, out, only) for student, path in todo.items()]
        for future in as_completed(futures):
            student, results, status = future.result()
            rows[student] = _row(results, status, questions)
            write_gradebook(out, rows, questions)  # after every student, so an interruption loses nothing
            bar.set_postfix_str(f"{student}: {rows[student][-2]} ({status})")
            bar.update()
    return write_gradebook(out, rows, questions), rows
