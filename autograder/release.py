"""Build the students' repository: `make release OUT=<dir>` (`python -m autograder release <dir>`).

What students get, and nothing else:
    q1.ipynb, h2-q2.py, decoder.py,                  the skeletons, from assignment/ (the notebook
    decoder_with_attention.py                        as nbgrader generated it)
    utils.py, train.py                               provided code, from assignment/
    data/                                            obtaining and caching the data (no cache)
    autograder/                                      the package the grading child runs (child/,
                                                     whole), the public checks (checks/public_*.py),
                                                     rubric.py and a rubric.toml of the public tests
    tests/, pytest.ini, Makefile, README.md, .gitignore   from release/
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
TEMPLATE_FILES = {"README.md": "README.md", "Makefile": "Makefile", "pytest.ini": "pytest.ini",
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


def grading_table(rubric):
    """Markdown: every test of the rubric with its points, the public ones marked."""
    lines = []
    for question in rubric.questions.values():
        tests = [t for t in rubric.tests if t.question == question.number]
        public = sum(t.points for t in tests if t.public)
        by_hand = sum(t.points for t in tests if t.manual)
        lines += [f"**{question.number} {question.title}** (`{question.file}`): "
                  f"{rubric.max_points(question.number):g} points autograded, "
                  f"{'public checks in its check cells (make check-q1)' if question.file.endswith('.ipynb') else f'{public:g} of them in public tests'}"
                  f"{f', and {by_hand:g} graded by hand' if by_hand else ''}", "",
                  "| test | points | |", "|---|---|---|"]
        lines += [f"| {t.name} | {t.points:g} | {'graded by hand' if t.manual else 'public' if t.public else 'hidden'} |"
                  for t in tests]
        lines.append("")
    lines.append(f"Total: {rubric.max_points():g} points autograded"
                 f"{f', and {rubric.manual_points():g} graded by hand' if rubric.manual_points() else ''}.")
    return "\n".join(lines)


def step_id(test):
    """A GitHub Actions step id for a rubric test (letters, digits, '-' and '_' only)."""
    return "t" + test.id.replace(".", "-")


def classroom_workflow(rubric):
    """.github/workflows/classroom.yml: one GitHub Classroom command grader per public test."""
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
# Runs the public tests on every push and reports their points to GitHub Classroom.
name: Autograding

on:
  push:
  workflow_dispatch:

permissions:
  checks: write
  actions: read
  contents: read

jobs:
  autograding:
    runs-on: ubuntu-latest
    if: github.actor != 'github-classroom[bot]'
    timeout-minutes: 20
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
          cache: pip
          cache-dependency-path: requirements.txt
      - name: Install the pinned packages (CPU-only PyTorch)
        run: make setup PIP_EXTRA='--extra-index-url https://download.pytorch.org/whl/cpu'
{chr(10).join(steps)}
      - name: Report the points
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
    readme = out / "README.md"
    readme.write_text(readme.read_text().replace("<!-- grading table -->", grading_table(rubric)))
    _copy(ROOT / "requirements.txt", out / "requirements.txt")
    workflow = out / ".github" / "workflows" / "classroom.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text(classroom_workflow(rubric))
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
