"""Probes: the only code that runs the student's functions. Each probe builds the student's
objects, calls them on inputs the grader chose, and returns plain values (tensors, numbers,
strings, lists): outputs, gradients, counts, timings, generated captions.

A probe judges nothing. The checks (autograder/checks/) send the inputs, receive the values
and compare them, in the grading process, with the reference they compute there. When grading,
the probes run in a sandboxed child process (runner.py) that cannot read the
reference, the hidden checks or other submissions; in the students' repository they run
in-process behind the public tests.

Every probe takes `student`, a function from a file name (`"decoder.py"`) to the student's
module, then keyword arguments. The data a training probe needs (training images or features
and captions) comes in its inputs: the child can read no dataset, so the labels and captions
that judge a training exist only in the grading process, which also computes the score from
the weights a training probe returns.

`standins` (an input of the training probes): the path of a grader-only module, bound into this
child only for that test, holding a correct definition of a student function that was found
wrong (so that one mistake is not charged twice); `use` names the ones to take from it.
"""

import importlib.util
import math
import os
import re
import resource
import time
import traceback

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from .compare import (CRASHED, FAILED, NOT_IMPLEMENTED, OUT_OF_MEMORY, PASSED, RAISED, TIMED_OUT, UNREADABLE,
                      CheckFailure, fail, shown)

from .submission import ATTENTION, CNN_FILE, DECODER, NOTEBOOK, cell_of
from .wire import ANSWER, DTYPE_NAMES, tensor_problem

PROBES = {}


def probe(name):
    def register(function):
        PROBES[name] = function
        return function

    return register


class Opaque:
    """Stands for a returned object that is not a plain value; its class is named like the original's
    type, so that messages say "a float64" or "an ndarray"."""


def plain(value):
    """`value` made of what the wire format holds (wire.py): tensors (detached, dense, contiguous, on
    the CPU, each with its own storage), numbers, strings, None, lists, tuples and dicts with str keys
    of them; any other object becomes {"__opaque__": type name}, and so does what is nested more than
    20 deep. A value the grader cannot read (a tensor of another dtype, more than wire.ANSWER allows)
    is the student's failure (CheckFailure, CRASHED) with a message saying what and how to fix it."""
    most = ANSWER.nodes // 6  # a value is at most 6 items of the wire's JSON
    left, size = [most], [0]

    def walk(value, depth):
        left[0] -= 1
        if left[0] < 0:
            unreadable(f"more than {most:,} values (lists, tuples, dicts and their items); return tensors "
                       f"instead of long lists")
        if depth > 20:
            return {"__opaque__": "deeply nested object"}
        if isinstance(value, torch.Tensor):
            return dense(value)
        if value is None or type(value) in (bool, int, float, str):
            return value
        if type(value) in (list, tuple):
            return type(value)(walk(v, depth + 1) for v in value)
        if type(value) is dict and all(type(k) is str for k in value):
            return {k: walk(v, depth + 1) for k, v in value.items()}
        return {"__opaque__": type(value).__name__[:200]}

    def dense(tensor):
        try:
            tensor = tensor.detach()
            size[0] += 0 if tensor.is_nested else math.prod(tensor.shape) * tensor.element_size()
            if size[0] <= ANSWER.bytes and tensor.layout != torch.strided and not tensor.is_nested:
                tensor = tensor.to_dense()  # sparse
            if size[0] <= ANSWER.bytes and tensor.device.type != "cpu":
                tensor = tensor.cpu()
            if size[0] <= ANSWER.bytes and tensor.layout == torch.strided:
                tensor = tensor.as_subclass(torch.Tensor)
        except TestTimeout:
            raise
        except Exception as error:
            unreadable(f"a tensor that cannot be made a dense CPU tensor ({type(error).__name__}: {str(error)[:200]})")
        if size[0] > ANSWER.bytes:
            unreadable(f"tensors of more than {ANSWER.bytes // 2**20} MB in all")
        problem = tensor_problem(tensor)
        if problem:
            unreadable(problem + ("; convert it (e.g. with .float())" if tensor.dtype not in DTYPE_NAMES else ""))
        return tensor.clone(memory_format=torch.contiguous_format)

    return walk(value, 0)


