"""Student code runs sandboxed: no writes outside its /tmp, no network, no process left behind."""

import json
import shutil
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, SOLUTION

HOSTILE = '''
import os, socket, subprocess, sys
from pathlib import Path
ROOT = Path({root!r})
try:
    (ROOT / "grades-forged.json").write_text("{{}}")
except OSError as error:
    print("write refused:", error)
try:
    socket.create_connection(("1.1.1.1", 80), timeout=2)
    print("NETWORK OPEN")
except OSError as error:
    print("network refused:", error)
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)  # hw2-left-behind"])
'''


@pytest.mark.slow
def test_hostile_import_is_contained(tmp_path):
    tree = tmp_path / "student"
    tree.mkdir()
    for name in ("h2-q2.py", "decoder.py", "decoder_with_attention.py"):
        shutil.copy(SOLUTION / name, tree / name)
    text = (tree / "decoder.py").read_text()
    (tree / "decoder.py").write_text(HOSTILE.format(root=str(ROOT)) + text)
    result = subprocess.run([sys.executable, "-m", "autograder", "grade", str(tree), "--out", str(tmp_path / "out"),
                             "--only", "3.1a"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (ROOT / "grades-forged.json").exists()
    time.sleep(1)
    left = subprocess.run(["pgrep", "-f", "hw2-left-behind"], capture_output=True, text=True).stdout.strip()
    assert not left, f"a process the submission started is still running: {left}"
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert all(t["status"] == "passed" for t in results["tests"] if "bleu" not in t["extra_data"]["id"])


SNOOP = '''
import os
LOOKED_FOR = {paths!r}
VISIBLE = [p for p in LOOKED_FOR if os.path.exists(p)]
'''


@pytest.mark.slow
def test_student_code_cannot_see_the_reference_the_hidden_checks_or_other_students(tmp_path):
    """A submission that looks for the reference (to delegate to it), the hidden checks, the thresholds
    or a classmate's files finds none of them (1.1 first: the grader has loaded a reference module
    before the decoder's child starts)."""
    classmate = tmp_path / "submissions" / "classmate"
    classmate.mkdir(parents=True)
    shutil.copy(SOLUTION / "decoder.py", classmate / "decoder.py")
    paths = [str(SOLUTION / "decoder.py"), str(ROOT / "autograder" / "checks" / "q3.py"),
             str(ROOT / "autograder" / "calibration.json"), str(ROOT / "tests" / "wrong_submissions.py"),
             str(classmate / "decoder.py"), str(ROOT / "solution")]
    tree = tmp_path / "submissions" / "student"
    tree.mkdir()
    for name in ("h2-q2.py", "decoder.py", "decoder_with_attention.py"):
        shutil.copy(SOLUTION / name, tree / name)
    text = (tree / "decoder.py").read_text()
    anchor = "        embeddings = self.embedding(word)  # (batch, embed_dim)\n"
    text = text.replace(anchor, "        raise RuntimeError(f'visible: {VISIBLE}')\n" + anchor)
    (tree / "decoder.py").write_text(SNOOP.format(paths=paths) + text)
    result = subprocess.run([sys.executable, "-m", "autograder", "grade", str(tree), "--out", str(tmp_path / "out"),
                             "--only", "1.1,3.1a"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    outputs = [t["output"] for t in json.loads((tmp_path / "out" / "results.json").read_text())["tests"]
               if t["extra_data"]["id"] == "3.1a-output-shape"]
    assert "visible: []" in outputs[0], outputs


def test_the_child_package_imports_nothing_of_the_repository_outside_itself():
    """autograder/child/ is the trust boundary: binding it alone into the sandbox must be enough."""
    import ast

    local = {p.stem for p in ROOT.iterdir()} | {"autograder", "data", "solution", "assignment", "tests", "experiments"}
    for path in (ROOT / "autograder" / "child").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            outside = [n for n in names if n.split(".")[0] in local]
            assert not outside, f"{path.name} imports {outside}: the child package must import only itself and libraries"


STANDIN_THIEF = '''
import os, glob
def _standins_text():
    for path in ["/run/hw2/standins.py", *glob.glob("/tmp/hw2-standins-*/standins.py"),
                 *glob.glob(os.path.expanduser("~") + "/standins.py")]:
        try:
            return open(path).read()
        except OSError:
            pass
    return None
'''


@pytest.mark.slow
def test_the_stand_ins_reach_only_the_test_that_needs_them_and_never_the_feedback(tmp_path):
    """A wrong Attention makes 3.1b-bleu train with the grader's stand-in; a decoder that finds the
    stand-in's text and prints and raises it shows none of it, and no other test's child sees the file."""
    tree = tmp_path / "student"
    tree.mkdir()
    for name in ("h2-q2.py", "decoder.py", "decoder_with_attention.py"):
        shutil.copy(SOLUTION / name, tree / name)
    text = (tree / "decoder_with_attention.py").read_text()
    text = text.replace("        att1 = self.encoder_att(encoder_out)  # (batch, num_locations, attention_dim)\n",
                        "        att1 = 2 * self.encoder_att(encoder_out)  # (batch, num_locations, attention_dim)\n")
    text = text.replace("    def forward(self, word, decoder_hidden_state, decoder_cell_state, encoder_out):\n",
                        "    def forward(self, word, decoder_hidden_state, decoder_cell_state, encoder_out):\n"
                        "        stolen = _standins_text()\n"
                        "        if stolen is not None:\n"
                        "            print(stolen)\n"
                        "            raise RuntimeError('STOLEN ' + stolen)\n")
    (tree / "decoder_with_attention.py").write_text(STANDIN_THIEF + text)
    result = subprocess.run([sys.executable, "-m", "autograder", "grade", str(tree), "--out", str(tmp_path / "out"),
                             "--only", "3.1b"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    results = (tmp_path / "out" / "results.json").read_text() + (tmp_path / "out" / "feedback.md").read_text()
    by_id = {t["extra_data"]["id"]: t for t in json.loads((tmp_path / "out" / "results.json").read_text())["tests"]}
    # the children of the other tests never saw the file: the decoder's own tests pass
    assert by_id["3.1b-decoder-shape"]["status"] == "passed", by_id["3.1b-decoder-shape"]["output"]
    # the BLEU test's child did, and nothing the student's code printed or raised there is shown
    assert by_id["3.1b-bleu"]["score"] == 0 and "not shown" in by_id["3.1b-bleu"]["output"]
    assert "STOLEN" not in results
    from autograder import standins

    leaked = [line.strip() for line in standins.source().splitlines()
              if len(line.strip()) >= 16 and not line.strip().startswith("import ") and line.strip() in results]
    assert not leaked, leaked


def test_an_answer_whose_tensor_is_a_view_larger_than_its_storage_is_refused():
    """4 bytes standing for gigabytes (a stride-0 expansion) never reach the grader's checks: the wire
    format holds dense tensors only, so the view counts for all it stands for, beyond the limit."""
    import torch

    from autograder.child.wire import WireError, decode, encode

    assert decode(encode({"ok": torch.zeros(3, 4)}))["ok"].shape == (3, 4)
    with pytest.raises(WireError, match="bytes in all"):
        encode({"gradients": {"w": torch.zeros(1).expand(25_000, 20_000)}})


def test_the_user_layer_counts_the_history_and_earlier_grades_as_private():
    from autograder import sandbox

    private = sandbox.private_paths()
    for name in ("solution", "autograder/checks", "autograder/calibration.json", "tests", ".git"):
        if (ROOT / name).exists():
            assert str(ROOT / name) in private, name
