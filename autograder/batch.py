"""Grade a whole class: every tree under a folder, JOBS at a time or on a Dask cluster, with a gradebook.

    make grade-all SUBMISSIONS=<dir> [JOBS=2 | SCHEDULER=<address>] [OUT=<dir>] [ONLY=2.2] [REGRADE=1]
    python -m autograder grade-all <dir> --out <dir> --jobs 2 [--scheduler ADDRESS] [--only ...] [--regrade]

`<dir>` holds one folder per student (laid out like assignment/) or one `<student>.zip`.
Each student is graded by a fresh grading process (`python -m autograder.batch`, grade_student),
here or on a Dask worker (autograder/cluster.py), which returns the student's files as a Graded;
this process alone writes them to `<out>/<student>/` (results.json, feedback.md, status.txt; the
name made safe for a folder, and unique: `alice/` and `alice.zip` become `alice` and `alice-2`),
replacing the folder whole. `<out>/gradebook.csv` has one row per student: points per question,
total, status (one of STATUSES), where the code ran (`sandbox`: bubblewrap, user, or
UNSANDBOXED) and the submission's own name (`<out>/<student>/submission.txt` too). Zips are checked before extraction (members, sizes, names, no links). Whatever goes
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
from autograder.checks import GRADER_ERROR, all_checks
from autograder.child.compare import CRASHED, IMPORT_ERROR, MISSING_FILE, REFUSED_FILE, SYNTAX_ERROR, TIMED_OUT
from autograder.grade import grade, interrupt_on_sigterm
from autograder.submission import GRADED_FILES, locate_tree

STATUSES = ("graded", "missing files", "refused file", "syntax error", "import error", "timed out", "crashed",
            "incomplete", "unreadable zip", "grader error")
# a student's status: the first of these reasons found among their tests (results.json's typed reasons)
STATUS_OF_REASON = {MISSING_FILE: "missing files", REFUSED_FILE: "refused file", SYNTAX_ERROR: "syntax error",
                    IMPORT_ERROR: "import error", TIMED_OUT: "timed out", CRASHED: "crashed",
                    GRADER_ERROR: "grader error"}
RESERVED = {"gradebook.csv", "report.html", "report-tests.csv", "report", "similarity"}  # names of the batch's own outputs
SUBMISSION_FILE = "submission.txt"  # in <out>/<student>/: the name of the folder or zip graded there
MAX_MEMBERS, MAX_MEMBER_BYTES, MAX_TOTAL_BYTES = 2000, 50 * 2**20, 200 * 2**20  # a student's zip


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


def run_grading_process(request, environment=None):
    """Run `python -m autograder.batch` on `request` (a dict); returns (folder's files as a Graded or the
    self-check's dict). EnvironmentBroken when the grader cannot grade there; GradingInterrupted when it
    was stopped from outside. The grading settings are `environment`'s (default: this process's)."""
    env = {k: v for k, v in os.environ.items() if not _is_grading_setting(k)}
    env.update(environment if environment is not None else grading_environment())
    with tempfile.TemporaryDirectory(prefix="hw2-grading-") as folder:
        process = subprocess.Popen([sys.executable, "-m", "autograder.batch", folder], stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True,
                                   errors="replace")
        with _running_lock:
            RUNNING.add(process)
        try:
            _, stderr = process.communicate(json.dumps(request))
        finally:
            with _running_lock:
                RUNNING.discard(process)
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


def _watch_parent():
    """Exit when the process that started this one is gone (a Dask worker killed mid-student): the
    grading would be written nowhere."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(INTERRUPTED_EXIT)

    threading.Thread(target=watch, daemon=True).start()


def _grading_process(folder):
    """The body of `python -m autograder.batch <folder>`."""
    folder = Path(folder)
    request = json.loads(sys.stdin.read())
    _watch_parent()
    try:
        sandbox.layer(request["allow_unsandboxed"])  # the first call decides, with --unsandboxed or not
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


def store(out, graded, submission):
    """Write a Graded under `<out>/<student>/`, with the name of the `submission` it grades (SUBMISSION_FILE),
    replacing an earlier one whole (written beside, then renamed into place)."""
    out = Path(out)
    partial, old, target = out / f".{graded.student}.partial", out / f".{graded.student}.old", out / graded.student
    for leftover in (partial, old):
        shutil.rmtree(leftover, ignore_errors=True)
    partial.mkdir(parents=True)
    for name, text in graded.files.items():
        if name == Path(name).name and not name.startswith("."):
            (partial / name).write_text(text, errors="replace")
    (partial / SUBMISSION_FILE).write_text(submission + "\n", errors="replace")
    if target.exists():
        target.rename(old)
    partial.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def write_gradebook(out, rows, questions):
    path = Path(out) / "gradebook.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", *questions, "total", "status", "sandbox", "submission"])
        for student in sorted(rows):
            writer.writerow([student, *rows[student]])
    return path


