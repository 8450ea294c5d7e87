"""A pack process of Python workers: what the invoker starts (``python -m
volley._pack``). The pack runtime is Volley's own (Rust); it forks this
interpreter's fork server for the workers (``volley._forkserver``)."""

from volley import _native

if __name__ == "__main__":
    _native.serve_pack()
