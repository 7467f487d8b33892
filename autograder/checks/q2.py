"""Hidden checks of Question 2.2 (`h2-q2.py`): equivalence with the reference, dropout, the forward's CPU
time and the accuracy threshold. The public ones are in `public_q2.py`.

The student's code runs only in the probes (`sub.run`); the reference runs here."""

import functools

import torch
import torch.nn as nn

from autograder import thresholds
from autograder.checks import check, data_missing
from autograder.checks.public_q2 import (SHAPES, diagnose_train_batch, loops_over_the_batch, operation_batches,
                                         random_images)
from autograder.child.compare import (DID_NOT_RUN, WRONG, CheckFailure, expect_close, expect_tensor, expect_varies, fail,
                                      shown)
from autograder.child.probes import CNN_FILE, count_operations, load_by_shape, log_probabilities, median_seconds

FILE = CNN_FILE


def _statement_network(sub, dropout):
    return sub.reference(FILE).CNN(dropout)


def in_log_space(output, batch):
    """The student's output as float32 log-probabilities (log_softmax over the classes), so that a
    missing log_softmax or a float64 output, judged by their own tests, is not charged again here."""
    expect_tensor("CNN output", output, (batch, 10), None)
    return log_probabilities(output)


LAYERS_DIFFER = ("your CNN's outputs and gradients could not be compared with the statement's network: its layers "
                 "differ from the statement's (counted in 2.2-architecture), so the statement's weights cannot be "
                 "loaded into it")


def layers_differ(sub):
    """Whether the parameter shapes of the student's CNN (built as 2.2-equivalence builds it) are not the
    statement's: 2.2-architecture names them."""
    try:
        found = sorted(tuple(shape) for shape, _ in sub.run("cnn.parameters", dropout=0.0))
    except (TypeError, ValueError):  # not a list of (shape, trainable): the next request says what is wrong
        return False
    return found != sorted(SHAPES)


@check("2.2-equivalence")
def equivalence(sub):
    if layers_differ(sub):
        fail(LAYERS_DIFFER)
    torch.manual_seed(0)
    reference = _statement_network(sub, 0.3).eval()
    x = random_images(12)
    y = torch.randint(0, 10, (12,), generator=torch.Generator().manual_seed(1))
    # eval mode, built without dropout: a dropout left on in eval mode is 2.2-dropout's to charge
    found = sub.run("cnn.with-weights", weights=[p.detach() for p in reference.parameters()], images=x, targets=y,
                    dropout=0.0)
    expected = reference(x)
    expect_close("CNN output (eval mode, the statement's weights, as log-probabilities)",
                 in_log_space(found["output"], len(x)), expected, rtol=1e-4, atol=1e-5,
                 hint="Check the order of the layers, ReLU after each conv and hidden linear layer, "
                      "max-pooling 2x2 with stride 2, padding 1 on the first conv only, and the flatten order "
                      "(channels, then rows, then columns: x.flatten(start_dim=1)).")
    nn.NLLLoss()(log_probabilities(expected), y).backward()  # as the probe computes the student's
    by_shape = {tuple(p.shape): p.grad for p in reference.parameters()}
    for shape, gradient in found["gradients"]:
        if gradient is None:
            fail(f"the parameter of shape {shown(shape)} received no gradient")
        expect_close(f"gradient of the parameter of shape {tuple(shape)}", gradient, by_shape[tuple(shape)],
                     rtol=1e-3, atol=1e-5)


