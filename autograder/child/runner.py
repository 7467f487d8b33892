"""The child process the student's code runs in: it answers the grader's requests to run probes.

    python -m autograder.child.runner <workdir> <shown-as> <request-fd> <answer-fd>

Started (inside the sandbox) by `autograder.isolation`. `<workdir>` holds the provided files and
the student's graded files; `<shown-as>` is the student's folder, named in messages. Each request
names a probe (probes.py) and its inputs; the answer is the probe's plain values, or the message
of what went wrong (not implemented, an exception and where, timed out, out of memory), with
what the student's own files printed (CappedOutput; wire.py has the format).

Python, numpy and torch are seeded before every request; each has a limit of CPU time (a timer
that counts this process's CPU time, ITIMER_PROF; the grader also measures every process the
child started, and kills it past the limit); the process has limits on its address space, file
sizes, open files and processes, and no core files. The limits come from the grader in the
environment (HW2_MEMORY_GB, HW2_PROCESSES). The runner is a child subreaper: a process its code
started that leaves the process tree (a double fork) is re-parented to it, and reaped after each
request, so that its CPU time is counted (autograder/cgroups.py's process tree).
"""

import contextlib
import ctypes
import io
import os
import resource
import signal
import sys
import tempfile
import threading
import time

import torch

from .compare import CRASHED, FAILED, PASSED, UNREADABLE
from .confine import confine
from .probes import TestTimeout, run_probe
from .seeds import seed_everything
from .submission import GRADED_FILES, NOTEBOOK, Submission, cell_of
from .wire import REQUEST, WireError, decode, encode, read_message, write_message

# read by main() from the environment the grader gives (a child forked from the template imported this module
# before it had that environment): the address-space limit of this process, the processes and threads of its user
MEMORY_GB = PROCESSES = None
FILE_MB = 256  # no file it writes may grow beyond this
OPEN_FILES = 256
OUTPUT_LIMIT = 1500


class CappedOutput(io.TextIOBase):
    """What the student's own code prints during one request: the first OUTPUT_LIMIT characters,
    and a count of the rest, so that a flood of output costs neither memory nor time.

    A write is the student's when the innermost frame of the working folder (`workdir`) on the
    writing stack is one of the student's files: their prints and the warnings their calls raise
    (also inside the provided training loop, which calls their forward), not the provided files'
    output (train.py's progress bar, utils.py's prints) nor the grader's (the probes, torch's
    warnings about the probes' own calls). Only writes from the thread that runs the request count:
    a thread the student's code left running cannot write into a later test's output."""

    def __init__(self, workdir):
        self.folder = os.path.join(os.path.realpath(workdir), "")
        self.thread = threading.get_ident()
        self.kept, self.dropped = [], 0
        self.size = 0

    def students(self, frame):
        """Whether the innermost frame of the working folder, from `frame` outwards, is a student file's."""
        while frame is not None:
            filename = frame.f_code.co_filename
            if filename.startswith(self.folder):
                return student_file(filename[len(self.folder):])
            frame = frame.f_back
        return False

    def write(self, text):
        if threading.get_ident() != self.thread or not self.students(sys._getframe(1)):
            return len(text)
        room = OUTPUT_LIMIT - self.size
        if room > 0:
            self.kept.append(text[:room])
            self.size += min(room, len(text))
        self.dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def getvalue(self):
        tail = f" [... {self.dropped:,} more characters]" if self.dropped else ""
        return "".join(self.kept).strip() + tail


def student_file(name):
    """Whether `name`, a code object's file name relative to the working folder, is a graded file's
    (a notebook's code is its cells')."""
    return name in GRADED_FILES or cell_of(name, NOTEBOOK) is not None


PR_SET_CHILD_SUBREAPER = 36


def _on_alarm(signum, frame):
    raise TestTimeout()


def become_subreaper():
    """Orphans of this process's descendants are re-parented to it (Linux's prctl), not to init."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def answer(sub, request, spent=0.0):
    """The answer to one request: {"value": ...} or {"status": "failed"/"not run", "message": ...},
    with "printed". `spent`: CPU seconds of this process that the grader counts in this request already
    (a new child's start)."""
    seed_everything()
    captured = CappedOutput(sub.workdir)
    signal.setitimer(signal.ITIMER_PROF, max(0.1, float(request["seconds"]) - spent))  # CPU time of this process
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            status, message, value = run_probe(sub, request["probe"], request["inputs"], request["limit"], MEMORY_GB)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
    reply = {"value": value} if status == PASSED else {"status": FAILED, "message": message, "reason": value}
    return dict(reply, printed=captured.getvalue())


def main(argv=None):
    workdir, shown_as, request_fd, answer_fd = (argv if argv is not None else sys.argv[1:])
    request_fd, answer_fd = int(request_fd), int(answer_fd)
    global MEMORY_GB, PROCESSES
    MEMORY_GB = float(os.environ.get("HW2_MEMORY_GB", 8))
    PROCESSES = int(os.environ.get("HW2_PROCESSES", 32))
    confine()  # no channel out of this process from here on, before any student code (confine.py)
    # one thread: faster than two for these small models, and safe when submissions are graded in parallel
    torch.set_num_threads(int(os.environ.get("HW2_THREADS", 1)))
    resource.setrlimit(resource.RLIMIT_AS, (int(MEMORY_GB * 2**30),) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_MB * 2**20,) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (PROCESSES,) * 2)
    signal.signal(signal.SIGPROF, _on_alarm)
    become_subreaper()
    os.chdir(tempfile.mkdtemp(prefix="hw2-run-"))  # a writable current folder for the student's code
    sub = Submission(workdir, shown_as=shown_as)
    startup = time.process_time()  # the grader counts this process's start in its first request
    while True:
        payload = read_message(request_fd, REQUEST.bytes)
        if payload is None:
            return
        reply = answer(sub, decode(payload, REQUEST), startup)
        startup = 0.0
        try:
            payload = encode(reply)
        except Exception as error:  # a value the format does not hold (probes.plain makes every other one fit)
            detail = str(error) if isinstance(error, WireError) else f"{type(error).__name__}: {error}"
            payload = encode({"status": FAILED, "message": f"{UNREADABLE}: {detail[:500]}", "reason": CRASHED,
                              "printed": reply.get("printed", "")})
        write_message(answer_fd, payload)
        reap()


def reap():
    """Kill every other process of this uid (what the student's code left running), after each
    request, where the sandbox asks for it (HW2_REAP=1: a uid of the child's own); then collect the
    exit of every child that has ended (the student's own, and orphans re-parented here), which adds
    their CPU time to this process's."""
    killed = os.environ.get("HW2_REAP") == "1" and os.getuid() != 0
    if killed:
        try:
            os.kill(-1, signal.SIGKILL)  # every process this uid may signal, except this one
        except ProcessLookupError:
            pass
    until = time.monotonic() + (1 if killed else 0)  # the killed ones take a moment to end
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if time.monotonic() >= until:
                return
            time.sleep(0.01)


if __name__ == "__main__":
    main()
