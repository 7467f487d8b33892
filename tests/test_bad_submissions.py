"""Broken submissions are graded to completion within their time bound, with a message naming
the problem. Grow this list whenever a new way to break grading is found."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, SOLUTION

pytestmark = pytest.mark.slow  # each case is a grading

FORWARD = "        embeddings = self.embedding(word)  # (batch, embed_dim)\n"
BAD = [
    # name, text inserted at the start of Decoder.forward (or at import), words of the message
    ("infinite loop", FORWARD, "        while True:\n            pass\n", "s of CPU time (the limit is 4 s"),
    # no CPU time used: ended by the wall-time backstop (3 x 4 s + 15 s), with a message saying so
    ("sleep", FORWARD, "        import time; time.sleep(600)\n", "is it waiting for something that never comes"),
    ("huge allocation", FORWARD, "        torch.ones(2 ** 36)\n", "more memory than the limit"),
    ("NaN output", "        return scores, h, c\n", "        scores = scores * float('nan')\n", "NaN"),
    ("CUDA-only code", FORWARD, "        word = word.cuda()\n", "grading runs on a CPU"),
    ("os._exit in a test", FORWARD, "        import os; os._exit(0)\n", "grading process stopped"),
]


def _tree(tmp_path, anchor, insert):
    tree = tmp_path / "student"
    tree.mkdir(parents=True)
    for name in ("h2-q2.py", "decoder.py", "decoder_with_attention.py"):
        shutil.copy(SOLUTION / name, tree / name)
    text = (tree / "decoder.py").read_text()
    assert text.count(anchor) == 1
    (tree / "decoder.py").write_text(text.replace(anchor, insert + anchor))
    return tree


# 3.1a (the question the broken decoder.py fails) but its training test (a broken decoder fails it at once, a wrong
# one only after training: the verdicts asserted here are the other tests'), and enough of 3.1b to show the other
# file keeps its points
OTHERS = ("3.1a-output-shape,3.1a-equivalence,3.1a-state-and-dropout,3.1a-gradients,"
          "3.1b-attention-shape,3.1b-attention-equivalence,3.1b-decoder-shape,3.1b-gradients")


def _grade(tree, out, seconds):
    env = dict(os.environ, HW2_TEST_SECONDS=str(seconds))
    start = time.time()
    result = subprocess.run([sys.executable, "-m", "autograder", "grade", str(tree), "--out", str(out), "--only", OTHERS],
                            cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads((out / "results.json").read_text()), time.time() - start


def _graded_at_once(request, folder, test, trees, seconds):
    """{name: (results.json as a dict, wall seconds)} of the trees ({name: function making it in a folder}) whose
    case of `test` is selected (-k), graded two at a time (each mostly waits: for a backstop, for its children)."""
    from concurrent.futures import ThreadPoolExecutor

    selected = {item.callspec.params["name"] for item in request.session.items
                if item.module is request.module and item.originalname == test}
    made = {name: make(folder / str(i)) for i, (name, make) in enumerate(trees.items()) if name in selected}
    with ThreadPoolExecutor(2) as pool:
        return dict(zip(made, pool.map(lambda tree: _grade(tree, tree.parent / "out", seconds), made.values())))


@pytest.fixture(scope="module")
def bad_decoders(tmp_path_factory, request):
    """The BAD cases selected, graded two at a time with 4 s per test."""
    trees = {name: lambda folder, anchor=anchor, insert=insert: _tree(folder, anchor, insert)
             for name, anchor, insert, _ in BAD}
    return _graded_at_once(request, tmp_path_factory.mktemp("bad-decoders"), "test_bad_decoder_is_graded_to_completion",
                           trees, seconds=4)


@pytest.mark.parametrize("name, anchor, insert, words", BAD, ids=[b[0] for b in BAD])
def test_bad_decoder_is_graded_to_completion(bad_decoders, name, anchor, insert, words):
    results, seconds = bad_decoders[name]
    decoder_tests = [t for t in results["tests"] if t["number"] == "3.1a"]
    assert all(t["score"] == 0 for t in decoder_tests), name
    assert any(words in t["output"] for t in decoder_tests), [t["output"][:200] for t in decoder_tests]
    # the other question keeps its points (its training test is left out here: it needs more than 4 s)
    other = [t for t in results["tests"] if t["number"] == "3.1b"]
    assert all(t["status"] == "passed" for t in other), [t["output"][:200] for t in other if t["status"] != "passed"]
    assert seconds < 240


def test_output_flood_is_truncated(tmp_path):
    tree = _tree(tmp_path, "import torch\n", "print('x' * 50_000_000)\nraise ValueError('after the flood')\n")
    results, _ = _grade(tree, tmp_path / "out", seconds=20)
    outputs = [t["output"] for t in results["tests"] if t["number"] == "3.1a"]
    assert all("after the flood" in o for o in outputs)
    assert (tmp_path / "out" / "results.json").stat().st_size < 100_000


TAMPER = '''
import contextlib, json, os, sys
import torch
torch.allclose = lambda *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
torch.Tensor.__eq__ = lambda self, other: torch.ones((), dtype=torch.bool)
with contextlib.suppress(Exception):
    import autograder.compare
    autograder.compare.expect_close = lambda *args, **kwargs: None
    autograder.compare.fail = lambda *args, **kwargs: None
with contextlib.suppress(Exception):
    import autograder.checks
    autograder.checks.outcome = lambda *args, **kwargs: ("passed", "")
for name in ("results.json", "../results.json", "/tmp/results.json"):
    with contextlib.suppress(OSError), open(name, "w") as f:
        json.dump({{"score": 100, "tests": []}}, f)
print("Score 100 / 100")
'''
FORGE = '''
import os, struct
for fd in range(3, 64):  # a well-formed answer on every descriptor, claiming a value
    with __import__("contextlib").suppress(OSError):
        os.write(fd, struct.pack(">Q", 4) + b"fake")
'''


MISSHAPE = '''
import autograder.child.probes
for name in list(autograder.child.probes.PROBES):  # every later probe answers with values of the wrong form
    autograder.child.probes.PROBES[name] = lambda *args, **kwargs: {{"bogus": 1}}
'''


TAMPERING = {"patching the comparisons": TAMPER, "forging answers": FORGE, "answers of the wrong form": MISSHAPE}


def _tampering(folder, prelude):
    """A decoder whose step is wrong (scores * 2), with `prelude` run at import."""
    tree = _tree(folder, "import torch\n", prelude.format() + "import torch\n")
    text = (tree / "decoder.py").read_text()
    (tree / "decoder.py").write_text(text.replace("return scores, h, c", "return scores * 2, h, c"))
    return tree


@pytest.fixture(scope="module")
def tampered(tmp_path_factory, request):
    """The TAMPERING cases selected, graded two at a time with 30 s per test."""
    trees = {name: lambda folder, prelude=prelude: _tampering(folder, prelude) for name, prelude in TAMPERING.items()}
    return _graded_at_once(request, tmp_path_factory.mktemp("tampered"), "test_tampering_earns_nothing", trees,
                           seconds=30)


@pytest.mark.parametrize("name", TAMPERING)
def test_tampering_earns_nothing(tampered, name):
    """A wrong decoder that patches torch or the grader, forges results files or answers, and prints a
    fake summary still fails the tests its mistake fails; the grade is computed where it cannot reach."""
    results, _ = tampered[name]
    by_id = {t["extra_data"]["id"]: t for t in results["tests"]}
    assert by_id["3.1a-equivalence"]["score"] == 0, by_id["3.1a-equivalence"]["output"]
    # failed, not "not run": tampering cannot make a test look like the grader's fault
    assert not any(t["extra_data"]["not_run"] for t in results["tests"])
    assert by_id["3.1b-attention-equivalence"]["status"] == "passed"  # the other question is untouched
