"""The wire format between the grader and the grading child: data, never objects.

A message on a pipe is its payload's length (HEADER: 8 bytes, big-endian), then the payload. Requests
(the grader's) and answers (the child's) have one format: a payload is a safetensors file (an
8-byte little-endian header length, a JSON header, the tensors' bytes; no code, no pickle) whose
header's `__metadata__` is {"hw2": structure}, the value as a JSON tree:

    null, true, false, 3, 2.5, "text"   None, bool, int, float (also NaN, Infinity, -Infinity), str
    [v, ...]                            a list
    {"tuple": [v, ...]}                 a tuple
    {"dict": [["key", v], ...]}         a dict with str keys, in their order
    {"tensor": i}                       the file's tensor named str(i): dense, contiguous, on the CPU,
                                        of one of DTYPES

so a value is a tree: every tensor of the file is referenced exactly once, nothing is shared, and
decoding builds only the kinds above (no constructor a payload names ever runs). Anything else
(an object, a sparse or CUDA tensor, a complex dtype) cannot be encoded, and `encode` says which.

`decode` enforces its Limits (ANSWER for what the child says, REQUEST for what the grader asks)
while reading, before building any value: the payload's bytes (the grader reads no more than
ANSWER.bytes from the pipe); the safetensors header's length, its JSON's depth and items (a
pre-scan that skips the strings and counts brackets, commas and colons, before `json.loads`), its
tensors (how many, named 0..n-1, a listed dtype, at most MAX_DIMS dimensions, offsets that tile the
data exactly and match each shape and dtype) before `safetensors.torch.load` reads them; then the
structure's depth and items (the same pre-scan) before `json.loads` builds it, each tensor claimed
once. It is linear in the payload's size (a 64 MB answer of weights decodes in tens of
milliseconds, with one copy of the tensors' bytes) and raises WireError, only, for anything else.
"""

import json
import math
import os
import re
import struct
from dataclasses import dataclass

import numpy
import safetensors.torch
import torch

