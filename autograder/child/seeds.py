"""One seeding for every place a number is compared: the grader, the grading child, the public tests."""

import random

import numpy as np
import torch


def seed_everything(seed=0):
    """Seed Python, numpy and torch: every check starts from the same random state, wherever it runs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
