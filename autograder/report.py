"""The class report of a grade-all output: which gradings need a second look (first), how the class
and each student scored, which tests to check before blaming the students, and what the failures say.

    make report GRADES=grades/class
    python -m autograder report <grades> [--out DIR]

Writes `<grades>/report.html`, one self-contained page (figures embedded as PNG; its style, and the few
lines of script that sort the students' table, inline; nothing loaded: it can be mailed or attached as
it is), and `<grades>/report-tests.csv`, one row per student and test for a spreadsheet. Points and
totals are read from gradebook.csv (the source of truth), the tests from each student's results.json;
a student whose results.json is missing or corrupt is listed among the problems and the report goes
on. Every row whose status is not `graded` (whatever status batch.py wrote) is listed first, with why.
Failures that one cause explains (a function not implemented, a file that cannot run, code that timed
out and the later tests of its file not tried) are one line each, however many tests they cost; the
rest are grouped per test by message. Everything that may come from a student (their code's output
ends up in failure messages) is HTML-escaped.
"""

import base64
import csv
import html
import io
import json
import re
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from autograder import rubric
from autograder.batch import INSECURE_MARK, STATUS_OF_REASON, STATUSES, spreadsheet_text
from autograder.child.compare import IMPORT_ERROR, MISSING_FILE, NOT_IMPLEMENTED, REFUSED_FILE, SYNTAX_ERROR, TIMED_OUT
from autograder.grade import FILE_REASONS
from autograder.results import FAILED, MANUAL, NOT_RUN, PASSED
from autograder.submission import GRADED_FILES

REPORT_FILE, TESTS_FILE = "report.html", "report-tests.csv"
TEST_COLUMNS = ("student", "test_id", "question", "name", "status", "score", "max_score", "reason", "seconds")
ALERT_PASS_RATE = 0.2  # below this, a test is listed as one to check before the students
GRADED = "graded"  # the one status that needs no look: every other one of batch.STATUSES (or unknown) is listed
REASON_OF_STATUS = {status: reason for reason, status in STATUS_OF_REASON.items()}  # the typed reason behind a status
GROUPS_PER_TEST = 5  # failure messages shown per test
EXAMPLE_CHARS = 400  # of an example failure message
ALERT_COLOUR, BAR_COLOUR = "#c0392b", "#4c72b0"
POINT_BINS = 30  # a histogram of whole points up to this many has a bin per point (a question's: 2 to 27)
FONT_SIZE = 11  # points: tick labels, bar labels and titles of the figures (the page shows them at 100 dpi)
# the function named by a "not implemented" message: the skeleton's stubs raise
# NotImplementedError("<function> is not implemented yet"); the notebook's say "<function> (in q1.ipynb) ...".
# A student's code can raise that message too: a "name" longer than any function's (the skeleton's: at most
# 28 characters) is no cause line, its message is shown cut among the test's messages
NOT_IMPLEMENTED_NAME = re.compile(r"^(?:not implemented yet: )?([\w.]{1,80})(?: \(in [^)]{0,80}\))?"
                                  r" is not implemented yet")
# a training test whose student code does not run (checks/q2.py, q3.py) names its stubs after this start, e.g.
# "this test judges that your decoder learns, and its step does not run yet: Decoder.forward is not implemented
# yet", or two of them ("...your CNN does no work yet (CNN.__init__ is not implemented yet); your train_batch ...")
JUDGES = "this test judges that "
STUB_NAMED = re.compile(r"(?:: |\()([\w.]{1,80})(?: \(in [^)]{0,80}\))? is not implemented yet")
# what students whose file cannot run did, for "<N> students <this>", by the tests' typed reason (grade.FILE_REASONS)
_FILE_CAUSES = {MISSING_FILE: "did not submit {file}", REFUSED_FILE: "submitted a {file} the grader refuses",
                SYNTAX_ERROR: "have a syntax error in {file}", IMPORT_ERROR: "have a {file} that fails at import"}
