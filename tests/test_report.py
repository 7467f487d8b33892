"""The class report (autograder/report.py): a synthetic class of 30 with every kind of trouble, a class
with a row of every status batch.py writes, a class of skeletons (the golden results) whose failures
one cause explains, and one small real grade-all output; the page's numbers match gradebook.csv."""

import csv
import json
import re
import shutil
import statistics
from pathlib import Path

import pytest

from autograder import report
from autograder.__main__ import main
from autograder.batch import STATUS_OF_REASON, STATUSES, _row, grade_all, write_gradebook
from autograder.report import NotAGradeAllOutput, pass_rates, load_class, write_report
from autograder import results as grading
from autograder.results import FAILED, MANUAL, NOT_RUN, PASSED
from tests.conftest import ASSIGNMENT, SOLUTION

SKELETON_RESULTS = Path(__file__).parent / "golden" / "skeleton" / "results.json"  # the skeleton, graded for real

QUESTIONS = {"1.1": "Parameters of a small CNN", "1.3": "Self-attention", "2.2": "CNN on Fashion-MNIST"}
SCRIPT = "<script>alert(1)</script>"
FIGURES = ("fig-totals", "fig-questions", "fig-pass-rates", "fig-grading-time")
TIMED_OUT, INCOMPLETE, GRADER_ERROR, CORRUPT, SCRIPTED = "s27", "s26", "s28", "s29", "s05"


def _tests_of(i, student):
    """The six tests of synthetic student i: a third fail 1.1-output-sizes with messages differing
    only by numbers, everyone fails 2.2-impossible, one times out, one has a test not run."""
    def test(id_, question, points, status, output="", reason="", seconds=0.5):
        score = points if status == PASSED else 0.0
        return grading.TestResult(id_, question, id_.replace("-", " "), points, "visible", status, score, output,
                                  seconds, reason)
    sizes_ok = i % 3 != 0
    return [
        test("1.1-output-sizes", "1.1", 2, PASSED if sizes_ok else FAILED,
             "" if sizes_ok else f"conv_output_size(28, 5) returned {20 + i % 4}; expected 24", "wrong"),
        test("1.1-parameter-counts", "1.1", 2, FAILED if student == SCRIPTED else PASSED,
             f"your notebook printed {SCRIPT}" if student == SCRIPTED else "", "wrong"),
        test("1.3-proof-rank", "1.3", 0, MANUAL, "graded by hand (3 points); not part of this score"),
        test("1.3-low-rank", "1.3", 1, PASSED),
        test("2.2-impossible", "2.2", 5, FAILED, f"accuracy 0.{i:02d} below the threshold 0.9512", "wrong"),
        test("2.2-accuracy", "2.2", 5, *{TIMED_OUT: (FAILED, "timed out after 120 s", "timed out"),
                                          INCOMPLETE: (NOT_RUN, "Fashion-MNIST is missing", "data missing")}
             .get(student, (PASSED, "", "")), seconds=3.0 + i),
    ]


def _synthetic_class(out):
    """30 students written as grade-all writes them; returns the gradebook's rows."""
    rows = {}
    for i in range(30):
        student = f"s{i:02d}"
        folder = out / student
        folder.mkdir(parents=True)
        if student == GRADER_ERROR:
            (folder / "error.txt").write_text("grading stopped on this submission: RuntimeError: boom\n")
            (folder / "status.txt").write_text("grader error\n")
            rows[student] = ["", "", "", "", "grader error", "", student]  # no points, no total: not final
            continue
        results = grading.GradingResults(student, QUESTIONS, _tests_of(i, student), seconds=10.0 + i,
                                 sandbox="bubblewrap (namespaces)")
        results.write(folder)
        status = {TIMED_OUT: "timed out", INCOMPLETE: "incomplete"}.get(student, "graded")
        (folder / "status.txt").write_text(status + "\n")
        points = results.by_question()
        total = "" if status == "incomplete" else f"{results.score:g}"  # as batch._row writes it
        rows[student] = [*(f"{points[q][0]:g}" for q in QUESTIONS), total, status, "bubblewrap", student]
        if student == CORRUPT:
            (folder / "results.json").write_text('{"score": 12, "tests": [')  # cut short
    write_gradebook(out, rows, list(QUESTIONS))
    with open(out / "gradebook.csv") as f:
        return list(csv.DictReader(f))


