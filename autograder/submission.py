"""Load the Python files of a tree (the reference, the skeleton or a student's) as modules.

`Submission` is a tree whose code runs in this process: the students' public tests (their own
files, in place), the grading child (autograder/runner.py, in the working folder the grader
prepared) and the instructor's tests. `run(probe, **inputs)` runs a probe (autograder/probes.py)
on the student's modules, as the grading child does; while grading, the checks use
`autograder.isolation.StudentSubmission` instead, whose probes run in a sandboxed child.
"""

import ast
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import traceback
import types
from pathlib import Path

from autograder.compare import CheckFailure

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_TREE = ROOT / "solution"
PROVIDED_TREE = ROOT / "assignment"
GRADED_FILES = ("q1.ipynb", "h2-q2.py", "decoder.py", "decoder_with_attention.py")


def locate_tree(folder):
    """The folder under `folder` that holds the graded files: `folder` itself when any is at its top,
    else the shallowest folder holding one (a repository or zip with a top folder, as uploaded)."""
    folder = Path(folder)
    if any((folder / name).is_file() for name in GRADED_FILES):
        return folder
    candidates = [p.parent for name in GRADED_FILES for p in folder.rglob(name)
                  if "__MACOSX" not in p.parts and ".venv" not in p.parts]
    return min(candidates, key=lambda p: len(p.parts)) if candidates else folder


def notebook_cells(path):
    """[(grade_id, source)] of the code cells of an nbgrader notebook that define the answers: the
    provided (locked) cells and the answer (solution) cells, in order; not the check cells, nor
    cells of the student's own (scratch work)."""
    cells = []
    for cell in json.loads(Path(path).read_text())["cells"]:
        marks = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") != "code" or not marks or (marks.get("grade") and not marks.get("solution")):
            continue
        if marks.get("solution") or marks.get("locked"):
            source = cell.get("source", "")
            cells.append((marks.get("grade_id", "?"), "".join(source) if isinstance(source, list) else source))
    return cells


def load_notebook(path, name):
    """The answers of a notebook as a module: its provided and answer cells run in order."""
    module = types.ModuleType(name)
    module.__file__ = str(path)
    for grade_id, source in notebook_cells(path):
        exec(compile(source, f"{path} [cell {grade_id}]", "exec"), module.__dict__)
    return module


def load_module(tree, filename):
    """Import `<tree>/<filename>` (e.g. `h2-q2.py`) under a fresh module name and return it; for a
    notebook (`q1.ipynb`), a module holding what its answer cells define.

    The tree's folder goes first on `sys.path` so that its own helpers (`import utils`) resolve.
    """
    path = Path(tree).resolve() / filename
    folder = str(path.parent)
    if folder in sys.path:
        sys.path.remove(folder)
    sys.path.insert(0, folder)
    for name in ("utils", "decoder", "decoder_with_attention", "train"):
        sys.modules.pop(name, None)  # resolve the tree's own helpers, not another tree's
    name = f"_tree_{abs(hash(str(path)))}_{path.stem.replace('-', '_')}"
    if path.suffix == ".ipynb":
        return load_notebook(path, name)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_definition(filename, name):
    """The source code of the top-level function or class `name` of the reference's `filename`
    (for the grader only: the students' repository has no reference)."""
    text = (REFERENCE_TREE / filename).read_text()
    node = next(n for n in ast.parse(text).body
                if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name)
    return ast.get_source_segment(text, node)


def prepare_workdir(tree, provided_tree=PROVIDED_TREE):
    """A new folder with the provided files of the homework and the graded files of `tree` on top."""
    workdir = Path(tempfile.mkdtemp(prefix="hw2-grading-"))
    for path in Path(provided_tree).iterdir():
        if path.is_file():
            shutil.copy(path, workdir / path.name)
    for filename in GRADED_FILES:
        (workdir / filename).unlink(missing_ok=True)
        if (Path(tree) / filename).is_file():
            shutil.copy(Path(tree) / filename, workdir / filename)
    return workdir


def _describe_import_error(filename, error):
    frames = [(f.filename, f.lineno) for f in traceback.extract_tb(error.__traceback__)
              if filename in os.path.basename(f.filename)]
    if isinstance(error, SyntaxError) and error.filename:
        frames.append((error.filename, error.lineno))
    where = ""
    if frames:
        cell = os.path.basename(frames[-1][0])[len(filename):].strip(" []")  # notebooks: "cell <grade_id>"
        where = f" ({cell + ', ' if cell else ''}line {frames[-1][1]})"
    return f"{filename} could not be imported{where}: {type(error).__name__}: {error}"


class Submission:
    """The student's modules and the reference's, loaded once each and cached."""

    def __init__(self, tree, provided_tree=PROVIDED_TREE, shown_as=None):
        """`provided_tree=None` loads the tree in place (the students' repository, whose provided
        files sit beside the graded ones; the grading child's working folder); otherwise a working
        folder gets the provided files with the student's graded files on top, so that a student
        who changed or deleted a provided file is graded against the provided one. `shown_as`:
        the folder named in messages (default: `tree`)."""
        self.tree = Path(shown_as or tree).resolve()
        self._student, self._reference = {}, {}
        if provided_tree is None:
            self.workdir, self._owns_workdir = Path(tree).resolve(), False
            return
        self.workdir, self._owns_workdir = prepare_workdir(self.tree, provided_tree), True

    def student(self, filename):
        """The student's module, or CheckFailure saying why it cannot be loaded."""
        if filename not in self._student:
            if not (self.workdir / filename).is_file():
                self._student[filename] = CheckFailure(
                    f"{filename} is missing from your submission (expected at {self.tree / filename})")
            else:
                try:
                    self._student[filename] = load_module(self.workdir, filename)
                except BaseException as error:  # SyntaxError, ImportError, SystemExit, ...
                    self._student[filename] = CheckFailure(_describe_import_error(filename, error))
        module = self._student[filename]
        if isinstance(module, CheckFailure):
            raise module
        return module

    def run(self, probe, **inputs):
        """The plain values of `probe` run on the student's modules here, from the same seeds as in
        the grading child (so the public tests and the grader see the same values)."""
        from autograder.checks import seed_everything
        from autograder.compare import NotRun
        from autograder.probes import run_probe, unplain

        seed_everything()
        status, message, value = run_probe(self, probe, inputs)
        if status == "passed":
            return unplain(value)
        raise NotRun(message) if status == "not run" else CheckFailure(message)

    def reference(self, filename):
        if filename not in self._reference:
            self._reference[filename] = load_module(REFERENCE_TREE, filename)
        return self._reference[filename]

    def cleanup(self):
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
