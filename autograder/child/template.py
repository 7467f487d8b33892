"""The warm template: a process that has imported what a child needs (torch, the probes, what the
provided files import) and forks each new child, so that a child starts in milliseconds instead of
importing torch again (a second and a half of CPU time, and another for torch's compiler stack on a
child's first optimizer step or counted operation; eight children a grading).

    python -m autograder.child.template <control-fd>

Started by the grader (autograder/isolation.py: `Template`) with the children's environment and as
the grader's own user, on a control socket (a datagram socket: each request is one message). It runs
no student code and holds nothing of the grader's but its requests, which name no secret. A request
is JSON with four file descriptors (a reply socket, the child's request pipe to read, its answer pipe
to write, its stderr) and, with "sandbox", a fifth: a pidfd of the process bubblewrap started for this
child alone, whose namespaces "sandbox" lists as bubblewrap reported them:

    {"uid": 64001 or null, "cwd": "/tmp", "env": {...}, "sandbox": {"mnt": inode, "pid": inode,
     "net": inode} or null, "cgroups": [".../cgroup.procs", ...], "workdir": "...", "shown_as": "..."}

For each, the template forks a monitor, which opens the child's control groups, joins the sandbox's
namespaces (its mounts, its own /tmp and /proc, PIDs, network, IPC, hostname: bubblewrap built them,
nothing here mounts anything; they are checked to be those bubblewrap reported, none the grader's) and
forks the child. The child joins its control groups, leaves its session, drops every capability from its
bounding set, switches to `uid` (no supplementary groups: no capability is left; dumpable again, as after
an exec), keeps only its three descriptors, the environment given (a fresh import cache, its own
temporary folder) and the runner's command line, and runs runner.py's `main`, which confines itself
(confine.py) before it reads its first request, as a child started afresh does. The monitor says
"started <pid>" on the reply socket, then "exited <code>" (a negative code: the signal that killed it),
or "failed <why>" if the child could not be started. When the child ends, the monitor ends its sandbox
(SIGKILL to bubblewrap's process: every process left in its PID namespace dies), as a sandbox started
afresh ends with its child: nothing the student's code left holds the child's pipes open.

A child and its monitor do not depend on the template once started: the template's end (the grading
closed it, or it was killed) stops neither; the grader stops a child (and its sandbox) itself.
"""

import ctypes
import importlib
import json
import os
import signal
import socket
import sys
import tempfile

from . import runner

PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NAME, PR_CAPBSET_DROP = 1, 4, 15, 24
# what `ps` and /proc/<pid>/comm show of each (their command line is the template's)
NAMES = {"template": b"hw2-template", "monitor": b"hw2-monitor", "child": b"hw2-child"}
# the namespaces a child joins, at once (setns on a pidfd): network, IPC, hostname, control groups, PIDs (its
# children's), mounts
JOINED = 0x40000000 | 0x08000000 | 0x04000000 | 0x02000000 | 0x20000000 | 0x00020000
SANDBOX_NAMESPACES = ("mnt", "pid", "net")  # which bubblewrap reports, each checked before and after joining
MESSAGE_BYTES = 1 << 16
_libc = ctypes.CDLL(None, use_errno=True)


def warm():
    """Import what a child's probes and the provided files import, and what torch imports on first
    use (its compiler stack, behind every optimizer step and dispatch mode): a child forked after this
    pays for none of it."""
    import nltk.translate.bleu_score  # noqa: F401  (train.py)
    import numpy  # noqa: F401
    import torch
    import torch._dynamo  # noqa: F401
    import torch.nn.utils.rnn  # noqa: F401
    import torch.utils.data  # noqa: F401
    import tqdm  # noqa: F401
    try:
        import pyseccomp  # noqa: F401  (confine.py imports it when the child confines itself)
    except ImportError:
        pass
    model = torch.nn.Linear(2, 2)  # the first step and count load their lazy modules (no thread pool yet)
    torch.optim.Adam(model.parameters()).zero_grad()


