"""Grade a whole class: every tree under a folder, JOBS at a time or on a Dask cluster, with a gradebook.

    make grade-all SUBMISSIONS=<dir> [JOBS=2 | SCHEDULER=tls://<host>:8786 TLS=<certs>] [OUT=<dir>] [ONLY=2.2]
    python -m autograder grade-all <dir> --out <dir> --jobs 2 [--scheduler ADDRESS --tls DIR] [--only ...] [--regrade]

`<dir>` holds one folder per student (laid out like assignment/) or one `<student>.zip`.
Each student is graded by a fresh grading process (`python -m autograder.batch`, grade_student),
here or on a Dask worker (autograder/cluster.py), which returns the student's files as a Graded;
this process alone checks them (`checked`: the tests asked for, points within the rubric's, known
files) and writes them to `<out>/<student>/` (results.json, feedback.md, status.txt) under its own
name for the student (made safe for a folder, and unique: `alice/` and `alice.zip` become `alice`
and `alice-2`), replacing the folder whole. A grading process is killed, with its process group,
past the grading's total time plus DEADLINE_MARGIN_SECONDS or past HW2_GRADER_MEMORY_GB of resident
memory, and that student's row says why. `<out>/gradebook.csv` has one row per student: points per
question, total, status (one of STATUSES), where the code ran (`sandbox`: bubblewrap, user, or
UNSANDBOXED; INSECURE CLUSTER when graded through a plain tcp:// scheduler) and the submission's own
name (`<out>/<student>/submission.txt` too); no text cell can be read as a formula. Zips are
checked before extraction (members, sizes, names, no links). Whatever goes
wrong with one submission becomes its row's status (`grader error` with the reason in
`<out>/<student>/error.txt`) and the batch goes on; a grader that cannot isolate student code
stops before grading anyone. A run that is interrupted resumes: students graded to the end by the
same tests and budget are kept unless --regrade. Data and features are cached on disk once for
the whole batch (`make grade-all` prepares them first).
"""
import contextlib
import csv
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from autograder import rubric as rubric_module
from autograder import sandbox, selfcheck, thresholds
from autograder.checks import DATA_MISSING, GRADER_ERROR, INTERRUPTED, all_checks
from autograder.child.compare import (CRASHED, FAILED, IMPORT_ERROR, MISSING_FILE, PASSED, REASONS, REFUSED_FILE,
                                      SYNTAX_ERROR, TIMED_OUT)
from autograder.grade import grade, interrupt_on_sigterm, time_settings
from autograder.results import STUDENT_COPIES
from autograder.submission import GRADED_FILES, locate_tree

STATUSES = ("graded", "missing files", "refused file", "syntax error", "import error", "timed out", "crashed",
            "incomplete", "unreadable zip", "grader error")
# a student's status: the first of these reasons found among their tests (results.json's typed reasons)
STATUS_OF_REASON = {MISSING_FILE: "missing files", REFUSED_FILE: "refused file", SYNTAX_ERROR: "syntax error",
                    IMPORT_ERROR: "import error", TIMED_OUT: "timed out", CRASHED: "crashed",
                    GRADER_ERROR: "grader error"}
# HW2_BUDGET=test (the repository's own tests' budget): said when grade-all starts and ends, and by the report
REDUCED_BUDGET = ("HW2_BUDGET=test: the training tests run with the reduced budget of this repository's own tests; "
                  "these totals are NOT GRADES (unset HW2_BUDGET to grade)")
RESERVED = {"gradebook.csv", "report.html", "report-tests.csv", "report", "similarity"}  # names of the batch's own outputs
SUBMISSION_FILE = "submission.txt"  # in <out>/<student>/: the name of the folder or zip graded there
INSECURE_FILE = "insecure-cluster.txt"  # in <out>/<student>/: graded through a plain tcp:// scheduler
INSECURE_MARK = "INSECURE CLUSTER"  # in the gradebook's sandbox column of such a student
MAX_MEMBERS, MAX_MEMBER_BYTES, MAX_TOTAL_BYTES = 2000, 50 * 2**20, 200 * 2**20  # a student's zip
# the files a grading may return (grading process, worker), and their sizes: anything else is refused
RESULT_FILES = ("results.json", "feedback.md", *STUDENT_COPIES, "status.txt", "error.txt")
MAX_FILE_CHARS, MAX_RESULT_CHARS = 8 * 2**20, 24 * 2**20
KNOWN_REASONS = {"", *REASONS, DATA_MISSING, GRADER_ERROR, INTERRUPTED}  # a test's typed reason in results.json
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet reads a cell starting so as a formula


def spreadsheet_text(text):
    """A text cell of a CSV the instructor opens in a spreadsheet: one starting like a formula gets a
    leading ' (OWASP's advice against CSV injection), so `=HYPERLINK(...)` shows as text. Every text
    column of gradebook.csv, report-tests.csv, similarity.csv and reference.csv goes through this."""
    text = str(text)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class UnsafeZip(ValueError):
    """A zip the grader refuses to extract; the message says why."""


