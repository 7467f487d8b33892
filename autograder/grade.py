"""Grade one tree: check the grader itself, run each question's checks (the student's code in a
sandboxed child process, see autograder/isolation.py), score them by the rubric, and write
`results.json` and `feedback.md` after every test.

    python -m autograder grade <tree> [--out DIR] [--only 2.2,3.1b]      (or: make grade STUDENT=<tree>)

Order and time: the self-check first (autograder/selfcheck.py: no student is graded by a broken grader);
then every test but the training ones, one child per student file; the training tests last. Up to
HW2_PARALLEL children run at once (`parallel_children`: by default the CPUs over grade-all's HW2_JOBS),
each training test then in a child of its own, the longest first, each child driven by a worker process
(a fork of this one: its own uid slot, control groups, random state and alarm); their results are given
in the order above and are those that order gives. Each test's time limit, in CPU time of the student's
processes (autograder/isolation.py), is its time allowance (rubric.toml: the test's `time_allowance`,
else [grading]'s) times the reference's CPU time for it (`make calibrate`), scaled by this machine's
speed, and at least [grading]'s floor_seconds; the whole grading has total_seconds of wall time. After a
test of a file times out, the file's remaining tests fail at once with that reason instead of waiting
again. A check still running here CHECK_MARGIN seconds after its test's wall-time backstop and the
child's grace is stopped (an alarm, in the main thread), its test timed out. The results files list
every selected test from the start (those not reached as "not run"), so an interruption (Ctrl-C,
SIGTERM) leaves valid files marked incomplete and interrupted.
"""

import difflib
import importlib
import os
import json
import select
import signal
import threading
import time
import traceback
from pathlib import Path

import torch

from autograder import rubric as rubric_module
from autograder.rubric import RubricError
from autograder import cgroups, sandbox, selfcheck, standins, template, thresholds
from autograder.checks import GRADER_ERROR, INTERRUPTED, NotRun, all_checks, run_check, seed_everything
from autograder.child.compare import IMPORT_ERROR, MISSING_FILE, REFUSED_FILE, SYNTAX_ERROR, TIMED_OUT, CheckFailure
from autograder.isolation import GRACE_SECONDS, WALL_FACTOR, StudentSubmission, capped
from autograder.results import FAILED, MANUAL, NOT_RUN, PASSED, GradingResults, TestResult
from autograder.submission import GRADED_FILES, locate_tree, refused_files

DEFAULT_SECONDS = 150  # a test's limit when the reference's time for it was not measured (HW2_TEST_SECONDS: all)
# the rubric's [grading] time settings, each overridden by its environment variable when set
OVERRIDES = {"time_allowance": "HW2_TIME_ALLOWANCE", "floor_seconds": "HW2_TEST_FLOOR",
             "total_seconds": "HW2_TOTAL_SECONDS"}
# the graded file each child sees: one file's code never runs in another file's tests (the provided
# train.py gets a placeholder for the decoder file it imports and its child lacks)
CHILD_FILES = {name: [name] for name in GRADED_FILES}
# a failure that is the file's, not the test's: its message is given in full once (per visibility: the test
# referred to is one whoever sees this test also sees)
FILE_REASONS = (MISSING_FILE, SYNTAX_ERROR, IMPORT_ERROR, REFUSED_FILE)
VISIBILITY_RANK = {"visible": 0, "after_due_date": 1, "after_published": 2, "hidden": 3}
# how long a check may go on in the grading process past its test's limit and the child's grace: then
# it is stopped (values built to be slow to check must not hold up a whole batch)
CHECK_MARGIN = 60
# a child's start (the interpreter, torch, the student's file), added to the reference's time to order the work
START_SECONDS = 1.5
NOT_REACHED = "grading stopped before this test (interrupted); grade again"


