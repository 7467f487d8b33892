"""The checks, one function per rubric test, registered by id.

A check receives a submission `sub`: `sub.run(probe, **inputs)` runs one of the probes of
autograder/child/probes.py on the student's code and returns its plain values (while grading, in a
sandboxed child process), `sub.reference(file)` is the reference solution. The check chooses the
inputs, compares the values it gets back with what it expects, and passes by returning, fails
by raising CheckFailure (see autograder.child.compare), or is not run by raising NotRun. The student's
code never runs where the comparison is made.

The checks that need neither the reference nor data live in `public_q2.py` and `public_q3.py`
(the students' repository ships them as its public tests); the others in `q2.py` and `q3.py`.
"""

from autograder.child.compare import FAILED, NOT_RUN, PASSED, CheckFailure
from autograder.child.seeds import seed_everything  # noqa: F401  (the checks' and the public tests' seeding)

REGISTRY = {}


DATA_MISSING, GRADER_ERROR, INTERRUPTED = "data missing", "grader error", "interrupted"


class NotRun(Exception):
    """A check could not run for a reason that is not the student's (missing data, a grader fault).
    Raised only in the grading process: nothing the student's code does in the child can raise it."""

    def __init__(self, message="", reason=DATA_MISSING):
        super().__init__(message)
        self.reason = reason


def data_missing(what, error, fix):
    """The NotRun of a check whose data is missing: what, why (the DataError), and the command that gets it."""
    return NotRun(f"{what} is not available ({error}). {fix}, then grade again; this test is not charged.")


def fails(expectation, *args):
    """Whether `expectation(*args)` fails (raises CheckFailure): a test's verdict asked by another test."""
    try:
        expectation(*args)
        return False
    except CheckFailure:
        return True


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
    their public tests) and q1/q2/q3 (hidden); the students' copy holds the public ones only."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")  # registers its checks
    return REGISTRY


def run_check(function, sub):
    """(status, message, reason) of running one check: "passed", "failed" or "not run", the message
    the student reads, and why (a typed reason: compare.REASONS for a failure, DATA_MISSING or
    GRADER_ERROR when not run, "" when passed). What went wrong in the student's code reaches a check
    as CheckFailure (the probes turn it into a message); any other exception here is the grader's own."""
    try:
        message = function(sub)
        return PASSED, message or "", ""
    except NotRun as error:
        return NOT_RUN, str(error), error.reason
    except CheckFailure as error:
        return FAILED, str(error), error.reason


def outcome(function, sub):
    """(status, message) of `run_check`."""
    return run_check(function, sub)[:2]
