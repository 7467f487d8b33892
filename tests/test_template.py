"""Children forked from the warm template (autograder/template.py, autograder/child/template.py) have
what a child started afresh has: the same sandbox, uid, capabilities, limits, environment, descriptors,
files and confinement; a template that fails costs a grading nothing (its children start afresh)."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from autograder import sandbox, template
from autograder.isolation import StudentProcess
from tests.conftest import ROOT, SOLUTION

IS_ROOT = os.geteuid() == 0

# a decoder whose step reports what its process sees, as the message of 3.1a-output-shape
VIEW = r'''
import json as _json, os as _os, resource as _resource, socket as _socket, sys as _sys

def _view():
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    others = []
    for pid in filter(str.isdigit, _os.listdir("/proc")):
        if int(pid) != _os.getpid():
            try:
                others.append((_os.stat(f"/proc/{pid}").st_uid, open(f"/proc/{pid}/comm").read().strip()))
            except OSError:
                others.append(("?", "?"))
    fds = {}
    for fd in _os.listdir("/proc/self/fd"):
        try:
            kind = _os.readlink(f"/proc/self/fd/{fd}").split(":")[0]
            kind = "a deleted file" if kind.endswith("(deleted)") else kind
        except OSError:
            continue
        fds[kind] = fds.get(kind, 0) + 1
    workdir = _os.path.dirname(_os.path.abspath(__file__))
    return {
        "ids": [len(set(_os.getresuid() + _os.getresgid())), min(_os.getresuid()) >= 1000, _os.getgroups()],
        "capabilities": {k: status[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")},
        "no_new_privs": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip(),
        "root": sorted(_os.listdir("/")), "tmp": sorted(n[:7] for n in _os.listdir(_os.environ.get("TMPDIR", "/tmp"))),
        "solution_visible": _os.path.exists(SOLUTION_FILE), "checks_visible": _os.path.exists(CHECKS_FILE),
        "others": sorted(others), "fds": fds, "environment": dict(_os.environ),
        "path": [p.replace(workdir, "<workdir>") for p in _sys.path], "cwd": _os.getcwd()[:12],
        "argv": [_os.path.basename(_sys.argv[0]), len(_sys.argv)] + [_os.readlink(f"/proc/self/fd/{a}").split(":")[0]
                                                                   for a in _sys.argv[3:]],
        "limits": [_resource.getrlimit(getattr(_resource, n)) for n in ("RLIMIT_AS", "RLIMIT_NPROC", "RLIMIT_NOFILE",
                                                                      "RLIMIT_FSIZE", "RLIMIT_CORE")],
        "hostname": _socket.gethostname(), "cgroup": open("/proc/self/cgroup").read().count("hw2-"),
        "dumpable": __import__("ctypes").CDLL(None).prctl(3, 0, 0, 0, 0),  # PR_GET_DUMPABLE
        "environ_readable": _os.access("/proc/self/environ", _os.R_OK),
        "argv": [_os.path.basename(_sys.argv[0]), len(_sys.argv)],
    }
'''


def _graded_step(tmp_path, name, code, step, environment):
    """(3.1a-output-shape's result, its wall seconds) for a decoder that runs `step` (a statement) at the start of
    each step, `code` at its module's top."""
    tree = tmp_path / name
    tree.mkdir()
    for file in ("h2-q2.py", "decoder.py", "decoder_with_attention.py"):
        shutil.copy(SOLUTION / file, tree / file)
    text = (tree / "decoder.py").read_text()
    anchor = "        embeddings = self.embedding(word)  # (batch, embed_dim)\n"
    assert anchor in text
    (tree / "decoder.py").write_text(code + text.replace(anchor, f"        {step}\n" + anchor))
    done = subprocess.run([sys.executable, "-m", "autograder", "grade", str(tree), "--out", str(tmp_path / f"{name}-out"),
                           "--only", "3.1a-output-shape"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, **environment))
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / f"{name}-out" / "results.json").read_text())["tests"][0]
    return result, result["extra_data"].get("seconds")


