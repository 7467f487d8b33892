"""Results of a grading as small typed objects, and the one aggregator that writes every format:
`results.json` (Gradescope's autograder format), `feedback.md` for the student, the summary table."""

import json
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from autograder.child.compare import FAILED, NOT_RUN, PASSED  # noqa: F401  (the statuses, defined once)
# the students' copies of the feedback, by what they may see when (the tests' visibility in the rubric)
STUDENT_COPIES = {"feedback-before-due-date.md": ("visible",),
                  "feedback-after-due-date.md": ("visible", "after_due_date")}
MANUAL = "graded by hand"  # an answer the autograder does not score (max_score 0 here; points in the rubric)


@dataclass
class TestResult:
    id: str
    question: str
    name: str
    max_score: float
    visibility: str
    status: str  # passed, failed or not run (data missing: not the student's fault)
    score: float = 0.0
    output: str = ""
    seconds: float = 0.0
    reason: str = ""  # why it failed or was not run, typed (child/compare.REASONS, checks.NotRun's reasons)
    cpu_seconds: float = 0.0  # CPU time of the student's processes in this test (what its time limit judges)


@dataclass
class GradingResults:
    tree: str
    questions: dict  # number -> title
    results: list = field(default_factory=list)
    seconds: float = 0.0
    sandbox: str = ""  # where the student's code ran (autograder/sandbox.py); "NONE: ..." when unsandboxed
    selection: tuple = ()  # the ids of the tests graded (all of the rubric's unless --only)
    interrupted: bool = False  # grading stopped before the end (Ctrl-C, SIGTERM): never reused by grade-all
    budget: str = "grading"  # the training budget: "test" (HW2_BUDGET=test) is for the repository's own tests
    cpu_accounting: str = ""  # how the student's CPU time was counted: autograder/cgroups.py's kind()

    @property
    def unsandboxed(self):
        return self.sandbox.startswith("NONE")

    @property
    def score(self):
        return sum(r.score for r in self.results)

    @property
    def max_score(self):
        return sum(r.max_score for r in self.results)

    @property
    def incomplete(self):
        return any(r.status == NOT_RUN for r in self.results)

    def by_question(self):
        table = {}
        for r in self.results:
            earned, possible = table.get(r.question, (0.0, 0.0))
            table[r.question] = (earned + r.score, possible + r.max_score)
        return table

    def headline(self):
        text = f"Score {self.score:g} / {self.max_score:g}"
        if self.incomplete:
            missing = sum(r.status == NOT_RUN for r in self.results)
            text += f" -- INCOMPLETE: {missing} test(s) not run (see below)"
        if self.unsandboxed:
            text += " -- UNSANDBOXED: the student's code ran with the grader's privileges"
        if self.budget != "grading":
            text += f" -- NOT A GRADE: reduced training budget (HW2_BUDGET={self.budget})"
        return text

    # ---- formats ------------------------------------------------------------------------
    def to_gradescope(self):
        return {
            "score": self.score,
            "execution_time": round(self.seconds, 1),
            "output": self.visible_headline(),  # shown to students at once: nothing of the later tests' results
            "visibility": "visible",
            "stdout_visibility": "hidden",
            "tests": [{
                "name": r.name,
                "number": r.question,
                "score": r.score,
                "max_score": r.max_score,
                **({} if r.status == MANUAL else {"status": PASSED if r.status == PASSED else FAILED}),
                "output": ("NOT RUN (not your fault): " if r.status == NOT_RUN else "") + r.output,
                "visibility": r.visibility,
                "extra_data": {"id": r.id, "not_run": r.status == NOT_RUN, "manual": r.status == MANUAL,
                               "reason": r.reason,
                               "seconds": round(r.seconds, 2), "cpu_seconds": round(r.cpu_seconds, 2)},
            } for r in self.results],
            "extra_data": {"tree": self.tree, "incomplete": self.incomplete, "max_score": self.max_score,
                           "sandbox": self.sandbox, "unsandboxed": self.unsandboxed,
                           "questions": list(dict.fromkeys(r.question for r in self.results)),
                           "selected_tests": list(self.selection), "interrupted": self.interrupted,
                           "points_by_question": {q: earned for q, (earned, _) in self.by_question().items()},
                           "budget": self.budget, "cpu_accounting": self.cpu_accounting},
        }

    def visible_part(self, visibilities):
        """The results of the tests whose visibility is one of `visibilities` (what a student may see)."""
        return replace(self, results=[r for r in self.results if r.visibility in visibilities])

    def visible_headline(self):
        """The headline a student may read before the due date: the visible tests' points only."""
        shown = self.visible_part(("visible",))
        later = [r for r in self.results if r.visibility != "visible" and r.status != MANUAL]
        text = f"Visible tests: {shown.score:g} / {shown.max_score:g} points"
        if later:
            text += (f"; {len(later)} more test(s) ({sum(r.max_score for r in later):g} points) are shown after the "
                     f"due date")
        if self.incomplete:
            missing = sum(r.status == NOT_RUN for r in self.results)
            text += f" -- INCOMPLETE: {missing} test(s) could not be run (not your fault); they will be graded again"
        return text

    def feedback_markdown(self, student_copy=None):
        """The feedback: every test (the instructor's copy), or with `student_copy` the tests of those
        visibilities only, under a headline of their points."""
        if student_copy is None:
            return self._markdown("# Homework 2 feedback", self.headline())
        part = self.visible_part(student_copy)
        if student_copy == ("visible",):
            return part._markdown("# Homework 2 feedback (before the due date: the visible tests)",
                                  self.visible_headline())
        return part._markdown("# Homework 2 feedback (after the due date)", part.headline())

    def _markdown(self, title, headline):
        lines = [title, "", f"**{headline}**", ""]
        totals = self.by_question()
        for number, title in self.questions.items():
            if number not in totals:
                continue
            earned, possible = totals[number]
            lines += [f"## Question {number}: {title} ({earned:g} / {possible:g} points)", ""]
            for r in (r for r in self.results if r.question == number):
                if r.status == MANUAL:
                    lines.append(f"- **{r.name}**: {r.output}")
                    continue
                mark = {PASSED: "passed", FAILED: "lost", NOT_RUN: "not run"}[r.status]
                lines.append(f"- **{r.name}**: {r.score:g} / {r.max_score:g} ({mark})")
                if r.status != PASSED and r.output:
                    lines += ["", *[f"  > {line}" if line else "  >" for line in r.output.splitlines()], ""]
            lines.append("")
        return "\n".join(lines)

    def summary_table(self):
        rows = [f"{'question':10s} {'points':>15s}"]
        for number, (earned, possible) in self.by_question().items():
            rows.append(f"{number:10s} {earned:>7g} / {possible:<5g}")
        rows.append(f"{'total':10s} {self.score:>7g} / {self.max_score:<5g}")
        rows.append(self.headline())
        rows.append(f"student code ran in: {self.sandbox or 'unknown'}")
        return "\n".join(rows)

    def write(self, out_dir):
        """Write both files, each atomically (a reader never sees half a file)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        # ensure_ascii: whatever the student's code printed (lone surrogates included) is written as escapes
        _write_atomically(out / "results.json", json.dumps(self.to_gradescope(), indent=2) + "\n")
        _write_atomically(out / "feedback.md", self.feedback_markdown())  # the instructor's: everything
        for name, visibilities in STUDENT_COPIES.items():
            _write_atomically(out / name, self.feedback_markdown(student_copy=visibilities))
        return out / "results.json", out / "feedback.md"


def _write_atomically(path, text):
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False,
                                     encoding="utf-8", errors="replace") as tmp:
        tmp.write(text)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, path)