def time_settings(rubric, environ=None):
    """The rubric's [grading] time settings, with the overrides of `environ` (default: this process's
    environment; RubricError when one is not a positive number); "overridden" lists the settings it set."""
    environ = os.environ if environ is None else environ
    settings = dict(rubric.grading, overridden=[])
    for key, variable in OVERRIDES.items():
        if variable in environ:
            settings[key] = _positive(environ, variable, float, "a positive number of seconds (or a multiple, for "
                                                                "HW2_TIME_ALLOWANCE)")
            settings["overridden"].append(key)
    return settings


def _positive(environ, variable, convert, what):
    """`environ[variable]` converted by `convert` (float, int), when positive; else RubricError asking for `what`."""
    try:
        value = convert(environ[variable])
        assert value > 0
        return value
    except (ValueError, AssertionError):
        raise RubricError(f"{variable}={environ[variable]!r}: give {what}, or unset it") from None


def test_limits(tests, speed, settings):
    """{test id: seconds}: the reference's time for each test (calibration) x its time allowance x this
    machine's speed, at least the floor; DEFAULT_SECONDS where the reference's time is unknown. A
    HW2_TEST_SECONDS set in the environment overrides them all."""
    if "HW2_TEST_SECONDS" in os.environ:
        return {t.id: float(os.environ["HW2_TEST_SECONDS"]) for t in tests}
    measured = thresholds.timing().get("tests", {})
    def allowance(test):  # HW2_TIME_ALLOWANCE, else the test's own, else [grading]'s
        overridden = "time_allowance" in settings.get("overridden", ())
        return settings["time_allowance"] if overridden else test.time_allowance or settings["time_allowance"]

    return {t.id: max(settings["floor_seconds"], allowance(t) * measured[t.id] * speed) if t.id in measured
            else DEFAULT_SECONDS for t in tests}


def found_instead(tree, filename):
    """What the submission holds beside a missing graded file, and the likely misnamed one."""
    try:
        names = sorted(p.name for p in Path(tree).iterdir() if not p.name.startswith("."))
    except OSError:
        return ""
    if not names:
        return "; the submission's folder is empty"
    close = difflib.get_close_matches(filename, names, n=1, cutoff=0.6)
    hint = f" Is {close[0]} your {filename}? Rename it {filename}." if close else ""
    listed = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
    return f"; the submission's folder holds: {listed}.{hint}"


def _grader_errors_not_run(check):
    """`check`, with an exception of its own turned into a result: "failed" once the child has answered
    (values of an unexpected form, which only code that tampers with its answers sends), else "not run"
    (a grader bug: the student loses nothing and the instructor sees it)."""

    def run(sub):
        try:
            return check(sub)
        except (CheckFailure, NotRun, sandbox.SandboxError):  # SandboxError: grading stops
            raise
        except Exception as error:
            if sub.answered:
                raise CheckFailure(f"the values your code returned could not be checked ({type(error).__name__}: "
                                   f"{str(error)[:300]}); they do not have the form the test expects") from error
            raise NotRun(f"the grader failed on this test ({type(error).__name__}: {str(error)[:1000]}); please tell "
                         f"your instructor", GRADER_ERROR) from error

    return run


class CheckOverran(BaseException):
    """Raised by the alarm of a check that went on past its deadline (not an Exception: no check catches it)."""


def _run_within(check, sub, seconds):
    """`run_check(check, sub)`, stopped after `seconds` as a timed-out failure of the test (the child
    stopped too; the next test starts a fresh one). The alarm (SIGALRM) needs the main thread: a parallel
    grading's workers are processes, each its own main thread; elsewhere (grade() called from a thread,
    one child at a time) the check runs without it."""
    if threading.current_thread() is not threading.main_thread():
        return run_check(check, sub)

    def overran(signum, frame):
        raise CheckOverran()

    previous = signal.signal(signal.SIGALRM, overran)
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, seconds)
            return run_check(check, sub)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except CheckOverran:  # (also when it fired as the check ended: the inner finally is covered)
        sub.stop()
        return (FAILED, f"timed out: checking what your code returned took more than {seconds:.0f} s (this test's "
                        f"limit, and a margin for the grader's own work), and was stopped", TIMED_OUT)
    finally:
        signal.signal(signal.SIGALRM, previous)


