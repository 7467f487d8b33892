"""The rubric (`rubric.toml`): everything an instructor decides about each test (points, visibility,
time allowance, a training test's budget and margin), read and validated once. What is measured
(thresholds, the reference's times) is in calibration.json (autograder/thresholds.py)."""

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

RUBRIC_FILE = Path(__file__).with_name("rubric.toml")
GRADING_DEFAULTS = {"time_allowance": 5.0, "floor_seconds": 20.0, "total_seconds": 480.0}
TEST_KEYS = {"id", "question", "name", "points", "visibility", "public", "manual", "time_allowance", "training",
             "training_reduced"}
VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")


class RubricError(ValueError):
    """The rubric file is not valid; the message names the entry."""


@dataclass(frozen=True)
class Question:
    number: str
    title: str
    file: str


@dataclass(frozen=True)
class Test:
    id: str
    question: str
    name: str
    points: float
    visibility: str
    public: bool = False  # shipped to students as a public test
    manual: bool = False  # graded by hand (a written proof): listed in the results, not scored by the autograder
    time_allowance: float = None  # multiple of the reference's time for this test's limit (None: [grading]'s)
    # a training test's budget and margin, for grading and for the repository's own tests (None otherwise)
    training: dict = field(default=None, hash=False)
    training_reduced: dict = field(default=None, hash=False)


@dataclass(frozen=True)
class Rubric:
    questions: dict  # number -> Question, in the order of the file
    tests: list  # Test, in the order of the file
    grading: dict = field(default_factory=lambda: dict(GRADING_DEFAULTS))  # time limits of the whole grading

    def select(self, only=None):
        """The tests of the questions or test ids listed in `only` (e.g. ["2.2", "3.1b-bleu"]), all when None."""
        if only is None:
            return list(self.tests)
        unknown = set(only) - set(self.questions) - {t.id for t in self.tests}
        if unknown:
            raise RubricError(f"unknown question(s) or test(s) {', '.join(sorted(unknown))}; the rubric has "
                              f"questions {', '.join(self.questions)} and the tests they list")
        return [test for test in self.tests if test.question in only or test.id in only]

    def public_tests(self):
        """The tests shipped to students as public tests, in the order of the file."""
        return [test for test in self.tests if test.public]

    def max_points(self, question=None):
        """The autograded points (of one question, or in all)."""
        return sum(t.points for t in self.tests if not t.manual and (question is None or t.question == question))

    def manual_points(self):
        return sum(t.points for t in self.tests if t.manual)

    def training_tests(self):
        return [test for test in self.tests if test.training is not None]

    def require_checks(self, checks):
        """RubricError naming the first rubric test without a check in `checks` (test id -> check), or
        the first check without a rubric test; tests graded by hand have none."""
        ids = {t.id for t in self.tests if not t.manual}
        for test_id in sorted(ids - set(checks)):
            raise RubricError(f"rubric test {test_id} has no check: add a function decorated @check({test_id!r}) in "
                              f"autograder/checks/, or remove the test from rubric.toml")
        for test_id in sorted(set(checks) - ids):
            raise RubricError(f"the check {test_id} (autograder/checks/) has no test in rubric.toml: add one "
                              f"(id, question, name, points, visibility), or remove the check")


def load(path=RUBRIC_FILE):
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise RubricError(f"{path}: {error}") from error
    questions = {}
    for number, entry in raw.get("questions", {}).items():
        try:
            questions[number] = Question(number, entry["title"], entry["file"])
        except KeyError as error:
            raise RubricError(f"{path}: question {number} has no {error}") from None
    tests, seen = [], set()
    for entry in raw.get("tests", []):
        where = f"{path}: test {entry.get('id', '?')}"
        missing = {"id", "question", "name", "points", "visibility"} - set(entry)
        if missing:
            raise RubricError(f"{where} lacks {', '.join(sorted(missing))}")
        if entry["id"] in seen:
            raise RubricError(f"{where} appears twice")
        if entry["question"] not in questions:
            raise RubricError(f"{where} belongs to unknown question {entry['question']}")
        if entry["visibility"] not in VISIBILITIES:
            raise RubricError(f"{where}: visibility {entry['visibility']!r} is not one of {', '.join(VISIBILITIES)}")
        if not isinstance(entry["points"], (int, float)) or entry["points"] < 0:
            raise RubricError(f"{where}: points must be a non-negative number")
        for flag in ("public", "manual"):
            if not isinstance(entry.get(flag, False), bool):
                raise RubricError(f"{where}: {flag} must be true or false")
        if entry.get("public") and entry.get("manual"):
            raise RubricError(f"{where}: a test graded by hand cannot be a public test")
        unknown = set(entry) - TEST_KEYS
        if unknown:
            raise RubricError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        if not entry.get("manual") and (entry["visibility"] == "visible") != entry.get("public", False):
            raise RubricError(f"{where}: {_visible_not_public(entry)}")
        allowance = entry.get("time_allowance")
        if allowance is not None and (not _is_number(allowance) or allowance <= 0):
            raise RubricError(f"{where}: time_allowance must be a positive number")
        training, reduced = _training(where, entry, "training"), _training(where, entry, "training_reduced")
        if (training is None) != (reduced is None):
            raise RubricError(f"{where}: a training test needs both [tests.training] and [tests.training_reduced]")
        seen.add(entry["id"])
        tests.append(Test(entry["id"], entry["question"], entry["name"], float(entry["points"]), entry["visibility"],
                          entry.get("public", False), entry.get("manual", False),
                          None if allowance is None else float(allowance), training, reduced))
    grading = dict(GRADING_DEFAULTS)
    for key, value in raw.get("grading", {}).items():
        if key not in GRADING_DEFAULTS or not _is_number(value) or value <= 0:
            raise RubricError(f"{path}: [grading] {key} = {value!r}: the keys are {', '.join(GRADING_DEFAULTS)}, "
                              f"each a positive number")
        grading[key] = float(value)
    return Rubric(questions, tests, grading)


def _visible_not_public(entry):
    """Why an autograded test that is visible but not public, or public but not visible, is refused."""
    if entry.get("public"):
        return (f"it is public but its visibility is {entry['visibility']!r}: students run a public test themselves "
                f"and GitHub Classroom shows its points on every push, so set visibility = \"visible\" (or remove "
                f"public = true and move its check out of autograder/checks/public_*.py)")
    return ("it is visible but not public: a student sees a visible test's result at once, so it must be one they "
            "can run themselves (public = true, its check in autograder/checks/public_*.py, needing neither the "
            "reference nor data); otherwise give it visibility = \"after_due_date\"")


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _training(where, entry, key):
    """A training table: numbers only, `margin` among them (non-negative); None when absent."""
    table = entry.get(key)
    if table is None:
        return None
    if not isinstance(table, dict) or not all(_is_number(v) for v in table.values()):
        raise RubricError(f"{where}: [tests.{key}] must hold numbers only")
    if not _is_number(table.get("margin")) or table["margin"] < 0:
        raise RubricError(f"{where}: [tests.{key}] needs margin, a non-negative number")
    return dict(table)
