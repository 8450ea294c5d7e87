"""What a Python function sees when it runs as a worker of a burst: its rank,
the burst's size and its pack, its parameters, and a communicator whose every
call is carried out by the pack's supervisor (the Rust middleware), which this
process talks to over a Unix socket. The call blocks only this process: other
workers of the pack are processes of their own.
"""

import os
import pickle
import socket
import sys
import traceback

from . import _arena, _wire

# Reductions the middleware performs on arrays, by numpy dtype.
_DTYPES = {"<f8": "f64", "<f4": "f32", "<i8": "i64", "<u8": "u64"}
_OPS = ("sum", "min", "max")


class CommError(RuntimeError):
    """A communication call failed (a peer failed, the burst was cancelled, a timeout)."""


class Request:
    """A non-blocking send or receive; ``wait()`` finishes it."""

    def __init__(self, comm, ident, receiving):
        self._comm, self._id, self._receiving, self._done, self._value = comm, ident, receiving, False, None

    def test(self):
        if not self._done:
            header, parts = self._comm._call({"op": "test", "req": self._id})
            if header.get("done"):
                self._finish(header, parts)
        return self._done

    def wait(self):
        if not self._done:
            header, parts = self._comm._call({"op": "wait", "req": self._id})
            self._finish(header, parts)
        return self._value

    def _finish(self, header, parts):
        self._done = True
        if self._receiving:
            self._value = _wire.decode(parts[0])


class Comm:
    """The burst's communicator. Objects are sent as they are: ``bytes`` and
    numpy arrays raw (no pickling, no copy on the way out), anything else pickled."""

    def __init__(self, sock, rank, size, pack):
        self._sock, self.rank, self.size, self.pack = sock, rank, size, pack

    def _call(self, header, messages=()):
        return self._exchange(header, [_wire.encode(m) for m in messages])

    def _exchange(self, header, encoded):
        """Sends a call with its messages (each a list of parts) and returns the reply.
        Large messages are written into the pack's shared memory, not the socket."""
        # Places let go of are said first: with the alloc if there is one (it may need the room).
        freed = _arena.freed()
        staged = self._stage(encoded, freed)
        if freed and staged is None:
            header["freed"] = freed
        if staged is not None:
            header["staged"] = staged
            encoded = []
        parts, groups = [], []
        for message in encoded:
            parts.extend(message)
            groups.append(len(message))
        header["groups"] = groups
        _wire.send(self._sock, header, parts)
        reply, got = _wire.recv(self._sock)
        if "error" in reply:
            raise CommError(reply["error"])
        return reply, got

    def _stage(self, encoded, freed):
        """The slots holding ``encoded``, or None to send it through the socket
        (``freed`` goes with the alloc, if one is sent)."""
        if not encoded or not _arena.attached():
            return None
        sizes = _arena.sizes(encoded)
        if sum(sizes) < _arena.LARGE:
            return None
        _wire.send(self._sock, {"op": "alloc", "sizes": sizes, "freed": freed})
        reply, _ = _wire.recv(self._sock)
        slots = reply.get("slots")
        if not slots:
            return None
        ids = [slot[0] for slot in slots]
        try:
            _arena.write(slots, encoded)
        except BaseException:
            _arena.forget(ids)
            raise
        return ids

    def send(self, obj, dest, tag=0):
        self._call({"op": "send", "dst": dest, "tag": tag}, [obj])

    def recv(self, source=None, tag=0):
        """The next object from ``source`` (any rank if None)."""
        reply, parts = self._call({"op": "recv", "src": source, "tag": tag})
        return _wire.decode(parts[0])

    def isend(self, obj, dest, tag=0):
        reply, _ = self._call({"op": "isend", "dst": dest, "tag": tag}, [obj])
        return Request(self, reply["req"], False)

    def irecv(self, source=None, tag=0):
        reply, _ = self._call({"op": "irecv", "src": source, "tag": tag})
        return Request(self, reply["req"], True)

    def barrier(self):
        self._call({"op": "barrier"})

    def broadcast(self, obj=None, root=0):
        _, parts = self._call({"op": "broadcast", "root": root}, [obj] if self.rank == root else [])
        return _wire.decode(parts[0])

    def scatter(self, objs=None, root=0):
        if self.rank == root and (objs is None or len(objs) != self.size):
            raise ValueError(f"scatter at the root takes {self.size} objects, one per rank")
        _, parts = self._call({"op": "scatter", "root": root}, list(objs) if self.rank == root else [])
        return _wire.decode(parts[0])

    def gather(self, obj, root=0):
        """Every rank's object, in rank order, at ``root``; None elsewhere."""
        reply, parts = self._call({"op": "gather", "root": root}, [obj])
        return [_wire.decode(p) for p in parts] if reply.get("root") else None

    def all_gather(self, obj):
        _, parts = self._call({"op": "all_gather"}, [obj])
        return [_wire.decode(p) for p in parts]

    def all_to_all(self, objs):
        """Object i to rank i; returns what each rank sent this one, in rank order."""
        if len(objs) != self.size:
            raise ValueError(f"all_to_all takes {self.size} objects, one per rank, not {len(objs)}")
        _, parts = self._call({"op": "all_to_all"}, list(objs))
        return [_wire.decode(p) for p in parts]

    def all_reduce(self, value, op="sum"):
        """Element-wise reduction of numbers or numpy arrays across ranks."""
        return self._reduce(value, op, None)

    def reduce(self, value, op="sum", root=0):
        """As ``all_reduce``, with the result at ``root`` only (None elsewhere)."""
        return self._reduce(value, op, root)

    def reduce_scatter(self, value, op="sum"):
        """Element-wise reduction whose result is split among the ranks:
        rank r gets block r of the flattened result, blocks as equal as can
        be (the first ``len % size`` one element longer)."""
        return self._reduce(value, op, None, scatter=True)

    def _reduce(self, value, op, root, scatter=False):
        import numpy

        if op not in _OPS:
            raise ValueError(f"op must be one of {', '.join(_OPS)}, not {op!r}")
        scalar = numpy.isscalar(value)
        array = numpy.ascontiguousarray(numpy.asarray(value))
        if array.dtype.str not in _DTYPES:
            if array.dtype.kind == "f":
                array = array.astype("<f8")
            elif array.dtype.kind in "ib":
                array = array.astype("<i8")
            elif array.dtype.kind == "u":
                array = array.astype("<u8")
            else:
                raise TypeError(f"cannot reduce values of dtype {array.dtype}")
        header = {"op": "reduce", "dtype": _DTYPES[array.dtype.str], "reduce": op, "root": root}
        if scatter:
            header["scatter"] = True
        _, parts = self._exchange(header, [[array.reshape(-1).view(numpy.uint8)]])
        if not parts:
            return None
        out = numpy.frombuffer(parts[0], dtype=array.dtype)
        if scatter:
            return out
        out = out.reshape(array.shape)
        return out.item() if scalar else out


