"""The wire format between the grader and the grading child: `torch.save` payloads behind an
8-byte length. Values are read back with `torch.load(weights_only=True)`, which builds tensors
and containers and nothing else, after `decode` has bounded their size: the bytes, the zip
members torch writes, and the number of pickle operations (so that an answer of millions of
small objects cannot exhaust the grader's memory).
"""

import io
import os
import pickletools
import struct
import zipfile

import torch

HEADER = struct.Struct(">Q")
MAX_BYTES = 64 * 2**20  # an answer: trained weights are ~3 MB, everything else far less
MAX_OPERATIONS = 1_000_000  # pickle operations in an answer; a dict of 100 tensors needs ~2,000


class WireError(ValueError):
    """A payload that is too large or not of the wire format; the message says which."""


def encode(value):
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def decode(payload, max_operations=MAX_OPERATIONS):
    """The value of a payload, after checking its size and structure before unpickling anything."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(payload))
        members = archive.infolist()
    except (zipfile.BadZipFile, ValueError) as error:
        raise WireError(f"not a torch.save payload ({error})") from None
    if len(members) > 10_000:
        raise WireError(f"{len(members):,} members in one payload")
    for member in members:
        if member.compress_type != zipfile.ZIP_STORED or member.file_size > len(payload):
            raise WireError(f"member {member.filename[:80]!r} is compressed or larger than the payload")
    pickles = [m for m in members if m.filename.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise WireError("no single data.pkl in the payload")
    operations = 0
    try:
        for _ in pickletools.genops(archive.read(pickles[0])):
            operations += 1
            if operations > max_operations:
                raise WireError(f"more than {max_operations:,} objects in one payload")
    except WireError:
        raise
    except Exception as error:
        raise WireError(f"a malformed pickle ({type(error).__name__})") from None
    try:
        value = torch.load(io.BytesIO(payload), weights_only=True)
    except Exception as error:
        raise WireError(f"unreadable values ({type(error).__name__}: {str(error)[:200]})") from None
    if _tensor_bytes(value) > MAX_BYTES:
        raise WireError(f"tensors of more than {MAX_BYTES:,} bytes in all")
    return value


def _tensor_bytes(value, depth=0):
    """The bytes the tensors of `value` stand for, once expanded; a tensor that is a view larger than
    its storage (a stride-0 expansion: 4 bytes standing for gigabytes) counts for what it stands for
    and is refused when that is more than its storage holds."""
    if depth > 50:
        raise WireError("values nested more than 50 deep")
    if isinstance(value, torch.Tensor):
        size = value.numel() * value.element_size()
        if size > value.untyped_storage().nbytes() or value.layout != torch.strided:
            raise WireError(f"a tensor of shape {tuple(value.shape)[:8]} is a view larger than its storage")
        return size
    if isinstance(value, dict):
        return sum(_tensor_bytes(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v, depth + 1) for v in value)
    return 0


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