def _cell(page, cell_id):
    match = re.search(rf'id="{re.escape(cell_id)}">([^<]*)<', page)
    assert match, f"no element with id {cell_id}"
    return match.group(1)


def _div(page, div_id):
    match = re.search(rf'<div[^>]* id="{re.escape(div_id)}">(.*?)</div>', page, re.S)
    assert match, f"no block with id {div_id}"
    return match.group(1)


def _assert_numbers_match_gradebook(page, book, questions):
    totals = [float(row["total"]) for row in book if row["total"]]  # blank: not final, in no average
    assert _cell(page, "students") == str(len(book))
    if len(totals) < len(book):
        assert _cell(page, "without-total") == str(len(book) - len(totals))
    assert _cell(page, "mean-total") == f"{round(statistics.mean(totals), 1):g}"
    assert _cell(page, "median-total") == f"{round(statistics.median(totals), 1):g}"
    for q in questions:
        points = [float(row[q]) for row in book if row[q]]
        assert _cell(page, f"mean-q-{q}") == f"{round(statistics.mean(points), 1):g}", q


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("class")
    book = _synthetic_class(out)
    page = write_report(out)
    return out, book, page.read_text()


def test_the_page_has_every_figure_embedded_and_nothing_external(synthetic):
    out, _, page = synthetic
    assert (out / "report.html").is_file()
    images = re.findall(r'<img id="([^"]+)" alt="[^"]+" src="data:image/png;base64,[A-Za-z0-9+/=]+"', page)
    assert sorted(images) == sorted(FIGURES) and page.count("<img") == len(FIGURES)
    assert not re.search(r'(src|href)="(?!data:)', page), "the page must not load anything"


def test_the_numbers_match_the_gradebook(synthetic):
    _, book, page = synthetic
    _assert_numbers_match_gradebook(page, book, QUESTIONS)
    assert _cell(page, "max-total") == "15"  # 4 + 1 + 10; the manual proof is not autograded
    assert _cell(page, "status-graded") == "27" and _cell(page, "status-timed-out") == "1"
    assert _cell(page, "status-grader-error") == "1" and _cell(page, "status-incomplete") == "1"


def test_messages_differing_only_by_numbers_are_counted_together(synthetic):
    _, _, page = synthetic
    readable = [i for i in range(30) if f"s{i:02d}" not in (GRADER_ERROR, CORRUPT)]
    counts = re.findall(r'class="n count">(\d+)<', _div(page, "messages-1.1-output-sizes"))
    assert counts == [str(sum(i % 3 == 0 for i in readable))]  # returned 20, 21, 22, 23: one group
    assert "conv_output_size(28, 5) returned" in page
    assert re.findall(r'class="n count">(\d+)<', _div(page, "messages-2.2-impossible")) == [str(len(readable))]
    timed_out = _div(page, "messages-2.2-accuracy")
    assert "timed out after 120 s" in timed_out and "Fashion-MNIST is missing" in timed_out


def test_student_text_is_escaped(synthetic):
    _, _, page = synthetic
    assert SCRIPT not in page and page.count("<script") == 1  # the page's own, sorting the students' table:
    assert page.endswith(f"<script>{report.SCRIPT}</script></body></html>\n")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_tests_everyone_fails_and_problem_gradings_are_listed(synthetic):
    out, _, page = synthetic
    alarming = re.search(r'<ul id="alarming">(.*?)</ul>', page, re.S).group(1)
    assert "2.2-impossible" in alarming and "1.1-output-sizes" not in alarming
    assert "check the test before the students" in page
    problems = _div(page, "problems")
    for student, why in ((TIMED_OUT, "timed out: timed out after 120 s (test 2.2-accuracy)"),
                         (GRADER_ERROR, "RuntimeError: boom"),
                         (CORRUPT, "results unreadable"), (INCOMPLETE, "2.2-accuracy (data missing)")):
        assert re.search(rf"<td>{student}</td>.*?{re.escape(why)}", problems, re.S), student
    assert "s00" not in problems
    rates = {r.test_id: r for r in pass_rates(load_class(out))}
    assert "1.3-proof-rank" not in rates  # graded by hand: no pass rate
    assert (rates["2.2-accuracy"].passed, rates["2.2-accuracy"].ran) == (26, 27)  # the test not run is left out


