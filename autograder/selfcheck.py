"""The grader checks itself before it grades anyone.

A child of the same kind as the students' (same sandbox layer, same limits), on a working folder
holding only the provided files, runs the grader's own correct code (the stand-ins) on data the
size of the accuracy test's: this proves that the sandbox starts, that the child imports, that
its memory limit fits the reference, and measures how fast this machine is against the one
`make calibrate` ran on, in CPU time (per-test time limits are scaled by that factor). It also
states how the children's CPU time is counted here (autograder/cgroups.py: control groups, or the
process tree where they cannot be created). The data is read in
the grading process only; a test whose data is missing is reported "not run".

When anything fails, `EnvironmentBroken` says what and how to fix it, and grading does not start:
no student is charged for the grader's environment.
"""

import tempfile
from dataclasses import dataclass

import torch

from autograder import cgroups, sandbox, thresholds
from autograder.child.compare import OUT_OF_MEMORY, CheckFailure

STEPS = 80  # batches of 8 the stand-in CNN trains on (about half a second of CPU time)


class EnvironmentBroken(RuntimeError):
    """The grading environment cannot grade fairly here; the message names the cause and the fix."""


@dataclass(frozen=True)
class SelfCheck:
    layer: str  # where student code runs
    seconds: float  # the self-check workload's CPU time, here
    speed: float  # seconds here / seconds when calibrated: per-test limits are multiplied by it
    peak_mb: float
    layer_name: str = ""  # the layer's name (sandbox.py: bubblewrap, user, none), for a cluster's check of its workers
    cpu_accounting: str = ""  # how the children's CPU time is counted here (cgroups.description())


def run(allow_unsandboxed=False):
    """The self-check; EnvironmentBroken (or sandbox.SandboxError) when the grader cannot grade here."""
    from autograder.isolation import MEMORY_GB, StudentSubmission

    layer = sandbox.layer(allow_unsandboxed)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(10_000, 1, 28, 28, generator=generator)  # the accuracy test sends 10,000 images
    labels = torch.randint(0, 10, (10_000,), generator=generator)
    with tempfile.TemporaryDirectory(prefix="hw2-selfcheck-") as empty:
        sub = StudentSubmission(empty, test_seconds=300, files=[])
        try:
            found = sub.run_with_standins("selfcheck", quiet=False, images=images, labels=labels, steps=STEPS)
        except (CheckFailure, sandbox.SandboxError) as error:
            if isinstance(error, sandbox.SandboxError):  # the child stopped before saying how it is confined: why
                if not isinstance(error.__cause__, CheckFailure):
                    raise
                error = error.__cause__
            lines = str(error).replace("; your code may have called exit or crashed the interpreter.", ":").splitlines()
            text = lines[0][:300] + (f" ... {lines[-1][-300:]}" if len(lines) > 1 else "")
            words = ("more memory than", "MemoryError", "can't allocate memory", "failed to map segment")
            if getattr(error, "reason", None) == OUT_OF_MEMORY or any(word in text for word in words):
                raise EnvironmentBroken(f"the grader's own code cannot run within the child's memory limit "
                                        f"(HW2_MEMORY_GB={MEMORY_GB:g}): {text}. Fix: raise HW2_MEMORY_GB (8 is the "
                                        f"default) or give the machine more memory.") from None
            raise EnvironmentBroken(f"a child process of the grader ({layer.description}) could not run the grader's "
                                    f"own code: {text}. Fix: check that bubblewrap works (or run the grader as root), "
                                    f"that the repository and its .venv are readable, then grade again.") from None
        finally:
            sub.cleanup()
    if not isinstance(found, dict) or not isinstance(found.get("seconds"), float):
        raise EnvironmentBroken("the self-check's child answered with something unexpected; grade again")
    calibrated = thresholds.timing().get("selfcheck_seconds")
    speed = max(0.5, found["seconds"] / calibrated) if calibrated else 1.0
    return SelfCheck(layer.description, found["seconds"], speed, found["peak_mb"], layer.name,
                     cgroups.description())
