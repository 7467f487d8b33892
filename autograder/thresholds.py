"""What `make calibrate` measured, as the grader reads it (calibration.json): each training test's
threshold for the budget in use, and the reference's time for every test and for the self-check.
The budgets and margins themselves are the rubric's (rubric.toml); the measuring is
autograder/calibration.py. Instructors only: never released to students.
"""

import json
import os
from pathlib import Path

from autograder import rubric as rubric_module

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")


class CalibrationError(RuntimeError):
    """The thresholds file is missing or was measured for another budget: the grader cannot run."""


def budget_in_use():
    """(name, key suffix in calibration.json): HW2_BUDGET's training budget, "grading" (the default,
    the rubric's [tests.training]) or "test" (the repository's own tests, [tests.training_reduced])."""
    name = os.environ.get("HW2_BUDGET", "grading")
    if name not in ("grading", "test"):
        raise CalibrationError(f"HW2_BUDGET={name!r}: choose grading (the default) or test")
    return name, "@test" if name == "test" else ""


def training(test):
    """(budget, margin) of a training test (a rubric.Test) for the budget in use."""
    table = test.training_reduced if budget_in_use()[0] == "test" else test.training
    return {key: value for key, value in table.items() if key != "margin"}, table["margin"]


def get(test_id, rubric=None):
    """{"budget": {...}, "threshold": x, ...} of a training test, measured for the rubric's budget in use;
    CalibrationError saying to run `make calibrate` when it is missing or was measured for another."""
    test = {t.id: t for t in (rubric or rubric_module.load()).tests}[test_id]
    budget, margin = training(test)
    key = test_id + budget_in_use()[1]
    try:
        table = json.loads(CALIBRATION_FILE.read_text())
    except FileNotFoundError:
        raise CalibrationError(f"{CALIBRATION_FILE} is missing: run `make calibrate`") from None
    if key not in table:
        raise CalibrationError(f"{CALIBRATION_FILE} has no threshold for {key}: run `make calibrate`")
    if table[key]["budget"] != budget or table[key].get("margin") != margin:
        raise CalibrationError(f"{CALIBRATION_FILE} was measured for another budget or margin of {test_id} than "
                               f"rubric.toml's: run `make calibrate`")
    return table[key]


def timing():
    """{"clock": "cpu", "selfcheck_seconds": s, "tests": {test id: seconds}}: the reference's CPU time for
    each test (of the child's processes) and the self-check's, measured by `make calibrate` on the machine
    it ran on ({} when not measured)."""
    try:
        return json.loads(CALIBRATION_FILE.read_text()).get("timing", {})
    except (OSError, ValueError):
        return {}
