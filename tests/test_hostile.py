"""The hostile-submission corpus: submissions that attack the grader, each graded by the real
grading path (`python -m autograder grade` / `grade-all` in a subprocess), and the verdict
asserted: the score of the tests concerned, their messages, nothing written outside the
working folder, repository files unchanged, the grader's output bounded, the batch row present.

Every case runs in three ways (`grader` fixture):

- `root`: the grader as root (bubblewrap, then setpriv to a uid of its own);
- `user`: the grader as an ordinary user (uid 1234, `setpriv`): bubblewrap in a user namespace;
- `container`: the `user` layer (HW2_SANDBOX=user, no namespaces), in a copy of the repository
  whose private files (and data, and /usr/share/datasets) are not readable by the child's uid.

The attacks are grouped so that each grading stays cheap and its verdicts clear:

- `NOTEBOOK` (q1.ipynb, questions 1.x): remounts and writes (1), /proc/sys and the hostname,
  the child's uid and capabilities (2), filling /tmp (11), a process flood (12);
- `DECODER` (decoder.py, 3.1a): the reference-caption decoder (5), a spoofed "not run" (6), an
  environment secret (7), an oversized message and huge answers (9);
- `batch` (grade-all, 3.1a): links and FIFOs (3), a classmate's files (8), zip bombs (10),
  non-UTF-8 output (13);
- `CNN` (h2-q2.py, 2.2, as root only: its accuracy test is the dearest): the label lookup and
  the stand-ins (4).
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
import time
import uuid
import zipfile
import zlib
from pathlib import Path

import pytest

from tests.conftest import ROOT, SOLUTION

PYTHON = sys.executable
IS_ROOT = os.geteuid() == 0
USER_UID = 1234  # the ordinary user the `user` mode grades as (no account needed)
SITE = Path(sysconfig.get_paths()["purelib"])
SYDNEY = Path(os.environ.get("SYDNEY_DIR") or ROOT.parent / "shared" / "data" / "sydney-captions")
DATASETS = Path("/usr/share/datasets")
GRADED = ("q1.ipynb", "h2-q2.py", "decoder.py", "decoder_with_attention.py")
MB = 2 ** 20
TMP_MB = 512  # the child's /tmp (autograder/sandbox.py)
PROCESSES = 64  # the child's process limit
# runs the grader's own command line, then reports the grading process's peak memory
DRIVER = ("import resource, sys\nfrom autograder.__main__ import main\ntry:\n    main(sys.argv[1:])\nfinally:\n"
          "    sys.stderr.write('\\nHW2-PEAK-RSS-KB %d\\n' % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")


# ---- how each mode runs the grader -------------------------------------------------------------
class Grader:
    """The real grader, run in one of the three modes."""

    def __init__(self, mode, root, env, prefix=(), uid=None, private=(), sydney=SYDNEY, cache=None):
        self.mode, self.root, self.env, self.prefix, self.uid = mode, Path(root), env, list(prefix), uid
        self.private = [str(p) for p in private]  # what the child must not read, as this mode sets it up
        self.sydney, self.cache = Path(sydney), Path(cache or ROOT / "data" / "cache")
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
    for folder in ["solution", "tests", "autograder/checks"]:
        os.chmod(into / folder, 0o700)
    os.chmod(into / "autograder" / "calibration.json", 0o600)
    for folder in [into, *[p for p in into.rglob("*") if p.is_dir() and p.parent.name != "checks"]]:
        if folder.name not in ("solution", "tests", "checks"):
            os.chmod(folder, 0o755)


@pytest.fixture(scope="module", params=["root", "user", "container"])
def grader(request):
    mode = request.param
    base = dict(os.environ, SYDNEY_DIR=str(SYDNEY), HW2_THREADS="1")
    base.pop("HW2_SANDBOX", None)
    base.pop("HW2_UNSANDBOXED", None)
    if mode != "root" and not IS_ROOT:
        pytest.skip(f"the {mode!r} mode switches uids (setpriv) and needs the tests to run as root")
    if mode == "root":
        if not IS_ROOT:
            pytest.skip("not root: the `root` mode is the grader as root")
        g = Grader(mode, ROOT, base, private=_private_of(ROOT, ROOT / "data" / "cache", SYDNEY))
    elif mode == "user":
        home = Path(tempfile.mkdtemp(prefix="hw2-hostile-home-", dir="/tmp"))
        os.chmod(home, 0o755)
        os.chown(home, USER_UID, USER_UID)
        env = dict(base, HOME=str(home), USER="hw2-grader", LOGNAME="hw2-grader")
        g = Grader(mode, ROOT, env, prefix=["setpriv", f"--reuid={USER_UID}", f"--regid={USER_UID}",
                                            "--clear-groups", "--"], uid=USER_UID,
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
                   sydney=private / "sydney", cache=private / "cache")
        g._spaces.append(top)
    yield g
    g.cleanup()


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


def _processes_of(uid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found.append((entry, Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")[:100]))
            except OSError:
                pass
    return found


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


def _probe_name():
    """The probe (autograder/child/probes.py) that called the student's code."""
    frame = _sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name in ("decoder_steps", "decoder_with_weights", "decoder_state", "decoder_jacobians",
                                    "decoder_train", "notebook_calls", "cnn_train", "train_batch_probe"):
            return frame.f_code.co_name
        frame = frame.f_back
    return None
