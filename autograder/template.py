"""The grader's side of the warm template (autograder/child/template.py): a process that has imported
torch and the probes, from which each sandboxed child is forked instead of started afresh.

`warm_template()` starts one for a grading (grade.py; `python -m autograder grade` starts it before it
imports torch itself, so that both import at once); `StudentProcess` (isolation.py) asks it for a child
when the sandbox layer can place one (sandbox.py's `forked`: bubblewrap as root builds the child's
sandbox around a holder process whose namespaces the child joins; the user layer switches its uid; the
unsandboxed mode only forks), and starts the child afresh otherwise, or when the template fails
(HW2_TEMPLATE=0: always). A forked child has what a fresh one has: its own sandbox, /tmp, uid slot,
control groups and limits, only its own files, the stand-ins only where bound; it confines itself
before its first request in the same code (runner.py).
"""

import contextlib
import json
import os
import select
import signal
import socket
import shutil
import subprocess
import sys
import tempfile
import time

from autograder import sandbox

class TemplateError(RuntimeError):
    """The warm template could not start a child (the grading goes on with children started afresh)."""


class Template:
    """The warm template of one grading (autograder/child/template.py): a process of the grader's that
    has imported torch and the probes, and forks each child, which then enters its sandbox. Started
    before the grading's workers fork (they share it, each request one datagram with its own reply
    socket; requests sent while it still imports wait in its socket); it ends when the grading closes
    it, or dies with the grading process."""

    START_SECONDS = 120  # for the template to import what it imports, and for a child to be forked

    def __init__(self):
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.home = tempfile.mkdtemp(prefix="hw2-template-")  # its own (0700): nothing planted in /tmp reaches it
        environment = sandbox.child_environment(sandbox.MEMORY_GB, home=self.home)
        self.process = subprocess.Popen([sys.executable, "-m", "autograder.child.template", str(theirs.fileno())],
                                        pass_fds=(theirs.fileno(),), env=environment, cwd="/", stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL)
        theirs.close()

    def _answer(self, channel, what):
        if not select.select([channel], [], [], self.START_SECONDS)[0]:
            raise TemplateError(f"the template did not {what} within {self.START_SECONDS} s")
        try:
            return channel.recv(1 << 16).decode(errors="replace")
        except OSError as error:
            raise TemplateError(f"the template did not {what} ({error})") from None

    def fork(self, spec, fds):
        """(pid, reply socket) of a new child entering the place `spec` says (see the template's docstring),
        with `fds` (its request pipe's read end, its answer pipe's write end, its stderr); TemplateError."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            socket.send_fds(self.control, [json.dumps(spec).encode()], [theirs.fileno(), *fds])
        except OSError as error:
            mine.close()
            raise TemplateError(f"the template is gone ({error})") from None
        finally:
            theirs.close()
        said = self._answer(mine, "fork a child")
        if not said.startswith("started "):
            mine.close()
            raise TemplateError(f"the template could not start a child: {said or 'it stopped'}")
        return int(said.split()[1]), mine

    def close(self):
        """End it now (it holds nothing, and its children, ended by the grading, never depend on it)."""
        self.control.close()
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.home, ignore_errors=True)


_template = None  # the running grading's, while `warm_template` lasts


def current():
    """The warm template children are forked from now, or None."""
    return _template


def failed(error):
    """The template could not start a child: the grading goes on with children started afresh."""
    global _template
    print(f"(the grader's warm template failed: {error}; its children start afresh)", file=sys.stderr)
    _template = None


@contextlib.contextmanager
def warm_template(allow_unsandboxed=False):
    """Children started meanwhile, in this process and in the workers it forks, are forked from a warm
    template (unless HW2_TEMPLATE=0; and not where the sandbox layer cannot fork them: run by an ordinary
    user, in bubblewrap's user namespace, children start afresh)."""
    global _template
    if _template is not None or os.environ.get("HW2_TEMPLATE") == "0" or (os.geteuid() != 0 and not allow_unsandboxed):
        yield
        return
    _template = started = Template()
    try:
        yield
    finally:
        _template = None
        started.close()


class ForkedChild:
    """A child forked from the template, seen as a subprocess.Popen (pid, poll, wait, kill, returncode): its
    exit code comes from the template's monitor on `reply`; `holder`: the bubblewrap process holding the
    sandbox it joined (a Popen), stopped with it."""

    def __init__(self, pid, reply, holder):
        self.pid, self.reply, self.holder = pid, reply, holder
        self.returncode = None

    def _ended(self):
        try:
            said = self.reply.recv(256).decode(errors="replace")
        except OSError:
            said = ""
        self.returncode = int(said.split()[1]) if said.startswith("exited ") else -signal.SIGKILL  # monitor gone

    def poll(self):
        if self.returncode is None and select.select([self.reply], [], [], 0)[0]:
            self._ended()
        return self.returncode

    def wait(self, timeout=None):
        if self.returncode is None:
            if not select.select([self.reply], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired("grading child", timeout)
            self._ended()
        return self.returncode

    def kill(self):
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGKILL)

    def release(self):
        """After the child ended: its sandbox's holder goes too (and every process left in it)."""
        if self.holder is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.holder.pid, signal.SIGKILL)
            self.holder.wait()
        self.reply.close()


def sandbox_of(info_read, holder):
    """({"mnt", "pid", "net": inode} of the sandbox bubblewrap built for a child, a pidfd of its process),
    from the JSON bubblewrap writes on `info_read`, once the sandbox is built (its command said "ready");
    TemplateError."""
    deadline = time.time() + Template.START_SECONDS

    def read_all(fd, done):
        text = b""
        while time.time() < deadline and select.select([fd], [], [], max(0.0, deadline - time.time()))[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            text += chunk
            if done(text):
                return text
        raise TemplateError(f"bubblewrap did not build the child's sandbox (exit code {holder.poll()})")

    def parsed(text):
        with contextlib.suppress(ValueError, KeyError, TypeError):
            info = json.loads(text)
            return int(info["child-pid"]), {name: int(info[f"{name}-namespace"]) for name in ("mnt", "pid", "net")}

    pid, namespaces = parsed(read_all(info_read, parsed))
    read_all(holder.stdout.fileno(), lambda text: text == b"ready\n")
    holder.stdout.close()
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as error:
        raise TemplateError(f"the child's sandbox is gone ({error})") from None
    if holder.poll() is not None:  # (then the pid may be another process's)
        os.close(pidfd)
        raise TemplateError(f"the child's sandbox is gone (exit code {holder.poll()})")
    return namespaces, pidfd
