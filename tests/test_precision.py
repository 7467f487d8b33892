"""Precision of the grading: each plausible mistake loses exactly the tests it declares
(tests/wrong_submissions.py, PRECISION) and keeps every other test it runs, through the real
grading path (the sandboxed child). Each mistake runs the cheap tests of its file's questions
and the training tests it declares, with the reduced training budget reserved for the tests
(HW2_BUDGET=test); a hang costs its time floor once (HW2_TEST_FLOOR, lowered here)."""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from autograder import rubric as rubric_module
from autograder.calibration import BUDGETS
from tests.conftest import ROOT
from tests.test_autograder import make_tree
from tests.wrong_submissions import PRECISION


def _selection(file, loses, keeps):
    """The cheap tests of the questions of `file`, and the training tests declared."""
    rubric = rubric_module.load()
    questions = {n for n, q in rubric.questions.items() if q.file == file} | {t.split("-")[0] for t in loses | keeps}
    return [t.id for t in rubric.tests if not t.manual and t.question in questions
            and (t.id not in BUDGETS or t.id in loses | keeps)]


def _grade(tmp_path, index, entry):
    name, file, changes, loses, keeps = entry
    (tmp_path / str(index)).mkdir()
    tree = make_tree(tmp_path / str(index), changes, file)
    out = tmp_path / str(index) / "out"
    env = dict(os.environ, HW2_TEST_FLOOR="6", HW2_BUDGET="test")
    selection = _selection(file, loses, keeps)
    result = subprocess.run([sys.executable, "-m", "autograder", "grade", str(tree), "--out", str(out), "--only",
                             ",".join(selection)], cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    lost = {t["extra_data"]["id"] for t in results["tests"] if t["score"] < t["max_score"]}
    return name, loses, lost, {t["extra_data"]["id"]: t["output"][:300] for t in results["tests"]}


def test_each_mistake_loses_exactly_its_tests(tmp_path):
    (tmp_path / "trees").mkdir()
    with ThreadPoolExecutor(max_workers=2) as pool:
        graded = list(pool.map(lambda item: _grade(tmp_path / "trees", *item), enumerate(PRECISION)))
    wrong = {name: {"lost but should keep": sorted(lost - loses), "kept but should lose": sorted(loses - lost),
                    "messages": {t: outputs[t] for t in sorted(lost ^ loses)}}
             for name, loses, lost, outputs in graded if lost != loses}
    precise = len(PRECISION) - len(wrong)
    print(f"precision: {precise} / {len(PRECISION)} mistakes lose exactly their tests")
    assert not wrong, json.dumps(wrong, indent=1)
