"""``import volley.multiprocessing as multiprocessing``: the standard library's
``multiprocessing`` API, run on Volley, for unmodified programs.

- ``Pool``: each map is a burst of Python workers (a forked process each,
  packed to a pack process), so a pool's calls run on a platform of many
  machines;
- ``Process``: a burst of one worker; what it prints is printed here;
- ``Queue``, ``JoinableQueue``, ``SimpleQueue``, ``Pipe``, ``Lock``,
  ``RLock``, ``Semaphore``, ``BoundedSemaphore``, ``Event``, ``Condition``,
  ``Barrier``, ``Value``, ``Array``, ``Manager`` (dict, list, Namespace):
  objects of the program's session on the controller (no Redis to run),
  deleted when the program ends, or when it dies and stops renewing its
  session (the processes it started are then cancelled too).

Their semantics and errors are the standard library's (tests check each
against it). What differs: a process's ``pid`` is known once it has ended;
a process that ends without returning (``os._exit``, a crash) has exit code
1; ``Value(...).get_obj()`` is the shared value's wrapper, not a ctypes
object; there is no ``fileno`` for a pipe (nothing to ``select`` on).
"""

import multiprocessing as _std
import os

from .managers import Manager, SyncManager
from .pool import AsyncResult, Pool, TimeoutError  # noqa: A004 - the standard library's name
from .process import Process, active_children, current_process, parent_process
from .queues import JoinableQueue, Pipe, Queue, SimpleQueue
from .sharedctypes import Array, RawArray, RawValue, Value
from .synchronize import Barrier, BoundedSemaphore, BrokenBarrierError, Condition, Event, Lock, RLock, Semaphore

ProcessError = _std.ProcessError
BufferTooShort = _std.BufferTooShort
AuthenticationError = _std.AuthenticationError
get_logger = _std.get_logger
log_to_stderr = _std.log_to_stderr

__all__ = [
    "Array", "AsyncResult", "AuthenticationError", "Barrier", "BoundedSemaphore", "BrokenBarrierError",
    "BufferTooShort", "Condition", "Event", "JoinableQueue", "Lock", "Manager", "Pipe", "Pool", "Process",
    "ProcessError", "Queue", "RLock", "RawArray", "RawValue", "Semaphore", "SimpleQueue", "SyncManager",
    "TimeoutError", "Value", "active_children", "cpu_count", "current_process", "freeze_support",
    "get_all_start_methods", "get_context", "get_logger", "get_start_method", "log_to_stderr",
    "parent_process", "set_start_method",
]  # fmt: skip

_START_METHODS = ["fork", "spawn", "forkserver"]
_start_method = None


def cpu_count():
    """The CPUs of this machine (what the standard library says); a pool may have more workers."""
    return os.cpu_count() or 1


def freeze_support():
    pass


def get_all_start_methods():
    return list(_START_METHODS)


def set_start_method(method, force=False):
    """Accepted for compatibility: Volley's workers always start as forks of a warm interpreter on the platform."""
    global _start_method
    if _start_method is not None and not force:
        raise RuntimeError("context has already been set")
    if method is not None and method not in _START_METHODS:
        raise ValueError(f"cannot find context for {method!r}")
    _start_method = method


def get_start_method(allow_none=False):
    if _start_method is None and not allow_none:
        return "fork"
    return _start_method


def get_context(method=None):
    """This module: one context, whatever the start method asked for."""
    if method is not None and method not in _START_METHODS:
        raise ValueError(f"cannot find context for {method!r}")
    import sys

    return sys.modules[__name__]
