"""Precision of the grading: each plausible mistake loses exactly the tests it declares
(tests/wrong_submissions.py, PRECISION) and keeps every other test it runs, through the real
grading path (`grade-all`: the sandboxed child, one grading process per job). The mistakes of one
student file are graded together, on the questions of that file and of the training tests they
declare, with the reduced training budget reserved for the tests (HW2_BUDGET=test); a hang costs
its time floor once (HW2_TEST_FLOOR, lowered here)."""

import json
import os
import subprocess
import sys

import pytest

from autograder import rubric as rubric_module
from tests.conftest import ROOT, make_tree
from tests.wrong_submissions import PRECISION

pytestmark = pytest.mark.slow  # grades the whole corpus


FILES = sorted({file for _, file, _, _, _ in PRECISION})


@pytest.mark.parametrize("file", FILES)
def test_each_mistake_loses_exactly_its_tests(tmp_path, file):
    """The mistakes of one student file (`-k decoder.py` grades those of decoder.py only)."""
    rubric = rubric_module.load()
    mistakes = []
    for index, (name, where, changes, loses, keeps) in enumerate(PRECISION):
        if where == file:
            mistakes.append((f"mistake-{index:02d}", name, loses))
            (tmp_path / "class").mkdir(exist_ok=True)
            make_tree(tmp_path / "class", changes, file, name=f"mistake-{index:02d}")
    declared = {t for _, name, loses in mistakes for t in loses} | {
        t for n, f, c, loses, keeps in PRECISION if f == file for t in keeps}
    questions = {n for n, q in rubric.questions.items() if q.file == file} | {t.split("-")[0] for t in declared}
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "autograder", "grade-all", str(tmp_path / "class"), "--out", str(out),
                             "--jobs", "2", "--only", ",".join(sorted(questions))], cwd=ROOT, capture_output=True,
                            text=True, timeout=900, env=dict(os.environ, HW2_TEST_FLOOR="6", HW2_BUDGET="test"))
    assert result.returncode == 0, result.stderr[-2000:]
    wrong = {}
    for student, name, loses in mistakes:
        results = json.loads((out / student / "results.json").read_text())
        lost = {t["extra_data"]["id"] for t in results["tests"] if t["score"] < t["max_score"]}
        if lost != loses:
            outputs = {t["extra_data"]["id"]: t["output"][:300] for t in results["tests"]}
            wrong[name] = {"lost but should keep": sorted(lost - loses), "kept but should lose": sorted(loses - lost),
                           "messages": {t: outputs[t] for t in sorted(lost ^ loses)}}
    print(f"precision, {file}: {len(mistakes) - len(wrong)} / {len(mistakes)} mistakes lose exactly their tests")
    assert not wrong, json.dumps(wrong, indent=1)
