"""Benchmark: wall time of one whole grading of `solution/`, split by question; or, with
`--whole TREE`, one grading of TREE in one go with its peak memory (the grading process's, and
the largest child's, sampled from /proc every 0.2 s).

    make bench-grade
    .venv/bin/python -m experiments.bench_grade --whole assignment

Target: a whole grading within 5 minutes on 2 cores (aim: 3). Last line: `total: N s`.
"""

import argparse
import json
import os
import resource
import tempfile
import threading
import time

from autograder import rubric
from autograder.grade import grade


def _watch_children(peak):
    """Record the largest VmHWM (MB) of the grading children (python -m autograder.child.runner)."""
    while True:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
                if b"autograder.child.runner" in argv and not argv[0].endswith(b"bwrap"):
                    for line in open(f"/proc/{pid}/status"):
                        if line.startswith("VmHWM"):
                            peak["child_MB"] = max(peak["child_MB"], int(line.split()[1]) // 1024)
            except OSError:
                pass
        time.sleep(0.2)


def whole(tree):
    peak = {"child_MB": 0}
    threading.Thread(target=_watch_children, args=(peak,), daemon=True).start()
    with tempfile.TemporaryDirectory() as out:
        start = time.time()
        results = grade(tree, out=out, log=lambda *_: None)
        wall = time.time() - start
    print(json.dumps({"tree": tree, "score": results.score, "max": results.max_score, "wall_s": round(wall, 1),
                      "grader_peak_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, **peak}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--whole", metavar="TREE", help="one grading of TREE, with peak memory")
    args = parser.parse_args()
    if args.whole:
        return whole(args.whole)
    questions = list(rubric.load().questions)
    seconds = {}
    with tempfile.TemporaryDirectory() as out:
        for number in questions:
            start = time.time()
            results = grade("solution", out=f"{out}/{number}", only=[number], log=lambda *_: None)
            seconds[number] = time.time() - start
            print(f"question {number:5s}: {seconds[number]:6.1f} s  ({results.score:g} / {results.max_score:g} points)",
                  flush=True)
    print(f"total: {sum(seconds.values()):.0f} s")


if __name__ == "__main__":
    main()
