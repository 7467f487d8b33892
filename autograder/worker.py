"""Run the checks of one question against one tree, in a process of its own.

    python -m autograder.worker <tree> <result-fd> <test-id> [<test-id> ...]

Started by `autograder.grade`. Each check runs with Python, numpy and torch seeded, a wall-time
limit, and the student's printing captured; one JSON line per finished test is written to the
file descriptor <result-fd>, so that everything finished before a crash is kept.
"""

import contextlib
import io
import json
import os
import resource
import signal
import sys
import time

import torch

from autograder.checks import TestTimeout, all_checks, outcome, seed_everything
from autograder.submission import Submission

TEST_SECONDS = int(os.environ.get("HW2_TEST_SECONDS", 150))
MEMORY_GB = float(os.environ.get("HW2_MEMORY_GB", 8))  # address-space limit of this process
# one thread: faster than two for these small models, and safe when submissions are graded in parallel
torch.set_num_threads(int(os.environ.get("HW2_THREADS", 1)))
OUTPUT_LIMIT = 1500


class CappedOutput(io.TextIOBase):
    """Keeps the first OUTPUT_LIMIT characters printed and counts the rest, so a flood of
    output costs neither memory nor time."""

    def __init__(self):
        self.kept, self.dropped = [], 0
        self.size = 0

    def write(self, text):
        room = OUTPUT_LIMIT - self.size
        if room > 0:
            self.kept.append(text[:room])
            self.size += min(room, len(text))
        self.dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def getvalue(self):
        tail = f" [... {self.dropped:,} more characters]" if self.dropped else ""
        return "".join(self.kept).strip() + tail


def _on_alarm(signum, frame):
    raise TestTimeout()


def run_check(function, sub):
    """(status, message) of one check, under this process's limits."""
    return outcome(function, sub, TEST_SECONDS, MEMORY_GB)


def main(argv=None):
    argv = argv if argv is not None else sys.argv[1:]
    tree, fd, test_ids = argv[0], int(argv[1]), argv[2:]
    channel = os.fdopen(fd, "w", buffering=1)
    resource.setrlimit(resource.RLIMIT_AS, (int(MEMORY_GB * 2**30),) * 2)
    checks = all_checks()
    sub = Submission(tree)
    signal.signal(signal.SIGALRM, _on_alarm)
    try:
        for test_id in test_ids:
            seed_everything()
            captured = CappedOutput()
            start = time.time()
            signal.alarm(TEST_SECONDS)
            try:
                with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
                    status, message = run_check(checks[test_id], sub)
            finally:
                signal.alarm(0)
            printed = captured.getvalue()
            if printed and status == "failed":
                message += f"\nYour code printed:\n{printed}"
            channel.write(json.dumps({"id": test_id, "status": status, "output": message,
                                      "seconds": time.time() - start}) + "\n")
    finally:
        sub.cleanup()
        channel.close()


if __name__ == "__main__":
    main()
