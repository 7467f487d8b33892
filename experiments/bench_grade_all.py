"""Benchmark batch grading: the same N copies of solution/ graded with JOBS=1, then JOBS=2.

    make bench-grade-all [N=4] [ONLY=3.1a]

Prints submissions per minute for each and the speedup (target on 2 cores: at least 1.7x).
Last line: `speedup with 2 jobs: N.Nx`.
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from autograder.batch import grade_all


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=4, help="number of submissions")
    parser.add_argument("--only", default=None, help="comma-separated questions (default: all)")
    args = parser.parse_args(argv)
    only = args.only.split(",") if args.only else None

    with tempfile.TemporaryDirectory() as tmp:
        submissions = Path(tmp) / "submissions"
        for i in range(args.n):
            shutil.copytree("solution", submissions / f"student{i:02d}",
                            ignore=shutil.ignore_patterns("__pycache__", "utils.py", "train.py"))
        rates = {}
        for jobs in (1, 2):
            start = time.time()
            grade_all(submissions, Path(tmp) / f"out{jobs}", jobs=jobs, only=only, log=lambda *_: None)
            minutes = (time.time() - start) / 60
            rates[jobs] = args.n / minutes
            print(f"JOBS={jobs}: {args.n} submissions in {minutes * 60:.0f} s, {rates[jobs]:.2f} submissions/min",
                  flush=True)
    print(f"speedup with 2 jobs: {rates[2] / rates[1]:.1f}x")


if __name__ == "__main__":
    main()
