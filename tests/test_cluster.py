"""Grading a class on a Dask cluster (autograder/cluster.py): a real scheduler and two worker processes
started here from the project's environment, graded through `grade-all --scheduler`, compared with
the same class graded on this machine; a worker killed mid-run loses no student and counts none twice."""

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from autograder import batch, cluster, selfcheck
from tests.conftest import ASSIGNMENT, ROOT, SOLUTION

ONLY = ["1.1", "1.2", "1.3", "3.1a"]  # no test whose verdict depends on time
DASK = Path(sys.executable).parent / "dask"


def _class(root):
    """Three students: the reference, the skeleton, and a decoder that exits at import."""
    root.mkdir()
    keep = shutil.ignore_patterns("__pycache__", "utils.py", "train.py")
    shutil.copytree(SOLUTION, root / "ada", ignore=keep)
    shutil.copytree(ASSIGNMENT, root / "bob", ignore=keep)
    shutil.copytree(SOLUTION, root / "linus", ignore=keep)
    (root / "linus" / "decoder.py").write_text("import sys\nsys.exit(3)\n")
    return root


class Cluster:
    """A scheduler and workers, each `dask` process in a session of its own (killed with its children)."""

    def __init__(self, folder):
        self.folder, self.workers = folder, {}
        self.file = folder / "scheduler.json"
        self.scheduler = self._start(["scheduler", "--port", "0", "--no-dashboard", "--scheduler-file", str(self.file)],
                                     "scheduler")
        deadline = time.time() + 60
        while not self.file.exists():
            assert time.time() < deadline and self.scheduler.poll() is None, self._logs("scheduler")
            time.sleep(0.2)

    def _start(self, args, name):
        log = open(self.folder / f"{name}.log", "w")
        return subprocess.Popen([str(DASK), *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=self.folder)

    def _logs(self, name):
        return (self.folder / f"{name}.log").read_text()[-3000:]

    def add_worker(self, name):
        self.workers[name] = self._start(["worker", "--scheduler-file", str(self.file), "--nthreads", "1",
                                          "--no-dashboard", "--name", name], name)

    def wait_for_workers(self, n):
        client = cluster.connect(str(self.file))
        try:
            client.wait_for_workers(n, timeout=60)
        finally:
            client.close()

    def kill(self, name):
        os.killpg(self.workers[name].pid, signal.SIGKILL)

    def stop(self):
        for process in [*self.workers.values(), self.scheduler]:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()


@pytest.fixture
def dask_cluster(tmp_path):
    if not DASK.exists():
        pytest.fail(f"{DASK} is missing: `make setup` installs requirements-instructors.txt (dask, distributed)")
    started = Cluster(tmp_path)
    for name in ("w1", "w2"):
        started.add_worker(name)
    started.wait_for_workers(2)
    yield started
    started.stop()


def _gradebook(path):
    with open(path) as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def _grade_all_command(submissions, out, scheduler, only=ONLY):
    return [sys.executable, "-m", "autograder", "grade-all", str(submissions), "--out", str(out), "--only",
            ",".join(only), "--scheduler", str(scheduler)]


@pytest.mark.slow
def test_a_class_graded_on_a_dask_cluster_gets_the_gradebook_of_this_machine(dask_cluster, tmp_path, sydney_dir):
    submissions = _class(tmp_path / "submissions")
    done = subprocess.run(_grade_all_command(submissions, tmp_path / "cluster", dask_cluster.file),
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 of 2 workers passed the grader's check" in done.stdout + done.stderr
    on_cluster = _gradebook(tmp_path / "cluster" / "gradebook.csv")

    batch.grade_all(submissions, tmp_path / "here", jobs=2, only=ONLY, log=lambda *_: None)
    here = _gradebook(tmp_path / "here" / "gradebook.csv")
    assert on_cluster == here
    assert here["ada"]["total"] == "32" and here["bob"]["total"] == "0" and here["linus"]["status"] == "import error"
    for student in here:  # the client wrote every student's files, the same as a local grading's
        names = sorted(p.name for p in (tmp_path / "cluster" / student).iterdir())
        assert names == sorted(p.name for p in (tmp_path / "here" / student).iterdir())
        assert "results.json" in names and "feedback.md" in names


@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_no_student_and_counts_none_twice(dask_cluster, tmp_path):
    submissions = _class(tmp_path / "submissions")
    for i in range(3):  # six students, so that both workers are busy when one dies
        shutil.copytree(submissions / "ada", submissions / f"ada{i}")
    out = tmp_path / "out"
    run = subprocess.Popen(_grade_all_command(submissions, out, dask_cluster.file, only=["1.1", "1.2", "1.3"]),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    deadline = time.time() + 120
    while not (out / "gradebook.csv").exists():  # the first student is written: both workers are grading
        assert time.time() < deadline and run.poll() is None, run.communicate()[0][-3000:]
        time.sleep(0.2)
    dask_cluster.kill("w1")
    output, _ = run.communicate(timeout=240)
    assert run.returncode == 0, output[-3000:]
    book = _gradebook(out / "gradebook.csv")
    with open(out / "gradebook.csv") as f:
        assert len(f.readlines()) == 1 + 6, "one row per student, none twice"
    assert set(book) == {"ada", "ada0", "ada1", "ada2", "bob", "linus"}
    assert {book[s]["total"] for s in ("ada", "ada0", "ada1", "ada2", "linus")} == {"10"}  # Question 1 only
    assert book["bob"]["total"] == "0" and {row["status"] for row in book.values()} == {"graded"}
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "a half-written student folder was left"


def test_a_worker_whose_grader_differs_takes_no_work(tmp_path):
    plugin = cluster.GraderCheck("0" * 16, {}, False, str(tmp_path))
    with pytest.raises(selfcheck.EnvironmentBroken, match="differs from the client's"):
        plugin._check_here()
    plugin = cluster.GraderCheck(cluster.fingerprint(), {}, False, str(tmp_path / "elsewhere"))
    with pytest.raises(selfcheck.EnvironmentBroken, match="the submissions are not at"):
        plugin._check_here()


def test_a_submission_that_keeps_killing_workers_becomes_a_grader_error_row(monkeypatch):
    """KilledWorker (the scheduler gave up on the task) is that student's row; the others are graded."""
    from distributed import KilledWorker

    class Future:
        def __init__(self, student):
            self.student = student

        def result(self):
            if self.student == "mallory":
                raise KilledWorker("hw2-grade-mallory", SimpleNamespace(address="tcp://10.0.0.1:1234"), 3)
            return batch.Graded(self.student, "graded", {"status.txt": "graded\n"})

        def cancel(self):
            pass

    class FakeClient:
        def submit(self, function, student, *args, **kwargs):
            assert kwargs["resources"] == {cluster.RESOURCE: 1}, "every task waits for a worker that passed the check"
            return Future(student)

        def close(self):
            pass

    class Pending:  # distributed.as_completed over futures already done
        def __init__(self, futures):
            self.futures = list(futures)

        def is_empty(self):
            return not self.futures

        def next_batch(self, block):
            done, self.futures = self.futures, []
            return done

    monkeypatch.setattr(cluster, "as_completed", Pending)
    graded = dict(cluster._gradings(FakeClient(), {"ada": "/x/ada", "mallory": "/x/mallory"}, None, False, {}))
    assert graded["ada"].status == "graded"
    assert graded["mallory"].status == "grader error" and "again and again" in graded["mallory"].files["error.txt"]


def test_the_client_stops_when_no_worker_able_to_grade_is_left(monkeypatch):
    class Waiting:  # students still to grade, and nothing ends
        def __init__(self, futures):
            pass

        def is_empty(self):
            return False

        def next_batch(self, block):
            return []

    monkeypatch.setattr(cluster, "as_completed", Waiting)
    monkeypatch.setattr(cluster, "_able_workers", lambda client: 0)
    monkeypatch.setattr(cluster, "NO_WORKER_SECONDS", 2)
    with pytest.raises(selfcheck.EnvironmentBroken, match="no worker able to grade"):
        list(cluster._as_completed(None, {}))
