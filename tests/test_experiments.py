"""The benchmarks behind `make bench-q2`, `bench-q3`, `bench-grade` and `bench-grade-all`, each run on a
tiny budget: they still run to their last line, so that a change elsewhere cannot break one silently.
The figures they print are not checked (they are measurements); what they print is."""

import json
import re
import subprocess
import sys

import pytest

from tests.conftest import ASSIGNMENT, ROOT, require_data

NUMBER = r"\d+(\.\d+)?"


def _last_line(capsys):
    return capsys.readouterr().out.strip().splitlines()[-1]


@pytest.mark.slow  # a few seconds: the per-sample loop, forward and backward, on batches of 64
def test_bench_q2_compares_the_vectorized_cnn_with_a_loop(capsys, monkeypatch):
    from experiments import bench_q2

    monkeypatch.chdir(ROOT)
    bench_q2.main(["--rounds", "1", "--repeats", "1"])
    assert re.fullmatch(rf"speedup at batch 8: {NUMBER}x", _last_line(capsys))


@pytest.mark.slow  # trains both decoders on a batch
def test_bench_q3_measures_training_and_the_attention_step(sydney_dir, capsys, monkeypatch):
    from data import DataError, features
    from experiments import bench_q3

    try:
        features.load(sydney_dir, extract_if_missing=False)
    except DataError as error:
        require_data("the cached image features", str(error))
    monkeypatch.chdir(ROOT)
    bench_q3.main(["--batches", "1"])
    output = capsys.readouterr().out
    assert re.search(rf"training with attention: {NUMBER} captions/s", output), output
    assert re.fullmatch(rf"attention speedup: {NUMBER}x", output.strip().splitlines()[-1]), output


def _notebook_only(tmp_path):
    """A tree holding the skeleton's notebook only: a grading of it is quick (its other files are missing)."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "q1.ipynb").write_bytes((ASSIGNMENT / "q1.ipynb").read_bytes())
    return tree


@pytest.mark.slow
def test_bench_grade_compares_the_three_ways_of_grading_side_by_side(tmp_path):
    """The sequential order with children started afresh, children at once, forked children: each a whole
    grading (`--whole` in a process of its own, with its peaks), the same score, and the speedup line."""
    tree = _notebook_only(tmp_path)
    done = subprocess.run([sys.executable, "-m", "experiments.bench_grade", "--trees", str(tree)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    for mode in ("sequential", "fresh", "graded"):
        assert any(re.search(rf"{mode} +\(\d+ at once\): +{NUMBER} s  score 0/100", line) for line in lines), done.stdout
    assert "differ" not in done.stdout
    assert re.fullmatch(rf"speedup: {NUMBER}x", lines[-1]), done.stdout


@pytest.mark.slow
def test_bench_grade_all_runs_on_this_machine_and_on_a_local_scheduler(tmp_path):
    done = subprocess.run([sys.executable, "-m", "experiments.bench_grade_all", "-n", "1", "--only", "1.1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    for run in ("JOBS=1", "JOBS=2", "dask, 1 worker", "dask, 2 workers"):
        assert any(line.startswith(f"{run}: 1 submissions in ") for line in lines), done.stdout
    assert re.fullmatch(rf"speedup with 2 jobs: {NUMBER}x", lines[-1]), done.stdout


@pytest.mark.slow
def test_bench_grade_all_reports_one_grading_process_peaks(tmp_path):
    done = subprocess.run([sys.executable, "-m", "experiments.bench_grade_all", "--grading-process",
                           str(_notebook_only(tmp_path)), "--only", "1.1"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["score"] == 0 and measured["VmHWM_MB"] > 0 and measured["wall_seconds"] > 0
