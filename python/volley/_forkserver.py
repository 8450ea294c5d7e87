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
A warm one (the invoker told its pack process how many workers to prepare)
also forks that many *spares* before it says so: workers forked ahead,
before their function is known, which take a spawn request with the
function's pickle and unpickle it themselves. A burst's workers then start
without a fork on the clock (forks, and the page copies of a process's first
writes, cost a 16-worker pack about as much as the rest of its start). A
function whose loading here takes a while (it imports modules the spares
lack) is not loaded by each spare: the spares leave and its workers are
forked from here, where its modules are then imported once.
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
import socket
import struct
import sys
import time

from . import _arena, _packages, _wire, _worker


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


def _load_checked(blob, wanted, packages):
    """``_load`` with the client's ``packages`` ({name: version}) held against
    this Python's: a missing one refuses the function; versions that differ
    are said. Also returns the CPU seconds unpickling took (what a spare would pay)."""
    missing = _packages.missing(packages)
    if missing:
        return RuntimeError(
            f"the function needs {', '.join(missing)} (the client's versions), not installed for this "
            f"invoker's Python ({sys.executable}): install them there, or give the invoker a Python that "
            f"has them (volley invoker --python PATH)"
        ), 0.0
    # CPU time, not the clock's: on a busy machine the clock says little of the work.
    started = time.process_time()
    function = _load(blob, wanted)
    took = time.process_time() - started
    differing = _packages.differing(packages)
    if differing:
        differ = f"these packages' versions differ from the client's: {', '.join(differing)}"
        print(f"volley: the function was pickled with other package versions; {differ}", file=sys.stderr)
        if isinstance(function, BaseException):
            function = RuntimeError(f"{function}; {differ}")
    return function, took


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
    # A warm process forks its workers ahead, before it says it is ready.
    spares = _Spares(socket_path, _spares_wanted())
    # Ready: the supervisor waits for this before its pack process counts as started.
    reports = _worker.connect(socket_path, ready_token, -1)
    # Workers are reaped here, between requests, and their exits reported.
    workers = {}
    signal.signal(signal.SIGCHLD, lambda *_: _reap(workers, reports))
    functions = {}
    stdin = sys.stdin.buffer
    for header, blob in _requests(stdin):
        if "load" in header:
            function, took = _load_checked(blob, header.get("python"), header.get("packages") or {})
            functions[header["load"]] = (function, blob, header.get("python"))
            if took > _SPARE_LOAD_SECS:
                # Loading it imported modules that take a while (the spares lack them):
                # imported here once, they are shared by workers forked from here
                # instead of imported again by each spare.
                spares.dismiss()
            # What is loaded now is never collected here: the workers' garbage
            # collections leave it alone, so its pages stay shared with them.
            gc.freeze()
            continue
        function, blob, python = functions.get(header["spawn"], (None, b"", None))
        # A worker that exits at once is reaped only once it is known by its token.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        # A function that cannot run here is reported by a forked worker, as it is from here.
        pid = spares.hand(header, blob, python, workers) if callable(function) else None
        if pid is None:
            pid = os.fork()
            if pid == 0:
                _child(socket_path, header, function, reports, spares)
            workers[pid] = header["token"]
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    # The supervisor went away: its pack is over (spares see their connections close).


# Most workers forked ahead by one process (more are forked when asked for).
_MOST_SPARES = 64
# A function that takes longer to load (its modules to import) is not loaded
# by each spare: its workers are forked from here once it is loaded. About
# what a fork costs: below it, every spare loading it is still the cheaper.
_SPARE_LOAD_SECS = 0.002


def _spares_wanted():
    """The workers a warm process forks ahead: as many as its pack may have
    (the threads the invoker told it to prepare), none for a cold one, and at
    most ``VOLLEY_PYTHON_SPARES`` (the invoker's environment; 0: none)."""
    try:
        most = int(os.environ.get("VOLLEY_PYTHON_SPARES", _MOST_SPARES))
        return max(min(int(os.environ.get("VOLLEY_PREPARE_WORKERS", "0")), most), 0)
    except ValueError:
        return 0


class _Spares:
    """Workers forked before their function is known: each waits on a
    connection of its own for a spawn request and the function's pickle, then
    unpickles it (with the modules this process has, those preloaded) and runs
    as a worker forked on request does. The fork, and the copies of the pages
    a new process writes first, are then paid while the process is idle, not
    on a burst's clock."""

    def __init__(self, socket_path, count):
        self._idle = []
        for _ in range(count):
            ours, theirs = socket.socketpair()
            try:
                pid = os.fork()
            except OSError as e:  # a process limit: fewer spares, the rest forked when asked for
                print(f"volley: forking workers ahead stopped at {len(self._idle)}: {e}", file=sys.stderr)
                ours.close()
                theirs.close()
                break
            if pid == 0:
                ours.close()
                for _, other in self._idle:
                    other.close()
                _spare(socket_path, theirs)
            theirs.close()
            self._idle.append((pid, ours))

    def hand(self, header, blob, python, workers):
        """The pid of the spare that took the request (recorded in ``workers``), or None if none is left."""
        while self._idle:
            pid, conn = self._idle.pop()
            workers[pid] = header["token"]
            try:
                _wire.send(conn, dict(header, python=python), [blob])
                return pid
            except OSError:
                workers.pop(pid, None)  # it died idle: the next one
            finally:
                conn.close()
        return None

    def close_ends(self):
        """In a forked worker: the idle spares' connections are not its to hold."""
        for _, conn in self._idle:
            conn.close()

    def dismiss(self):
        """The spares leave (their connections close)."""
        for _, conn in self._idle:
            conn.close()
        self._idle.clear()


def _spare(socket_path, conn):
    """A worker forked ahead: waits for its request, then runs it."""
    header = None
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _away_from_stdin()
        header, parts = _wire.recv(conn)
        conn.close()
        function = _load(bytes(parts[0]), header.get("python"))
    except BaseException:  # noqa: BLE001 - not needed (the fork server went away), or its request was cut
        os._exit(0 if header is None else 1)
    _child(socket_path, header, function, None, None)


def _away_from_stdin():
    """Lets go of the supervisor's pipe (fd 0 becomes /dev/null): once the fork
    server is gone, the supervisor's writes must fail, not fill a pipe nobody reads."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)


_reaping = {"now": False, "again": False}


def _reap(workers, reports):
    """Reports the exit of every worker that has exited (the SIGCHLD handler).
    A signal during a report runs the handler inside it: that call only asks
    the outer one to look again, so that frames on ``reports`` never interleave."""
    if _reaping["now"]:
        _reaping["again"] = True
        return
    while True:
        _reaping["now"], _reaping["again"] = True, False
        try:
            _report_exited(workers, reports)
        finally:
            _reaping["now"] = False
        # A signal after the last look but before `now` was cleared asked for another.
        if not _reaping["again"]:
            return


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


def _child(socket_path, header, function, reports, spares):
    code = 0
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        if reports is not None:
            reports.close()
        if spares is not None:
            spares.close_ends()
        _away_from_stdin()
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
