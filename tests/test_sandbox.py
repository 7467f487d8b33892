"""Student code runs sandboxed: no writes outside its /tmp, no network, no process left behind."""

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, SOLUTION, graded_two_at_a_time, selected_tests

HOSTILE = '''
import os, socket, subprocess, sys
from pathlib import Path
ROOT = Path({root!r})
try:
    (ROOT / "grades-forged.json").write_text("{{}}")
except OSError as error:
    print("write refused:", error)
try:
    socket.create_connection(("1.1.1.1", 80), timeout=2)
    print("NETWORK OPEN")
except OSError as error:
    print("network refused:", error)
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)  # hw2-left-behind"])
'''


def _copy(tree):
    tree.mkdir(parents=True)
    for name in ("h2-q2.py", "decoder.py", "decoder_with_attention.py"):
        shutil.copy(SOLUTION / name, tree / name)
    return tree


def _hostile_import(tmp_path):
    tree = _copy(tmp_path / "student")
    text = (tree / "decoder.py").read_text()
    (tree / "decoder.py").write_text(HOSTILE.format(root=str(ROOT)) + text)
    # 3.1a's tests but its training one, whose verdict is not read here (their child runs the import as any other)
    return tree, tmp_path / "out", ["--only", "3.1a-output-shape,3.1a-equivalence,3.1a-state-and-dropout,3.1a-gradients"]


@pytest.fixture(scope="module")
def graded(tmp_path_factory, request):
    """{test: (results.json, the grading's --out)} of the slow tests' gradings selected (-k), two at a time."""
    gradings = {test: GRADINGS[test](tmp_path_factory.mktemp(test[5:40])) for test in selected_tests(request, *GRADINGS)}
    found = graded_two_at_a_time({test: (*grading, None) for test, grading in gradings.items()})
    return {test: (results, gradings[test][1]) for test, (results, _) in found.items()}


@pytest.mark.slow
def test_hostile_import_is_contained(graded):
    results, _ = graded["test_hostile_import_is_contained"]
    assert not (ROOT / "grades-forged.json").exists()
    time.sleep(1)
    left = subprocess.run(["pgrep", "-f", "hw2-left-behind"], capture_output=True, text=True).stdout.strip()
    assert not left, f"a process the submission started is still running: {left}"
    assert len(results["tests"]) == 4 and all(t["status"] == "passed" for t in results["tests"])


SNOOP = '''
import os
LOOKED_FOR = {paths!r}
VISIBLE = [p for p in LOOKED_FOR if os.path.exists(p)]
'''


def _snooping(tmp_path):
    classmate = tmp_path / "submissions" / "classmate"
    classmate.mkdir(parents=True)
    shutil.copy(SOLUTION / "decoder.py", classmate / "decoder.py")
    paths = [str(SOLUTION / "decoder.py"), str(ROOT / "autograder" / "checks" / "q3.py"),
             str(ROOT / "autograder" / "calibration.json"), str(ROOT / "tests" / "wrong_submissions.py"),
             str(classmate / "decoder.py"), str(ROOT / "solution")]
    tree = _copy(tmp_path / "submissions" / "student")
    text = (tree / "decoder.py").read_text()
    anchor = "        embeddings = self.embedding(word)  # (batch, embed_dim)\n"
    text = text.replace(anchor, "        raise RuntimeError(f'visible: {VISIBLE}')\n" + anchor)
    (tree / "decoder.py").write_text(SNOOP.format(paths=paths) + text)
    # 3.1a's tests but its training one (whose verdict is not read here) run in the decoder's child
    return tree, tmp_path / "out", ["--only", "1.1,3.1a-output-shape,3.1a-equivalence,3.1a-state-and-dropout,"
                                              "3.1a-gradients"]