def test_the_csv_has_one_row_per_student_and_test(synthetic):
    out, _, _ = synthetic
    with open(out / "report-tests.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["student", "test_id", "question", "name", "status", "score", "max_score", "reason",
                             "seconds"]
    assert len(rows) == 28 * 6 and {r["student"] for r in rows}.isdisjoint({GRADER_ERROR, CORRUPT})
    by_key = {(r["student"], r["test_id"]): r for r in rows}
    assert by_key[(TIMED_OUT, "2.2-accuracy")]["reason"] == "timed out"
    assert by_key[(INCOMPLETE, "2.2-accuracy")]["status"] == NOT_RUN
    assert by_key[("s00", "1.3-proof-rank")]["status"] == MANUAL
    assert by_key[("s01", "2.2-impossible")]["score"] == "0" and by_key[("s01", "2.2-impossible")]["max_score"] == "5"


def test_the_command_writes_where_asked_and_refuses_other_folders(synthetic, tmp_path, capsys):
    out, _, _ = synthetic
    main(["report", str(out), "--out", str(tmp_path / "elsewhere")])
    written = tmp_path / "elsewhere"
    assert (written / "report.html").is_file() and (written / "report-tests.csv").is_file()
    assert "report.html" in capsys.readouterr().out
    with pytest.raises(NotAGradeAllOutput):
        write_report(tmp_path / "elsewhere")
    with pytest.raises(SystemExit, match="^error: .*gradebook.csv"):
        main(["report", str(tmp_path)])