# the later tests of a file whose code timed out (grade._run_file):
# "not tried: your code in <file> timed out in test <id>, and this test runs the same code (...)"
NOT_TRIED = re.compile(r"^not tried: your code in (\S+) timed out in test (\S+),")
# numbers in failure messages (not inside identifiers such as conv2d or float64), and memory addresses
NUMBER = re.compile(r"0x[0-9a-fA-F]+|(?<![A-Za-z_0-9.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


class NotAGradeAllOutput(FileNotFoundError):
    """The folder is not the output of `grade-all` (no readable gradebook.csv)."""


@dataclass
class Outcome:
    """One test of one student, as results.json has it."""
    student: str
    id: str
    question: str
    name: str
    status: str  # passed, failed, not run, or graded by hand
    score: float
    max_score: float
    reason: str
    seconds: float
    message: str


@dataclass
class Student:
    name: str
    points: dict  # question -> points, from gradebook.csv
    total: float  # from gradebook.csv; None when blank (a grading that is not final)
    status: str  # from gradebook.csv (status.txt when the gradebook has none)
    sandbox: str
    outcomes: list = field(default_factory=list)  # empty when results.json is missing or unreadable
    seconds: float | None = None  # wall time of the grading
    budget: str = "grading"
    problems: list = field(default_factory=list)  # why this grading needs a second look


@dataclass
class ClassGrades:
    folder: Path
    questions: list  # as the gradebook's columns
    students: list  # Student, one per gradebook row
    max_points: dict  # question -> autograded points possible
    titles: dict  # question -> title, from the rubric when it still has the question
    files: dict = field(default_factory=dict)  # question -> the student's file it grades, from the rubric
    strays: list = field(default_factory=list)  # (folder name, why) of gradings absent from gradebook.csv

    @property
    def max_total(self):
        return sum(self.max_points.values())

    def outcomes(self):
        return [outcome for student in self.students for outcome in student.outcomes]


# ---- reading a grade-all output ----------------------------------------------------------------

def load_class(grades_dir):
    folder = Path(grades_dir)
    questions, rows = _read_gradebook(folder)
    students = [_student(folder, row, questions) for row in rows]
    listed = {student.name for student in students}
    strays = [(path.name, "in the output folder but not in gradebook.csv (graded by another run?)")
              for path in sorted(folder.iterdir())
              if path.is_dir() and path.name not in listed and _has_grading_files(path)]
    titles, files = _titles(questions)
    return ClassGrades(folder, questions, students, _max_points(students, questions), titles, files, strays)


def _read_gradebook(folder):
    path = folder / "gradebook.csv"
    if not path.is_file():
        raise NotAGradeAllOutput(f"{folder} is not a grade-all output: it has no gradebook.csv "
                                 f"(make one with `python -m autograder grade-all <submissions> --out {folder}`)")
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        if not {"student", "total", "status"} <= set(header):
            raise NotAGradeAllOutput(f"{path} is not a grade-all gradebook: its columns are {', '.join(header)}")
        rows = list(reader)
    questions = header[1:header.index("total")]
    return questions, rows


def _has_grading_files(path):
    return any((path / name).exists() for name in ("results.json", "status.txt", "error.txt"))


def _number(text):
    """A gradebook cell as a number; None when blank (a grading that is not final has no total)."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _student(folder, row, questions):
    name = row["student"]
    status = row.get("status") or _read_text(folder / name / "status.txt") or "unknown"
    student = Student(name, {q: _number(row.get(q)) for q in questions}, _number(row.get("total")), status,
                      row.get("sandbox") or "")
    try:
        student.outcomes, student.seconds, student.budget, notes = _read_results(folder / name / "results.json")
        student.problems += notes
    except FileNotFoundError:
        if status not in ("grader error", "unreadable zip") and not (folder / name / "error.txt").is_file():
            student.problems.append("results unreadable: results.json is missing")
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        student.problems.append(f"results unreadable: {type(error).__name__}: {error}")
    student.problems[:0] = _status_problems(student, folder / name)
    return student


def _read_text(path, limit=2000):
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()[:limit]
    except OSError:
        return ""


def _read_results(path):
    """(outcomes, seconds of grading, training budget, notes for the problems table) of a results.json;
    raises on a file that is missing or not what the grader writes."""
    results = json.loads(path.read_text(encoding="utf-8"))
    extra = results.get("extra_data", {})
    outcomes = [_outcome(path.parent.name, test) for test in results["tests"]]
    seconds = float(results.get("execution_time") or sum(o.seconds for o in outcomes))
    notes = []
    if extra.get("interrupted"):
        notes.append("grading was interrupted (Ctrl-C or SIGTERM): grade this student again")
    if extra.get("unsandboxed"):
        notes.append("graded UNSANDBOXED: the student's code ran with the grader's privileges")
    return outcomes, seconds, str(extra.get("budget", "grading")), notes


def _outcome(student, test):
    extra = test.get("extra_data", {})
    if extra.get("manual"):
        status = MANUAL
    elif extra.get("not_run"):
        status = NOT_RUN
    else:
        status = PASSED if test["status"] == PASSED else FAILED
    return Outcome(student, str(extra["id"]), str(test.get("number") or extra.get("question", "")),
                   str(test.get("name", "")), status, float(test.get("score") or 0), float(test.get("max_score") or 0),
                   str(extra.get("reason") or ""), float(extra.get("seconds") or 0), str(test.get("output") or ""))


def _status_problems(student, folder):
    """Why a grading whose status is not `graded` (any of batch.STATUSES, or one this report does not
    know) is so, in one line: error.txt when the grader wrote one, else the tests behind the status and
    the first line of the first one's message."""
    if student.status == GRADED:
        return []
    error = _read_text(folder / "error.txt", limit=EXAMPLE_CHARS)
    if error:
        return [f"{student.status}: {error}"]
    if student.status == "incomplete":
        not_run = [f"{o.id} ({o.reason or 'not run'})" for o in student.outcomes if o.status == NOT_RUN]
        return [f"incomplete: not run: {', '.join(not_run) or '?'}"]
    reason = REASON_OF_STATUS.get(student.status, student.status)
    typed = [o for o in student.outcomes if o.reason == reason and o.status == FAILED]
    if not typed and student.status == STATUS_OF_REASON[MISSING_FILE]:
        return [f"{student.status}: one of {', '.join(GRADED_FILES)} is not in the submission (no test graded "
                f"here reads it)"]
    if not typed:
        return [f"{student.status}: no test says why (see feedback.md"
                f"{' and error.txt' if student.status not in STATUSES else ''})"]
    first = typed[0].message.strip().splitlines()[0] if typed[0].message.strip() else reason
    first = first[len(student.status) + 2:] if first.startswith(f"{student.status}: ") else first
    return [f"{student.status}: {first} (test{'s' * (len(typed) > 1)} {', '.join(o.id for o in typed)})"]


def _max_points(students, questions):
    """The autograded points of each question, as the gradings counted them (the rubric's when no
    results.json is readable)."""
    seen = Counter()
    for student in students:
        if student.outcomes:
            possible = {q: 0.0 for q in questions}
            for o in student.outcomes:
                if o.status != MANUAL and o.question in possible:
                    possible[o.question] += o.max_score
            seen[tuple(possible.items())] += 1
    if seen:
        return dict(seen.most_common(1)[0][0])
    try:
        graded = rubric.load()
        return {q: graded.max_points(q) for q in questions}
    except rubric.RubricError:
        return {q: 0.0 for q in questions}


def _titles(questions):
    """({question: title}, {question: file}) of the rubric's questions among `questions`."""
    try:
        known = rubric.load().questions
    except rubric.RubricError:
        return {}, {}
    return {q: known[q].title for q in questions if q in known}, {q: known[q].file for q in questions if q in known}


# ---- what the report computes ------------------------------------------------------------------

@dataclass
class PassRate:
    test_id: str
    name: str
    passed: int
    ran: int  # passed or failed; manual and not-run tests are not counted
    explained: int = 0  # of the failures that ran, those a Cause explains (a stub, a file that cannot run)

    @property
    def rate(self):
        return self.passed / self.ran if self.ran else 0.0

    @property
    def attempted(self):
        """The students whose own code ran in the test: a stub or a file that cannot run says nothing of it."""
        return self.ran - self.explained

    @property
    def alarming(self):
        """Fewer than ALERT_PASS_RATE of the students whose code ran in it pass: check the test first."""
        return self.attempted > 0 and self.passed / self.attempted < ALERT_PASS_RATE


@dataclass
class MessageGroup:
    shape: str  # the message with its numbers replaced by N
    example: str  # one real message of the group
    reason: str
    students: list


def pass_rates(grades):
    """One PassRate per autograded test, in the rubric's order."""
    rates = {}
    unexplained = {id(o) for o in failure_causes(grades)[1]}
    for o in grades.outcomes():
        if o.status == MANUAL:
            continue
        rate = rates.setdefault(o.id, PassRate(o.id, o.name, 0, 0))
        if o.status in (PASSED, FAILED):
            rate.ran += 1
            rate.passed += o.status == PASSED
            rate.explained += o.status == FAILED and id(o) not in unexplained
    return list(rates.values())


def message_shape(message):
    """The message with its numbers (ints, floats, addresses) replaced by N and its spaces collapsed:
    messages that differ only by numbers have the same shape."""
    return " ".join(NUMBER.sub("N", message).split())


@dataclass
class Cause:
    """What explains a student's failures whatever the test: a function not implemented, a file that
    cannot run, code that timed out (and the later tests of its file, not tried)."""
    text: str  # what it is, for "<N> students <text>"
    example: str  # one real message
    reason: str
    tests: list = field(default_factory=list)  # test ids, in the order first met (the rubric's)
    students: list = field(default_factory=list)


def _cause_of(o, files, timed_out_in):
    """[(key, text)] of the causes that explain the failed test `o`, or None when it is the test's own: a
    function not implemented (whatever the test; a training test may name two), a file that cannot run
    (FILE_REASONS: missing, refused, syntax or import error), or a file whose code timed out in a test
    (`timed_out_in`: the (student, test id) that later tests name when they were not tried)."""
    if o.reason == NOT_IMPLEMENTED:
        message = o.message.strip()
        name = NOT_IMPLEMENTED_NAME.match(message)
        names = [name.group(1)] if name else \
            [m.group(1) for m in STUB_NAMED.finditer(message[:600])] if message.startswith(JUDGES) else []
        if names:
            return [((NOT_IMPLEMENTED, name), f"have not implemented {name}") for name in dict.fromkeys(names)]
    file = files.get(o.question, f"question {o.question}'s file")
    if o.reason in FILE_REASONS:
        return [((o.reason, file), _FILE_CAUSES.get(o.reason, "have {file} failing: " + o.reason).format(file=file))]
    if o.reason == TIMED_OUT:
        not_tried = NOT_TRIED.match(o.message)
        first = not_tried.group(2) if not_tried else o.id if (o.student, o.id) in timed_out_in else None
        if first:
            return [((TIMED_OUT, file, first), f"timed out in {first} (code in {file}), so the later tests of that "
                                               f"file were not tried")]
    return None


def failure_causes(grades):
    """([Cause, ...] most students first, [the failed outcomes no Cause explains]): each cause counted
    once however many tests it cost, distinct causes kept apart (CNN.__init__ and train_batch not
    implemented are two lines)."""
    failed = [o for o in grades.outcomes() if o.status in (FAILED, NOT_RUN)]
    timed_out_in = set()
    for o in failed:
        not_tried = NOT_TRIED.match(o.message) if o.reason == TIMED_OUT else None
        if not_tried:
            timed_out_in.add((o.student, not_tried.group(2)))
    causes, rest, position = {}, [], {}
    for o in failed:
        position.setdefault(o.id, len(position))
        found = _cause_of(o, grades.files, timed_out_in)
        if found is None:
            rest.append(o)
            continue
        for key, text in found:
            cause = causes.setdefault(key, Cause(text, o.message, o.reason))
            if o.id not in cause.tests:
                cause.tests.append(o.id)
            if o.student not in cause.students:
                cause.students.append(o.student)
    return sorted(causes.values(), key=lambda c: (-len(c.students), position[c.tests[0]])), rest


def failure_groups(grades, outcomes=None):
    """{test id: [MessageGroup, ...]} of the failed and not-run tests (of `outcomes`, default every
    student's), most students first."""
    groups = {}
    for o in grades.outcomes() if outcomes is None else outcomes:
        if o.status not in (FAILED, NOT_RUN):
            continue
        by_shape = groups.setdefault(o.id, {})
        shape = message_shape(o.message) or "(no message)"
        group = by_shape.setdefault(shape, MessageGroup(shape, o.message, o.reason, []))
        group.students.append(o.student)
    return {test_id: sorted(by_shape.values(), key=lambda g: -len(g.students)) for test_id, by_shape in groups.items()}


def _problem_rank(status):
    """Statuses this report does not know first, then the grader's (grader error) down to the student's
    (missing files) as batch.STATUSES lists them in reverse, `graded` (with a note) last."""
    return len(STATUSES) - STATUSES.index(status) if status in STATUSES else 0


def problems(grades):
    """(student, status, why) of every grading that needs a second look: every status but `graded`
    first, each with why; then graded ones with a note (interrupted, unsandboxed, results unreadable);
    then folders gradebook.csv does not list. Each part of a why is cut on its own (EXAMPLE_CHARS), so
    that a student's long message (the status's why comes first) cannot push the grader's notes out."""
    listed = sorted(((s.name, s.status, "; ".join(_cut(p, EXAMPLE_CHARS) for p in s.problems) or s.status)
                     for s in grades.students
                     if s.problems or s.status != GRADED), key=lambda row: (_problem_rank(row[1]), row[0]))
    return listed + [(name, "not in gradebook", why) for name, why in grades.strays]


# ---- figures -----------------------------------------------------------------------------------

def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _count_axis(axis):
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _embedded(figure, figure_id, alt):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img id="{figure_id}" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _whole(values):
    return all(float(v).is_integer() for v in values)


def _points_axis(axes, values, possible):
    """Histogram `values` (points out of `possible`) on `axes`: whole points get one bin per point,
    centred on it, and ticks on whole numbers only (no -0.5 or 2.5 on a 2-point question); beyond
    POINT_BINS points, or for fractional points, 20 bins."""
    whole = _whole([*values, possible])
    per_point = whole and 0 < possible <= POINT_BINS
    if per_point:
        bins = [x - 0.5 for x in range(int(possible) + 2)]
    else:
        bins = [possible * i / 20 for i in range(21)] if possible > 0 else 20
    axes.hist(values, bins=bins, color=BAR_COLOUR, edgecolor="white")
    if possible > 0:
        axes.set_xlim(-0.5 if per_point else 0, possible + (0.5 if per_point else 0))
    if whole:
        _count_axis(axes.xaxis)
    _count_axis(axes.yaxis)
    axes.tick_params(labelsize=FONT_SIZE)


def totals_plot(grades):
    totals = [s.total for s in grades.students if s.total is not None]
    figure = _figure(7, 3)
    axes = figure.subplots()
    _points_axis(axes, totals, grades.max_total)
    if totals:
        axes.axvline(statistics.mean(totals), color="black", linestyle="--", label="mean")
        axes.axvline(statistics.median(totals), color="grey", linestyle=":", label="median")
        axes.legend(fontsize=FONT_SIZE)
    axes.set_xlabel(f"total (out of {grades.max_total:g})", fontsize=FONT_SIZE)
    axes.set_ylabel("students", fontsize=FONT_SIZE)
    axes.set_title("Total scores", fontsize=FONT_SIZE + 1)
    return figure


def questions_plot(grades):
    columns = min(3, max(1, len(grades.questions)))
    rows = -(-max(1, len(grades.questions)) // columns)
    figure = _figure(3.4 * columns, 2.6 * rows)
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    for axes, question in zip(grid, grades.questions):
        possible = grades.max_points.get(question, 0.0)
        _points_axis(axes, [s.points[question] for s in grades.students if s.points[question] is not None], possible)
        axes.set_title(f"Question {question} (out of {possible:g})", fontsize=FONT_SIZE)
        axes.set_xlabel("points", fontsize=FONT_SIZE)
    for axes in grid[len(grades.questions):]:
        axes.set_visible(False)
    return figure


def pass_rate_plot(rates):
    figure = _figure(8, 1.2 + 0.36 * max(1, len(rates)))
    axes = figure.subplots()
    positions = range(len(rates))[::-1]  # the rubric's first test at the top
    bars = axes.barh(list(positions), [100 * r.rate for r in rates],
                     color=[ALERT_COLOUR if r.alarming else BAR_COLOUR for r in rates])
    axes.bar_label(bars, [f"{r.rate:.0%}" for r in rates], fontsize=FONT_SIZE, padding=3)
    labels = {f"{r.test_id} ({r.passed}/{r.ran})": r for r in rates}
    axes.set_yticks(list(positions), list(labels), fontsize=FONT_SIZE)
    for label in axes.get_yticklabels():
        label.set_color(ALERT_COLOUR if labels[label.get_text()].alarming else "black")
    axes.axvline(100 * ALERT_PASS_RATE, color=ALERT_COLOUR, linestyle=":", linewidth=1)
    axes.set_xlim(0, 112)  # room for the label of a bar at 100 %
    axes.set_xticks(range(0, 101, 20))
    axes.tick_params(axis="x", labelsize=FONT_SIZE)
    axes.set_xlabel("% of the students whose test ran who passed it", fontsize=FONT_SIZE)
    axes.set_title(f"Pass rate per test (red: below {ALERT_PASS_RATE:.0%} of those whose own code ran in it)",
                   fontsize=FONT_SIZE + 1)
    return figure


def grading_time_plot(grades):
    seconds = [s.seconds for s in grades.students if s.seconds is not None]
    figure = _figure(7, 2.6)
    axes = figure.subplots()
    axes.hist(seconds, bins=20, color=BAR_COLOUR, edgecolor="white")
    axes.set_xlabel("seconds of grading per student", fontsize=FONT_SIZE)
    axes.set_ylabel("students", fontsize=FONT_SIZE)
    axes.set_title("Grading time", fontsize=FONT_SIZE + 1)
    axes.tick_params(labelsize=FONT_SIZE)
    _count_axis(axes.yaxis)
    return figure


def figures(grades, rates):
    """The page's figures: (figure id, alt text, matplotlib Figure)."""
    return [("fig-totals", "histogram of the total scores", totals_plot(grades)),
            ("fig-questions", "histograms of each question's points", questions_plot(grades)),
            ("fig-pass-rates", "pass rate of each test, horizontal bars", pass_rate_plot(rates)),
            ("fig-grading-time", "histogram of the grading time per student", grading_time_plot(grades))]


# ---- the page ----------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 70em; margin: 1.5em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.7em; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
table.sortable th { cursor: pointer; background: #eef; }
table.sortable th::after { content: " \\2195"; color: #999; }
.banner { background: #fdecea; border-left: 4px solid #c0392b; padding: 0.5em 1em; margin: 0.5em 0; }
.alert { color: #c0392b; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; margin: 0; font-size: 0.85em; max-width: 50em; }
img { max-width: 100%; display: block; margin: 0.5em 0 1.5em; }
.muted { color: #777; }
"""
# sorts a table.sortable by the clicked column: numbers by the cells' data-v, text by their text; again: reversed
SCRIPT = """
document.querySelectorAll("table.sortable th").forEach((th, column) => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0], down = th.dataset.order !== "down";
  th.dataset.order = down ? "down" : "up";
  const key = row => { const cell = row.cells[column];
    return cell.dataset.v !== undefined ? Number(cell.dataset.v) : cell.textContent.toLowerCase(); };
  [...body.rows].sort((a, b) => { const x = key(a), y = key(b);
    return (x < y ? -1 : x > y ? 1 : 0) * (down === (typeof x === "number") ? -1 : 1); })
    .forEach(row => body.append(row));
}));
"""


def _fmt(value):
    return f"{round(value, 1):g}"


def _cut(text, limit):
    text = str(text)
    return text[:limit] + " [...]" if len(text) > limit else text


def _escape(text, limit=None):
    return html.escape(_cut(text, limit) if limit is not None else str(text), quote=True)


def _table(header, rows):
    """rows of (cell html, ...); cells are already escaped. A cell given as (html, attributes) gets them."""
    def cell(value):
        content, attributes = value if isinstance(value, tuple) else (value, "")
        return f"<td{attributes}>{content}</td>"
    head = "".join(f"<th>{_escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _number_cell(value, cell_id):
    return _fmt(value), f' class="n" id="{_escape(cell_id)}"'


def banners(grades):
    notes = []
    budgets = sorted({s.budget for s in grades.students if s.outcomes and s.budget != "grading"})
    if budgets:
        notes.append(f"NOT GRADES: graded with a reduced training budget (HW2_BUDGET={_escape(', '.join(budgets))})")
    unsandboxed = [s.name for s in grades.students if s.sandbox == "UNSANDBOXED"]
    if unsandboxed:
        notes.append(f"{len(unsandboxed)} student(s) graded UNSANDBOXED (see the problems below)")
    insecure = [s.name for s in grades.students if INSECURE_MARK in s.sandbox]
    if insecure:
        notes.append(f"{len(insecure)} student(s) graded through a plain tcp:// Dask scheduler (--insecure-scheduler): "
                     f"anyone who could reach it could have run code on its workers or changed these results")
    return "".join(f'<p class="banner">{note}</p>' for note in notes)


def _status_id(status):
    return "status-" + _escape(status.replace(" ", "-"))


def summary_section(grades):
    totals = [s.total for s in grades.students if s.total is not None]
    graded = [s.total for s in grades.students if s.status == GRADED and s.total is not None]
    statuses = Counter(s.status for s in grades.students)
    ordered = [status for status in STATUSES if statuses[status]] + sorted(set(statuses) - set(STATUSES))
    rows = [("students in gradebook.csv", (str(len(grades.students)), ' class="n" id="students"'))]
    if len(totals) < len(grades.students):
        rows.append(("without a total (not final: see above)",
                     (str(len(grades.students) - len(totals)), ' class="n" id="without-total"')))
    rows += [(f"status: {_escape(status)}", (str(statuses[status]), f' class="n" id="{_status_id(status)}"'))
             for status in ordered]
    if totals:
        rows += [("mean total (students with a total)", _number_cell(statistics.mean(totals), "mean-total")),
                 ("median total (students with a total)", _number_cell(statistics.median(totals), "median-total")),
                 ("lowest / highest total", f"{min(totals):g} / {max(totals):g}"),
                 ("maximum possible", (f"{grades.max_total:g}", ' class="n" id="max-total"'))]
        if graded:
            rows.insert(-2, (f"mean total ({len(graded)} with status graded)",
                             _number_cell(statistics.mean(graded), "mean-total-graded")))
    return "<h2>Summary</h2>" + _table(("", ""), rows) + question_table(grades)


def question_table(grades):
    rows = []
    for q in grades.questions:
        points = [s.points[q] for s in grades.students if s.points[q] is not None]
        possible = grades.max_points.get(q, 0.0)
        rows.append((_escape(q), _escape(grades.titles.get(q, "")), (f"{possible:g}", ' class="n"'),
                     _number_cell(statistics.mean(points), f"mean-q-{q}") if points else "",
                     _number_cell(statistics.median(points), f"median-q-{q}") if points else "",
                     (str(sum(p >= possible > 0 for p in points)), ' class="n"'),
                     (str(sum(p == 0 for p in points)), ' class="n"')))
    return _table(("question", "title", "points", "mean", "median", "full marks", "zero"), rows)


def students_in_order(grades):
    """The students as the table lists them: highest total first, those without a total last, then by name."""
    return sorted(grades.students, key=lambda s: (s.total is None, -(s.total or 0), s.name))


def students_section(grades):
    """Every student: total, points per question, status; sortable by a click on a column's header."""
    def number(value):  # data-v: what the script sorts by; a blank (not final) sorts below every number
        return (_fmt(value) if value is not None else "", f' class="n" data-v="{value if value is not None else -1:g}"')

    head = "".join(f"<th>{_escape(h)}</th>" for h in ("student", "total", *(f"Q{q}" for q in grades.questions),
                                                          "status"))
    rows = "".join("<tr>" + "".join(f"<td{attributes}>{content}</td>" for content, attributes in (
        (_escape(s.name), ""), number(s.total), *(number(s.points[q]) for q in grades.questions),
        (_escape(s.status), "" if s.status == GRADED else ' class="alert"'))) + "</tr>"
        for s in students_in_order(grades))
    possible = " ".join(f"Q{_escape(q)} {grades.max_points.get(q, 0.0):g}" for q in grades.questions)
    return (f'<h2>Students ({len(grades.students)})</h2><p class="muted">Points from gradebook.csv (out of '
            f'{grades.max_total:g}: {possible}); highest total first, a blank total is not final. Click a column\'s '
            f'header to sort by it.</p><table class="sortable" id="students-table"><thead><tr>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def problems_section(grades):
    listed = problems(grades)
    if not listed:
        return ("<h2>Gradings to look at</h2><p>None: every student's status is graded, every grading finished "
                "and its results are readable.</p>")
    rows = [(_escape(name), (_escape(status), "" if status == GRADED else ' class="alert"'),
             f"<pre>{_escape(why)}</pre>") for name, status, why in listed]  # each part cut by problems()
    return (f'<h2>Gradings to look at ({len(listed)})</h2><p>Every status but <i>graded</i>, with why: a grading '
            f'without a total (grader error, incomplete, timed out at its bounds) is not final, grade it again; '
            f'the others are final, but the student\'s code did not run as a whole (a file missing, refused, that '
            f'does not parse or import, code that timed out or crashed): worth a look before publishing. Then '
            f'graded ones with a note, and folders the gradebook does not list.</p><div id="problems">'
            + _table(("student", "status", "why"), rows) + "</div>")


def alarming_section(rates):
    alarming = [r for r in rates if r.alarming]
    if not alarming:
        return ""
    items = "".join(f"<li><b>{_escape(r.test_id)}</b>: {r.passed} of {r.attempted} passed "
                    f"({r.passed / r.attempted:.0%})"
                    + (f" ({r.explained} more failed for a cause below: a stub, a file that cannot run)"
                       if r.explained else "") + f" &mdash; {_escape(r.name)}</li>" for r in alarming)
    return (f'<h2 class="alert">Tests almost everyone fails &mdash; check the test before the students</h2>'
            f'<p>Pass rate below {ALERT_PASS_RATE:.0%} among the students whose own code ran in the test:</p>'
            f'<ul id="alarming">{items}</ul>')


def figures_section(grades, rates):
    slowest = sorted((s for s in grades.students if s.seconds is not None), key=lambda s: -s.seconds)[:5]
    slow_text = ", ".join(f"{_escape(s.name)} ({s.seconds:.0f} s)" for s in slowest) or "none"
    images = {figure_id: _embedded(figure, figure_id, alt) for figure_id, alt, figure in figures(grades, rates)}
    return ("<h2>Scores</h2>" + images["fig-totals"] + images["fig-questions"]
            + "<h2>Tests</h2>" + images["fig-pass-rates"]
            + "<h2>Grading time</h2>" + images["fig-grading-time"] + f"<p>Slowest: {slow_text}</p>")


def _students_text(count, text):
    """"3 students have not implemented X", "1 student has not implemented X"."""
    if count == 1 and text.startswith("have "):
        text = "has " + text[len("have "):]
    return f"{count} student{'s' * (count != 1)} {text}"


def causes_section(causes):
    if not causes:
        return ""
    items = "".join(f'<li><b>{_escape(_students_text(len(c.students), c.text))}</b> (test{"s" * (len(c.tests) > 1)} '
                    f'{_escape(", ".join(c.tests))}) <span class="muted">{_escape(_names(c.students))}</span>'
                    + ("" if c.reason == NOT_IMPLEMENTED else f"<pre>{_escape(c.example, EXAMPLE_CHARS)}</pre>")
                    + "</li>" for c in causes)
    return ('<h2>Failures one cause explains</h2><p class="muted">Counted once however many tests they cost: '
            'a function still the skeleton\'s stub, a file that cannot run, code that timed out (its file\'s '
            'later tests were not tried). Not repeated in the messages per test below.</p>'
            f'<ul id="causes">{items}</ul>')


def messages_section(rates, groups):
    parts = ["<h2>Most common failure messages per test</h2>"
             '<p class="muted">Messages that differ only by their numbers are counted together '
             '(numbers shown as N); one real message of each group is shown.</p>']
    for rate in rates:
        test_groups = groups.get(rate.test_id)
        if not test_groups:
            continue
        rows = [((str(len(g.students)), ' class="n count"'), _escape(g.reason),
                 f"<pre>{_escape(g.example, EXAMPLE_CHARS)}</pre>", _escape(_names(g.students)))
                for g in test_groups[:GROUPS_PER_TEST]]
        hidden = test_groups[GROUPS_PER_TEST:]
        if hidden:
            rows.append(((str(sum(len(g.students) for g in hidden)), ' class="n"'), "",
                         f"{len(hidden)} other message(s)", ""))
        parts.append(f'<h3>{_escape(rate.test_id)} <span class="muted">{_escape(rate.name)}</span></h3>'
                     f'<div class="messages" id="messages-{_escape(rate.test_id)}">'
                     + _table(("students", "reason", "example message", "who"), rows) + "</div>")
    if len(parts) == 1:
        parts.append("<p>None beyond the causes above.</p>")
    return "".join(parts)


def _names(students, shown=6):
    more = f", +{len(students) - shown} more" if len(students) > shown else ""
    return ", ".join(students[:shown]) + more


def render(grades):
    rates = pass_rates(grades)
    causes, rest = failure_causes(grades)
    readable = sum(bool(s.outcomes) for s in grades.students)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>Class report: {_escape(grades.folder.name)}</title><style>{STYLE}</style></head><body>"
            f"<h1>Homework 2 class report</h1>"
            f'<p class="muted">{_escape(grades.folder)} &middot; {time.strftime("%Y-%m-%d %H:%M")} &middot; '
            f"points from gradebook.csv, tests from {readable} results.json; every test of every student "
            f"in {TESTS_FILE}</p>"
            + banners(grades) + problems_section(grades) + summary_section(grades) + alarming_section(rates)
            + students_section(grades) + figures_section(grades, rates) + causes_section(causes)
            + messages_section(rates, failure_groups(grades, rest)) + f"<script>{SCRIPT}</script></body></html>\n")


def write_tests_csv(grades, path):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(TEST_COLUMNS)
        for o in grades.outcomes():
            writer.writerow([*map(spreadsheet_text, (o.student, o.id, o.question, o.name, o.status)), f"{o.score:g}",
                             f"{o.max_score:g}", spreadsheet_text(o.reason), f"{o.seconds:g}"])
    return path


def write_report(grades_dir, out=None):
    """Write report.html and report-tests.csv into `out` (default: the grade-all output itself);
    return the page's path."""
    grades = load_class(grades_dir)
    folder = Path(out) if out is not None else Path(grades_dir)
    folder.mkdir(parents=True, exist_ok=True)
    write_tests_csv(grades, folder / TESTS_FILE)
    page = folder / REPORT_FILE
    page.write_text(render(grades), encoding="utf-8")
    return page
