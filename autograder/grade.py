"""Grade one tree: run each question's checks in a child process, score them by the rubric,
write `results.json` and `feedback.md`.

    python -m autograder grade <tree> [--out DIR] [--only 2.2,3.1b]      (or: make grade STUDENT=<tree>)
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from autograder import calibration
from autograder import rubric as rubric_module
from autograder import sandbox
from autograder.results import FAILED, PASSED, GradingResults, TestResult
from autograder.submission import locate_tree

QUESTION_SECONDS = int(os.environ.get("HW2_QUESTION_SECONDS", 600))


def _run_question(tree, tests, on_result):
    """Run `tests` (of one question) in a child; returns {test id: (status, output, seconds)}."""
    read_fd, write_fd = os.pipe()
    argv, _ = sandbox.wrap([sys.executable, "-m", "autograder.worker", str(Path(tree).resolve()), str(write_fd)]
                           + [t.id for t in tests],
                           readable=[str(tree), os.environ.get("SYDNEY_DIR"), os.environ.get("HW2_CACHE_DIR")])
    env = dict(os.environ, MPLCONFIGDIR="/tmp/matplotlib", PYTHONDONTWRITEBYTECODE="1")
    child = subprocess.Popen(argv, pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                             cwd=Path(__file__).resolve().parents[1], start_new_session=True)
    os.close(write_fd)
    finished = {}
    deadline = time.time() + QUESTION_SECONDS
    with os.fdopen(read_fd) as channel:
        for line in channel:  # one line per finished test; ends when the child exits
            entry = json.loads(line)
            finished[entry["id"]] = (entry["status"], entry["output"], entry["seconds"])
            on_result(entry["id"], *finished[entry["id"]])
            if time.time() > deadline:
                break
    try:
        child.wait(timeout=max(1, deadline - time.time()))
        stderr = child.stderr.read().decode(errors="replace")
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, 9)
        child.wait()
        stderr = f"timed out after {QUESTION_SECONDS} s"
    for test in tests:
        if test.id not in finished:
            why = (f"the grading process stopped during this test (exit code {child.returncode}); "
                   f"your code may have called exit or crashed the interpreter. {stderr.strip()[-500:]}")
            finished[test.id] = (FAILED, why, 0.0)
            on_result(test.id, *finished[test.id])
    return finished


def grade(tree, out=None, only=None, log=print):
    tree = Path(tree)
    if not tree.is_dir():
        raise FileNotFoundError(f"{tree} is not a folder; give the folder holding h2-q2.py, decoder.py and "
                                f"decoder_with_attention.py")
    found = locate_tree(tree)
    if found != tree:
        log(f"The graded files are in {found}: grading that folder")
        tree = found
    rubric = rubric_module.load()
    tests = rubric.select(only)
    for test in tests:  # a grader without its thresholds cannot grade: say so before starting
        if test.id in calibration.BUDGETS:
            calibration.get(test.id)
    results = GradingResults(str(tree), {n: q.title for n, q in rubric.questions.items()})
    start = time.time()
    log(f"Grading {tree} ({len(tests)} tests)")
    _, warning = sandbox.wrap([])
    if warning:
        log(warning)
    for number in rubric.questions:
        question_tests = [t for t in tests if t.question == number]
        if not question_tests:
            continue
        by_id = {t.id: t for t in question_tests}

        def on_result(test_id, status, output, seconds):
            test = by_id[test_id]
            score = test.points if status == PASSED else 0.0
            results.results.append(TestResult(test.id, test.question, test.name, test.points, test.visibility,
                                              status, score, output, seconds))
            log(f"  [{status:7s}] {test.id:28s} {score:g}/{test.points:g}  ({seconds:.1f} s)")

        _run_question(tree, question_tests, on_result)
    order = {t.id: i for i, t in enumerate(tests)}
    results.results.sort(key=lambda r: order[r.id])
    results.seconds = time.time() - start
    if out is not None:
        results.write(out)
    return results
