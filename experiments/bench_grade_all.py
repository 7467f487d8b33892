"""Benchmark batch grading: the same N copies of solution/ graded with JOBS=1 and JOBS=2 on this machine,
then through a local Dask scheduler with 1 and 2 workers (one thread each), as `--scheduler` grades.

    make bench-grade-all [N=4] [ONLY=3.1a]

Prints submissions per minute for each, the speedups against JOBS=1, each Dask run's cost per task
beyond this machine's grading (the scheduler, the worker's check), and what that predicts for a class
graded by N workers with a core each. Last line: `speedup with 2 jobs: N.Nx`.
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from autograder.batch import grade_all
from autograder.submission import PROVIDED_FILES


def _timed(submissions, out, **kwargs):
    start = time.time()
    grade_all(submissions, out, log=lambda *_: None, **kwargs)
    return time.time() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=4, help="number of submissions")
    parser.add_argument("--only", default=None, help="comma-separated questions (default: all)")
    parser.add_argument("--no-dask", action="store_true", help="only this machine's JOBS=1 and JOBS=2")
    args = parser.parse_args(argv)
    only = args.only.split(",") if args.only else None

    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        submissions = Path(tmp) / "submissions"
        for i in range(args.n):
            shutil.copytree("solution", submissions / f"student{i:02d}",
                            ignore=shutil.ignore_patterns("__pycache__", *PROVIDED_FILES))

        def report(name):
            print(f"{name}: {args.n} submissions in {seconds[name]:.0f} s, "
                  f"{args.n / seconds[name] * 60:.2f} submissions/min", flush=True)

        for jobs in (1, 2):
            seconds[f"JOBS={jobs}"] = _timed(submissions, Path(tmp) / f"jobs{jobs}", jobs=jobs, only=only)
            report(f"JOBS={jobs}")
        if not args.no_dask:
            from distributed import LocalCluster

            for workers in (1, 2):
                name = f"dask, {workers} worker{'s' if workers > 1 else ''}"
                with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                                  memory_limit=None) as cluster:
                    seconds[name] = _timed(submissions, Path(tmp) / f"dask{workers}", only=only,
                                           scheduler=cluster.scheduler_address)
                report(name)

    base = seconds["JOBS=1"]
    per_student = base / args.n
    print(f"one student on one core: {per_student:.1f} s (JOBS=1)")
    if not args.no_dask:
        print(f"speedup against JOBS=1: JOBS=2 {base / seconds['JOBS=2']:.2f}x, "
              f"dask 1 worker {base / seconds['dask, 1 worker']:.2f}x, "
              f"dask 2 workers {base / seconds['dask, 2 workers']:.2f}x")
        overhead = (seconds["dask, 1 worker"] - base) / args.n
        print(f"dask's cost per task beyond JOBS=1 (scheduler, worker check spread over {args.n}): {overhead:+.1f} s")
        for workers in (10, 50, 100):
            minutes = 500 * (per_student + max(overhead, 0)) / workers / 60
            print(f"prediction: 500 students on {workers} workers (a core each, this machine's speed): "
                  f"{minutes:.0f} min")
    print(f"speedup with 2 jobs: {base / seconds['JOBS=2']:.1f}x")


if __name__ == "__main__":
    main()
