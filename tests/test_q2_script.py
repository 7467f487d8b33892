"""A short real training run of the provided script, as students run it."""

import json
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SOLUTION

pytestmark = pytest.mark.slow  # trains


def test_training_script_smoke_run(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SOLUTION / "h2-q2.py"), "-epochs", "2", "-train_limit", "2000",
         "-batch_size", "16", "-learning_rate", "0.05", "-output_dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"Final test accuracy: (0\.\d{4})", last)
    assert match, f"unexpected last line: {last!r}"
    accuracy = float(match.group(1))
    assert accuracy > 0.5, f"2 epochs on 2,000 images should beat chance (0.10) by far; got {accuracy}"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["epoch"] == [1, 2] and len(metrics["train_loss"]) == 2 and len(metrics["valid_acc"]) == 2
    assert metrics["test_acc"] == accuracy
    for png in ["training-loss.png", "validation-accuracy.png", "kernels-conv1.png", "kernels-conv2.png"]:
        assert (tmp_path / png).stat().st_size > 1000, png
