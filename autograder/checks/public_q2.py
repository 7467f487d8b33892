"""Public checks of Question 2.2 (`h2-q2.py`): shapes, log-probabilities and gradients.

They need neither the reference solution nor data, so they also ship with the students'
repository as its public tests (`make release`), giving the same messages as the autograder.
"""

import torch

from autograder.checks import check
from autograder.child.compare import expect_same_jacobians, expect_tensor, expect_varies, fail, shown

PARAMETERS = 769_930
# the statement's network: conv 1->16 3x3, conv 16->32 3x3, linear 1152->600, 600->120, 120->10
SHAPES = [(16, 1, 3, 3), (16,), (32, 16, 3, 3), (32,), (600, 1152), (600,), (120, 600), (120,), (10, 120), (10,)]


def random_images(batch, seed=0):
    return torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


@check("2.2-architecture")
def architecture(sub):
    parameters = sub.run("cnn.parameters")
    count = sum(torch.Size(shape).numel() for shape, trainable in parameters if trainable)
    expected = sorted(SHAPES)
    found = sorted(tuple(shape) for shape, _ in parameters)
    if found != expected:
        missing = [s for s in expected if s not in found]
        extra = [s for s in found if s not in expected]
        fail(f"your CNN has {count:,} trainable parameters in tensors of shapes {shown(found, 400)}; the statement's "
             f"has {PARAMETERS:,}. Missing shapes: {missing or 'none'}; "
             f"unexpected: {shown(extra) if extra else 'none'}. "
             f"Check kernel sizes, channels and the 1152 -> 600 -> 120 -> 10 linear layers.")
    if count != PARAMETERS:
        fail(f"your CNN has {count:,} trainable parameters; expected {PARAMETERS:,} (some are frozen?)")


@check("2.2-output-shape")
def output_shape(sub):
    sizes = (1, 7, 64)
    outputs = sub.run("cnn.outputs", batches=[random_images(batch) for batch in sizes])
    for batch, output in zip(sizes, outputs):
        expect_tensor(f"CNN.forward on a batch of {batch} images (shape ({batch}, 1, 28, 28))", output, (batch, 10),
                      torch.float32)
        expect_varies(f"CNN.forward's output on a batch of {batch} different images", output)


@check("2.2-log-probabilities")
def log_probabilities(sub):
    out = expect_tensor("CNN.forward output", sub.run("cnn.outputs", batches=[random_images(16)])[0], (16, 10), None)
    out = out.float()  # a dtype mistake is judged by 2.2-output-shape
    expect_varies("CNN.forward's output on 16 different images", out)
    sums = out.exp().sum(dim=1)
    if not torch.allclose(sums, torch.ones(16), atol=1e-4):
        worst = sums[(sums - 1).abs().argmax()].item()
        fail(f"exp of each output row must sum to 1 (log-probabilities over the 10 classes); a row sums to "
             f"{worst:.4g}. Apply log_softmax over dim=1 (the classes) as the last step.")


@check("2.2-gradients")
def gradients(sub):
    # derivatives along 12 fixed random directions of the input image (all 784 pixels would be slow)
    directions = torch.randn(12, 2 * 28 * 28, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    found = sub.run("cnn.gradients", images=random_images(8), targets=torch.arange(8) % 10,
                    base=random_images(2).double(), directions=directions)
    expect_tensor("CNN output", found["output"], (8, 10), None)
    for name, gradient in found["gradients"].items():
        if gradient is None or gradient.abs().sum() == 0:
            fail(f"parameter {name[:100]} received no gradient after backward: it is not used in the forward pass "
                 f"(or the graph is broken, e.g. by .detach() or .numpy())")
    expect_same_jacobians("your forward", found["jacobians"], atol=1e-4)