class Worker:
    """One worker of a burst, as its function receives it."""

    def __init__(self, sock, hello):
        self.rank = hello["rank"]
        self.size = hello["size"]
        self.pack = hello["pack"]
        self.burst = hello["burst"]
        self.attempt = hello.get("attempt", 1)
        self.params = None
        self.comm = Comm(sock, self.rank, self.size, self.pack)
        self._storage_options = hello.get("storage")

    def storage(self, url):
        """Objects under ``url`` (``file://`` or ``s3://``), reached with the
        pack's storage settings: an ``s3://`` prefix needs the burst to name
        it (``storage=[url]`` when submitting) for the platform to hand over
        credentials."""
        from .storage import Storage

        return Storage._with(url, self._storage_options)

    def phase(self, name):
        """Marks the start of a named phase of the function (``"read"``,
        ``"shuffle"``): it lasts until the next mark, the last one until the
        worker returns. The dashboard draws them on the burst's timeline."""
        self.comm._call({"op": "phase", "name": str(name)})


def run(sock, function, hello, arg_blob):
    """Runs ``function`` as this worker (``hello`` says which, ``arg_blob`` is
    its pickled parameters, or the argument lists of its calls) and reports
    its result or its exception.

    A burst's worker calls ``function(worker)`` once: its exception fails the
    burst. A map's worker makes each of its calls, and each call's outcome,
    ``("ok", pickled value)`` or ``("raised", what)``, is its own: one call
    raising does not stop the next."""
    session = hello.get("session")
    if session:
        from . import _session

        _session.attach_worker(session)
    try:
        given = pickle.loads(arg_blob) if arg_blob else None
        if hello.get("mode") == "burst":
            worker = Worker(sock, hello)
            worker.params = given
            blob = pickle.dumps(function(worker), protocol=pickle.HIGHEST_PROTOCOL)
        else:
            blob = pickle.dumps([_call(function, args) for args in given or [()]], protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException as e:  # noqa: BLE001 - a worker reports whatever ended it
        _flush(session)
        report_exception(sock, e)
        return
    # What it printed reaches its program before its end does.
    _flush(session)
    _wire.send(sock, {"op": "result"}, [blob])


def _flush(session):
    if session:
        from . import _session

        _session.flush_worker()


def _call(function, args):
    try:
        return ("ok", pickle.dumps(function(*args), protocol=pickle.HIGHEST_PROTOCOL))
    except BaseException as e:  # noqa: BLE001 - the call's outcome
        return ("raised", described(e))


def described(e):
    """An exception as it crosses to the client: type, message, traceback, and itself pickled if it pickles."""
    if isinstance(e, SystemExit):
        message = f"the function called sys.exit({e.code!r})"
    else:
        message = f"{type(e).__name__}: {e}"
    try:
        blob = pickle.dumps(e, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(blob)
    except Exception:  # noqa: BLE001 - an exception that does not pickle travels as text
        blob = b""
    text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    return {"type": type(e).__name__, "message": message, "traceback": text, "pickle": blob}


def report_exception(sock, e):
    what = described(e)
    blob = what.pop("pickle")
    _wire.send(sock, dict(what, op="error"), [blob])


def connect(path, token, rank):
    """This worker's connection to its supervisor, introduced by ``token`` and ``rank``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    _wire.send(sock, {"op": "hello", "token": token, "rank": rank, "pid": os.getpid()})
    return sock


def python_version():
    return f"{sys.version_info.major}.{sys.version_info.minor}"
