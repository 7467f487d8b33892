"""Measure the thresholds of the training tests from the reference, under the same budget, and the
reference's time for every test.

    python -m autograder calibrate            (or: make calibrate)
    python -m autograder calibrate --only timing
    HW2_BUDGET=test python -m autograder calibrate   (the reduced budgets of the repository's own tests)

For each training test, the reference is trained with the test's budget (rubric.toml's
[tests.training], or [tests.training_reduced] with HW2_BUDGET=test) under several seeds;
the threshold is the lowest result minus the rubric's margin, so that a correct implementation
whose random numbers are drawn in a different order still passes, and a wrong one does not. What
was measured is kept in `calibration.json` next to the threshold (instructors only: never released
to students; autograder/thresholds.py reads it). It also keeps how long the reference takes on
each test and how long the grader's self-check takes (`timing`), in CPU time of the child's
processes as the grader measures them (`clock: "cpu"`): per-test time limits are derived from them.
"""

import json
import statistics
import time

from autograder import rubric as rubric_module
from autograder.thresholds import CALIBRATION_FILE, CalibrationError, budget_in_use, training

SEEDS = (42, 43, 44)


def calibrate_timing(log=print):
    """Grade the reference and record the CPU time each test took (of the child's processes, measured by the
    grader), and the self-check's."""
    from autograder import selfcheck
    from autograder.grade import grade
    from autograder.results import MANUAL, PASSED
    from autograder.submission import REFERENCE_TREE

    table = json.loads(CALIBRATION_FILE.read_text()) if CALIBRATION_FILE.exists() else {}
    table.pop("timing", None)
    CALIBRATION_FILE.write_text(json.dumps(table, indent=2) + "\n")  # no scaling while measuring
    check = selfcheck.run()
    results = grade(REFERENCE_TREE, log=lambda *_: None)
    failed = [r.id for r in results.results if r.status not in (PASSED, MANUAL)]
    if failed:
        raise CalibrationError(f"the reference did not pass {', '.join(failed)}: fix that before calibrating")
    table["timing"] = {"clock": "cpu", "cpu_accounting": check.cpu_accounting.split(" (")[0],
                       "selfcheck_seconds": round(check.seconds, 3),
                       "tests": {r.id: round(r.cpu_seconds, 2) for r in results.results if r.status == PASSED}}
    CALIBRATION_FILE.write_text(json.dumps(table, indent=2) + "\n")
    log(f"timing (CPU time): self-check {check.seconds:.2f} s; slowest test "
        f"{max(table['timing']['tests'].items(), key=lambda item: item[1])}")
    return table["timing"]


def measure(test_id, seed):
    """The reference's result for `test_id` under its budget with `seed`, measured by the same probe
    and the same scoring as a student's."""
    from autograder.checks import q2, q3
    from autograder.submission import REFERENCE_TREE, LocalSubmission

    test = {t.id: t for t in rubric_module.load().tests}[test_id]
    budget = dict(training(test)[0], seed=seed)
    sub = LocalSubmission(REFERENCE_TREE)
    try:
        if test_id == "2.2-accuracy":
            return q2.trained_accuracy(sub, budget)
        return q3.trained_bleu(sub, test_id == "3.1b-bleu", budget)
    finally:
        sub.cleanup()


def calibrate(test_ids=None, log=print):
    """Thresholds of the training tests (`test_ids`, default all), then the timing of every test."""
    table = json.loads(CALIBRATION_FILE.read_text()) if CALIBRATION_FILE.exists() else {}
    suffix = budget_in_use()[1]
    tests = {t.id: t for t in rubric_module.load().training_tests()}
    for test_id in [t for t in (test_ids or tests) if t != "timing"]:
        if test_id not in tests:
            raise CalibrationError(f"{test_id} is not a training test of rubric.toml ({', '.join(tests)}, or timing)")
        budget, margin = training(tests[test_id])
        start = time.time()
        results = {seed: measure(test_id, seed) for seed in SEEDS}
        seconds = (time.time() - start) / len(SEEDS)
        key = test_id + suffix
        table[key] = {
            "budget": budget,
            "threshold": round(min(results.values()) - margin, 4),
            "reference_by_seed": {str(s): round(v, 4) for s, v in results.items()},
            "reference_mean": round(statistics.mean(results.values()), 4),
            "margin": margin,
            "seconds_per_run": round(seconds, 1),
        }
        log(f"{key}: reference {table[key]['reference_by_seed']} -> threshold {table[key]['threshold']} "
            f"({seconds:.0f} s per run)")
        CALIBRATION_FILE.write_text(json.dumps(table, indent=2) + "\n")
    if test_ids and "timing" in test_ids and suffix:
        raise CalibrationError("the reference's times are measured with the grading budget only: run "
                               "`python -m autograder calibrate --only timing` without HW2_BUDGET=test")
    if (test_ids is None and not suffix) or (test_ids and "timing" in test_ids):
        calibrate_timing(log)
    return json.loads(CALIBRATION_FILE.read_text())
