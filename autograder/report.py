"""The class report of a grade-all output: how the class scored, which tests to check before blaming
the students, what the failures say, and which gradings need a second look.

    make report GRADES=grades/class
    python -m autograder report <grades> [--out DIR]

Writes `<grades>/report.html`, one self-contained page (figures embedded as PNG, no external CSS or
JavaScript: it can be mailed or attached as it is), and `<grades>/report-tests.csv`, one row per
student and test for a spreadsheet. Points and totals are read from gradebook.csv (the source of
truth), the tests from each student's results.json; a student whose results.json is missing or
corrupt is listed among the problems and the report goes on. Everything that may come from a student
(their code's output ends up in failure messages) is HTML-escaped.
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
from autograder.batch import INSECURE_MARK, STATUSES, spreadsheet_text
from autograder.results import FAILED, MANUAL, NOT_RUN, PASSED

REPORT_FILE, TESTS_FILE = "report.html", "report-tests.csv"
TEST_COLUMNS = ("student", "test_id", "question", "name", "status", "score", "max_score", "reason", "seconds")
ALERT_PASS_RATE = 0.2  # below this, a test is listed as one to check before the students
PROBLEM_STATUSES = ("incomplete", "timed out", "grader error", "unreadable zip")  # their grade is not final
GROUPS_PER_TEST = 5  # failure messages shown per test
EXAMPLE_CHARS = 400  # of an example failure message
ALERT_COLOUR, BAR_COLOUR = "#c0392b", "#4c72b0"
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
    return ClassGrades(folder, questions, students, _max_points(students, questions), _titles(questions), strays)


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
    """Why a grading whose status is one of PROBLEM_STATUSES is not final, in one line."""
    if student.status not in PROBLEM_STATUSES:
        return []
    error = _read_text(folder / "error.txt", limit=EXAMPLE_CHARS)
    if error:
        return [f"{student.status}: {error}"]
    if student.status == "incomplete":
        not_run = [f"{o.id} ({o.reason or 'not run'})" for o in student.outcomes if o.status == NOT_RUN]
        return [f"incomplete: not run: {', '.join(not_run) or '?'}"]
    typed = [o.id for o in student.outcomes if o.reason == student.status]
    return [f"{student.status}: {', '.join(typed) or 'see feedback.md'}"]


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
    try:
        known = rubric.load().questions
    except rubric.RubricError:
        return {}
    return {q: known[q].title for q in questions if q in known}


# ---- what the report computes ------------------------------------------------------------------

@dataclass
class PassRate:
    test_id: str
    name: str
    passed: int
    ran: int  # passed or failed; manual and not-run tests are not counted

    @property
    def rate(self):
        return self.passed / self.ran if self.ran else 0.0

    @property
    def alarming(self):
        return self.ran > 0 and self.rate < ALERT_PASS_RATE


@dataclass
class MessageGroup:
    shape: str  # the message with its numbers replaced by N
    example: str  # one real message of the group
    reason: str
    students: list


def pass_rates(grades):
    """One PassRate per autograded test, in the rubric's order."""
    rates = {}
    for o in grades.outcomes():
        if o.status == MANUAL:
            continue
        rate = rates.setdefault(o.id, PassRate(o.id, o.name, 0, 0))
        if o.status in (PASSED, FAILED):
            rate.ran += 1
            rate.passed += o.status == PASSED
    return list(rates.values())


def message_shape(message):
    """The message with its numbers (ints, floats, addresses) replaced by N and its spaces collapsed:
    messages that differ only by numbers have the same shape."""
    return " ".join(NUMBER.sub("N", message).split())


def failure_groups(grades):
    """{test id: [MessageGroup, ...]} of the failed and not-run tests, most students first."""
    groups = {}
    for o in grades.outcomes():
        if o.status not in (FAILED, NOT_RUN):
            continue
        by_shape = groups.setdefault(o.id, {})
        shape = message_shape(o.message) or "(no message)"
        group = by_shape.setdefault(shape, MessageGroup(shape, o.message, o.reason, []))
        group.students.append(o.student)
    return {test_id: sorted(by_shape.values(), key=lambda g: -len(g.students)) for test_id, by_shape in groups.items()}


