"""Hidden checks of Question 2.2 (`h2-q2.py`): equivalence with the reference, dropout, vectorization,
train_batch and the accuracy threshold. The public ones are in `public_q2.py`.

The student's code runs only in the probes (`sub.run`); the reference runs here."""

import copy

import torch
import torch.nn as nn

from autograder import calibration
from autograder.checks import check
from autograder.checks.public_q2 import random_images
from autograder.compare import CheckFailure, NotRun, expect_close, expect_float, expect_tensor, fail
from autograder.probes import CNN_FILE, median_seconds, small_classifier
from autograder.submission import reference_definition

FILE = CNN_FILE


def _statement_network(sub, dropout):
    return sub.reference(FILE).CNN(dropout)


@check("2.2-equivalence")
def equivalence(sub):
    torch.manual_seed(0)
    reference = _statement_network(sub, 0.3).eval()
    x = random_images(12)
    y = torch.randint(0, 10, (12,), generator=torch.Generator().manual_seed(1))
    found = sub.run("cnn.with-weights", weights=[p.detach() for p in reference.parameters()], images=x, targets=y)
    expected = reference(x)
    expect_close("CNN output (eval mode, the statement's weights)", found["output"], expected, rtol=1e-4, atol=1e-5,
                 hint="Check the order of the layers, ReLU after each conv and hidden linear layer, "
                      "max-pooling 2x2 with stride 2, and padding 1 on the first conv only.")
    nn.NLLLoss()(expected, y).backward()
    by_shape = {tuple(p.shape): p.grad for p in reference.parameters()}
    for shape, gradient in found["gradients"]:
        if gradient is None:
            fail(f"the parameter of shape {tuple(shape)} received no gradient")
        expect_close(f"gradient of the parameter of shape {tuple(shape)}", gradient, by_shape[tuple(shape)],
                     rtol=1e-3, atol=1e-5)


@check("2.2-dropout")
def dropout(sub):
    x = random_images(32)
    found = sub.run("cnn.repeats", images=x, dropout=0.5)
    first, second = (expect_tensor("CNN output in eval mode", out, (32, 10)) for out in found["eval"])
    if not torch.equal(first, second):
        fail("in eval mode two forward passes on the same batch differ: dropout must be off in eval mode "
             "(use nn.Dropout or pass training=self.training)")
    first, second = (expect_tensor("CNN output in training mode", out, (32, 10)) for out in found["train"])
    if torch.equal(first, second):
        fail("in training mode with dropout 0.5 two forward passes give identical outputs: dropout is "
             "not applied (CNN(dropout_prob) must use dropout_prob)")
    # same weights, same random numbers: dropout must sit where the statement puts it
    torch.manual_seed(0)
    reference = _statement_network(sub, 0.5).train()
    got = sub.run("cnn.with-weights", weights=[p.detach() for p in reference.parameters()], images=x, dropout=0.5,
                  train_seed=123)["output"]
    torch.manual_seed(123)
    with torch.no_grad():
        expected = reference(x)
    expect_close("CNN output in training mode (same weights and random seed as the statement's network)",
                 got, expected, rtol=1e-4, atol=1e-5,
                 hint="Dropout belongs after the ReLU of the 600-unit layer only, once.")


@check("2.2-vectorized")
def vectorized(sub):
    small, large = random_images(32), random_images(64)
    found = sub.run("cnn.speed", small=small, large=large)
    looped = {name: n for name, n in found["counts"].items() if n > 1}
    if looped:
        name, n = max(looped.items(), key=lambda item: item[1])
        fail(f"layer {name} ran {n} times for one batch of 32 images: the forward loops over the batch. "
             f"Apply each layer once to the whole (batch, 1, 28, 28) tensor.")
    reference = _statement_network(sub, 0.3).eval()
    with torch.no_grad():
        reference(large)  # warm-up
        ratio = found["seconds"] / median_seconds(lambda: reference(large))
    if ratio > 5:
        fail(f"your forward on a batch of 64 takes {ratio:.1f} times as long as a vectorized one (allowed: 5x); "
             f"avoid Python loops over examples or pixels")


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

    returned = expect_float("the value returned by train_batch", found["returned"])
    if abs(returned - true_loss.item()) > 1e-4 * max(1.0, abs(true_loss.item())):
        return (f"train_batch returned {returned:.6g}; the loss of the batch before the update is "
                f"{true_loss.item():.6g}. Return loss.item() of criterion(model(X), y).")
    after = found["after"]
    if all(torch.equal(a, b) for a, b in zip(after, before.parameters())):
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
    losses = [expect_float("the value returned by train_batch", loss) for loss in found["losses"]]
    if not losses[-1] < 0.8 * losses[0]:
        return f"the loss on a fixed batch went from {losses[0]:.4f} to {losses[-1]:.4f} in 30 steps; it should fall"
    return None


def dev_accuracy(predictions, labels=None):
    """Accuracy of predicted classes against the dev labels (loaded when not given)."""
    if labels is None:
        from data.fashion_mnist import load_splits

        labels = load_splits()["dev"][1]
    expect_tensor("your CNN's predicted classes of the dev images", predictions, labels.shape, labels.dtype)
    return (predictions == labels).double().mean().item()


@check("2.2-accuracy")
def accuracy(sub):
    from data import DataError
    from data.fashion_mnist import load_splits

    try:
        labels = load_splits()["dev"][1]
    except DataError as error:
        raise NotRun(f"Fashion-MNIST is not available ({error}). Run `make data`, then grade again.") from None
    notes = []
    try:
        problem = diagnose_train_batch(sub)
    except CheckFailure as error:
        problem = str(error)
    if problem:
        notes.append(f"(your train_batch has a problem counted in its own test, so this training used a correct "
                     f"train_batch: {problem})")
    budget = calibration.get("2.2-accuracy")
    source = reference_definition(FILE, "train_batch") if problem else None
    accuracy = dev_accuracy(sub.run("cnn.dev-predictions", **budget["budget"], train_batch_source=source), labels)
    threshold = budget["threshold"]
    if accuracy < threshold:
        fail(f"after {budget['budget']['epochs']} epoch(s) on the first {budget['budget']['train_size']:,} training "
             f"images (SGD, learning rate {budget['budget']['learning_rate']}, batch {budget['budget']['batch_size']}, "
             f"seed {budget['budget']['seed']}), your CNN reaches {accuracy:.2%} dev accuracy; at least "
             f"{threshold:.2%} is required. {' '.join(notes)}")
    return f"dev accuracy {accuracy:.2%} (required {threshold:.2%}). {' '.join(notes)}".strip()
