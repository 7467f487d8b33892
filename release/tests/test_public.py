"""The public tests of Homework 2: the same checks, with the same messages, as the autograder's
tests marked public in the rubric, the ones you see at once. The autograder also runs tests shown
after the due date (equivalence with the statement's networks, CPU time, short trainings); see
README.md.

    make test                                   # all public tests
    .venv/bin/python -m pytest -k 3.1b          # one question's
"""

from pathlib import Path

import pytest
import torch

from autograder.checks import all_checks, outcome, seed_everything
from autograder.child.compare import PASSED
from autograder.child.submission import Submission
from autograder.rubric import load

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_TESTS = load().public_tests()


@pytest.fixture(scope="module")
def submission():
    return Submission(ROOT)  # your files, where they are


@pytest.mark.parametrize("test", PUBLIC_TESTS, ids=[t.id for t in PUBLIC_TESTS])
def test_public(test, submission, record_property):
    seed_everything()  # as the autograder does before every test
    torch.set_num_threads(1)
    status, message = outcome(all_checks()[test.id], submission)
    record_property("possible", test.points)
    record_property("earned", test.points if status == PASSED else 0)
    if status != PASSED:
        pytest.fail(f"{test.id} ({test.points:g} points) {test.name}\n    {message}", pytrace=False)