@check("2.2-dropout")
def dropout(sub):
    x = random_images(32)
    found = sub.run("cnn.repeats", images=x, dropout=0.5)
    first, second = (expect_tensor("CNN output in eval mode", out, (32, 10), None) for out in found["eval"])
    if not torch.equal(first, second):
        fail("in eval mode two forward passes on the same batch differ: dropout must be off in eval mode "
             "(use nn.Dropout or pass training=self.training)")
    first, second = (expect_tensor("CNN output in training mode", out, (32, 10), None) for out in found["train"])
    if torch.equal(first, second):
        fail("in training mode with dropout 0.5 two forward passes give identical outputs: dropout is "
             "not applied (CNN(dropout_prob) must use dropout_prob)")
    # same weights, same random numbers: dropout must sit where the statement puts it. Only judged when
    # the network is the statement's in eval mode: another difference is 2.2-equivalence's to charge
    if statement_cnn_problem(sub):
        return "dropout is on in training and off in eval mode; where it sits was not compared, because the " \
               "network differs from the statement's in eval mode (see 2.2-equivalence)"
    torch.manual_seed(0)
    reference = _statement_network(sub, 0.5).train()
    got = sub.run("cnn.with-weights", weights=[p.detach() for p in reference.parameters()], images=x, dropout=0.5,
                  train_seed=123)["output"]
    torch.manual_seed(123)
    with torch.no_grad():
        expected = reference(x)
    expect_close("CNN output in training mode (same weights and random seed as the statement's network)",
                 in_log_space(got, len(x)), expected, rtol=1e-4, atol=1e-5,
                 hint="Dropout belongs after the ReLU of the 600-unit layer only, once.")


@check("2.2-speed")
def speed(sub):
    """The CPU time of the student's forward on a batch of 64 against the statement's network. A loop over
    the batch is 2.2-vectorized's to charge (public): then the time is not judged here."""
    timed = random_images(64)
    found = sub.run("cnn.speed", batches=operation_batches(), large=timed)
    # only that it computes something from its input: its shape and values are other tests' to judge
    expect_varies("CNN.forward's output on 64 different images",
                  expect_tensor("CNN.forward's output on a batch of 64", found.get("output"), None, None))
    if loops_over_the_batch(found):
        return "the time was not judged: your forward loops over the batch, which 2.2-vectorized counts"
    # a loop over pixels or channels performs as many operations at any batch size: its count against the
    # reference's, and the time, bound it
    reference = _statement_network(sub, 0.3).eval()
    with torch.no_grad():
        expect_few_operations("your forward", found, lambda: reference(operation_batches()[-1]), "a batch of 16",
                              "a Python loop over pixels or positions? Apply each layer to the whole tensor")
        reference(timed)  # warm-up
        ratio = found["seconds"] / median_seconds(lambda: reference(timed))
    if ratio > 5:
        fail(f"your forward on a batch of 64 takes {ratio:.1f} times as long as a vectorized one (allowed: 5x); "
             f"avoid Python loops over examples or pixels")


# A vectorized forward performs a handful of tensor operations whatever the batch (the statement's CNN: 16);
# a Python loop over pixels performs that many per pixel (a loop over conv1's 784 positions: 7,858) and, on
# a batch of 64, still only about 3 times the statement's CPU time: the count catches what time cannot.
# Within the bound: loops over conv1's 28 rows (101) or its 16 channels (64), and any vectorized variant.
OPERATIONS_FACTOR = 10


def expect_few_operations(what, found, run_reference, case, hint):
    """Fails when `found["operations"][-1]` (the student's counts on the last counted `case`, already
    checked to be counts) hold more than OPERATIONS_FACTOR times the tensor operations of `run_reference()`."""
    performed = sum(found["operations"][-1].values())
    expected = sum(count_operations(run_reference)[0].values())
    if performed > OPERATIONS_FACTOR * expected:
        fail(f"{what} performs {performed:,} tensor operations on {case} where the statement's performs {expected} "
             f"(allowed: {OPERATIONS_FACTOR} times as many): {hint}")


@functools.lru_cache(maxsize=1)
def fashion_mnist():
    """The splits, loaded once here in the grading process (the child never sees the data)."""
    from data import DataError
    from data.fashion_mnist import load_splits

    try:
        return load_splits()
    except DataError as error:
        raise data_missing("Fashion-MNIST", error, "Run `make data`") from None


def statement_cnn_problem(sub):
    """None when the student's CNN computes the statement's network (2.2-equivalence), else why not."""
    try:
        equivalence(sub)
        return None
    except CheckFailure as error:
        return str(error)


