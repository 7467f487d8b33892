"""Hidden checks of Question 2.2 (`h2-q2.py`): equivalence with the reference, dropout, vectorization,
train_batch and the accuracy threshold. The public ones are in `public_q2.py`."""

import copy

import torch
import torch.nn as nn

from autograder import calibration
from autograder.checks import check, count_layer_calls, median_seconds
from autograder.checks.public_q2 import FILE, random_images, student_cnn
from autograder.compare import CheckFailure, NotRun, expect_close, expect_float, fail


def _copy_weights(reference, student):
    """Load the reference's weights into the student's model, matching parameters by shape
    (every parameter of the statement's network has a distinct shape)."""
    by_shape = {tuple(p.shape): p for p in reference.parameters()}
    student_params = list(student.parameters())
    shapes = sorted(tuple(p.shape) for p in student_params)
    if shapes != sorted(by_shape):
        fail(f"the parameters of your CNN have shapes {shapes}; the statement's network has {sorted(by_shape)}")
    with torch.no_grad():
        for parameter in student_params:
            parameter.copy_(by_shape[tuple(parameter.shape)])
    return by_shape


@check("2.2-equivalence")
def equivalence(sub):
    torch.manual_seed(0)
    reference = sub.reference(FILE).CNN(0.3).eval()
    model = student_cnn(sub).eval()
    _copy_weights(reference, model)
    x = random_images(12)
    y = torch.randint(0, 10, (12,), generator=torch.Generator().manual_seed(1))
    expected = reference(x)
    got = model(x)
    expect_close("CNN output (eval mode, the statement's weights)", got, expected, rtol=1e-4, atol=1e-5,
                 hint="Check the order of the layers, ReLU after each conv and hidden linear layer, "
                      "max-pooling 2x2 with stride 2, and padding 1 on the first conv only.")
    nn.NLLLoss()(expected, y).backward()
    nn.NLLLoss()(got, y).backward()
    by_shape = {tuple(p.shape): p for p in reference.parameters()}
    for parameter in model.parameters():
        if parameter.grad is None:
            fail(f"the parameter of shape {tuple(parameter.shape)} received no gradient")
        expect_close(f"gradient of the parameter of shape {tuple(parameter.shape)}", parameter.grad,
                     by_shape[tuple(parameter.shape)].grad, rtol=1e-3, atol=1e-5)


@check("2.2-dropout")
def dropout(sub):
    torch.manual_seed(0)
    x = random_images(32)
    model = student_cnn(sub, dropout=0.5)
    model.eval()
    with torch.no_grad():
        if not torch.equal(model(x), model(x)):
            fail("in eval mode two forward passes on the same batch differ: dropout must be off in eval mode "
                 "(use nn.Dropout or pass training=self.training)")
        model.train()
        if torch.equal(model(x), model(x)):
            fail("in training mode with dropout 0.5 two forward passes give identical outputs: dropout is "
                 "not applied (CNN(dropout_prob) must use dropout_prob)")
    # same weights, same random numbers: dropout must sit where the statement puts it
    reference = sub.reference(FILE).CNN(0.5).train()
    _copy_weights(reference, model)
    torch.manual_seed(123)
    expected = reference(x)
    torch.manual_seed(123)
    got = model(x)
    expect_close("CNN output in training mode (same weights and random seed as the statement's network)",
                 got, expected, rtol=1e-4, atol=1e-5,
                 hint="Dropout belongs after the ReLU of the 600-unit layer only, once.")


@check("2.2-vectorized")
def vectorized(sub):
    model = student_cnn(sub).eval()
    x = random_images(32)
    with torch.no_grad():
        counts = count_layer_calls(model, lambda: model(x), (nn.Conv2d, nn.Linear))
        looped = {name: n for name, n in counts.items() if n > 1}
        if looped:
            name, n = max(looped.items(), key=lambda item: item[1])
            fail(f"layer {name} ran {n} times for one batch of 32 images: the forward loops over the batch. "
                 f"Apply each layer once to the whole (batch, 1, 28, 28) tensor.")
        reference = sub.reference(FILE).CNN(0.3).eval()
        x = random_images(64)
        model(x), reference(x)  # warm-up
        ratio = median_seconds(lambda: model(x)) / median_seconds(lambda: reference(x))
    if ratio > 5:
        fail(f"your forward on a batch of 64 takes {ratio:.1f} times as long as a vectorized one (allowed: 5x); "
             f"avoid Python loops over examples or pixels")


