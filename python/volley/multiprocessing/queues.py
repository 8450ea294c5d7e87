"""Queues and pipes of a program, shared by all its processes: FIFO objects
of its session on the controller (no Redis to run), with the standard
library's semantics and errors. Items are pickled when they are put, so an
item that does not pickle fails the ``put`` itself."""

import pickle
import queue as _queue
from multiprocessing import BufferTooShort

import cloudpickle

from .. import _session
from ._shared import Shared

Empty = _queue.Empty
Full = _queue.Full


def _empty(reply):
    return reply["reply"] == "empty"


def _full(reply):
    return reply["reply"] == "full"


def _pickled(obj):
    try:
        return _session.dumps(obj)
    except Exception as e:
        raise TypeError(f"the item cannot be pickled: {type(e).__name__}: {e}") from e


class Queue(Shared):
    """``Queue(maxsize=0)``: ``put`` blocks while ``maxsize`` items wait (0: never)."""

    def __init__(self, maxsize=0, *, ctx=None, _ref=None):
        self._maxsize = maxsize if maxsize > 0 else 0
        self._closed = False
        self._make({"type": "queue", "maxsize": self._maxsize}, _ref)

    @classmethod
    def _in(cls, ref):
        """A queue of the session ``ref`` (a pool's, made in its executor's program)."""
        return cls(_ref=ref)

    def __getstate__(self):
        return {"_ref": self._ref, "_id": self._id, "_maxsize": self._maxsize}

    def __setstate__(self, state):
        self.__dict__.update(state, _closed=False)

    def _check_closed(self):
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")

    def put(self, obj, block=True, timeout=None):
        self._check_closed()
        item = _pickled(obj)
        if self._blocking("put", timeout if block else 0.0, _full, item=item)["reply"] == "full":
            raise Full

    def get(self, block=True, timeout=None):
        self._check_closed()
        if block and timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        reply = self._blocking("get", timeout if block else 0.0, _empty)
        if reply["reply"] != "items":
            raise Empty
        return _session.loads(reply["items"][0])

    def put_nowait(self, obj):
        return self.put(obj, False)

    def get_nowait(self):
        return self.get(False)

    def qsize(self):
        return self._op("size")["count"]

    def empty(self):
        return self.qsize() == 0

    def full(self):
        return self._maxsize > 0 and self.qsize() >= self._maxsize

    def close(self):
        """No more use of the queue from this process."""
        self._closed = True

    def join_thread(self):
        if not self._closed:
            raise AssertionError(f"Queue {self!r} not closed")

    def cancel_join_thread(self):
        pass


class JoinableQueue(Queue):
    """A queue whose ``join`` waits until every item put has been marked done by ``task_done``."""

    def task_done(self):
        reply = self._op("task_done")
        if reply["reply"] == "refused":
            raise ValueError(reply["reason"])

    def join(self):
        self._blocking("join", None, lambda r: not r["flag"])


class SimpleQueue(Shared):
    def __init__(self, *, ctx=None):
        self._closed = False
        self._make({"type": "queue", "maxsize": 0})

    def __getstate__(self):
        return {"_ref": self._ref, "_id": self._id}

    def __setstate__(self, state):
        self.__dict__.update(state, _closed=False)

    def close(self):
        self._closed = True

    def empty(self):
        return self._op("size")["count"] == 0

    def put(self, obj):
        self._op("put", item=_pickled(obj))

    def get(self):
        if self._closed:
            raise OSError("handle is closed")
        return _session.loads(self._blocking("get", None, _empty)["items"][0])


_EOF = object()


