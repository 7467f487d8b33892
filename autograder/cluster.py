"""Grade a class on a Dask cluster: `make grade-all SUBMISSIONS=<dir> SCHEDULER=tls://<host>:8786 TLS=<certs>`.

    python -m autograder grade-all <dir> --scheduler tls://host:8786 --tls DIR     (or a scheduler file's path)

The cluster is reached over mutual TLS only, with the course's certificates (DIR holds the client's
ca.pem, cert.pem, key.pem; tools/cluster-certs.sh makes them): a Dask scheduler runs any client's code
on its workers, so a plain tcp:// one is refused unless --insecure-scheduler, which the gradebook
(INSECURE CLUSTER), the run's log and the report then say.

One task per student. On its worker, the task runs the same grading as on this machine, in a fresh
grading process (`python -m autograder.batch`, see batch.grade_student), and returns the student's
files as a value (batch.Graded); this client alone checks it (batch.checked) and writes
`<out>/<student>/` and gradebook.csv, under its own name for the student, so
the workers need no shared output folder and a task run twice (its worker died mid-student and
the scheduler gave it to another) is written once.

Before a worker takes any work, a worker plugin (GraderCheck) checks it: the same grader as this
client's (a fingerprint of autograder/, solution/, assignment/ and data/'s code and of the versions
of the packages that compute a grade), the submissions and SYDNEY_DIR at the paths this client
gave, its TLS key (readable by its owner only, and private to student code in the user layer), and
the grader's self-check (sandbox, memory, speed) in a grading process of its own, whose layer must be
one of GRADING_LAYERS. A worker that passes gets the resource `hw2-grading` (one per thread), which
every task requires: a worker that fails takes no work, and the client names it and the reason.
Workers started later are checked the same way when they join.

The grading settings (HW2_* and SYDNEY_DIR) are this client's, sent with every task. A submission
that kills its worker again and again (Dask's KilledWorker, after `distributed.scheduler.allowed-
failures` retries) becomes that student's `grader error` row.
"""

import asyncio
import hashlib
import json
import os
import stat
import time
from pathlib import Path

from distributed import Client, KilledWorker, Reschedule, WorkerPlugin, as_completed, get_worker
from distributed.security import Security

from autograder import ROOT, batch, selfcheck

RESOURCE = "hw2-grading"
PLUGIN = "hw2-grader-check"
# the code that grades, the same on every worker: the grader, the reference, the provided files, the data's code
FINGERPRINTED = ("autograder", "solution", "assignment", "data")
PACKAGES = ("torch", "torchvision", "numpy", "nltk", "efficientnet-lite-pytorch")
NO_WORKER_SECONDS = 300  # the client stops when no worker able to grade is left for this long
TLS_FILES = ("ca.pem", "cert.pem", "key.pem")  # a role's folder of the course's certificates (tools/cluster-certs.sh)
# where student code may run on a worker: sandbox layers by name (selfcheck.SelfCheck.layer_name); "none" only
# when the client passed --unsandboxed
GRADING_LAYERS = ("bubblewrap", "user")


class ClusterRefused(selfcheck.EnvironmentBroken):
    """The cluster cannot be used as given (no TLS, missing certificates); the message says how to fix it."""


def tls_security(folder):
    """The Dask Security of a client holding the course's certificates in `folder` (TLS_FILES): mutual TLS,
    nothing in clear. ClusterRefused naming a missing file or a key others can read."""
    folder = Path(folder)
    missing = [name for name in TLS_FILES if not (folder / name).is_file()]
    if missing:
        raise ClusterRefused(f"{folder} lacks {', '.join(missing)}: give the folder holding the client's ca.pem, "
                             f"cert.pem and key.pem (`sh tools/cluster-certs.sh DIR` makes them; see the README's "
                             f"\"On a cluster\")")
    key_problem(folder / "key.pem")
    return Security(tls_ca_file=str(folder / "ca.pem"), tls_client_cert=str(folder / "cert.pem"),
                    tls_client_key=str(folder / "key.pem"), require_encryption=True)


