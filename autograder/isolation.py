"""The grader's side of running student code: a sandboxed child process it sends probe requests to.

`StudentSubmission` is what the checks see while grading: `run(probe, **inputs)` has the child
(autograder/child/runner.py, inside autograder/sandbox.py) run a probe on the student's code and
returns its plain values; `reference(file)` is the reference solution, loaded here, in the
grading process, where the checks compare. The child never decides a score: it only returns
values, data read within bounds (autograder/child/wire.py), and whatever it says can only fail a
test, never mark it "not run": an answer that is not of the format fails the test as crashed.

Every limit is on CPU time, the child's and that of every process it started (autograder/cgroups.py:
the child's control group where the grader can create one, else its process tree), so that
neither a busy machine nor a classmate's processes are charged to the student: a test's requests
share its limit, the child's own timer (ITIMER_PROF) lets it answer "timed out" by itself, and the
grader, which measures the CPU time while it waits, kills a child that passes the limit by
GRACE_SECONDS. Wall time is only a backstop, WALL_FACTOR times the limit, for a child that waits
without using the CPU (a sleep, a read that never ends). A child that misses its limit, exits or
crashes is killed with everything it started, the test fails with a message saying so, and the
next request starts a fresh child. A test that needs a stand-in for a wrong student
function gets a child of its own with the grader's stand-in module (autograder/standins.py)
bound in; no other child sees it, and nothing that child's code prints or raises reaches the
student's feedback (the student's code could read the stand-in there). Before that child runs
any student code, it must say that it has no channel out of its process (its seccomp filter is
active: autograder/child/confine.py); otherwise grading stops (sandbox.SandboxError), rather
than run the reference beside code that could send it away.
"""

import contextlib
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

from autograder import cgroups, sandbox, standins, template
from autograder.sandbox import MEMORY_GB
from autograder.child import confine
from autograder.child.compare import (CRASHED, FAILED, OUT_OF_MEMORY, REASONS, TIMED_OUT, UNREADABLE, CheckFailure,
                                      shown)
from autograder.child.probes import unplain
from autograder.child.wire import ANSWER, HEADER, REQUEST, WireError, decode, encode, frame, payload_size
from autograder.submission import load_reference, prepare_workdir

