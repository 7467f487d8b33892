"""Precision of the grading: each plausible mistake loses exactly the tests it declares
(tests/wrong_submissions.py, PRECISION) and keeps every other test it runs, through the real
grading path (`grade-all`: the sandboxed child, one grading process per job). The mistakes of one
student file are graded together, on the questions of that file and the other questions' tests they
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


def _selection(rubric, file, declared):
    """--only for mistakes of `file` declaring `declared`: the file's questions, and the other tests they declare."""
    own = {n for n, q in rubric.questions.items() if q.file == file}
    return ",".join(sorted(own | {t for t in declared if t.split("-")[0] not in own}))


@pytest.mark.parametrize("file", FILES)
def test_each_mistake_loses_exactly_its_tests(tmp_path, file):
    """The mistakes of one student file (`-k decoder.py` grades those of decoder.py only). Those that declare
    a test of another question (a broken decoder_with_attention.py keeps 3.1a-bleu) are graded with it, in a
    batch of their own at the same time, so that the others are not graded on that question too."""
    rubric = rubric_module.load()
    batches = {}  # --only: [(student, mistake's name, tests it loses)]
    for index, (name, where, changes, loses, keeps) in enumerate(PRECISION):
        if where == file:
            only = _selection(rubric, file, loses | keeps)
            batches.setdefault(only, []).append((f"mistake-{index:02d}", name, loses))
            folder = tmp_path / f"class-{list(batches).index(only)}"
            folder.mkdir(exist_ok=True)
            make_tree(folder, changes, file, name=f"mistake-{index:02d}")
    env = dict(os.environ, HW2_TEST_FLOOR="6", HW2_BUDGET="test")
    runs = {only: subprocess.Popen(
        [sys.executable, "-m", "autograder", "grade-all", str(tmp_path / f"class-{i}"), "--out", str(tmp_path / f"out-{i}"),
         "--jobs", str(min(2, len(batches[only]))), "--only", only], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env) for i, only in enumerate(batches)}
    for only, run in runs.items():
        _, stderr = run.communicate(timeout=900)
        assert run.returncode == 0, f"grade-all --only {only}: {stderr[-2000:]}"
    wrong, mistakes = {}, [(i, *mistake) for i, group in enumerate(batches.values()) for mistake in group]
    for i, student, name, loses in mistakes:
        results = json.loads((tmp_path / f"out-{i}" / student / "results.json").read_text())
        lost = {t["extra_data"]["id"] for t in results["tests"] if t["score"] < t["max_score"]}
        if lost != loses:
            outputs = {t["extra_data"]["id"]: t["output"][:300] for t in results["tests"]}
            wrong[name] = {"lost but should keep": sorted(lost - loses), "kept but should lose": sorted(loses - lost),
                           "messages": {t: outputs[t] for t in sorted(lost ^ loses)}}
    print(f"precision, {file}: {len(mistakes) - len(wrong)} / {len(mistakes)} mistakes lose exactly their tests "
          f"(--only {' and '.join(batches)})")
    assert not wrong, json.dumps(wrong, indent=1)
