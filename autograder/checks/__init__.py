"""The checks, one function per rubric test, registered by id.

A check receives the `Submission` (the student's modules and the reference's) and passes by
returning, fails by raising CheckFailure (see autograder.compare), or is not run by raising
NotRun. Checks for a question live in `q2.py` and `q3.py`.
"""

import time

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


def count_layer_calls(model, run, layer_types):
    """{layer name: times it ran} for the layers of `model` of `layer_types` while `run()` runs."""
    counts = {}
    handles = [module.register_forward_hook(lambda m, i, o, name=name: counts.__setitem__(name, counts.get(name, 0) + 1))
               for name, module in model.named_modules() if isinstance(module, layer_types)]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return counts


def median_seconds(function, repeats=7):
    """Median wall time of `function()` over `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
