"""Grade a class on a Dask cluster: `make grade-all SUBMISSIONS=<dir> SCHEDULER=<address>`.

    python -m autograder grade-all <dir> --scheduler tcp://host:8786     (or a scheduler file's path)

One task per student. On its worker, the task runs the same grading as on this machine, in a fresh
grading process (`python -m autograder.batch`, see batch.grade_student), and returns the student's
files as a value (batch.Graded); this client alone writes `<out>/<student>/` and gradebook.csv, so
the workers need no shared output folder and a task run twice (its worker died mid-student and
the scheduler gave it to another) is written once.

Before a worker takes any work, a worker plugin (GraderCheck) checks it: the same grader as this
client's (a fingerprint of autograder/, solution/, assignment/ and data/'s code and of the versions
of the packages that compute a grade), the submissions and SYDNEY_DIR
at the paths this client gave, and the grader's self-check (sandbox, memory, speed) in a grading
process of its own. A worker that passes gets the resource `hw2-grading` (one per thread), which
every task requires: a worker that fails takes no work, and the client names it and the reason.
Workers started later are checked the same way when they join.

The grading settings (HW2_* and SYDNEY_DIR) are this client's, sent with every task. A submission
that kills its worker again and again (Dask's KilledWorker, after `distributed.scheduler.allowed-
failures` retries) becomes that student's `grader error` row.
"""

import asyncio
import hashlib
import os
import time
from pathlib import Path

from distributed import Client, KilledWorker, Reschedule, WorkerPlugin, as_completed, get_worker

from autograder import ROOT, batch, selfcheck

RESOURCE = "hw2-grading"
PLUGIN = "hw2-grader-check"
# the code that grades, the same on every worker: the grader, the reference, the provided files, the data's code
FINGERPRINTED = ("autograder", "solution", "assignment", "data")
PACKAGES = ("torch", "torchvision", "numpy", "nltk", "efficientnet-lite-pytorch")
NO_WORKER_SECONDS = 300  # the client stops when no worker able to grade is left for this long


def fingerprint():
    """A hash of the grader's code, rubric, calibration, reference and provided files (not the data
    cache), and of the versions of the packages that compute the grade."""
    from importlib import metadata

    digest = hashlib.sha256()
    for package in PACKAGES:
        digest.update(f"{package}=={metadata.version(package)}\0".encode())
    for folder in FINGERPRINTED:
        for parent, folders, files in os.walk(ROOT / folder):
            folders[:] = sorted(f for f in folders if f not in ("__pycache__", "cache"))
            for name in sorted(files):
                path = Path(parent) / name
                if path.suffix in (".py", ".toml", ".json", ".ipynb"):
                    digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


class GraderCheck(WorkerPlugin):
    """Run on every worker when it joins: the worker gets the resource RESOURCE only if it can grade as
    this client would. `problem` holds why it cannot (None when it can); `check` its self-check."""

    name = PLUGIN

    def __init__(self, expected_fingerprint, environment, allow_unsandboxed, submissions):
        self.expected_fingerprint = expected_fingerprint
        self.environment = environment
        self.allow_unsandboxed = allow_unsandboxed
        self.submissions = submissions
        self.problem, self.check = "not checked yet", None

    async def setup(self, worker):
        await worker.set_resources(**{RESOURCE: 0})  # no work until this check passes (a new one resets it)
        try:
            self.check = await asyncio.get_running_loop().run_in_executor(None, self._check_here)
        except selfcheck.EnvironmentBroken as error:
            self.problem = str(error)
            return
        except Exception as error:  # anything else: this worker takes no work either
            self.problem = f"{type(error).__name__}: {error}"
            return
        self.problem = None
        await worker.set_resources(**{RESOURCE: worker.state.nthreads})

    async def teardown(self, worker):
        await worker.set_resources(**{RESOURCE: 0})

    def _check_here(self):
        here = fingerprint()
        if here != self.expected_fingerprint:
            raise selfcheck.EnvironmentBroken(f"this worker's grader ({ROOT}, fingerprint {here}) differs from the "
                                              f"client's ({self.expected_fingerprint}): update its repository")
        if not Path(self.submissions).is_dir():
            raise selfcheck.EnvironmentBroken(f"the submissions are not at {self.submissions} on this worker (the "
                                              f"workers need them at the client's path: a shared file system)")
        sydney = self.environment.get("SYDNEY_DIR")
        if sydney and not (Path(sydney) / "dataset.json").is_file():
            raise selfcheck.EnvironmentBroken(f"Sydney-Captions is not at SYDNEY_DIR={sydney} on this worker")
        return batch.check_machine(self.allow_unsandboxed, self.environment, self.submissions)


def _problem(dask_worker):
    plugin = dask_worker.plugins.get(PLUGIN)
    return "the grader's check did not run" if plugin is None else plugin.problem


def grade_task(student, path, only, allow_unsandboxed, environment):
    """One student, on a worker that passed GraderCheck: its batch.Graded."""
    check = get_worker().plugins[PLUGIN].check
    try:
        return batch.grade_student(student, path, only, allow_unsandboxed, check, environment)
    except (KeyboardInterrupt, batch.GradingInterrupted):  # the worker is stopping: another one grades them
        raise Reschedule() from None


