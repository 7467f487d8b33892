"""Hidden checks of Question 1 (the notebook `q1.ipynb`): the functions of 1.1, 1.2 and 1.3, called
on inputs of the grader's and compared with the reference notebook's. The two proofs of 1.3 are
graded by hand (`manual = true` in the rubric)."""

import torch

from autograder.checks import check
from autograder.child.compare import expect_close, expect_tensor, fail, shown
from autograder.child.probes import NOTEBOOK


def _calls(sub, calls):
    """(the student's results, the reference's) of [(function name, arguments)]."""
    reference = sub.reference(NOTEBOOK)
    return sub.run("notebook.calls", calls=calls), [getattr(reference, name)(*args) for name, args in calls]


def _signature(name, args):
    return f"{name}({', '.join(str(a) for a in args)})"


def _expect_same_ints(calls, got, expected):
    for (name, args), g, e in zip(calls, got, expected):
        if type(g) is not int:
            fail(f"{_signature(name, args)} returned a {type(g).__name__} ({shown(g)}); expected a Python int")
        if g != e:
            fail(f"{_signature(name, args)} returned {shown(g)}; expected {e}")


def _expect_same_counts(name, got, expected):
    if not isinstance(got, dict) or set(got) != set(expected):
        keys = shown(sorted(got)) if isinstance(got, dict) else type(got).__name__
        fail(f"{name}() returned {keys}; expected a dict with the keys {sorted(expected)}")
    wrong = {key: got[key] for key in expected if got[key] != expected[key]}
    if wrong:
        fail(f"{name}() gives {shown(wrong)}; " + ", ".join(f"{key} should be {expected[key]:,}" for key in wrong))


@check("1.1-output-sizes")
def output_sizes(sub):
    calls = [("conv_output_size", args) for args in [(28, 5), (28, 5, 1, 0), (32, 3, 1, 1), (224, 7, 2, 3),
                                                     (11, 3, 2, 0), (13, 4, 3, 1), (9, 9, 1, 0)]]
    calls += [("pool_output_size", args) for args in [(24, 4, 2), (28, 2, 2), (7, 3, 2), (10, 3, 3)]]
    _expect_same_ints(calls, *_calls(sub, calls))


@check("1.1-parameter-counts")
def parameter_counts(sub):
    calls = [("conv_parameters", args) for args in [(3, 8, 5), (1, 16, 3), (16, 32, 3), (64, 1, 1)]]
    calls += [("linear_parameters", args) for args in [(968, 10), (1, 1), (1152, 600), (100, 7)]]
    got, expected = _calls(sub, calls + [("cnn_counts", ())])
    _expect_same_ints(calls, got[:-1], expected[:-1])
    _expect_same_counts("cnn_counts", got[-1], expected[-1])


@check("1.2-parameter-counts")
def mlp_counts(sub):
    got, expected = _calls(sub, [("mlp_counts", ())])
    _expect_same_counts("mlp_counts", got[0], expected[0])


def _random(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@check("1.3-attention-probabilities")
def attention_probabilities(sub):
    cases = [(_random(7, 6, seed=0), _random(6, 3, seed=1), _random(6, 3, seed=2)),
             (_random(4, 5, seed=3), _random(5, 5, seed=4), _random(5, 5, seed=5))]
    got, expected = _calls(sub, [("attention_probabilities", case) for case in cases])
    for (X, W_Q, W_K), g, e in zip(cases, got, expected):
        what = f"attention_probabilities for X of shape {tuple(X.shape)} and W_Q, W_K of shape {tuple(W_Q.shape)}"
        g = expect_tensor(what, g, e.shape, torch.float64)
        if not torch.allclose(g.sum(dim=1), torch.ones(len(g), dtype=torch.float64)):
            fail(f"{what}: the rows do not sum to 1; take the softmax over each row (dim=1), one query's "
                 f"weights over the keys")
        expect_close(what, g, e, rtol=1e-6, atol=1e-9, hint="P = softmax(X W_Q (X W_K)^T), row by row.")


@check("1.3-low-rank")
def low_rank(sub):
    W_Q, W_K = _random(8, 3, seed=6), _random(8, 3, seed=7)
    got, expected = _calls(sub, [("bilinear_matrix", (W_Q, W_K))])
    A = expect_tensor("bilinear_matrix for W_Q, W_K of shape (8, 3)", got[0], (8, 8), torch.float64)
    expect_close("bilinear_matrix for W_Q, W_K of shape (8, 3)", A, expected[0], rtol=1e-6, atol=1e-9,
                 hint="A = W_Q W_K^T.")
    rank = torch.linalg.matrix_rank(A).item()
    if rank > 3:
        fail(f"bilinear_matrix for W_Q, W_K of shape (8, 3) has rank {rank}; A = W_Q W_K^T has rank at most 3")


@check("1.3-equivalent-heads")
def equivalent_heads(sub):
    W_Q, W_K = _random(6, 3, seed=8), _random(6, 3, seed=9)
    B = _random(3, 3, seed=10) + 3 * torch.eye(3, dtype=torch.float64)  # invertible
    got, _ = _calls(sub, [("equivalent_head", (W_Q, W_K, B))])
    if not isinstance(got[0], (tuple, list)) or len(got[0]) != 2:
        fail(f"equivalent_head returned a {type(got[0]).__name__}; expected a pair (W_Q2, W_K2)")
    W_Q2, W_K2 = (expect_tensor(f"{name} returned by equivalent_head", w, (6, 3), torch.float64)
                  for name, w in zip(("W_Q2", "W_K2"), got[0]))
    expect_close("W_Q2 returned by equivalent_head", W_Q2, W_Q @ B, rtol=1e-6, atol=1e-9, hint="W_Q2 = W_Q B.")
    probabilities = sub.reference(NOTEBOOK).attention_probabilities
    for seed in (11, 12, 13):
        X = _random(5, 6, seed=seed)
        expect_close("the attention probabilities of the head (W_Q2, W_K2) returned by equivalent_head",
                     probabilities(X, W_Q2, W_K2), probabilities(X, W_Q, W_K), rtol=1e-6, atol=1e-9,
                     hint="They must equal those of (W_Q, W_K) for every X: which W_K2 makes W_Q2 W_K2^T = W_Q W_K^T?")
