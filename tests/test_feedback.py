"""What a failed test tells the student is theirs: what their own files printed (not the provided
training loop's progress bar), and where their error is (the answer cell, not the check cell that
called it)."""

import ast
import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import ASSIGNMENT, ROOT, SOLUTION, autograder_outcome, make_tree

PROVIDED = '''
from tqdm import tqdm

def loop(step):
    print("PROVIDED-PRINT")
    for _ in tqdm(range(3), desc="PROVIDED-BAR"):
        step()
'''
STUDENT = '''
import threading, warnings

def step():
    print("STUDENT-PRINT")
    warnings.warn("STUDENT-WARNING")

def in_a_thread():
    thread = threading.Thread(target=print, args=("STUDENT-THREAD",))
    thread.start()
    thread.join()
'''


CAPTURE = """
import contextlib, sys, warnings
from pathlib import Path
from autograder.child import runner
from autograder.child.submission import cell_filename, load_module

folder = Path(sys.argv[1])
provided, student = load_module(folder, "train.py"), load_module(folder, "decoder.py")
captured = runner.CappedOutput(folder)
with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
    provided.loop(student.step)
    student.in_a_thread()
    print("GRADER-PRINT")
    warnings.warn("GRADER-WARNING")
    exec(compile('print("CELL-PRINT")', cell_filename(folder / "q1.ipynb", "answer"), "exec"), {})
flood = runner.CappedOutput(folder)
with contextlib.redirect_stdout(flood):
    for _ in range(300):
        student.step()
print(repr(captured.getvalue()))
print(repr(flood.getvalue()))
"""


