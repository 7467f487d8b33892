"""Grade a whole class: every tree under a folder, JOBS at a time, with a gradebook.

    make grade-all SUBMISSIONS=<dir> [JOBS=2] [OUT=<dir>] [ONLY=2.2] [REGRADE=1]
    python -m autograder grade-all <dir> --out <dir> --jobs 2 [--only ...] [--regrade]

`<dir>` holds one folder per student (laid out like assignment/) or one `<student>.zip`.
Each student gets `<out>/<student>/results.json` and `feedback.md` (the name made safe for a
folder, and unique: `alice/` and `alice.zip` become `alice` and `alice-2`); `<out>/gradebook.csv`
has one row per student: points per question, total, status (one of STATUSES), and where the
code ran (`sandbox`: bubblewrap, user, or UNSANDBOXED). Zips are checked before extraction
(members, sizes, names, no links). Whatever goes wrong with one submission becomes its row's
status (`grader error` with the reason in `<out>/<student>/error.txt`) and the batch goes on; a
grader that cannot isolate student code stops before grading anyone. A run that is interrupted
resumes: students whose results.json exists are skipped unless --regrade. Data and features are cached
on disk once for the whole batch (`make grade-all` prepares them first).
"""

import csv
import json
import multiprocessing
import os
import re
import shutil
import stat
import tempfile
import zipfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from autograder import rubric as rubric_module
from autograder import sandbox, selfcheck
from autograder.grade import grade
from autograder.submission import GRADED_FILES, locate_tree

STATUSES = ("graded", "missing files", "refused file", "syntax error", "import error", "timed out", "crashed",
            "incomplete", "unreadable zip", "grader error")
# a student's status: the first of these reasons found among their tests (results.json's typed reasons)
STATUS_OF_REASON = {"missing file": "missing files", "refused file": "refused file", "syntax error": "syntax error",
                    "import error": "import error", "timed out": "timed out", "crashed": "crashed",
                    "grader error": "grader error"}
RESERVED = {"gradebook.csv", "report.html", "report", "similarity"}  # names of the batch's own outputs
MAX_MEMBERS, MAX_MEMBER_BYTES, MAX_TOTAL_BYTES = 2000, 50 * 2**20, 200 * 2**20  # a student's zip


class UnsafeZip(ValueError):
    """A zip the grader refuses to extract; the message says why."""


def safe_name(name, taken):
    """`name` as a folder name of the output: letters, digits, '.', '_' and '-', not a name of the
    batch's own outputs, and distinct from every name in `taken` (alice/ and alice.zip: alice, alice-2)."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".-")[:100] or "student"
    if base in RESERVED:
        base = f"{base}-student"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def find_submissions(folder):
    """{student: path} for every sub-folder and .zip of `folder` (sorted by name), the student's name
    made safe for a folder name and unique."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of submissions (one folder or .zip per student)")
    found = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.suffix == ".zip" and not path.is_dir():
            found[safe_name(path.stem, found)] = path
        elif path.is_dir() or path.is_symlink():
            found[safe_name(path.name, found)] = path
    return found


def _unpack(archive, into):
    """Extract a student's zip, checked first (members, sizes, names, no links), never beyond the
    limits whatever its headers claim; return the folder that holds the graded files."""
    into = Path(into)
    with zipfile.ZipFile(archive) as zipped:
        members = zipped.infolist()
        if len(members) > MAX_MEMBERS:
            raise UnsafeZip(f"{len(members):,} files in the archive (at most {MAX_MEMBERS:,})")
        if sum(m.file_size for m in members) > MAX_TOTAL_BYTES:
            raise UnsafeZip(f"the archive unpacks to more than {MAX_TOTAL_BYTES // 2**20} MB")
        for member in members:
            name = member.filename
            parts = Path(name.replace("\\", "/")).parts
            if name.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", name) or "\0" in name:
                raise UnsafeZip(f"unsafe path {name[:100]!r} in the archive")
            if stat.S_ISLNK(member.external_attr >> 16):
                raise UnsafeZip(f"{name[:100]!r} is a symbolic link; zip the files themselves")
        total = 0
        for member in members:
            target = into / member.filename
            if member.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            with zipped.open(member) as source, open(target, "xb") as out:
                while chunk := source.read(1 << 20):
                    written += len(chunk)
                    total += len(chunk)
                    if written > MAX_MEMBER_BYTES or total > MAX_TOTAL_BYTES:
                        raise UnsafeZip(f"{member.filename[:100]!r} unpacks to more than its limit")
                    out.write(chunk)
    return locate_tree(into)


def status_of(results, tree):
    """The gradebook's status of a grading, from the typed reasons of its tests."""
    reasons = {t.get("extra_data", {}).get("reason") for t in results["tests"]}
    if any(not os.path.lexists(Path(tree) / name) for name in GRADED_FILES):
        reasons.add("missing file")
    for reason, status in STATUS_OF_REASON.items():
        if reason in reasons:
            return status
    if results.get("extra_data", {}).get("incomplete"):
        return "incomplete"
    return "graded"


def _error(target, status, text):
    target.mkdir(parents=True, exist_ok=True)
    (target / "error.txt").write_text(text + "\n", errors="replace")
    (target / "status.txt").write_text(status + "\n")
    return None, status


