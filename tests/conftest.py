"""Shared fixtures and helpers: the repository's trees, a seeded torch, copies of the reference
with a mistake, and a grading through the real command line."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solution"
ASSIGNMENT = ROOT / "assignment"

# The repository's own tests train with the reduced budgets reserved for them (their results say
# NOT A GRADE); a test that needs the grading's budget sets HW2_BUDGET=grading itself.
os.environ.setdefault("HW2_BUDGET", "test")

# The tests use the course's shared copy of Sydney-Captions when SYDNEY_DIR is not set.
DEFAULT_SYDNEY_DIR = ROOT.parent / "shared" / "data" / "sydney-captions"
if not os.environ.get("SYDNEY_DIR") and DEFAULT_SYDNEY_DIR.is_dir():
    os.environ["SYDNEY_DIR"] = str(DEFAULT_SYDNEY_DIR)


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same random state, seeded as the grader seeds its checks."""
    from autograder.child.seeds import seed_everything

    seed_everything(0)


@pytest.fixture(scope="session")
def q2():
    """The reference `solution/h2-q2.py` as a module."""
    from autograder.submission import load_module

    return load_module(SOLUTION, "h2-q2.py")


def require_data(what, fix):
    """Skip a test whose data is missing, with the command that gets it; in CI
    (HW2_REQUIRE_DATA=1) fail instead, so that a missing dataset never hides a failure."""
    message = f"{what} is not available: {fix}"
    if os.environ.get("HW2_REQUIRE_DATA") == "1":
        pytest.fail(message + " (HW2_REQUIRE_DATA=1: data is required here)")
    pytest.skip(message)


def require_tool(what, fix):
    """Skip a test whose tool is missing, with the command that installs it; fail in CI."""
    message = f"{what} is not available: {fix}"
    if os.environ.get("HW2_REQUIRE_DATA") == "1":
        pytest.fail(message + " (HW2_REQUIRE_DATA=1: every test must run here)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def sydney_dir():
    """The Sydney-Captions folder named by $SYDNEY_DIR."""
    folder = os.environ.get("SYDNEY_DIR")
    if not folder or not (Path(folder) / "dataset.json").is_file():
        require_data("Sydney-Captions", "set SYDNEY_DIR to the dataset folder (dataset.json + images/)")
    return Path(folder)


@pytest.fixture(scope="session")
def sydney(sydney_dir):
    from data import sydney_captions

    return sydney_captions.load(sydney_dir)


@pytest.fixture(scope="session")
def q3_decoder():
    from autograder.submission import load_module

    return load_module(SOLUTION, "decoder.py")


@pytest.fixture(scope="session")
def q3_attention():
    from autograder.submission import load_module

    return load_module(SOLUTION, "decoder_with_attention.py")


def grade_cli(tree, out, *extra, env=None):
    """`python -m autograder grade <tree> --out <out> <extra>`: (results.json as a dict, its stdout)."""
    result = subprocess.run([sys.executable, "-m", "autograder", "grade", str(tree), "--out", str(out), *extra],
                            cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "results.json").read_text()), result.stdout


def selected_tests(request, *names):
    """Those of `names` (test functions of the requesting module) that this session runs (-k, -m)."""
    chosen = {item.originalname for item in request.session.items if item.module is request.module}
    return [name for name in names if name in chosen]


def graded_two_at_a_time(gradings):
    """{key: grade_cli's (results, stdout)} of `gradings` ({key: (tree, out, [extra arguments], env or None)}), run
    two at a time: a small grading keeps about one core busy (its children run one after another)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        futures = {key: pool.submit(grade_cli, tree, out, *extra, env=env)
                   for key, (tree, out, extra, env) in gradings.items()}
        return {key: future.result() for key, future in futures.items()}


def make_tree(tmp_path, changes=(), file=None, name="student"):
    """A copy of the reference's graded files in tmp_path/name, with `changes` ((old, new) pairs,
    each old text occurring once) made to `file`."""
    from autograder.submission import GRADED_FILES

    tree = tmp_path / name
    tree.mkdir()
    for filename in GRADED_FILES:
        shutil.copy(SOLUTION / filename, tree / filename)
    if file:
        text = (tree / file).read_text()
        for old, new in changes:
            assert text.count(old) == 1, f"{old!r} must occur once in solution/{file}; update tests/wrong_submissions.py"
            text = text.replace(old, new)
        (tree / file).write_text(text)
    return tree


def autograder_outcome(tree, test_id):
    """(status, message) of one rubric test on `tree`, as the grader computes it, with the probes run
    in this process (the same values as in the grading child: the same seeds)."""
    from autograder.checks import all_checks, outcome, seed_everything
    from autograder.submission import LocalSubmission

    sub = LocalSubmission(tree)
    try:
        seed_everything()
        return outcome(all_checks()[test_id], sub)
    finally:
        sub.cleanup()


class Graded:
    """results.json (as a dict), feedback.md and the printed summary of one grading written to `out`."""

    def __init__(self, out, stdout):
        self.out, self.stdout = Path(out), stdout
        self.results = json.loads((self.out / "results.json").read_text())
        self.feedback = (self.out / "feedback.md").read_text()


def _grading(tree, out, env, cwd=ROOT):
    """`python -m autograder grade <tree> --out <out>` started in `cwd` (every test), in the background."""
    return subprocess.Popen([sys.executable, "-m", "autograder", "grade", str(tree), "--out", str(out)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finished(run, tree):
    stdout, stderr = run.communicate(timeout=900)
    assert run.returncode == 0, f"the shared grading of {tree} failed: {stderr[-3000:]}"
    return stdout


@pytest.fixture(scope="session")
def graded_skeleton(tmp_path_factory):
    """One whole grading of assignment/ (the skeleton) through the command line, with the tests' budget: shared by
    the tests that only read its results (tests/test_autograder.py, the skeleton's golden files)."""
    out = tmp_path_factory.mktemp("graded-skeleton") / "out"
    env = dict(os.environ, HW2_BUDGET="test")
    return Graded(out, _finished(_grading(ASSIGNMENT, out, env), ASSIGNMENT))


def checkout_under_tmp(tmp_path):
    """A copy of the repository's files (as git lists them) under /tmp, where CI systems clone."""
    clone = tmp_path / "checkout"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    return clone


@pytest.fixture(scope="session")
def graded_reference(tmp_path_factory):
    """Two whole gradings of solution/ at once with the grading's budget (the grader uses one thread each): one
    from this checkout, one from a copy under /tmp with SYDNEY_DIR given through a symbolic link. Shared by the
    tests that only read the reference's results: (this checkout's, the copy's)."""
    from data import CACHE_DIR

    tmp_path = tmp_path_factory.mktemp("graded-reference")
    clone = checkout_under_tmp(tmp_path)
    link = tmp_path / "sydney-link"
    link.symlink_to(os.environ.get("SYDNEY_DIR") or tmp_path / "nowhere")
    here = dict(os.environ, HW2_BUDGET="grading")
    there = dict(here, SYDNEY_DIR=str(link), HW2_CACHE_DIR=str(CACHE_DIR), PYTHONPATH=str(clone))
    runs = [_grading(SOLUTION, tmp_path / "here", here),
            _grading("solution", tmp_path / "there", there, cwd=clone)]
    return tuple(Graded(tmp_path / where, _finished(run, SOLUTION)) for where, run in zip(("here", "there"), runs))
