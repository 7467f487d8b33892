"""Load the student's files as modules, where they are: `Submission(folder)`.

Used by the grading child (in the working folder the grader prepared), by the students' public
tests (their own files, in place) and by calibration (the reference). `run(probe, **inputs)` runs
a probe of `probes.py` on the student's modules from the same seeds as the grading child, so the
public tests and the grader see the same values.
"""

import importlib.util
import json
import os
import sys
import traceback
import types
from pathlib import Path

from .compare import IMPORT_ERROR, MISSING_FILE, PASSED, SYNTAX_ERROR, TIMED_OUT, CheckFailure

NOTEBOOK, CNN_FILE, DECODER, ATTENTION = "q1.ipynb", "h2-q2.py", "decoder.py", "decoder_with_attention.py"
GRADED_FILES = (NOTEBOOK, CNN_FILE, DECODER, ATTENTION)  # what a student hands in: the one list of them
PROVIDED_FILES = ("utils.py", "train.py")  # the homework's own code beside them, never the student's copy
# the homework's own modules, importable by each other (dropped from sys.modules before each load)
HELPERS = tuple(Path(name).stem for name in GRADED_FILES + PROVIDED_FILES if name.endswith(".py"))
# the student files a provided file imports: when one cannot be loaded, the provided file gets a
# placeholder instead, so that one student file's mistake never costs another file's tests
PROVIDED_IMPORTS = {"train.py": ("decoder", "decoder_with_attention")}


def placeholder(name, why):
    """A module standing for student file `name` that could not be loaded: any name imported from
    it is a class that fails, saying why, if it is ever used."""
    module = types.ModuleType(name)

    def missing(attribute):
        if attribute.startswith("__"):
            raise AttributeError(attribute)

        def fail(*args, **kwargs):
            raise CheckFailure(f"{name}.py is needed here and could not be loaded: {why}")

        return type(attribute, (), {"__init__": fail})

    module.__getattr__ = missing
    return module


def notebook_cells(path, checks=False):
    """[(grade_id, source)] of the code cells of an nbgrader notebook that define the answers: the
    provided (locked) cells and the answer (solution) cells, in order; not cells of the student's
    own (scratch work), and the check cells only with `checks` (`make check-q1`: the grader runs
    its own checks instead). A notebook that is not valid JSON raises CheckFailure saying so."""
    try:
        notebook = json.loads(Path(path).read_text())
        raw_cells = notebook["cells"]
    except (ValueError, KeyError, TypeError) as error:
        raise CheckFailure(f"{Path(path).name} is not a readable notebook ({type(error).__name__}: "
                           f"{str(error)[:200]}); open it in Jupyter and save it again") from None
    cells = []
    for cell in raw_cells:
        if not isinstance(cell, dict):
            continue
        metadata = cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}
        marks = metadata.get("nbgrader") if isinstance(metadata.get("nbgrader"), dict) else {}
        is_check = bool(marks.get("grade")) and not marks.get("solution")
        if cell.get("cell_type") != "code" or not marks or (is_check and not checks):
            continue
        if marks.get("solution") or marks.get("locked"):
            source = cell.get("source", "")
            cells.append((marks.get("grade_id", "?"), "".join(source) if isinstance(source, list) else source))
    return cells


def cell_filename(path, grade_id):
    """The file name a notebook's cell is compiled under, which tracebacks name: "<path> [cell <id>]"."""
    return f"{path} [cell {grade_id}]"


def cell_of(filename, path):
    """The grade id of the cell of notebook `path` that `filename` (a code object's) names, else None."""
    prefix = cell_filename(path, "")[:-1]
    return filename[len(prefix):-1] if filename.startswith(prefix) and filename.endswith("]") else None


def load_notebook(path, name):
    """The answers of a notebook as a module: its provided and answer cells run in order."""
    module = types.ModuleType(name)
    module.__file__ = str(path)
    for grade_id, source in notebook_cells(path):
        exec(compile(source, cell_filename(path, grade_id), "exec"), module.__dict__)
    return module


def load_module(tree, filename, placeholders=None):
    """Import `<tree>/<filename>` (e.g. `h2-q2.py`) under a fresh module name and return it; for a
    notebook (`q1.ipynb`), a module holding what its answer cells define.

    The tree's folder goes first on `sys.path` so that its own helpers (`import utils`) resolve;
    `placeholders` ({module name: module}) stand for helpers that cannot be imported.
    """
    path = Path(tree).resolve() / filename
    folder = str(path.parent)
    if folder in sys.path:
        sys.path.remove(folder)
    sys.path.insert(0, folder)
    for name in HELPERS:
        sys.modules.pop(name, None)  # resolve the tree's own helpers, not another tree's
    sys.modules.update(placeholders or {})
    name = f"_tree_{abs(hash(str(path)))}_{path.stem.replace('-', '_')}"
    if path.suffix == ".ipynb":
        return load_notebook(path, name)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def describe_import_error(filename, error):
    if type(error).__name__ == "TestTimeout":  # the child's alarm, during the import
        return (f"{filename} timed out while being imported: it runs code at import that does not finish (a loop, "
                f"or a main() that is not under `if __name__ == \"__main__\":`)")
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
    """The student's modules, loaded from `tree` in place, once each and cached. `shown_as`: the
    folder named in messages (default: `tree`)."""

    def __init__(self, tree, shown_as=None):
        self.workdir = Path(tree).resolve()
        self.tree = Path(shown_as or tree).resolve()
        self._student = {}

    def student(self, filename):
        """The student's module, or CheckFailure saying why it cannot be loaded."""
        if filename not in self._student:
            if not (self.workdir / filename).is_file():
                self._student[filename] = CheckFailure(
                    f"{filename} is missing from your submission (expected at {self.tree / filename})", MISSING_FILE)
            else:
                try:
                    self._student[filename] = load_module(self.workdir, filename, self._placeholders(filename))
                except BaseException as error:  # SyntaxError, ImportError, SystemExit, ...
                    reason = (SYNTAX_ERROR if isinstance(error, SyntaxError) else
                              TIMED_OUT if type(error).__name__ == "TestTimeout" else IMPORT_ERROR)
                    self._student[filename] = CheckFailure(describe_import_error(filename, error), reason)
        module = self._student[filename]
        if isinstance(module, CheckFailure):
            raise module
        return module

    def _placeholders(self, filename):
        """Placeholders for the student files the provided `filename` imports that cannot be loaded."""
        found = {}
        for name in PROVIDED_IMPORTS.get(filename, ()):
            try:
                self.student(f"{name}.py")
            except CheckFailure as error:
                found[name] = placeholder(name, str(error))
        return found

    def run(self, probe, **inputs):
        """The plain values of `probe` run on the student's modules here, from the same seeds as in
        the grading child; CheckFailure with the message of what went wrong."""
        from .probes import run_probe, unplain
        from .seeds import seed_everything

        seed_everything()
        status, message, value = run_probe(self, probe, inputs)
        if status == PASSED:
            return unplain(value)
        raise CheckFailure(message, value)  # value: the reason of the failure
