"""``import volley.multiprocessing as multiprocessing``: the standard library's
``multiprocessing`` API, run on Volley.

Built so far: ``Pool`` (``map``, ``map_async``, ``imap``, ``imap_unordered``,
``starmap``, ``starmap_async``, ``apply``, ``apply_async``, ``initializer`` /
``initargs``, ``close``, ``terminate``, ``join``, the context manager),
``AsyncResult``, ``cpu_count``, ``current_process``, and the errors the
standard library raises for misuse. A pool's calls run as bursts of Python
workers (a forked process each, packed ``granularity`` to a pack process); an
exception a call raises is raised again here, as itself.

Not yet: ``Process``, ``Queue``, ``Pipe``, the locks, ``Value``, ``Array``,
``Manager``.
"""

import itertools
import os
import threading

from .pool import AsyncResult, Pool, TimeoutError  # noqa: A004 - the standard library's name

__all__ = ["AsyncResult", "Pool", "TimeoutError", "cpu_count", "current_process"]


def cpu_count():
    """The CPUs of this machine (what the standard library says); a pool may have more workers."""
    return os.cpu_count() or 1


class _CurrentProcess:
    """The calling process, as ``multiprocessing.current_process()`` describes it."""

    _ids = itertools.count(1)

    def __init__(self):
        self.name = "MainProcess" if threading.current_thread() is threading.main_thread() else "Process"
        self.pid = os.getpid()
        self.daemon = False

    @property
    def ident(self):
        return self.pid


def current_process():
    return _CurrentProcess()