def unreadable(what):
    """The student's failure of returning something the grader cannot read (wire.py's format)."""
    raise CheckFailure(f"{UNREADABLE}: {what}", CRASHED)


def unplain(value):
    """The inverse of `plain` for the grader: opaque markers become `Opaque` instances."""
    if isinstance(value, dict):
        if set(value) == {"__opaque__"}:  # a class named as the child said, within bounds
            name = re.sub(r"[^A-Za-z0-9_.]", "_", str(value["__opaque__"])[:80]) or "object"
            return type(name, (Opaque,), {})()
        return {k: unplain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(unplain(v) for v in value)
    return value


MESSAGE_LIMIT = 4000  # characters of a message about the student's code (the grader caps again)


class TestTimeout(Exception):
    """Raised by the child's alarm in a probe that ran past its time limit."""


def _student_frame(error, workdir):
    """Where in the student's files `error` was raised: the innermost of their frames (a notebook's: its cell)."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith(str(workdir))]
    if not frames:
        return ""
    name = os.path.basename(frames[-1].filename)
    cell = cell_of(name, NOTEBOOK)
    return f" ({name if cell is None else f'{NOTEBOOK}, cell {cell}'}, line {frames[-1].lineno}, in {frames[-1].name})"


def run_probe(sub, name, inputs, seconds=None, memory_gb=None):
    """(status, message, value) of probe `name` on the modules of `sub` (a Submission): "passed" with
    its plain value, or "failed" with the message the student reads and its reason (compare.REASONS)
    as the value. Whatever the student's code raises is a failure of its own: nothing here can say
    "not run". `seconds` and `memory_gb` are the limits the caller enforces (for the messages)."""
    limit = f"the limit ({memory_gb:g} GB)" if memory_gb else "this machine has"
    too_much_memory = f"your code tried to use more memory than {limit}"
    reason = RAISED
    try:
        return PASSED, "", plain(PROBES[name](sub.student, **inputs))
    except CheckFailure as error:
        message, reason = str(error), error.reason
    except NotImplementedError as error:
        text = str(error) or "a function raised NotImplementedError"
        message, reason = (text if "not implemented yet" in text else f"not implemented yet: {text}"), NOT_IMPLEMENTED
    except TestTimeout:
        message, reason = f"timed out: used the test's {seconds:g} s of CPU time (an infinite loop, or far too slow?)", TIMED_OUT
    except RecursionError:
        message, reason = "your code recursed without end (RecursionError)", CRASHED
    except MemoryError:
        message, reason = too_much_memory, OUT_OF_MEMORY
    except BaseException as error:  # the student's code raised: report where
        if isinstance(error, RuntimeError) and "can't allocate memory" in str(error):
            message, reason = too_much_memory, OUT_OF_MEMORY
        else:
            try:
                text = str(error)
            except BaseException:
                text = "(its message could not be shown)"
            message = f"your code raised {type(error).__name__}: {text[:MESSAGE_LIMIT]}{_student_frame(error, sub.workdir)}"
            if re.search(r"CUDA|cuda|NVIDIA", text):
                message += ("; grading runs on a CPU: remove .cuda() and device='cuda' (or use the device of "
                            "the tensors you are given, e.g. torch.zeros(..., device=x.device))")
    if len(message) > MESSAGE_LIMIT:
        message = message[:MESSAGE_LIMIT] + f" [... {len(message) - MESSAGE_LIMIT:,} more characters]"
    return FAILED, message, reason


# ---- helpers --------------------------------------------------------------------------------
class OperationCounter(TorchDispatchMode):
    """Counts the tensor operations (ATen operators, e.g. "aten.convolution") that run while it is
    active: below torch.nn.functional, so a loop written with F.conv2d or `@` is counted too."""

    def __init__(self):
        super().__init__()
        self.counts = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        self.counts[name] = self.counts.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


def count_operations(run):
    """({operator: times it ran}, what `run()` returned)."""
    with OperationCounter() as counter:
        value = run()
    return counter.counts, value


def load_standins(path):
    """The grader's module of correct definitions (see the module's docstring)."""
    spec = importlib.util.spec_from_file_location("hw2_standins", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def median_seconds(function, repeats=7):
    """Median CPU time of this process (all its threads) in `function()` over `repeats` calls: what
    another process does meanwhile on the same machine is not counted."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return sorted(times)[len(times) // 2]


