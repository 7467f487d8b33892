"""Grade a class on a Dask cluster: `make grade-all SUBMISSIONS=<dir> SCHEDULER=<address>`.

    python -m autograder grade-all <dir> --scheduler tcp://host:8786     (or a scheduler file's path)

One task per student. On its worker, the task runs the same grading as on this machine, in a fresh
grading process (`python -m autograder.batch`, see batch.grade_student), and returns the student's
files as a value (batch.Graded); this client alone writes `<out>/<student>/` and gradebook.csv, so
the workers need no shared output folder and a task run twice (its worker died mid-student and
the scheduler gave it to another) is written once.

Before a worker takes any work, a worker plugin (GraderCheck) checks it: the same grader as this
client's (a fingerprint of autograder/, solution/ and data/'s code), the submissions and SYDNEY_DIR
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
from pathlib import Path

from distributed import Client, KilledWorker, Reschedule, WorkerPlugin, as_completed, get_worker

from autograder import batch, selfcheck
from autograder.submission import ROOT

RESOURCE = "hw2-grading"
PLUGIN = "hw2-grader-check"
FINGERPRINTED = ("autograder", "solution", "data")  # the code that grades: the same on every worker


def fingerprint():
    """A hash of the grader's code, rubric, calibration and reference (not the data cache)."""
    digest = hashlib.sha256()
    for folder in FINGERPRINTED:
        for path in sorted((ROOT / folder).rglob("*")):
            if (path.is_file() and "__pycache__" not in path.parts and "cache" not in path.relative_to(ROOT).parts
                    and path.suffix in (".py", ".toml", ".json", ".ipynb")):
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
    except KeyboardInterrupt:  # the worker is shutting down: another worker grades this student
        raise Reschedule() from None


def connect(scheduler):
    """A Client of the scheduler at `scheduler`: an address (tcp://host:8786) or a scheduler file."""
    if os.path.isfile(scheduler):
        return Client(scheduler_file=scheduler, timeout=60)
    return Client(scheduler, timeout=60)


def grade_on_cluster(scheduler, todo, only, allow_unsandboxed, submissions, log=print):
    """Check the cluster's workers, then (a generator of (student, Graded) as the tasks end, a description
    of where the grading runs). EnvironmentBroken when no worker can grade."""
    client = connect(scheduler)
    try:
        environment = batch.grading_environment()
        submissions = str(Path(submissions).resolve())
        client.register_plugin(GraderCheck(fingerprint(), environment, allow_unsandboxed, submissions))
        problems = client.run(_problem)
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
    return _gradings(client, todo, only, allow_unsandboxed, environment), where


def _gradings(client, todo, only, allow_unsandboxed, environment):
    futures = {}
    try:
        for student, path in todo.items():
            future = client.submit(grade_task, student, str(Path(path).resolve()), only, allow_unsandboxed,
                                   environment, key=f"hw2-grade-{student}-{os.urandom(4).hex()}",
                                   resources={RESOURCE: 1}, pure=False)
            futures[future] = student
        for future in as_completed(futures):
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
