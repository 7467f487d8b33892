"""The rubric (`rubric.toml`): questions, tests, points and visibility, read and validated once."""

import tomllib
from dataclasses import dataclass
from pathlib import Path

RUBRIC_FILE = Path(__file__).with_name("rubric.toml")
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


@dataclass(frozen=True)
class Rubric:
    questions: dict  # number -> Question, in the order of the file
    tests: list  # Test, in the order of the file

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
        unknown = set(entry) - {"id", "question", "name", "points", "visibility", "public", "manual"}
        if unknown:
            raise RubricError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        seen.add(entry["id"])
        tests.append(Test(entry["id"], entry["question"], entry["name"], float(entry["points"]), entry["visibility"],
                          entry.get("public", False), entry.get("manual", False)))
    return Rubric(questions, tests)
