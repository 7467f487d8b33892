"""Generate the student tree from the reference tree.

    python -m autograder generate solution assignment      (or: make assignment)

Every file of the reference tree is copied; in Python files each block

        ### BEGIN SOLUTION (~ 6 lines: a hint for the student)
        ...reference code...
        ### END SOLUTION

becomes, at the same indentation,

        # YOUR CODE HERE (~ 6 lines: a hint for the student)
        raise NotImplementedError("CNN.forward is not implemented yet")

naming the function it stands in. Nested, unclosed or stray markers are errors. Notebooks
(`q1.ipynb`, an nbgrader source notebook) go through nbgrader's own `generate_assignment`, in a
temporary course folder: solution cells become stubs (`raise NotImplementedError("not implemented
yet")`, "YOUR ANSWER HERE" in markdown answers), check cells are locked; the points of its graded cells
are the rubric's (`nbgrader_points`: a question's check cell its autograded points, a proof graded by
hand its own), whatever the reference notebook says, so nbgrader and the rubric agree. The student tree is
therefore never edited by hand; `tests/test_generate.py` fails when it differs from what this
module makes of the reference.
"""

import ast
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BEGIN = re.compile(r"^(?P<indent>\s*)### BEGIN SOLUTION(?P<hint>.*)$")
END = re.compile(r"^\s*### END SOLUTION\s*$")
NOT_IMPLEMENTED = "is not implemented yet"
SKIPPED = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache"}


class MarkerError(ValueError):
    """Solution markers that cannot be turned into a stub."""


def _enclosing_functions(source):
    """[(first line, last line, qualified name)] of every function in `source`."""
    spans = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                if not isinstance(child, ast.ClassDef):
                    spans.append((child.lineno, child.end_lineno, name))
                visit(child, name + ".")

    visit(ast.parse(source), "")
    return spans


def strip_solutions(source, filename="<source>"):
    """Return `source` with every solution block replaced by a NotImplementedError stub."""
    functions = _enclosing_functions(source)
    out, block_start = [], None
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        begin = BEGIN.match(line)
        if begin:
            if block_start is not None:
                raise MarkerError(f"{filename}:{number}: BEGIN SOLUTION inside the block opened at line {block_start}")
            block_start = number
            owners = [name for first, last, name in functions if first < number <= last]
            if not owners:
                raise MarkerError(f"{filename}:{number}: solution block outside a function")
            indent, hint = begin.group("indent"), begin.group("hint").strip()
            out.append(f"{indent}# YOUR CODE HERE{' ' + hint if hint else ''}\n")
            out.append(f'{indent}raise NotImplementedError("{owners[-1]} {NOT_IMPLEMENTED}")\n')
        elif END.match(line):
            if block_start is None:
                raise MarkerError(f"{filename}:{number}: END SOLUTION without BEGIN SOLUTION")
            block_start = None
        elif block_start is None:
            out.append(line)
        elif "### " in line and "SOLUTION" in line:
            raise MarkerError(f"{filename}:{number}: unexpected marker inside a solution block")
    if block_start is not None:
        raise MarkerError(f"{filename}:{block_start}: BEGIN SOLUTION is never closed")
    return "".join(out)


NOTEBOOK_STUB = 'raise NotImplementedError("not implemented yet")'  # nbgrader's stub, the same for every cell
NBGRADER_CONFIG = f"c = get_config()\nc.ClearSolutions.code_stub = {{'python': {'# YOUR CODE HERE' + chr(10) + NOTEBOOK_STUB!r}}}\n"


def nbgrader_points(rubric):
    """{grade_id: points} of the graded cells of the rubric's notebooks: the check cell of each question
    (`check_1_3` for 1.3) holds its autograded points, the answer of each test graded by hand
    (`proof_rank` for 1.3-proof-rank) that test's points."""
    points = {}
    for number, question in rubric.questions.items():
        if question.file.endswith(".ipynb"):
            points["check_" + number.replace(".", "_")] = rubric.max_points(number)
            points.update({test.id.split("-", 1)[1].replace("-", "_"): test.points for test in rubric.tests
                           if test.manual and test.question == number})
    return points


