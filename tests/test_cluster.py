"""Grading a class on a Dask cluster (autograder/cluster.py): a real scheduler and worker processes
started here from the project's environment with certificates made for the run (tools/cluster-certs.sh,
mutual TLS), graded through `grade-all --scheduler --tls`, compared with the same class graded on this
machine; a worker killed mid-run loses no student and counts none twice; a client without the course's
certificates is refused, a plain tcp:// scheduler too unless --insecure-scheduler; what a tampered worker
returns is refused and written nowhere."""

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


def make_certs(folder):
    """The course's certificates, made as the README says (tools/cluster-certs.sh): folder/{scheduler,worker,client}."""
    done = subprocess.run(["sh", str(ROOT / "tools" / "cluster-certs.sh"), str(folder)], capture_output=True, text=True)
    if done.returncode != 0 and not shutil.which("openssl"):
        pytest.fail("openssl is missing (apt-get install openssl): the cluster's certificates are made with it")
    assert done.returncode == 0, done.stderr
    return folder


def _tls(role, certs):
    return ["--tls-ca-file", str(certs / role / "ca.pem"), "--tls-cert", str(certs / role / "cert.pem"),
            "--tls-key", str(certs / role / "key.pem")]


class Cluster:
    """A scheduler and workers started with the course's certificates (`certs`), each `dask` process in a
    session of its own (killed with its children), importing this repository's code."""

    def __init__(self, folder, certs):
        self.folder, self.workers, self.certs = folder, {}, certs
        self.file = folder / "scheduler.json"
        self.scheduler = self._start(["scheduler", "--port", "0", "--no-dashboard", "--scheduler-file", str(self.file),
                                      *_tls("scheduler", certs)], "scheduler")
        deadline = time.time() + 60
        while not self.file.exists():
            assert time.time() < deadline and self.scheduler.poll() is None, self._logs("scheduler")
            time.sleep(0.2)

    def _start(self, args, name):
        log = open(self.folder / f"{name}.log", "w")
        return subprocess.Popen([str(DASK), *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=self.folder, env={**os.environ, "PYTHONPATH": str(ROOT)})

    def _logs(self, name):
        return (self.folder / f"{name}.log").read_text()[-3000:]

    def add_worker(self, name):
        self.workers[name] = self._start(["worker", "--scheduler-file", str(self.file), "--nthreads", "1",
                                          "--no-dashboard", "--name", name, *_tls("worker", self.certs)], name)

    def client(self):
        return cluster.connect(str(self.file), tls=self.certs / "client")[0]

    def wait_for_workers(self, n):
        client = self.client()
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


def _started(tmp_path, workers):
    if not DASK.exists():
        pytest.fail(f"{DASK} is missing: `make setup` installs requirements-instructors.txt (dask, distributed)")
    started = Cluster(tmp_path, make_certs(tmp_path / "tls"))
    try:
        for name in workers:
            started.add_worker(name)
        started.wait_for_workers(len(workers))
    except BaseException:
        started.stop()
        raise
    return started


@pytest.fixture
def dask_cluster(tmp_path):
    started = _started(tmp_path, ("w1", "w2"))
    yield started
    started.stop()


@pytest.fixture
def one_worker_cluster(tmp_path):
    started = _started(tmp_path, ("w1",))
    yield started
    started.stop()


def _gradebook(path):
    with open(path) as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def _grade_all_command(submissions, out, started, only=ONLY):
    return [sys.executable, "-m", "autograder", "grade-all", str(submissions), "--out", str(out), "--only",
            ",".join(only), "--scheduler", str(started.file), "--tls", str(started.certs / "client")]


@pytest.mark.slow
def test_a_class_graded_on_a_dask_cluster_gets_the_gradebook_of_this_machine(dask_cluster, tmp_path, sydney_dir):
    submissions = _class(tmp_path / "submissions")
    done = subprocess.run(_grade_all_command(submissions, tmp_path / "cluster", dask_cluster),
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(over mutual TLS): 2 of 2 workers passed the grader's check" in done.stdout + done.stderr
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
    run = subprocess.Popen(_grade_all_command(submissions, out, dask_cluster, only=["1.1", "1.2", "1.3"]),
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
    sleep = time.sleep
    monkeypatch.setattr(cluster.time, "sleep", lambda seconds: sleep(seconds / 100))  # its waits: 10 ms, not 1 s
    monkeypatch.setattr(cluster, "NO_WORKER_SECONDS", 0.005)  # raised at the second wait
    with pytest.raises(selfcheck.EnvironmentBroken, match="no worker able to grade"):
        list(cluster._as_completed(None, {}))


def test_a_plain_tcp_scheduler_is_refused_unless_the_instructor_says_so(tmp_path):
    """Without TLS anyone who reaches the scheduler runs code on the workers: grade-all refuses it, naming
    the fix, unless --insecure-scheduler; a tls:// scheduler needs the client's certificates."""
    with pytest.raises(cluster.ClusterRefused, match="talks plain TCP, without authentication.*--tls DIR"):
        cluster.connect("tcp://127.0.0.1:1")
    file = tmp_path / "scheduler.json"
    file.write_text('{"address": "tcp://127.0.0.1:1"}')
    with pytest.raises(cluster.ClusterRefused, match="talks plain TCP"):
        cluster.connect(str(file))
    with pytest.raises(selfcheck.EnvironmentBroken, match="no Dask scheduler answers at tcp://127.0.0.1:1"):
        cluster.connect("tcp://127.0.0.1:1", insecure=True, timeout=1)
    with pytest.raises(cluster.ClusterRefused, match="uses TLS: give the folder of the client's certificates"):
        cluster.connect("tls://127.0.0.1:1")
    with pytest.raises(cluster.ClusterRefused, match="is not a tls:// address"):
        cluster.connect("tcp://127.0.0.1:1", tls=tmp_path)
    with pytest.raises(cluster.ClusterRefused, match="lacks ca.pem, cert.pem, key.pem"):
        cluster.connect("tls://127.0.0.1:1", tls=tmp_path)


def test_a_private_key_others_can_read_is_refused(tmp_path):
    certs = make_certs(tmp_path / "tls")
    assert cluster.tls_security(certs / "client").require_encryption
    os.chmod(certs / "client" / "key.pem", 0o644)
    with pytest.raises(cluster.ClusterRefused, match="readable by others than its owner.*chmod 600"):
        cluster.tls_security(certs / "client")


def test_a_worker_grades_only_in_a_sandbox_layer():
    """The worker's self-check names its layer: none (unsandboxed) only when the client allowed it."""
    assert cluster.layer_problem({"layer_name": "bubblewrap", "layer": "bubblewrap (...)"}, False) is None
    assert cluster.layer_problem({"layer_name": "user", "layer": "unprivileged uid 64000"}, False) is None
    assert "not in bubblewrap or user" in cluster.layer_problem({"layer_name": "none", "layer": "NONE: ..."}, False)
    assert cluster.layer_problem({"layer_name": "none", "layer": "NONE: ..."}, True) is None
    assert cluster.layer_problem({"layer": "an older grader's check"}, False) is not None


def _tampered(student, path, only, *args, **kwargs):
    """What a tampered worker returns for some students (the others are graded for real)."""
    from tests.test_batch import _add_test, _over_max, forged

    if student == "mallory":  # a folder and a file outside --out
        graded = forged("../../escape", only=only)
        graded.files["../../authorized_keys"] = "ssh-ed25519 AAAA mallory\n"
        return graded
    if student == "eve":
        return forged("eve", only=only, tamper=_add_test)
    if student == "oscar":
        return forged("oscar", only=only, tamper=_over_max)
    return _tampered.real(student, path, only, *args, **kwargs)


def _tamper(dask_worker):
    if not hasattr(_tampered, "real"):
        _tampered.real = batch.grade_student
    batch.grade_student = _tampered


@pytest.mark.slow
def test_grading_over_tls_refuses_strangers_and_what_a_tampered_worker_returns(one_worker_cluster, tmp_path):
    """A client with certificates of another CA is refused; grade-all with the course's grades over
    tls://; a worker's results that name a path, an unknown test or more points than the rubric's are
    grader error rows, and nothing is written outside --out; a formula in a submission's name is text."""
    stranger = make_certs(tmp_path / "stranger")
    with pytest.raises(selfcheck.EnvironmentBroken, match="no Dask scheduler answers at tls://"):
        cluster.connect(str(one_worker_cluster.file), tls=stranger / "client", timeout=5)

    client = one_worker_cluster.client()
    try:
        client.run(_tamper)
    finally:
        client.close()
    submissions = tmp_path / "submissions"
    keep = shutil.ignore_patterns("__pycache__", "utils.py", "train.py")
    for name in ("ada", '=HYPERLINK("evil.example","open")', "eve", "mallory", "oscar"):
        shutil.copytree(SOLUTION, submissions / name, ignore=keep)
    out = tmp_path / "out"
    done = subprocess.run(_grade_all_command(submissions, out, one_worker_cluster, only=["1.1"]),
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(over mutual TLS): 1 of 1 workers passed" in done.stdout + done.stderr
    with open(out / "gradebook.csv", newline="") as f:
        book = {row["submission"]: row for row in csv.DictReader(f)}
    assert book["ada"]["status"] == "graded" and book["ada"]["total"] == "4"
    assert book["'=HYPERLINK(\"evil.example\",\"open\")"]["total"] == "4"
    for name, why in (("mallory", "it is named '../../escape', not 'mallory'"),
                      ("eve", "test '9.9-free' is not one of the tests graded"), ("oscar", "has 100 of 2 points")):
        assert book[name]["status"] == "grader error" and book[name]["total"] == "", name
        assert why in (out / name / "error.txt").read_text()
        assert not (out / name / "results.json").exists()
    assert not (tmp_path.parent / "escape").exists() and not list(tmp_path.rglob("authorized_keys"))
