"""Run a notebook's answers as the grader does, then its check cells: `make check-q1`.

    python -m autograder.child.notebook q1.ipynb

The grader runs only the notebook's provided and answer cells, in order, in one namespace (not
the cells a student added: scratch work there is ignored, so an answer must not depend on it).
This runs exactly those, then the check cells, and reports the first failure with its cell: the
same notebook gets the same verdict here as in grading.
"""

import sys
import traceback
from pathlib import Path

from .compare import CheckFailure
from .submission import notebook_cells


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
            exec(compile(source, f"{path.name} [cell {grade_id}]", "exec"), namespace)
        except Exception as error:
            frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith(path.name)]
            where = f", line {frames[-1].lineno}" if frames else ""
            detail = str(error) or "(no message)"
            print(f"cell {grade_id}{where}: {type(error).__name__}: {detail}\n"
                  f"(only the notebook's provided, answer and check cells run here, as in grading: a name defined "
                  f"in a cell you added is not defined)" if isinstance(error, NameError) else
                  f"cell {grade_id}{where}: {type(error).__name__}: {detail}", file=sys.stderr)
            return 1
    print(f"{path.name}: every check cell passed ({len(cells)} cells run, as the grader runs them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