def safe_name(name, taken):
    """`name` as a folder name of the output, the same whoever else is in the class: letters (of any
    script), digits, '.', '_' and '-'; when that changes the name (or it is a name of the batch's own
    outputs), a short hash of the original is appended, so different names stay different. A name
    still in `taken` (compared without case: alice/ and alice.zip, Alice and alice) gets -2, -3, ..."""
    base = re.sub(r"[^\w.-]", "_", name).lstrip(".-")[:80] or "student"
    if base != name or base in RESERVED:
        base = f"{base}-{hashlib.sha256(name.encode(errors='replace')).hexdigest()[:6]}"
    taken_folded = {t.casefold() for t in taken}
    candidate, n = base, 1
    while candidate.casefold() in taken_folded:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def find_submissions(folder, log=None):
    """{student: path} for every sub-folder and .zip of `folder` (sorted by name), the student's name
    made safe for a folder name and unique. Other entries (files, hidden ones) are named through `log`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of submissions (one folder or .zip per student)")
    found, ignored = {}, []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            ignored.append(path.name)
        elif path.suffix.lower() == ".zip" and not path.is_dir():
            found[safe_name(path.stem, found)] = path
        elif path.is_dir() or path.is_symlink():
            found[safe_name(path.name, found)] = path
        else:
            ignored.append(path.name)
    if ignored and log is not None:
        log(f"not graded (neither a folder nor a .zip, or hidden): {', '.join(ignored[:20])}"
            f"{' ...' if len(ignored) > 20 else ''}")
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
            target = into.joinpath(*Path(member.filename.replace("\\", "/")).parts)  # hw2\q1.ipynb: hw2/q1.ipynb
            if member.is_dir() or member.filename.endswith("\\"):
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


@dataclass
class Graded:
    """One student's grading as the grading process returns it; the caller alone writes it under
    `<out>/<student>/` (`store`), so a grading that is retried or lost elsewhere leaves nothing half-written."""
    student: str
    status: str  # one of STATUSES
    files: dict  # name -> text: results.json, feedback*.md, status.txt, error.txt
    results: dict = None  # results.json, parsed; None when the grading produced none

    @classmethod
    def error(cls, student, status, text):
        return cls(student, status, {"error.txt": text + "\n", "status.txt": status + "\n"})


class RefusedResult(ValueError):
    """A grading's result this client does not store; the message says why."""


def checked(student, graded, tests, allow_unsandboxed=False):
    """`graded` as this client stores it for `student` (its own key), after checking everything a grading
    process or a worker returned against what was asked: the files (known names, bounded sizes), the status,
    and results.json (parsed here: the selected tests once each, scores between 0 and the rubric's points and
    consistent with their status, points_by_question the sum of the tests, known statuses and reasons, a sandbox
    unless --unsandboxed). A result that fails is that student's `grader error` row naming why. `tests`: the
    rubric's tests of the selection."""
    try:
        return _checked(student, graded, tests, allow_unsandboxed)
    except Exception as error:  # RefusedResult, or anything of a form no grading writes
        why = str(error) if isinstance(error, RefusedResult) else f"it could not be read ({type(error).__name__})"
        return Graded.error(student, "grader error", f"the grading's result was refused: {why[:2000]}. Grade this "
                            f"student again; if it repeats, the machine that graded it does not run this grader")


def _checked(student, graded, tests, allow_unsandboxed):
    if not isinstance(graded, Graded):
        raise RefusedResult(f"a {type(graded).__name__} instead of a grading")
    if graded.student != student:
        raise RefusedResult(f"it is named {str(graded.student)[:100]!r}, not {student!r}")
    if graded.status not in STATUSES:
        raise RefusedResult(f"unknown status {str(graded.status)[:100]!r}")
    files = graded.files
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise RefusedResult("its files are not texts by name")
    unknown = sorted(set(files) - set(RESULT_FILES))
    if unknown:
        raise RefusedResult(f"unexpected file(s) {', '.join(repr(n[:100]) for n in unknown[:5])} (a grading returns "
                            f"only {', '.join(RESULT_FILES)})")
    for name, text in files.items():
        if len(text) > MAX_FILE_CHARS:
            raise RefusedResult(f"{name} has {len(text):,} characters (at most {MAX_FILE_CHARS:,})")
    if sum(map(len, files.values())) > MAX_RESULT_CHARS:
        raise RefusedResult(f"its files have more than {MAX_RESULT_CHARS:,} characters")
    if files.get("status.txt", "").strip() != graded.status:
        raise RefusedResult(f"status.txt does not say its status ({graded.status})")
    if "results.json" not in files:
        if graded.status not in ("grader error", "unreadable zip", "timed out"):
            raise RefusedResult(f"status {graded.status} without results.json")
        return Graded(student, graded.status, dict(files), None)
    try:
        results = json.loads(files["results.json"])
    except ValueError as error:
        raise RefusedResult(f"results.json is not JSON ({error})") from None
    _check_results(results, tests, allow_unsandboxed)
    return Graded(student, graded.status, dict(files), results)