def key_problem(path):
    """ClusterRefused when the private key at `path` is readable by its group or others (a student's code
    running as another uid could read it: `chmod 600`)."""
    if os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ClusterRefused(f"the private key {path} is readable by others than its owner; student code that could "
                             f"read it could join the cluster. Fix: `chmod 600 {path}`")


def scheduler_address(scheduler):
    """The address of `scheduler` (an address, or a scheduler file's path: the address it holds)."""
    if os.path.isfile(scheduler):
        try:
            return str(json.loads(Path(scheduler).read_text())["address"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ClusterRefused(f"{scheduler} is not a scheduler file of `.venv/bin/dask scheduler --scheduler-file` "
                                 f"({type(error).__name__}: {error})") from None
    return scheduler


def insecure_note(address):
    return (f"graded through the plain tcp:// scheduler {address} (--insecure-scheduler): anyone who could reach it "
            f"could run code on its workers and change the results")


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
    this client would. `problem` holds why it cannot (None when it can); `check` its self-check; `local` the
    settings of this worker's grading processes beside the client's (its TLS key, private to student code)."""

    name = PLUGIN

    def __init__(self, expected_fingerprint, environment, allow_unsandboxed, submissions):
        self.expected_fingerprint = expected_fingerprint
        self.environment = environment
        self.allow_unsandboxed = allow_unsandboxed
        self.submissions = submissions
        self.problem, self.check, self.local, self.key = "not checked yet", None, {}, None

    async def setup(self, worker):
        await worker.set_resources(**{RESOURCE: 0})  # no work until this check passes (a new one resets it)
        key = getattr(getattr(worker, "security", None), "tls_worker_key", None)
        if key and "\n" not in key:  # a file: the user layer refuses to grade while student code can read it
            self.key = os.path.abspath(key)
            listed = self.environment.get("HW2_PRIVATE_PATHS", "")
            self.local = {"HW2_PRIVATE_PATHS": os.pathsep.join(filter(None, [listed, self.key]))}
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
        if self.key:
            key_problem(self.key)
        check = batch.check_machine(self.allow_unsandboxed, {**self.environment, **self.local}, self.submissions)
        problem = layer_problem(check, self.allow_unsandboxed)
        if problem is not None:
            raise selfcheck.EnvironmentBroken(problem)
        return check


def layer_problem(check, allow_unsandboxed):
    """Why a worker whose self-check is `check` (selfcheck.SelfCheck's fields) may not grade, else None:
    student code must run in one of GRADING_LAYERS (unsandboxed only when the client passed --unsandboxed).
    What a layer must offer beyond its name (e.g. the user layer's system-call filter, which its description
    names) is required here."""
    name = check.get("layer_name")
    if name in GRADING_LAYERS or (name == "none" and allow_unsandboxed):
        return None
    return (f"student code would run in {check.get('layer') or name!r} on this worker, not in "
            f"{' or '.join(GRADING_LAYERS)}: install bubblewrap or run the worker as root (or pass --unsandboxed, "
            f"knowing what it means)")


def _problem(dask_worker):
    plugin = dask_worker.plugins.get(PLUGIN)
    return "the grader's check did not run" if plugin is None else plugin.problem


def grade_task(student, path, only, allow_unsandboxed, environment):
    """One student, on a worker that passed GraderCheck: its batch.Graded."""
    plugin = get_worker().plugins[PLUGIN]
    try:
        return batch.grade_student(student, path, only, allow_unsandboxed, plugin.check,
                                   {**environment, **plugin.local})
    except (KeyboardInterrupt, batch.GradingInterrupted):  # the worker is stopping: another one grades them
        raise Reschedule() from None


def connect(scheduler, tls=None, insecure=False, timeout=30):
    """A Client of the scheduler at `scheduler` (an address or a scheduler file) and whether it is insecure.
    A tls:// scheduler is reached with the course's certificates in the folder `tls` (mutual TLS); a plain
    one (tcp://) only with `insecure`. ClusterRefused or EnvironmentBroken saying why and how to fix it."""
    looks_like_file = os.sep in scheduler and "://" not in scheduler or scheduler.endswith(".json")
    if looks_like_file and not os.path.isfile(scheduler):
        raise selfcheck.EnvironmentBroken(f"the scheduler file {scheduler} does not exist: give the file the "
                                          f"scheduler wrote (.venv/bin/dask scheduler --scheduler-file ...) or its "
                                          f"address, e.g. tls://host:8786")
    address = scheduler_address(scheduler)
    if address.startswith("tls://"):
        if tls is None:
            raise ClusterRefused(f"the scheduler at {address} uses TLS: give the folder of the client's certificates "
                                 f"(--tls DIR, make ... TLS=DIR; it holds {', '.join(TLS_FILES)})")
        security, insecure = tls_security(tls), False
    elif tls is not None:
        raise ClusterRefused(f"--tls was given but the scheduler at {address} is not a tls:// address: start the "
                             f"scheduler with the course's certificates (.venv/bin/dask scheduler --tls-ca-file ... "
                             f"--tls-cert ... --tls-key ...) and give its tls:// address")
    elif not insecure:
        raise ClusterRefused(f"the scheduler at {address} talks plain TCP, without authentication: any program that "
                             f"can reach it (a student's code that reads its address in /proc included) could run "
                             f"code on every worker, as the user grading. Start the scheduler and workers with the "
                             f"course's certificates and give --tls DIR with its tls:// address (README, \"On a "
                             f"cluster\"); on a network only you can reach, --insecure-scheduler grades anyway and "
                             f"the gradebook says so")
    else:
        security = None
    try:
        if os.path.isfile(scheduler):
            return Client(scheduler_file=scheduler, timeout=timeout, security=security), insecure
        return Client(address, timeout=timeout, security=security), insecure
    except (OSError, ValueError, TimeoutError) as error:
        raise selfcheck.EnvironmentBroken(f"no Dask scheduler answers at {address} ({type(error).__name__}: "
                                          f"{error}); start one (.venv/bin/dask scheduler), check that its "
                                          f"certificates are signed by the same CA as --tls's, or grade on this "
                                          f"machine without SCHEDULER") from None


def grade_on_cluster(scheduler, todo, only, allow_unsandboxed, submissions, log=print, tls=None, insecure=False):
    """Check the cluster's workers, then (a generator of (student, Graded) as the tasks end, a description
    of where the grading runs, the insecure_note when the cluster is reached in clear, else None).
    EnvironmentBroken when no worker can grade, ClusterRefused when the cluster cannot be used as given."""
    client, insecure = connect(scheduler, tls, insecure)
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
    how = "in clear: --insecure-scheduler" if insecure else "over mutual TLS"
    where = (f"on the Dask cluster at {scheduler} ({how}): {len(able)} of {len(problems)} workers passed the "
             f"grader's check")
    note = insecure_note(scheduler_address(scheduler)) if insecure else None
    first_pass = _gradings(client, todo, only, allow_unsandboxed, environment, close=False)
    return _regrading_alone(client, first_pass, todo, only, allow_unsandboxed, environment), where, note


def _regrading_alone(client, first_pass, todo, only, allow_unsandboxed, environment):
    """The gradings of `first_pass`, except that a student with a timed-out test, graded while others were,
    is graded again at the end, alone on the cluster (one task at a time), and that grading is final."""
    again = {}
    try:
        try:
            for student, graded in first_pass:
                if len(todo) > 1 and batch.timed_out_tests(graded):
                    again[student] = batch.timed_out_tests(graded)
                    continue
                yield student, graded
        finally:
            first_pass.close()
        for student, first in again.items():
            for _, graded in _gradings(client, {student: todo[student]}, only, allow_unsandboxed, environment,
                                       close=False):
                yield student, batch.regraded_alone(graded, first)
    finally:
        client.close()


def _gradings(client, todo, only, allow_unsandboxed, environment, close=True):
    """(student, Graded) of `todo`'s students as their tasks end; the client is closed at the end when `close`."""
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
        if close:
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
