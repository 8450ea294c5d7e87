"""A program's session: the controller-side home of its shared objects
(``volley.multiprocessing``'s queues, locks, values), and where its workers'
printing goes.

The program (an ``Executor``) opens the session and renews it from a thread;
when the program ends the session is ended, and when it dies the lease runs
out: either way the controller deletes the objects and cancels the bursts
started in the session. Objects travel to workers as ``(session, object)``
references: a worker reaches the session with its token, as the program does.
"""

import atexit
import base64
import io
import json
import os
import pickle
import socket
import sys
import threading
import time

import cloudpickle

from . import _native
from .errors import SessionEnded

# The longest one blocking request waits; a longer wait asks again.
STEP = 20.0

_sessions = {}
_sessions_lock = threading.Lock()


class Session:
    """One program session, as this process reaches it."""

    def __init__(self, ref):
        self.ref = ref
        # A worker in a pack finds the CA the invoker trusts in VOLLEY_CA_FILE.
        self._native = _native.Session(ref["url"], ref["id"], ref["token"], os.environ.get("VOLLEY_CA_FILE") or None)

    def op(self, obj, op, wait=None, **fields):
        request = {"op": dict(fields, type=op)}
        if obj is not None:
            request["object"] = obj
        if wait:
            request["wait_secs"] = max(float(wait), 0.0)
        try:
            return json.loads(self._native.op(json.dumps(request)))
        except _native.SessionEnded as e:
            raise SessionEnded(f"{e}. Objects of volley.multiprocessing live only while their program runs") from None

    def create(self, kind):
        return self.op(None, "create", kind=kind)["object"]

    def blocking(self, obj, op, timeout, pending, **fields):
        """Repeats ``op`` until ``pending(reply)`` is false or ``timeout``
        seconds pass (None: no limit; 0: asks once, without waiting)."""
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        while True:
            left = STEP if deadline is None else min(STEP, max(deadline - time.monotonic(), 0.0))
            reply = self.op(obj, op, wait=left, **fields)
            if not pending(reply) or (deadline is not None and time.monotonic() >= deadline):
                return reply


def of(ref):
    """The session ``ref`` names, reached once per process."""
    key = (ref["url"], ref["id"], os.getpid())
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = _sessions[key] = Session(ref)
        return session


def owner():
    """This thread of this process, as a lock's holder."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def encode(data):
    return base64.b64encode(data).decode()


def decode(text):
    return base64.b64decode(text)


def dumps(obj):
    """Pickled as functions travel: a function of the program's own ``__main__`` by value."""
    return encode(cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def loads(text):
    return pickle.loads(decode(text))


class Program:
    """The session of a program, opened by its executor: renewed while the
    program runs, ended when it ends; it prints what its workers print."""

    def __init__(self, client, url, lease):
        opened = json.loads(client.open_session(lease))
        ref = {"url": url, "id": opened["id"], "token": opened["token"]}
        self.session = Session(ref)
        ref["output"] = self.session.create({"type": "queue", "maxsize": 0})
        self.ref = ref
        self._ended = threading.Event()
        self._printed = {}
        self._printed_lock = threading.Lock()
        # Ended when the program exits (after its processes are waited for:
        # volley.multiprocessing registers that later, so it runs first).
        atexit.register(self.end)
        self._threads = [
            threading.Thread(target=self._renew, args=(lease / 3,), name="volley-session-renew", daemon=True),
            threading.Thread(target=self._print, name="volley-session-output", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _renew(self, every):
        while not self._ended.wait(every):
            try:
                self.session._native.renew()
            except Exception:  # noqa: BLE001 - ended: nothing left to renew
                return

    def _print(self):
        """Writes what workers print here, in the order they printed it."""
        while not self._ended.is_set():
            try:
                reply = self.session.op(self.ref["output"], "get_many", wait=STEP, max=256)
            except Exception:  # noqa: BLE001 - the session ended
                return
            for item in reply.get("items", ()):
                stream, text = loads(item)
                if stream == "mark":
                    with self._printed_lock:
                        self._printed.pop(text, threading.Event()).set()
                    continue
                target = sys.stderr if stream == "stderr" else sys.stdout
                try:
                    target.write(text)
                    target.flush()
                except Exception:  # noqa: BLE001 - our own output is closed: drop theirs
                    pass

    def own(self, thread):
        """Starts ``thread`` (one that waits on the platform), to be waited for when the program ends."""
        self._threads.append(thread)
        thread.start()

    def printed(self, timeout=30.0):
        """Returns once everything workers printed before now has been written here."""
        if self._ended.is_set():
            return
        mark = f"{os.getpid()}-{time.monotonic_ns()}"
        done = threading.Event()
        with self._printed_lock:
            self._printed[mark] = done
        try:
            self.session.op(self.ref["output"], "put", item=dumps(("mark", mark)))
        except SessionEnded:
            return
        done.wait(timeout)

    def end(self):
        if self._ended.is_set():
            return
        self.printed(timeout=5.0)
        self._ended.set()
        try:
            self.session._native.end()
        except Exception:  # noqa: BLE001 - ended already (lease ran out)
            pass
        # The threads' blocked requests return now (the session's end wakes
        # them): wait for them, as a thread still in native code when the
        # interpreter shuts down would abort the process.
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(10)


class _Forward(io.TextIOBase):
    """A worker's ``sys.stdout``/``sys.stderr``: each line goes to its program's output."""

    def __init__(self, session, output, stream):
        self._session, self._output, self._stream, self._buffer = session, output, stream, []

    def writable(self):
        return True

    def write(self, text):
        self._buffer.append(text)
        if "\n" in text:
            self.flush()
        return len(text)

    def flush(self):
        if self._buffer:
            text, self._buffer = "".join(self._buffer), []
            try:
                self._session.op(self._output, "put", item=dumps((self._stream, text)))
            except Exception:  # noqa: BLE001 - the program is gone: nobody to print for
                pass


_attached = None


def attached():
    """The session of the program this worker runs for (None outside workers)."""
    return _attached


def attach_worker(ref):
    """In a worker of a program's session: print to the program."""
    global _attached
    _attached = ref
    session = of(ref)
    sys.stdout = _Forward(session, ref["output"], "stdout")
    sys.stderr = _Forward(session, ref["output"], "stderr")


_at_worker_end = []


def at_worker_end(callback):
    """Runs ``callback()`` when this worker's function returns (as a process's exit closes its files)."""
    _at_worker_end.append(callback)


def flush_worker():
    while _at_worker_end:
        try:
            _at_worker_end.pop()()
        except Exception:  # noqa: BLE001 - the program is gone: nothing to close
            pass
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, _Forward):
            stream.flush()