def _check(result, what):
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def _join_sandbox(pidfd, expected):
    """Join the namespaces of the process `pidfd` refers to (bubblewrap's sandbox, which reported the
    namespaces `expected`: {"mnt": inode, "pid": inode, "net": inode}); OSError when they are not
    those, or are this process's own (a sandbox that is not one). `pidfd` stays open (the caller's)."""
    own = os.open("/proc/self/ns", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # (readable after the mount change)

    def inode(name):
        return int(os.readlink(name, dir_fd=own).split("[", 1)[1].rstrip("]"))

    try:
        mine = {name: inode(name) for name in SANDBOX_NAMESPACES}
        if any(mine[name] == int(expected[name]) for name in SANDBOX_NAMESPACES):
            raise OSError("the child's sandbox shares a namespace with the grader")
        _check(_libc.setns(pidfd, JOINED), "joining the sandbox's namespaces")
        joined = {name: inode("pid_for_children" if name == "pid" else name) for name in SANDBOX_NAMESPACES}
        if joined != {name: int(expected[name]) for name in SANDBOX_NAMESPACES}:
            raise OSError(f"the namespaces joined are not the sandbox's ({joined}, not {expected})")
    finally:
        os.close(own)


def _drop_privileges(uid):
    """Switch to `uid` (its own group, no supplementary groups) with an empty capability bounding set."""
    cap = 0
    while _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
        cap += 1
    if cap == 0 or ctypes.get_errno() != 22:  # EINVAL: past the last capability
        raise OSError(f"could not drop capability {cap} from the bounding set ({os.strerror(ctypes.get_errno())})")
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    with open("/proc/self/status") as status:
        effective = [line.split()[1] for line in status if line.startswith(("CapEff:", "CapPrm:", "CapBnd:", "CapAmb:"))]
    if os.getresuid() != (uid,) * 3 or os.getresgid() != (uid,) * 3 or os.getgroups() or set(effective) != {"0" * 16}:
        raise OSError(f"the switch to uid {uid} left privileges ({effective})")
    # the switch made it not dumpable (its /proc files root's: /proc/self/environ unreadable, ...); an exec, as
    # setpriv's for a child started afresh, makes it dumpable again: so does this (its memory is the template's,
    # which holds nothing private)
    _check(_libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "making it dumpable again")


def _child(spec, request_fd, answer_fd, stderr_fd, groups):
    """The child: enter its place (see the module's docstring), then serve the grader; never returns."""
    code = 0
    try:
        _libc.prctl(PR_SET_NAME, NAMES["child"], 0, 0, 0)
        for group in groups:
            os.write(group, b"0")  # this process
            os.close(group)
        os.setsid()
        os.chdir(spec["cwd"])
        if spec["uid"] is not None:
            _drop_privileges(int(spec["uid"]))
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update(spec["env"])
        argv = [spec["workdir"], spec["shown_as"], str(request_fd), str(answer_fd)]
        sys.argv[:] = [runner.__file__, *argv]  # as `python -m autograder.child.runner ...` has it
        tempfile.tempdir = None  # found again from TMPDIR
        sys.path[0] = spec["cwd"]  # as `python -m` started in this folder has it
        sys.path_importer_cache.clear()  # the template's view of folders is not this sandbox's
        importlib.invalidate_caches()
        null = os.open("/dev/null", os.O_RDWR)
        for target, fd in ((0, null), (1, null), (2, stderr_fd)):
            os.dup2(fd, target)
        keep = sorted({0, 1, 2, request_fd, answer_fd})
        for low, high in zip([-1, *keep], [*keep, 65536]):
            if low + 1 < high:  # (an empty range would close every descriptor: Python passes high - 1 on)
                os.closerange(low + 1, high)
        runner.main(argv)
    except SystemExit as stop:
        if stop.code not in (None, 0):
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stderr.flush()
        except BaseException:
            pass
        os._exit(code)


def _monitor(spec, fds, control):
    """Start one child and say when it ended; never returns."""
    reply, request_fd, answer_fd, stderr_fd, *sandbox = fds
    reply = socket.socket(fileno=reply)
    try:
        control.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        groups = [os.open(path, os.O_WRONLY | os.O_CLOEXEC) for path in spec["cgroups"]]
        if spec["sandbox"] is not None:
            if len(sandbox) != 1:
                raise OSError("no descriptor of the child's sandbox was given")
            _join_sandbox(sandbox[0], spec["sandbox"])
        elif sandbox:
            os.close(sandbox.pop())
        pid = os.fork()
        if pid == 0:
            reply.detach()
            _child(spec, request_fd, answer_fd, stderr_fd, groups)
        for fd in (request_fd, answer_fd, stderr_fd, *groups):
            os.close(fd)
        reply.send(f"started {pid}".encode())
        _, status = os.waitpid(pid, 0)
        for fd in sandbox:  # the sandbox ends with its child (what the student's code left in it too)
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        reply.send(f"exited {os.waitstatus_to_exitcode(status)}".encode())
    except BaseException as error:
        try:
            reply.send(f"failed {type(error).__name__}: {error}".encode()[:MESSAGE_BYTES])
        except OSError:
            pass
        os._exit(1)
    os._exit(0)


def main(control_fd):
    _libc.prctl(PR_SET_NAME, NAMES["template"], 0, 0, 0)
    warm()
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "asking to die with the grader")
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # monitors are reaped by the kernel
    control = socket.socket(fileno=control_fd)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, MESSAGE_BYTES, 5)
        except InterruptedError:
            continue
        if not message:  # the grader's side closed: the grading is over
            return
        if len(fds) not in (4, 5):
            for fd in fds:
                os.close(fd)
            continue
        try:
            spec = json.loads(message)
            if os.fork() == 0:
                _monitor(spec, fds, control)
        except Exception as error:  # (a fork that failed): the grader hears it on the reply socket
            try:
                socket.socket(fileno=os.dup(fds[0])).send(f"failed {type(error).__name__}: {error}".encode())
            except OSError:
                pass
        for fd in fds:
            os.close(fd)


if __name__ == "__main__":
    main(int(sys.argv[1]))
