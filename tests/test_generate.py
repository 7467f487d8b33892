"""The student tree is exactly what the generator makes of the reference tree."""

import pytest

from autograder.generate import MarkerError, generate, strip_solutions
from tests.conftest import ASSIGNMENT, SOLUTION


def test_assignment_is_generated_from_solution(tmp_path):
    files = generate(SOLUTION, tmp_path / "assignment")
    committed = sorted(p.relative_to(ASSIGNMENT) for p in ASSIGNMENT.rglob("*")
                       if p.is_file() and "__pycache__" not in p.parts)
    assert committed == files, "assignment/ has files the generator does not make: run `make assignment`"
    for relative in files:
        assert (ASSIGNMENT / relative).read_bytes() == (tmp_path / "assignment" / relative).read_bytes(), \
            f"assignment/{relative} differs from the generated copy: run `make assignment`, never edit it by hand"


def test_no_solution_code_reaches_the_assignment():
    for path in ASSIGNMENT.rglob("*.py"):
        assert "SOLUTION" not in path.read_text(), path


SOURCE = '''\
class Model:
    def forward(self, x):
        """Docstring stays."""
        ### BEGIN SOLUTION (~ 2 lines)
        y = x + 1
        return y
        ### END SOLUTION


def step():
    ### BEGIN SOLUTION
    return 3
    ### END SOLUTION
'''


def test_blocks_become_stubs_naming_the_function_at_the_same_indentation():
    stub = strip_solutions(SOURCE)
    assert "y = x + 1" not in stub and "return 3" not in stub
    assert '        # YOUR CODE HERE (~ 2 lines)\n        raise NotImplementedError("Model.forward is not implemented yet")' in stub
    assert '    # YOUR CODE HERE\n    raise NotImplementedError("step is not implemented yet")' in stub
    namespace = {}
    exec(compile(stub, "stub", "exec"), namespace)
    with pytest.raises(NotImplementedError, match="step is not implemented yet"):
        namespace["step"]()


@pytest.mark.parametrize("source, message", [
    ("def f():\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n    pass\n    ### END SOLUTION\n", "inside the block"),
    ("def f():\n    ### BEGIN SOLUTION\n    pass\n", "never closed"),
    ("def f():\n    pass\n    ### END SOLUTION\n", "without BEGIN"),
    ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n", "outside a function"),
])
def test_malformed_markers_are_rejected(source, message):
    with pytest.raises(MarkerError, match=message):
        strip_solutions(source)


def test_a_marker_error_leaves_the_existing_tree_intact(tmp_path):
    reference = tmp_path / "ref"
    reference.mkdir()
    (reference / "a.py").write_text("def f():\n    ### BEGIN SOLUTION\n    pass\n")
    student = tmp_path / "student"
    student.mkdir()
    (student / "keep.py").write_text("x = 1\n")
    with pytest.raises(MarkerError):
        generate(reference, student)
    assert (student / "keep.py").exists()


def _graded_points(notebook_text):
    import json

    return {cell["metadata"]["nbgrader"]["grade_id"]: cell["metadata"]["nbgrader"]["points"]
            for cell in json.loads(notebook_text)["cells"] if cell["metadata"].get("nbgrader", {}).get("grade")}


def test_the_notebooks_nbgrader_points_are_the_rubrics():
    """Each check cell is worth its question's autograded points, each proof its points graded by hand."""
    from autograder import rubric as rubric_module

    rubric = rubric_module.load()
    points = _graded_points((ASSIGNMENT / "q1.ipynb").read_text())
    questions = [n for n, q in rubric.questions.items() if q.file == "q1.ipynb"]
    assert points == {**{f"check_{n.replace('.', '_')}": rubric.max_points(n) for n in questions},
                      "proof_rank": 3, "proof_heads": 3}
    assert sum(points.values()) == sum(t.points for t in rubric.tests if t.question in questions) == 16


def test_a_change_of_points_in_the_rubric_reaches_the_notebook():
    """The points strip_notebook gives nbgrader's source notebook (that nbgrader keeps them, the two tests above)."""
    from dataclasses import replace

    from autograder import rubric as rubric_module
    from autograder.generate import nbgrader_points, with_rubric_points

    rubric = rubric_module.load()
    rubric = replace(rubric, tests=[replace(t, points=5.0) if t.id in ("1.3-proof-heads", "1.1-output-sizes") else t
                                    for t in rubric.tests])
    points = _graded_points(with_rubric_points((SOLUTION / "q1.ipynb").read_text(), nbgrader_points(rubric)))
    assert points["proof_heads"] == 5 and points["check_1_1"] == 7 and points["proof_rank"] == 3


def test_a_graded_cell_the_rubric_does_not_know_is_named():
    import nbformat

    from autograder.generate import with_rubric_points

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("assert True", metadata={"nbgrader": {
        "grade": True, "grade_id": "check_9_9", "locked": True, "points": 0, "schema_version": 3, "solution": False,
        "task": False}})])
    with pytest.raises(MarkerError, match="the graded cell check_9_9 has no points in the rubric"):
        with_rubric_points(nbformat.writes(notebook), {})
    with pytest.raises(MarkerError, match="gives points to a graded cell proof_rank, which the notebook lacks"):
        with_rubric_points(nbformat.writes(notebook), {"check_9_9": 1, "proof_rank": 3})
    assert '"points": 2' in with_rubric_points(nbformat.writes(notebook), {"check_9_9": 2.0})
