"""A student's time is their own: the time limits judge the CPU time of the student's processes
(autograder/cgroups.py: the child's control groups, else its process tree), so neither a
classmate's processes nor a busy machine is charged to them; a grading that timed out beside
others is graded again alone (autograder/batch.py)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from autograder import batch, cgroups
from autograder.child.compare import TIMED_OUT
from tests.conftest import ROOT, SOLUTION

GRADED = ("q1.ipynb", "h2-q2.py", "decoder.py", "decoder_with_attention.py")
CGROUPS_HERE = cgroups.kind() != cgroups.PROCESS_TREE
needs_cgroups = pytest.mark.skipif(not CGROUPS_HERE, reason=f"control groups cannot be created here: "
                                                            f"{cgroups.description()}")
MODES = [pytest.param({}, cgroups.kind(), id="cgroups", marks=needs_cgroups),
         pytest.param({"HW2_CGROUPS": "0"}, cgroups.PROCESS_TREE, id="process-tree")]


# ---- reading the hierarchies ------------------------------------------------------------------------
def _proc(tmp_path, cgroup, mountinfo):
    (tmp_path / "cgroup").write_text(textwrap.dedent(cgroup).strip() + "\n")
    (tmp_path / "mountinfo").write_text(textwrap.dedent(mountinfo).strip() + "\n")
    return str(tmp_path / "cgroup"), str(tmp_path / "mountinfo")


def test_the_graders_own_groups_are_found_in_each_v1_hierarchy(tmp_path):
    files = _proc(tmp_path, """
        4:memory:/process_api/abc
        2:cpuacct:/
        1:cpu:/
        8:pids:/
        0::/
    """, """
        32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
        33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
        39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
    """)
    kind, folders = cgroups.own_folders(*files)
    assert kind == cgroups.CGROUP_V1
    assert folders == {"cpu": Path("/sys/fs/cgroup/cpu"), "cpuacct": Path("/sys/fs/cgroup/cpuacct"),
                       "memory": Path("/sys/fs/cgroup/memory/process_api/abc"), "pids": Path("/sys/fs/cgroup/pids")}


def test_cpu_and_cpuacct_mounted_together_and_a_container_s_mount_root(tmp_path):
    """One hierarchy for cpu and cpuacct; a container whose mounts are rooted at its own group."""
    files = _proc(tmp_path, """
        3:cpu,cpuacct:/docker/c1/grader
        2:memory:/docker/c1
        1:pids:/docker/c1
    """, """
        32 31 0:29 /docker/c1 /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
        35 31 0:32 /docker/c1 /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
        39 31 0:36 /docker/c1 /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
    """)
    kind, folders = cgroups.own_folders(*files)
    assert kind == cgroups.CGROUP_V1
    assert folders["cpu"] == folders["cpuacct"] == Path("/sys/fs/cgroup/cpu,cpuacct/grader")
    assert folders["memory"] == Path("/sys/fs/cgroup/memory") and folders["pids"] == Path("/sys/fs/cgroup/pids")


def test_cgroup_v2_is_used_only_where_its_controllers_are_delegated(tmp_path):
    group = tmp_path / "fs" / "grading"
    group.mkdir(parents=True)
    files = _proc(tmp_path, "0::/grading", f"41 31 0:38 / {tmp_path / 'fs'} rw - cgroup2 cgroup2 rw")
    (group / "cgroup.subtree_control").write_text("cpu memory pids\n")
    assert cgroups.own_folders(*files) == (cgroups.CGROUP_V2, {c: group for c in cgroups.V2_CONTROLLERS})
    (group / "cgroup.subtree_control").write_text("memory\n")
    with pytest.raises(cgroups.Unavailable, match="does not delegate cpu, pids"):
        cgroups.own_folders(*files)


# ---- the groups themselves (where this machine lets the tests create them) ------------------------------
BURN = """
import os, sys, time
seconds = float(sys.argv[1])
read, write = os.pipe()
if os.fork() == 0:  # a grandchild that leaves the tree: new session, double fork
    os.setsid()
    if os.fork() == 0:
        start = time.process_time()
        while time.process_time() - start < seconds:
            pass
        os.write(write, b"done")
    os._exit(0)
