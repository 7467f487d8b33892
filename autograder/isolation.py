"""The grader's side of running student code: a sandboxed child process it sends probe requests to.

`StudentSubmission` is what the checks see while grading: `run(probe, **inputs)` has the child
(autograder/child/runner.py, inside autograder/sandbox.py) run a probe on the student's code and
returns its plain values; `reference(file)` is the reference solution, loaded here, in the
grading process, where the checks compare. The child never decides a score: it only returns
values, data read within bounds (autograder/child/wire.py), and whatever it says can only fail a
test, never mark it "not run": an answer that is not of the format fails the test as crashed.

Every request has a deadline (what is left of the test's time limit); a child that misses it,
exits or crashes is killed with everything it started, the test fails with a message saying so,
and the next request starts a fresh child. A test that needs a stand-in for a wrong student
function gets a child of its own with the grader's stand-in module (autograder/standins.py)
bound in; no other child sees it, and nothing that child's code prints or raises reaches the
student's feedback (the student's code could read the stand-in there). Before that child runs
any student code, it must say that it has no channel out of its process (its seccomp filter is
active: autograder/child/confine.py); otherwise grading stops (sandbox.SandboxError), rather
than run the reference beside code that could send it away.
"""

import io
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autograder import sandbox, standins
from autograder.child import confine
from autograder.child.compare import CRASHED, FAILED, REASONS, TIMED_OUT, UNREADABLE, CheckFailure, shown
from autograder.child.probes import unplain
from autograder.child.wire import ANSWER, HEADER, REQUEST, WireError, decode, encode, frame, payload_size
from autograder.submission import load_reference, prepare_workdir

GRACE_SECONDS = 15  # beyond the child's own alarm, before the grader kills it
CONFIRM_SECONDS = 60  # for a new child to say how it is confined
MEMORY_GB = float(os.environ.get("HW2_MEMORY_GB", 8))  # the child's address-space limit
TEXT_LIMIT = 4000  # characters of one message or of what the student's code printed, in the results


def capped(text, limit=TEXT_LIMIT):
    """`text` as a str of at most `limit` characters (plus a note of how many were dropped)."""
    text = str(text)
    return text if len(text) <= limit else text[:limit] + f" [... {len(text) - limit:,} more characters]"


def answer_of(reply):
    """`reply` (decoded) when it has the form of the child's answers (runner.answer): {"value": ...,
    "printed": str} or {"status": "failed", "message": str, "reason": one of compare.REASONS,
    "printed": str}; WireError saying how it differs."""
    if not isinstance(reply, dict):
        raise WireError(f"an answer that is a {type(reply).__name__}, not a dict")
    if "value" in reply:
        form = {"value", "printed"}
    elif reply.get("status") == FAILED and isinstance(reply.get("message"), str) and reply.get("reason") in REASONS:
        form = {"status", "message", "reason", "printed"}
    else:
        raise WireError("an answer with neither a value nor a failure's message and reason")
    if set(reply) != form or not isinstance(reply["printed"], str):
        raise WireError(f"an answer whose keys are {shown(list(reply))}; expected {sorted(form)}")
    return reply


