"""The grader's environment: it checks itself before grading anyone, stops cleanly when
interrupted, and finishes a submission that hangs everywhere within its budget. None of the
grader's failures is written as a student's. (That it works from any checkout, under /tmp with
the data through a link, is tests/test_autograder.py's reference test.)"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, SOLUTION

pytestmark = pytest.mark.slow  # gradings, interrupted or hanging

HANG = "while True:\n    pass\n"


def _grade(tree, out, *extra, env=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "autograder", "grade", str(tree), "--out", str(out), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=dict(os.environ, **(env or {})))


def _hanging_tree(tmp_path):
    tree = tmp_path / "student"
    tree.mkdir()
    for name in ("h2-q2.py", "decoder.py", "decoder_with_attention.py"):
        (tree / name).write_text("import torch\n" + HANG)
    notebook = json.loads((SOLUTION / "q1.ipynb").read_text())
    for cell in notebook["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("solution") and cell["cell_type"] == "code":
            cell["source"] = HANG
    (tree / "q1.ipynb").write_text(json.dumps(notebook))
    return tree


@pytest.mark.parametrize("env, words", [
    ({"HW2_SANDBOX": "bubblewrap", "PATH": "/nonexistent"}, "bubblewrap is not installed"),
    ({"HW2_MEMORY_GB": "1"}, "memory limit (HW2_MEMORY_GB=1)"),
], ids=["no bubblewrap", "memory limit too low"])
def test_a_broken_environment_stops_before_grading_with_the_cause(tmp_path, env, words):
    result = _grade(SOLUTION, tmp_path / "out", "--only", "3.1a", env=env, timeout=300)
    assert result.returncode != 0
    assert words in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "out").exists(), "a broken grader must write no student's results"


def test_a_submission_that_hangs_everywhere_finishes_within_the_budget(tmp_path):
    start = time.time()
    result = _grade(_hanging_tree(tmp_path), tmp_path / "out", env={"HW2_TEST_FLOOR": "5", "HW2_TOTAL_SECONDS": "120"})
    took = time.time() - start
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    autograded = [t for t in results["tests"] if not t["extra_data"]["manual"]]
    assert results["score"] == 0 and not results["extra_data"]["incomplete"]
    assert all(t["status"] == "failed" for t in autograded)
    assert all("timed out" in t["output"] for t in autograded), [t["output"][:200] for t in autograded]
    assert took < 150, f"a submission hanging everywhere took {took:.0f} s"


def _descendants(pid):
    """The processes below `pid` (from /proc's parent ids)."""
    parents = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = set(), [pid]
    while todo:
        below = todo.pop()
        children = [child for child, parent in parents.items() if parent == below]
        found.update(children)
        todo.extend(children)
    return found


def _runners(pids):
    """Those of `pids` still running a grading child (autograder.child.runner, or a child forked from the
    warm template: hw2-child), not a zombie."""
    alive = []
    for pid in pids:
        try:
            command = open(f"/proc/{pid}/cmdline", "rb").read()
            name = open(f"/proc/{pid}/comm", "rb").read().strip()
            state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if (b"autograder.child.runner" in command or name == b"hw2-child") and state != "Z":
            alive.append(pid)
    return alive


def test_an_interruption_writes_what_is_done_and_charges_no_one(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "autograder", "grade", str(_hanging_tree(tmp_path)), "--out",
                                str(tmp_path / "out")], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=dict(os.environ, HW2_TEST_FLOOR="60"))
    results_file = tmp_path / "out" / "results.json"
    deadline = time.time() + 120
    while not results_file.exists() and time.time() < deadline:  # the self-check has passed: grading started
        time.sleep(0.5)
    time.sleep(3)
    children = _descendants(process.pid)  # this grading's (other gradings may run on the machine meanwhile)
    assert _runners(children), "the grading was interrupted before its first child started"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr
    results = json.loads(results_file.read_text())
    assert results["extra_data"]["interrupted"] and results["extra_data"]["incomplete"]
    from autograder import rubric

    assert results["extra_data"]["max_score"] == 100  # every test is listed, the ones not reached as not run
    not_run = [t for t in results["tests"] if t["extra_data"]["not_run"]]
    assert not_run and all("interrupted" in t["output"] for t in not_run)
    assert all(t["score"] == 0 for t in results["tests"])
    assert len(results["tests"]) == len(rubric.load().tests)
    time.sleep(1)
    assert not _runners(children), "a grading child outlived the interrupted grading"