@pytest.mark.slow
def test_a_real_grade_all_output(tmp_path):
    submissions = tmp_path / "submissions"
    for name, tree in (("ada", SOLUTION), ("bob", ASSIGNMENT)):
        shutil.copytree(tree, submissions / name, ignore=shutil.ignore_patterns("__pycache__", "utils.py", "train.py"))
    grades = tmp_path / "grades"
    questions = ["1.1", "1.2", "1.3"]
    grade_all(submissions, grades, jobs=2, only=questions, log=lambda *_: None)
    page = write_report(grades).read_text()
    with open(grades / "gradebook.csv") as f:
        book = list(csv.DictReader(f))
    _assert_numbers_match_gradebook(page, book, questions)
    assert page.count('src="data:image/png;base64,') == len(FIGURES)
    with open(grades / "report-tests.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["student"] for r in rows} == {"ada", "bob"}
    assert all(r["status"] == PASSED for r in rows if r["student"] == "ada" and r["status"] != MANUAL)
    failed = [r["test_id"] for r in rows if r["student"] == "bob" and r["status"] == FAILED]
    assert failed and "1 student has not implemented conv_output_size</b> (test 1.1-output-sizes)" in page
    assert '<div class="messages"' not in page, "the skeleton's failures are all causes, none a message per test"
    assert "None: every student's status is graded" in page


def test_a_class_graded_through_an_insecure_cluster_says_so_at_the_top(tmp_path):
    """grade-all --insecure-scheduler marks the rows (INSECURE CLUSTER in the sandbox column): the report's
    first lines say that anyone who reached the cluster could have changed these results."""
    from autograder.batch import _row

    out = tmp_path / "class"
    rows = {}
    for i, student in enumerate(("ada", "bob")):
        results = grading.GradingResults(student, QUESTIONS, _tests_of(i + 1, student), seconds=10.0,
                                         sandbox="bubblewrap (namespaces)")
        results.write(out / student)
        (out / student / "status.txt").write_text("graded\n")
        rows[student] = _row(results.to_gradescope(), "graded", list(QUESTIONS), student, insecure=student == "bob")
    write_gradebook(out, rows, list(QUESTIONS))
    page = write_report(out).read_text()
    assert "1 student(s) graded through a plain tcp:// Dask scheduler (--insecure-scheduler)" in page
    assert page.index("plain tcp://") < page.index("<h2>Summary</h2>")


# ---- every status but graded, first, with why ----------------------------------------------------

def _one_test_failing(student, reason, message, status=FAILED):
    """The synthetic class's tests, all passed but 1.1-output-sizes, which fails (or is not run) for `reason`."""
    tests = _tests_of(1, student)
    tests[0] = grading.TestResult("1.1-output-sizes", "1.1", "output sizes", 2, "visible", status, 0.0, message, 0.5,
                                  reason)
    return tests


# per status of batch.STATUSES but graded: how grade-all leaves such a student (the typed reason of a test,
# or error.txt), the message there, and what the report must say about it when not that message
STATUS_CASES = {
    "missing files": ("typed", "q1.ipynb is missing: your submission has no file named q1.ipynb"),
    "refused file": ("typed", "q1.ipynb is a symbolic link (the grader did not read it)"),
    "syntax error": ("typed", "q1.ipynb: cell 3, line 2: invalid syntax"),
    "import error": ("typed", "q1.ipynb: running cell 2 raised ModuleNotFoundError: No module named 'tensorflow'"),
    "timed out": ("typed", "timed out: used the test's 20 s of CPU time (an infinite loop, or far too slow?)"),
    "crashed": ("typed", "your code recursed without end (RecursionError)"),
    "incomplete": ("not run", "Fashion-MNIST is missing", "not run: 1.1-output-sizes (data missing)"),
    "unreadable zip": ("error.txt", "carol.zip could not be unpacked: File is not a zip file"),
    "grader error": ("error.txt", "grading stopped on this submission: RuntimeError: boom"),
}


@pytest.fixture(scope="module")
def every_status(tmp_path_factory):
    """A class with a student of every status batch.STATUSES has (a KeyError here names a status added to
    batch.py that this test does not know yet), one killed at its bounds (timed out, error.txt only), one of a
    status this report does not know, and two graded students; returns (folder, {student: (status, why)})."""
    out = tmp_path_factory.mktemp("statuses")
    questions, rows, expected = list(QUESTIONS), {}, {}
    cases = {status: STATUS_CASES[status] for status in STATUSES if status != "graded"}
    cases["mystery status"] = ("typed", "")  # a status a newer batch.py might write: listed all the same
    killed = ("error.txt", "the grading process was still running after 600 s (...) and was stopped")
    students = {f"z-{status.replace(' ', '-')}": (status, case) for status, case in cases.items()}
    students["a-killed"] = ("timed out", killed)
    for student, (status, (kind, message, *why)) in students.items():
        folder = out / student
        folder.mkdir()
        results = None
        if kind != "error.txt":
            reason = {v: k for k, v in STATUS_OF_REASON.items()}.get(status, "data missing")
            tests = _one_test_failing(student, reason, message, NOT_RUN if kind == "not run" else FAILED)
            results = grading.GradingResults(student, QUESTIONS, tests, seconds=12.0, sandbox="bubblewrap (namespaces)")
            results.write(folder)
            results = results.to_gradescope()
        else:
            (folder / "error.txt").write_text(message + "\n")
        (folder / "status.txt").write_text(status + "\n")
        rows[student] = _row(results, status, questions, student)
        expected[student] = (status, (why or [message or "no test says why"])[0])
    for i, student in enumerate(("b-fine", "c-fine")):
        results = grading.GradingResults(student, QUESTIONS, _tests_of(i + 1, student), seconds=10.0,
                                         sandbox="bubblewrap (namespaces)")
        results.write(out / student)
        (out / student / "status.txt").write_text("graded\n")
        rows[student] = _row(results.to_gradescope(), "graded", questions, student)
    write_gradebook(out, rows, questions)
    return out, expected


def test_every_status_but_graded_is_listed_first_with_why(every_status):
    out, expected = every_status
    page = write_report(out).read_text()
    problems = _div(page, "problems")
    listed = re.findall(r"<tr><td>([^<]+)</td><td[^>]*>([^<]+)</td><td><pre>(.*?)</pre></td></tr>", problems, re.S)
    assert {name for name, _, _ in listed} == set(expected), "every student whose status is not graded, and only them"
    for name, status, why in listed:
        assert status == expected[name][0], name
        assert why.startswith(f"{status}: ") and expected[name][1].split(" (")[0] in why.replace("&#x27;", "'"), \
            (name, why)
    assert [name for name, _, _ in listed][:2] == ["z-mystery-status", "z-grader-error"]  # unknown, then the grader's
    assert page.index('id="problems"') < page.index("<h2>Summary</h2>")  # first on the page, after any banner


def test_the_students_table_has_every_student_by_total(synthetic):
    _, book, page = synthetic
    table = re.search(r'<table class="sortable" id="students-table">(.*?)</table>', page, re.S).group(1)
    header = re.findall(r"<th>([^<]*)</th>", table)
    assert header == ["student", "total", *(f"Q{q}" for q in QUESTIONS), "status"]
    rows = [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]]
    by_name = {row["student"]: row for row in book}
    assert sorted(r[0] for r in rows) == sorted(by_name)
    for name, total, *points, status in rows:
        assert total == (f"{round(float(by_name[name]['total']), 1):g}" if by_name[name]["total"] else ""), name
        assert points == [f"{round(float(by_name[name][q]), 1):g}" if by_name[name][q] else "" for q in QUESTIONS]
        assert status == by_name[name]["status"]
    totals = [float(r[1]) if r[1] else None for r in rows]
    with_total = [t for t in totals if t is not None]
    assert with_total == sorted(with_total, reverse=True) and totals[len(with_total):] == [None] * (
        len(totals) - len(with_total)), "highest total first, the students without one last"
    assert re.search(r'<td class="n" data-v="-1"></td>', table), "a blank total sorts below every number"


