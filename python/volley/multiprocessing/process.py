"""``Process``: a process of the program that runs on the platform, as a
burst of one Python worker in the program's session. What it prints goes to
this process's output; its exit code is the standard library's (0, 1 after
an exception, whatever it passed to ``sys.exit``, -15 once terminated, -9
once killed); when the program exits it waits for its non-daemon processes
and ends its daemon ones, as the standard library does; if it dies, the
platform cancels them when its session's lease runs out."""

import atexit
import itertools
import os
import signal
import sys
import threading
import time
import traceback

from .. import _session
from ..errors import VolleyError, WorkerLost
from ..executor import _ship_module_of, default_executor
from ._shared import LIFETIME_SECS

_counter = itertools.count(1)
# How long ``Process.pid`` waits for a started process to run (it may wait for a free slot).
PID_WAIT_SECS = 60.0
_children = []
_children_lock = threading.Lock()
_exit_registered = False

# The process running here: this program's main process, or the Process a worker runs.
_current = None


class _MainProcess:
    name = "MainProcess"
    daemon = False
    _identity = ()

    @property
    def pid(self):
        return os.getpid()

    ident = pid

    def is_alive(self):
        return True

    def __repr__(self):
        return f"<_MainProcess name={self.name!r} parent=None started>"


def current_process():
    return _current if _current is not None else _MAIN


def parent_process():
    return _MAIN if _current is not None else None


def active_children():
    with _children_lock:
        alive = [p for p in _children if p.is_alive()]
        _children[:] = [p for p in _children if p._future is not None and p.exitcode is None]
    return alive


_MAIN = _MainProcess()


def _run(process):
    """In the worker: runs the process and says its exit code, as the standard library's child would."""
    global _current
    _current = process
    process._started_here = True
    if process._pid_box is not None:
        # The program's `p.pid`, known while the process runs.
        _session.of(_session.attached()).op(process._pid_box, "put", item=_session.dumps(os.getpid()))
    try:
        process.run()
        code = 0
    except SystemExit as e:
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code
        else:
            sys.stderr.write(str(e.code) + "\n")
            code = 1
    except BaseException:  # noqa: BLE001 - what a child process prints and exits with
        sys.stderr.write(f"Process {process.name}:\n")
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return code, os.getpid()