'''


# ---- 1, 2, 11, 12: the notebook: writes and remounts, /proc/sys and the hostname, /tmp, processes
NOTEBOOK = r'''
import ctypes, json, os, socket, subprocess, sys, time

TOKEN, NEW_FILES, EXISTING = HOSTILE["token"], HOSTILE["new_files"], HOSTILE["existing"]
_DONE, _REFUSED = {}, {}


def _try(name, action):
    try:
        _DONE[name] = str(action())[:60]
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


def _open_for_writing(path):  # opened for writing, left unchanged: proof enough
    with open(path, "ab"):
        pass
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
    _try("create " + path, lambda path=path: _create(path))
for path in EXISTING + [__file__]:
    _try("write " + path, lambda path=path: _open_for_writing(path))
    _try("chmod " + path, lambda path=path: _same_mode(path))
_try("/proc/sys/kernel/hostname", lambda: _write("/proc/sys/kernel/hostname", "hw2-pwned"))
_try("sethostname", lambda: socket.sethostname("hw2-pwned"))
_try("hostname", lambda: _run("hostname", "hw2-pwned"))
_try("/proc/sys/vm/drop_caches", lambda: _write("/proc/sys/vm/drop_caches", "1"))
_try("/proc/sys/kernel/core_pattern",
     lambda: _write("/proc/sys/kernel/core_pattern", open("/proc/sys/kernel/core_pattern").read()))
with open("/tmp/hw2-hostile-" + TOKEN, "w") as f:  # allowed: the child's own /tmp
    f.write(TOKEN)


def _identity():
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    return {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
            "CapEff": status["CapEff"].strip(), "CapPrm": status["CapPrm"].strip(),
            "NoNewPrivs": status.get("NoNewPrivs", "?").strip(), "hostname": socket.gethostname()}


def mlp_counts():  # 1.2: fails, with the report
    raise RuntimeError("<<<REPORT " + json.dumps({"identity": _identity(), "done": _DONE, "refused": _REFUSED}) + ">>>")


def attention_probabilities(X, W_Q, W_K):  # 1.3-attention-probabilities: 2 GB into /tmp
    written, error, chunk = 0, None, b"\0" * (32 << 20)
    try:
        for index in range(16):
            with open(f"/tmp/hw2-fill-{TOKEN}-{index}", "wb") as f:
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
    raise RuntimeError("<<<FLOOD " + json.dumps([forks, type(error).__name__, spawned, type(spawn_error).__name__]) + ">>>")