def test_figures_have_whole_point_axes_and_readable_labels(synthetic):
    out, _, _ = synthetic
    grades = load_class(out)
    for axes, question in zip(report.questions_plot(grades).axes, QUESTIONS):
        low, high = axes.get_xlim()
        ticks = [t for t in axes.get_xticks() if low <= t <= high]
        assert all(float(t).is_integer() for t in ticks), (question, ticks)  # no -0.5 ... 2.5 on whole points
        assert ticks[0] == 0 and ticks[-1] == grades.max_points[question], (question, ticks)
    axes = report.pass_rate_plot(pass_rates(grades)).axes[0]
    labels = [*axes.texts, *axes.get_yticklabels(), *axes.get_xticklabels()]
    assert labels and min(label.get_fontsize() for label in labels) >= 10, "pass-rate labels readable"


# ---- failures one cause explains -----------------------------------------------------------------

def _skeleton_class(out):
    """Three skeletons as graded for real (tests/golden/skeleton), one whose decoder.py does not parse, and
    one whose h2-q2.py timed out in its first test (its later tests not tried, as grade._run_file says)."""
    skeleton = json.loads(SKELETON_RESULTS.read_text().replace('"<seconds>"', "1.5"))  # golden: times masked
    decoder = [t for t in skeleton["tests"] if t["number"] == "3.1a"]
    cnn = [t for t in skeleton["tests"] if t["number"] == "2.2"]
    syntax = "decoder.py, line 40:\n    return self.fc(\n                  ^\nSyntaxError: '(' was never closed"
    timeout = "timed out: used the test's 20 s of CPU time (an infinite loop, or far too slow?)"

    def syntax_error(results):
        for i, test in enumerate(t for t in results["tests"] if t["number"] == "3.1a"):
            first = decoder[0]["extra_data"]["id"]
            test["output"] = syntax if i == 0 else f"{syntax.splitlines()[0]} (the whole message is in test {first})"
            test["extra_data"]["reason"] = "syntax error"

    def timed_out(results):
        for i, test in enumerate(t for t in results["tests"] if t["number"] == "2.2"):
            test["output"] = timeout if i == 0 else (f"not tried: your code in h2-q2.py timed out in test "
                                                     f"{cnn[0]['extra_data']['id']}, and this test runs the same code "
                                                     f"({timeout})")
            test["extra_data"]["reason"] = "timed out"

    students = {"sk1": None, "sk2": None, "sk3": None, "syn": syntax_error, "slow": timed_out}
    rows, questions = {}, list(skeleton["extra_data"]["points_by_question"])
    for student, change in students.items():
        results = json.loads(json.dumps(skeleton))
        if change:
            change(results)
        (out / student).mkdir(parents=True)
        (out / student / "results.json").write_text(json.dumps(results))
        status = {"syn": "syntax error", "slow": "timed out"}.get(student, "graded")
        (out / student / "status.txt").write_text(status + "\n")
        rows[student] = _row(results, status, questions, student)
    write_gradebook(out, rows, questions)
    return skeleton


