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
