"""Volley for Python: run functions on bursts of workers that start together,
know their rank, and talk directly.

    import volley
    ex = volley.Executor()                 # an embedded platform for this process
    futures = ex.map(lambda x: x * x, range(10), granularity=4)
    print(ex.get_result(futures))

    def ring(w):                            # a burst: every worker gets its worker
        w.comm.send(w.rank, (w.rank + 1) % w.size)
        return w.comm.recv((w.rank - 1) % w.size)
    print(volley.burst(ring, workers=4))
"""

from .errors import SessionEnded, VolleyError, WorkerError
from .storage import Storage
from .executor import (
    ALL_COMPLETED,
    ALWAYS,
    ANY_COMPLETED,
    FIRST_COMPLETED,
    Executor,
    Future,
    burst,
    default_executor,
    wait,
)

__all__ = [
    "ALL_COMPLETED",
    "ALWAYS",
    "ANY_COMPLETED",
    "FIRST_COMPLETED",
    "Executor",
    "SessionEnded",
    "Storage",
    "Future",
    "VolleyError",
    "WorkerError",
    "burst",
    "default_executor",
    "wait",
]
