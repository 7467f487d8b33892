"""Thresholds of the training tests, calibrated from the reference under the same budget.

    python -m autograder calibrate            (or: make calibrate)
    python -m autograder calibrate --only timing
    HW2_BUDGET=test python -m autograder calibrate   (the reduced budgets of the repository's own tests)

For each training test, the reference is trained with the test's budget under several seeds;
the threshold is the lowest result minus a margin, so that a correct implementation whose
random numbers are drawn in a different order still passes, and a wrong one does not.
What was measured is kept in `calibration.json` next to the threshold (instructors only:
never released to students). It also keeps how long the reference takes on each test and how
long the grader's self-check takes (`timing`): per-test time limits are derived from them.
"""

import json
import os
import statistics
import time
from pathlib import Path

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")

BUDGETS = {
    # margin 0.06: correct CNNs whose layers are created in another order (another initialisation) reached
    # 0.6986-0.755 in a review, against the reference's 0.728-0.761 over three seeds
    "2.2-accuracy": {"budget": {"train_size": 10_000, "epochs": 1, "batch_size": 8, "learning_rate": 0.05, "seed": 42},
                     "margin": 0.06},
    "3.1a-bleu": {"budget": {"train_images": 250, "epochs": 2, "seed": 42}, "margin": 0.05},
    "3.1b-bleu": {"budget": {"train_images": 250, "epochs": 2, "seed": 42}, "margin": 0.05},
}
# reduced budgets, reserved for the repository's own tests (HW2_BUDGET=test), calibrated the same way
TEST_BUDGETS = {
    "2.2-accuracy": {"budget": {"train_size": 2_000, "epochs": 1, "batch_size": 8, "learning_rate": 0.05, "seed": 42},
                     "margin": 0.05},
    "3.1a-bleu": {"budget": {"train_images": 60, "epochs": 1, "seed": 42}, "margin": 0.05},
    "3.1b-bleu": {"budget": {"train_images": 60, "epochs": 1, "seed": 42}, "margin": 0.05},
}
SEEDS = (42, 43, 44)


def active_budgets():
    """(budgets, key suffix) of the budget in use: the grading's, or the tests' with HW2_BUDGET=test."""
    budget = os.environ.get("HW2_BUDGET", "grading")
    if budget not in ("grading", "test"):
        raise CalibrationError(f"HW2_BUDGET={budget!r}: choose grading (the default) or test")
    return (TEST_BUDGETS, "@test") if budget == "test" else (BUDGETS, "")


class CalibrationError(RuntimeError):
    """The thresholds file is missing or was measured for another budget: the grader cannot run."""


def get(test_id):
    """{"budget": {...}, "threshold": x} of a training test, for the budget in use."""
    budgets, suffix = active_budgets()
    try:
        table = json.loads(CALIBRATION_FILE.read_text())
    except FileNotFoundError:
        raise CalibrationError(f"{CALIBRATION_FILE} is missing: run `make calibrate`") from None
    if test_id + suffix not in table:
        raise CalibrationError(f"{CALIBRATION_FILE} has no threshold for {test_id + suffix}: run `make calibrate`")
    entry = table[test_id + suffix]
    if entry["budget"] != budgets[test_id]["budget"]:
        raise CalibrationError(f"{CALIBRATION_FILE} was calibrated for another budget of {test_id}: run `make calibrate`")
    return entry


def timing():
    """{"selfcheck_seconds": s, "tests": {test id: seconds}}: the reference's time for each test and
    the self-check's, measured by `make calibrate` on the machine it ran on ({} when not measured)."""
    try:
        return json.loads(CALIBRATION_FILE.read_text()).get("timing", {})
    except (OSError, ValueError):
        return {}


def calibrate_timing(log=print):
    """Grade the reference and record how long each test took, and the self-check's time."""
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
    table["timing"] = {"selfcheck_seconds": round(check.seconds, 3),
                       "tests": {r.id: round(r.seconds, 2) for r in results.results if r.status == PASSED}}
    CALIBRATION_FILE.write_text(json.dumps(table, indent=2) + "\n")
    log(f"timing: self-check {check.seconds:.2f} s; slowest test "
        f"{max(table['timing']['tests'].items(), key=lambda item: item[1])}")
    return table["timing"]


def measure(test_id, seed):
    """The reference's result for `test_id` under its budget with `seed`, measured by the same probe
    and the same scoring as a student's."""
    from autograder.checks import q2, q3
    from autograder.submission import REFERENCE_TREE, LocalSubmission

    budget = dict(active_budgets()[0][test_id]["budget"], seed=seed)
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
    budgets, suffix = active_budgets()
    for test_id in [t for t in (test_ids or budgets) if t != "timing"]:
        start = time.time()
        results = {seed: measure(test_id, seed) for seed in SEEDS}
        seconds = (time.time() - start) / len(SEEDS)
        margin = budgets[test_id]["margin"]
        key = test_id + suffix
        table[key] = {
            "budget": budgets[test_id]["budget"],
            "threshold": round(min(results.values()) - margin, 4),
            "reference_by_seed": {str(s): round(v, 4) for s, v in results.items()},
            "reference_mean": round(statistics.mean(results.values()), 4),
            "margin": margin,
            "seconds_per_run": round(seconds, 1),
        }
        log(f"{key}: reference {table[key]['reference_by_seed']} -> threshold {table[key]['threshold']} "
            f"({seconds:.0f} s per run)")
        CALIBRATION_FILE.write_text(json.dumps(table, indent=2) + "\n")
    if (test_ids is None and not suffix) or (test_ids and "timing" in test_ids):
        calibrate_timing(log)
    return json.loads(CALIBRATION_FILE.read_text())