os.close(write)
os.read(read, 4)  # this process itself uses no CPU
os.wait()
print("burned", flush=True)
time.sleep(float(sys.argv[2]))
"""


@needs_cgroups
def test_a_childs_groups_are_made_under_the_graders_own_with_its_limits_and_removed_after_it():
    kind, own = cgroups.own_folders()
    groups = cgroups.child_groups(f"test-{os.getpid()}", 1.5, 16)
    try:
        assert isinstance(groups, cgroups.ChildGroups)
        for controller, folder in groups.folders.items():
            assert folder.is_dir() and folder.is_relative_to(own[controller]), (controller, folder)
        if kind == cgroups.CGROUP_V1:
            cpu = groups.folders["cpu"]
            assert (cpu / "cpu.cfs_quota_us").read_text().strip() == (cpu / "cpu.cfs_period_us").read_text().strip()
            assert int((groups.folders["memory"] / "memory.limit_in_bytes").read_text()) == int(1.5 * 2**30)
            assert int((groups.folders["pids"] / "pids.max").read_text()) == 16 + cgroups.SANDBOX_PROCESSES
        # a process joins before it runs; a grandchild it sets free (setsid, double fork) is still counted
        child = subprocess.Popen(groups.wrap([sys.executable, "-c", BURN, "0.5", "600"]), stdout=subprocess.PIPE,
                                 text=True, start_new_session=True)
        assert child.stdout.readline().strip() == "burned"
        members = [pid for folder in set(groups.folders.values()) for pid in cgroups._procs(folder)]
        assert child.pid in members
        assert groups.cpu_seconds() >= 0.4
        folders = set(groups.folders.values())
        groups.close()
        assert child.wait(timeout=10) == -signal.SIGKILL
        assert not any(folder.exists() or folder.parent.exists() for folder in folders)
    finally:
        groups.close()
        cgroups.clean_stale(f"test-{os.getpid()}")


@needs_cgroups
def test_the_groups_a_killed_grading_left_are_removed_when_its_slot_is_taken_again():
    slot = f"test-stale-{os.getpid()}"
    groups = cgroups.child_groups(slot, 1, 16)
    left = subprocess.Popen(groups.wrap(["sleep", "600"]), start_new_session=True)
    folders = set(groups.folders.values())
    time.sleep(0.2)
    cgroups.clean_stale(slot)  # as sandbox._free_uid does for the uid it takes
    assert left.wait(timeout=10) == -signal.SIGKILL
    assert not any(folder.exists() or folder.parent.exists() for folder in folders)


def test_the_process_tree_counts_an_orphan_its_subreaper_reaped():
    """Without control groups: a grandchild that left the tree comes back to the runner (a child
    subreaper), and its CPU time reaches the runner's once reaped."""
    script = ("import ctypes, sys\nctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER, as the runner\n"
              + BURN)
    child = subprocess.Popen([sys.executable, "-c", script, "0.5", "600"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "burned"
        assert cgroups.tree_cpu_seconds(child.pid) >= 0.4
    finally:
        child.kill()
        child.wait()
    assert "become_subreaper()" in (ROOT / "autograder" / "child" / "runner.py").read_text()


# ---- a timeout beside other gradings is graded again alone --------------------------------------------------
def _graded(student, timed_out):
    results = {"tests": [{"extra_data": {"id": "2.2-accuracy", "reason": TIMED_OUT if timed_out else ""}}],
               "extra_data": {}}
    return batch.Graded(student, "timed out" if timed_out else "graded", {"results.json": json.dumps(results)}, results)


def test_a_timeout_beside_another_grading_is_graded_again_alone(monkeypatch):
    running, calls, alone = [], [], []

    def grade_student(student, path, only, allow_unsandboxed=False, check=None, environment=None):
        running.append(student)
        alone.append(len(running) == 1)
        calls.append(student)
        time.sleep(0.1)
        running.remove(student)
        return _graded(student, timed_out=student == "slow" and calls.count("slow") == 1)

    monkeypatch.setattr(batch, "grade_student", grade_student)
    todo = {"ada": "ada", "slow": "slow", "zoe": "zoe"}
    gradings = list(batch._on_this_machine(todo, 2, None, False, None))
    assert [s for s, _ in gradings][-1] == "slow" and calls.count("slow") == 2
    final = dict(gradings)["slow"]
    assert final.status == "graded" and alone[len(calls) - 1], "the second grading did not run alone"
    assert final.results["extra_data"] == {"regraded_alone": True, "first_grading_timed_out": ["2.2-accuracy"]}
    assert json.loads(final.files["results.json"])["extra_data"]["regraded_alone"] is True
    assert not any(g.results["extra_data"] for s, g in gradings if s != "slow")

    calls.clear()  # one at a time: a timeout is nobody else's doing, and it is final
    gradings = dict(batch._on_this_machine(todo, 1, None, False, None))
    assert calls.count("slow") == 1 and gradings["slow"].status == "timed out"


# ---- through the real grader (slow) -------------------------------------------------------------------------
BURNER = '''
import os as _os

_BURNING = []


def _burn(count=60):
    """Keep `count` busy processes (or as many as the process limit allows), each in a session of its own."""
    alive = []
    for pid in _BURNING:
        try:
            if _os.waitpid(pid, _os.WNOHANG) == (0, 0):
                alive.append(pid)
        except ChildProcessError:
            pass
    _BURNING[:] = alive
    while len(_BURNING) < count:
        try:
            pid = _os.fork()
        except OSError:
            break
        if pid == 0:
            _os.setsid()
            while True:
                pass
        _BURNING.append(pid)
'''


def _copy(tree):
    tree.mkdir(parents=True)
    for name in GRADED:
        shutil.copy(SOLUTION / name, tree / name)
    return tree


def _with(tree, file, anchor, insert, prelude=""):
    text = (tree / file).read_text()
    assert text.count(anchor) == 1, anchor
    (tree / file).write_text(text.replace(anchor, anchor + insert).replace("import utils\n", "import utils\n" + prelude, 1))


def _grade_all(submissions, out, only, env=None):
    environment = dict(os.environ, **(env or {}))
    done = subprocess.run([sys.executable, "-m", "autograder", "grade-all", str(submissions), "--out", str(out),
                           "--jobs", "2", "--only", only], cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    return {p.name: json.loads((p / "results.json").read_text()) for p in Path(out).iterdir()
            if (p / "results.json").is_file()}


# each test's limit in the burning classmate's batch (HW2_TEST_SECONDS): the honest child's costliest test,
# its start and 2.2-architecture, uses about 1.4 s of CPU time
BURNING_LIMIT = 5
NO_TRAINING = "2.2-architecture,2.2-output-shape,2.2-log-probabilities,2.2-equivalence,2.2-dropout,2.2-gradients," \
              "2.2-vectorized,2.2-speed,2.2-train-batch"


def _full_marks(results):
    return results["score"] == sum(t["max_score"] for t in results["tests"]), [
        (t["extra_data"]["id"], t["output"][:300]) for t in results["tests"] if t["score"] < t["max_score"]]


@pytest.mark.slow
@pytest.mark.timeout(900)  # the classmate times out beside the honest one: it is graded twice
@pytest.mark.parametrize("env, accounting", MODES)
def test_a_classmate_burning_the_cpu_costs_an_honest_submission_nothing(tmp_path, env, accounting):
    """A classmate graded at the same time keeps 60 busy processes (as many as its process limit allows),
    each in a session of its own, during each of its requests; an honest copy of the reference keeps full
    marks on 2.2's tests but the training one (the dearest: the CPU-time ratio of 2.2-speed is among
    them), each within BURNING_LIMIT seconds of CPU time, a quarter of the 20 s floor: the less time an
    honest test may use, the sooner a classmate's CPU time charged to it would fail it. With control groups
    the classmate's processes share one core; without, a test of the honest one that timed out meanwhile
    would be graded again alone. The classmate times out (its burners are its own), beside the honest one
    and again alone: each of its gradings lasts its limit and the grace, not the calibrated limits."""
    subs = tmp_path / "subs"
    _copy(subs / "honest")
    classmate = _copy(subs / "classmate")
    _with(classmate, "h2-q2.py", "    def __init__(self, dropout_prob):\n", "        _burn()\n", BURNER)
    _with(classmate, "h2-q2.py", "    def forward(self, x):\n", "        _burn()\n")
    graded = _grade_all(subs, tmp_path / "out", NO_TRAINING, dict(env, HW2_TEST_SECONDS=str(BURNING_LIMIT)))
    full, lost = _full_marks(graded["honest"])
    assert full, lost
    assert graded["honest"]["extra_data"]["cpu_accounting"] == accounting
    assert graded["classmate"]["score"] < graded["honest"]["score"], "the classmate did not burn"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_busy_machine_costs_an_honest_submission_nothing(tmp_path):
    """Four busy processes outside the grader, each in a session of its own, for the whole grading."""
    subs = tmp_path / "subs"
    _copy(subs / "ada")
    _copy(subs / "grace")
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True) for _ in range(4)]
    try:
        graded = _grade_all(subs, tmp_path / "out", "2.2")
    finally:
        for process in busy:
            process.kill()
            process.wait()
    for student in ("ada", "grace"):
        full, lost = _full_marks(graded[student])
        assert full, (student, lost)


GRANDCHILD = '''
_BURNED = []


def _burn_in_a_grandchild(seconds):
    """Burn `seconds` of CPU time in a grandchild that left the process tree (setsid, double fork)."""
    import os, time
    read, write = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            start = time.process_time()
            while time.process_time() - start < seconds:
                pass
            os.write(write, b"x")
        os._exit(0)
    os.close(write)
    os.read(read, 1)
    os.close(read)
'''


@pytest.fixture(scope="module")
def grandchild_gradings(tmp_path_factory, request):
    """{mode id: results.json} of a tree whose forward burns 3 s of CPU time in a grandchild that left the
    tree, graded in each accounting mode selected, both at once (what is charged is CPU time)."""
    from concurrent.futures import ThreadPoolExecutor

    test = "test_the_cpu_time_of_a_grandchild_that_left_the_tree_is_charged"
    chosen = {item.callspec.id for item in request.session.items if item.module is request.module
              and item.originalname == test}
    modes = {mode.id: mode.values[0] for mode in MODES if mode.id in chosen and (mode.id != "cgroups" or CGROUPS_HERE)}
    tree = _copy(tmp_path_factory.mktemp("grandchild") / "student")
    _with(tree, "h2-q2.py", "    def forward(self, x):\n",
          "        if not _BURNED:\n            _BURNED.append(1)\n            _burn_in_a_grandchild(3.0)\n", GRANDCHILD)

    def graded(mode):
        out = tree.parent / f"out-{mode}"
        done = subprocess.run([sys.executable, "-m", "autograder", "grade", str(tree), "--out", str(out),
                               "--only", "2.2-architecture,2.2-output-shape"], cwd=ROOT, capture_output=True,
                              text=True, env=dict(os.environ, HW2_TEST_SECONDS="60", **modes[mode]), timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads((out / "results.json").read_text())

    with ThreadPoolExecutor(2) as pool:
        return dict(zip(modes, pool.map(graded, modes)))


@pytest.mark.slow
@pytest.mark.parametrize("env, accounting", MODES)
def test_the_cpu_time_of_a_grandchild_that_left_the_tree_is_charged(grandchild_gradings, request, env, accounting):
    results = grandchild_gradings[request.node.callspec.id]
    assert results["extra_data"]["cpu_accounting"] == accounting
    charged = sum(t["extra_data"]["cpu_seconds"] for t in results["tests"])
    assert charged >= 3.0, f"{charged:.1f} s of CPU time charged for a grandchild's 3 s and the child's start"
