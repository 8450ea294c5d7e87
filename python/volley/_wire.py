"""Frames between a Python worker and its pack's supervisor, and the encoding
of the objects workers exchange.

A frame is a JSON header and binary parts:
``u32 header length | header | u32 part count | (u64 length | bytes)*``,
little-endian. Parts are written with ``sendmsg`` straight from the caller's
buffers (a numpy array is not copied on its way out) and read into one
``bytearray`` each. A reply's large parts are not in the frame but in the
pack's shared memory (``_arena``): ``"shm"`` in its header says where.

Objects travel tagged in their first byte: ``B`` raw bytes, ``N`` a numpy
array (a small JSON header with dtype and shape, then its data), ``P`` a
pickle of anything else.
"""

import json
import pickle
import struct

from . import _arena

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

# Most bytes one sendmsg is handed (the kernel takes less at a time anyway).
_MAX_SEND = 1 << 30


def send(sock, header, parts=()):
    head = json.dumps(header, separators=(",", ":")).encode()
    buffers = [_U32.pack(len(head)), head, _U32.pack(len(parts))]
    for part in parts:
        view = memoryview(part).cast("B")
        buffers.append(_U64.pack(view.nbytes))
        buffers.append(view)
    _send_all(sock, buffers)


def _send_all(sock, buffers):
    views = [memoryview(b).cast("B") for b in buffers if len(b)]
    while views:
        sent = sock.sendmsg(views[:64])
        while sent:
            if sent >= views[0].nbytes:
                sent -= views[0].nbytes
                views.pop(0)
            else:
                views[0] = views[0][sent:]
                sent = 0


def _read_exactly(sock, n):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], min(n - got, _MAX_SEND))
        if k == 0:
            raise ConnectionError("the pack's supervisor went away")
        got += k
    return buf


def recv(sock):
    (head_len,) = _U32.unpack(_read_exactly(sock, 4))
    header = json.loads(_read_exactly(sock, head_len))
    (count,) = _U32.unpack(_read_exactly(sock, 4))
    parts = []
    for _ in range(count):
        (size,) = _U64.unpack(_read_exactly(sock, 8))
        parts.append(_read_exactly(sock, size))
    # Large parts are places in the pack's shared memory (see _arena).
    shm = header.pop("shm", ())
    place = _arena.view if len(shm) <= _arena.MOST_MAPPED else _arena.copied
    for index, slot, offset, length in shm:
        parts[index] = place(slot, offset, length)
    return header, parts


def encode(obj):
    """An object as the parts of one message (no copy of a bytes-like or array's data)."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return [b"B", obj]
    numpy = _numpy()
    if numpy is not None and isinstance(obj, numpy.ndarray) and obj.dtype.hasobject is False:
        array = numpy.ascontiguousarray(obj)
        meta = json.dumps({"dtype": array.dtype.str, "shape": list(array.shape)}).encode()
        return [b"N", _U32.pack(len(meta)), meta, array.reshape(-1).view(numpy.uint8)]
    return [b"P", pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)]


def decode(data):
    """The object a message holds (arrays and bytes are views of ``data``)."""
    view = memoryview(data)
    tag = bytes(view[:1])
    if tag == b"B":
        return bytes(view[1:]) if isinstance(data, bytes) else view[1:]
    if tag == b"N":
        numpy = _numpy()
        (meta_len,) = _U32.unpack(view[1:5])
        meta = json.loads(bytes(view[5 : 5 + meta_len]))
        array = numpy.frombuffer(view[5 + meta_len :], dtype=numpy.dtype(meta["dtype"]))
        return array.reshape(meta["shape"])
    if tag == b"P":
        return pickle.loads(view[1:])
    raise ValueError(f"a message with the unknown tag {tag!r}")


def joined(parts):
    """One buffer from the parts ``encode`` gave (what the supervisor receives as one message)."""
    return b"".join(memoryview(p).cast("B") for p in parts)


def _numpy():
    try:
        import numpy

        return numpy
    except ImportError:
        return None
