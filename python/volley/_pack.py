"""A pack process of Python workers: what the invoker starts (``python -m
volley._pack``). The pack runtime is Volley's own (Rust); it forks this
interpreter's fork server for the workers (``volley._forkserver``)."""

import sys

from volley import _native

if __name__ == "__main__":
    # Started for Python workers: the fork server starts now, so that a warm
    # process has Python ready when its pack comes.
    _native.serve_pack("--python-workers" in sys.argv)
