"""The students' repository (`make release`): what it holds, what it must never hold, and that it
works on its own: setup, then public tests that fail on the skeleton with "not implemented"
messages, pass on the reference, and say what the autograder says."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autograder import release
from autograder import rubric as rubric_module
from autograder.submission import GRADED_FILES
from tests.conftest import ROOT, SOLUTION, autograder_outcome, make_tree
from tests.wrong_submissions import WRONG_SUBMISSIONS

SHIPPED_VERBATIM = [f"autograder/{name}" for name in release.autograder_files()]


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "homework2"
    release.build(out)
    return out


def _release_text(out):
    return {path: path.read_text(errors="replace") for path in out.rglob("*") if path.is_file()}


def _public_code():
    """Everything students get anyway: the provided code, the data package, the shipped checks."""
    files = [*(ROOT / "assignment").glob("*.py"), *(ROOT / "data").glob("*.py"), *(ROOT / "release").rglob("*.py"),
             *(ROOT / name for name in SHIPPED_VERBATIM)]
    return "\n".join(path.read_text() for path in files)


def _solution_lines():
    """The lines students write: every line inside a solution block of solution/ that the
    provided code does not also hold (`optimizer.zero_grad()` is in train.py too)."""
    public = _public_code()
    lines = set()
    for path in SOLUTION.glob("*.py"):
        inside = False
        for line in path.read_text().splitlines():
            if "### BEGIN SOLUTION" in line:
                inside = True
            elif "### END SOLUTION" in line:
                inside = False
            elif inside and len(line.strip()) > 20 and line.strip() not in public:
                lines.add(line.strip())
    return lines


def _hidden_check_lines():
    """Lines of the hidden checks that the public code does not also hold."""
    shipped = _public_code()
    lines = set()
    for name in ("q2.py", "q3.py"):
        for line in (ROOT / "autograder" / "checks" / name).read_text().splitlines():
            if len(line.strip()) > 30 and line.strip() not in shipped:
                lines.add(line.strip())
    return lines


def test_the_release_holds_what_students_need(released):
    files = {str(p.relative_to(released)) for p in released.rglob("*") if p.is_file()}
    for needed in [*GRADED_FILES, "utils.py", "train.py", "data/fashion_mnist.py", "data/sydney_captions.py",
                   "data/features.py", "README.md", "Makefile", "requirements.txt", "tests/test_public.py",
                   ".github/workflows/classroom.yml", ".gitignore"]:
        assert needed in files, f"the release lacks {needed}"
    for name in SHIPPED_VERBATIM:  # the public checks are the autograder's own: same messages
        assert (released / name).read_bytes() == (ROOT / name).read_bytes(), f"{name} differs from the autograder's"
    for name in GRADED_FILES:
        assert (released / name).read_bytes() == (ROOT / "assignment" / name).read_bytes()


def test_the_release_holds_no_solution_hidden_test_or_threshold(released):
    text = _release_text(released)
    names = {str(p.relative_to(released)) for p in text}
    assert not [n for n in names if n.startswith(("solution", "experiments", "results"))], names
    assert not [n for n in names if Path(n).name in ("q1.py", "q2.py", "q3.py", "calibration.json", "calibration.py", "standins.py",
                                                     "wrong_submissions.py")], names
    everything = "\n".join(text.values())
    solution_lines, hidden_lines = _solution_lines(), _hidden_check_lines()
    assert len(solution_lines) > 20 and len(hidden_lines) > 50  # the scan itself must have something to find
    leaked = [line for line in solution_lines | hidden_lines if line in everything]
    assert not leaked, f"the release shows solution or hidden-test lines: {leaked[:5]}"
    thresholds = re.findall(r'"threshold": ([0-9.]+)', (ROOT / "autograder" / "calibration.json").read_text())
    assert thresholds and not [t for t in thresholds if t in everything], "a calibrated threshold is in the release"
    public_ids = {t.id for t in rubric_module.load().public_tests()}
    shipped_rubric = rubric_module.load(released / "autograder" / "rubric.toml")
    assert {t.id for t in shipped_rubric.tests} == public_ids


# when a student sees a test's result, by its visibility: what the README must say (a test graded by hand: by hand)
SEEN = {"visible": "at once", "after_due_date": "after the due date", "after_published": "when grades are published",
        "hidden": "never"}


def test_the_students_readme_is_generated_from_the_rubric(released):
    """The README students get has the rubric's table: every test, its points and when they see it; the
    totals; how to hand the work in. It is exactly what the generator makes of the rubric."""
    rubric = rubric_module.load()
    readme = (released / "README.md").read_text()
    assert readme == release.students_readme(rubric)
    rows = re.findall(r"^\| `([^`]+)` \| .+ \| ([0-9.]+) \| ([^|]+) \|$", readme, re.MULTILINE)
    assert {test_id: (float(points), when.strip()) for test_id, points, when in rows} == {
        t.id: (t.points, "graded by hand" if t.manual else SEEN[t.visibility]) for t in rubric.tests}
    assert len(rows) == len(rubric.tests)
    autograded = [t for t in rubric.tests if not t.manual]
    public = rubric.public_tests()
    at_once = sum(t.points for t in public)
    later = sum(t.points for t in autograded if t.visibility == "after_due_date")
    assert (f"Total: {rubric.max_points():g} points autograded and {rubric.manual_points():g} graded by hand: "
            f"{at_once:g} at once, {later:g} after the due date, {rubric.manual_points():g} graded by hand.") in readme
    assert f"the public tests ({len(public)} tests, {at_once:g} points)" in readme
    handing_in = readme.split("### Handing in", 1)[1].split("###", 1)[0]
    assert all(f"`{name}`" in handing_in for name in GRADED_FILES)
    assert "GitHub Classroom" in handing_in and "Gradescope" in handing_in and "Autograding Tests" in handing_in
    assert "5.9 GB" in readme and "PIP_EXTRA='--extra-index-url https://download.pytorch.org/whl/cpu'" in readme


def test_a_change_in_the_rubric_reaches_the_students_readme():
    from dataclasses import replace

    rubric = rubric_module.load()
    changed = replace(rubric, tests=[replace(t, points=7.0) if t.id == "2.2-dropout" else t for t in rubric.tests])
    assert "| `2.2-dropout` | CNN dropout: only in training mode, in the right place | 7 | after the due date |" in \
        release.students_readme(changed)


def test_the_classroom_workflow_has_classrooms_shape_and_the_visible_points(released):
    """The workflow GitHub Classroom generates: its name and single job (how Classroom finds the points), on
    push and repository_dispatch, its permissions, graders and reporter; one grader per public test with its
    points, so that Classroom's total is the visible tests' total (Gradescope's "Visible tests")."""
    import yaml

    rubric = rubric_module.load()
    workflow = yaml.safe_load((released / ".github" / "workflows" / "classroom.yml").read_text())
    assert workflow["name"] == "Autograding Tests"
    assert workflow[True] == {"push": None, "repository_dispatch": None}  # YAML 1.1 reads the key `on` as true
    assert workflow["permissions"] == {"checks": "write", "actions": "read", "contents": "read"}
    assert list(workflow["jobs"]) == ["run-autograding-tests"]
    job = workflow["jobs"]["run-autograding-tests"]
    assert job["if"] == "github.actor != 'github-classroom[bot]'"
    graders = [s for s in job["steps"] if s.get("uses") == "classroom-resources/autograding-command-grader@v1"]
    public = rubric.public_tests()
    assert [re.fullmatch(r".*'tests/test_public.py::test_public\[(.+)\]'", g["with"]["command"]).group(1)
            for g in graders] == [t.id for t in public]
    assert [g["with"]["max-score"] for g in graders] == [t.points for t in public]
    visible = sum(t.points for t in rubric.tests if t.visibility == "visible" and not t.manual)
    assert sum(g["with"]["max-score"] for g in graders) == visible > 0
    reporter = job["steps"][-1]
    assert reporter["uses"] == "classroom-resources/autograding-grading-reporter@v1"
    assert reporter["with"]["runners"].split(",") == [g["id"] for g in graders]
    assert reporter["env"] == {f"{g['id'].upper()}_RESULTS": f"${{{{ steps.{g['id']}.outputs.result }}}}"
                               for g in graders}


def test_the_release_is_refused_inside_the_repository():
    with pytest.raises(ValueError, match="inside the repository"):
        release.build(ROOT / "solution")


def _setup(out):
    """`make setup` of the release, with the packages of this repository's venv visible to its venv
    (so that pip finds every pinned requirement already satisfied instead of downloading; pip itself is
    this venv's, so the new one is made without installing its own)."""
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(out / ".venv")], check=True)
    site = subprocess.run([str(out / ".venv/bin/python"), "-c", "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = subprocess.run([sys.executable, "-c", "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "homework2-packages.pth").write_text(ours + "\n")
    result = subprocess.run(["make", "setup"], cwd=out, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def _copy_of(installed, tmp_path):
    """A copy of the installed release to change files in, sharing its .venv."""
    tree = tmp_path / "homework2"
    shutil.copytree(installed, tree, symlinks=True, ignore=shutil.ignore_patterns(".venv"))
    (tree / ".venv").symlink_to(installed / ".venv")
    return tree


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    out = tmp_path_factory.mktemp("installed") / "homework2"
    release.build(out)
    _setup(out)
    return out


# one plausible mistake per question that a public test catches
PUBLIC_IDS = {t.id for t in rubric_module.load().public_tests()}
PUBLIC_MISTAKES = [next(w for w in WRONG_SUBMISSIONS if w[3].startswith(question) and w[3] in PUBLIC_IDS)
                   for question in ("2.2", "3.1a", "3.1b")]
# and one for each test that became public with the rule "visible if and only if public"
PUBLIC_MISTAKES += [next(w for w in WRONG_SUBMISSIONS if w[3] == test_id)
                    for test_id in ("2.2-train-batch", "2.2-vectorized", "3.1b-attention-vectorized")]


def _runs(installed, tmp_path, mistakes):
    """{run: (the release's tree, its command)}: the students' commands on the skeleton and the reference,
    and the public test of each of `mistakes` (names of PUBLIC_MISTAKES)."""
    reference = _copy_of(installed, tmp_path / "reference")
    for name in GRADED_FILES:
        shutil.copy(SOLUTION / name, reference / name)
    notebook = _copy_of(installed, tmp_path / "notebook")
    shutil.copy(SOLUTION / "q1.ipynb", notebook / "q1.ipynb")
    pytest_command = [str(installed / ".venv/bin/python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    runs = {"make test, skeleton": (installed, ["make", "test"]),
            "make test, reference": (reference, pytest_command),
            "check-q1, skeleton": (installed, ["make", "check-q1"]),
            "check-q1, reference": (notebook, ["make", "check-q1"])}
    for index, (name, file, changes, test_id, words) in enumerate(PUBLIC_MISTAKES):
        if name not in mistakes:
            continue
        tree = _copy_of(installed, tmp_path / f"mistake-{index}")
        shutil.copy(make_tree(tmp_path / f"mistake-{index}", changes, file) / file, tree / file)
        runs[name] = (tree, [*pytest_command, f"tests/test_public.py::test_public[{test_id}]"])
    return runs


@pytest.fixture(scope="module")
def public_runs(installed, tmp_path_factory, request):
    """{run: (exit code, output)} of _runs, two at a time (each is mostly a Python starting torch): the
    students' `make test` (or the pytest it runs) and `make check-q1` in copies of the installed release;
    the public mistakes' runs of the tests selected (the slow ones are left out by `make test-fast`)."""
    from concurrent.futures import ThreadPoolExecutor

    mistakes = {item.callspec.params["name"] for item in request.session.items
                if item.module is request.module and item.originalname == "test_a_public_test_says_what_the_autograder_says"}

    def run(where_and_command):
        where, command = where_and_command
        result = subprocess.run(command, cwd=where, capture_output=True, text=True, timeout=300)
        return result.returncode, result.stdout + result.stderr

    runs = _runs(installed, tmp_path_factory.mktemp("public-runs"), mistakes)
    with ThreadPoolExecutor(2) as pool:
        return dict(zip(runs, pool.map(run, runs.values())))


def test_public_tests_fail_on_the_skeleton_with_not_implemented(public_runs):
    code, output = public_runs["make test, skeleton"]
    public = rubric_module.load().public_tests()
    assert code != 0
    assert f"{len(public)} failed" in output, output[-3000:]
    for test in public:
        block = output.split(f"{test.id} ({test.points:g} points)", 1)
        assert len(block) == 2, f"no failure message for {test.id}:\n{output[-3000:]}"
        assert "not implemented yet" in block[1].split("\n")[1], f"{test.id}: {block[1][:300]}"
    assert f"public tests: 0 / {sum(t.points for t in public):g} points" in output


def test_public_tests_pass_on_the_reference(public_runs):
    code, output = public_runs["make test, reference"]
    public = rubric_module.load().public_tests()
    assert code == 0, output[-3000:]
    assert f"{len(public)} passed" in output
    total = sum(t.points for t in public)
    assert f"public tests: {total:g} / {total:g} points" in output


def test_the_notebook_checks_fail_on_the_skeleton_and_pass_on_the_reference(public_runs):
    code, output = public_runs["check-q1, skeleton"]
    assert code != 0 and "not implemented yet" in output, output[-2000:]
    code, output = public_runs["check-q1, reference"]
    assert code == 0, output[-2000:]


@pytest.mark.slow  # each runs a public test in the release's environment: a Python starting torch and the check
@pytest.mark.parametrize("name, file, changes, test_id, words", PUBLIC_MISTAKES, ids=[w[0] for w in PUBLIC_MISTAKES])
def test_a_public_test_says_what_the_autograder_says(public_runs, tmp_path, name, file, changes, test_id, words):
    status, message = autograder_outcome(make_tree(tmp_path, changes, file), test_id)
    assert status == "failed"
    code, output = public_runs[name]
    assert code != 0
    assert message in output, f"the public test's message differs from the autograder's:\n{message}\n---\n{output[-2000:]}"


def test_the_students_rubric_survives_quotes_and_backslashes_in_names(tmp_path):
    """The public rubric is written by a TOML library: any title or test name reads back as written."""
    from dataclasses import replace

    from autograder import release, rubric as rubric_module

    rubric = rubric_module.load()
    odd = 'say "hello" \\ it\'s [fine]'
    rubric = replace(rubric, tests=[replace(t, name=odd) if t.public else t for t in rubric.tests])
    path = tmp_path / "rubric.toml"
    path.write_text(release.public_rubric_text(rubric))
    again = rubric_module.load(path)
    assert [t.name for t in again.tests] == [odd] * len(rubric.public_tests())
    assert [t.id for t in again.tests] == [t.id for t in rubric.public_tests()]
