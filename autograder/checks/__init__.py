"""The checks, one function per rubric test, registered by id.

A check receives a submission `sub`: `sub.run(probe, **inputs)` runs one of the probes of
autograder/probes.py on the student's code and returns its plain values (while grading, in a
sandboxed child process), `sub.reference(file)` is the reference solution. The check chooses the
inputs, compares the values it gets back with what it expects, and passes by returning, fails
by raising CheckFailure (see autograder.compare), or is not run by raising NotRun. The student's
code never runs where the comparison is made.

The checks that need neither the reference nor data live in `public_q2.py` and `public_q3.py`
(the students' repository ships them as its public tests); the others in `q2.py` and `q3.py`.
"""

import os
import random
import traceback

import numpy as np
import torch

from autograder.compare import CheckFailure, NotRun

REGISTRY = {}


class TestTimeout(Exception):
    """Raised (by the caller's alarm) in a check that ran past its time limit."""


def check(test_id):
    """Register the decorated function as the check of rubric test `test_id`."""

    def register(function):
        if test_id in REGISTRY:
            raise ValueError(f"two checks for {test_id}")
        REGISTRY[test_id] = function
        return function

    return register


def all_checks():
    """Every check of the modules in this package: public_q2/public_q3 (shipped to students as
    their public tests) and q2/q3 (hidden); the students' copy holds the public ones only."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")  # registers its checks
    return REGISTRY


def seed_everything(seed=0):
    """Seed Python, numpy and torch: every check starts from the same random state, wherever it runs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _student_frame(error, workdir):
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith(str(workdir))]
    return f" ({os.path.basename(frames[-1].filename)}, line {frames[-1].lineno}, in {frames[-1].name})" if frames else ""


def outcome(function, sub, seconds=None, memory_gb=None):
    """(status, message) of running one check: "passed", "failed" or "not run", and the message the
    student reads. `seconds` and `memory_gb` are the limits the caller enforces (for the messages)."""
    limit = f"the limit ({memory_gb:g} GB)" if memory_gb else "this machine has"
    too_much_memory = f"your code tried to use more memory than {limit}"
    try:
        message = function(sub)
        return "passed", message or ""
    except NotRun as error:
        return "not run", str(error)
    except CheckFailure as error:
        return "failed", str(error)
    except NotImplementedError as error:
        text = str(error) or "a function raised NotImplementedError"
        return "failed", text if "not implemented yet" in text else f"not implemented yet: {text}"
    except TestTimeout:
        return "failed", f"timed out after {seconds} s (an infinite loop, or far too slow?)"
    except RecursionError:
        return "failed", "your code recursed without end (RecursionError)"
    except MemoryError:
        return "failed", too_much_memory
    except BaseException as error:  # the student's code raised: report where
        if isinstance(error, RuntimeError) and "can't allocate memory" in str(error):
            return "failed", too_much_memory
        return "failed", f"your code raised {type(error).__name__}: {error}{_student_frame(error, sub.workdir)}"
