"""The checks, one function per rubric test, registered by id.

A check receives the `Submission` (the student's modules and the reference's) and passes by
returning, fails by raising CheckFailure (see autograder.compare), or is not run by raising
NotRun. Checks for a question live in `q2.py` and `q3.py`.
"""

REGISTRY = {}


def check(test_id):
    """Register the decorated function as the check of rubric test `test_id`."""

    def register(function):
        if test_id in REGISTRY:
            raise ValueError(f"two checks for {test_id}")
        REGISTRY[test_id] = function
        return function

    return register


def all_checks():
    from autograder.checks import q2, q3  # noqa: F401  (registers them)

    return REGISTRY