@check("2.2-train-batch")
def train_batch(sub):
    student_train_batch = sub.student(FILE).train_batch
    problem = diagnose_train_batch(sub.reference(FILE).CNN, student_train_batch)
    if problem:
        fail(problem)


def diagnose_train_batch(cnn_class, student_train_batch):
    """None when train_batch does one correct SGD step; otherwise what is wrong.

    The student's train_batch runs on the statement's network (the reference CNN), so a wrong
    CNN is not charged here a second time."""
    torch.manual_seed(0)
    model = cnn_class(0.0).train()
    x, y = random_images(8), torch.arange(8) % 10
    criterion = nn.NLLLoss()
    before = copy.deepcopy(model)
    for parameter in model.parameters():  # stale gradients a correct step must clear
        parameter.grad = torch.full_like(parameter, 10.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    correct = copy.deepcopy(before)
    correct_optimizer = torch.optim.SGD(correct.parameters(), lr=0.1)
    true_loss = criterion(correct(x), y)
    correct_optimizer.zero_grad()
    true_loss.backward()
    correct_optimizer.step()

    returned = student_train_batch(x, y, model, optimizer, criterion)
    expect_float("the value returned by train_batch", returned)
    if abs(returned - true_loss.item()) > 1e-4 * max(1.0, abs(true_loss.item())):
        return (f"train_batch returned {returned:.6g}; the loss of the batch before the update is "
                f"{true_loss.item():.6g}. Return loss.item() of criterion(model(X), y).")
    after = list(model.parameters())
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
    # the loss falls over a few steps on a fixed batch
    torch.manual_seed(1)
    model = cnn_class(0.0).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = [student_train_batch(x, y, model, optimizer, criterion) for _ in range(30)]
    if not losses[-1] < 0.8 * losses[0]:
        return f"the loss on a fixed batch went from {losses[0]:.4f} to {losses[-1]:.4f} in 30 steps; it should fall"
    return None


@check("2.2-accuracy")
def accuracy(sub):
    from data import DataError
    from data.fashion_mnist import load_splits

    try:
        splits = load_splits()
    except DataError as error:
        raise NotRun(f"Fashion-MNIST is not available ({error}). Run `make data`, then grade again.") from None
    module = sub.student(FILE)
    notes = []
    try:
        problem = diagnose_train_batch(sub.reference(FILE).CNN, module.train_batch)
    except CheckFailure as error:
        problem = str(error)
    except Exception as error:
        problem = f"{type(error).__name__}: {error}"
    step = module.train_batch
    if problem:
        step = sub.reference(FILE).train_batch
        notes.append(f"(your train_batch has a problem counted in its own test, so this training used a correct "
                     f"train_batch: {problem})")
    budget = calibration.get("2.2-accuracy")
    accuracy = train_cnn(module.CNN, step, splits, **budget["budget"])
    threshold = budget["threshold"]
    if accuracy < threshold:
        fail(f"after {budget['budget']['epochs']} epoch(s) on the first {budget['budget']['train_size']:,} training "
             f"images (SGD, learning rate {budget['budget']['learning_rate']}, batch {budget['budget']['batch_size']}, "
             f"seed {budget['budget']['seed']}), your CNN reaches {accuracy:.2%} dev accuracy; at least "
             f"{threshold:.2%} is required. {' '.join(notes)}")
    return f"dev accuracy {accuracy:.2%} (required {threshold:.2%}). {' '.join(notes)}".strip()


def train_cnn(cnn_class, train_batch_fn, splits, train_size, epochs, batch_size, learning_rate, seed, dropout=0.3):
    """Train `cnn_class` with `train_batch_fn` on the first `train_size` training images; dev accuracy."""
    torch.manual_seed(seed)
    model = cnn_class(dropout)
    X, y = splits["train"][0][:train_size], splits["train"][1][:train_size]
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
    criterion = nn.NLLLoss()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(X), generator=generator)
        for start in range(0, len(X), batch_size):
            index = order[start:start + batch_size]
            train_batch_fn(X[index], y[index], model, optimizer, criterion)
    model.eval()
    dev_X, dev_y = splits["dev"]
    with torch.no_grad():
        correct = sum((model(dev_X[i:i + 1000]).argmax(1) == dev_y[i:i + 1000]).sum().item()
                      for i in range(0, len(dev_X), 1000))
    return correct / len(dev_X)