def jacobians(function, inputs, eps=1e-6):
    """(autograd's Jacobian, central finite differences) of the concatenated, flattened outputs of
    `function(*inputs)` with respect to the concatenated, flattened float64 `inputs`."""
    def flat(*args):
        outputs = function(*args)
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        return torch.cat([o.reshape(-1) for o in outputs])

    inputs = [x.detach().clone().double() for x in inputs]
    analytic = torch.autograd.functional.jacobian(flat, tuple(inputs))
    analytic = torch.cat([a.reshape(len(a), -1) for a in analytic], dim=1)
    columns = []
    with torch.no_grad():
        for index, x in enumerate(inputs):
            for position in range(x.numel()):
                shifted = []
                for sign in (1, -1):
                    moved = [y.clone() for y in inputs]
                    moved[index].view(-1)[position] += sign * eps
                    shifted.append(flat(*moved))
                columns.append((shifted[0] - shifted[1]) / (2 * eps))
    return analytic, torch.stack(columns, dim=1)


def _float64(what, run):
    try:
        return run()
    except NotImplementedError:
        raise
    except Exception as error:
        fail(f"gradcheck in float64 could not run ({type(error).__name__}: {error}); {what} must work in "
             f"float64 after .double()")


# ---- Question 1: the notebook's functions --------------------------------------------------
def _numbers(value, done=None):
    """numpy arrays and scalars a notebook answer may return, as tensors and Python numbers. Each
    container is converted once (`done`: by id), so that a value sharing references is walked in
    time linear in its distinct containers (plain then bounds its size)."""
    if type(value).__module__ == "numpy":
        if hasattr(value, "shape") and value.shape:
            return torch.as_tensor(value)
        return value.item() if hasattr(value, "item") else value
    if not isinstance(value, (list, tuple, dict)):
        return value
    done = {} if done is None else done
    if id(value) not in done:
        done[id(value)] = (value, value)  # the original kept alive (its id stays its own); itself while inside it
        if isinstance(value, dict):
            converted = {k: _numbers(v, done) for k, v in value.items()}
        else:
            converted = type(value)(_numbers(v, done) for v in value)
        done[id(value)] = (value, converted)
    return done[id(value)][1]


@probe("notebook.calls")
def notebook_calls(student, calls):
    """[(function name, positional arguments)] -> what each returns, in order."""
    module = student(NOTEBOOK)
    results = []
    for name, args in calls:
        function = getattr(module, name, None)
        if not callable(function):
            fail(f"{NOTEBOOK} defines no function {name}: run its answer cells, and keep the function's name")
        try:
            results.append(_numbers(function(*args)))
        except NotImplementedError as error:
            if name not in str(error):
                raise NotImplementedError(f"{name} (in {NOTEBOOK}) is not implemented yet") from None
            raise
    return results


# ---- Question 2.2: the CNN ------------------------------------------------------------------
def student_cnn(student, dropout=0.3):
    model = student(CNN_FILE).CNN(dropout)
    if not isinstance(model, nn.Module):
        fail(f"CNN({dropout}) is a {type(model).__name__}; expected an nn.Module")
    return model


def load_by_shape(model, weights):
    """Copy `weights` (tensors of distinct shapes) into the parameters of `model` of the same shapes."""
    by_shape = {tuple(w.shape): w for w in weights}
    shapes = sorted(tuple(p.shape) for p in model.parameters())
    if shapes != sorted(by_shape):
        fail(f"the parameters of your CNN have shapes {shapes}; the statement's network has {sorted(by_shape)}")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(by_shape[tuple(parameter.shape)])


@probe("cnn.parameters")
def cnn_parameters(student, dropout=0.3):
    """[(shape, requires_grad)] of CNN(dropout)'s parameters."""
    return [(tuple(p.shape), p.requires_grad) for p in student_cnn(student, dropout).parameters()]


@probe("cnn.outputs")
def cnn_outputs(student, batches, dropout=0.3):
    """CNN.forward (eval mode, no gradient) on each batch of images."""
    model = student_cnn(student, dropout).eval()
    with torch.no_grad():
        return [model(x) for x in batches]


