"""One grading runs its independent children at once (autograder/grade.py, HW2_PARALLEL): the results are
those of the sequential order (content and order); a file whose code timed out fails its later tests at
once; a timeout on wall time beside a sibling child is graded again alone; no two children share a uid."""

import json
import os
import re
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from autograder import grade, sandbox
from autograder.child.compare import TIMED_OUT
from autograder.results import FAILED, PASSED
from autograder.rubric import RubricError
from tests.conftest import ROOT, SOLUTION

GRADED = ("q1.ipynb", "h2-q2.py", "decoder.py", "decoder_with_attention.py")


def test_children_at_once_default_to_the_cpus_over_the_jobs():
    cpus = len(os.sched_getaffinity(0))
    assert grade.parallel_children({}) == cpus
    assert grade.parallel_children({"HW2_JOBS": "2"}) == max(1, cpus // 2)
    assert grade.parallel_children({"HW2_JOBS": str(cpus + 1)}) == 1
    assert grade.parallel_children({"HW2_PARALLEL": "3", "HW2_JOBS": "2"}) == 3
    for bad in ("0", "two", "-1"):
        with pytest.raises(RubricError, match="HW2_PARALLEL"):
            grade.parallel_children({"HW2_PARALLEL": bad})


# ---- the scheduling, with the checks replaced by a script (fast) --------------------------------------------
def _fake_run_file(script, record):
    """A `_run_file` whose tests do what `script` says: {test id: (seconds, outcome)}, outcome "pass",
    "timeout" (CPU time), "walled" (the wall backstop) or "walled once" (walled the first time, then passes);
    each run of a test appends "id start end uid" to `record`."""

    def run_file(tree, file, tests, limits, floor, clock, hung, on_result, timed_out=None):
        for test in tests:
            if file in hung:
                on_result(test.id, FAILED, grade.not_tried(file, hung), 0.0, TIMED_OUT)
                continue
            seconds, outcome = script[test.id]
            start = time.time()
            time.sleep(seconds)
            earlier = record.read_text() if record.exists() else ""
            with open(record, "a") as f:
                f.write(f"{test.id} {start} {time.time()} {sandbox.layer().uid}\n")
            if outcome == "walled once" and f"\n{test.id} " in "\n" + earlier:
                outcome = "pass"
            if outcome == "pass":
                on_result(test.id, PASSED, "", seconds, "", seconds)
                continue
            message = f"timed out: {test.id}"
            hung[file] = (test.id, message)
            timed_out(test.id, message, outcome != "timeout")
            on_result(test.id, FAILED, message, seconds, TIMED_OUT, seconds)

    return run_file


class _Layer:
    uid = 70000


def _schedule(monkeypatch, tmp_path, script, plan, parallel=2):
    record = tmp_path / "record"
    monkeypatch.setattr(grade, "_run_file", _fake_run_file(script, record))
    monkeypatch.setattr(sandbox, "_chosen", [_Layer()])
    monkeypatch.setattr(sandbox, "extra_uids", lambda n: [70001 + i for i in range(n)])
    monkeypatch.setattr(sandbox, "clear_uid", lambda uid: None)
    tests = {i: SimpleNamespace(id=i, training=True if i.endswith("train") else None) for i in script}
    plan = [(file, [tests[i] for i in ids], False) for file, ids in plan]
    results, logged = [], []
    regraded = grade._run_parallel(tmp_path, plan, {}, parallel, {i: 10.0 for i in script}, 1.0, grade._Clock(600),
                                   lambda *r: results.append(r), logged.append)
    runs = [line.split() for line in record.read_text().splitlines()]
    return results, regraded, [(i, float(a), float(b), int(u)) for i, a, b, u in runs]


def _overlaps(runs, test_id, which=-1):
    mine = [r for r in runs if r[0] == test_id][which]
    return [r[0] for r in runs if r is not mine and r[1] < mine[2] and mine[1] < r[2]]


def test_results_come_in_the_sequential_order_and_siblings_never_share_a_uid(monkeypatch, tmp_path):
    script = {"a1": (0.1, "pass"), "a2": (0.1, "pass"), "b1": (0.1, "pass"), "a-train": (1.0, "pass"),
              "b-train": (0.6, "pass")}
    plan = [("a", ["a1", "a2"]), ("b", ["b1"]), ("a", ["a-train"]), ("b", ["b-train"])]
    results, regraded, runs = _schedule(monkeypatch, tmp_path, script, plan)
    assert [r[0] for r in results] == ["a1", "a2", "b1", "a-train", "b-train"] and regraded == []
    assert all(r[1] == PASSED for r in results)
    ends = {r[0]: r[2] for r in runs}
    starts = {r[0]: r[1] for r in runs}
    assert starts["a-train"] >= ends["a1"] and starts["b-train"] >= ends["b1"], "a training test ran before its " \
                                                                                "file's code answered a test"
    assert _overlaps(runs, "a-train"), "no two children ran at once"
    for one in runs:
        for other in runs:
            if one is not other and one[1] < other[2] and other[1] < one[2]:
                assert one[3] != other[3], f"{one[0]} and {other[0]} ran at once as uid {one[3]}"


def test_a_file_that_timed_out_fails_its_later_tests_at_once_whatever_ran_beside(monkeypatch, tmp_path):
    """a-train starts once a's code answered a1, beside a2 (which times out): it is stopped, not tried."""
    script = {"a1": (0.1, "pass"), "a2": (0.6, "timeout"), "a3": (0.1, "pass"), "b1": (0.1, "pass"),
              "a-train": (3.0, "pass"), "b-train": (0.2, "pass")}
    plan = [("a", ["a1", "a2", "a3"]), ("b", ["b1"]), ("a", ["a-train"]), ("b", ["b-train"])]
    start = time.time()
    results, regraded, runs = _schedule(monkeypatch, tmp_path, script, plan, parallel=3)
    assert [r[0] for r in results] == ["a1", "a2", "a3", "b1", "a-train", "b-train"]
    by_id = {r[0]: r for r in results}
    assert by_id["a2"][1:3] == (FAILED, "timed out: a2") and regraded == [], "a CPU-time timeout is final"
    for later in ("a3", "a-train"):
        assert by_id[later][1] == FAILED and by_id[later][2].startswith("not tried: your code in a timed out in "
                                                                         "test a2")
        assert by_id[later][4] == TIMED_OUT
    assert by_id["a1"][1] == by_id["b1"][1] == by_id["b-train"][1] == PASSED
    assert "a-train" not in [r[0] for r in runs] and time.time() - start < 2.5, "a-train's worker was not stopped"

    (tmp_path / "record").unlink()  # code that hangs from its first test: its training test never starts
    script["a1"] = (0.1, "timeout")
    results, _, runs = _schedule(monkeypatch, tmp_path, script, plan, parallel=3)
    assert [r[2][:46] for r in results if r[0] == "a-train"] == ["not tried: your code in a timed out in test a1"]


def test_a_timeout_on_wall_time_beside_a_sibling_is_graded_again_alone(monkeypatch, tmp_path):
    script = {"a1": (0.1, "pass"), "a2": (0.3, "walled once"), "a3": (0.1, "pass"), "b-train": (1.0, "pass")}
    plan = [("a", ["a1", "a2", "a3"]), ("b", ["b-train"])]
    results, regraded, runs = _schedule(monkeypatch, tmp_path, script, plan)
    assert regraded == ["a2"]
    assert [r[0] for r in results] == ["a1", "a2", "a3", "b-train"] and all(r[1] == PASSED for r in results)
    assert [r[0] for r in runs].count("a2") == 2 and _overlaps(runs, "a2", 0) == ["b-train"]
    assert _overlaps(runs, "a2") == [] and _overlaps(runs, "a3") == [], "the second grading did not run alone"

    (tmp_path / "record").unlink()  # alone, a timeout is nobody else's doing: it is final
    script["a2"] = (0.1, "walled")
    results, regraded, runs = _schedule(monkeypatch, tmp_path, script, [("a", ["a1", "a2", "a3"])])
    assert regraded == [] and [r[1] for r in results] == [PASSED, FAILED, FAILED]


# ---- through the real grader (slow) -------------------------------------------------------------------------
ONLY = ("1.1-output-sizes,2.2-architecture,2.2-output-shape,2.2-equivalence,3.1a-output-shape,3.1a-equivalence,"
        "3.1a-gradients,3.1a-bleu,3.1b-attention-shape,2.2-accuracy")


def _grading(tree, out, parallel):
    """`grade --only ONLY` with `parallel` children at once, started in the background."""
    return subprocess.Popen([sys.executable, "-m", "autograder", "grade", str(tree), "--out", str(out), "--only", ONLY],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, HW2_BUDGET="test", HW2_PARALLEL=str(parallel), HW2_TEST_SECONDS="8"))


