"""The fork server of a pack's Python workers.

The pack's supervisor (Rust, the pack process) starts one per process and
writes requests to its standard input: ``load`` a pickled function (it is
unpickled here, once, so the modules it imports are imported once), then
``spawn`` a worker of it. A worker is a fork of this process: it shares the
imported modules copy-on-write and starts in a millisecond. It connects back
to the supervisor's socket, introduced by the token it was given, and runs.
Before its first request it imports cloudpickle (which rebuilds every
function that travels by value) and the modules the invoker preloads
(``--python-preload``, numpy by default) and says it is ready the same way:
a warm pack process has them loaded before any worker needs them.
The connection it says so on stays open: on it the fork server reports how
each worker's process exited (its exit code, or minus the signal that
killed it), so the supervisor names why a worker ended without a result.

Requests are ``u32 length | JSON header`` and, for ``load``, the pickle's bytes.
"""

import gc
import importlib
import json
import os
import pickle
import signal
import struct
import sys

from . import _arena, _wire, _worker


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


def _preload(names):
    """Imports the modules the invoker preloads (those not installed are skipped):
    a worker's function that imports them finds them loaded."""
    for name in filter(None, (n.strip() for n in names.split(","))):
        try:
            importlib.import_module(name)
        except ImportError:
            pass
        except Exception as e:  # noqa: BLE001 - a module that fails to import is the function's to report
            print(f"volley: preloading {name} failed: {type(e).__name__}: {e}", file=sys.stderr)


def main(socket_name, ready_token, arena_fd="-"):
    # The supervisor listens in Linux's abstract namespace.
    socket_path = "\0" + socket_name
    if arena_fd != "-":
        # The pack's shared memory for large messages: every worker forked here inherits it.
        _arena.attach(int(arena_fd))
    # cloudpickle rebuilds every function that travels by value (a script's, a lambda).
    _preload("cloudpickle," + os.environ.get("VOLLEY_PYTHON_PRELOAD", ""))
    gc.freeze()
    # Ready: the supervisor waits for this before its pack process counts as started.
    reports = _worker.connect(socket_path, ready_token, -1)
    # Workers are reaped here, between requests, and their exits reported.
    workers = {}
    signal.signal(signal.SIGCHLD, lambda *_: _reap(workers, reports))
    functions = {}
    stdin = sys.stdin.buffer
    for header, blob in _requests(stdin):
        if "load" in header:
            functions[header["load"]] = _load(blob, header.get("python"))
            # What is loaded now is never collected here: the workers' garbage
            # collections leave it alone, so its pages stay shared with them.
            gc.freeze()
            continue
        function = functions.get(header["spawn"])
        # A worker that exits at once is reaped only once it is known by its token.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        pid = os.fork()
        if pid == 0:
            _child(socket_path, header, function, reports)
        workers[pid] = header["token"]
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    # The supervisor went away: its pack is over.


_reaping = {"now": False, "again": False}


def _reap(workers, reports):
    """Reports the exit of every worker that has exited (the SIGCHLD handler).
    A signal during a report runs the handler inside it: that call only asks
    the outer one to look again, so that frames on ``reports`` never interleave."""
    if _reaping["now"]:
        _reaping["again"] = True
        return
    _reaping["now"] = True
    try:
        while True:
            _reaping["again"] = False
            _report_exited(workers, reports)
            if not _reaping["again"]:
                return
    finally:
        _reaping["now"] = False


def _report_exited(workers, reports):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        token = workers.pop(pid, None)
        if token is not None:
            try:
                _wire.send(reports, {"exit": token, "code": os.waitstatus_to_exitcode(status)})
            except OSError:
                pass  # the supervisor is gone: the pack is over


def _child(socket_path, header, function, reports):
    code = 0
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        reports.close()
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
    return _wire.recv(sock)


if __name__ == "__main__":
    main(*sys.argv[1:4])