@pytest.mark.slow
def test_student_code_cannot_see_the_reference_the_hidden_checks_or_other_students(graded):
    """A submission that looks for the reference (to delegate to it), the hidden checks, the thresholds
    or a classmate's files finds none of them (1.1 first: the grader has loaded a reference module
    before the decoder's child starts)."""
    results, _ = graded["test_student_code_cannot_see_the_reference_the_hidden_checks_or_other_students"]
    outputs = [t["output"] for t in results["tests"] if t["extra_data"]["id"] == "3.1a-output-shape"]
    assert "visible: []" in outputs[0], outputs


def test_the_child_package_imports_nothing_of_the_repository_outside_itself():
    """autograder/child/ is the trust boundary: binding it alone into the sandbox must be enough."""
    import ast

    local = {p.stem for p in ROOT.iterdir()} | {"autograder", "data", "solution", "assignment", "tests", "experiments"}
    for path in (ROOT / "autograder" / "child").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            outside = [n for n in names if n.split(".")[0] in local]
            assert not outside, f"{path.name} imports {outside}: the child package must import only itself and libraries"


STANDIN_THIEF = '''
import os, glob
def _standins_text():
    for path in ["/run/hw2/standins.py", *glob.glob("/tmp/hw2-standins-*/standins.py"),
                 *glob.glob(os.path.expanduser("~") + "/standins.py")]:
        try:
            return open(path).read()
        except OSError:
            pass
    return None
'''


def _standin_thief(tmp_path):
    """A wrong Attention, and a decoder that looks for the stand-in's text, prints it and raises it."""
    tree = _copy(tmp_path / "student")
    text = (tree / "decoder_with_attention.py").read_text()
    text = text.replace("        att1 = self.encoder_att(encoder_out)  # (batch, num_locations, attention_dim)\n",
                        "        att1 = 2 * self.encoder_att(encoder_out)  # (batch, num_locations, attention_dim)\n")
    text = text.replace("    def forward(self, word, decoder_hidden_state, decoder_cell_state, encoder_out):\n",
                        "    def forward(self, word, decoder_hidden_state, decoder_cell_state, encoder_out):\n"
                        "        stolen = _standins_text()\n"
                        "        if stolen is not None:\n"
                        "            print(stolen)\n"
                        "            raise RuntimeError('STOLEN ' + stolen)\n")
    (tree / "decoder_with_attention.py").write_text(STANDIN_THIEF + text)
    return tree, tmp_path / "out", ["--only", "3.1b"]


# test: how its grading is made (tree, out, arguments), in a folder of its own
GRADINGS = {"test_hostile_import_is_contained": _hostile_import,
            "test_student_code_cannot_see_the_reference_the_hidden_checks_or_other_students": _snooping,
            "test_the_stand_ins_reach_only_the_test_that_needs_them_and_never_the_feedback": _standin_thief}


@pytest.mark.slow
def test_the_stand_ins_reach_only_the_test_that_needs_them_and_never_the_feedback(graded):
    """A wrong Attention makes 3.1b-bleu train with the grader's stand-in; a decoder that finds the
    stand-in's text and prints and raises it shows none of it, and no other test's child sees the file."""
    _, out = graded["test_the_stand_ins_reach_only_the_test_that_needs_them_and_never_the_feedback"]
    results = (out / "results.json").read_text() + (out / "feedback.md").read_text()
    by_id = {t["extra_data"]["id"]: t for t in json.loads((out / "results.json").read_text())["tests"]}
    # the children of the other tests never saw the file: the decoder's own tests pass
    assert by_id["3.1b-decoder-shape"]["status"] == "passed", by_id["3.1b-decoder-shape"]["output"]
    # the BLEU test's child did, and nothing the student's code printed or raised there is shown
    assert by_id["3.1b-bleu"]["score"] == 0 and "not shown" in by_id["3.1b-bleu"]["output"]
    assert "STOLEN" not in results
    from autograder import standins

    leaked = [line.strip() for line in standins.source().splitlines()
              if len(line.strip()) >= 16 and not line.strip().startswith("import ") and line.strip() in results]
    assert not leaked, leaked