def _graded(run, out):
    """(results.json of `run` without what depends on the machine, its stdout)."""
    stdout, stderr = run.communicate(timeout=900)
    assert run.returncode == 0, stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    results.pop("execution_time")
    for test in results["tests"]:
        test["extra_data"].pop("seconds")
        test["extra_data"].pop("cpu_seconds")
        # "used 9 s of CPU time", "12 s passed": how far past the limit depends on the machine
        test["output"] = re.sub(r"\d+ s (of CPU time|passed)", r"N s \1", test["output"])
    results["extra_data"].pop("sandbox")  # names the uid
    return results, stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_grading_with_a_mistake_and_a_timeout_gives_the_same_results_both_ways(tmp_path):
    tree = tmp_path / "student"
    tree.mkdir()
    for name in GRADED:
        (tree / name).write_bytes((SOLUTION / name).read_bytes())
    q2 = (tree / "h2-q2.py").read_text()
    assert q2.count("    def forward(self, x):\n") == 1
    (tree / "h2-q2.py").write_text(q2.replace("    def forward(self, x):\n",
                                              "    def forward(self, x):\n        x = x * 1.5\n"))  # a mistake
    decoder = (tree / "decoder.py").read_text()
    anchor = "    def forward("
    assert decoder.count(anchor) == 1
    at = decoder.index("\n", decoder.index(anchor + "")) + 1
    while decoder[at:].startswith(" " * 12) or decoder[at:].startswith(" " * 8 + ")"):  # a signature on lines
        at = decoder.index("\n", at) + 1
    (tree / "decoder.py").write_text(decoder[:at] + "        while True:\n            pass\n" + decoder[at:])
    # both at once: each limit is on CPU time, so that the one's load changes nothing in the other's results
    runs = [_grading(tree, tmp_path / "one", 1), _grading(tree, tmp_path / "two", 2)]
    try:
        sequential, _ = _graded(runs[0], tmp_path / "one")
        parallel, _ = _graded(runs[1], tmp_path / "two")
    finally:
        for run in runs:  # (a failed first one: the other is interrupted, and cleans up its children)
            if run.poll() is None:
                run.terminate()
                run.communicate(timeout=120)
    assert parallel == sequential
    by_id = {t["extra_data"]["id"]: t for t in parallel["tests"]}
    assert by_id["3.1a-output-shape"]["extra_data"]["reason"] == TIMED_OUT
    assert by_id["3.1a-bleu"]["output"].startswith("not tried: your code in decoder.py timed out in test 3.1a-output")
    assert by_id["2.2-equivalence"]["status"] == FAILED and by_id["2.2-architecture"]["status"] == PASSED
    assert by_id["1.1-output-sizes"]["status"] == PASSED


def test_a_workers_error_reaches_the_grading_with_its_type(monkeypatch, tmp_path):
    """A worker reports its error as data (a type name and a message, never an object to rebuild): the errors
    the grading's callers tell apart keep their type, any other is a RuntimeError naming it."""
    for error, expected, text in ((sandbox.SandboxError("no uid left"), sandbox.SandboxError, "^no uid left$"),
                                  (KeyError("x"), RuntimeError, "^KeyError: 'x'$")):
        def run_file(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr(grade, "_run_file", run_file)
        monkeypatch.setattr(sandbox, "_chosen", [_Layer()])
        monkeypatch.setattr(sandbox, "extra_uids", lambda n: [70001 + i for i in range(n)])
        monkeypatch.setattr(sandbox, "clear_uid", lambda uid: None)
        plan = [("a", [SimpleNamespace(id="a1", training=None)], False)]
        with pytest.raises(expected, match=text):
            grade._run_parallel(tmp_path, plan, {}, 2, {"a1": 10.0}, 1.0, grade._Clock(60), lambda *r: None,
                                lambda line: None)
