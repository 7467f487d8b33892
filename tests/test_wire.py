"""The wire format (autograder/child/wire.py): every kind of value a request or an answer holds comes
back as it was sent, and every payload that is not of the format, or beyond its limits, is refused
with WireError (never another exception) before any value is built. Also what the child makes of
a returned value (probes.plain), the form of an answer (isolation.answer_of), bounded messages
(compare.shown) and the grading process's deadline on a check (grade._run_within)."""

import io
import json
import math
import pickle
import random
import threading
import time

import pytest
import torch

from autograder.child.compare import CRASHED, FAILED, PASSED, TIMED_OUT, UNREADABLE, CheckFailure, shown
from autograder.child.probes import Opaque, plain, unplain
from autograder.child.wire import ANSWER, DTYPES, MAX_DIMS, REQUEST, Limits, WireError, decode, encode

SMALL = Limits(bytes=4096, header_bytes=1024, nodes=50, depth=10, tensors=4)


def same(a, b):
    """`a` and `b` equal, kinds included: tuple is not list, int is not float, NaN equals NaN, tensors
    of the same dtype, shape and values."""
    if isinstance(a, torch.Tensor):
        return (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
                and torch.equal(a.float() if a.dtype == torch.bfloat16 else a, b.float() if b.dtype == torch.bfloat16 else b))
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


def payload(structure, tensors=None, data=b"", metadata=None, raw_header=None):
    """A safetensors file made by hand: `structure` (JSON text) as the metadata, `tensors` the header's
    tensor entries, `data` the bytes after the header."""
    header = dict(tensors or {})
    header["__metadata__"] = metadata if metadata is not None else {"hw2": structure}
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


# ---- round trips ---------------------------------------------------------------------------------
VALUES = [
    None, True, False, 0, -7, 2**80, 1.5, -0.0, float("nan"), float("inf"), float("-inf"), "", "é ✓ \udcff",
    [], (), {}, [1, [2, (3, "4")]], (None,), {"b": 1, "a": (2.0, [None])}, {"__opaque__": "ndarray"},
    {"outer": {"inner": {"deepest": [{"x": (1, 2)}]}}}, [[[[[[[[[[1]]]]]]]]]],
    {"tuple": [1], "dict": [["k", 2]], "tensor": 0},  # keys that are the format's own tags
]


@pytest.mark.parametrize("value", VALUES, ids=[repr(v)[:30] for v in VALUES])
def test_every_kind_of_value_comes_back_as_it_was(value):
    assert same(decode(encode(value)), value)
    assert same(decode(encode(value, REQUEST), REQUEST), value)


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=[str(d) for d in DTYPES.values()])
def test_tensors_of_every_listed_dtype_come_back(dtype):
    values = [torch.arange(24).reshape(2, 3, 4).to(dtype), torch.zeros(0, 5, dtype=dtype), torch.ones((), dtype=dtype),
              torch.zeros((1,) * MAX_DIMS, dtype=dtype)]
    assert same(decode(encode(values)), values)


def test_tensors_come_back_dense_contiguous_and_each_with_its_own_storage():
    base = torch.randn(6, 4)
    sent = {"t": base.t(), "again": base, "also": base, "slice": base[2:4], "parameter": torch.nn.Parameter(base)}
    got = decode(encode(sent))
    for name, tensor in got.items():
        assert type(tensor) is torch.Tensor and tensor.is_contiguous() and not tensor.requires_grad, name
        assert torch.equal(tensor, sent[name].detach()), name
    got["again"].add_(1)  # writable, and shared with nothing
    assert torch.equal(got["also"], base) and torch.equal(got["t"], base.t())