def test_failures_one_cause_explains_are_one_line_each(tmp_path):
    skeleton = _skeleton_class(tmp_path)
    page = write_report(tmp_path).read_text()
    causes = re.findall(r"<li><b>([^<]*)</b> \(tests? ([^)]*)\)", _div_or_list(page, "causes"))
    not_implemented = {}
    for test in skeleton["tests"]:
        if test["extra_data"].get("reason") == "not implemented":  # a training test names each stub it met
            for name in dict.fromkeys(re.findall(r"([\w.]+)(?: \(in [^)]*\))? is not implemented yet", test["output"])):
                not_implemented.setdefault(name, []).append(test)
    assert len(not_implemented) > 5  # the skeleton's functions: CNN.__init__, train_batch, Decoder.forward, ...
    lines = {text: tests.split(", ") for text, tests in causes}
    for name, tests in not_implemented.items():
        students = 3 + (tests[0]["number"] != "3.1a") + (tests[0]["number"] != "2.2")
        assert lines[f"{students} students have not implemented {name}"] == [t["extra_data"]["id"] for t in tests], name
    decoder = [t["extra_data"]["id"] for t in skeleton["tests"] if t["number"] == "3.1a"]
    cnn = [t["extra_data"]["id"] for t in skeleton["tests"] if t["number"] == "2.2"]
    assert lines["1 student has a syntax error in decoder.py"] == decoder
    assert lines[f"1 student timed out in {cnn[0]} (code in h2-q2.py), so the later tests of that file were not "
                 f"tried"] == cnn
    assert len(lines) == len(not_implemented) + 2, "one line per cause, distinct causes apart"
    assert "SyntaxError: &#x27;(&#x27; was never closed" in page  # the cause's example: the whole message
    assert "<div class=\"messages\"" not in page and "None beyond the causes above." in page
    assert 'id="alarming"' not in page  # every test fails, each for a cause above: nothing says a test is wrong


def test_a_training_test_of_stubs_counts_in_their_causes():
    """A training test whose student code is a stub (checks/q2.py, q3.py keep its reason) names one stub or
    two after "this test judges that": each is that stub's cause, not a message of the test's own."""
    def outcome(test_id, reason, message):
        return report.Outcome("s", test_id, test_id.split("-")[0], "", FAILED, 0.0, 5.0, reason, 1.0, message)

    both = outcome("2.2-accuracy", "not implemented", "this test judges that your CNN and train_batch learn together, "
                   "and your CNN does no work yet (CNN.__init__ is not implemented yet); your train_batch does no "
                   "work yet (train_batch is not implemented yet)")
    assert [text for _, text in report._cause_of(both, {}, set())] == [
        "have not implemented CNN.__init__", "have not implemented train_batch"]
    step = outcome("3.1a-bleu", "not implemented", "this test judges that your decoder learns, and its step does not "
                   "run yet: Decoder.forward is not implemented yet")
    assert [text for _, text in report._cause_of(step, {}, set())] == ["have not implemented Decoder.forward"]
    assert report._cause_of(outcome("3.1a-bleu", "wrong", step.message), {}, set()) is None  # the test's own failure