def test_an_answer_whose_tensor_is_a_view_larger_than_its_storage_is_refused():
    """4 bytes standing for gigabytes (a stride-0 expansion) never reach the grader's checks: the wire
    format holds dense tensors only, so the view counts for all it stands for, beyond the limit."""
    import torch

    from autograder.child.wire import WireError, decode, encode

    assert decode(encode({"ok": torch.zeros(3, 4)}))["ok"].shape == (3, 4)
    with pytest.raises(WireError, match="bytes in all"):
        encode({"gradients": {"w": torch.zeros(1).expand(25_000, 20_000)}})


def test_the_user_layer_counts_the_history_and_earlier_grades_as_private():
    from autograder import sandbox

    private = sandbox.private_paths()
    for name in ("solution", "autograder/checks", "autograder/calibration.json", "tests", ".git"):
        if (ROOT / name).exists():
            assert str(ROOT / name) in private, name


# ---- the child's confinement (autograder/child/confine.py) and what the user layer cleans ----------
CONFINED = r'''
import ctypes, errno, fcntl, json, os, socket, struct, sys, threading, time
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def called(result):  # a C call's result: "ok" or the errno's name
    return "ok" if result != -1 else errno.errorcode.get(ctypes.get_errno(), "?")


def attempt(action):
    try:
        action()
        return "ok"
    except OSError as error:
        return errno.errorcode.get(error.errno, str(error.errno))


def write(path):
    with open(path, "w") as f:
        f.write("hw2")


def clone_parent():  # clone(CLONE_PARENT | SIGCHLD): a process whose parent is this one's, out of its tree
    child = libc.syscall(56, 0x00008000 | 17, 0, 0, 0, 0)
    if child == 0:
        os._exit(0)
    return called(child)


pid = os.fork()
if pid == 0:  # a process started before the confinement, to trace, read and signal
    os.close(1)
    os.close(2)
    time.sleep(10)
    os._exit(0)
{before}
from autograder.child.confine import confine, status
confine()
{after}
ran = []
thread = threading.Thread(target=lambda: ran.append(1))
thread.start()
thread.join()
report = {
    "tcp": attempt(socket.socket), "unix": attempt(lambda: socket.socket(socket.AF_UNIX)),
    "socketpair": attempt(socket.socketpair), "udp": attempt(lambda: socket.socket(type=socket.SOCK_DGRAM)),
    "shmget": called(libc.shmget(0, 4096, 0o1666)), "semget": called(libc.semget(0, 1, 0o1666)),
    "msgget": called(libc.msgget(0, 0o1666)),
    "mq_open": called(libc.mq_open(b"/hw2-confine", os.O_CREAT | os.O_RDWR, 0o600, None)),
    "ptrace": called(libc.ptrace(16, pid, None, None)),  # PTRACE_ATTACH
    "process_vm_readv": called(libc.syscall(310, pid, None, 0, None, 0, 0)),
    "pidfd_getfd": called(libc.syscall(438, 0, 0, 0)), "unshare": called(libc.unshare(0x10000000)),
    "io_uring_setup": called(libc.syscall(425, 1, None)), "keyctl": called(libc.syscall(250, 0, -4, 0)),
    "lockf": attempt(lambda: fcntl.lockf(open(sys.executable, "rb"), fcntl.LOCK_SH | fcntl.LOCK_NB, 1, 2**30)),
    "F_GETLK": attempt(lambda: fcntl.fcntl(open(sys.executable, "rb"), fcntl.F_GETLK, struct.pack("hhqqi", 0, 0, 0, 1, 0))),
    "flock": attempt(lambda: fcntl.flock(open(sys.executable, "rb"), fcntl.LOCK_SH | fcntl.LOCK_NB)),
    "inotify_init1": called(libc.inotify_init1(0)),
    "subreaper on": called(libc.prctl(36, 1, 0, 0, 0)), "subreaper off": called(libc.prctl(36, 0, 0, 0, 0)),
    "clone CLONE_PARENT": clone_parent(),
    "write home": attempt(lambda: write(os.path.join(os.environ["TMPDIR"], "mine"))),
    "write elsewhere": attempt(lambda: write(sys.argv[1])), "write /dev/null": attempt(lambda: write("/dev/null")),
    "thread": "ok" if ran else "no", "pipe": attempt(lambda: os.write(os.pipe()[1], b"x")),
    "signal": attempt(lambda: os.kill(pid, 9)), "status": status(),
}
print(json.dumps(report))
'''