# equivalent_head (1.3-equivalent-heads) and the functions of 1.1 stay correct: they keep their points
'''


def _notebook(config):
    notebook = json.loads((SOLUTION / "q1.ipynb").read_text())
    source = f"HOSTILE = {config!r}\n" + NOTEBOOK
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
                 str(grader.cache / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte"), str(space / "student" / "q1.ipynb")]
    tree = _tree(space / "student", **{"q1.ipynb": _notebook({"token": token, "new_files": new_files,
                                                               "existing": existing})})
    before = _digest(existing + [str(p) for p in tree.iterdir()])
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
    assert _digest(existing + [str(p) for p in tree.iterdir()]) == before, "files outside the child changed"
    assert not glob.glob(f"/tmp/hw2-fill-{token}-*"), "the submission's /tmp files are on the machine's /tmp"

    report = _report(graded.feedback, "REPORT")  # printed from a failing function: in the feedback
    assert report["done"] == {}, f"attacks that succeeded: {report['done']}"
    assert sum(report["refused"].values()) >= len(new_files) + 2 * len(existing) + 8
    identity = report["identity"]
    assert identity["uid"] != 0 and identity["euid"] != 0 and identity["gid"] != 0, identity
    assert identity["CapEff"] == identity["CapPrm"] == "0000000000000000", identity
    assert re.search(r'"CapEff": "0{16}"', graded.feedback)

    fill = _report(graded.output("1.3-attention-probabilities"), "TMPFILL")
    assert fill[0] <= TMP_MB and fill[1] in ("OSError",), f"the child wrote {fill[0]} MB to /tmp ({fill})"
    forks, _, spawned, _ = _report(graded.output("1.3-low-rank"), "FLOOD")
    assert forks + spawned < PROCESSES, f"{forks} forks and {spawned} processes"
    uid = grader.host_uid(graded.results["extra_data"]["sandbox"])
    assert not _processes_of(uid), f"processes of the child's uid {uid} left: {_processes_of(uid)}"

    # what the code deserves: 1.1 and equivalent_head are correct, the rest fails
    assert graded.score("1.1-output-sizes") == 2 and graded.score("1.1-parameter-counts") == 2
    assert graded.score("1.3-equivalent-heads") == 1, graded.output("1.3-equivalent-heads")
    for test_id in ("1.2-parameter-counts", "1.3-attention-probabilities", "1.3-low-rank"):
        assert graded.tests[test_id]["status"] == "failed" and graded.score(test_id) == 0
    assert graded.results["score"] == 5
    assert not graded.results["extra_data"]["unsandboxed"]
    graded.sizes_bounded()
    assert seconds < 90


# ---- 5, 6, 7, 9: the decoder: the reference captions, "not run", a secret, oversized values ------
DECODER = r'''
import io as _io, json as _json, os as _os, struct as _struct, time as _time, zipfile as _zipfile

_SNOOPED = None
_BIG_SENT = False