def _view_of_child(tmp_path, name, environment):
    """What a decoder's step sees in the child that runs it (3.1a-output-shape's message)."""
    paths = f"SOLUTION_FILE = {str(SOLUTION / 'decoder.py')!r}\nCHECKS_FILE = {str(ROOT / 'autograder' / 'checks' / 'q3.py')!r}\n"
    result, _ = _graded_step(tmp_path, name, paths + VIEW, "raise RuntimeError('VIEW' + _json.dumps(_view()) + 'END')",
                             environment)
    output = result["output"]
    assert "VIEW" in output, output
    return json.loads(output.split("VIEW", 1)[1].split("END", 1)[0])


@pytest.mark.slow
@pytest.mark.skipif(not IS_ROOT, reason="the template forks children where the grader runs as root (or unsandboxed)")
def test_a_forked_child_sees_what_a_child_started_afresh_sees(tmp_path):
    """The same uid, groups, (no) capabilities, no_new_privs and seccomp filter, root folder, /tmp, hidden
    files, descriptors, environment, import path, limits, hostname and control groups; the only other
    process it may see beside bubblewrap's is the holder of its sandbox (root's, without capabilities)."""
    fresh = _view_of_child(tmp_path, "fresh", {"HW2_TEMPLATE": "0"})
    forked = _view_of_child(tmp_path, "forked", {})
    fresh_others, forked_others = fresh.pop("others"), forked.pop("others")
    assert forked["environment"] == fresh["environment"]
    assert forked == fresh
    assert set(map(tuple, forked_others)) - set(map(tuple, fresh_others)) <= {(0, "sleep")}, (forked_others,
                                                                                            fresh_others)
    assert fresh["capabilities"]["CapEff"] == fresh["capabilities"]["CapBnd"] == "0" * 16
    assert not forked["solution_visible"] and not forked["checks_visible"] and forked["seccomp"] == "2"
    assert forked["dumpable"] == 1 and forked["environ_readable"] and forked["argv"] == ["runner.py", 5]


# a step that leaves a process of its own session running, then ends the child (as a crash would, with a pool
# of worker processes alive)
LEAVES_A_PROCESS = r'''
import os as _os

def _leave_and_exit():
    if _os.fork() == 0:
        _os.setsid()
        _os.execv("/bin/sleep", ["sleep", "1000"])
    _os._exit(7)
'''

# a step that stops being a child subreaper, then has an orphan use 6 s of CPU time and report it
ORPHAN_COMPUTES = r'''
import ctypes as _ctypes, os as _os, time as _time

def _orphan_computes():
    _ctypes.CDLL(None).prctl(36, 0, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER off: orphans go to the sandbox's init
    reads, writes = _os.pipe()
    if _os.fork() == 0:
        if _os.fork() == 0:
            start = _time.process_time()
            while _time.process_time() - start < 6:
                pass
            _os.write(writes, b"done")
        _os._exit(0)
    _os.wait()
    _os.close(writes)
    raise RuntimeError("the orphan computed: " + _os.read(reads, 10).decode())
'''


@pytest.mark.slow
@pytest.mark.skipif(not IS_ROOT, reason="the template forks children where the grader runs as root")
def test_a_forked_childs_sandbox_ends_with_it():
    """When a forked child ends, what its code left running in its sandbox ends too, as with a child started
    afresh (bubblewrap's sandbox ends with its command): its pipes close, and the test fails at once as a crash
    with the child's exit code, not after the wall-time backstop as a timeout (which would leave the file's later
    tests not tried)."""
    with tempfile.TemporaryDirectory() as folder:
        result, seconds = _graded_step(Path(folder), "leaves", LEAVES_A_PROCESS, "_leave_and_exit()", {})
    assert "stopped during this test (exit code 7)" in result["output"], result["output"]
    assert result["extra_data"].get("reason") != "timed out" and seconds < 60, (result, seconds)


