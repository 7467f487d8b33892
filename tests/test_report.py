"""The class report (autograder/report.py): a synthetic class of 30 with every kind of trouble, and
one small real grade-all output; the page's numbers match gradebook.csv."""

import csv
import re
import shutil
import statistics

import pytest

from autograder.__main__ import main
from autograder.batch import grade_all, write_gradebook
from autograder.report import NotAGradeAllOutput, pass_rates, load_class, write_report
from autograder import results as grading
from autograder.results import FAILED, MANUAL, NOT_RUN, PASSED
from tests.conftest import ASSIGNMENT, SOLUTION

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
    assert SCRIPT not in page and "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_tests_everyone_fails_and_problem_gradings_are_listed(synthetic):
    out, _, page = synthetic
    alarming = re.search(r'<ul id="alarming">(.*?)</ul>', page, re.S).group(1)
    assert "2.2-impossible" in alarming and "1.1-output-sizes" not in alarming
    assert "check the test before the students" in page
    problems = _div(page, "problems")
    for student, why in ((TIMED_OUT, "timed out: 2.2-accuracy"), (GRADER_ERROR, "RuntimeError: boom"),
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
