"""Public checks of Question 2.2 (`h2-q2.py`): shapes, log-probabilities, gradients, vectorization (the
tensor operations) and train_batch.

They need neither the reference solution nor data, so they also ship with the students'
repository as its public tests (`make release`), giving the same messages as the autograder.
"""

import copy

import torch
import torch.nn as nn

from autograder.checks import check, fails
from autograder.child.compare import (CheckFailure, expect_float, expect_same_jacobians, expect_same_operations,
                                      expect_tensor, expect_varies, fail, shown)
from autograder.child.probes import small_classifier

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


def operation_batches():
    """The two batches whose tensor operations are counted: a vectorized forward performs the same on both."""
    return [random_images(2, seed=1), random_images(16, seed=2)]


def expect_no_loop_over_the_batch(found):
    counts = found["operations"] if isinstance(found.get("operations"), list) else [None, None]
    expect_same_operations("your forward", counts[0], counts[-1], "a batch of 2 images", "a batch of 16",
                           "the forward loops over the batch. Apply each layer once to the whole "
                           "(batch, 1, 28, 28) tensor.")


def loops_over_the_batch(found):
    """Whether the operations of the probe "cnn.speed" (`found`) grow with the batch (2.2-vectorized fails)."""
    return fails(expect_no_loop_over_the_batch, found)


@check("2.2-vectorized")
def vectorized(sub):
    small, large = operation_batches()
    # the probe also times a forward on `large` (a few milliseconds here): only the operations are judged
    found = sub.run("cnn.speed", batches=[small, large], large=large)
    # only that it computes something from its input: its shape and values are other tests' to judge
    expect_varies("CNN.forward's output on 16 different images",
                  expect_tensor("CNN.forward's output on a batch of 16", found.get("output"), None, None))
    expect_no_loop_over_the_batch(found)


@check("2.2-train-batch")
def train_batch(sub):
    problem = diagnose_train_batch(sub)
    if problem:
        fail(problem)


def diagnose_train_batch(sub):
    """None when train_batch does one correct SGD step; otherwise what is wrong. The step is tried on
    a small classifier (any model with log-probability outputs), so a wrong CNN is not charged here."""
    x, y = random_images(8), torch.arange(8) % 10
    torch.manual_seed(0)
    before = small_classifier()
    torch.manual_seed(1)
    adam_start = small_classifier()
    found = sub.run("train-batch", weights=before.state_dict(), images=x, targets=y, stale=10.0, learning_rate=0.1,
                    steps=30, adam_weights=adam_start.state_dict())

    correct = copy.deepcopy(before)
    true_loss = nn.NLLLoss()(correct(x), y)
    true_loss.backward()
    with torch.no_grad():
        for parameter in correct.parameters():
            parameter -= 0.1 * parameter.grad

    after = found["after"]  # the update first: a step that works but returns the wrong value still works
    shapes = [tuple(p.shape) for p in before.parameters()]
    if (not isinstance(after, (list, tuple)) or len(after) != len(shapes)
            or not all(isinstance(a, torch.Tensor) and tuple(a.shape) == s for a, s in zip(after, shapes))):
        # compared only when the shapes are the model's: torch.allclose would broadcast anything else
        return (f"after train_batch the model's parameters no longer have their shapes ({shown(shapes)}): "
                f"train_batch must update the weights in place (optimizer.step()), not replace them")
    after = [a.float() for a in after]
    if all(torch.equal(a, b) for a, b in zip(after, before.parameters())):
        if found.get("cleared") is True:
            return ("the weights did not change after train_batch, and their gradients were cleared: call "
                    "optimizer.zero_grad() before loss.backward(), not between loss.backward() and optimizer.step()")
        return "the weights did not change after train_batch: call optimizer.step() after loss.backward()"
    if not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(after, correct.parameters())):
        # what a step that kept the stale gradients would give
        kept = [b - 0.1 * (10.0 + (b - c) / 0.1) for b, c in zip(before.parameters(), correct.parameters())]
        if all(torch.allclose(a, k, atol=1e-5) for a, k in zip(after, kept)):
            return ("the update used stale gradients from before the call: call optimizer.zero_grad() before "
                    "loss.backward()")
        only_stale = [b - 0.1 * 10.0 for b in before.parameters()]
        if all(torch.allclose(a, s, atol=1e-5) for a, s in zip(after, only_stale)):
            return "the update did not use this batch's gradients: call loss.backward() before optimizer.step()"
        return "the weights after train_batch differ from one SGD step on this batch's loss"
    try:
        returned = expect_float("the value returned by train_batch", found["returned"])
        losses = [expect_float("the value returned by train_batch", loss) for loss in found["losses"]]
    except CheckFailure as error:
        return str(error)
    if abs(returned - true_loss.item()) > 1e-4 * max(1.0, abs(true_loss.item())):
        return (f"train_batch returned {returned:.6g}; the loss of the batch before the update is "
                f"{true_loss.item():.6g}. Return loss.item() of criterion(model(X), y).")
    if not losses[-1] < 0.8 * losses[0]:
        return f"the loss on a fixed batch went from {losses[0]:.4f} to {losses[-1]:.4f} in 30 steps; it should fall"
    return None
