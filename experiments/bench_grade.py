"""Benchmark: wall time of whole gradings of `solution/` and of the skeleton `assignment/`, side by side
in one run, graded three ways: one child at a time in the sequential order, each child started afresh
(`--sequential`: HW2_PARALLEL=1, HW2_TEMPLATE=0, the grader before children ran at once and were
forked); the children of one grading at once, started afresh (`--fresh`); and as the grader grades (at
once, forked from the warm template: autograder/template.py). With `--whole TREE`, one grading of TREE
with its peak memories; with `--by-question`, solution/ one question at a time.

    make bench-grade
    .venv/bin/python -m experiments.bench_grade --whole assignment [--sequential]

Peaks, sampled from /proc every 0.2 s, of proportional set sizes (Pss: the pages that forks share counted
once): grader_MB, the grading process and its worker processes together; children_MB, the grading children
together (autograder.child.runner processes, or the warm template and the children it forked); child_MB,
the largest child process. Their sum is what a grading needs of the machine's memory (Gradescope: 4 GB).
Target: solution/ within 30 s, the skeleton within 15 s on 2 cores. Last line: `speedup: N.Nx` (solution/,
as graded against the sequential order).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

from autograder import rubric
from autograder.grade import grade, parallel_children


def _resident_mb(pid, field="VmRSS", where="status"):
    """A process's `field` of /proc/<pid>/`where`, in MB (0 once it ended)."""
    try:
        for line in open(f"/proc/{pid}/{where}"):
            if line.startswith(field):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def _name(pid):
    try:
        return open(f"/proc/{pid}/comm").read().strip()
    except OSError:
        return ""


def _watch(peak):
    """Record the peaks (MB) of this grading process with its workers, and of its grading children."""
    me = str(os.getpid())
    while True:
        parents, argvs = {}, {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                argvs[pid] = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
                parents[pid] = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]
            except OSError:
                continue
        grader, children, largest = _resident_mb(me, "Pss", "smaps_rollup"), [], 0
        for pid, argv in argvs.items():
            above = parents[pid]
            while above in parents and above != me:  # only this grading's (the machine may run others)
                above = parents[above]
            if above != me:
                continue
            forked = b"autograder.child.template" in argv  # the template, its monitors and their children
            if (b"autograder.child.runner" in argv and not argv[0].endswith(b"bwrap")) or forked:
                children.append(_resident_mb(pid, "Pss", "smaps_rollup"))
                if not forked or _name(pid) == "hw2-child":  # (not the template or a monitor)
                    largest = max(largest, children[-1])
            elif parents[pid] == me and b"experiments.bench_grade" in argv:  # a worker: a fork of this process
                grader += _resident_mb(pid, "Pss", "smaps_rollup")
        peak["grader_MB"] = max(peak["grader_MB"], grader)
        peak["children_MB"] = max(peak["children_MB"], sum(children))
        peak["child_MB"] = max(peak["child_MB"], largest)
        time.sleep(0.2)


def whole(tree):
    peak = {"grader_MB": 0, "children_MB": 0, "child_MB": 0}
    threading.Thread(target=_watch, args=(peak,), daemon=True).start()
    with tempfile.TemporaryDirectory() as out:
        start = time.time()
        results = grade(tree, out=out, log=lambda *_: None)
        wall = time.time() - start
    print(json.dumps({"tree": tree, "parallel": parallel_children(), "score": results.score,
                      "max": results.max_score, "wall_s": round(wall, 1), **peak}))


MODES = {"sequential": {"HW2_PARALLEL": "1", "HW2_TEMPLATE": "0"}, "fresh": {"HW2_TEMPLATE": "0"}, "graded": {}}


def whole_in_process(tree, mode):
    """`whole(tree)` in a fresh process, graded the way `mode` (of MODES) says: its printed dict."""
    env = dict(os.environ, **MODES[mode])
    found = subprocess.run([sys.executable, "-m", "experiments.bench_grade", "--whole", tree], env=env,
                           capture_output=True, text=True, check=True)
    return json.loads(found.stdout.strip().splitlines()[-1])


def by_question():
    seconds = {}
    with tempfile.TemporaryDirectory() as out:
        for number in rubric.load().questions:
            start = time.time()
            results = grade("solution", out=f"{out}/{number}", only=[number], log=lambda *_: None)
            seconds[number] = time.time() - start
            print(f"question {number:5s}: {seconds[number]:6.1f} s  ({results.score:g} / {results.max_score:g} points)",
                  flush=True)
    print(f"total: {sum(seconds.values()):.0f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--whole", metavar="TREE", help="one grading of TREE, with peak memory")
    parser.add_argument("--sequential", action="store_true", help="one child at a time, each started afresh "
                                                                  "(HW2_PARALLEL=1, HW2_TEMPLATE=0)")
    parser.add_argument("--fresh", action="store_true", help="children started afresh (HW2_TEMPLATE=0)")
    parser.add_argument("--by-question", action="store_true", help="solution/, one question at a time")
    parser.add_argument("--trees", default="assignment,solution", help="the trees of the side-by-side run")
    args = parser.parse_args()
    if args.sequential or args.fresh:
        os.environ.update(MODES["sequential" if args.sequential else "fresh"])
    if args.whole:
        return whole(args.whole)
    if args.by_question:
        return by_question()
    speedup = None
    for tree in args.trees.split(","):
        runs = {}
        for mode in MODES:
            runs[mode] = found = whole_in_process(tree, mode)
            print(f"{tree:11s} {mode:10s} ({found['parallel']} at once): {found['wall_s']:6.1f} s  score "
                  f"{found['score']:g}/{found['max']:g}  peaks: grader {found['grader_MB']} MB, children "
                  f"{found['children_MB']} MB (largest {found['child_MB']} MB)", flush=True)
        if len({run["score"] for run in runs.values()}) > 1:
            print(f"{tree}: the scores differ between the ways of grading", flush=True)
        speedup = runs["sequential"]["wall_s"] / runs["graded"]["wall_s"]
        print(f"{tree:11s} speedup: {speedup:.1f}x (children at once: "
              f"{runs['sequential']['wall_s'] / runs['fresh']['wall_s']:.1f}x; forked too: {speedup:.1f}x)", flush=True)
    print(f"speedup: {speedup:.1f}x")


if __name__ == "__main__":
    main()