NOT_FINAL = ("grader error", "incomplete")  # no total in the gradebook: importing one would charge the student


def _row(results, status, questions, submission):
    """A gradebook row: points per question, total, status, sandbox, submission. A grading that is not
    final (the grader failed, or tests did not run: NOT_FINAL) has a blank total, and a grader error
    blank points too, so that a grading platform importing the gradebook records no grade for them."""
    points = (results or {}).get("extra_data", {}).get("points_by_question", {})  # as the grading computed them
    per_question = {q: float(points.get(q, 0.0)) for q in questions}
    where = (results or {}).get("extra_data", {}).get("sandbox", "")
    shown = ["" if status == "grader error" else f"{per_question[q]:g}" for q in questions]
    total = "" if status in NOT_FINAL else f"{sum(per_question.values()):g}"
    return [*shown, total, status,
            "UNSANDBOXED" if where.startswith("NONE") else where.split(" (")[0], submission]


def _previous(out, student, path, questions, selected):
    """The gradebook row of a student graded to the end, from the same submission (`path`'s name), by an
    earlier run of the same selection of tests and budget; None when they must be graded (again)."""
    try:
        folder = out / student
        status = (folder / "status.txt").read_text().strip()
        if (folder / SUBMISSION_FILE).read_text().strip() != path.name or status in ("grader error", "incomplete"):
            return None
        results = json.loads((folder / "results.json").read_text())
        extra = results.get("extra_data", {})
        if (extra.get("interrupted") or extra.get("incomplete") or extra.get("selected_tests") != list(selected)
                or extra.get("budget", "grading") != thresholds.budget_in_use()[0]):
            return None
        return _row(results, status, questions, path.name)
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def timed_out_tests(graded):
    """The ids of the tests of a Graded that failed for time."""
    tests = (graded.results or {}).get("tests", [])
    return [t.get("extra_data", {}).get("id") for t in tests if t.get("extra_data", {}).get("reason") == TIMED_OUT]


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

    def graded_noting_overlap(student, path):
        with lock:
            running.add(student)
            if len(running) > 1:
                overlapped.update(running)
        try:
            return grade_student(student, path, only, allow_unsandboxed, check)
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
                graded = grade_student(student, todo[student], only, allow_unsandboxed, check)
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


def grade_all(submissions, out, jobs=2, only=None, regrade=False, log=print, allow_unsandboxed=False, scheduler=None):
    """Grade every submission under `submissions` into `out`: on this machine, JOBS at a time, or on the
    Dask cluster whose scheduler is `scheduler` (an address, or a scheduler file; autograder/cluster.py).
    Returns the gradebook's path and its rows."""
    from tqdm import tqdm

    out = Path(out)
    rubric = rubric_module.load()
    rubric.require_checks(all_checks())  # RubricError before anyone is graded ...
    for test in rubric.select(only):  # ... and CalibrationError
        if test.training is not None:
            thresholds.get(test.id, rubric)
    selected = [t.id for t in rubric.select(only)]
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
    else:
        from autograder import cluster

        gradings, where = cluster.grade_on_cluster(scheduler, todo, only, allow_unsandboxed, submissions, log)
    out.mkdir(parents=True, exist_ok=True)
    if scheduler is None and layer.name == "user":  # no namespaces: the children's uid must not read the results
        os.chmod(out, 0o700)
    if regrade:
        for student in todo:
            shutil.rmtree(out / student, ignore_errors=True)
    log(f"{len(found)} submissions: {len(rows)} already graded (--regrade to redo), {len(todo)} to grade, {where}")
    previous_handler = interrupt_on_sigterm()
    try:
        with tqdm(total=len(todo), unit="student") as bar:
            for student, graded in gradings:
                store(out, graded, found[student].name)
                rows[student] = _row(graded.results, graded.status, questions, found[student].name)
                write_gradebook(out, rows, questions)  # after every student, so an interruption loses nothing
                bar.set_postfix_str(f"{student}: {rows[student][-4]} ({graded.status})")
                bar.update()
    finally:
        gradings.close()  # an interruption stops the gradings still running
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
    return write_gradebook(out, rows, questions), rows


if __name__ == "__main__":
    sys.exit(_grading_process(sys.argv[1]))
