"""Layered comparisons with got/expected messages: None, then type, shape, dtype, then values.

Each function raises CheckFailure with a sentence a student can act on, and never shows the
reference code, only what was expected of the student's output.
"""

import math
import reprlib

import torch


# a test's status: the one definition (results.py, the checks, the child and the public tests use these)
PASSED, FAILED, NOT_RUN = "passed", "failed", "not run"
# why a test failed, as a typed value (the gradebook's status comes from these, never from message text)
WRONG, NOT_IMPLEMENTED, RAISED, TIMED_OUT, OUT_OF_MEMORY, CRASHED = (
    "wrong", "not implemented", "raised an exception", "timed out", "out of memory", "crashed")
MISSING_FILE, SYNTAX_ERROR, IMPORT_ERROR, REFUSED_FILE = "missing file", "syntax error", "import error", "refused file"
REASONS = (WRONG, NOT_IMPLEMENTED, RAISED, TIMED_OUT, OUT_OF_MEMORY, CRASHED, MISSING_FILE, SYNTAX_ERROR, IMPORT_ERROR,
           REFUSED_FILE)
# the code a test needed did not run at all: a stub, or a file that cannot run. A test that needs that code
# through another (a training test, a decoder given a replaced attention) fails for this same reason, and
# says nothing of what it would have replaced or judged
DID_NOT_RUN = (NOT_IMPLEMENTED, MISSING_FILE, SYNTAX_ERROR, IMPORT_ERROR, REFUSED_FILE)


# the start of the message of a value the grader cannot read (wire.py's format), typed CRASHED
UNREADABLE = "your code returned something the grader cannot read"


class _Shown(reprlib.Repr):
    """reprlib's bounded representation (a few items of each container, a few levels), tensors as their
    shape and dtype."""

    def __init__(self):
        super().__init__()
        self.maxlevel, self.maxlist, self.maxtuple, self.maxdict, self.maxstring, self.maxother = 4, 16, 16, 8, 80, 80

    def repr_Tensor(self, tensor, level):
        return f"a tensor of shape {tuple(tensor.shape)[:8]} and dtype {str(tensor.dtype).replace('torch.', '')}"


def shown(value, limit=200):
    """A representation of `value` (something the student's code returned) of at most `limit` characters,
    computed in time bounded by the limit, whatever the value's size: every message that shows a
    returned value shows it this way."""
    try:
        text = _Shown().repr(value)
    except Exception:  # an int beyond the digits Python writes
        text = f"a {type(value).__name__}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


class CheckFailure(AssertionError):
    """A check found something wrong; the message says what was checked, expected and found, and
    `reason` (one of REASONS) what kind of failure it is."""

    def __init__(self, message="", reason=WRONG):
        super().__init__(message)
        self.reason = reason if reason in REASONS else WRONG


def fail(message):
    raise CheckFailure(message)


def expect_tensor(what, got, shape=None, dtype=torch.float32):
    if got is None:
        fail(f"{what} is None; expected a tensor{f' of shape {tuple(shape)}' if shape else ''}. Did you forget a return?")
    if not isinstance(got, torch.Tensor):
        fail(f"{what} is a {type(got).__name__}; expected a torch.Tensor")
    if shape is not None and tuple(got.shape) != tuple(shape):
        fail(f"{what} has shape {shown(tuple(got.shape))}; expected {tuple(shape)}")
    if dtype is not None and got.dtype != dtype:
        fail(f"{what} has dtype {got.dtype}; expected {dtype}")
    if not torch.isfinite(got).all():
        bad = (~torch.isfinite(got)).sum().item()
        fail(f"{what} has {bad} NaN or infinite value(s) out of {got.numel()}")
    return got


def expect_close(what, got, expected, rtol=1e-4, atol=1e-5, hint=""):
    """`got` close to `expected`. A floating tensor of another precision is compared after conversion:
    its dtype is judged by the shape tests, once."""
    expect_tensor(what, got, expected.shape, None)
    if got.dtype != expected.dtype and got.is_floating_point() and expected.is_floating_point():
        got = got.to(expected.dtype)
    expect_tensor(what, got, expected.shape, expected.dtype)
    if not torch.allclose(got, expected, rtol=rtol, atol=atol):
        diff = (got - expected).abs()
        index = tuple(int(i) for i in torch.nonzero(diff == diff.max())[0])
        fail(f"{what}: the values differ from the expected ones: largest difference {diff.max().item():.3g} at index "
             f"{index} (got {got[index].item():.6g}, expected {expected[index].item():.6g}); "
             f"{(~torch.isclose(got, expected, rtol=rtol, atol=atol)).sum().item()} of {got.numel()} values "
             f"outside the tolerance (rtol {rtol:g}, atol {atol:g}).{' ' + hint if hint else ''}")


def expect_float(what, got):
    if isinstance(got, torch.Tensor):
        fail(f"{what} is a torch.Tensor; expected a Python float (use loss.item())")
    if type(got) is not float:
        fail(f"{what} is a {type(got).__name__}; expected a Python float")
    if not math.isfinite(got):
        fail(f"{what} is {shown(got)}; expected a finite number")
    return got


def expect_same_jacobians(what, jacobians, atol, rtol=1e-3):
    """`jacobians`: (autograd's, finite differences') as a probe returns them."""
    if not isinstance(jacobians, tuple) or len(jacobians) != 2:
        fail(f"gradcheck in float64 could not run on {what}")
    analytic, numeric = jacobians
    expect_tensor(f"the finite-difference Jacobian of {what}", numeric, None, torch.float64)
    expect_tensor(f"the Jacobian autograd computes for {what}", analytic, numeric.shape, torch.float64)
    if not torch.allclose(analytic, numeric, rtol=rtol, atol=atol):
        fail(f"gradcheck in float64: the gradients autograd computes for {what} disagree with finite differences "
             f"(largest difference {(analytic - numeric).abs().max().item():.3g}): a non-differentiable step, "
             f".detach(), or values modified in place?")


def expect_same_operations(what, small, large, small_case, large_case, hint):
    """`small` and `large`: {operator: count} of the same code on a small and a large input (as a
    probe's OperationCounter counts them). Vectorized code performs the same operations whatever
    the size; a Python loop over examples or locations performs more on the larger input."""
    if not isinstance(small, dict) or not isinstance(large, dict):
        fail(f"the operations of {what} could not be counted")
    grown = {name: (small.get(name, 0), count) for name, count in large.items() if count > small.get(name, 0)}
    if grown:
        name, (before, after) = max(grown.items(), key=lambda item: item[1][1] - item[1][0])
        fail(f"{what} performs more tensor operations on {large_case} than on {small_case} ({name[:100]} ran {before} "
             f"time(s), then {after}): {hint}")


def expect_varies(what, got, hint=""):
    """`got`: outputs (batch, ...) for a batch of different inputs. A function that does its work gives
    different outputs for different inputs; one that returns a constant of the right shape does not."""
    if isinstance(got, torch.Tensor) and got.dim() >= 1 and len(got) > 1 and torch.isfinite(got).all():
        if torch.allclose(got, got[:1].expand_as(got), rtol=0, atol=1e-7):
            fail(f"{what} is the same for every input of the batch, although the inputs differ: the function does "
                 f"not compute it from its inputs yet{'; ' + hint if hint else ''}")
