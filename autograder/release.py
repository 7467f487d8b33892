"""Build the students' repository: `make release OUT=<dir>` (`python -m autograder release <dir>`).

What students get, and nothing else:
    q1.ipynb, h2-q2.py, decoder.py,                  the skeletons, from assignment/ (the notebook
    decoder_with_attention.py                        as nbgrader generated it)
    utils.py, train.py                               provided code, from assignment/
    data/                                            obtaining and caching the data (no cache)
    autograder/                                      the package the grading child runs (child/,
                                                     whole), the public checks (checks/public_*.py),
                                                     rubric.py and a rubric.toml of the public tests
    tests/, pytest.ini, Makefile, .gitignore         from release/
    README.md                                        release/README.md with the rubric's tests, their points
                                                     and when students see them (students_readme)
    requirements.txt
    .github/workflows/classroom.yml                  generated from the rubric's public tests

Never solution/, the hidden checks, the stand-ins, calibration.json or the instructor's tests;
`make test` checks this on every build (tests/test_release.py).
"""

import json
import shutil
from pathlib import Path

from autograder import ROOT
from autograder import rubric as rubric_module
from autograder.submission import GRADED_FILES, PROVIDED_FILES

TEMPLATES = ROOT / "release"

HOMEWORK_FILES = GRADED_FILES + PROVIDED_FILES
DATA_FILES = ("__init__.py", "__main__.py", "fashion_mnist.py", "sydney_captions.py", "features.py", "README.md")
CHECK_FILES = ("rubric.py", "checks/__init__.py", "checks/public_q2.py", "checks/public_q3.py")


def autograder_files():
    """The autograder files students get, relative to autograder/: the child package (the code their
    public tests run their functions with, as grading does) and the public checks."""
    child = sorted(str(p.relative_to(ROOT / "autograder")) for p in (ROOT / "autograder" / "child").glob("*.py"))
    return [*child, *CHECK_FILES]
TEMPLATE_FILES = {"Makefile": "Makefile", "pytest.ini": "pytest.ini",
                  "gitignore": ".gitignore", "tests/test_public.py": "tests/test_public.py",
                  "tests/conftest.py": "tests/conftest.py"}

AUTOGRADER_INIT = '''"""The public part of the homework's autograder: the checks behind `make test`.

The grader runs these same checks, with the same messages, plus hidden ones. Do not edit.
"""
'''


def public_rubric_text(rubric):
    """rubric.toml for the release: the questions and the public tests only (written by tomli-w, so any
    title or name is quoted correctly)."""
    import tomli_w

    document = {
        "questions": {q.number: {"title": q.title, "file": q.file} for q in rubric.questions.values()},
        "tests": [{"id": t.id, "question": t.question, "name": t.name, "points": t.points,
                   "visibility": t.visibility, "public": True} for t in rubric.public_tests()],
    }
    return "# The public tests of Homework 2 and their points (the full rubric also has hidden tests).\n\n" + \
        tomli_w.dumps(document)


# when a student sees a test's result, by its visibility in the rubric (a test graded by hand: BY_HAND)
WHEN = {"visible": "at once", "after_due_date": "after the due date", "after_published": "when grades are published",
        "hidden": "never"}
BY_HAND = "graded by hand"
README_MARK = "<!-- generated from the rubric: handing in, and what is graded when -->"


def when_seen(test):
    """When the student sees `test`'s result: WHEN's words for its visibility, or BY_HAND."""
    return BY_HAND if test.manual else WHEN[test.visibility]


def _points(tests):
    return f"{sum(t.points for t in tests):g}"


def grading_section(rubric):
    """Markdown for the students' README, from the rubric: how to hand the work in, what they see before
    and after the due date, and every test with its points and when its result is shown."""
    files = ", ".join(f"`{name}`" for name in GRADED_FILES[:-1]) + f" and `{GRADED_FILES[-1]}`"
    seen = {when: [t for t in rubric.tests if when_seen(t) == when] for when in [*WHEN.values(), BY_HAND]}
    seen = {when: tests for when, tests in seen.items() if tests}
    visible, later = seen.get(WHEN["visible"], []), seen.get(WHEN["after_due_date"], [])
    published, by_hand = seen.get(WHEN["after_published"], []), seen.get(BY_HAND, [])
    lines = [
        "### Handing in", "",
        f"You hand in the {len(GRADED_FILES)} files you write, {files}, under these names: the grader "
        f"uses its own copies of every other file. Your course collects them in one of two ways; your "
        f"instructor says which:", "",
        "- **GitHub Classroom**: commit and push them to your assignment repository; what it holds at the due "
        "date is graded. Every push runs the public tests there (the Actions tab, workflow \"Autograding Tests\") "
        f"and shows their points, {_points(visible)} at most: a preview, since your grade comes from the full "
        "grading after the due date.",
        "- **Gradescope**: upload the files to the assignment (the files themselves, a zip of them, or your "
        "GitHub repository; a top folder is fine). You may upload again until the due date; Gradescope grades "
        "your last upload unless you activate an earlier one.", "",
        "### What you see, and when", "",
        f"- **At once**: the public tests ({len(visible)} tests, {_points(visible)} points). `make test` runs them on "
        f"your machine, GitHub Classroom on every push, Gradescope on every upload (\"Visible tests: ... / "
        f"{_points(visible)} points\", and how many more tests are shown after the due date).",
        f"- **After the due date**: the other autograded tests, each with its message ({len(later)} tests, "
        f"{_points(later)} points): on Gradescope, or in the feedback your instructor returns for a GitHub "
        f"Classroom repository.",
    ]
    if published:
        lines.append(f"- **When grades are published**: {len(published)} more tests ({_points(published)} points).")
    if by_hand:
        lines.append(f"- **Graded by hand**: {', '.join(f'`{t.id}`' for t in by_hand)} ({_points(by_hand)} points), "
                     f"with your grade.")
    never = seen.get(WHEN["hidden"], [])
    if never:
        lines.append(f"- **Never shown**: {len(never)} tests ({_points(never)} points) count in the grade only.")
    lines += ["", "### Tests and points", ""]
    for question in rubric.questions.values():
        tests = [t for t in rubric.tests if t.question == question.number]
        lines += [f"**{question.number} {question.title}** (`{question.file}`): {_points(tests)} points", "",
                  "| test | what it checks | points | you see it |", "|---|---|---|---|"]
        lines += [f"| `{t.id}` | {t.name.replace('|', '/')} | {t.points:g} | {when_seen(t)} |" for t in tests]
        lines.append("")
    lines.append(f"Total: {rubric.max_points():g} points autograded"
                 f"{f' and {rubric.manual_points():g} graded by hand' if rubric.manual_points() else ''}: "
                 f"{', '.join(f'{_points(group)} {when}' for when, group in seen.items())}.")
    return "\n".join(lines) + "\n"