def with_rubric_points(notebook_text, points, filename="<notebook>"):
    """The notebook with the nbgrader points of its graded cells set to `points` ({grade_id: points});
    MarkerError when a graded cell has none there, or a cell named there is not a graded cell."""
    import nbformat

    notebook = nbformat.reads(notebook_text, as_version=4)
    graded = {}
    for cell in notebook.cells:
        metadata = cell.metadata.get("nbgrader", {})
        if metadata.get("grade"):
            graded[metadata.get("grade_id")] = metadata
    for grade_id in sorted(set(graded) - set(points), key=str):
        raise MarkerError(f"{filename}: the graded cell {grade_id} has no points in the rubric: name it "
                          f"check_<question> (check_1_3 for 1.3) or after a test graded by hand (proof_rank for "
                          f"1.3-proof-rank)")
    for grade_id in sorted(set(points) - set(graded)):
        raise MarkerError(f"{filename}: the rubric gives points to a graded cell {grade_id}, which the notebook lacks")
    for grade_id, metadata in graded.items():
        value = points[grade_id]
        metadata["points"] = int(value) if float(value).is_integer() else value
    return nbformat.writes(notebook)


def strip_notebook(path, rubric=None):
    """The student copy of the nbgrader source notebook `path`, made by `nbgrader generate_assignment`, its
    graded cells worth the rubric's points."""
    from autograder import rubric as rubric_module

    path = Path(path)
    rubric = rubric or rubric_module.load()
    with tempfile.TemporaryDirectory(prefix="hw2-nbgrader-") as course:
        source = Path(course, "source", "homework")
        source.mkdir(parents=True)
        (source / path.name).write_text(with_rubric_points(path.read_text(), nbgrader_points(rubric), str(path)))
        Path(course, "nbgrader_config.py").write_text(NBGRADER_CONFIG)
        result = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", "homework", "--no-db",
                                 "--force", "--log-level=WARN"], cwd=course, capture_output=True, text=True)
        generated = Path(course, "release", "homework", path.name)
        if result.returncode != 0 or not generated.is_file():
            raise MarkerError(f"{path}: nbgrader generate_assignment failed: {result.stderr.strip()[-1500:]}")
        return _name_the_stubs(generated.read_text())


def _name_the_stubs(notebook_text):
    """The notebook with each stub naming its function, as the .py stubs do:
    `raise NotImplementedError("conv_output_size is not implemented yet")`."""
    import nbformat

    notebook = nbformat.reads(notebook_text, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type != "code" or NOTEBOOK_STUB not in cell.source:
            continue
        lines, owner = cell.source.split("\n"), None
        for number, line in enumerate(lines):
            found = re.match(r"\s*def (\w+)\(", line)
            if found:
                owner = found.group(1)
            elif NOTEBOOK_STUB in line and owner:
                lines[number] = line.replace(NOTEBOOK_STUB, f'raise NotImplementedError("{owner} {NOT_IMPLEMENTED}")')
        cell.source = "\n".join(lines)
    return nbformat.writes(notebook).encode() + b"\n"


def generate(reference_dir, student_dir, rubric=None):
    """Write the student tree for `reference_dir` into `student_dir` (replacing what was there); a notebook's
    graded cells are worth `rubric`'s points (default: autograder/rubric.toml's)."""
    reference_dir, student_dir = Path(reference_dir), Path(student_dir)
    files = {}
    for path in sorted(reference_dir.rglob("*")):
        relative = path.relative_to(reference_dir)
        if path.is_dir() or SKIPPED & set(relative.parts):
            continue
        if path.suffix == ".py":
            files[relative] = strip_solutions(path.read_text(), str(path)).encode()
        elif path.suffix == ".ipynb":
            files[relative] = strip_notebook(path, rubric)
        else:
            files[relative] = path.read_bytes()
    # everything is computed before anything is written, so a marker error leaves the tree intact
    if student_dir.exists():
        shutil.rmtree(student_dir)
    for relative, content in files.items():
        target = student_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return sorted(files)