HEADER = struct.Struct(">Q")
# the dtypes a tensor may have, by their safetensors names
DTYPES = {"BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "I32": torch.int32,
          "I64": torch.int64, "F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
MAX_DIMS = 16
KEY = "hw2"  # the metadata entry holding the structure


@dataclass(frozen=True)
class Limits:
    bytes: int  # the whole payload (tensors included)
    header_bytes: int  # the safetensors header: the structure and the tensors' descriptions
    nodes: int  # items of the structure's JSON, as _scan counts them (at most 6 for a value: probes.plain)
    depth: int  # nesting of the structure's JSON (a list is 1 level, a tuple 2, a dict 3)
    tensors: int


# an answer: trained weights are ~3 MB, a dict of operation counts ~200 items; everything else far less
ANSWER = Limits(bytes=64 * 2**20, header_bytes=16 * 2**20, nodes=300_000, depth=100, tensors=10_000)
# a request: the training data of a test (~20 MB of features, ~60,000 items of captions)
REQUEST = Limits(bytes=256 * 2**20, header_bytes=64 * 2**20, nodes=1_000_000, depth=100, tensors=10_000)


class WireError(ValueError):
    """A payload that is not of the wire format or beyond its limits, or a value that cannot be
    encoded; the message says which."""


# ---- encoding --------------------------------------------------------------------------------
def encode(value, limits=ANSWER):
    """The payload (bytes) of `value`; WireError naming what cannot be sent or what is too large."""
    tensors, storages = [], set()
    left = [limits.nodes]
    size = [0]

    def tree(value, depth):
        left[0] -= 1
        if left[0] < 0:
            raise WireError(f"more than {limits.nodes:,} values")
        if depth > limits.depth:
            raise WireError(f"values nested more than {limits.depth} levels deep")
        if value is None or type(value) in (bool, int, float, str):
            return value
        if type(value) is list:
            return [tree(v, depth + 1) for v in value]
        if type(value) is tuple:
            return {"tuple": [tree(v, depth + 2) for v in value]}
        if isinstance(value, dict):
            if not all(type(k) is str for k in value):
                raise WireError("a dict whose keys are not all strings")
            return {"dict": [[k, tree(v, depth + 3)] for k, v in value.items()]}
        if isinstance(value, torch.Tensor):
            return {"tensor": add_tensor(value)}
        raise WireError(f"a value of type {type(value).__name__[:80]} (only tensors, numbers, strings, None, "
                        f"lists, tuples and dicts with str keys can be sent)")

    def add_tensor(value):
        if len(tensors) >= limits.tensors:
            raise WireError(f"more than {limits.tensors:,} tensors")
        problem = tensor_problem(value)
        if problem:
            raise WireError(problem)
        size[0] += value.numel() * value.element_size()
        if size[0] > limits.bytes:
            raise WireError(f"tensors of more than {limits.bytes:,} bytes in all")
        tensor = value.detach().as_subclass(torch.Tensor).contiguous()
        storage = tensor.untyped_storage()
        if storage.data_ptr() in storages or storage.nbytes() != tensor.numel() * tensor.element_size():
            tensor = tensor.clone()  # its own bytes: two leaves never share a storage
        storages.add(tensor.untyped_storage().data_ptr())
        tensors.append(tensor)
        return len(tensors) - 1

    try:
        structure = json.dumps(tree(value, 0), separators=(",", ":"))  # ASCII: lone surrogates escaped
    except RecursionError:
        raise WireError("values nested too deeply") from None
    except ValueError as error:  # an int of more than 4,300 digits
        if isinstance(error, WireError):
            raise
        raise WireError(f"a value json cannot write ({str(error)[:200]})") from None
    _scan(structure, "the structure", limits.nodes, limits.depth)  # as decode will: what it sends, it reads
    if len(structure) > limits.header_bytes:
        raise WireError(f"values other than tensors of more than {limits.header_bytes:,} characters")
    payload = safetensors.torch.save({str(i): t for i, t in enumerate(tensors)}, metadata={KEY: structure})
    if int.from_bytes(payload[:8], "little") > limits.header_bytes:
        raise WireError(f"values other than tensors of more than {limits.header_bytes:,} bytes, once written")
    if len(payload) > limits.bytes:
        raise WireError(f"values of {len(payload):,} bytes (the limit is {limits.bytes:,})")
    return payload


def tensor_problem(tensor):
    """Why `tensor` cannot be sent as it is (None when it can): the format holds dense CPU tensors of DTYPES."""
    if tensor.layout != torch.strided or tensor.is_nested or tensor.is_quantized:
        return f"a tensor of layout {str(tensor.layout).replace('torch.', '')}{' (nested)' * tensor.is_nested} " \
               f"(only dense tensors can be sent)"
    if tensor.device.type != "cpu":
        return f"a tensor on the device {tensor.device.type} (only CPU tensors can be sent)"
    if tensor.dtype not in DTYPE_NAMES:
        return (f"a tensor of dtype {str(tensor.dtype).replace('torch.', '')} (only "
                f"{', '.join(str(d).replace('torch.', '') for d in DTYPE_NAMES)} can be sent)")
    return None


# ---- decoding --------------------------------------------------------------------------------
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string, escapes included (linear)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def _scan(text, what, max_items, max_depth):
    """Bound the JSON `text` before parsing it: at most `max_items` items and `max_depth` levels of
    nesting. Strings are skipped; every value but a container's first follows a comma or a colon."""
    bare, strings = _STRING.subn('""', text)
    if bare.count('"') != 2 * strings:
        raise WireError(f"{what} is not valid JSON (an unterminated string)")
    opens = bare.count("[") + bare.count("{")
    closes = bare.count("]") + bare.count("}")
    items = bare.count(",") + bare.count(":") + opens + 1
    if items > max_items or closes > max_items:
        raise WireError(f"{what} has more than {max_items:,} items")
    brackets = numpy.frombuffer(_NOT_BRACKET.sub("", bare).encode("ascii"), dtype=numpy.uint8)
    if len(brackets):
        steps = numpy.where((brackets == ord("[")) | (brackets == ord("{")), 1, -1).astype(numpy.int32)
        if steps.cumsum().max() > max_depth:
            raise WireError(f"{what} is nested more than {max_depth} levels deep")


def _unique(pairs):
    """A JSON object of the header as a dict; WireError when a key is repeated."""
    value = dict(pairs)
    if len(value) != len(pairs):
        raise WireError("the header repeats a key")
    return value


def decode(payload, limits=ANSWER):
    """The value of `payload` (bytes) within `limits`; WireError for anything else."""
    try:
        return _decode(payload, limits)
    except WireError:
        raise
    except (RecursionError, MemoryError) as error:
        raise WireError(f"values beyond the grader's means ({type(error).__name__})") from None
    except Exception as error:
        raise WireError(f"not of the wire format ({type(error).__name__}: {str(error)[:200]})") from None



def _loads(text, what, hook):
    """json.loads of `text` with `hook` for its objects; WireError naming `what` when it is not valid JSON."""
    try:
        return json.loads(text, object_pairs_hook=hook)
    except ValueError as error:
        if isinstance(error, WireError):
            raise
        raise WireError(f"{what} is not valid JSON ({str(error)[:100]})") from None

def _decode(payload, limits):
    if not isinstance(payload, bytes):
        raise WireError(f"a payload of type {type(payload).__name__}")
    if len(payload) > limits.bytes:
        raise WireError(f"{len(payload):,} bytes (the limit is {limits.bytes:,})")
    if len(payload) < 8:
        raise WireError(f"{len(payload)} bytes, too short to be a safetensors file")
    length = int.from_bytes(payload[:8], "little")
    if length > limits.header_bytes or 8 + length > len(payload):
        if payload.startswith((b"PK\x03\x04", b"\x80")):
            raise WireError("a torch.save or pickle payload (objects, which the grader never reads), not a "
                            "safetensors file")
        raise WireError(f"not a safetensors file, or its header is too large (it announces {length:,} bytes; the "
                        f"limit is {limits.header_bytes:,} and the payload has {len(payload) - 8:,})")
    try:
        text = payload[8:8 + length].decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("the header is not UTF-8") from None
    _scan(text, "the header", max_items=16 + limits.tensors * (8 + MAX_DIMS), max_depth=3)
    header = _loads(text, "the header", _unique)
    if not isinstance(header, dict):
        raise WireError("the header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    if not isinstance(metadata, dict) or set(metadata) != {KEY} or not isinstance(metadata[KEY], str):
        raise WireError(f'the header has no structure (its "__metadata__" must be {{"{KEY}": "<JSON>"}})')
    _check_tensors(header, len(payload) - 8 - length, limits)
    structure = metadata[KEY]
    _scan(structure, "the structure", limits.nodes, limits.depth)
    tensors = safetensors.torch.load(payload) if header else {}
    claimed = set()

    def node(pairs):  # every JSON object of the structure is one tagged value
        if len(pairs) != 1:
            raise WireError(f"an object of {len(pairs)} keys in the structure (a tagged value has one)")
        (tag, content), = pairs
        if tag == "tuple" and type(content) is list:
            return tuple(content)
        if tag == "dict" and type(content) is list:
            value = {}
            for pair in content:
                if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str or pair[0] in value:
                    raise WireError("a dict whose items are not [key, value] with distinct str keys")
                value[pair[0]] = pair[1]
            return value
        if tag == "tensor" and type(content) is int:
            if str(content) not in tensors or content in claimed:
                why = "referenced twice" if content in claimed else "not in the file"
                raise WireError(f"tensor {str(content)[:20]} is {why}")
            claimed.add(content)
            return tensors[str(content)]
        raise WireError(f"an unknown value in the structure ({str(tag)[:40]!r})")

    value = _loads(structure, "the structure", node)
    if len(claimed) != len(tensors):
        raise WireError(f"{len(tensors) - len(claimed)} tensor(s) of the file are not in the structure")
    return value


def _check_tensors(header, data_bytes, limits):
    """The header's tensors (everything but "__metadata__"): named 0..n-1, at most limits.tensors, of
    DTYPES, at most MAX_DIMS dimensions, their offsets tiling the `data_bytes` after the header."""
    if len(header) > limits.tensors:
        raise WireError(f"more than {limits.tensors:,} tensors")
    if set(header) != {str(i) for i in range(len(header))}:
        raise WireError(f"tensors are named other than 0 to {len(header) - 1}")
    spans = []
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise WireError(f"tensor {name}: not described by its dtype, shape and data_offsets alone")
        dtype, shape, offsets = DTYPES.get(entry["dtype"]), entry["shape"], entry["data_offsets"]
        if dtype is None:
            raise WireError(f"tensor {name}: dtype {str(entry['dtype'])[:20]!r} is not one of {', '.join(DTYPES)}")
        if (not isinstance(shape, list) or len(shape) > MAX_DIMS
                or not all(type(d) is int and 0 <= d <= limits.bytes for d in shape)):
            raise WireError(f"tensor {name}: its shape is not a list of at most {MAX_DIMS} sizes")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise WireError(f"tensor {name}: its data_offsets are not [begin, end]")
        expected = math.prod(shape) * dtype.itemsize
        if offsets[1] - offsets[0] != expected:
            raise WireError(f"tensor {name}: its offsets hold {offsets[1] - offsets[0]:,} bytes; its shape and dtype "
                            f"need {expected:,}")
        spans.append(offsets)
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            raise WireError("the tensors' data overlap or leave gaps")
        position = end
    if position != data_bytes:
        raise WireError(f"the tensors' data take {position:,} bytes; the file has {data_bytes:,} after its header")


# ---- messages on a pipe ----------------------------------------------------------------------
def frame(payload):
    """One message on a pipe: the payload's length (HEADER), then the payload. Both sides use this
    and payload_size: the child blocking (read_message, write_message), the grader with deadlines."""
    return HEADER.pack(len(payload)) + payload


def payload_size(header, max_bytes=None):
    """The length a message's HEADER announces; WireError when it is beyond `max_bytes`."""
    size = HEADER.unpack(header)[0]
    if max_bytes is not None and size > max_bytes:
        raise WireError(f"a message of {size:,} bytes (the limit is {max_bytes:,})")
    return size


def read_message(fd, max_bytes=None):
    """The next payload on `fd` (bytes), or None at end of file (blocking: the child's side)."""
    header = _read_exactly(fd, HEADER.size)
    if header is None:
        return None
    return _read_exactly(fd, payload_size(header, max_bytes))


def _read_exactly(fd, size):
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def write_message(fd, payload):
    view = memoryview(frame(payload))
    while view:
        view = view[os.write(fd, view):]
