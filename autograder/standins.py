"""Stand-ins: correct definitions of the student functions a training test may need in place of
a wrong one, so that one mistake is charged once, in the test that names it (a correct
`train_batch` or `CNN` for 2.2-accuracy, a correct `Attention` for 3.1b-bleu).

They are written, once per grading process, from the reference solution itself (one source of
truth) into a private temporary file, which is bound into the child of a test that needs it and
no other (autograder/isolation.py), whose printed output and messages never reach the student
(the student's code could read the stand-in there). Never released: the students' repository has
no `solution/` and no copy of this module (tests/test_release.py).
"""

import ast
import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from autograder.submission import REFERENCE_TREE

DEFINITIONS = {"h2-q2.py": ("CNN", "train_batch"), "decoder_with_attention.py": ("Attention",)}
HEADER = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n\n"


@functools.lru_cache(maxsize=None)
def source():
    """The text of the stand-in module."""
    parts = [HEADER]
    for filename, names in DEFINITIONS.items():
        text = (REFERENCE_TREE / filename).read_text()
        for node in ast.parse(text).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names:
                parts.append(ast.get_source_segment(text, node) + "\n\n\n")
    return "".join(parts)


@functools.lru_cache(maxsize=None)
def path():
    """The stand-in module, written once into a folder only this user can read."""
    folder = Path(tempfile.mkdtemp(prefix="hw2-standins-"))  # mode 0700
    atexit.register(shutil.rmtree, folder, True)
    target = folder / "standins.py"
    target.write_text(source())
    target.chmod(0o644)  # bound read-only into the child, whose uid is not the grader's
    return target
