"""The fork server of a pack's Python workers.

The pack's supervisor (Rust, the pack process) starts one per process and
writes requests to its standard input: ``load`` a pickled function (it is
unpickled here, once, so the modules it imports are imported once), then
``spawn`` a worker of it. A worker is a fork of this process: it shares the
imported modules copy-on-write and starts in a millisecond. It connects back
to the supervisor's socket, introduced by the token it was given, and runs.

Requests are ``u32 length | JSON header`` and, for ``load``, the pickle's bytes.
"""

import json
import os
import pickle
import signal
import struct
import sys

from . import _worker


def _read_exactly(stream, n):
    data = stream.read(n)
    if data is None or len(data) < n:
        raise EOFError
    return data


def _requests(stream):
    while True:
        try:
            (size,) = struct.unpack("<I", _read_exactly(stream, 4))
            header = json.loads(_read_exactly(stream, size))
            blob = _read_exactly(stream, header["size"]) if header.get("size") else b""
        except EOFError:
            return
        yield header, blob


def _load(blob, wanted):
    """The function a pickle holds, or the exception that says why it cannot run here."""
    mine = _worker.python_version()
    if wanted != mine:
        return RuntimeError(
            f"the function was pickled by Python {wanted} but this invoker runs Python {mine}: "
            f"run the client with Python {mine}, or give the invoker that Python (volley invoker --python PATH)"
        )
    try:
        return pickle.loads(blob)
    except Exception as e:  # noqa: BLE001 - reported to each worker of it
        return RuntimeError(f"the function could not be unpickled here ({type(e).__name__}: {e})")


def main(socket_name):
    # The supervisor listens in Linux's abstract namespace.
    socket_path = "\0" + socket_name
    # Workers are reaped by the kernel: their ends are seen by the supervisor on their sockets.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    functions = {}
    stdin = sys.stdin.buffer
    for header, blob in _requests(stdin):
        if "load" in header:
            functions[header["load"]] = _load(blob, header.get("python"))
            continue
        function = functions.get(header["spawn"])
        if os.fork() == 0:
            _child(socket_path, header, function)
    # The supervisor went away: its pack is over.


def _child(socket_path, header, function):
    code = 0
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        sys.stdin.close()
        sock = _worker.connect(socket_path, header["token"], header["rank"])
        hello, parts = _recv_hello(sock)
        if function is None or isinstance(function, BaseException):
            missing = function or RuntimeError("the supervisor asked for a function it never loaded")
            _worker.report_exception(sock, missing)
        else:
            _worker.run(sock, function, hello, parts[0] if parts else None)
    except BaseException:  # noqa: BLE001 - the supervisor sees the socket close and reports it
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _recv_hello(sock):
    from . import _wire

    return _wire.recv(sock)


if __name__ == "__main__":
    main(sys.argv[1])