class Process:
    """``Process(target=None, name=None, args=(), kwargs={}, *, daemon=None)``:
    ``start()`` runs ``target(*args, **kwargs)`` (or the ``run()`` of a subclass)
    on the platform."""

    def __init__(self, group=None, target=None, name=None, args=(), kwargs=None, *, daemon=None):
        assert group is None, "group argument must be None for now"
        count = next(_counter)
        self._identity = (count,)
        self._target, self._args, self._kwargs = target, tuple(args), dict(kwargs or {})
        self._name = name or f"Process-{count}"
        self._daemon = current_process().daemon if daemon is None else daemon
        self._future = None
        self._exitcode = None
        self._pid = None
        self._closed = False
        self._ended_by = None
        # The session queue the worker puts its pid in once it runs.
        self._pid_box = None

    def __getstate__(self):
        state = dict(self.__dict__)
        for runtime in ("_future", "_exitcode", "_pid", "_closed", "_ended_by"):
            state.pop(runtime, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__dict__.update(_future=None, _exitcode=None, _pid=None, _closed=False, _ended_by=None)

    def run(self):
        if self._target:
            self._target(*self._args, **self._kwargs)

    def _check_closed(self):
        if self._closed:
            raise ValueError("process object is closed")

    def start(self):
        self._check_closed()
        assert self._future is None, "cannot start a process twice"
        if _session.attached() is not None:
            raise VolleyError("a Volley worker cannot start processes of its own; start them from the program")
        executor = default_executor()
        # A target (or a subclass) from the user's own modules travels by value.
        for code in (type(self), self._target):
            if code is not None:
                _ship_module_of(code)
        program = executor.program()  # opened first: its end, at exit, comes after the processes are waited for
        _exit_when_the_program_does()
        self._pid_box = program.session.create({"type": "queue", "maxsize": 1})
        # As long as the program runs (its session bounds it), not a burst's default 300 s.
        self._future = executor.call_async(_run, (self,), granularity=1, timeout=LIFETIME_SECS, in_session=True)
        with _children_lock:
            _children.append(self)

    def _outcome(self, timeout):
        """The exit code once the process ended (None if it has not within ``timeout``)."""
        if self._exitcode is not None:
            return self._exitcode
        if self._future is None:
            return None
        if timeout is not None and not self._future._burst.done():
            deadline = time.monotonic() + timeout
            while not self._future._burst.done():
                if time.monotonic() >= deadline:
                    return None
                time.sleep(min(0.02, max(deadline - time.monotonic(), 0)))
        try:
            code, self._pid = self._future.result()
        except WorkerLost as e:  # os._exit, a crash: the code or signal its process ended with
            code = self._ended_by or (1 if e.exit_code is None else e.exit_code)
        except Exception as e:  # noqa: BLE001 - the platform ended it: say how
            code = self._ended_by or (1 if "cancelled" not in str(e) else -signal.SIGTERM)
        # Its output is written here before join returns.
        default_executor().program().printed()
        self._exitcode = code
        self._drop_pid_box()
        return code

    def _drop_pid_box(self):
        """Deletes the pid's queue, taking the pid from it first if it is not known
        (a process that ended without returning did not say it otherwise)."""
        box, self._pid_box = self._pid_box, None
        if box is None:
            return
        session = default_executor().program().session
        try:
            if self._pid is None:
                items = session.op(box, "get").get("items")
                self._pid = _session.loads(items[0]) if items else None
            session.op(box, "drop")
        except VolleyError:
            pass  # the program's session ended: its objects are gone already

    def _wait_for_pid(self):
        """The worker's pid, once it runs (None if it has not started within ``PID_WAIT_SECS``)."""
        session = default_executor().program().session
        deadline = time.monotonic() + PID_WAIT_SECS
        while self._pid is None and self._pid_box is not None and time.monotonic() < deadline:
            try:
                reply = session.op(self._pid_box, "get", wait=1.0)
            except VolleyError:
                return self._pid
            if reply.get("items"):
                self._pid = _session.loads(reply["items"][0])
                self._drop_pid_box()
            elif self._future._burst.done():
                self._outcome(0)
        return self._pid

    def join(self, timeout=None):
        self._check_closed()
        assert self._future is not None, "can only join a started process"
        self._outcome(timeout)

    def is_alive(self):
        self._check_closed()
        if self._future is None or self._exitcode is not None:
            return False
        return not self._future._burst.done()

    def _end(self, signum):
        self._check_closed()
        if self._future is not None and self._exitcode is None and not self._future._burst.done():
            self._ended_by = -signum
            try:
                self._future.cancel()
            except Exception:  # noqa: BLE001 - it ended meanwhile
                pass

    def terminate(self):
        self._end(signal.SIGTERM)

    def kill(self):
        self._end(signal.SIGKILL)

    def close(self):
        if self._future is not None and self._exitcode is None and self.is_alive():
            raise ValueError("Cannot close a process while it is still running. You should first call join() or terminate().")
        self._closed = True

    @property
    def exitcode(self):
        self._check_closed()
        if self._future is None:
            return None
        return self._outcome(0) if self._future._burst.done() else None

    @property
    def name(self):
        return self._name

    @name.setter
    def name(self, name):
        assert isinstance(name, str), "name must be a string"
        self._name = name

    @property
    def daemon(self):
        return self._daemon

    @daemon.setter
    def daemon(self, daemonic):
        assert self._future is None, "process has already started"
        self._daemon = daemonic

    @property
    def pid(self):
        """The worker process's id on its invoker's machine (None before ``start``);
        read before the process runs, it waits for that (up to ``PID_WAIT_SECS``)."""
        if getattr(self, "_started_here", False):
            return os.getpid()
        if self._pid is None and self._future is not None:
            return self._wait_for_pid()
        return self._pid

    ident = pid

    @property
    def authkey(self):
        return b""

    def __repr__(self):
        if self._future is None:
            status = "initial"
        elif self._exitcode is not None or self._future._burst.done():
            status = f"stopped exitcode={self.exitcode}"
        else:
            status = "started"
        return f"<{type(self).__name__} name={self._name!r} {status}{' daemon' if self._daemon else ''}>"


def _exit_when_the_program_does():
    global _exit_registered
    with _children_lock:
        if _exit_registered:
            return
        _exit_registered = True
    atexit.register(_exit_function)


def _exit_function():
    """At the program's exit: daemon processes are ended, the others waited for."""
    with _children_lock:
        children = list(_children)
    for p in children:
        if p.daemon and p.is_alive():
            p.terminate()
    for p in children:
        if not p.daemon:
            p.join()