def trained_accuracy(sub, budget, use=()):
    """Dev accuracy, computed here, of the CNN the student's code trains in the child under `budget`
    (`use`: the parts taken from the stand-ins): the child returns the trained weights, the
    statement's network with those weights classifies the dev images."""
    splits = fashion_mnist()
    X, y = splits["train"][0][:budget["train_size"]], splits["train"][1][:budget["train_size"]]
    run = sub.run_with_standins if use else sub.run
    weights = run("cnn.train", images=X, labels=y, epochs=budget["epochs"], batch_size=budget["batch_size"],
                  learning_rate=budget["learning_rate"], seed=budget["seed"], use=tuple(use))
    if not isinstance(weights, list) or not all(isinstance(w, torch.Tensor) and w.dtype == torch.float32
                                                for w in weights):
        fail("the trained CNN's parameters did not come back as tensors")
    model = _statement_network(sub, 0.3)
    load_by_shape(model, weights)
    model.eval()
    dev_X, dev_y = splits["dev"]
    with torch.no_grad():
        predictions = torch.cat([model(dev_X[i:i + 1000]).argmax(1) for i in range(0, len(dev_X), 1000)])
    return (predictions == dev_y).double().mean().item()


def _cnn_state(sub):
    """(problem, does work) of the student's CNN: (None, True) when it computes the statement's network;
    a CNN whose output ignores its input, or that cannot run, does no work."""
    try:
        output = expect_tensor("CNN.forward output", sub.run("cnn.outputs", batches=[random_images(8)])[0], (8, 10),
                               None)
        expect_varies("CNN.forward's output on 8 different images", output)
    except CheckFailure as error:
        return str(error), False, error.reason
    return statement_cnn_problem(sub), True, WRONG


def _train_batch_state(sub):
    """(problem, does work) of the student's train_batch: one that cannot run or changes no weight does no work."""
    try:
        problem = diagnose_train_batch(sub)
    except CheckFailure as error:
        return str(error), False, error.reason
    return problem, problem is None or "did not change" not in problem, WRONG


def _reason(state):
    """The typed reason a part that does no work (a `_cnn_state` or `_train_batch_state`) gives 2.2-accuracy:
    its own when its code did not run at all (DID_NOT_RUN), else WRONG."""
    return state[2] if state[2] in DID_NOT_RUN else WRONG


@check("2.2-accuracy")
def accuracy(sub):
    """Judges that the student's CNN and train_batch learn together. A part that is wrong but works is
    replaced by a correct one (its mistake is charged in its own test) and the rest is judged; a part
    that does no work fails this test too."""
    spec = thresholds.get("2.2-accuracy")
    budget, threshold = spec["budget"], spec["threshold"]
    fashion_mnist()  # the data first: without it the test is not run
    cnn, step = _cnn_state(sub), _train_batch_state(sub)
    (cnn_problem, cnn_works), (step_problem, step_works) = cnn[:2], step[:2]
    idle = [f"your {name} does no work yet ({problem})" for name, problem, works in
            (("CNN", cnn_problem, cnn_works), ("train_batch", step_problem, step_works)) if not works]
    if not cnn_works and not step_works and cnn_problem == step_problem:  # one cause: their file cannot run
        idle = [f"neither does any work yet ({cnn_problem})"]
    if idle:  # a stub or a file that cannot run keeps its reason, as in the own tests of that code
        reasons = {_reason(state) for state in (cnn, step) if not state[1]}
        raise CheckFailure("this test judges that your CNN and train_batch learn together, and " + "; ".join(idle),
                           reasons.pop() if len(reasons) == 1 else WRONG)
    use, notes = [], []
    if step_problem:
        use.append("train_batch")
        notes.append("your train_batch has a problem counted in its own test (2.2-train-batch), so this training "
                     "used a correct train_batch")
    if cnn_problem:
        use.append("CNN")
        notes.append("your CNN does not compute the statement's network (counted in 2.2-equivalence), so this "
                     "training used the statement's network")
    if len(use) == 2:
        fail("this test judges that your CNN and train_batch learn together, and both have a problem counted in "
             "their own tests (2.2-equivalence, 2.2-train-batch): nothing of yours is left to train")
    note = f" ({'; '.join(notes)})" if notes else ""
    accuracy = trained_accuracy(sub, budget, use)
    if accuracy < threshold:
        fail(f"after {budget['epochs']} epoch(s) on the first {budget['train_size']:,} training images (SGD, "
             f"learning rate {budget['learning_rate']}, batch {budget['batch_size']}, seed {budget['seed']}), your "
             f"trained CNN reaches {accuracy:.2%} dev accuracy; at least {threshold:.2%} is required.{note}")
    return f"dev accuracy {accuracy:.2%} (required {threshold:.2%}).{note}"