def connect(scheduler, timeout=30):
    """A Client of the scheduler at `scheduler`: an address (tcp://host:8786) or a scheduler file;
    EnvironmentBroken saying why when there is none."""
    looks_like_file = os.sep in scheduler and "://" not in scheduler or scheduler.endswith(".json")
    if looks_like_file and not os.path.isfile(scheduler):
        raise selfcheck.EnvironmentBroken(f"the scheduler file {scheduler} does not exist: give the file the "
                                          f"scheduler wrote (dask scheduler --scheduler-file ...) or its address, "
                                          f"e.g. tcp://host:8786")
    try:
        if os.path.isfile(scheduler):
            return Client(scheduler_file=scheduler, timeout=timeout)
        return Client(scheduler, timeout=timeout)
    except (OSError, ValueError, TimeoutError) as error:
        raise selfcheck.EnvironmentBroken(f"no Dask scheduler answers at {scheduler} ({type(error).__name__}: "
                                          f"{error}); start one (dask scheduler) or grade on this machine without "
                                          f"SCHEDULER") from None


def grade_on_cluster(scheduler, todo, only, allow_unsandboxed, submissions, log=print):
    """Check the cluster's workers, then (a generator of (student, Graded) as the tasks end, a description
    of where the grading runs). EnvironmentBroken when no worker can grade."""
    client = connect(scheduler)
    try:
        environment = batch.grading_environment()
        submissions = str(Path(submissions).resolve())
        try:
            client.register_plugin(GraderCheck(fingerprint(), environment, allow_unsandboxed, submissions))
            problems = client.run(_problem)
        except (OSError, TimeoutError) as error:
            raise selfcheck.EnvironmentBroken(f"the Dask cluster at {scheduler} failed while its workers were being "
                                              f"checked ({type(error).__name__}: {error}); grade again") from None
        able = sorted(worker for worker, problem in problems.items() if problem is None)
        for worker, problem in sorted(problems.items()):
            if problem is not None:
                log(f"worker {worker} takes no work: {problem}")
        if not able:
            raise selfcheck.EnvironmentBroken(
                f"no worker of the Dask cluster at {scheduler} can grade ({len(problems)} workers; each one's reason "
                f"is above, or none joined). Fix the workers, or grade on this machine without --scheduler.")
    except BaseException:
        client.close()
        raise
    where = f"on the Dask cluster at {scheduler}: {len(able)} of {len(problems)} workers passed the grader's check"
    first_pass = _gradings(client, todo, only, allow_unsandboxed, environment)
    return _regrading_alone(scheduler, first_pass, todo, only, allow_unsandboxed, environment), where


def _regrading_alone(scheduler, first_pass, todo, only, allow_unsandboxed, environment):
    """The gradings of `first_pass`, except that a student with a timed-out test, graded while others were,
    is graded again at the end, alone on the cluster (one task at a time), and that grading is final."""
    again = {}
    try:
        for student, graded in first_pass:
            if len(todo) > 1 and batch.timed_out_tests(graded):
                again[student] = batch.timed_out_tests(graded)
                continue
            yield student, graded
    finally:
        first_pass.close()
    for student, first in again.items():
        for _, graded in _gradings(connect(scheduler), {student: todo[student]}, only, allow_unsandboxed, environment):
            yield student, batch.regraded_alone(graded, first)


def _gradings(client, todo, only, allow_unsandboxed, environment):
    futures = {}
    try:
        for student, path in todo.items():
            future = client.submit(grade_task, student, os.path.abspath(path), only, allow_unsandboxed,
                                   environment, key=f"hw2-grade-{student}-{os.urandom(4).hex()}",
                                   resources={RESOURCE: 1}, pure=False)
            futures[future] = student
        for future in _as_completed(client, futures):
            student = futures[future]
            try:
                graded = future.result()
            except KilledWorker as error:
                graded = batch.Graded.error(student, "grader error", f"grading this submission stopped the Dask "
                                            f"workers it ran on, again and again ({error}); grade it alone with "
                                            f"`make grade STUDENT=...` to see why")
            except selfcheck.EnvironmentBroken:
                raise  # a worker cannot grade after all: the batch stops, no student is charged
            except Exception as error:  # the task itself failed: this student's row says so
                graded = batch.Graded.error(student, "grader error", f"the grading task failed on the cluster: "
                                            f"{type(error).__name__}: {str(error)[:2000]}")
            yield student, graded
    finally:
        for future in futures:
            future.cancel()
        client.close()


def _able_workers(client):
    workers = client.scheduler_info(n_workers=-1).get("workers", {}).values()
    return sum(1 for w in workers if w.get("resources", {}).get(RESOURCE, 0) > 0)


def _as_completed(client, futures):
    """The futures as they end; EnvironmentBroken when no worker able to grade is left for NO_WORKER_SECONDS
    while some students are still to grade (rather than waiting for ever)."""
    pending = as_completed(futures)
    alone_since = None
    while not pending.is_empty():
        done = pending.next_batch(block=False)
        if done:
            yield from done
            alone_since = None
            continue
        time.sleep(1)
        if _able_workers(client):
            alone_since = None
        elif alone_since is None:
            alone_since = time.time()
        elif time.time() - alone_since > NO_WORKER_SECONDS:
            raise selfcheck.EnvironmentBroken(f"no worker able to grade has been left in the cluster for "
                                              f"{NO_WORKER_SECONDS} s; the students graded so far are written. "
                                              f"Start workers, then run the same command again for the rest")