def students_readme(rubric):
    """The students' README.md: release/README.md with the rubric's grading section in place of README_MARK."""
    template = (TEMPLATES / "README.md").read_text()
    if README_MARK not in template:
        raise ValueError(f"release/README.md lacks the line {README_MARK}, where the rubric's table goes")
    return template.replace(README_MARK, grading_section(rubric).rstrip("\n"))


def step_id(test):
    """The GitHub Actions step id of a public test's grader (letters, digits and '-': "test-2-2-architecture");
    the reporter reads its result from the variable of the same name in capitals, followed by _RESULTS."""
    return "test-" + test.id.replace(".", "-")


# GitHub Classroom finds the points of the workflow with this name and this single job
CLASSROOM_WORKFLOW, CLASSROOM_JOB = "Autograding Tests", "run-autograding-tests"


def classroom_workflow(rubric):
    """.github/workflows/classroom.yml, in the shape of the workflow GitHub Classroom generates (its name and
    job, on push and repository_dispatch, its permissions): one command grader per public test, worth its
    points in the rubric, then Classroom's reporter, which sends the total to Classroom."""
    tests = rubric.public_tests()
    steps = []
    for test in tests:
        title = json.dumps(f"{test.id}: {test.name}")  # a JSON string is a YAML string
        command = json.dumps(f".venv/bin/python -m pytest -q 'tests/test_public.py::test_public[{test.id}]'")
        steps.append(f"""      - name: {title}
        id: {step_id(test)}
        uses: classroom-resources/autograding-command-grader@v1
        with:
          test-name: {title}
          command: {command}
          timeout: 5
          max-score: {test.points:g}""")
    env = "\n".join(f"          {step_id(t).upper()}_RESULTS: \"${{{{ steps.{step_id(t)}.outputs.result }}}}\""
                    for t in tests)
    return f"""# Generated by `make release` from the homework's rubric: do not edit.
# GitHub Classroom's autograding, in the shape Classroom generates: on every push, one grader per public test
# ({len(tests)} tests, {sum(t.points for t in tests):g} points: the rubric's visible tests), then the reporter that sends the points
# to Classroom, which finds them by this workflow's name and its single job's.
name: {CLASSROOM_WORKFLOW}

on:
  push:
  repository_dispatch:

permissions:
  checks: write
  actions: read
  contents: read

jobs:
  {CLASSROOM_JOB}:
    runs-on: ubuntu-latest
    if: github.actor != 'github-classroom[bot]'
    timeout-minutes: 30
    steps:
      - name: Checkout code
        uses: actions/checkout@v4
      - name: Set up Python
        uses: actions/setup-python@v5
        with:
          python-version: "3.11"
          cache: pip
          cache-dependency-path: requirements.txt
      - name: Install the pinned packages (CPU-only PyTorch)
        run: make setup PIP_EXTRA='--extra-index-url https://download.pytorch.org/whl/cpu'
{chr(10).join(steps)}
      - name: Autograding Reporter
        uses: classroom-resources/autograding-grading-reporter@v1
        env:
{env}
        with:
          runners: {",".join(step_id(t) for t in tests)}
"""


def _copy(source, destination):
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, destination)


def build(out, rubric=None):
    """Write the students' repository to `out` (emptied first); returns the files written, relative."""
    rubric = rubric or rubric_module.load()
    out = Path(out).resolve()
    if out == ROOT or ROOT in out.parents and out.parts[len(ROOT.parts)] not in ("dist", "outputs"):
        raise ValueError(f"{out} is inside the repository; build the release in dist/ or outside it")
    if out.exists():
        shutil.rmtree(out)
    assignment = ROOT / "assignment"
    for name in HOMEWORK_FILES:
        _copy(assignment / name, out / name)
    for name in DATA_FILES:
        _copy(ROOT / "data" / name, out / "data" / name)
    for name in autograder_files():
        _copy(ROOT / "autograder" / name, out / "autograder" / name)
    (out / "autograder" / "__init__.py").write_text(AUTOGRADER_INIT)
    (out / "autograder" / "rubric.toml").write_text(public_rubric_text(rubric))
    for source, destination in TEMPLATE_FILES.items():
        _copy(TEMPLATES / source, out / destination)
    (out / "README.md").write_text(students_readme(rubric))
    _copy(ROOT / "requirements.txt", out / "requirements.txt")
    workflow = out / ".github" / "workflows" / "classroom.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text(classroom_workflow(rubric))
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
