"""The function ``volley bench python`` starts workers of: it says when it ran.
A module of its own, importing nothing: the start measured is the platform's,
not the import of the benchmark's own modules (argparse, statistics,
multiprocessing) by every pack."""

import time


def started_at(w):
    return time.time()