def problems(grades):
    """(student, status, why) of every grading that needs a second look."""
    listed = [(s.name, s.status, "; ".join(s.problems)) for s in grades.students if s.problems]
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


def _point_bins(possible):
    """One bin per point for small maxima, else 20 bins."""
    if 0 < possible <= 25:
        return [x - 0.5 for x in range(int(possible) + 2)]
    return 20 if possible <= 0 else [possible * i / 20 for i in range(21)]


def totals_figure(grades):
    totals = [s.total for s in grades.students if s.total is not None]
    figure = _figure(7, 3)
    axes = figure.subplots()
    axes.hist(totals, bins=[grades.max_total * i / 20 for i in range(21)] if grades.max_total else 20,
              color=BAR_COLOUR, edgecolor="white")
    if totals:
        axes.axvline(statistics.mean(totals), color="black", linestyle="--", label="mean")
        axes.axvline(statistics.median(totals), color="grey", linestyle=":", label="median")
        axes.legend()
    axes.set(xlabel=f"total (out of {grades.max_total:g})", ylabel="students", title="Total scores")
    _count_axis(axes.yaxis)
    return _embedded(figure, "fig-totals", "histogram of the total scores")


def questions_figure(grades):
    columns = min(3, max(1, len(grades.questions)))
    rows = -(-max(1, len(grades.questions)) // columns)
    figure = _figure(3.2 * columns, 2.3 * rows)
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    for axes, question in zip(grid, grades.questions):
        possible = grades.max_points.get(question, 0.0)
        axes.hist([s.points[question] for s in grades.students if s.points[question] is not None],
                  bins=_point_bins(possible), color=BAR_COLOUR,
                  edgecolor="white")
        axes.set_title(f"Question {question} (out of {possible:g})", fontsize=10)
        axes.set_xlabel("points", fontsize=8)
        _count_axis(axes.yaxis)
    for axes in grid[len(grades.questions):]:
        axes.set_visible(False)
    return _embedded(figure, "fig-questions", "histograms of each question's points")


def pass_rate_figure(rates):
    figure = _figure(8, 1 + 0.28 * max(1, len(rates)))
    axes = figure.subplots()
    positions = range(len(rates))[::-1]  # the rubric's first test at the top
    bars = axes.barh(list(positions), [100 * r.rate for r in rates],
                     color=[ALERT_COLOUR if r.alarming else BAR_COLOUR for r in rates])
    axes.bar_label(bars, [f"{r.rate:.0%}" for r in rates], fontsize=7, padding=2)
    labels = {f"{r.test_id} ({r.passed}/{r.ran})": r for r in rates}
    axes.set_yticks(list(positions), list(labels), fontsize=8)
    for label in axes.get_yticklabels():
        label.set_color(ALERT_COLOUR if labels[label.get_text()].alarming else "black")
    axes.axvline(100 * ALERT_PASS_RATE, color=ALERT_COLOUR, linestyle=":", linewidth=1)
    axes.set(xlim=(0, 100), xlabel="% of the students whose test ran who passed it",
             title=f"Pass rate per test (red: below {ALERT_PASS_RATE:.0%})")
    return _embedded(figure, "fig-pass-rates", "pass rate of each test, horizontal bars")


def grading_time_figure(grades):
    seconds = [s.seconds for s in grades.students if s.seconds is not None]
    figure = _figure(7, 2.6)
    axes = figure.subplots()
    axes.hist(seconds, bins=20, color=BAR_COLOUR, edgecolor="white")
    axes.set(xlabel="seconds of grading per student", ylabel="students", title="Grading time")
    _count_axis(axes.yaxis)
    return _embedded(figure, "fig-grading-time", "histogram of the grading time per student")


# ---- the page ----------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 70em; margin: 1.5em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.7em; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.banner { background: #fdecea; border-left: 4px solid #c0392b; padding: 0.5em 1em; margin: 0.5em 0; }
.alert { color: #c0392b; }
pre { white-space: pre-wrap; margin: 0; font-size: 0.85em; max-width: 50em; }
img { max-width: 100%; display: block; margin: 0.5em 0 1.5em; }
.muted { color: #777; }
"""


def _fmt(value):
    return f"{round(value, 1):g}"


def _escape(text, limit=None):
    text = str(text)
    if limit is not None and len(text) > limit:
        text = text[:limit] + " [...]"
    return html.escape(text, quote=True)


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
    graded = [s.total for s in grades.students if s.status == "graded" and s.total is not None]
    statuses = Counter(s.status for s in grades.students)
    ordered = [status for status in STATUSES if statuses[status]] + sorted(set(statuses) - set(STATUSES))
    rows = [("students in gradebook.csv", (str(len(grades.students)), ' class="n" id="students"'))]
    if len(totals) < len(grades.students):
        rows.append(("without a total (not final: see below)",
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


def problems_section(grades):
    listed = problems(grades)
    if not listed:
        return "<h2>Gradings to look at</h2><p>None: every grading finished and its results are readable.</p>"
    rows = [(_escape(name), _escape(status), f"<pre>{_escape(why, EXAMPLE_CHARS)}</pre>")
            for name, status, why in listed]
    return (f'<h2>Gradings to look at ({len(listed)})</h2><p>Incomplete, timed out, grader errors, unreadable zips '
            f'or results: their grade is not final.</p><div id="problems">'
            + _table(("student", "status", "why"), rows) + "</div>")


def alarming_section(rates):
    alarming = [r for r in rates if r.alarming]
    if not alarming:
        return ""
    items = "".join(f"<li><b>{_escape(r.test_id)}</b>: {r.passed} of {r.ran} passed ({r.rate:.0%}) &mdash; "
                    f"{_escape(r.name)}</li>" for r in alarming)
    return (f'<h2 class="alert">Tests almost everyone fails &mdash; check the test before the students</h2>'
            f'<p>Pass rate below {ALERT_PASS_RATE:.0%}:</p><ul id="alarming">{items}</ul>')


def figures_section(grades, rates):
    slowest = sorted((s for s in grades.students if s.seconds is not None), key=lambda s: -s.seconds)[:5]
    slow_text = ", ".join(f"{_escape(s.name)} ({s.seconds:.0f} s)" for s in slowest) or "none"
    return ("<h2>Scores</h2>" + totals_figure(grades) + questions_figure(grades)
            + "<h2>Tests</h2>" + pass_rate_figure(rates)
            + "<h2>Grading time</h2>" + grading_time_figure(grades) + f"<p>Slowest: {slow_text}</p>")


def messages_section(grades, rates):
    groups = failure_groups(grades)
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
    return "".join(parts)


def _names(students, shown=6):
    more = f", +{len(students) - shown} more" if len(students) > shown else ""
    return ", ".join(students[:shown]) + more


def render(grades):
    rates = pass_rates(grades)
    readable = sum(bool(s.outcomes) for s in grades.students)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>Class report: {_escape(grades.folder.name)}</title><style>{STYLE}</style></head><body>"
            f"<h1>Homework 2 class report</h1>"
            f'<p class="muted">{_escape(grades.folder)} &middot; {time.strftime("%Y-%m-%d %H:%M")} &middot; '
            f"points from gradebook.csv, tests from {readable} results.json; every test of every student "
            f"in {TESTS_FILE}</p>"
            + banners(grades) + summary_section(grades) + problems_section(grades) + alarming_section(rates)
            + figures_section(grades, rates) + messages_section(grades, rates) + "</body></html>\n")


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
