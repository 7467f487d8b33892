"""A short real training run of the provided train.py beats a trivial captioner."""

import collections
import json
import re
import subprocess
import sys

import pytest

from autograder.submission import load_module
from tests.conftest import ROOT, SOLUTION

pytestmark = pytest.mark.slow  # trains


def test_short_training_beats_the_most_frequent_caption(sydney, tmp_path):
    result = subprocess.run(
        [sys.executable, str(SOLUTION / "train.py"), "--epochs", "2", "--train_limit", "250",
         "--output_dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    match = re.fullmatch(r"Test BLEU-4: (0\.\d{4})", lines[-1])
    assert match, f"unexpected last line: {lines[-1]!r}"
    assert sum(line.startswith("caption of ") for line in lines) == 3

    # the trivial captioner: the most frequent training caption for every test image
    train = load_module(SOLUTION, "train.py")
    counts = collections.Counter(c for image in sydney.split("train") for c in image.captions)
    constant = list(counts.most_common(1)[0][0])
    test = sydney.split("test")
    baseline, _ = train.bleu4([constant] * len(test), [[list(c) for c in image.captions] for image in test])
    bleu = float(match.group(1))
    assert bleu > baseline + 0.05, f"2 short epochs gave test BLEU-4 {bleu}; the most frequent caption gets {baseline:.4f}"

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["val_bleu4"]) == 2 and round(metrics["test_bleu4"], 4) == bleu
    captions = json.loads((tmp_path / "test-captions.json").read_text())
    assert len(captions) == 58 and all(len(c["references"]) == 5 for c in captions.values())
    for png in ("training-loss.png", "validation-bleu4.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_attention_run_draws_the_attention_maps(sydney, tmp_path):
    result = subprocess.run(
        [sys.executable, str(SOLUTION / "train.py"), "--use_attention", "--epochs", "1", "--train_limit", "20",
         "--features_layer", "blocks", "--output_dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for stem in ("219", "540", "357"):
        assert (tmp_path / f"attention-{stem}.png").stat().st_size > 5000