@probe("cnn.gradients")
def cnn_gradients(student, images, targets, base, directions):
    """Training mode: the output, {parameter name: gradient of NLLLoss or None}; then in float64,
    eval mode, the Jacobians of the output along `directions` of the input `base`."""
    model = student_cnn(student, 0.3).train()
    output = model(images)
    gradients = {}
    if isinstance(output, torch.Tensor) and output.shape == (len(images), 10):
        nn.NLLLoss()(output, targets).backward()
        gradients = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    # the Jacobians of a CNN(0.0): a dropout left on in eval mode is 2.2-dropout's to charge, not this test's
    without_dropout = student_cnn(student, 0.0)
    without_dropout.load_state_dict(model.state_dict())
    model = _float64("the forward", lambda: without_dropout.double().eval())
    shape = base.shape
    return {"output": output, "gradients": gradients,
            "jacobians": _float64("the forward", lambda: jacobians(
                lambda v: model(base + (v @ directions).view(shape) * 0.01), [torch.zeros(len(directions))]))}


@probe("cnn.with-weights")
def cnn_with_weights(student, weights, images, targets=None, dropout=0.3, train_seed=None):
    """CNN(dropout) with `weights` loaded by shape. Eval mode (`train_seed` None): the output and
    {shape: gradient of NLLLoss(output, targets)}; training mode: the output after seeding
    torch with `train_seed`."""
    model = student_cnn(student, dropout)
    load_by_shape(model, weights)
    if train_seed is not None:
        model.train()
        torch.manual_seed(train_seed)
        return {"output": model(images)}
    model.eval()
    output = model(images)
    if not isinstance(output, torch.Tensor) or output.shape != (len(images), 10):
        return {"output": output}
    nn.NLLLoss()(log_probabilities(output), targets).backward()
    return {"output": output, "gradients": [(tuple(p.shape), p.grad) for p in model.parameters()]}


@probe("cnn.repeats")
def cnn_repeats(student, images, dropout=0.5):
    """Two outputs in eval mode, then two in training mode, of the same model on the same images."""
    model = student_cnn(student, dropout)
    with torch.no_grad():
        model.eval()
        evaluation = [model(images), model(images)]
        model.train()
        return {"eval": evaluation, "train": [model(images), model(images)]}


@probe("cnn.speed")
def cnn_speed(student, batches, large):
    """[{operator: count}] of one forward on each of `batches`; median seconds of a forward on `large`."""
    model = student_cnn(student).eval()
    with torch.no_grad():
        operations = [count_operations(lambda: model(x))[0] for x in batches]
        output = model(large)  # also the warm-up
        return {"operations": operations, "output": output, "seconds": median_seconds(lambda: model(large))}


def log_probabilities(output):
    """The CNN's output as float32 log-probabilities: the same values for a correct output (log_softmax
    is idempotent), repaired for a float64 output or one without log_softmax, mistakes that their own
    tests judge (so that the equivalence and training tests judge the rest)."""
    return F.log_softmax(output.float(), dim=1)


class Repaired(nn.Module):
    """The student's CNN whose output goes through log_probabilities (see there); same parameters."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return log_probabilities(self.net(x))


def small_classifier():
    """The model train_batch is tested on (any model with log-probability outputs will do)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10), nn.LogSoftmax(dim=1))


@probe("train-batch")
def train_batch_probe(student, weights, images, targets, stale=10.0, learning_rate=0.1, steps=30,
                      adam_weights=None):
    """train_batch on small_classifier() with `weights`, SGD and stale gradients `stale` in every
    .grad: what it returned, the parameters after and whether their gradients were left cleared; then `steps` calls with Adam from
    `adam_weights`: the values returned."""
    step = student(CNN_FILE).train_batch
    model = small_classifier()
    model.load_state_dict(weights)
    for parameter in model.parameters():  # stale gradients a correct step must clear
        parameter.grad = torch.full_like(parameter, stale)
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
    backward = []  # a gradient was computed for a parameter: loss.backward() ran
    hooks = [p.register_hook(lambda grad: backward.append(True)) for p in model.parameters()]
    returned = step(images, targets, model, optimizer, nn.NLLLoss())
    for hook in hooks:
        hook.remove()
    after = [p.detach().clone() for p in model.parameters()]
    # backward ran, and the gradients were zero or gone after the call: cleared between backward and step
    cleared = bool(backward) and all(p.grad is None or not p.grad.any() for p in model.parameters())
    model = small_classifier()
    model.load_state_dict(adam_weights)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = [step(images, targets, model, optimizer, nn.NLLLoss()) for _ in range(steps)]
    return {"returned": returned, "after": after, "cleared": bool(cleared), "losses": losses}