def _forged_answer():
    """An answer written straight to the grader: a torch.save-like payload of 16 million objects."""
    pickled = b"\x80\x02](" + b"K\x00" * 16_000_000 + b"e."
    buffer = _io.BytesIO()
    with _zipfile.ZipFile(buffer, "w", _zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", pickled)
        archive.writestr("archive/version", "3\n")
    payload = buffer.getvalue()
    view = memoryview(_struct.pack(">Q", len(payload)) + payload)
    fd = int(_sys.argv[4])  # the runner's answer descriptor
    while view:
        view = view[_os.write(fd, view):]


def _hostile_forward(self, word, h, c, encoder_out):
    probe = _probe_name()
    if probe == "decoder_steps":  # 3.1a-output-shape: a huge answer
        _forged_answer()
        _time.sleep(120)
    if probe == "decoder_with_weights":  # 3.1a-equivalence: a spoofed "not run"
        try:
            from autograder.checks import NotRun
        except Exception:
            class NotRun(Exception):
                pass
        print("NOT RUN (not your fault)")
        raise NotRun("NOT RUN (not your fault): the grader failed on this test; please tell your instructor")
    global _BIG_SENT
    if probe == "decoder_state" and not _BIG_SENT:  # 3.1a-state-and-dropout: 100 MB of values
        _BIG_SENT = True
        return torch.zeros(26_000_000), h, c
    if probe == "decoder_jacobians":  # 3.1a-gradients: the environment, then a 30 MB message
        print("<<<ENV", _json.dumps(dict(_os.environ)), ">>>")
        for path in _glob.glob("/proc/[0-9]*/environ"):
            try:
                with open(path, "rb") as f:
                    print(path, f.read()[:200])
            except OSError:
                pass
        raise ValueError("x" * 30_000_000)
    # 3.1a-bleu: look for the reference captions, then ignore the inputs
    global _SNOOPED
    if _SNOOPED is None:
        _SNOOPED = _visible(HOSTILE["private"])
        print("<<<SNOOP " + _json.dumps(_SNOOPED) + ">>>")
    return self.fc.bias.unsqueeze(0).expand(word.shape[0], -1), h, c


Decoder.forward = _hostile_forward
'''


def test_decoder_snooping_spoofing_secrets_and_oversized_values(grader):
    """Classes 5, 6, 7, 9: a decoder that looks for the reference captions finds nothing and, ignoring
    its inputs, fails 3.1a-bleu (measured with the statement's decoder and the returned weights); a
    "NOT RUN (not your fault)" exception is a failure; a secret of the grader's environment never
    reaches the results; a 30 MB message, a forged answer of 16 million objects and 100 MB of values
    fail their tests and leave results.json and feedback.md small and the grader's memory bounded."""
    space = grader.workspace()
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    private = grader.private + [f"/work/*/data/{SYDNEY.name}/dataset.json", str(SYDNEY / "dataset.json")] * (
        grader.mode != "container")  # the container mode cannot hide the shared, read-only original
    source = (SOLUTION / "decoder.py").read_text() + VISIBLE + f"\nHOSTILE = {{'private': {private!r}}}\n" + DECODER
    tree = _tree(space / "student", decoder_py=source)
    out = space / "out"
    graded, seconds, peak = grader.grade(tree, out, "3.1a", seconds=30, env={"HW2_TEST_SECRET": secret})

    every = graded.text + graded.feedback
    assert all(t["status"] == "failed" and t["score"] == 0 for t in graded.tests.values()), every[:3000]
    assert not any(t["extra_data"]["not_run"] for t in graded.tests.values())
    assert not graded.results["extra_data"]["incomplete"] and "INCOMPLETE" not in graded.feedback
    # 6: the spoofed "not run" is a failure like any other
    spoofed = graded.output("3.1a-equivalence")
    assert "NotRun" in spoofed and not spoofed.startswith("NOT RUN"), spoofed
    # 9: a forged answer of 16 million objects, 100 MB of values, a 30 MB message
    assert "unreadable" in graded.output("3.1a-output-shape"), graded.output("3.1a-output-shape")
    assert "bytes of values" in graded.output("3.1a-state-and-dropout"), graded.output("3.1a-state-and-dropout")
    gradients = graded.output("3.1a-gradients")
    assert "ValueError" in gradients and "more characters" in gradients and len(gradients) < 10_000
    graded.sizes_bounded()
    assert peak is not None and peak < 1_500_000, f"the grading process peaked at {peak / 1024:.0f} MB"
    # 7: the environment the student's code sees holds none of the grader's variables
    env = _report(gradients.replace("\n", " "), "ENV") if "<<<ENV" in gradients else {}
    assert "HW2_TEST_SECRET" not in env and env.get("PATH")
    assert secret not in every and "HW2_TEST_SECRET" not in every
    # 5: nothing to read, and the BLEU comes from the weights: a decoder that ignores its inputs fails
    bleu = graded.output("3.1a-bleu")
    assert _report(bleu, "SNOOP") == [], bleu
    assert float(re.search(r"validation BLEU-4 (\d\.\d+)", bleu).group(1)) < 0.1, bleu
    assert seconds < 120


# ---- 3, 8, 10, 13: a class graded with grade-all ---------------------------------------------------
SNOOPER = r'''
import json as _json, time as _time

_SEEN = None


def _hostile_forward(self, word, h, c, encoder_out):
    global _SEEN
    if _SEEN is None:  # for a few seconds, while the classmates are graded
        seen, deadline = set(), _time.time() + 4
        while _time.time() < deadline:
            seen.update(_visible(HOSTILE["listed"]))
            seen.update(_visible(HOSTILE["marked"], HOSTILE["marker"][::-1]))  # not spelled out here
            _time.sleep(0.25)
        _SEEN = sorted(seen)
    raise RuntimeError("<<<CLASSMATES " + _json.dumps(_SEEN) + ">>>")


Decoder.forward = _hostile_forward
'''

NON_UTF8 = r'''
import os as _os


def _hostile_forward(self, word, h, c, encoder_out):
    if _probe_name() == "decoder_with_weights":  # crash, with invalid UTF-8 on stderr
        _os.write(2, b"\xff\xfe\x80 not utf-8 \xed\xa0\x80 \x00\n")
        _os._exit(3)
    print("lone surrogates: \udcff \ud800")
    try:
        _sys.stdout.buffer.write(b"\xff\xfe raw bytes\n")
    except AttributeError:
        print("no buffer")
    _os.write(1, b"\xff\xfe to fd 1\n")
    raise ValueError("surrogates in a message: \udcff \ud800")


Decoder.forward = _hostile_forward
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
    """The submissions folder: a correct classmate (ada), a non-UTF-8 printer (carol), links and a FIFO
    (dave, erin, frank, gina), zips (hank, ivan, judy), and a snooper graded last (zoe), while ada is
    still being graded and the others' results are written."""
    parent = space / "course"
    subs = parent / "subs"
    out = parent / "grades"
    marker = f"CLASSMATE-SECRET-{token}"
    outside = space / "outside"
    outside.mkdir()
    (outside / "decoder.py").write_text(f"# OUTSIDE-SECRET-{token}\n" + (SOLUTION / "decoder.py").read_text())
    os.chmod(outside, 0o755)
    _tree(subs / "ada", decoder_py=(SOLUTION / "decoder.py").read_text() + f"\n# {marker}\n")
    listed = [str(subs), str(subs / "ada"), str(out), str(out / "ada"), str(out / "gradebook.csv"),
              str(out / "*" / "results.json"), str(out / "*" / "feedback.md")]
    marked = [str(subs / "ada" / "decoder.py"), str(subs / "*" / "*.py"), str(out / "*" / "*"),
              "/tmp/hw2-grading-*/decoder.py", "/tmp/hw2-submission-*/*/decoder.py",
              f"/proc/[0-9]*/cwd/subs/ada/decoder.py", f"/proc/[0-9]*/root{subs}/ada/decoder.py"]
    hostile = f"\nHOSTILE = {{'listed': {listed!r}, 'marked': {marked!r}, 'marker': {marker[::-1]!r}}}\n"
    _tree(subs / "zoe", decoder_py=(SOLUTION / "decoder.py").read_text() + VISIBLE + hostile + SNOOPER)
    _tree(subs / "carol", decoder_py=(SOLUTION / "decoder.py").read_text() + VISIBLE + NON_UTF8)
    for name, make in [("dave", lambda p: p.symlink_to(grader.root / "solution" / "decoder.py")),
                       ("erin", lambda p: p.symlink_to("/etc/shadow")),
                       ("frank", lambda p: os.link(outside / "decoder.py", p)),
                       ("gina", lambda p: os.mkfifo(p))]:
        tree = _tree(subs / name)
        (tree / "decoder.py").unlink()
        make(tree / "decoder.py")
    with zipfile.ZipFile(subs / "hank.zip", "w") as zipped:  # decoder.py as a symbolic link in the zip
        for name in GRADED:
            if name != "decoder.py":
                zipped.write(SOLUTION / name, f"hw2/{name}")
        link = zipfile.ZipInfo("hw2/decoder.py")
        link.external_attr = 0o120777 << 16
        zipped.writestr(link, str(grader.root / "solution" / "decoder.py"))
    data, crc, size = zip_bomb
    _raw_zip(subs / "ivan.zip", "hw2/decoder.py", data, crc, size)  # inflates to 4 GiB
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    liar = compressor.compress(bytes(64 * MB)) + compressor.flush()
    _raw_zip(subs / "judy.zip", "hw2/decoder.py", liar, zlib.crc32(bytes(64 * MB)), 1024)  # its headers say 1 KB
    if grader.mode == "container":  # the user layer grades only submissions its child's uid cannot read
        os.chmod(subs, 0o700)
    return parent, subs, out


def test_grade_all_links_classmates_zip_bombs_and_bad_bytes(grader, zip_bomb):
    """Classes 3, 8, 10, 13, graded by `grade-all subs` from the submissions' parent folder: links and
    a FIFO as decoder.py fail their tests with a message naming the file and none of the target's
    content; a symbolic link in a zip and zip bombs are "unreadable zip" rows, quickly, with nothing
    large written; a student's code sees none of a classmate's files; invalid UTF-8 and lone
    surrogates leave valid results; every student has a row, and the correct one all its points."""
    space = grader.workspace()
    token = uuid.uuid4().hex[:12]
    parent, subs, out = _class(grader, space, token, zip_bomb)
    for folder in (parent, space / "outside"):
        if grader.uid is not None:
            os.chown(folder, grader.uid, grader.uid)
    done, seconds, _ = grader.run(["grade-all", "subs", "--out", "grades", "--only", "3.1a", "--jobs", "2"],
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
    assert book["ada"]["3.1a"] == "22" and book["ada"]["status"] == "graded", (book["ada"], results["ada"].text[:3000])
    # 8: the snooper saw nothing of the classmate's
    seen = _report(results["zoe"].output("3.1a-output-shape"), "CLASSMATES")
    assert seen == [], f"a student's code read a classmate's files: {seen}"
    # 13: invalid bytes and lone surrogates: a row, valid JSON, valid UTF-8
    assert book["carol"]["3.1a"] == "0" and "carol" in results
    assert "grading process stopped" in results["carol"].output("3.1a-equivalence")
    assert "surrogates in a message" in results["carol"].output("3.1a-output-shape")
    # 3: links and a FIFO
    shadow = [line for line in Path("/etc/shadow").read_text().splitlines() if line.count(":") >= 8]
    reference_line = "scores = self.fc(self.dropout(h))"
    for student, words in [("dave", "symbolic link"), ("erin", "symbolic link"), ("frank", "hard link"),
                           ("gina", "not a regular file")]:
        graded = results[student]
        assert book[student]["3.1a"] == "0", (student, book[student])
        for test in graded.tests.values():
            assert test["status"] == "failed" and "decoder.py" in test["output"] and words in test["output"], test
        assert reference_line not in graded.text and f"OUTSIDE-SECRET-{token}" not in graded.text
        assert not any(line in graded.text for line in shadow)
        assert graded.results["execution_time"] < 10, (student, graded.results["execution_time"])
    # 3, 10: a link in a zip, a 4 GiB member, a member whose headers lie
    for student, words in [("hank", "symbolic link"), ("ivan", "200 MB"), ("judy", "")]:
        assert book[student]["status"] == "unreadable zip", (student, book[student])
        error = (out / student / "error.txt").read_text()
        assert words in error, error
    assert seconds < 150


# ---- 4: the label lookup and the stand-ins (2.2; as root only) -------------------------------------
CNN = r'''
import base64 as _base64, inspect as _inspect, json as _json

_REPORTED = False


def _constant_forward(self, x):  # what a label lookup returns when it finds no labels
    return torch.log_softmax(torch.zeros(len(x), 10), dim=1)


CNN.forward = _constant_forward
_correct_step = train_batch


def train_batch(X, y, model, optimizer, criterion):
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):  # the small classifier of 2.2-train-batch
        return _correct_step(X, y, model, optimizer, criterion)
    global _REPORTED  # the training of 2.2-accuracy: report, exfiltrate, and never train
    if not _REPORTED:
        _REPORTED = True
        print("<<<LABELS " + _json.dumps(_visible(HOSTILE["labels"])) + ">>>")
        found = set(_glob.glob("/run/hw2/*.py")) | set(_glob.glob("/tmp/hw2-child-*/*.py"))
        frame = _sys._getframe(1)
        while frame is not None:
            if isinstance(frame.f_locals.get("standins"), str):
                found.add(frame.f_locals["standins"])
            frame = frame.f_back
        for path in sorted(found):
            try:
                with open(path, "rb") as f:
                    print("<<<STANDIN " + _json.dumps(_base64.b64encode(f.read()[:600]).decode()) + ">>>")
            except OSError:
                pass
    return 2.3
'''


@pytest.mark.skipif(not IS_ROOT, reason="grades as root (the 2.2 accuracy test is too dear for every mode)")
def test_label_lookup_and_standins_leak_nothing():
    """Class 4: a CNN whose code looks for Fashion-MNIST finds nothing; its constant forward (what a
    lookup without labels returns) is not what is measured: the accuracy comes from the weights its
    training returns, measured by the grader with the statement's network, so a training that does
    not train scores no accuracy points. The grader's stand-in (the statement's CNN, used for that
    training) reaches the student's code, which must not be able to show it in its feedback."""
    space = Path(tempfile.mkdtemp(prefix="hw2-hostile-", dir="/tmp"))
    try:
        labels = [str(ROOT / "data" / "cache" / "FashionMNIST" / "raw" / "*"), str(DATASETS / "fashion-mnist" / "*"),
                  "/work/*/data/cache/FashionMNIST/raw/*", "/root/.cache/*", "/tmp/hw2-*/*labels*"]
        source = ((SOLUTION / "h2-q2.py").read_text() + VISIBLE + f"\nHOSTILE = {{'labels': {labels!r}}}\n" + CNN)
        tree = _tree(space / "student", h2_q2_py=source)
        env = dict(os.environ, SYDNEY_DIR=str(SYDNEY))
        env.pop("HW2_SANDBOX", None)
        graded, seconds, peak = Grader("root", ROOT, env).grade(tree, space / "out", "2.2", seconds=60)
    finally:
        shutil.rmtree(space, ignore_errors=True)
    accuracy = graded.output("2.2-accuracy")
    assert graded.tests["2.2-accuracy"]["status"] == "failed" and graded.score("2.2-accuracy") == 0, accuracy
    assert float(re.search(r"reaches (\d+\.\d+)% dev accuracy", accuracy).group(1)) < 20, accuracy
    assert "statement's network" in accuracy
    assert _report(accuracy, "LABELS") == [], accuracy
    assert graded.score("2.2-equivalence") == 0 and graded.score("2.2-train-batch") == 5
    # the stand-in's text, however encoded, must not reach the student
    reference = (SOLUTION / "h2-q2.py").read_text()
    for blob in re.findall(r"<<<STANDIN (.*?)>>>", graded.text + graded.feedback):
        shown = base64.b64decode(json.loads(blob) + "==").decode(errors="replace")
        leaked = [line.strip() for line in shown.splitlines() if len(line.strip()) >= 16 and line.strip() in reference]
        assert not leaked, f"the grader's stand-in (the reference solution) reached the feedback: {leaked[:3]}"
    graded.sizes_bounded()


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
        done, _, _ = Grader("root", ROOT, env).run(["grade", tree, "--out", space / "out", "--only", "1.1"])
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
