"""The reference CNN and train_batch behave as the statement says; the skeleton's stubs fail loudly."""

import pytest
import torch
import torch.nn as nn

from autograder.submission import load_module
from tests.conftest import ASSIGNMENT


@pytest.mark.parametrize("batch", [1, 8, 33])
def test_output_shape_dtype_and_normalisation(q2, batch):
    model = q2.CNN(0.3).eval()
    out = model(torch.rand(batch, 1, 28, 28))
    assert out.shape == (batch, 10) and out.dtype == torch.float32
    torch.testing.assert_close(out.exp().sum(dim=1), torch.ones(batch))


def test_parameter_count(q2):
    model = q2.CNN(0.3)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 769_930


def test_dropout_only_in_training(q2):
    x = torch.rand(16, 1, 28, 28)
    model = q2.CNN(0.5)
    model.train()
    assert not torch.allclose(model(x), model(x)), "training mode should drop units at random"
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    no_dropout = q2.CNN(0.0).train()
    torch.testing.assert_close(no_dropout(x), no_dropout(x))


def test_train_batch_returns_float_and_updates_the_weights(q2):
    model = q2.CNN(0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    X, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    before = [p.detach().clone() for p in model.parameters()]
    losses = [q2.train_batch(X, y, model, optimizer, nn.NLLLoss()) for _ in range(30)]
    assert all(type(loss) is float for loss in losses)
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert losses[-1] < 0.7 * losses[0], f"loss on a fixed batch went {losses[0]:.3f} -> {losses[-1]:.3f}"


def test_skeleton_stubs_raise_not_implemented():
    skeleton = load_module(ASSIGNMENT, "h2-q2.py")
    with pytest.raises(NotImplementedError, match="CNN.__init__ is not implemented yet"):
        skeleton.CNN(0.3)
    with pytest.raises(NotImplementedError, match="train_batch is not implemented yet"):
        skeleton.train_batch(None, None, None, None, None)