def _confined_child(tmp_path, before="", after=""):
    """The report of a process that confines itself as the grading child does (CONFINED)."""
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(home), "HOME": str(home), "HW2_CONFINE": "required",
           "PYTHONPATH": str(ROOT), "MPLCONFIGDIR": str(home / "matplotlib")}
    done = subprocess.run([sys.executable, "-c", CONFINED.replace("{before}", before).replace("{after}", after),
                           str(elsewhere / "theirs")], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_the_confined_child_has_no_channel_out_and_writes_only_in_its_home(tmp_path):
    """socket() of every family, System V IPC, message queues, tracing and reading another process,
    io_uring, keyrings, new namespaces and leaving the process tree (a sibling by CLONE_PARENT, the child
    subreaper turned off) are refused (EPERM); threads, pipes, writes in the child's home and becoming a
    subreaper work; where the kernel has Landlock, writes elsewhere are refused."""
    report = _confined_child(tmp_path)
    status = report.pop("status")
    assert status["seccomp"] and status["no_new_privs"] and status["sockets_refused"] and not status["error"], status
    allowed = {"write home", "write /dev/null", "thread", "pipe", "subreaper on"}
    assert {k: v for k, v in report.items() if k in allowed} == dict.fromkeys(allowed, "ok"), report
    refused = {k: v for k, v in report.items() if k not in allowed | {"write elsewhere", "signal"}}
    assert refused == dict.fromkeys(refused, "EPERM"), refused
    if status["landlock"]:  # writes outside the home; signals to processes outside the child's (ABI 6)
        assert report["write elsewhere"] == "EACCES" and not (tmp_path / "elsewhere" / "theirs").exists(), report
        assert report["signal"] == ("EPERM" if status["landlock"] >= 6 else "ok"), report


def test_torch_and_the_homework_libraries_work_in_the_confined_child(tmp_path):
    """torch imported first (as by the runner), then confined: torch's threads start and are under
    the filter; a DataLoader, tqdm, matplotlib (Agg) and nltk's BLEU work."""
    before = "import torch, numpy"
    after = r'''
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from nltk.translate.bleu_score import corpus_bleu
torch.set_num_threads(2)
product = torch.randn(600, 600) @ torch.randn(600, 600)
threads = len(os.listdir("/proc/self/task"))
batches = [x.shape[0] for x, y in tqdm(DataLoader(TensorDataset(torch.randn(20, 3), torch.arange(20)), batch_size=8))]
plt.plot(numpy.arange(3))
plt.savefig(os.path.join(os.environ["TMPDIR"], "figure.png"))
bleu = corpus_bleu([[["a", "b", "c", "d"]]], [["a", "b", "c", "d"]])
assert batches == [8, 8, 4] and bleu == 1.0 and threads > 1, (batches, bleu, threads)
'''
    report = _confined_child(tmp_path, before, after)
    assert report["status"]["seccomp"] and report["status"]["threads"] > 1, report["status"]
    assert report["tcp"] == "EPERM" and (tmp_path / "home" / "figure.png").stat().st_size > 0


def test_a_layer_whose_child_cannot_confine_itself_is_refused_with_the_fix(monkeypatch):
    """check_confinement runs the layer's child as `python -m autograder.child.confine`; a child that
    cannot install the filter (here: pyseccomp missing, or a filter that is not on) makes the layer
    refuse, naming the fix; a working one is described with its Landlock ABI."""
    from autograder import sandbox

    layer = sandbox.Unsandboxed()
    assert sandbox.check_confinement(layer) is None and layer.confinement["seccomp"]
    assert "Landlock" in sandbox.confinement_note(layer.confinement)
    absent = dict(layer.confinement, landlock=0, landlock_note="the kernel offers no Landlock (Function not implemented)")
    assert sandbox.confinement_note(absent) == (", seccomp filter, no Landlock (the kernel offers no Landlock "
                                                "(Function not implemented))")
    missing = ("import sys; sys.modules['pyseccomp'] = None; from autograder.child.confine import confine; "
               "confine(required=True)")
    monkeypatch.setattr(sandbox, "CONFINEMENT_PROBE", [sys.executable, "-c", missing])
    why = sandbox.check_confinement(layer)
    assert "pyseccomp is not installed" in why and "Fix:" in why, why
    off = ("import json; from autograder.child.confine import status; print(json.dumps(status()))")
    monkeypatch.setattr(sandbox, "CONFINEMENT_PROBE", [sys.executable, "-c", off])
    assert "not active" in sandbox.check_confinement(layer)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to the child's uid (setpriv) needs root")
def test_the_user_layer_removes_what_its_uid_left_in_every_writable_folder_and_its_ipc():
    """Files a child's uid left in /tmp (also in a world-writable folder inside it), /var/tmp,
    /dev/shm and /run/lock, and its System V shared memory, semaphores and message queues, are gone
    after `after_child`; other users' files stay."""
    from autograder import sandbox

    uid = sandbox._free_uid()
    token = uuid.uuid4().hex[:12]
    shared = Path(f"/tmp/hw2-shared-{token}")  # someone else's world-writable folder, inside /tmp
    shared.mkdir()
    os.chmod(shared, 0o1777)
    theirs = shared / "theirs"
    theirs.write_text("stays")
    places = [f"/tmp/hw2-left-{token}", f"/var/tmp/hw2-left-{token}", f"/dev/shm/hw2-left-{token}",
              f"/run/lock/hw2-left-{token}", str(shared / f"hw2-left-{token}")]
    places = [p for p in places if os.access(os.path.dirname(p), os.W_OK)]
    leave = (f"import ctypes, os\nlibc = ctypes.CDLL(None)\n"
             f"for path in {places!r}:\n    open(path, 'w').write('left')\n"
             f"os.makedirs('/tmp/hw2-left-dir-{token}/deep')\n"
             f"open('/tmp/hw2-left-dir-{token}/deep/f', 'w').write('x')\n"
             f"assert libc.shmget(0x{token[:7]}, 4096, 0o1600) >= 0 and libc.semget(0x{token[:7]}, 1, 0o1600) >= 0\n"
             f"assert libc.msgget(0x{token[:7]}, 0o1600) >= 0\n")
    try:
        sandbox.writable_places.cache_clear()  # the folder above is new
        done = subprocess.run([*sandbox._setpriv(uid), sys.executable, "-S", "-c", leave], capture_output=True,
                              text=True, env={"PATH": "/usr/bin:/bin"})
        assert done.returncode == 0, done.stderr
        assert all(os.path.exists(p) for p in places) and len(sandbox.ipc_objects_of(uid)) == 3
        assert {"/tmp", "/var/tmp", "/dev/shm", str(shared)} <= set(sandbox.writable_places(uid))
        sandbox.UnprivilegedUser(uid).after_child()
        left = [p for p in [*places, f"/tmp/hw2-left-dir-{token}"] if os.path.lexists(p)]
        assert not left and sandbox.ipc_objects_of(uid) == [], (left, sandbox.ipc_objects_of(uid))
        assert theirs.read_text() == "stays"
    finally:
        shutil.rmtree(shared, ignore_errors=True)
        for path in [*places, f"/tmp/hw2-left-dir-{token}"]:
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else Path(path).unlink(missing_ok=True)
        sandbox.remove_ipc_of(uid)
        sandbox.writable_places.cache_clear()
