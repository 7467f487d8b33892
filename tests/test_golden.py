"""Golden files: what three submissions get from the real command line (`python -m autograder
grade`), results.json and feedback.md, stored under tests/golden/<case>/. A change of a message's
wording, of points or of visibility then shows in review as a diff of these files.

Only tests whose verdicts depend neither on training nor on timing are graded: the skeleton's every
test (each fails at once with "not implemented": its grading is the one tests/conftest.py's
graded_skeleton shares), the others without *-accuracy, *-bleu, *-vectorized; what varies between
runs (times, the temporary folder, the sandbox's uid) is normalised before comparing and storing. After an intended change, rewrite the files with

    HW2_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py

and read their diff before committing it."""

import difflib
import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ASSIGNMENT, DEFAULT_SYDNEY_DIR, ROOT, make_tree
from tests.wrong_submissions import WRONG_SUBMISSIONS

pytestmark = pytest.mark.slow  # gradings through the real grader

GOLDEN = ROOT / "tests" / "golden"
UPDATE = os.environ.get("HW2_UPDATE_GOLDEN") == "1"
UPDATE_COMMAND = "HW2_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py"
FILES = ("results.json", "feedback.md")

Q22 = "2.2-architecture,2.2-output-shape,2.2-log-probabilities,2.2-equivalence,2.2-dropout,2.2-gradients,2.2-train-batch"
Q31A = "3.1a-output-shape,3.1a-equivalence,3.1a-state-and-dropout,3.1a-gradients"
SOFTMAX = next(w for w in WRONG_SUBMISSIONS if w[0] == "softmax instead of log-softmax")


def _decoder_exits(tmp_path):
    tree = make_tree(tmp_path, name="decoder-exits")
    (tree / "decoder.py").write_text("import sys\nsys.exit(3)\n")
    return tree


def _softmax(tmp_path):
    name, file, changes, *_ = SOFTMAX
    return make_tree(tmp_path, changes, file, name="softmax")


# case: (how its tree is made, the tests graded); the skeleton: every test, the shared grading of assignment/
SKELETON = "skeleton"  # every test fails with "not implemented"
CASES = {
    SKELETON: (None, None),
    "decoder-exits": (_decoder_exits, Q31A),  # decoder.py calls sys.exit(3) on import
    "softmax-instead-of-log-softmax": (_softmax, Q22),  # one mistake of tests/wrong_submissions.py
}


def grading_command(tree, out, only):
    return [sys.executable, "-m", "autograder", "grade", str(tree), "--out", str(out), "--only", only]


@pytest.fixture(scope="module")
def graded(tmp_path_factory, request):
    """{case: {file name: normalised text}} of the cases selected (-k); their gradings run at once (each
    mostly waits on its sandboxed children), beside the shared grading of the skeleton."""
    env = dict(os.environ, HW2_BUDGET="test", SYDNEY_DIR=os.environ.get("SYDNEY_DIR", str(DEFAULT_SYDNEY_DIR)))
    selected = {item.callspec.params["case"] for item in request.session.items
                if item.module is request.module and hasattr(item, "callspec")}
    runs = {}
    for case, (make, only) in CASES.items():
        if case not in selected or case == SKELETON:
            continue
        tmp_path = tmp_path_factory.mktemp(case)
        tree, out = make(tmp_path), tmp_path / "out"
        process = subprocess.Popen(grading_command(tree, out, only), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        runs[case] = (process, tree, out)
    found = {}
    if SKELETON in selected:
        skeleton = request.getfixturevalue("graded_skeleton")
        found[SKELETON] = {name: normalise(name, (skeleton.out / name).read_text(), ASSIGNMENT) for name in FILES}
    for case, (process, tree, out) in runs.items():
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, f"grading {case} failed: {stderr[-3000:]}"
        found[case] = {name: normalise(name, (out / name).read_text(), tree) for name in FILES}
    return found


def normalise(name, text, tree):
    """`text` without what varies between runs: times, the graded folder's path, the sandbox (its layer
    and uid depend on the machine and on whether the grader runs as root) and how CPU time is counted."""
    if name.endswith(".json"):
        results = json.loads(text)
        results["execution_time"] = "<seconds>"
        results["extra_data"]["sandbox"] = "<sandbox>"
        results["extra_data"]["cpu_accounting"] = "<cpu accounting>"
        for test in results["tests"]:
            test["extra_data"]["seconds"] = test["extra_data"]["cpu_seconds"] = "<seconds>"
        text = json.dumps(results, indent=2, ensure_ascii=False) + "\n"
    for path in sorted({str(tree), str(tree.resolve())}, key=len, reverse=True):
        text = text.replace(path, "<tree>")
    text = re.sub(r"(student code ran in:?) [^\n]*", r"\1 <sandbox>", text)
    text = re.sub(r"\buid \d+", "uid <uid>", text)
    return re.sub(r"\(\d+(\.\d+)? s\)", "(<duration>)", text)


@pytest.mark.parametrize("case", list(CASES))
def test_grading_matches_the_golden_files(graded, case):
    folder = GOLDEN / case
    if UPDATE:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in graded[case].items():
            (folder / name).write_text(text)
        return
    differences = []
    for name, text in graded[case].items():
        path = folder / name
        if not path.is_file():
            differences.append(f"{path.relative_to(ROOT)} is missing\n")
            continue
        diff = difflib.unified_diff(path.read_text().splitlines(keepends=True), text.splitlines(keepends=True),
                                    f"{path.relative_to(ROOT)} (golden)", f"{name} (this grading)")
        differences.extend(diff)
    only = CASES[case][1]
    if differences:
        pytest.fail(f"the grading of {case} ({f'--only {only}' if only else 'every test'}) differs from tests/golden/{case}:\n"
                    + "".join(differences) + f"\nIf the change is intended, rewrite the golden files with "
                    f"`{UPDATE_COMMAND}` and review their diff.", pytrace=False)
