"""Grade one tree: run each question's checks (the student's code in a sandboxed child process of
its own, see autograder/isolation.py), score them by the rubric, write `results.json` and
`feedback.md`.

    python -m autograder grade <tree> [--out DIR] [--only 2.2,3.1b]      (or: make grade STUDENT=<tree>)
"""

import os
import time
from pathlib import Path

import torch

from autograder import calibration
from autograder import rubric as rubric_module
from autograder import sandbox
from autograder.checks import NotRun, all_checks, outcome, seed_everything
from autograder.child.compare import CheckFailure
from autograder.isolation import StudentSubmission, capped
from autograder.results import FAILED, MANUAL, PASSED, GradingResults, TestResult
from autograder.submission import locate_tree, refused_files

TEST_SECONDS = int(os.environ.get("HW2_TEST_SECONDS", 150))
# the graded files each child sees: train.py (provided) imports both decoders
CHILD_FILES = {"q1.ipynb": ["q1.ipynb"], "h2-q2.py": ["h2-q2.py"],
               "decoder.py": ["decoder.py", "decoder_with_attention.py"],
               "decoder_with_attention.py": ["decoder.py", "decoder_with_attention.py"]}


def _grader_errors_not_run(check):
    """`check`, with an exception of its own turned into a result: "failed" once the child has answered
    (values of an unexpected form, which only code that tampers with its answers sends), else "not run"
    (a grader bug: the student loses nothing and the instructor sees it)."""

    def run(sub):
        try:
            return check(sub)
        except (CheckFailure, NotRun):
            raise
        except Exception as error:
            if sub.answered:
                raise CheckFailure(f"the values your code returned could not be checked ({type(error).__name__}: "
                                   f"{error}); they do not have the form the test expects") from error
            raise NotRun(f"the grader failed on this test ({type(error).__name__}: {error}); please tell your "
                         f"instructor") from error

    return run


def _run_file(tree, file, tests, on_result):
    """Run the checks of `tests` (of one student file) here, their probes in one sandboxed child."""
    checks = all_checks()
    sub = StudentSubmission(tree, TEST_SECONDS, files=CHILD_FILES.get(file))
    try:
        for test in tests:
            seed_everything()
            sub.begin_test()
            start = time.time()
            status, message = outcome(_grader_errors_not_run(checks[test.id]), sub)
            printed = capped("\n".join(sub.printed).strip())
            if printed and status == FAILED:
                message += f"\nYour code printed:\n{printed}"
            on_result(test.id, status, capped(message, 8000), time.time() - start)
    finally:
        sub.cleanup()


def grade(tree, out=None, only=None, log=print, allow_unsandboxed=False):
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
    torch.set_num_threads(int(os.environ.get("HW2_THREADS", 1)))  # the reference is timed as the child is
    for test in tests:  # a grader without its thresholds cannot grade: say so before starting
        if test.id in calibration.BUDGETS:
            calibration.get(test.id)
    layer = sandbox.layer(allow_unsandboxed)  # SandboxError: grading does not start
    results = GradingResults(str(tree), {n: q.title for n, q in rubric.questions.items()}, sandbox=layer.description)
    start = time.time()
    log(f"Grading {tree} ({len(tests)} tests); student code runs in: {layer.description}")
    refused = refused_files(tree)
    for test in (t for t in tests if t.manual):
        results.results.append(TestResult(test.id, test.question, test.name, 0.0, test.visibility, MANUAL, 0.0,
                                          f"graded by hand ({test.points:g} points); not part of this score"))
    by_id = {t.id: t for t in tests}

    def on_result(test_id, status, output, seconds):
        test = by_id[test_id]
        score = test.points if status == PASSED else 0.0
        results.results.append(TestResult(test.id, test.question, test.name, test.points, test.visibility,
                                          status, score, output, seconds))
        log(f"  [{status:7s}] {test.id:28s} {score:g}/{test.points:g}  ({seconds:.1f} s)")

    # one child per student file (the questions of q1.ipynb share one), so a crash in one file's
    # code cannot cost another file's tests
    for file in dict.fromkeys(q.file for q in rubric.questions.values()):
        file_tests = [t for t in tests if rubric.questions[t.question].file == file and not t.manual]
        if file in refused:  # not read at all: each of its tests says why
            for test in file_tests:
                on_result(test.id, FAILED, f"{refused[file]} (the grader did not read it)", 0.0)
        elif file_tests:
            _run_file(tree, file, file_tests, on_result)
    order = {t.id: i for i, t in enumerate(tests)}
    results.results.sort(key=lambda r: order[r.id])
    results.seconds = time.time() - start
    if out is not None:
        results.write(out)
    return results
