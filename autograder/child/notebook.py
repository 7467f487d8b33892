"""Run a notebook's answers as the grader does, then its check cells: `make check-q1`.

    python -m autograder.child.notebook q1.ipynb

The grader runs only the notebook's provided and answer cells, in order, in one namespace (not
the cells a student added: scratch work there is ignored, so an answer must not depend on it).
This runs exactly those, then the check cells, and reports the first failure with the cell and line
where it was raised (an answer cell's, when a check cell called its function): the same notebook
gets the same verdict here as in grading.
"""

import sys
import traceback
from pathlib import Path

from .compare import CheckFailure
from .submission import cell_filename, cell_of, notebook_cells


def where(error, path, running):
    """Where in the notebook `error` was raised: the cell and line of the innermost frame in one of its
    cells (the answer cell whose function a check cell called, not the check cell), with the function
    and the cell it was called from when that is another; a syntax error's own line."""
    frames = [(cell_of(f.filename, path.name), f) for f in traceback.extract_tb(error.__traceback__)]
    frames = [(cell, f) for cell, f in frames if cell is not None]
    if not frames:
        line = f", line {error.lineno}" if isinstance(error, SyntaxError) and error.lineno else ""
        return f"cell {running}{line}"
    (cell, frame), (first, caller) = frames[-1], frames[0]
    called = [f"in {frame.name}"] if frame.name != "<module>" else []
    if first != cell:
        called.append(f"called from cell {first}, line {caller.lineno}")
    return f"cell {cell}, line {frame.lineno}" + (f" ({', '.join(called)})" if called else "")


def main(argv=None):
    path = Path((argv if argv is not None else sys.argv[1:])[0])
    try:
        cells = notebook_cells(path, checks=True)
    except CheckFailure as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    namespace = {"__name__": "__main__"}
    for grade_id, source in cells:
        try:
            exec(compile(source, cell_filename(path.name, grade_id), "exec"), namespace)
        except Exception as error:
            detail = (error.msg if isinstance(error, SyntaxError) else str(error)) or "(no message)"
            hint = ("\n(only the notebook's provided, answer and check cells run here, as in grading: a name defined "
                    "in a cell you added is not defined)" if isinstance(error, NameError) else "")
            print(f"{path.name}, {where(error, path, grade_id)}: {type(error).__name__}: {detail}{hint}",
                  file=sys.stderr)
            return 1
    print(f"{path.name}: every check cell passed ({len(cells)} cells run, as the grader runs them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
