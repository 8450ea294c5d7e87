"""Locks, semaphores, events, conditions and barriers of a program, shared by
all its processes: objects of its session on the controller, with the
standard library's semantics and errors."""

import threading
import time

from .. import _session
from ._shared import Shared

BrokenBarrierError = threading.BrokenBarrierError


def _not_acquired(reply):
    return not reply.get("flag")


def _timeout_of(block, timeout):
    """The standard library's rule: not blocking is a zero timeout; a negative one is none."""
    if not block:
        return 0.0
    if timeout is not None and timeout < 0:
        return 0.0
    return timeout


class _SemLock(Shared):
    """What a process-shared lock or semaphore does: acquire, release, the context manager."""

    _misuse = ValueError

    def acquire(self, block=True, timeout=None):
        reply = self._blocking("acquire", _timeout_of(block, timeout), _not_acquired, owner=_session.owner())
        return reply["flag"]

    def release(self):
        reply = self._op("release", owner=_session.owner())
        if reply["reply"] == "refused":
            raise self._misuse(reply["reason"])

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *args):
        self.release()

    def _is_mine(self):
        return self._op("owned", owner=_session.owner())["flag"]


class Lock(_SemLock):
    """A lock any process of the program may release (as the standard library's)."""

    def __init__(self, *, ctx=None):
        self._make({"type": "semaphore", "value": 1, "max": 1})

    def __repr__(self):
        return f"<Lock(owner={'SomeOtherProcess' if self._op('value')['count'] == 0 else 'None'})>"


class RLock(_SemLock):
    """A lock its holder (a thread of a process) may take again; only it may release it."""

    _misuse = AssertionError

    def __init__(self, *, ctx=None):
        self._make({"type": "recursive_lock"})

    def __repr__(self):
        return f"<RLock(count={self._op('value')['count']})>"


class Semaphore(_SemLock):
    def __init__(self, value=1, *, ctx=None):
        if value < 0:
            # What the standard library's semaphore says (sem_init's error).
            raise OSError(22, "Invalid argument")
        self._make(self._kind(value))

    def _kind(self, value):
        return {"type": "semaphore", "value": value, "max": None}

    def get_value(self):
        return self._op("value")["count"]

    def __repr__(self):
        return f"<{type(self).__name__}(value={self.get_value()})>"


class BoundedSemaphore(Semaphore):
    """A semaphore released no more times than acquired (else ValueError)."""

    def _kind(self, value):
        return {"type": "semaphore", "value": value, "max": value}


class Event(Shared):
    def __init__(self, *, ctx=None):
        self._make({"type": "event"})

    def is_set(self):
        return self._op("is_set")["flag"]

    def set(self):
        self._op("set")

    def clear(self):
        self._op("clear")

    def wait(self, timeout=None):
        """True once set; False if ``timeout`` seconds pass first."""
        if timeout is not None and timeout < 0:
            timeout = 0.0
        return self._blocking("is_set", timeout, _not_acquired)["flag"]


class Condition(Shared):
    """A condition variable over ``lock`` (a new RLock if None) of the same program."""

    def __init__(self, lock=None, *, ctx=None):
        self._lock = lock if lock is not None else RLock()
        self._ref = self._lock._ref
        self._id = self._session.create({"type": "condition", "lock": self._lock._id})
        self.acquire = self._lock.acquire
        self.release = self._lock.release

    def __getstate__(self):
        return {"_lock": self._lock, "_ref": self._ref, "_id": self._id}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.acquire = self._lock.acquire
        self.release = self._lock.release

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *args):
        return self._lock.__exit__(*args)

    def wait(self, timeout=None):
        reply = self._op("wait", owner=_session.owner())
        if reply["reply"] == "refused":
            raise AssertionError(reply["reason"])
        ticket, levels = reply["ticket"], reply["levels"]
        try:
            notified = self._blocking("notified", timeout, _not_acquired, ticket=ticket)["flag"]
            if not notified:
                # Timed out; a notify that came meanwhile still counts.
                notified = self._op("forget", ticket=ticket)["flag"]
        finally:
            for _ in range(levels):
                self._lock.acquire()
        return notified

    def wait_for(self, predicate, timeout=None):
        result = predicate()
        if result:
            return result
        endtime = None if timeout is None else time.monotonic() + timeout
        waittime = timeout
        while not result:
            if endtime is not None:
                waittime = endtime - time.monotonic()
                if waittime <= 0:
                    break
            self.wait(waittime)
            result = predicate()
        return result

    def notify(self, n=1):
        reply = self._op("notify", owner=_session.owner(), n=n)
        if reply["reply"] == "refused":
            raise AssertionError(reply["reason"])

    def notify_all(self):
        reply = self._op("notify", owner=_session.owner(), n=None)
        if reply["reply"] == "refused":
            raise AssertionError(reply["reason"])


def _still_waiting(reply):
    return reply.get("state") == "waiting"


class Barrier(Shared):
    """``parties`` processes wait for each other; ``action`` runs in the last to arrive."""

    def __init__(self, parties, action=None, timeout=None, *, ctx=None):
        if parties < 1:
            raise ValueError("parties must be > 0")
        self._parties, self._action, self._timeout = parties, action, timeout
        self._make({"type": "barrier", "parties": parties, "action": action is not None})

    def wait(self, timeout=None):
        if timeout is None:
            timeout = self._timeout
        # Arriving waits only while the previous generation's action runs.
        arrived = self._blocking("arrive", None, lambda r: r["reply"] != "arrived")
        index, generation, state = arrived["index"], arrived["generation"], arrived["state"]
        if state == "run_action":
            try:
                self._action()
            except BaseException:
                self._op("pass", generation=generation, ok=False)
                raise
            self._op("pass", generation=generation, ok=True)
            return index
        if state == "waiting":
            state = self._blocking("passed", timeout, _still_waiting, generation=generation)["state"]
            if state == "waiting":
                # The standard library breaks a barrier whose wait timed out.
                self.abort()
                raise BrokenBarrierError
        if state == "broken":
            raise BrokenBarrierError
        return index

    def reset(self):
        self._op("reset")

    def abort(self):
        self._op("abort")

    @property
    def parties(self):
        return self._parties

    @property
    def n_waiting(self):
        return self._op("barrier_state")["waiting"]

    @property
    def broken(self):
        return self._op("barrier_state")["state"] == "broken"