def _div_or_list(page, element_id):
    match = re.search(rf'<(ul|div)[^>]* id="{re.escape(element_id)}">(.*?)</\1>', page, re.S)
    assert match, f"no block with id {element_id}"
    return match.group(2)


# ---- what students write reaches the page: it stays text, bounded, and hides no one ---------------

def _hostile_class(out):
    """Students whose own text (exception messages, what their code printed, error.txt) is written to
    hurt the page: markup, a NotImplementedError naming a 'function' of thousands of characters, and a
    first line long enough to push the grader's own notes out of the problems table."""
    def failing(reason, message, test=0):
        tests = _tests_of(1, "x")
        old = tests[test]
        tests[test] = grading.TestResult(old.id, old.question, old.name, old.max_score, "visible", FAILED, 0.0,
                                         message, 0.5, reason)
        return tests

    students = {
        # an import error whose message fills the why, graded unsandboxed: the note must still show
        "loud": ("import error", failing("import error", f"your code raised ImportError: {SCRIPT}" + "A" * 2000),
                 "NONE: --unsandboxed"),
        # a stub message naming a function of 3,900 characters, and one naming markup
        "stub": ("graded", failing("not implemented", "B" * 3900 + " is not implemented yet"), "bubblewrap"),
        "mark": ("graded", failing("not implemented", f'x" onclick="alert(1) is not implemented yet{SCRIPT}'),
                 "bubblewrap"),
    }
    rows = {}
    for student, (status, tests, sandbox) in students.items():
        results = grading.GradingResults(student, QUESTIONS, tests, seconds=10.0, sandbox=sandbox)
        results.write(out / student)
        (out / student / "status.txt").write_text(status + "\n")
        rows[student] = _row(results.to_gradescope(), status, list(QUESTIONS), student)
    (out / "boom").mkdir()
    (out / "boom" / "error.txt").write_text(f"grading stopped on this submission: RuntimeError: {SCRIPT}</pre>\n")
    (out / "boom" / "status.txt").write_text("grader error\n")
    rows["boom"] = _row(None, "grader error", list(QUESTIONS), "boom")
    write_gradebook(out, rows, list(QUESTIONS))


def test_a_long_message_does_not_hide_the_graders_notes(tmp_path):
    """The why of a row is the status's reason (the student's message) then the grader's notes: a message
    of thousands of characters is cut on its own, and 'graded UNSANDBOXED' still shows."""
    _hostile_class(tmp_path)
    page = write_report(tmp_path).read_text()
    problems = _div(page, "problems")
    loud = re.search(r"<tr><td>loud</td>.*?</tr>", problems, re.S).group(0)
    assert loud.count("A") < report.EXAMPLE_CHARS + 100, "the student's message is cut"
    assert "graded UNSANDBOXED" in loud, "the grader's note survives a long message before it"


def test_student_text_stays_text_in_every_section(tmp_path):
    """Markup in an exception message, a stub's message or error.txt is escaped wherever it is shown (the
    problems, the causes, the messages per test); the only script is the page's own."""
    _hostile_class(tmp_path)
    page = write_report(tmp_path).read_text()
    assert SCRIPT not in page and "</pre>\n" not in page and 'x" onclick' not in page
    assert page.count("<script") == 1 and page.endswith(f"<script>{report.SCRIPT}</script></body></html>\n")
    assert "RuntimeError: &lt;script&gt;alert(1)&lt;/script&gt;&lt;/pre&gt;" in _div(page, "problems")


def test_a_stub_message_names_a_function_only_when_it_looks_like_one(tmp_path):
    """'<name> is not implemented yet' makes a cause line naming <name>: a name of thousands of characters
    is no function of the skeleton, and its message is shown cut, among the messages per test."""
    _hostile_class(tmp_path)
    page = write_report(tmp_path).read_text()
    causes = _div_or_list(page, "causes") if 'id="causes"' in page else ""
    assert "B" * 200 not in causes
    assert "B" * 200 in _div(page, "messages-1.1-output-sizes")
    assert [len(run) for run in re.findall("B{20,}", page)] == [report.EXAMPLE_CHARS], "shown once, cut"
