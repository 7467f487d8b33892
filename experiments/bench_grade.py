"""Benchmark: wall time of one whole grading of `solution/`, split by question.

    make bench-grade

Target: a whole grading within 5 minutes on 2 cores (aim: 3). Last line: `total: N s`.
"""

import tempfile
import time

from autograder import rubric
from autograder.grade import grade


def main():
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