class Connection:
    """One end of a ``Pipe``: what it sends the other end receives, in order."""

    def __init__(self, ref, receive, send):
        self._ref, self._receive, self._send = ref, receive, send
        self._closed = False
        self._pending = []

    def __getstate__(self):
        if self._closed:
            raise OSError("handle is closed")
        if self._send is not None:
            # A copy of a write end is one more writer: the other end sees EOF
            # once every copy is closed, as with a pipe's file descriptors.
            self._session().op(self._send, "open_writing")
        return {"_ref": self._ref, "_receive": self._receive, "_send": self._send}

    def __setstate__(self, state):
        self.__dict__.update(state, _closed=False, _pending=[])
        if self._send is not None and _session.attached() is not None:
            # A worker's copy closes when its function returns, as a process's files do at exit.
            _session.at_worker_end(self.close)

    @property
    def closed(self):
        return self._closed

    @property
    def readable(self):
        return self._receive is not None

    @property
    def writable(self):
        return self._send is not None

    def _check(self, readable=False, writable=False):
        if self._closed:
            raise OSError("handle is closed")
        if readable and self._receive is None:
            raise OSError("connection is write-only")
        if writable and self._send is None:
            raise OSError("connection is read-only")

    def _session(self):
        return _session.of(self._ref)

    def _put(self, kind, payload):
        self._session().op(self._send, "put", item=_session.encode(pickle.dumps((kind, payload))))

    def send(self, obj):
        self._check(writable=True)
        self._put("object", cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    def send_bytes(self, buf, offset=0, size=None):
        self._check(writable=True)
        data = memoryview(buf).cast("B")
        if offset < 0:
            raise ValueError("offset is negative")
        if len(data) < offset:
            raise ValueError("buffer length < offset")
        if size is None:
            size = len(data) - offset
        elif size < 0:
            raise ValueError("size is negative")
        elif offset + size > len(data):
            raise ValueError("buffer length < offset + size")
        self._put("bytes", bytes(data[offset : offset + size]))

    def _next(self, timeout):
        """The next message, waiting up to ``timeout`` (None: as long as it takes); None if none came."""
        if not self._pending:
            reply = self._session().blocking(self._receive, "get", timeout, _empty)
            if reply["reply"] == "eof":
                self._pending.append(_EOF)
            elif reply["reply"] == "items":
                self._pending.append(pickle.loads(_session.decode(reply["items"][0])))
        return self._pending[0] if self._pending else None

    def _take(self):
        message = self._next(None)
        if message is _EOF:
            raise EOFError
        self._pending.pop(0)
        return message

    def recv(self):
        self._check(readable=True)
        kind, payload = self._take()
        return pickle.loads(payload)

    def recv_bytes(self, maxlength=None):
        self._check(readable=True)
        if maxlength is not None and maxlength < 0:
            raise ValueError("negative maxlength")
        kind, payload = self._take()
        if maxlength is not None and len(payload) > maxlength:
            self.close()
            raise OSError("bad message length")
        return payload

    def recv_bytes_into(self, buf, offset=0):
        self._check(readable=True)
        view = memoryview(buf).cast("B")
        if offset < 0 or offset > len(view):
            raise ValueError("negative offset" if offset < 0 else "offset too large")
        kind, payload = self._take()
        if len(payload) > len(view) - offset:
            raise BufferTooShort(payload)
        view[offset : offset + len(payload)] = payload
        return len(payload)

    def poll(self, timeout=0.0):
        """Whether there is something to receive (or the other end closed), waiting up to ``timeout``."""
        self._check(readable=True)
        return self._next(timeout) is not None

    def close(self):
        """Closes this end; once the other end has read what was sent, it gets EOFError."""
        if not self._closed:
            self._closed = True
            if self._send is not None:
                try:
                    self._session().op(self._send, "close_writing")
                except Exception:  # noqa: BLE001 - the program is over: nothing to tell
                    pass

    def fileno(self):
        raise OSError("a Volley pipe has no file descriptor (it lives on the platform)")

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.close()


class _Ends(Shared):
    pass


def Pipe(duplex=True):  # noqa: N802 - the standard library's name
    """``(conn1, conn2)``: with ``duplex`` both ends send and receive; else conn1 only receives and conn2 only sends."""
    ends = _Ends()
    ends._make({"type": "queue", "maxsize": 0})
    first_to_second = ends._id
    if not duplex:
        return Connection(ends._ref, first_to_second, None), Connection(ends._ref, None, first_to_second)
    second_to_first = ends._session.create({"type": "queue", "maxsize": 0})
    return (
        Connection(ends._ref, second_to_first, first_to_second),
        Connection(ends._ref, first_to_second, second_to_first),
    )