class StudentProcess:
    """One child process running probes on one student's working folder."""

    def __init__(self, workdir, shown_as, standins=None):
        self.workdir, self.shown_as = Path(workdir), str(shown_as)
        self.standins = standins  # the stand-in module to bind into this child, or None
        # with the grader's code in the child, nothing the student's code says reaches the feedback
        self.quiet = standins is not None
        self.standins_path = None  # where the child finds it
        self.child = None
        self.stderr = None

    def _start(self):
        layer = sandbox.layer()
        request_read, self.request_fd = os.pipe()
        self.answer_fd, answer_write = os.pipe()
        argv = [sys.executable, "-m", "autograder.child.runner", str(self.workdir), self.shown_as,
                str(request_read), str(answer_write)]
        child, self.standins_path = layer.child(argv, self.workdir, MEMORY_GB, self.standins)
        self.stderr = tempfile.TemporaryFile()
        self.child = subprocess.Popen(child.argv, pass_fds=(request_read, answer_write), stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=self.stderr, env=child.env, cwd=child.cwd,
                                      start_new_session=True)
        os.close(request_read)
        os.close(answer_write)
        os.set_blocking(self.request_fd, False)  # writes wait in select, with the request's deadline

    def stop(self):
        """Kill the child and every process it started, whatever it is doing (a request left unanswered):
        the next request starts a fresh one."""
        if self.child is not None:
            self._stopped("")

    def close(self):
        """Stop the child and every process it started."""
        if self.child is None:
            return
        os.close(self.request_fd)  # end of requests: the runner returns
        try:
            self.child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.child.pid, signal.SIGKILL)  # whatever the student's code left running
        except (ProcessLookupError, PermissionError):
            pass
        self.child.wait()
        sandbox.layer().after_child()
        os.close(self.answer_fd)
        self.stderr.close()
        self.child = None

    def _stopped(self, why):
        """Kill the child after it failed to answer; the message for the student."""
        if self.child.poll() is None:
            try:
                os.killpg(self.child.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.child.kill()
        code = self.child.wait()
        self.stderr.seek(0, io.SEEK_END)
        self.stderr.seek(max(0, self.stderr.tell() - 500))
        tail = "" if self.quiet else self.stderr.read().decode(errors="replace").strip()
        self.close()
        return why.replace("{code}", str(code)) + (f" {tail}" if tail else "")

    def request(self, probe, inputs, seconds, limit):
        """The child's answer (a dict) to running `probe` on `inputs` within `seconds`."""
        if self.child is None:
            self._start()
            if self.standins is not None:
                self._confirm_confined()
        if self.standins is not None:
            inputs = dict(inputs, standins=self.standins_path)
        crashed = ("the grading process stopped during this test (exit code {code}); your code may have called exit "
                   "or crashed the interpreter.")
        deadline = time.time() + seconds + GRACE_SECONDS
        failures = {"eof": crashed, "timeout": f"timed out after {limit:g} s (an infinite loop, or far too slow?); the "
                                               f"grading process did not stop by itself and was killed (exit code {{code}})."}
        try:
            sent = self._write(encode({"probe": probe, "inputs": inputs, "seconds": seconds, "limit": limit}, REQUEST),
                               deadline)
        except OSError:  # the child is gone
            sent = "eof"
        reasons = {"eof": CRASHED, "timeout": TIMED_OUT, "disk": CRASHED}
        failures["disk"] = f"your code wrote more than {sandbox.TMP_MB} MB of files (exit code {{code}})."
        if sent is not True:
            raise CheckFailure(self._stopped(failures[sent]), reasons[sent])
        header = self._read(HEADER.size, deadline)
        if isinstance(header, str):
            raise CheckFailure(self._stopped(failures[header]), reasons[header])
        try:
            size = payload_size(header, ANSWER.bytes)
        except WireError as error:
            raise CheckFailure(self._stopped(f"{UNREADABLE}: {error}, too large to read back; the grading process "
                                             f"was stopped (exit code {{code}})."), CRASHED) from None
        payload = self._read(size, deadline)
        if isinstance(payload, str):
            raise CheckFailure(self._stopped(failures[payload]), reasons[payload])
        try:
            return answer_of(decode(payload, ANSWER))
        except WireError as error:
            raise CheckFailure(self._stopped(f"{UNREADABLE}: {error}. Did your code write to a file descriptor it "
                                             f"did not open? The grading process was stopped (exit code {{code}})."),
                               CRASHED) from None

    def _confirm_confined(self):
        """The new child's own word (no student code has run in it yet) that it has no channel out of
        its process, where the layer requires it; else SandboxError, and the child is stopped."""
        layer = sandbox.layer()
        if not layer.confines:
            return
        try:
            why = confine.missing(self.request("confinement", {}, CONFIRM_SECONDS, CONFIRM_SECONDS).get("value"))
        except CheckFailure as error:
            why = f"it stopped before saying so ({error})"
        if why:
            self.close()
            raise sandbox.SandboxError(f"the child that runs the grader's stand-ins ({layer.description}) is not "
                                       f"confined: {why}. Grading stopped, so that the reference never runs beside "
                                       f"student code that could send it away. Fix the sandbox, then grade again.")

    def _write(self, payload, deadline):
        """Send one request (length and payload) before `deadline`: True, or "timeout" when the child
        stops reading."""
        view = memoryview(frame(payload))
        while view:
            wait = deadline - time.time()
            if wait <= 0 or not select.select([], [self.request_fd], [], wait)[1]:
                return "timeout"
            view = view[os.write(self.request_fd, view[:1 << 16]):]
        return True

    def _read(self, size, deadline):
        """`size` bytes from the child, or "eof", or "timeout", or "disk" when the child's files grow
        beyond the sandbox's bound (checked twice a second where the layer has no /tmp of its own)."""
        chunks, left = [], size
        while left:
            wait = deadline - time.time()
            if wait <= 0:
                return "timeout"
            ready = select.select([self.answer_fd], [], [], min(wait, 0.5))[0]
            if not ready:
                if sandbox.layer().over_limit():
                    return "disk"
                continue
            chunk = os.read(self.answer_fd, min(left, 1 << 20))
            if not chunk:
                return "eof"
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


class StudentSubmission:
    """The student's tree as the checks see it while grading: probes run in a sandboxed child,
    the reference is loaded here."""

    def __init__(self, tree, test_seconds=150, files=None):
        """`files`: the graded files this child may see (default: all of them)."""
        self.tree = Path(tree)
        self.workdir = prepare_workdir(self.tree, files, reader_gid=sandbox.layer().uid)
        self.process = StudentProcess(self.workdir, self.tree)
        self.test_seconds = test_seconds
        self.begin_test()

    def begin_test(self, seconds=None):
        """Start the clock of a test: all its requests share one time limit (`seconds`, default the
        one given at creation)."""
        self.test_seconds = seconds or self.test_seconds
        self.deadline = time.time() + self.test_seconds
        self.printed = []
        self.answered = False  # whether the child has returned values in this test

    def run(self, probe, **inputs):
        return self._answer(self.process, probe, inputs)

    def run_with_standins(self, probe, quiet=True, **inputs):
        """`run`, in a child of its own that also sees the grader's stand-ins (`use=` names which). With
        `quiet` (whenever student code runs there) nothing the child prints or raises is shown."""
        process = StudentProcess(self.workdir, self.tree, standins=standins.path())
        process.quiet = quiet
        try:
            return self._answer(process, probe, inputs)
        finally:
            process.close()

    def _answer(self, process, probe, inputs):
        seconds = max(1.0, self.deadline - time.time())
        try:
            reply = process.request(probe, inputs, seconds, self.test_seconds)
        except CheckFailure as error:
            raise CheckFailure(capped(error), error.reason) from None
        if "value" in reply:
            self.answered = True
            if reply.get("printed") and not process.quiet:
                self.printed.append(capped(reply["printed"]))
            return unplain(reply["value"])
        failure = CheckFailure(capped(reply["message"]), reply["reason"])  # the student's kinds only (answer_of)
        if process.quiet:  # the grader's correct code ran beside the student's: say nothing the child said
            what = "not implemented yet" if failure.reason == "not implemented" else failure.reason
            raise CheckFailure(f"your code failed ({what}) while it trained together with the grader's "
                               f"correct code (standing in for a part of yours whose problem its own test counts); "
                               f"what your code printed or raised is not shown in this test, because the grader's "
                               f"code ran in the same process. Run your own code to see it.", failure.reason)
        if reply.get("printed"):
            self.printed.append(capped(reply["printed"]))
        raise failure

    reference = staticmethod(load_reference)

    def stop(self):
        """Kill the child now (a check was stopped mid-request); the next request starts a fresh one."""
        self.process.stop()

    def cleanup(self):
        self.process.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