def test_only_the_students_own_files_output_is_kept(tmp_path):
    """A print and a warning of the student's step called from the provided loop are kept; the
    loop's own print and progress bar, the grader's output (no student frame) and what another
    thread writes (it could outlive the request) are not; the cap still holds."""
    from autograder.child.runner import OUTPUT_LIMIT

    (tmp_path / "train.py").write_text(PROVIDED)
    (tmp_path / "decoder.py").write_text(STUDENT)
    done = subprocess.run([sys.executable, "-W", "always", "-c", CAPTURE, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    text, flood = (ast.literal_eval(line) for line in done.stdout.splitlines()[-2:])
    assert text.count("STUDENT-PRINT") == 3 and text.count("UserWarning: STUDENT-WARNING") == 3, text
    assert "CELL-PRINT" in text, text
    for other in ("PROVIDED-PRINT", "PROVIDED-BAR", "GRADER-PRINT", "GRADER-WARNING", "STUDENT-THREAD", "%|"):
        assert other not in text, text
    assert len(flood) < OUTPUT_LIMIT + 50 and "more characters" in flood, flood


@pytest.mark.slow
def test_a_print_in_the_decoder_shows_and_the_training_loops_bar_does_not(tmp_path):
    """The decoder trained in a sandboxed child by the provided train.py, as in 3.1a-bleu: the
    student's print inside Decoder.forward is what the test reports as printed; train.py's tqdm bar
    is not."""
    from autograder.isolation import StudentSubmission

    tree = make_tree(tmp_path, [("        embeddings = self.embedding(word)  # (batch, embed_dim)\n",
                                 "        print('FORWARD-CALLED', len(word))\n"
                                 "        embeddings = self.embedding(word)  # (batch, embed_dim)\n")], "decoder.py")
    sub = StudentSubmission(tree, 60, files=["decoder.py"])
    try:
        state = sub.run("decoder.train", use_attention=False,
                        sizes=dict(vocab=9, encoder_dim=6, embed=4, decoder_dim=5, attention_dim=3),
                        pairs=[(i % 4, [1, 3 + i % 5, 4, 2]) for i in range(24)], features=torch.randn(4, 9, 6),
                        pad=0, epochs=2, seed=0)
    finally:
        sub.cleanup()
    assert "fc.weight" in state
    printed = "\n".join(sub.printed)
    assert "FORWARD-CALLED" in printed, printed
    assert "training" not in printed and "it/s" not in printed and "%|" not in printed, printed


CNN_500 = [("nn.Linear(32 * 6 * 6, 600)", "nn.Linear(32 * 6 * 6, 500)"), ("nn.Linear(600, 120)", "nn.Linear(500, 120)")]
FC_RENAMED = [("self.fc = nn.Linear(decoder_dim, vocab_size)", "self.out = nn.Linear(decoder_dim, vocab_size)"),
              ("scores = self.fc(self.dropout(h))", "scores = self.out(self.dropout(h))")]
FULL_ATT_WITHOUT_BIAS = [("self.full_att = nn.Linear(attention_dim, 1)",
                          "self.full_att = nn.Linear(attention_dim, 1, bias=False)")]


def test_an_equivalence_test_says_why_it_could_not_compare_without_repeating_another_test(tmp_path):
    """Layers other than the statement's: 2.2-equivalence refers to 2.2-architecture's list instead of
    repeating it; a decoder's equivalence test, the only one to count changed provided layers, names
    them; and a changed Attention layer is not charged again in 3.1b-decoder-equivalence."""
    cnn = make_tree(tmp_path, CNN_500, "h2-q2.py", name="cnn")
    architecture = autograder_outcome(cnn, "2.2-architecture")
    status, message = autograder_outcome(cnn, "2.2-equivalence")
    assert architecture[0] == status == "failed" and "(500, 1152)" in architecture[1]
    assert "could not be compared" in message and "2.2-architecture" in message and "500" not in message, message

    decoder = make_tree(tmp_path, FC_RENAMED, "decoder.py", name="decoder")
    assert autograder_outcome(decoder, "3.1a-output-shape")[0] == "passed"
    status, message = autograder_outcome(decoder, "3.1a-equivalence")
    assert status == "failed" and "could not be compared" in message, message
    assert "'fc.weight', 'fc.bias'" in message and "'out.weight', 'out.bias'" in message, message

    attention = make_tree(tmp_path, FULL_ATT_WITHOUT_BIAS, "decoder_with_attention.py", name="attention")
    status, message = autograder_outcome(attention, "3.1b-attention-equivalence")
    assert status == "failed" and "full_att.bias" in message, message
    status, message = autograder_outcome(attention, "3.1b-decoder-equivalence")
    assert status == "passed" and "counted in its own tests" in message, message


def _check_q1(notebook):
    """(exit code, stderr) of `make check-q1`'s command on `notebook`."""
    done = subprocess.run([sys.executable, "-m", "autograder.child.notebook", str(notebook)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stderr


def _cell(notebook, grade_id):
    return next(c for c in notebook["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)


def _line_of(cell, text):
    """The 1-based line of `cell` that holds `text`."""
    return next(n for n, line in enumerate("".join(cell["source"]).splitlines(), 1) if text in line)


def test_check_q1_names_the_answer_cell_and_line_where_the_error_is():
    """On the skeleton, the error is in the answer cell (output_sizes, the line that raises), which the
    check cell check_1_1 called: both are named, each with its own line."""
    notebook = json.loads((ASSIGNMENT / "q1.ipynb").read_text())
    raising = _line_of(_cell(notebook, "output_sizes"), "raise NotImplementedError")
    calling = _line_of(_cell(notebook, "check_1_1"), "conv_output_size(")
    code, stderr = _check_q1(ASSIGNMENT / "q1.ipynb")
    assert code == 1
    assert (f"q1.ipynb, cell output_sizes, line {raising} (in conv_output_size, called from cell check_1_1, line "
            f"{calling}): NotImplementedError: conv_output_size is not implemented yet") in stderr, stderr


def test_the_grader_and_check_q1_name_the_same_answer_cell_and_line(tmp_path):
    """An answer that raises inside its function: the grader's 1.1 message and `make check-q1` both
    name the answer cell and the line that raised."""
    notebook = json.loads((SOLUTION / "q1.ipynb").read_text())
    cell = _cell(notebook, "output_sizes")
    source = "".join(cell["source"])
    anchor = "    return (input_size + 2 * padding - kernel_size) // stride + 1"
    assert source.count(anchor) == 1
    cell["source"] = source.replace(anchor, "    raise ValueError('ANSWER-CELL-ERROR')\n" + anchor)
    line = _line_of(cell, "ANSWER-CELL-ERROR")
    tree = make_tree(tmp_path)
    (tree / "q1.ipynb").write_text(json.dumps(notebook))
    status, message = autograder_outcome(tree, "1.1-output-sizes")
    assert status == "failed" and f"(q1.ipynb, cell output_sizes, line {line}, in conv_output_size)" in message, message
    code, stderr = _check_q1(tree / "q1.ipynb")
    assert code == 1 and f"q1.ipynb, cell output_sizes, line {line} (in conv_output_size, called from cell " in stderr
    assert "ValueError: ANSWER-CELL-ERROR" in stderr, stderr