def train_cnn(cnn_class, step, X, y, epochs, batch_size, learning_rate, seed, dropout=0.3):
    """CNN(dropout) trained with `step(X, y, model, optimizer, criterion)` and SGD."""
    torch.manual_seed(seed)
    net = cnn_class(dropout)
    model = Repaired(net)
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
    criterion = nn.NLLLoss()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(X), generator=generator)
        for start in range(0, len(X), batch_size):
            index = order[start:start + batch_size]
            step(X[index], y[index], model, optimizer, criterion)
    return net.eval()


@probe("cnn.train")
def cnn_train(student, images, labels, epochs, batch_size, learning_rate, seed, standins=None, use=()):
    """CNN(0.3) trained with train_batch and SGD on `images`, `labels`; its parameters after training,
    in the model's order (the grader measures the accuracy). `use`: "CNN" and/or "train_batch" taken
    from the stand-ins instead of the student's."""
    module = student(CNN_FILE)
    correct = load_standins(standins) if use else None
    cnn_class = correct.CNN if "CNN" in use else module.CNN
    step = correct.train_batch if "train_batch" in use else module.train_batch
    model = train_cnn(cnn_class, step, images, labels, epochs, batch_size, learning_rate, seed)
    return [p.detach().float() for p in model.parameters()]  # a float64 CNN is 2.2-output-shape's to charge


# ---- Questions 3.1a and 3.1b: the decoders and the attention -------------------------------
def build_decoder(module, use_attention, vocab, embed, decoder_dim, encoder_dim, attention_dim, dropout=0.5):
    if use_attention:
        return module.DecoderWithAttention(vocab, embed, decoder_dim, encoder_dim, attention_dim, dropout)
    return module.Decoder(vocab, embed, decoder_dim, encoder_dim, dropout)


def student_decoder(student, use_attention, sizes, dropout=0.5):
    """`sizes`: dict with vocab, embed, decoder_dim, encoder_dim, attention_dim."""
    module = student(ATTENTION if use_attention else DECODER)
    return build_decoder(module, use_attention, sizes["vocab"], sizes["embed"], sizes["decoder_dim"],
                         sizes["encoder_dim"], sizes["attention_dim"], dropout)


def load_provided_layers(model, state):
    """Load `state` (the statement's weights) into the student's `model`, or fail naming the layers
    that differ: no other test counts a changed provided layer, so this message says which."""
    own = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    given = {name: tuple(value.shape) for name, value in state.items()}
    missing, extra = [n for n in given if n not in own], [n for n in own if n not in given]
    resized = [f"{n} of shape {own[n]}, not {given[n]}" for n in given if n in own and own[n] != given[n]]
    differences = ([f"missing: {shown(missing, 150)}"] if missing else []) + (
        [f"not the statement's: {shown(extra, 150)}"] if extra else []) + resized[:3]
    if differences:
        fail(f"your {type(model).__name__} could not be compared with the statement's: its provided layers were "
             f"changed ({'; '.join(differences)}), so the statement's weights cannot be loaded into it; keep the "
             f"layers of __init__ as given")
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        fail(f"the provided layers of {type(model).__name__} were changed; they must stay as given "
             f"({str(error).splitlines()[0][:300]})")


class FixedContext(nn.Module):
    """Stands in for an Attention: returns the context it was given, whatever it is called with."""

    def __init__(self, context):
        super().__init__()
        self.context = context

    def forward(self, *args, **kwargs):
        return self.context


@probe("decoder.steps")
def decoder_steps(student, use_attention, cases, contexts=None):
    """One step in eval mode for each case: (sizes, (word, h, c, encoder_out)) -> (scores, h, c).
    `contexts`: one per case, returned by a FixedContext in place of the student's attention."""
    outputs = []
    for index, (sizes, inputs) in enumerate(cases):
        model = student_decoder(student, use_attention, sizes).eval()
        if contexts is not None:
            model.attention = FixedContext(contexts[index])
        with torch.no_grad():
            outputs.append(model(*inputs))
    return outputs