def test_a_large_answer_decodes_fast():
    """64 MB of trained weights (the answer's limit) decode in well under a second."""
    weights = {f"layer{i}.weight": torch.randn(16 * 2**20 // 8 - 64) for i in range(8)}
    sent = encode(weights)
    assert len(sent) <= ANSWER.bytes
    start = time.perf_counter()
    got = decode(sent)
    assert time.perf_counter() - start < 1.0
    assert all(torch.equal(got[k], weights[k]) for k in weights)


# ---- what cannot be encoded -------------------------------------------------------------------------
def _shared(levels, width):
    value = [0]
    for _ in range(levels):
        value = [value] * width
    return value


@pytest.mark.parametrize("value, words", [
    ({1, 2}, "type set"), (object(), "type object"), ({1: "a"}, "keys are not all strings"),
    (torch.zeros(3).to_sparse(), "layout sparse_coo"), (torch.zeros(2, dtype=torch.complex64), "dtype complex64"),
    (torch.zeros(2, device="meta"), "device meta"), (_shared(6, 1000), "more than 300,000 values"),
    (_shared(200, 1), "nested more than 100"), ({str(i): (i,) for i in range(60_000)}, "more than 300,000 items"), (torch.zeros(1).expand(25_000, 20_000), "bytes in all"),
    (10**5000, "json cannot write"),
], ids=["set", "object", "int key", "sparse", "complex", "meta", "shared references", "deep", "items", "expanded",
        "huge int"])
def test_what_the_format_does_not_hold_is_refused_by_name(value, words):
    start = time.perf_counter()
    with pytest.raises(WireError, match=words):
        encode(value)
    assert time.perf_counter() - start < 2


# ---- what cannot be decoded --------------------------------------------------------------------------
F32 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
REFUSED = {
    "empty": (b"", "too short"),
    "a torch.save payload": (None, "torch.save or pickle"),
    "a pickle constructing a bytearray": (pickle.dumps(bytearray(16)) + bytes(64), "torch.save or pickle"),
    "a pickle of protocol 0": (pickle.dumps([1], protocol=0) + bytes(64), "not a safetensors file"),
    "a header longer than the payload": (payload("null")[:20], "not a safetensors file"),
    "a header beyond the limit": ((2**40).to_bytes(8, "little") + b"{}", "header is too large"),
    "a header that is not UTF-8": (payload(None, raw_header=b'{"\xff": 1}'), "not UTF-8"),
    "a header that is not JSON": (payload(None, raw_header=b'{"__metadata__": '), "not valid JSON"),
    "a header nested deeply": (payload(None, raw_header=b"[" * 50 + b"]" * 50), "nested more than 3"),
    "a header repeating a key": (payload(None, raw_header=b'{"__metadata__": {"hw2": "1"}, "__metadata__": {"hw2": "2"}}'),
                                 "repeats a key"),
    "no structure": (payload(None, metadata={"other": "1"}), "has no structure"),
    "a structure that is not JSON": (payload("[1, 2"), "structure is not valid JSON"),
    "an unterminated string": (payload('["abc'), "unterminated string"),
    "a structure nested too deeply": (payload("[" * 101 + "]" * 101), "nested more than 100"),
    "too many items": (payload("[" + "0," * 300_000 + "0]"), "more than 300,000 items"),
    "an unknown tag": (payload('{"object": "os.system"}'), "unknown value"),
    "a tagged value of two keys": (payload('{"tuple": [], "dict": []}'), "of 2 keys"),
    "a dict with a non-str key": (payload('{"dict": [[1, 2]]}'), "distinct str keys"),
    "a dict repeating a key": (payload('{"dict": [["a", 1], ["a", 2]]}'), "distinct str keys"),
    "a tensor referenced twice": (payload('[{"tensor": 0}, {"tensor": 0}]', {"0": F32}, bytes(8)), "referenced twice"),
    "a tensor never referenced": (payload("[]", {"0": F32}, bytes(8)), "not in the structure"),
    "a tensor not in the file": (payload('{"tensor": 1}', {"0": F32}, bytes(8)), "not in the file"),
    "a tensor named otherwise": (payload('{"tensor": 0}', {"w": F32}, bytes(8)), "named other than"),
    "an unlisted dtype": (payload('{"tensor": 0}', {"0": dict(F32, dtype="C64")}, bytes(8)), "not one of"),
    "an unlisted float8 dtype": (payload('{"tensor": 0}', {"0": dict(F32, dtype="F8_E4M3", data_offsets=[0, 2])},
                                         bytes(2)), "not one of"),
    "too many dimensions": (payload('{"tensor": 0}', {"0": dict(F32, shape=[1] * 17 + [2])}, bytes(8)), "at most 16"),
    "a negative dimension": (payload('{"tensor": 0}', {"0": dict(F32, shape=[-2])}, bytes(8)), "at most 16"),
    "offsets beyond the data": (payload('{"tensor": 0}', {"0": dict(F32, data_offsets=[0, 8])}, bytes(4)), "take 8 bytes"),
    "offsets and shape that disagree": (payload('{"tensor": 0}', {"0": dict(F32, data_offsets=[0, 4])}, bytes(4)),
                                        "need 8"),
    "a shape of 2**60 elements in 8 bytes": (payload('{"tensor": 0}', {"0": dict(F32, shape=[2**30, 2**30])}, bytes(8)),
                                             "at most 16|need"),
    "overlapping tensors": (payload('[{"tensor": 0}, {"tensor": 1}]', {"0": F32, "1": dict(F32, data_offsets=[4, 12])},
                                    bytes(12)), "overlap or leave gaps"),
    "a gap between tensors": (payload('[{"tensor": 0}, {"tensor": 1}]', {"0": F32, "1": dict(F32, data_offsets=[12, 20])},
                                      bytes(20)), "overlap or leave gaps"),
    "bytes after the data": (payload('{"tensor": 0}', {"0": F32}, bytes(12)), "the file has 12"),
    "an int of 5,000 digits": (payload("1" * 5000), "structure is not valid JSON|not of the wire format"),
}


def _torch_save():
    buffer = io.BytesIO()
    torch.save({"value": torch.zeros(3)}, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("case", list(REFUSED))
def test_payloads_not_of_the_format_are_refused(case):
    sent, words = REFUSED[case]
    with pytest.raises(WireError, match=words):
        decode(_torch_save() if sent is None else sent)


def test_limits_are_enforced_before_reading():
    sent = encode({"weights": torch.zeros(2048)})
    with pytest.raises(WireError, match="bytes \\(the limit is 4,096\\)"):
        decode(sent, SMALL)
    with pytest.raises(WireError, match="more than 4 tensors"):
        decode(encode([torch.zeros(1)] * 5), SMALL)
    with pytest.raises(WireError, match="more than 50 items"):
        decode(encode(list(range(60))), SMALL)
    with pytest.raises(WireError, match="header is too large"):
        decode(encode("x" * 2000), SMALL)
    assert decode(encode([torch.zeros(1)] * 4), SMALL)[3].shape == (1,)


def test_large_structures_are_read_or_refused_fast():
    """A header of 16 MB in one string (read), a structure of a million items (refused): in linear time."""
    start = time.perf_counter()
    assert len(decode(payload('"' + "x" * (ANSWER.header_bytes - 40) + '"'))) == ANSWER.header_bytes - 40
    with pytest.raises(WireError, match="more than 300,000 items"):
        decode(payload("[" + "0," * 1_000_000 + "0]"))
    assert time.perf_counter() - start < 3


def test_mutated_payloads_raise_wire_errors_only():
    """Random corruptions of a valid payload: a value or WireError, never another exception."""
    valid = encode({"output": torch.randn(3, 4), "counts": {"aten.mm": 3}, "pair": (1.5, [None, "x"])})
    generator = random.Random(0)
    for _ in range(400):
        sent = bytearray(valid)
        for _ in range(generator.randint(1, 4)):
            sent[generator.randrange(len(sent))] = generator.randrange(256)
        try:
            decode(bytes(sent))
        except WireError:
            pass


# ---- the child's side: plain ---------------------------------------------------------------------------
def test_plain_makes_tensors_fit_the_format():
    sparse = torch.eye(3).to_sparse()
    got = plain({"sparse": sparse, "t": torch.randn(3, 4).t(), "p": torch.nn.Parameter(torch.ones(2)),
                 "array": object()})
    assert got["sparse"].layout == torch.strided and torch.equal(got["sparse"], torch.eye(3))
    assert got["t"].is_contiguous() and type(got["p"]) is torch.Tensor and not got["p"].requires_grad
    assert got["array"] == {"__opaque__": "object"}
    assert same(decode(encode(got))["t"], got["t"])


@pytest.mark.parametrize("value, words", [
    (torch.zeros(2, dtype=torch.complex64), "dtype complex64.*convert it"),
    (torch.zeros(1).expand(25_000, 20_000), "more than 64 MB"),
    (_shared(6, 1000), "more than 50,000 values"),
    (torch.zeros(2, device="meta"), "cannot be made a dense CPU tensor"),
], ids=["complex", "expanded", "shared references", "meta"])
def test_plain_refuses_what_the_grader_cannot_read_as_the_students_failure(value, words):
    start = time.perf_counter()
    with pytest.raises(CheckFailure, match=words) as failure:
        plain(value)
    assert str(failure.value).startswith(UNREADABLE) and failure.value.reason == CRASHED
    assert time.perf_counter() - start < 2


@pytest.mark.parametrize("make", [lambda n: {str(i): (i,) for i in range(n // 2 - 1)},
                                  lambda n: [{"k": [(None,)]} for _ in range(n // 4 - 1)],
                                  lambda n: [[[]] for _ in range(n // 2 - 1)]], ids=["dict of tuples", "dicts", "lists"])
def test_what_plain_lets_through_the_wire_reads(make):
    """plain's bound on values keeps every answer it makes within what decode reads."""
    value = make(ANSWER.nodes // 6)
    assert same(decode(encode(plain(value))), value)
    with pytest.raises(CheckFailure, match="more than 50,000 values"):
        plain([value, value])


def test_unplain_names_opaque_values_within_bounds():
    assert type(unplain({"__opaque__": "ndarray"})).__name__ == "ndarray"
    strange = unplain([{"__opaque__": "x\0" * 10_000}])[0]
    assert isinstance(strange, Opaque) and len(type(strange).__name__) <= 80


# ---- the grader's side: the answer's form, bounded messages, the check's deadline ----------------------
def test_answers_of_another_form_are_refused():
    from autograder.isolation import answer_of

    assert answer_of({"value": [1], "printed": ""})["value"] == [1]
    assert answer_of({"status": FAILED, "message": "m", "reason": CRASHED, "printed": "p"})["reason"] == CRASHED
    for reply in ([1], {"printed": ""}, {"value": 1}, {"value": 1, "printed": 3}, {"value": 1, "printed": "", "x": 1},
                  {"status": FAILED, "message": "m", "reason": "not run", "printed": ""},
                  {"status": PASSED, "message": "m", "reason": CRASHED, "printed": ""}):
        with pytest.raises(WireError):
            answer_of(reply)


def test_shown_is_bounded_whatever_the_value():
    big = torch.zeros(10**6)
    for value in ("x" * 10**7, list(range(10**6)), {str(i): [big] * 3 for i in range(10**4)},
                  _shared(6, 1000), 10**4000, 10**5000):
        start = time.perf_counter()
        assert len(shown(value)) <= 200
        assert time.perf_counter() - start < 0.5
    assert shown(torch.zeros(2, 3)) == "a tensor of shape (2, 3) and dtype float32"
    assert shown([(16, 1, 3, 3), (16,)]) == "[(16, 1, 3, 3), (16,)]"


class _Sub:
    stopped = False

    def stop(self):
        self.stopped = True


def _slow_check(sub):
    time.sleep(1.5)


def test_a_check_past_its_deadline_fails_as_timed_out():
    from autograder.grade import _run_within

    sub = _Sub()
    start = time.perf_counter()
    status, message, reason = _run_within(_slow_check, sub, 0.3)
    assert (status, reason) == (FAILED, TIMED_OUT) and "stopped" in message and sub.stopped
    assert time.perf_counter() - start < 1.2
    assert _run_within(lambda sub: "fine", _Sub(), 5) == (PASSED, "fine", "")


def test_a_check_in_another_thread_runs_without_the_alarm():
    from autograder.grade import _run_within

    found = []
    thread = threading.Thread(target=lambda: found.append(_run_within(lambda sub: time.sleep(0.6), _Sub(), 0.3)))
    thread.start()
    thread.join()
    assert found == [(PASSED, "", "")]


def test_train_batch_parameters_of_other_shapes_are_refused_before_they_are_compared():
    """A train_batch that replaces a parameter by a tensor of another shape is told so; its values are never
    compared (torch.allclose would broadcast a (10000, 1, 1) tensor against the model's weights: gigabytes in
    the grading process from a 40 KB answer)."""
    from autograder.checks import q2
    from autograder.child.probes import small_classifier

    class Answers:
        def run(self, probe, **inputs):
            params = [p.detach().clone() for p in small_classifier().parameters()]
            params[0] = torch.zeros(10_000, 1, 1)
            return {"returned": 1.0, "after": params, "cleared": False, "losses": [1.0]}

    message = q2.diagnose_train_batch(Answers())
    assert "no longer have their shapes" in message, message
