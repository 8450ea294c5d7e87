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

import importlib

# Loaded when first used (PEP 562): a worker's fork server imports the package
# for its worker modules alone, and each fork copies the page tables of what
# it imported, so that the client's parts (the native client, the executor)
# stay out of it.
_EXPORTS = {
    "SessionEnded": ".errors",
    "VolleyError": ".errors",
    "WorkerError": ".errors",
    "WorkerLost": ".errors",
    "Storage": ".storage",
    "ALL_COMPLETED": ".executor",
    "ALWAYS": ".executor",
    "ANY_COMPLETED": ".executor",
    "FIRST_COMPLETED": ".executor",
    "Executor": ".executor",
    "Future": ".executor",
    "burst": ".executor",
    "default_executor": ".executor",
    "wait": ".executor",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'volley' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