@probe("decoder.state")
def decoder_state(student, use_attention, sizes, inputs, seed=0, context=None):
    """One model (seeded), eval mode: the step on `inputs`, on inputs with h + 1, with c + 1, with the
    next word, and on `inputs` again; training mode: the scores of two steps on `inputs`. `context`:
    returned by a FixedContext in place of the student's attention."""
    torch.manual_seed(seed)
    model = student_decoder(student, use_attention, sizes).eval()
    if context is not None:
        model.attention = FixedContext(context)
    word, h, c, encoder_out = inputs
    with torch.no_grad():
        result = {"base": model(*inputs)}
        if not isinstance(result["base"], tuple) or len(result["base"]) != 3:
            return result
        result["h"] = model(word, h + 1, c, encoder_out)[0]
        result["c"] = model(word, h, c + 1, encoder_out)[0]
        result["word"] = model((word + 1) % sizes["vocab"], h, c, encoder_out)[0]
        result["again"] = model(*inputs)[0]
        model.train()
        result["train"] = [model(*inputs)[0], model(*inputs)[0]]
    return result


@probe("decoder.jacobians")
def decoder_jacobians(student, use_attention, sizes, inputs, seed=0, context=None):
    """float64, eval mode, no dropout: Jacobians of (scores, h, c) with respect to (h, c), and
    encoder_out with attention. `context`: returned by a FixedContext in place of the student's attention."""
    torch.manual_seed(seed)
    model = student_decoder(student, use_attention, sizes, dropout=0.0)
    model = _float64("the step", lambda: model.double().eval())
    if context is not None:
        model.attention = FixedContext(context.double())
    word, h, c, encoder_out = inputs
    if use_attention:
        return _float64("the step", lambda: jacobians(lambda h, c, e: model(word, h, c, e), [h, c, encoder_out]))
    return _float64("the step", lambda: jacobians(lambda h, c: model(word, h, c, encoder_out.double()), [h, c]))


@probe("decoder.with-weights")
def decoder_with_weights(student, use_attention, sizes, state, inputs, target, train_seed, context=None):
    """The decoder with the provided layers' `state`: the step in eval mode, in training mode after
    seeding torch with `train_seed`, and {parameter: gradient} of a loss of the eval-mode step.
    `context`: a context the attention is replaced by (when the student's attention is wrong)."""
    models = {}
    if context is not None:  # the attention's layers are not loaded: its own tests judge them
        state = {name: value for name, value in state.items() if not name.startswith("attention.")}
    for mode, dropout in (("eval", 0.0), ("train", 0.5)):  # eval mode without dropout: placement is train's
        models[mode] = student_decoder(student, use_attention, sizes, dropout)
        if context is not None:
            models[mode].attention = FixedContext(context)
        load_provided_layers(models[mode], state)
    result = {}
    for mode, model in models.items():
        getattr(model, mode)()
        torch.manual_seed(train_seed)
        result[mode] = model(*inputs)
        if not isinstance(result[mode], tuple) or len(result[mode]) != 3:
            return result
    model = models["eval"]
    model.zero_grad()
    scores, h, c = model(*inputs)
    (F.cross_entropy(scores, target) + (h * 0.3).sum() + (c * 0.1).sum()).backward()
    result["gradients"] = {name: p.grad for name, p in model.named_parameters()}
    return result


def student_attention(student, encoder_dim, decoder_dim, attention_dim):
    return student(ATTENTION).Attention(encoder_dim, decoder_dim, attention_dim)


@probe("attention.contexts")
def attention_contexts(student, cases):
    """For each case (encoder_dim, decoder_dim, attention_dim, init_seed, encoder_out, hidden): a new
    Attention (torch seeded with init_seed) and its output on (encoder_out, hidden), no gradient."""
    outputs = []
    for encoder_dim, decoder_dim, attention_dim, init_seed, encoder_out, hidden in cases:
        if init_seed is not None:
            torch.manual_seed(init_seed)
        attention = student_attention(student, encoder_dim, decoder_dim, attention_dim)
        with torch.no_grad():
            outputs.append(attention(encoder_out, hidden))
    return outputs