def _grade_one(path, target, only, allow_unsandboxed, check):
    """(results, status) of one submission; every failure specific to it becomes its status."""
    with tempfile.TemporaryDirectory(prefix="hw2-submission-") as tmp:
        if path.is_symlink():
            return _error(target, "grader error", f"{path.name} is a symbolic link; the grader does not follow links")
        tree = path
        if path.suffix == ".zip" and not path.is_dir():
            try:
                tree = _unpack(path, tmp)
            except (zipfile.BadZipFile, UnsafeZip, OSError, EOFError, ValueError, NotImplementedError) as error:
                return _error(target, "unreadable zip", f"{path.name} could not be unpacked: {error}")
        tree = locate_tree(tree)
        results = grade(tree, target, only, log=lambda *_: None, allow_unsandboxed=allow_unsandboxed,
                        check=check).to_gradescope()
        status = status_of(results, tree)
    (target / "status.txt").write_text(status + "\n")
    return results, status


def grade_student(student, path, out, only, allow_unsandboxed=False, check=None):
    target = Path(out) / student
    try:
        results, status = _grade_one(Path(path), target, only, allow_unsandboxed, check)
    except (sandbox.SandboxError, selfcheck.EnvironmentBroken, KeyboardInterrupt):
        raise  # the environment, not this student: the batch stops
    except Exception as error:  # anything else specific to this submission: its row says so, the batch goes on
        results, status = _error(target, "grader error", f"grading stopped on this submission: "
                                                         f"{type(error).__name__}: {str(error)[:2000]}")
    return student, results, status


def write_gradebook(out, rows, questions):
    path = Path(out) / "gradebook.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", *questions, "total", "status", "sandbox"])
        for student in sorted(rows):
            writer.writerow([student, *rows[student]])
    return path


def _row(results, status, questions):
    points = (results or {}).get("extra_data", {}).get("points_by_question", {})  # as the grading computed them
    per_question = {q: float(points.get(q, 0.0)) for q in questions}
    where = (results or {}).get("extra_data", {}).get("sandbox", "")
    return [*(f"{per_question[q]:g}" for q in questions), f"{sum(per_question.values()):g}", status,
            "UNSANDBOXED" if where.startswith("NONE") else where.split(" (")[0]]


def _previous(out, student, questions, selected):
    """The gradebook row of a student graded to the end by an earlier run of the same selection of
    tests, or None."""
    try:
        results = json.loads((out / student / "results.json").read_text())
        extra = results.get("extra_data", {})
        if (extra.get("interrupted") or extra.get("selected_tests") != list(selected)
                or extra.get("budget", "grading") != os.environ.get("HW2_BUDGET", "grading")):
            return None
        return _row(results, (out / student / "status.txt").read_text().strip(), questions)
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def grade_all(submissions, out, jobs=2, only=None, regrade=False, log=print, allow_unsandboxed=False):
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    layer = sandbox.layer(allow_unsandboxed)  # SandboxError before anyone is graded
    check = selfcheck.run(allow_unsandboxed)  # EnvironmentBroken before anyone is graded
    if layer.name == "user":  # no namespaces: the children's uid must not read the class's results
        os.chmod(out, 0o700)
    if layer.name == "user" and sandbox.readable_by(layer.uid, [str(Path(submissions).resolve())]):
        raise sandbox.SandboxError(f"the submissions ({submissions}) are readable by uid {layer.uid}, which student "
                                   f"code runs as here: one student's code could read the others'. Fix: "
                                   f"`chmod -R go-rwx {submissions}`")
    log(f"student code runs in: {layer.description}")
    rubric = rubric_module.load()
    selected = [t.id for t in rubric.select(only)]
    questions = list(dict.fromkeys(t.question for t in rubric.select(only)))
    found = find_submissions(submissions)
    rows, todo = {}, {}
    for student, path in found.items():
        previous = None if regrade else _previous(out, student, questions, selected)
        if previous is not None:
            rows[student] = previous
        else:
            if regrade:
                shutil.rmtree(out / student, ignore_errors=True)
            todo[student] = path
    log(f"{len(found)} submissions: {len(rows)} already graded (--regrade to redo), {len(todo)} to grade, {jobs} at a time")
    # one grading process per job: each seeds torch for its own reference computations
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    with pool, tqdm(total=len(todo), unit="student") as bar:
        futures = {pool.submit(grade_student, student, path, out, only, allow_unsandboxed, check): student
                   for student, path in todo.items()}
        for future in as_completed(futures):
            student = futures[future]
            try:
                student, results, status = future.result()
            except (sandbox.SandboxError, selfcheck.EnvironmentBroken):
                raise
            except Exception as error:  # the worker process itself died: this student's row says so
                results, status = _error(out / student, "grader error", f"the grading process stopped: "
                                                                        f"{type(error).__name__}: {error}")
            rows[student] = _row(results, status, questions)
            write_gradebook(out, rows, questions)  # after every student, so an interruption loses nothing
            bar.set_postfix_str(f"{student}: {rows[student][-3]} ({status})")
            bar.update()
    return write_gradebook(out, rows, questions), rows
