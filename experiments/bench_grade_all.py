"""Benchmark batch grading: the same N copies of solution/ graded with JOBS=1 and JOBS=2 on this machine,
then through a local Dask scheduler with 1 and 2 workers (one thread each) over mutual TLS, with
certificates made for the run (tools/cluster-certs.sh), as `--scheduler --tls` grades.

    make bench-grade-all [N=4] [ONLY=3.1a]
    .venv/bin/python -m experiments.bench_grade_all --grading-process solution    # one grading process's peaks

Each grading runs its children up to the CPUs over JOBS at once (HW2_PARALLEL, autograder/grade.py).
Prints submissions per minute for each, the time per student at JOBS=1 and JOBS=2, the speedups against
JOBS=1, each Dask run's cost per task beyond this machine's grading (the scheduler, the worker's check),
and what that predicts for a class
graded by N workers with a core each. Last line: `speedup with 2 jobs: N.Nx`. With --grading-process,
one grading process (`python -m autograder.batch`, as grade-all runs it) on TREE, its status read from
/proc every 0.1 s: peak resident memory (VmHWM), peak address space (VmPeak), the largest data segment
(VmData) and when its first test began; the numbers behind batch.GRADER_MEMORY_GB and
DEADLINE_MARGIN_SECONDS.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autograder import ROOT
from autograder.batch import grade_all
from autograder.grade import parallel_children
from autograder.submission import PROVIDED_FILES


def grading_process(tree, only=None):
    """One grading process on `tree`, every test (or those of `only`), sampled from /proc: a dict of its peaks
    and times."""
    peak = {"VmHWM": 0, "VmPeak": 0, "VmData": 0}
    with tempfile.TemporaryDirectory() as folder:
        request = {"kind": "grade", "student": "bench", "path": os.path.abspath(tree), "only": only,
                   "allow_unsandboxed": False, "check": None}  # the grading process runs its self-check too
        start, first_test = time.time(), None
        process = subprocess.Popen([sys.executable, "-m", "autograder.batch", folder], stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        process.stdin.write(json.dumps(request))
        process.stdin.close()
        while process.poll() is None:
            try:
                for line in open(f"/proc/{process.pid}/status"):
                    key, _, value = line.partition(":")
                    if key in peak:
                        peak[key] = max(peak[key], int(value.split()[0]) // 1024)
            except OSError:
                pass
            if first_test is None and os.path.exists(f"{folder}/out/results.json"):
                first_test = time.time() - start
            time.sleep(0.1)
        wall = time.time() - start
        results = json.loads(Path(folder, "out", "results.json").read_text())
    return {"tree": tree, "score": results["score"], "tests_seconds": results["execution_time"],
            "wall_seconds": round(wall, 1), "first_test_after_seconds": round(first_test or 0, 1),
            **{f"{key}_MB": value for key, value in peak.items()}}


def _certificates(folder):
    """A Security for each role of a local cluster, from certificates made for the run, and the client's folder."""
    from distributed.security import Security

    subprocess.run(["sh", str(ROOT / "tools" / "cluster-certs.sh"), str(folder)], check=True, capture_output=True)
    files = {role: {name: str(folder / role / f"{name}.pem") for name in ("ca", "cert", "key")}
             for role in ("scheduler", "worker", "client")}
    return Security(tls_ca_file=files["scheduler"]["ca"], require_encryption=True,
                    tls_scheduler_cert=files["scheduler"]["cert"], tls_scheduler_key=files["scheduler"]["key"],
                    tls_worker_cert=files["worker"]["cert"], tls_worker_key=files["worker"]["key"],
                    tls_client_cert=files["client"]["cert"], tls_client_key=files["client"]["key"]), folder / "client"


def _timed(submissions, out, **kwargs):
    start = time.time()
    grade_all(submissions, out, log=lambda *_: None, **kwargs)
    return time.time() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=4, help="number of submissions")
    parser.add_argument("--only", default=None, help="comma-separated questions (default: all)")
    parser.add_argument("--no-dask", action="store_true", help="only this machine's JOBS=1 and JOBS=2")
    parser.add_argument("--grading-process", metavar="TREE", help="only one grading process on TREE, with its peaks")
    args = parser.parse_args(argv)
    only = args.only.split(",") if args.only else None
    if args.grading_process:
        print(json.dumps(grading_process(args.grading_process, only)))
        return

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

            security, client_certs = _certificates(Path(tmp) / "tls")
            for workers in (1, 2):
                name = f"dask, {workers} worker{'s' if workers > 1 else ''}"
                with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                                  memory_limit=None, protocol="tls://", security=security) as cluster:
                    seconds[name] = _timed(submissions, Path(tmp) / f"dask{workers}", only=only,
                                           scheduler=cluster.scheduler_address, tls=client_certs)
                report(name)

    base = seconds["JOBS=1"]
    per_student = base / args.n
    print(f"time per student: {per_student:.1f} s at JOBS=1 (each grading's children {parallel_children({}):d} at once), "
          f"{seconds['JOBS=2'] / args.n:.1f} s at JOBS=2 ({parallel_children({'HW2_JOBS': '2'}):d} at once)")
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