def _number(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or abs(value) == float("inf"):
        raise RefusedResult(f"{what} is not a number")
    return float(value)


def _check_results(results, tests, allow_unsandboxed):
    """RefusedResult naming the first thing in `results` (results.json, parsed) that no grading of `tests`
    by this grader writes."""
    if not isinstance(results, dict) or not isinstance(results.get("tests"), list):
        raise RefusedResult("results.json has no list of tests")
    extra = results.get("extra_data")
    if not isinstance(extra, dict):
        raise RefusedResult("results.json has no extra_data")
    by_id, seen, earned = {t.id: t for t in tests}, set(), {}
    for entry in results["tests"]:
        test_extra = entry.get("extra_data") if isinstance(entry, dict) else None
        if not isinstance(test_extra, dict):
            raise RefusedResult("a test of results.json has no extra_data")
        test_id = test_extra.get("id")
        if not isinstance(test_id, str) or test_id not in by_id:
            raise RefusedResult(f"test {str(test_id)[:100]!r} is not one of the tests graded")
        if test_id in seen:
            raise RefusedResult(f"test {test_id} appears twice")
        seen.add(test_id)
        test = by_id[test_id]
        score = _number(entry.get("score"), f"the score of {test_id}")
        maximum = _number(entry.get("max_score"), f"the max_score of {test_id}")
        if maximum != (0.0 if test.manual else test.points):
            raise RefusedResult(f"test {test_id} is worth {maximum:g} points there, {test.points:g} in the rubric")
        status = entry.get("status")
        if test.manual:
            if status is not None or score != 0:
                raise RefusedResult(f"test {test_id} is graded by hand, yet scored")
        elif status not in (PASSED, FAILED):
            raise RefusedResult(f"test {test_id} has the unknown status {str(status)[:100]!r}")
        elif score != (maximum if status == PASSED and not test_extra.get("not_run") else 0.0):
            raise RefusedResult(f"test {test_id} has {score:g} of {maximum:g} points with status {status}")
        if entry.get("number") != test.question:
            raise RefusedResult(f"test {test_id} is counted in question {str(entry.get('number'))[:20]!r}, not "
                                f"{test.question}")
        if not isinstance(test_extra.get("reason", ""), str) or test_extra.get("reason", "") not in KNOWN_REASONS:
            raise RefusedResult(f"test {test_id} has the unknown reason {str(test_extra.get('reason'))[:100]!r}")
        earned[test.question] = earned.get(test.question, 0.0) + score
    missing = [t.id for t in tests if t.id not in seen]
    if missing:
        raise RefusedResult(f"test(s) {', '.join(missing[:5])} missing from results.json")
    if extra.get("selected_tests") != [t.id for t in tests]:
        raise RefusedResult("its selection of tests is not the one asked for")
    points = extra.get("points_by_question")
    if not isinstance(points, dict) or set(points) != set(earned):
        raise RefusedResult("points_by_question does not list the questions graded")
    for question, value in points.items():
        if abs(_number(value, f"the points of question {question}") - earned[question]) > 1e-6:
            raise RefusedResult(f"question {question} has {value:g} points, its tests {earned[question]:g}")
    if abs(_number(results.get("score"), "the score") - sum(earned.values())) > 1e-6:
        raise RefusedResult("its score is not the sum of its tests'")
    where = extra.get("sandbox")
    if not isinstance(where, str) or not where:
        raise RefusedResult("it does not say where the student's code ran")
    if where.startswith("NONE") and not allow_unsandboxed:
        raise RefusedResult("the student's code ran unsandboxed, which this grading did not allow (--unsandboxed)")


class UnreadableSubmission(ValueError):
    """A submission the grader cannot open: `status` is its gradebook status, the message says why."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


@contextlib.contextmanager
def opened(path):
    """The tree of a submission: a folder as it is, or a zip unpacked (checked, see _unpack) into a private
    temporary folder removed afterwards; UnreadableSubmission for a link or a zip that cannot be unpacked.
    grade-all and the similarity report open submissions with this alone."""
    path = Path(path)
    if path.is_symlink():
        raise UnreadableSubmission("grader error", f"{path.name} is a symbolic link; the grader does not follow links")
    if path.suffix.lower() != ".zip" or path.is_dir():
        yield locate_tree(path)
        return
    with tempfile.TemporaryDirectory(prefix="hw2-submission-") as tmp:
        try:
            tree = _unpack(path, tmp)
        except (zipfile.BadZipFile, UnsafeZip, OSError, EOFError, ValueError, NotImplementedError) as error:
            raise UnreadableSubmission("unreadable zip", f"{path.name} could not be unpacked: {error}") from None
        yield tree


def _grade_one(path, target, only, allow_unsandboxed, check):
    """Grade one submission into the folder `target`: its files, and its status (returned)."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        with opened(path) as tree:
            results = grade(tree, target, only, log=lambda *_: None, allow_unsandboxed=allow_unsandboxed,
                            check=check).to_gradescope()
            return status_of(results, tree)
    except UnreadableSubmission as error:
        (target / "error.txt").write_text(f"{error}\n", errors="replace")
        return error.status


def _collect(student, folder):
    """The Graded of a grading written to `folder`."""
    files = {p.name: p.read_text(errors="replace") for p in sorted(Path(folder).iterdir()) if p.is_file()}
    status = files.get("status.txt", "grader error").strip()
    try:
        results = json.loads(files["results.json"]) if "results.json" in files else None
    except ValueError:
        results = None
    return Graded(student, status, files, results)


# ---- one grading process per student --------------------------------------------------------------
# The grader sets process-wide state (module paths, torch threads, seeds, signal handlers), so each
# student is graded by a fresh `python -m autograder.batch`: on this machine (grade_all's threads) and
# on a Dask worker (autograder/cluster.py) alike. The request comes on stdin; the files are written to
# the folder given as argument, and the exit code says how it ended.
ENVIRONMENT_BROKEN = 3  # exit code: the grader cannot grade on this machine (the message in environment.txt)
INTERRUPTED_EXIT = 130
UID_FILE = "uid"  # in the folder: the uid a grading process's children run as in the user layer


class GradingInterrupted(Exception):
    """A grading process was stopped from outside (Ctrl-C, SIGTERM) before it finished: grade again."""


RUNNING = set()  # the grading processes started by this process (stopped on Ctrl-C)
_running_lock = threading.Lock()


def _is_grading_setting(name):
    return name.startswith("HW2_") or name == "SYDNEY_DIR"


def grading_environment():
    """The settings of this grading (the budget, time limits, memory, sandbox, the data folder): sent with
    every request, so that a grading process on another machine grades as this one would."""
    return {k: v for k, v in os.environ.items() if _is_grading_setting(k)}


# A grading process has bounds of its own, whatever it is fed: it is killed (with its process group)
# when it outlives the grading's total time plus DEADLINE_MARGIN_SECONDS, or when its resident memory
# passes HW2_GRADER_MEMORY_GB. Measured for solution/ (every test, this repository's 2-core machine):
# 1.32 GB resident at most (4.2 GB of address space, 1.5 GB of data segment); 6 s before the first
# test, and up to 48 s past the total time while the last test's child is stopped and cleaned up.
DEADLINE_MARGIN_SECONDS = 120  # beyond the total time: start-up, self-check, data, the last test's end
GRADER_MEMORY_GB = 3.0  # the grading process's and its workers' resident memory (sandboxed children: their own limits)
POLL_SECONDS = 0.2  # how often a grading process's time and memory are looked at


def grading_limits(environment=None):
    """(seconds, bytes): how long a grading process may run (the grading's total time, rubric.toml's
    [grading] total_seconds or HW2_TOTAL_SECONDS, plus DEADLINE_MARGIN_SECONDS) and how much resident
    memory it may use (HW2_GRADER_MEMORY_GB, else GRADER_MEMORY_GB), under the grading settings
    `environment` (default: this process's). RubricError naming a setting that is not a positive number."""
    environment = grading_environment() if environment is None else environment
    total = time_settings(rubric_module.load(), environment)["total_seconds"]
    text = environment.get("HW2_GRADER_MEMORY_GB", f"{GRADER_MEMORY_GB:g}")
    try:
        memory_gb = float(text)
        assert memory_gb > 0
    except (ValueError, AssertionError):
        raise rubric_module.RubricError(f"HW2_GRADER_MEMORY_GB={text!r}: give the grading process's memory limit "
                                        f"in GB (default {GRADER_MEMORY_GB:g}), or unset it") from None
    return total + DEADLINE_MARGIN_SECONDS, int(memory_gb * 2**30)


def _own_bytes(pid):
    """The proportional resident memory (Pss: a page shared by n processes counts 1/n) of process `pid`,
    else its resident memory; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _workers(pid):
    """The grading process's forked workers (HW2_PARALLEL): its direct children running its own command
    line; not the sandboxed children, which have their own memory limits."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read()
        children = []
        for task in os.listdir(f"/proc/{pid}/task"):  # a thread's children are listed under that thread
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children += f.read().split()
    except OSError:
        return []
    found = []
    for child in children:
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                if f.read() == command:
                    found.append(int(child))
        except OSError:
            pass
    return found


def _resident_bytes(pid):
    """The memory of grading process `pid` and of its forked workers, which decode and check what the
    children answer: the sum of their proportional resident memory (forks share their pages)."""
    return _own_bytes(pid) + sum(_own_bytes(worker) for worker in _workers(pid))


def _bounded(process, text, seconds, memory):
    """Feed `text` to `process` and wait for it within `seconds` and `memory` bytes of resident memory:
    (its stderr, None) when it ended by itself, else (stderr, ("time" or "memory", seconds or bytes)) once
    it and its process group are killed."""
    end, stop = time.monotonic() + seconds, None
    while True:
        try:
            _, stderr = process.communicate(text, timeout=POLL_SECONDS)
            return stderr, None
        except subprocess.TimeoutExpired:
            text = None  # sent (communicate goes on where it stopped)
        resident = _resident_bytes(process.pid)
        if resident > memory:
            stop = ("memory", resident)
        elif time.monotonic() > end:
            stop = ("time", seconds)
        if stop is not None:
            break
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        _, stderr = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:  # a process outside the group holds its stderr: give up reading it
        process.kill()
        process.wait()
        process.stderr.close()
        stderr = ""
    return stderr, stop


def _stopped(request, folder, stop, memory):
    """The Graded of a grading process killed at one of its bounds (EnvironmentBroken for the self-check).
    Killed for time during the tests, the submission is the likely cause ("timed out"); before them, or
    for memory, the grader ("grader error"). Either way the row says why and the batch goes on."""
    what, amount = stop
    if what == "memory":
        why = (f"the grading process used {amount / 2**30:.1f} GB of resident memory, more than its limit of "
               f"{memory / 2**30:g} GB (HW2_GRADER_MEMORY_GB), and was stopped")
    else:
        why = (f"the grading process was still running after {amount:.0f} s (the grading's total time, rubric.toml's "
               f"[grading] total_seconds or HW2_TOTAL_SECONDS, plus {DEADLINE_MARGIN_SECONDS} s for start-up and the "
               f"last test's end) and was stopped")
    if request["kind"] == "selfcheck":
        raise selfcheck.EnvironmentBroken(f"the grader's self-check did not finish: {why}. Check this machine's load "
                                          f"and memory, then grade again")
    student = request["student"]
    if what == "time" and (Path(folder) / "out" / "results.json").is_file():
        return Graded.error(student, "timed out", f"{why}, during the tests of this submission: its code is the "
                            f"likely cause (e.g. an answer the grader could not read in time). Grade it alone "
                            f"(make grade STUDENT=...) to see which test; no other student was affected")
    if what == "time":
        return Graded.error(student, "grader error", f"{why}, before the tests of this submission began (start-up, "
                            f"the self-check, loading data): the grader's environment, not the submission; grade "
                            f"again")
    return Graded.error(student, "grader error", f"{why}. If the grader itself needs more memory here, raise "
                        f"HW2_GRADER_MEMORY_GB (see the README's \"Grading a class\"), then grade again")


def run_grading_process(request, environment=None):
    """Run `python -m autograder.batch` on `request` (a dict), within its bounds (grading_limits); returns
    the folder's files as a Graded, or the self-check's dict. EnvironmentBroken when the grader cannot grade
    there; GradingInterrupted when it was stopped from outside. The grading settings are `environment`'s
    (default: this process's)."""
    environment = grading_environment() if environment is None else environment
    seconds, memory = grading_limits(environment)
    if request["kind"] == "selfcheck":
        seconds = DEADLINE_MARGIN_SECONDS
    env = {k: v for k, v in os.environ.items() if not _is_grading_setting(k)}
    env.update(environment)
    with tempfile.TemporaryDirectory(prefix="hw2-grading-") as folder:
        # its temporary files (the children's working folders, the stand-ins) in a folder removed with this one,
        # even when it is killed; traversable, not listable, by the children's uid
        os.chmod(folder, 0o711)
        os.mkdir(Path(folder) / "tmp", 0o711)
        env["TMPDIR"] = str(Path(folder) / "tmp")
        process = subprocess.Popen([sys.executable, "-m", "autograder.batch", folder], stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True,
                                   errors="replace", start_new_session=True)  # a process group of its own
        with _running_lock:
            RUNNING.add(process)
        try:
            stderr, stop = _bounded(process, json.dumps(request), seconds, memory)
        finally:
            with _running_lock:
                RUNNING.discard(process)
        if stop is not None:
            uid = Path(folder) / UID_FILE
            if uid.is_file():  # the user layer: what the killed process's child left running as its uid
                sandbox.reclaim_uid(int(uid.read_text()))
            return _stopped(request, folder, stop, memory)
        out = Path(folder) / "out"
        if process.returncode == ENVIRONMENT_BROKEN:
            raise selfcheck.EnvironmentBroken((Path(folder) / "environment.txt").read_text())
        if process.returncode == INTERRUPTED_EXIT:
            raise GradingInterrupted(f"the grading process of {request.get('student', 'the self-check')} was "
                                     f"interrupted (Ctrl-C or SIGTERM)")
        if request["kind"] == "selfcheck" and process.returncode == 0:
            return json.loads((Path(folder) / "selfcheck.json").read_text())
        if process.returncode != 0 or not (out / "status.txt").is_file():
            how = (f"killed by signal {-process.returncode}" if process.returncode < 0
                   else f"exit code {process.returncode}")
            tail = stderr.strip()[-2000:]
            if request["kind"] == "selfcheck":
                raise selfcheck.EnvironmentBroken(f"the grader's self-check stopped ({how}): {tail}")
            return Graded.error(request["student"], "grader error", f"the grading process stopped ({how}; "
                                f"e.g. out of memory): {tail}")
        return _collect(request["student"], out)


def stop_grading_processes():
    """Interrupt the grading processes still running (they write no files and exit)."""
    with _running_lock:
        for process in RUNNING:
            if process.poll() is None:
                process.terminate()


def grade_student(student, path, only, allow_unsandboxed=False, check=None, environment=None):
    """Grade one submission in a fresh grading process; returns its Graded. `check`: the self-check of
    this machine (a dict of selfcheck.SelfCheck's fields). GradingInterrupted when it was stopped."""
    return run_grading_process({"kind": "grade", "student": student, "path": str(path), "only": only,
                                "allow_unsandboxed": allow_unsandboxed, "check": check}, environment)


def check_machine(allow_unsandboxed=False, environment=None, submissions=None):
    """The grader's self-check (and, in the user layer, that `submissions` are private), run in a grading
    process of its own: its fields as a dict, or EnvironmentBroken naming the problem."""
    return run_grading_process({"kind": "selfcheck", "allow_unsandboxed": allow_unsandboxed,
                                "submissions": submissions and str(submissions)}, environment)


def _watch_parent(folder):
    """Exit when the process that started this one is gone (a Dask worker killed mid-student): the
    grading would be written nowhere; its folder (`folder`, left by the parent) is removed."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(1)
        shutil.rmtree(folder, ignore_errors=True)
        os._exit(INTERRUPTED_EXIT)

    threading.Thread(target=watch, daemon=True).start()


def _grading_process(folder):
    """The body of `python -m autograder.batch <folder>`."""
    folder = Path(folder)
    request = json.loads(sys.stdin.read())
    _watch_parent(folder)
    try:
        layer = sandbox.layer(request["allow_unsandboxed"])  # the first call decides, with --unsandboxed or not
        if layer.name == "user":  # killed at its bounds, the parent reclaims this uid (run_grading_process)
            (folder / UID_FILE).write_text(str(layer.uid))
        if request["kind"] == "selfcheck":
            found = selfcheck.run(request["allow_unsandboxed"])
            if request.get("submissions"):
                check_submissions_private(sandbox.layer(request["allow_unsandboxed"]), request["submissions"])
            (folder / "selfcheck.json").write_text(json.dumps(asdict(found)))
            return 0
        check = selfcheck.SelfCheck(**request["check"]) if request.get("check") else None
        target = folder / "out"
        try:
            status = _grade_one(Path(request["path"]), target, request["only"], request["allow_unsandboxed"], check)
        except (sandbox.SandboxError, selfcheck.EnvironmentBroken, KeyboardInterrupt):
            raise  # the environment, not this student
        except Exception as error:  # anything else specific to this submission: its row says so
            status = "grader error"
            (target / "error.txt").write_text(f"grading stopped on this submission: {type(error).__name__}: "
                                              f"{str(error)[:2000]}\n", errors="replace")
        (target / "status.txt").write_text(status + "\n")
        return 0
    except (sandbox.SandboxError, selfcheck.EnvironmentBroken) as error:
        (folder / "environment.txt").write_text(str(error))
        return ENVIRONMENT_BROKEN
    except KeyboardInterrupt:
        return INTERRUPTED_EXIT


def store(out, student, graded, submission, insecure=None):
    """Write a Graded under `<out>/<student>/` (`student`: this client's own key for the submission, a plain
    name; ValueError for anything else), with the name of the `submission` it grades (SUBMISSION_FILE) and,
    for a grading through an insecure cluster, `insecure` (INSECURE_FILE); an earlier one is replaced whole
    (written beside, then renamed into place). Only RESULT_FILES of the grading's files are written."""
    out = Path(out)
    if (not isinstance(student, str) or student != Path(student).name or student in ("", ".", "..")
            or student.startswith(".") or "\\" in student or "\0" in student or student in RESERVED):
        raise ValueError(f"{str(student)[:100]!r} is not a plain folder name inside {out}")
    partial, old, target = out / f".{student}.partial", out / f".{student}.old", out / student
    for leftover in (partial, old):
        shutil.rmtree(leftover, ignore_errors=True)
    partial.mkdir(parents=True)
    for name, text in graded.files.items():
        if name in RESULT_FILES:
            (partial / name).write_text(text, errors="replace")
    (partial / SUBMISSION_FILE).write_text(submission + "\n", encoding="utf-8", errors="replace")
    if insecure:
        (partial / INSECURE_FILE).write_text(insecure + "\n")
    if target.exists():
        target.rename(old)
    partial.rename(target)
    shutil.rmtree(old, ignore_errors=True)


GRADEBOOK_COLUMNS = ("student", "total", "status", "sandbox", "submission")  # the questions' points after student


def write_gradebook(out, rows, questions):
    """gradebook.csv: a row per student (rows: student -> _row), the text cells kept from being formulas."""
    path = Path(out) / "gradebook.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:  # names in any script, read back as UTF-8
        writer = csv.writer(f)
        writer.writerow([spreadsheet_text(c) for c in ["student", *questions, *GRADEBOOK_COLUMNS[1:]]])
        for student in sorted(rows):
            *numbers, status, where, submission = rows[student]
            writer.writerow([spreadsheet_text(student), *numbers, *map(spreadsheet_text, (status, where, submission))])
    return path


NOT_FINAL = ("grader error", "incomplete")  # no total in the gradebook: importing one would charge the student


def _row(results, status, questions, submission, insecure=False):
    """A gradebook row: points per question, total (numbers), status, sandbox, submission. A grading that is
    not final (the grader failed, or tests did not run: NOT_FINAL) has a blank total, and one without
    results (a grader error, a grading stopped at its bounds; not an unreadable zip, the student's own) blank
    points too, so that a grading platform importing the gradebook records no grade for them. `insecure`:
    graded through a plain tcp:// cluster (INSECURE_MARK in the sandbox column)."""
    points = (results or {}).get("extra_data", {}).get("points_by_question", {})  # as the grading computed them
    per_question = {q: float(points.get(q, 0.0)) for q in questions}
    where = (results or {}).get("extra_data", {}).get("sandbox", "")
    blank = status == "grader error" or (results is None and status != "unreadable zip")
    shown = ["" if blank else f"{per_question[q]:g}" for q in questions]
    total = "" if blank or status in NOT_FINAL else f"{sum(per_question.values()):g}"
    where = "UNSANDBOXED" if where.startswith("NONE") else where.split(" (")[0]
    return [*shown, total, status, ", ".join(filter(None, [where, INSECURE_MARK if insecure else ""])), submission]


def _previous(out, student, path, questions, selected):
    """The gradebook row of a student graded to the end, from the same submission (`path`'s name), by an
    earlier run of the same selection of tests and budget; None when they must be graded (again)."""
    try:
        folder = out / student
        status = (folder / "status.txt").read_text().strip()
        graded = (folder / SUBMISSION_FILE).read_text(encoding="utf-8", errors="replace").strip()
        if graded != path.name or status in ("grader error", "incomplete"):
            return None
        results = json.loads((folder / "results.json").read_text())
        extra = results.get("extra_data", {})
        if (extra.get("interrupted") or extra.get("incomplete") or extra.get("selected_tests") != list(selected)
                or extra.get("budget", "grading") != thresholds.budget_in_use()[0]):
            return None
        return _row(results, status, questions, path.name, insecure=(folder / INSECURE_FILE).exists())
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def timed_out_tests(graded):
    """The ids of the tests of a Graded that failed for time."""
    try:  # read before the result is checked (checked()): a malformed one has none
        tests = (graded.results or {}).get("tests", [])
        return [t.get("extra_data", {}).get("id") for t in tests if t.get("extra_data", {}).get("reason") == TIMED_OUT]
    except AttributeError:
        return []


def regraded_alone(graded, first):
    """`graded`, its results.json saying that it is a second grading, alone, after the tests `first` of a
    first one timed out while other gradings ran (that first grading is not kept)."""
    if graded.results is not None:
        graded.results.setdefault("extra_data", {}).update(regraded_alone=True, first_grading_timed_out=first)
        graded.files["results.json"] = json.dumps(graded.results, indent=2) + "\n"
    return graded


def _on_this_machine(todo, jobs, only, allow_unsandboxed, check):
    """Yield (student, Graded) as the gradings end, JOBS grading processes at a time on this machine. A
    grading with a timed-out test that overlapped another grading is not kept: that student is graded
    again once every other grading has ended, alone, and that second grading is final."""
    pool = ThreadPoolExecutor(max_workers=jobs)
    running, overlapped, lock = set(), set(), threading.Lock()
    # each grading runs its children up to the cores over JOBS at once (grade.parallel_children): jobs x children
    # stay within the cores
    environment = dict(grading_environment(), HW2_JOBS=str(jobs))

    def graded_noting_overlap(student, path):
        with lock:
            running.add(student)
            if len(running) > 1:
                overlapped.update(running)
        try:
            return grade_student(student, path, only, allow_unsandboxed, check, environment)
        finally:
            with lock:
                running.discard(student)

    futures = {pool.submit(graded_noting_overlap, student, path): student for student, path in todo.items()}
    again = {}
    try:
        for future in as_completed(futures):
            student = futures[future]
            try:
                graded = future.result()
            except GradingInterrupted as error:  # stopped by someone else than this batch: grade again
                graded = Graded.error(student, "grader error", f"{error}; grade again")
            if student in overlapped and timed_out_tests(graded):
                again[student] = timed_out_tests(graded)
                continue
            yield student, graded
        for student, first in again.items():  # every other grading has ended
            try:
                graded = grade_student(student, todo[student], only, allow_unsandboxed, check, environment)
            except GradingInterrupted as error:
                graded = Graded.error(student, "grader error", f"{error}; grade again")
            yield student, regraded_alone(graded, first)
    except BaseException:  # Ctrl-C, or the environment broke: no other student is graded
        for future in futures:
            future.cancel()
        stop_grading_processes()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def check_submissions_private(layer, submissions):
    """In the user layer (no namespaces), SandboxError when the uid student code runs as can read the
    class's submissions: one student's code could read the others'."""
    if layer.name == "user" and sandbox.readable_by(layer.uid, [str(Path(submissions).resolve())]):
        raise sandbox.SandboxError(f"the submissions ({submissions}) are readable by uid {layer.uid}, which student "
                                   f"code runs as here: one student's code could read the others'. Fix: "
                                   f"`chmod -R go-rwx {submissions}`")


def grade_all(submissions, out, jobs=2, only=None, regrade=False, log=print, allow_unsandboxed=False, scheduler=None,
              tls=None, insecure_scheduler=False):
    """Grade every submission under `submissions` into `out`: on this machine, JOBS at a time, or on the
    Dask cluster whose scheduler is `scheduler` (an address, or a scheduler file; autograder/cluster.py),
    reached with mutual TLS with the certificates in the folder `tls` (or, with `insecure_scheduler`,
    through plain tcp://, which the gradebook then says). Every grading's result is checked (`checked`)
    before it is stored under this client's own name for the student. Returns the gradebook's path and
    its rows."""
    from tqdm import tqdm

    out = Path(out)
    rubric = rubric_module.load()
    rubric.require_checks(all_checks())  # RubricError before anyone is graded ...
    for test in rubric.select(only):  # ... and CalibrationError
        if test.training is not None:
            thresholds.get(test.id, rubric)
    tests = rubric.select(only)
    selected = [t.id for t in tests]
    grading_limits()  # RubricError for a bad HW2_TOTAL_SECONDS or HW2_GRADER_MEMORY_GB, before anyone is graded
    questions = list(dict.fromkeys(t.question for t in rubric.select(only)))
    found = find_submissions(submissions, log)
    rows, todo = {}, {}
    for student, path in found.items():
        previous = None if regrade else _previous(out, student, path, questions, selected)
        if previous is not None:
            rows[student] = previous
        else:
            todo[student] = path
    if scheduler is None:
        layer = sandbox.layer(allow_unsandboxed)  # SandboxError before anyone is graded
        check_submissions_private(layer, submissions)
        check = asdict(selfcheck.run(allow_unsandboxed))  # EnvironmentBroken before anyone is graded
        gradings = _on_this_machine(todo, jobs, only, allow_unsandboxed, check)
        where = f"on this machine, {jobs} at a time; student code runs in: {layer.description}"
        insecure = None
    else:
        from autograder import cluster

        gradings, where, insecure = cluster.grade_on_cluster(scheduler, todo, only, allow_unsandboxed, submissions,
                                                             log, tls=tls, insecure=insecure_scheduler)
    out.mkdir(parents=True, exist_ok=True)
    if scheduler is None and layer.name == "user":  # no namespaces: the children's uid must not read the results
        os.chmod(out, 0o700)
    if regrade:
        for student in todo:
            shutil.rmtree(out / student, ignore_errors=True)
    log(f"{len(found)} submissions: {len(rows)} already graded (--regrade to redo), {len(todo)} to grade, {where}")
    if insecure:
        log(f"WARNING: {insecure}; the gradebook's sandbox column says {INSECURE_MARK}")
    if thresholds.budget_in_use()[0] == "test":
        log(f"WARNING: {REDUCED_BUDGET}")
    previous_handler = interrupt_on_sigterm()
    try:
        with tqdm(total=len(todo), unit="student") as bar:
            for student, graded in gradings:  # student: this client's own key, whatever the grading says
                graded = checked(student, graded, tests, allow_unsandboxed)
                store(out, student, graded, found[student].name, insecure)
                rows[student] = _row(graded.results, graded.status, questions, found[student].name, bool(insecure))
                write_gradebook(out, rows, questions)  # after every student, so an interruption loses nothing
                bar.set_postfix_str(f"{student}: {rows[student][-4]} ({graded.status})")
                bar.update()
    finally:
        gradings.close()  # an interruption stops the gradings still running
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
    return write_gradebook(out, rows, questions), rows


if __name__ == "__main__":
    started_by = os.getppid()
    code = _grading_process(sys.argv[1])
    if os.getppid() != started_by:  # the parent died meanwhile: nobody will read or remove the folder
        shutil.rmtree(sys.argv[1], ignore_errors=True)
    sys.exit(code)
