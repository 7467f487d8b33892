"""Public checks of Question 2.2 (`h2-q2.py`): shapes, log-probabilities and gradients.

They need neither the reference solution nor data, so they also ship with the students'
repository as its public tests (`make release`), giving the same messages as the autograder.
"""

import torch
import torch.nn as nn

from autograder.checks import check
from autograder.compare import expect_tensor, fail

FILE = "h2-q2.py"
PARAMETERS = 769_930
# the statement's network: conv 1->16 3x3, conv 16->32 3x3, linear 1152->600, 600->120, 120->10
SHAPES = [(16, 1, 3, 3), (16,), (32, 16, 3, 3), (32,), (600, 1152), (600,), (120, 600), (120,), (10, 120), (10,)]


def student_cnn(sub, dropout=0.3):
    model = sub.student(FILE).CNN(dropout)
    if not isinstance(model, nn.Module):
        fail(f"CNN({dropout}) is a {type(model).__name__}; expected an nn.Module")
    return model


def random_images(batch, seed=0):
    return torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


@check("2.2-architecture")
def architecture(sub):
    model = student_cnn(sub)
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    expected = sorted(SHAPES)
    found = sorted(tuple(p.shape) for p in model.parameters())
    if found != expected:
        missing = [s for s in expected if s not in found]
        extra = [s for s in found if s not in expected]
        fail(f"your CNN has {count:,} trainable parameters in tensors of shapes {found}; the statement's has "
             f"{PARAMETERS:,}. Missing shapes: {missing or 'none'}; unexpected: {extra or 'none'}. "
             f"Check kernel sizes, channels and the 1152 -> 600 -> 120 -> 10 linear layers.")
    if count != PARAMETERS:
        fail(f"your CNN has {count:,} trainable parameters; expected {PARAMETERS:,} (some are frozen?)")


@check("2.2-output-shape")
def output_shape(sub):
    model = student_cnn(sub).eval()
    for batch in (1, 7, 64):
        with torch.no_grad():
            expect_tensor(f"CNN.forward on a batch of {batch} images (shape ({batch}, 1, 28, 28))",
                          model(random_images(batch)), (batch, 10), torch.float32)


@check("2.2-log-probabilities")
def log_probabilities(sub):
    model = student_cnn(sub).eval()
    with torch.no_grad():
        out = expect_tensor("CNN.forward output", model(random_images(16)), (16, 10))
    sums = out.exp().sum(dim=1)
    if not torch.allclose(sums, torch.ones(16), atol=1e-4):
        worst = sums[(sums - 1).abs().argmax()].item()
        fail(f"exp of each output row must sum to 1 (log-probabilities over the 10 classes); a row sums to "
             f"{worst:.4g}. Apply log_softmax over dim=1 (the classes) as the last step.")


@check("2.2-gradients")
def gradients(sub):
    torch.manual_seed(0)
    model = student_cnn(sub, dropout=0.3).train()
    out = model(random_images(8))
    expect_tensor("CNN output", out, (8, 10))
    nn.NLLLoss()(out, torch.arange(8) % 10).backward()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad and (parameter.grad is None or parameter.grad.abs().sum() == 0):
            fail(f"parameter {name} received no gradient after backward: it is not used in the forward pass "
                 f"(or the graph is broken, e.g. by .detach() or .numpy())")
    model = model.double().eval()
    # derivatives along 12 fixed random directions of the input image (all 784 pixels would be slow)
    base = random_images(2).double()
    directions = torch.randn(12, 2 * 28 * 28, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    v = torch.zeros(12, dtype=torch.float64, requires_grad=True)
    try:
        ok = torch.autograd.gradcheck(lambda v: model(base + (v @ directions).view(2, 1, 28, 28) * 0.01), (v,),
                                      eps=1e-6, atol=1e-4, raise_exception=False)
    except NotImplementedError:
        raise
    except Exception as error:
        fail(f"gradcheck in float64 could not run ({type(error).__name__}: {error}); the forward must work "
             f"in float64 when the model is converted with .double()")
    if not ok:
        fail("gradcheck in float64: the gradients autograd computes for your forward disagree with finite "
             "differences (a non-differentiable step, or values modified in place?)")
