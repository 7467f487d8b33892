"""Shared fixtures: the repository's trees and a seeded torch."""

import random
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solution"
ASSIGNMENT = ROOT / "assignment"


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same random state."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def q2():
    """The reference `solution/h2-q2.py` as a module."""
    from autograder.submission import load_module

    return load_module(SOLUTION, "h2-q2.py")