GRACE_SECONDS = 15  # of CPU time beyond the child's own timer, before the grader kills it
CONFIRM_SECONDS = 60  # for a new child to say how it is confined
TOLERANCE_SECONDS = 1  # of CPU time beyond the limit in an answer (the child's own timer and the grader's measure differ a little)
# a test's wall-time backstop: this many times its CPU-time limit (plus GRACE_SECONDS). A child that
# gets a third of a core (JOBS=2 on two cores beside four other busy processes) still reaches its
# CPU limit first; one that sleeps waits this long (under a minute and a half at the 20 s floor), and
# grade-all grades a student again alone when such a timeout happened beside other gradings
WALL_FACTOR = 3
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
        self.accounting = None  # the child's control groups, or its process tree (autograder/cgroups.py)
        self.cpu_used = 0.0  # CPU seconds of the child's processes during the last request

    def _start(self):
        layer = sandbox.layer()
        request_read, self.request_fd = os.pipe()
        self.answer_fd, answer_write = os.pipe()
        self.stderr = tempfile.TemporaryFile()
        self.accounting = cgroups.child_groups(layer.uid, MEMORY_GB, sandbox.PROCESSES)
        try:
            self.child = self._fork(layer, request_read, answer_write) if template.current() else None
        except template.TemplateError as error:  # the grading goes on, its children started afresh
            template.failed(error)
            self.child = None
        if self.child is None:
            argv = [sys.executable, "-m", "autograder.child.runner", str(self.workdir), self.shown_as,
                    str(request_read), str(answer_write)]
            child, self.standins_path = layer.child(argv, self.workdir, MEMORY_GB, self.standins)
            self.child = subprocess.Popen(self.accounting.wrap(child.argv), pass_fds=(request_read, answer_write),
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.stderr,
                                          env=child.env, cwd=child.cwd, start_new_session=True)
        self.accounting.started(self.child.pid)
        if getattr(self.child, "holder", None) is not None:  # where orphans go when the child stops being a subreaper
            self.accounting.started(self.child.holder.pid)  # (a child started afresh has them in its own tree)
        os.close(request_read)
        os.close(answer_write)
        os.set_blocking(self.request_fd, False)  # writes wait in select, with the request's deadline

    def _fork(self, layer, request_read, answer_write):
        """A ForkedChild from the warm template, in the place `layer` gives it; None where the layer cannot
        fork one; template.TemplateError."""
        info_read, info_write = os.pipe()
        holder = None
        try:
            forked = layer.forked(self.workdir, MEMORY_GB, self.standins, info_write)
            if forked is None:
                return None
            forked, self.standins_path = forked
            namespaces, fds = None, [request_read, answer_write, self.stderr.fileno()]
            if forked.holder is not None:
                holder = subprocess.Popen(self.accounting.wrap(forked.holder), pass_fds=(info_write,),
                                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr,
                                          env={}, cwd="/", start_new_session=True)
                os.close(info_write)
                info_write = None
                namespaces, pidfd = template.sandbox_of(info_read, holder)
                fds.append(pidfd)
            spec = {"uid": forked.uid, "cwd": forked.cwd, "env": forked.env, "sandbox": namespaces,
                    "cgroups": self.accounting.procs_files(), "workdir": str(self.workdir), "shown_as": self.shown_as}
            try:
                pid, reply = template.current().fork(spec, fds)
            finally:
                if len(fds) > 3:
                    os.close(fds[3])
            child, holder = template.ForkedChild(pid, reply, holder), None
            return child
        finally:
            os.close(info_read)
            if info_write is not None:
                os.close(info_write)
            if holder is not None:  # (the fork failed)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(holder.pid, signal.SIGKILL)
                holder.wait()
                holder.stdout.close()

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
        if isinstance(self.child, template.ForkedChild):
            self.child.release()
        self.accounting.close()  # whatever is left in the child's groups
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

    def cpu_seconds(self):
        """CPU seconds used so far by the child and every process it started."""
        return self.accounting.cpu_seconds() if self.accounting is not None else 0.0

    def request(self, probe, inputs, seconds, limit, wall=None, spent=0.0):
        """The child's answer (a dict) to running `probe` on `inputs` within `seconds` of CPU time and
        `wall` seconds of wall time (default WALL_FACTOR x `seconds`). `limit` is the test's CPU-time
        limit and `spent` what its earlier requests used (for the messages). Afterwards, `cpu_used`
        holds the CPU time this request used, whatever happened."""
        fresh = self.child is None
        if fresh:
            self._start()
            if self.standins is not None:
                self._confirm_confined()
        if self.standins is not None:
            inputs = dict(inputs, standins=self.standins_path)
        self._start_cpu = 0.0 if fresh else self.cpu_seconds()  # a new child's start is the request's too
        self._cpu_allowed = seconds + GRACE_SECONDS
        self._started = time.time()
        deadline = self._started + (wall if wall is not None else WALL_FACTOR * seconds) + GRACE_SECONDS
        self._limit, self._spent = limit, spent
        self.cpu_used = 0.0
        try:
            sent = self._write(encode({"probe": probe, "inputs": inputs, "seconds": seconds, "limit": limit}, REQUEST),
                               deadline)
        except OSError:  # the child is gone
            sent = "eof"
        if sent is not True:
            self._fail(sent)
        header = self._read(HEADER.size, deadline)
        if isinstance(header, str):
            self._fail(header)
        try:
            size = payload_size(header, ANSWER.bytes)
        except WireError as error:
            self._fail(f"{UNREADABLE}: {error}, too large to read back; the grading process was stopped "
                       f"(exit code {{code}}).")
        payload = self._read(size, deadline)
        if isinstance(payload, str):
            self._fail(payload)
        self.cpu_used = self._used()
        try:
            reply = answer_of(decode(payload, ANSWER))
        except WireError as error:
            self._fail(f"{UNREADABLE}: {error}. Did your code write to a file descriptor it did not open? The grading "
                       f"process was stopped (exit code {{code}}).")
        stopped_itself = isinstance(reply, dict) and reply.get("reason") == TIMED_OUT
        if spent + self.cpu_used > limit + TOLERANCE_SECONDS and not stopped_itself:  # an answer, but too late
            raise CheckFailure(f"timed out: used {spent + self.cpu_used:.0f} s of CPU time (the limit is {limit:g} s), "
                               f"counting the processes your code started", TIMED_OUT)
        return reply

    def _confirm_confined(self):
        """The new child's own word (no student code has run in it yet) that it has no channel out of
        its process, where the layer requires it; else SandboxError, and the child is stopped."""
        layer = sandbox.layer()
        if not layer.confines:
            return
        stopped = None
        try:
            why = confine.missing(self.request("confinement", {}, CONFIRM_SECONDS, CONFIRM_SECONDS).get("value"))
        except CheckFailure as error:
            why, stopped = f"it stopped before saying so ({error})", error
        if why:
            self.close()
            raise sandbox.SandboxError(f"the child that runs the grader's stand-ins ({layer.description}) is not "
                                       f"confined: {why}. Grading stopped, so that the reference never runs beside "
                                       f"student code that could send it away. Fix the sandbox, then grade again.") from stopped

    def _used(self):
        return max(0.0, self.cpu_seconds() - self._start_cpu)

    def _fail(self, what):
        """Kill the child and raise the test's CheckFailure: `what` is "eof", "timeout" (CPU time), "stalled"
        (wall time), "disk", or a message of its own (a crash)."""
        self.cpu_used = used = self._used()
        total, limit = self._spent + used, self._limit
        reason = TIMED_OUT if what in ("timeout", "stalled") else CRASHED
        if what == "stalled" and total > limit:  # it used its CPU time too, only more slowly than the wall allows
            what = "timeout"
        if what == "eof" and self.accounting.out_of_memory():
            message, reason = (f"your code used more memory than the limit ({MEMORY_GB:g} GB) and was killed (exit "
                               f"code {{code}})."), OUT_OF_MEMORY
        else:
            message = {
                "eof": "the grading process stopped during this test (exit code {code}); your code may have called "
                       "exit or crashed the interpreter.",
                "timeout": f"timed out: used {total:.0f} s of CPU time (the limit is {limit:g} s; an infinite loop, or "
                           f"far too slow?); the grading process did not stop by itself and was killed (exit code "
                           f"{{code}}).",
                "stalled": f"timed out: {time.time() - self._started:.0f} s passed while your code used only "
                           f"{total:.1f} s of CPU time (the limit is {limit:g} s of CPU time); is it waiting for "
                           f"something that never comes (a sleep, input, a lock)? It was killed (exit code {{code}}).",
                "disk": f"your code wrote more than {sandbox.TMP_MB} MB of files (exit code {{code}}).",
            }.get(what, what)
        raise CheckFailure(self._stopped(message), reason) from None

    def _over(self, deadline):
        """"timeout" when the child's CPU time passed its allowance, "eof" when the child has ended (a process its
        code left, outside a sandbox that ends with it, may hold its pipes open), "stalled" when `deadline` (wall)
        passed, "disk" when its files grew beyond the sandbox's bound (where the layer has no /tmp of its own);
        else None."""
        if self._used() > self._cpu_allowed:
            return "timeout"
        if self.child.poll() is not None:
            return "eof"
        if time.time() >= deadline:
            return "stalled"
        if sandbox.layer().over_limit():
            return "disk"
        return None

    def _write(self, payload, deadline):
        """Send one request (length and payload): True, or why not (see `_over`) when the child stops reading."""
        view = memoryview(frame(payload))
        while view:
            if not select.select([], [self.request_fd], [], max(0.0, min(deadline - time.time(), 0.5)))[1]:
                over = self._over(deadline)
                if over:
                    return over
                continue
            view = view[os.write(self.request_fd, view[:1 << 16]):]
        return True

    def _read(self, size, deadline):
        """`size` bytes from the child, or "eof", or why it was stopped (see `_over`; checked twice a second)."""
        chunks, left = [], size
        while left:
            ready = select.select([self.answer_fd], [], [], max(0.0, min(deadline - time.time(), 0.5)))[0]
            if not ready:
                over = self._over(deadline)
                if over:
                    return over
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

    def begin_test(self, seconds=None, wall=None):
        """Start the clock of a test: all its requests share one limit of CPU time (`seconds`, default the
        one given at creation) and a wall-time backstop (`wall`, default WALL_FACTOR x `seconds`)."""
        self.test_seconds = seconds or self.test_seconds
        self.cpu_spent = 0.0  # CPU seconds of the children's processes in this test so far
        self.wall_deadline = time.time() + (wall if wall is not None else WALL_FACTOR * self.test_seconds)
        self.printed = []
        self.answered = False  # whether the child has returned values in this test

    def run(self, probe, **inputs):
        return self._answer(self.process, probe, inputs)

    def run_with_standins(self, probe, quiet=True, **inputs):
        """`run`, in a child of its own that also sees the grader's stand-ins (`use=` names which). With
        `quiet` (whenever student code runs there) nothing the child prints or raises is shown."""
        # the file's own child ends first: no process of the student's is alive beside the grader's code (the
        # two share the uid and the working folder, so a live one could meet it, e.g. through file locks);
        # the next request starts it again
        self.process.close()
        process = StudentProcess(self.workdir, self.tree, standins=standins.path())
        process.quiet = quiet
        try:
            return self._answer(process, probe, inputs)
        finally:
            process.close()

    def _answer(self, process, probe, inputs):
        seconds = max(1.0, self.test_seconds - self.cpu_spent)
        wall = max(1.0, self.wall_deadline - time.time())
        try:
            reply = process.request(probe, inputs, seconds, self.test_seconds, wall, self.cpu_spent)
        except CheckFailure as error:
            raise CheckFailure(capped(error), error.reason) from None
        finally:
            self.cpu_spent += process.cpu_used
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
        if failure.reason == TIMED_OUT:  # stopped by its own timer: the CPU time is the grader's measure
            raise CheckFailure(f"timed out: used {self.cpu_spent:.0f} s of CPU time (the limit is "
                               f"{self.test_seconds:g} s; an infinite loop, or far too slow?)", TIMED_OUT)
        raise failure

    reference = staticmethod(load_reference)

    def stop(self):
        """Kill the child now (a check was stopped mid-request); the next request starts a fresh one."""
        self.process.stop()

    def cleanup(self):
        self.process.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