class _Clock:
    """The total budget of one grading."""

    def __init__(self, total):
        self.end = time.time() + total
        self.total = total

    def left(self):
        return self.end - time.time()


def not_tried(file, hung):
    """The message of a test of `file` not run because an earlier test of the same code timed out (`hung`:
    {file: (test id, message)}); report.NOT_TRIED reads it back."""
    return (f"not tried: your code in {file} timed out in test {hung[file][0]}, and this test runs the same code "
            f"({hung[file][1].splitlines()[0]})")


def _run_file(tree, file, tests, limits, floor, clock, hung, on_result, timed_out=None):
    """Run the checks of `tests` (of one student file) here, their probes in one sandboxed child.
    `hung`: {file: (test id, message)} of a timeout of a file's code, whose other tests would wait again.
    `timed_out(test id, message, walled)`, if given, hears of each timeout before its result (`walled`: the
    wall-time backstop was reached, which a sibling child sharing the cores may have caused)."""
    checks = all_checks()
    sub = StudentSubmission(tree, floor, files=CHILD_FILES.get(file))
    try:
        for test in tests:
            if file in hung:
                on_result(test.id, FAILED, not_tried(file, hung), 0.0, TIMED_OUT)
                continue
            if clock.left() < 1:
                on_result(test.id, FAILED, f"not tried: the grading's total time ({clock.total:.0f} s) was spent "
                                           f"by the earlier tests of your code", 0.0, TIMED_OUT)
                continue
            seconds = min(limits[test.id], clock.left())
            seed_everything()
            wall = min(WALL_FACTOR * seconds, clock.left())
            sub.begin_test(seconds, wall=wall)
            start = time.time()
            status, message, reason = _run_within(_grader_errors_not_run(checks[test.id]), sub,
                                                  wall + GRACE_SECONDS + CHECK_MARGIN)
            took = time.time() - start
            if status == FAILED and reason == TIMED_OUT:
                if seconds < limits[test.id]:
                    message += (f" (the grading's total time of {clock.total:.0f} s left only {seconds:.0f} s for this "
                                f"test, whose limit is {limits[test.id]:.0f} s: the earlier tests of your code took "
                                f"{clock.total - seconds:.0f} s)")
                hung[file] = (test.id, message)
                if timed_out is not None:
                    timed_out(test.id, message, took >= wall - 1)
            printed = capped("\n".join(sub.printed).strip())
            if printed and status == FAILED:
                message += f"\nYour code printed:\n{printed}"
            on_result(test.id, status, capped(message, 8000), took, reason, sub.cpu_spent)
    finally:
        sub.cleanup()