@pytest.mark.slow
@pytest.mark.skipif(not IS_ROOT, reason="the template forks children where the grader runs as root")
def test_without_control_groups_the_orphans_of_a_forked_child_are_counted():
    """With the process-tree accounting (HW2_CGROUPS=0), an orphan whose parent turned the child's subreaper off
    first is counted, as in a child started afresh: 6 s of its CPU time pass the test's limit of 3 s. (The filter
    refuses to turn it off; were it not, the orphan would go to the sandbox's init, whose tree is counted too, as
    it is in a fresh child's.)"""
    with tempfile.TemporaryDirectory() as folder:
        result, _ = _graded_step(Path(folder), "orphan", ORPHAN_COMPUTES, "_orphan_computes()",
                                 {"HW2_CGROUPS": "0", "HW2_TEST_SECONDS": "3"})
    assert result["output"].startswith("timed out: used "), result["output"]


def test_the_template_holds_only_the_child_package():
    """What the template imported (and every forked child inherits) is the child's own package and
    libraries: nothing private of the grader's (checks, thresholds, calibration, the reference)."""
    code = ("import sys, autograder.child.template as t; t.warm(); "
            "print(sorted(m for m in sys.modules if m.startswith(('autograder', 'solution', 'tests'))))")
    done = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, timeout=300,
                          env=sandbox.child_environment(1))
    assert done.returncode == 0, done.stderr[-2000:]
    modules = eval(done.stdout.strip())
    assert modules and all(m == "autograder" or m.startswith("autograder.child") for m in modules), modules


def _answer(process):
    """(how the child says it is confined, whether it was forked from the template)."""
    try:
        value = process.request("confinement", {}, 60, 60)["value"]
        return value, isinstance(process.child, template.ForkedChild)
    finally:
        process.close()


@pytest.mark.skipif(not IS_ROOT, reason="the template forks children where the grader runs as root")
def test_a_child_outlives_its_template_and_the_next_starts_afresh(capfd):
    """A template that ends while its child runs (killed, out of memory) costs that child nothing: it answers
    (its test is not failed as a crash), and the next child starts afresh (the grading says so)."""
    with tempfile.TemporaryDirectory() as folder, template.warm_template():
        process = StudentProcess(folder, folder)
        assert process.request("confinement", {}, 60, 60)["value"]["seccomp"]  # the child serves requests
        assert isinstance(process.child, template.ForkedChild)
        warm = template.current()
        warm.process.kill()
        warm.process.wait()
        time.sleep(1)  # (what would die with it has died)
        confined, forked = _answer(process)
        assert confined["seccomp"] and forked
        confined, forked = _answer(StudentProcess(folder, folder))
        assert confined["seccomp"] and not forked  # started afresh: the grading goes on without the template
        assert template.current() is None
    assert "warm template failed" in capfd.readouterr().err


@pytest.mark.skipif(not IS_ROOT, reason="the template forks children where the grader runs as root")
def test_a_child_is_forked_only_into_the_sandbox_bubblewrap_reported():
    """A request whose sandbox is the grader's own process (its namespaces), or whose namespaces are not
    those the process has, is refused by the template's monitor: student code never runs in the grader's
    namespaces, nor in a sandbox other than the one bubblewrap built for it."""
    def inode(name):
        return int(os.readlink(f"/proc/self/ns/{name}").split("[")[1].rstrip("]"))

    with template.warm_template():
        for shift, expected in ((0, "shares a namespace with the grader"), (1, "not the sandbox's")):
            namespaces = {name: inode(name) + shift for name in ("mnt", "pid", "net")}
            reads, writes = os.pipe()
            spec = {"uid": 64999, "cwd": "/tmp", "env": {}, "sandbox": namespaces, "cgroups": [],
                    "workdir": "/nonexistent", "shown_as": "x"}
            pidfd = os.pidfd_open(os.getpid())
            with pytest.raises(template.TemplateError, match=expected):
                template.current().fork(spec, [reads, writes, sys.stderr.fileno(), pidfd])
            for fd in (reads, writes, pidfd):
                os.close(fd)