@probe("attention.with-weights")
def attention_with_weights(student, state, encoder_out, hidden, weights):
    """Attention with `state`: its output and the gradients of sum(output * weights) with respect
    to encoder_out, hidden and every parameter (None where the output does not depend on it)."""
    encoder_dim, decoder_dim = encoder_out.shape[-1], hidden.shape[-1]
    attention = student_attention(student, encoder_dim, decoder_dim, state["encoder_att.weight"].shape[0])
    load_provided_layers(attention, state)
    encoder_out, hidden = encoder_out.clone().requires_grad_(True), hidden.clone().requires_grad_(True)
    output = attention(encoder_out, hidden)
    if not isinstance(output, torch.Tensor) or output.shape != weights.shape:
        return {"output": output}
    names = ["encoder_out", "decoder_hidden"] + [n for n, _ in attention.named_parameters()]
    gradients = torch.autograd.grad((output * weights).sum(), [encoder_out, hidden] + list(attention.parameters()),
                                    allow_unused=True)
    return {"output": output, "gradients": dict(zip(names, gradients))}


@probe("attention.speed")
def attention_speed(student, cases, encoder_out, hidden, attention_dim=100):
    """{operator: count} of one call on each (encoder_out, hidden) of `cases`; the output and the
    median seconds of a call on `encoder_out`, `hidden`."""
    attention = student_attention(student, encoder_out.shape[-1], hidden.shape[-1], attention_dim)
    with torch.no_grad():
        operations = [count_operations(lambda: attention(e, h))[0] for e, h in cases]
        output = attention(encoder_out, hidden)  # also the warm-up
        return {"output": output, "operations": operations,
                "seconds": median_seconds(lambda: attention(encoder_out, hidden), 5)}


@probe("decoder.train")
def decoder_train(student, use_attention, sizes, pairs, features, pad, epochs, seed, batch_size=8,
                  learning_rate=4e-4, standins=None, use=()):
    """The student's decoder trained with the provided train.py: `pairs` are (row of `features`,
    encoded caption); its state_dict after training (the grader decodes and measures BLEU). `use`:
    ("Attention",) to train with the stand-in Attention in place of the student's."""
    torch.manual_seed(seed)
    model = student_decoder(student, use_attention, sizes)
    if "Attention" in use:
        correct = load_standins(standins).Attention(sizes["encoder_dim"], sizes["decoder_dim"], sizes["attention_dim"])
        correct.load_state_dict(model.attention.state_dict())
        model.attention = correct
    train = student("train.py")
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    steps = (len(pairs) + batch_size - 1) // batch_size
    for _ in range(epochs):
        batches = train.caption_batches(pairs, features, batch_size, generator, pad)
        train.train_epoch(model, batches, optimizer, nn.CrossEntropyLoss(), 5.0, steps)
    return {name: value.detach() for name, value in model.state_dict().items()}


# ---- the grader's self-check: no student code ----------------------------------------------
@probe("confinement")
def confinement(student, standins=None):
    """How this child is confined (confine.status), asked before any student code runs in it."""
    from .confine import status

    return status()


@probe("selfcheck")
def selfcheck(student, images, labels, steps, standins=None, use=()):
    """The stand-ins (correct code of the grader's, no student code) trained for `steps` batches of
    8 of `images`, then one attention step at the BLEU tests' sizes: seconds taken and peak memory,
    so the grader knows that a child of this kind runs, fits its memory limit, and how fast it is
    (in CPU time: how busy the machine is does not count)."""
    correct = load_standins(standins)
    torch.manual_seed(0)
    model = correct.CNN(0.3).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    correct.train_batch(images[:8], labels[:8], model, optimizer, nn.NLLLoss())  # torch's lazy imports: not timed
    start = time.process_time()
    for step in range(steps):
        batch = slice(8 * step, 8 * step + 8)
        correct.train_batch(images[batch], labels[batch], model, optimizer, nn.NLLLoss())
    attention = correct.Attention(320, 256, 100)
    attention(torch.randn(8, 64, 320), torch.randn(8, 256)).sum().backward()
    return {"seconds": time.process_time() - start, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