def parallel_children(environ=None):
    """How many children one grading runs at once: HW2_PARALLEL, else the CPUs this process may use
    (os.sched_getaffinity) divided by HW2_JOBS (grade-all's gradings at a time, default 1), at least 1.
    RubricError when HW2_PARALLEL or HW2_JOBS is not a positive whole number."""
    environ = os.environ if environ is None else environ
    numbers = {variable: _positive(environ, variable, int, "a positive whole number (of children at once, or of "
                                                           "gradings at once for HW2_JOBS)")
               for variable in ("HW2_PARALLEL", "HW2_JOBS") if variable in environ}
    if "HW2_PARALLEL" in numbers:
        return numbers["HW2_PARALLEL"]
    return max(1, len(os.sched_getaffinity(0)) // numbers.get("HW2_JOBS", 1))


class _Unit:
    """Tests of one file run in one child, in a worker process of their own (a fork of the grading process:
    its own uid slot, control groups, random state and alarm). `alone`: run with no sibling (a timeout met
    beside one, graded again)."""

    def __init__(self, file, tests, estimate, alone=False):
        self.file, self.tests, self.estimate, self.alone = file, tests, estimate, alone
        self.pid = self.reader = self.uid = None
        self.overlapped = False
        self.dropped = None  # the test id from which its results are not kept (graded again alone), if any
        self.stopped = False  # stopped by the grading (its file's code timed out in an earlier test)
        self.reported = set()
        self.priority = estimate
        self.buffer = b""


# the errors a worker reports that the grading's callers tell apart (else a RuntimeError naming the type)
WORKER_ERRORS = {error.__name__: error for error in (sandbox.SandboxError, selfcheck.EnvironmentBroken,
                                                      thresholds.CalibrationError, RubricError)}


def _worker(unit, uid, tree, limits, floor, clock, write_fd):
    """The body of a unit's worker process: grade its tests, each result (and each timeout) sent as a
    JSON message on `write_fd` (data only, as everything that passed near student code); never returns."""
    code = 0
    try:
        interrupt_on_sigterm()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sandbox.use_uid(uid)
        pipe = os.fdopen(write_fd, "wb")

        def send(*message):
            data = json.dumps(message).encode()
            pipe.write(len(data).to_bytes(8, "big") + data)
            pipe.flush()

        _run_file(tree, unit.file, unit.tests, limits, floor, clock, {},
                  lambda *result: send("result", *result),
                  lambda test_id, message, walled: send("timeout", test_id, message, walled))
    except KeyboardInterrupt:
        code = 3
    except BaseException as error:  # SandboxError and grader bugs: the grading process says it
        try:
            send("error", type(error).__name__, str(error))
        except Exception:
            traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def _run_parallel(tree, plan, given, parallel, limits, floor, clock, on_result, log):
    """Run `plan` ([(file, tests, not read)] in the sequential order; `given`: {test id: result} of the tests
    of the files not read) up to `parallel` children at once: each file's tests but the training ones in one
    child, each training test in one of its own once its file's code has answered a test of the others
    without a timeout (code that hangs costs its cheap tests' limits, as in that order, not a training
    test's; a training test started before a later cheap test timed out is stopped), the longest chain
    first. Results
    are passed to `on_result` in the sequential order, as the sequential grading would give them: a test of a
    file whose code timed out in an earlier test (in that order) fails at once, whatever its worker found (its
    worker is stopped). A test that timed out on wall time while a sibling child ran is graded again alone
    once the others have ended (its later tests of that unit too)."""
    measured = thresholds.timing().get("tests", {})
    order = [(test, file) for file, tests, _ in plan for test in tests]
    children = [(file, [test]) if test.training is not None else (file, tests)
                for file, tests, not_read in plan if not not_read
                for test in (tests if tests[0].training is not None else tests[:1])]
    units = [_Unit(file, tests, START_SECONDS + sum(measured.get(t.id, limits[t.id]) for t in tests))
             for file, tests in children]
    cheap_left = {}  # file -> its units of tests but the training ones not ended yet
    for unit in units:
        if unit.tests[0].training is None:
            cheap_left[unit.file] = cheap_left.get(unit.file, 0) + 1
    for unit in units:  # the priority: its own time and that of the training tests waiting for it
        after = [u.estimate for u in units if u.file == unit.file and u.tests[0].training is not None]
        unit.priority = unit.estimate + (max(after, default=0.0) if unit.tests[0].training is None else 0.0)
    pending = sorted(units, key=lambda u: -u.priority)  # the longest chain first: the last to end ends soonest
    standins.path()  # written once, here: a worker ends without running atexit (which removes it)
    uids = [sandbox.layer().uid] + sandbox.extra_uids(max(0, min(parallel, len(units)) - 1))
    free_uids = list(uids)
    running = {}  # reader fd -> unit
    ready = dict(given)  # test id -> on_result's arguments, or None: not run (its file's code timed out earlier)
    timeouts = {}  # test id -> (message, walled)
    hung = {}
    committed = [0]
    regraded = []

    def start(unit):
        if running:
            unit.overlapped = True
            for other in running.values():
                other.overlapped = True
        unit.uid = free_uids.pop(0)
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(reader)
            _worker(unit, unit.uid, tree, limits, floor, clock, writer)
        os.close(writer)
        unit.pid, unit.reader = pid, reader
        running[reader] = unit

    def stop(unit):
        """Stop a running unit's worker (it cleans up its child); its unreported tests are not run."""
        unit.stopped = True
        try:
            os.kill(unit.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def commit():
        while committed[0] < len(order):
            test, file = order[committed[0]]
            if test.id not in ready:
                return
            result = ready.pop(test.id)
            if file in hung:
                result = (test.id, FAILED, not_tried(file, hung), 0.0, TIMED_OUT)
            elif test.id in timeouts:
                hung[file] = (test.id, timeouts[test.id][0])
                for unit in list(running.values()):  # its other tests, later in the order, cannot count
                    if unit.file == file:
                        stop(unit)
                for unit in [u for u in pending if u.file == file]:
                    pending.remove(unit)
                    ready.update({t.id: None for t in unit.tests})
            on_result(*result)
            committed[0] += 1

    def startable(unit):
        """A training test waits until its file's code has answered a test of the others without a timeout."""
        if unit.tests[0].training is None or not cheap_left.get(unit.file):
            return True
        cheap = [u for u in pending if u.file == unit.file and u.tests[0].training is None]
        answering = [u for u in running.values() if u.file == unit.file and u.tests[0].training is None]
        return not cheap and all(u.reported for u in answering)

    def drop_training_of(file):
        """Its code timed out in a test before its training tests: they are not run (see commit)."""
        for unit in [u for u in pending if u.file == file and u.tests[0].training is not None]:
            pending.remove(unit)
            ready.update({t.id: None for t in unit.tests})
        for unit in [u for u in running.values() if u.file == file and u.tests[0].training is not None]:
            stop(unit)

    def received(unit, message):
        kind, test_id, *rest = message
        if kind == "error":  # test_id: the error's type name
            raise WORKER_ERRORS.get(test_id, RuntimeError)(rest[0] if test_id in WORKER_ERRORS else
                                                           f"{test_id}: {rest[0]}")
        if unit.dropped is not None or unit.stopped:
            return
        if kind == "timeout":
            message_text, walled = rest
            if walled and unit.overlapped and not unit.alone:
                at = [t.id for t in unit.tests].index(test_id)
                unit.dropped = test_id
                again = _Unit(unit.file, unit.tests[at:], 0.0, alone=True)
                again.priority = float("inf")  # it starts as soon as none runs, and nothing starts meanwhile
                pending.insert(0, again)
                if again.tests[0].training is None:
                    cheap_left[unit.file] += 1
                regraded.append(test_id)
                log(f"  (test {test_id} timed out while another child ran beside it: graded again alone)")
                stop(unit)
                unit.stopped = False
                return
            timeouts[test_id] = (message_text, walled)
            if unit.tests[0].training is None:
                drop_training_of(unit.file)
            return
        unit.reported.add(test_id)
        ready[test_id] = (test_id, *rest)
        commit()

    def ended(unit):
        os.close(unit.reader)
        del running[unit.reader]
        _, status = os.waitpid(unit.pid, 0)
        free_uids.append(unit.uid)
        if unit.tests[0].training is None:
            cheap_left[unit.file] -= 1
        if unit.dropped is not None or unit.stopped:
            sandbox.clear_uid(unit.uid)  # stopped mid-test: nothing of that child's may meet the next one
            if unit.stopped:  # its file's code timed out earlier: its tests are not run
                ready.update({t.id: None for t in unit.tests if t.id not in unit.reported})
            commit()
            return
        missing = [t for t in unit.tests if t.id not in unit.reported]
        for test in missing:  # its worker died (a grader bug): the student loses nothing
            ready[test.id] = (test.id, NOT_RUN, f"the grader's process for this test stopped (exit status {status}); "
                                                f"please tell your instructor", 0.0, GRADER_ERROR)
        commit()

    try:
        while pending or running:
            while pending and len(running) < parallel:
                alone = [u for u in pending if u.alone] + [u for u in running.values() if u.alone]
                if alone and running:
                    break
                unit = alone[0] if alone else next((u for u in pending if startable(u)), None)
                if unit is None and not running:  # (never: a file's other tests are pending or running)
                    unit = pending[0]
                if unit is None:
                    break
                pending.remove(unit)
                start(unit)
                if unit.alone:
                    break
            readable, _, _ = select.select(list(running), [], [])
            for reader in readable:
                unit = running[reader]
                chunk = os.read(reader, 65536)
                if not chunk:
                    ended(unit)
                    continue
                unit.buffer += chunk
                while len(unit.buffer) >= 8 and len(unit.buffer) >= 8 + int.from_bytes(unit.buffer[:8], "big"):
                    size = int.from_bytes(unit.buffer[:8], "big")
                    message, unit.buffer = json.loads(unit.buffer[8:8 + size]), unit.buffer[8 + size:]
                    received(unit, message)
    finally:
        for unit in list(running.values()):  # interrupted, or an error: stop the others, wait for them
            stop(unit)
        for unit in list(running.values()):
            try:
                os.waitpid(unit.pid, 0)
            except ChildProcessError:
                pass
            os.close(unit.reader)
            sandbox.clear_uid(unit.uid)
        running.clear()
    return regraded


def interrupt_on_sigterm():
    """SIGTERM interrupts grading as Ctrl-C does (KeyboardInterrupt); returns the previous handler."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        return None


def grade(tree, out=None, only=None, log=print, allow_unsandboxed=False, check=None):
    """Grade `tree`; returns the GradingResults (also written to `out` after every test). `check`: the
    self-check already run by the caller (grade-all runs it once), else it runs here. Its children are
    forked from a warm template (template.warm_template), started first.
    Raises, before any test and without writing anything: FileNotFoundError (no tree), RubricError,
    CalibrationError, sandbox.SandboxError, selfcheck.EnvironmentBroken. KeyboardInterrupt after
    writing what was done."""
    with template.warm_template(allow_unsandboxed):
        return _grade(tree, out, only, log, allow_unsandboxed, check)


def _grade(tree, out, only, log, allow_unsandboxed, check):
    tree = Path(tree)
    if not tree.is_dir():
        raise FileNotFoundError(f"{tree} is not a folder; give the folder holding {', '.join(GRADED_FILES)}")
    found = locate_tree(tree)
    if found != tree:
        log(f"The graded files are in {found}: grading that folder")
        tree = found
    rubric = rubric_module.load()
    rubric.require_checks(all_checks())  # RubricError naming a test without a check, or a check without a test
    tests = rubric.select(only)
    torch.set_num_threads(int(os.environ.get("HW2_THREADS", 1)))  # the reference is timed as the child is
    for test in tests:  # a grader without its thresholds cannot grade: say so before starting
        if test.training is not None:
            thresholds.get(test.id, rubric)
    # the checks count operations with a dispatch mode, which imports torch's compiler stack on first use: here,
    # once, while the template starts, rather than in each worker
    importlib.import_module("torch._dynamo")
    check = check or selfcheck.run(allow_unsandboxed)  # EnvironmentBroken / SandboxError: grading does not start
    settings = time_settings(rubric)
    limits = test_limits(tests, check.speed, settings)
    log(f"Grading {tree} ({len(tests)} tests); student code runs in: {check.layer}; its CPU time counted by: "
        f"{cgroups.description()}; this machine's speed against calibration: {check.speed:.2f}x")
    selection = tuple(t.id for t in tests)
    results = GradingResults(str(tree), {n: q.title for n, q in rubric.questions.items()}, sandbox=check.layer,
                             selection=selection, budget=thresholds.budget_in_use()[0],
                             cpu_accounting=cgroups.kind())
    for test in tests:  # every selected test is listed from the start: max_score never shrinks
        if test.manual:
            results.results.append(TestResult(test.id, test.question, test.name, 0.0, test.visibility, MANUAL, 0.0,
                                              f"graded by hand ({test.points:g} points); not part of this score"))
        else:
            results.results.append(TestResult(test.id, test.question, test.name, test.points, test.visibility,
                                              NOT_RUN, 0.0, NOT_REACHED, 0.0, INTERRUPTED))
    index = {r.id: i for i, r in enumerate(results.results)}
    by_id = {t.id: t for t in tests}
    start = time.time()
    clock = _Clock(settings["total_seconds"])

    said = {}  # (reason, message) of a file that cannot run -> [(visibility rank, test id)] that gave it in full

    def on_result(test_id, status, output, seconds, reason="", cpu_seconds=0.0):
        test = by_id[test_id]
        score = test.points if status == PASSED else 0.0
        if status == FAILED and reason == MISSING_FILE:
            output += found_instead(tree, rubric.questions[test.question].file)
        if status == FAILED and reason in FILE_REASONS:  # one file's problem: in full once, then referred to
            earlier = [tid for rank, tid in said.get((reason, output), []) if rank <= VISIBILITY_RANK[test.visibility]]
            if earlier and len(output.splitlines()) > 1:
                output = f"{output.splitlines()[0][:300]} (the whole message is in test {earlier[0]})"
            else:
                said.setdefault((reason, output), []).append((VISIBILITY_RANK[test.visibility], test.id))
        results.results[index[test_id]] = TestResult(test.id, test.question, test.name, test.points, test.visibility,
                                                     status, score, output, seconds, reason, cpu_seconds)
        results.seconds = time.time() - start
        if out is not None:
            results.write(out)
        log(f"  [{status:7s}] {test.id:28s} {score:g}/{test.points:g}  ({seconds:.1f} s)")

    if out is not None and sandbox.layer(allow_unsandboxed).name == "user":  # no namespaces: the child's uid must not read them
        Path(out).mkdir(parents=True, exist_ok=True)
        os.chmod(out, 0o700)
    refused = refused_files(tree)
    training = [t for t in tests if t.training is not None]
    hung = {}
    previous = interrupt_on_sigterm()
    try:
        if out is not None:
            results.write(out)
        # one child per student file (the questions of q1.ipynb share one), so a crash in one file's code
        # cannot cost another file's tests; the training tests last, in children of their own. With more than
        # one child at a time (HW2_PARALLEL), each training test has a child of its own too, and the results
        # are given in this same order
        plan, given = [], {}  # [(file, tests of one child)]; {test id: result} of the files not read
        for stage in ([t for t in tests if t not in training], training):
            for file in dict.fromkeys(q.file for q in rubric.questions.values()):
                file_tests = [t for t in stage if rubric.questions[t.question].file == file and not t.manual]
                if file in refused:  # not read at all: each of its tests says why
                    for test in file_tests:
                        given[test.id] = (test.id, FAILED, f"{refused[file]} (the grader did not read it)", 0.0,
                                          REFUSED_FILE)
                    plan.append((file, file_tests, True))
                elif file_tests:
                    plan.append((file, file_tests, False))
        parallel = parallel_children()
        if parallel > 1:
            _run_parallel(tree, plan, given, parallel, limits, settings["floor_seconds"], clock, on_result, log)
        else:
            for file, file_tests, not_read in plan:
                if not_read:
                    for test in file_tests:
                        on_result(*given[test.id])
                else:
                    _run_file(tree, file, file_tests, limits, settings["floor_seconds"], clock, hung, on_result)
    except KeyboardInterrupt:
        results.interrupted = True
        results.seconds = time.time() - start
        if out is not None:
            results.write(out)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    results.seconds = time.time() - start
    if out is not None:
        results.write(out)
    return results
