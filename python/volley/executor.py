"""The client: Lithops-shaped futures over Volley's bursts.

``Executor().map(f, items)`` runs one burst with a worker per item (packed
``granularity`` per process); each item's call is a future. ``burst(f,
workers=N)`` runs ``f(worker)`` on N workers that know their rank and talk
through ``worker.comm``. Functions travel with cloudpickle, with the client's
Python version: an invoker running another version refuses them by name.
"""

import atexit
import base64
import json
import os
import pickle
import re
import shutil
import sys
import sysconfig
import tempfile
import threading
import time

import cloudpickle

from . import _native, _packages
from .errors import VolleyError, WorkerError, WorkerLost

ALL_COMPLETED = "ALL_COMPLETED"
FIRST_COMPLETED = "FIRST_COMPLETED"
ANY_COMPLETED = FIRST_COMPLETED
ALWAYS = "ALWAYS"

_FINAL = ("succeeded", "failed", "cancelled")
# How long one wait call to the controller lasts; a longer wait repeats it.
_WAIT_STEP = 10.0


def _python_version():
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _installed():
    """Where installed code lives: a module from elsewhere is the user's own."""
    paths = sysconfig.get_paths()
    return tuple(os.path.realpath(paths[k]) for k in ("purelib", "platlib", "stdlib", "platstdlib") if k in paths)


def _ship_module_of(function):
    """Pickles ``function``'s module by value when it is the user's own (a
    script's module, a test file): a worker could not import it."""
    name = getattr(function, "__module__", None)
    module = sys.modules.get(name) if name else None
    if module is None or name == "__main__" or name.split(".")[0] == "volley":
        return
    path = getattr(module, "__file__", None)
    if path and not os.path.realpath(path).startswith(_installed()):
        cloudpickle.register_pickle_by_value(module)


def _pickled(obj, what):
    if callable(obj):
        _ship_module_of(obj)
    try:
        return base64.b64encode(cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)).decode()
    except Exception as e:
        raise TypeError(f"{what} cannot be pickled: {type(e).__name__}: {e}") from e


def _pickled_function(function):
    """The function pickled, and the versions of the installed packages it refers to."""
    _ship_module_of(function)
    try:
        blob, packages = _packages.dumps(function)
    except Exception as e:
        raise TypeError(f"the function cannot be pickled: {type(e).__name__}: {e}") from e
    return base64.b64encode(blob).decode(), packages


class _Burst:
    """One submitted burst, shared by the futures of its workers."""

    def __init__(self, client, record):
        self._client = client
        self.id = record["id"]
        self._record = record
        self._lock = threading.Lock()

    def record(self, timeout=None):
        """The burst once it has ended (waiting up to ``timeout`` seconds; None: as long as it takes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # The lock is not held while waiting: another thread may ask `done()` meanwhile.
            with self._lock:
                record = self._record
            if record["state"] in _FINAL:
                return record
            left = _WAIT_STEP if deadline is None else min(_WAIT_STEP, deadline - time.monotonic())
            if left <= 0:
                raise TimeoutError(f"burst {self.id} has not ended ({record['state']})")
            self._update(json.loads(self._client.wait(self.id, left)))

    def _update(self, record):
        """Keeps ``record`` unless the one known already is final (a final record is never replaced)."""
        with self._lock:
            if self._record["state"] not in _FINAL:
                self._record = record
            return self._record

    def outcomes(self, rank):
        """The outcomes of worker ``rank``'s calls (a map's), unpickled once."""
        with self._lock:
            cache = self.__dict__.setdefault("_outcomes", {})
            if rank not in cache:
                cache[rank] = pickle.loads(base64.b64decode(self._record["workers"][rank]["result"]["pickle"]))
            return cache[rank]

    def _now(self):
        """The record now: fetched unless it is final already."""
        with self._lock:
            record = self._record
        if record["state"] in _FINAL:
            return record
        return self._update(json.loads(self._client.burst(self.id)))

    def finished_ranks(self):
        """The ranks that have finished, now (the burst fetched if it has not ended)."""
        record = self._now()
        if record["state"] in _FINAL:
            return set(range(len(record["workers"])))
        return {w["rank"] for w in record["workers"] if w.get("finished_at")}

    def done(self):
        return self._now()["state"] in _FINAL

    def cancel(self):
        self._client.cancel(self.id)


class Future:
    """The outcome of one call of a map (``index`` in its worker's calls), or
    of one worker of a burst (``index`` None)."""

    def __init__(self, burst, rank, index=None):
        self._burst = burst
        self.rank = rank
        self.index = index

    @property
    def burst_id(self):
        return self._burst.id

    def done(self):
        return self._burst.done()

    def cancel(self):
        """Cancels the whole burst this call is part of."""
        self._burst.cancel()

    def result(self, timeout=None):
        record = self._burst.record(timeout)
        worker = record["workers"][self.rank]
        result = worker.get("result")
        if record["state"] == "succeeded" and isinstance(result, dict):
            if "pickle" in result and self.index is None:
                return pickle.loads(base64.b64decode(result["pickle"]))
            if "pickle" in result:
                kind, payload = self._burst.outcomes(self.rank)[self.index]
                if kind == "ok":
                    return pickle.loads(payload)
                raise _worker_error(self.rank, payload)
            if "raised" in result:
                raise _worker_error(self.rank, result["raised"])
            if "lost" in result:
                message = f"worker {self.rank} of burst {record['id']}: {result['lost']}"
                raise WorkerLost(message, self.rank, result.get("exit"))
        error = worker.get("error") or record.get("error") or f"the burst {record['state']}"
        if "\n\nRemote traceback" in error:
            message, _, remote = error.partition("\n\nRemote traceback")
            remote = remote.partition(":\n")[2]
            echo = re.match(r"rank (\d+) failed: (.*)", message, re.S)
            if echo and int(echo.group(1)) != self.rank:
                # This worker's collective was aborted by another rank's
                # failure, and its error only echoes it: the cause is that
                # rank's, whichever of the two the burst heard first.
                rank, message = int(echo.group(1)), echo.group(2)
                raise WorkerError(rank, message.split(":", 1)[0], message, remote)
            kind = message.split(":", 1)[0]
            raise WorkerError(self.rank, kind, message, remote)
        raise VolleyError(f"burst {record['id']} {record['state']}: {error}")

    def exception(self, timeout=None):
        try:
            self.result(timeout)
        except (VolleyError, WorkerError) as e:
            return e
        return None


def _calls_pickled(chunks):
    """Each worker's parameters: its calls' argument lists, pickled; the item
    that does not pickle is named by its place in the map."""
    params, first = [], 0
    for chunk in chunks:
        try:
            params.append({"arg": base64.b64encode(cloudpickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL)).decode()})
        except Exception:
            for i, args in enumerate(chunk):
                _pickled(args, f"item {first + i}")
            raise
        first += len(chunk)
    return params


def _worker_error(rank, raised):
    original = None
    blob = raised.get("pickle")
    if blob:
        try:
            original = pickle.loads(blob if isinstance(blob, bytes) else base64.b64decode(blob))
        except Exception:  # noqa: BLE001 - the text says what it was
            original = None
    error = WorkerError(rank, raised.get("type"), raised.get("message"), raised.get("traceback"), original)
    if original is not None:
        error.__cause__ = original
    return error


def _show_progress(futures, stream, timeout, width=30):
    """Draws ``[####......] done/total calls`` on ``stream`` until every future is done (or ``timeout``)."""
    by_burst = {}
    for f in futures:
        by_burst.setdefault(f._burst, []).append(f)
    total = len(futures)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        done = 0
        for burst, members in by_burst.items():
            finished = burst.finished_ranks()
            done += sum(1 for f in members if f.rank in finished)
        filled = width * done // max(total, 1)
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} calls")
        stream.flush()
        if done == total or (deadline is not None and time.monotonic() > deadline):
            stream.write("\n")
            stream.flush()
            return
        time.sleep(0.1)


def wait(futures, return_when=ALL_COMPLETED, timeout=None):
    """``(done, not_done)``: waits until all (or the first of) ``futures`` are done."""
    futures = list(futures)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        done = [f for f in futures if f.done()]
        pending = [f for f in futures if f not in done]
        if return_when == ALWAYS or not pending or (return_when == FIRST_COMPLETED and done):
            return done, pending
        if deadline is not None and time.monotonic() >= deadline:
            return done, pending
        time.sleep(0.01)


class Executor:
    """Runs Python functions on Volley.

    ``controller``: a controller's URL (``VOLLEY_CONTROLLER`` if set); None
    starts an embedded platform for this process, stopped when the executor
    is closed or the process exits. ``granularity``: workers per process
    (``"auto"``: as many as fit). ``ca_file``: the CA that signed an
    ``https://`` controller's certificate (``VOLLEY_CA_FILE`` if set; the
    system's roots are trusted either way)."""

    def __init__(self, controller=None, api_key=None, granularity="auto", transport=None, python=None, slots=None,
                 session_lease=None, ca_file=None):
        controller = controller or os.environ.get("VOLLEY_CONTROLLER")
        api_key = api_key or os.environ.get("VOLLEY_API_KEY")
        ca_file = ca_file or os.environ.get("VOLLEY_CA_FILE") or None
        self._platform = None
        self._dir = None
        if controller is None:
            self._dir = tempfile.mkdtemp(prefix="volley-python-")
            self._platform = _native.Platform(self._dir, python or sys.executable, slots)
            controller = self._platform.url
            atexit.register(self.close)
        self.controller = controller
        self._ca_file = ca_file
        self._client = _native.Client(controller, api_key, ca_file)
        self._granularity = granularity
        self._transport = transport
        self._futures = []
        self._program = None
        self._session_lease = float(session_lease or os.environ.get("VOLLEY_SESSION_LEASE") or 15.0)
        self._program_lock = threading.Lock()

    def program(self):
        """This program's session (opened at first use): the home of its
        ``volley.multiprocessing`` objects, where its workers print, ended
        with the executor; if this process dies it ends ``session_lease``
        seconds later, and the bursts started in it are cancelled."""
        from ._session import Program

        with self._program_lock:
            if self._program is None:
                self._program = Program(self._client, self.controller, self._session_lease)
            return self._program

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Ends the program's session and stops the embedded platform, if this executor started one."""
        if self._program is not None:
            program, self._program = self._program, None
            program.end()
        if self._platform is not None:
            platform, self._platform = self._platform, None
            platform.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _submit(self, function, mode, workers, worker_args=None, common=None, granularity=None, transport=None,
                timeout=None, storage=None, in_session=False, memory_mb=None):
        pickled, packages = _pickled_function(function)
        params = {"function": pickled, "python": _python_version(), "packages": packages, "mode": mode}
        session = self.program().ref if in_session else None
        if session is not None:
            # The workers print to this process and reach the session's objects.
            params["session"] = session
        if storage:
            # Plain in the parameters, so that the platform sees the burst reads
            # storage there and hands its packs the credentials (only then).
            params["storage"] = list(storage)
        if common is not None:
            params["arg"] = _pickled(common, "the parameters")
        granularity = granularity or self._granularity
        if isinstance(granularity, int) and granularity > workers:
            # A map with fewer calls than a pack holds: one pack of all of them.
            granularity = workers
        request = {
            "function": "python",
            "workers": workers,
            "granularity": granularity,
            "params": params,
        }
        if worker_args is not None:
            request["worker_params"] = _calls_pickled(worker_args)
        if transport or self._transport:
            request["transport"] = transport or self._transport
        if timeout is not None:
            request["timeout_secs"] = timeout
        if memory_mb is not None:
            # Each worker's memory: where the invoker confines packs, a hard limit.
            request["memory_mb"] = memory_mb
        if session is not None:
            request["session"] = session["id"]
        record = json.loads(self._client.submit(json.dumps(request)))
        return _Burst(self._client, record)

    def call_async(self, f, data=(), granularity=None, timeout=None, in_session=False, memory_mb=None):
        """One call ``f(*data)`` (a tuple; anything else is the one argument).
        ``in_session``: in the program's session (see ``program()``).
        ``memory_mb``: the memory the call may use (its pack is held to it
        where the platform confines packs; the platform's default if None)."""
        args = data if isinstance(data, tuple) else (data,)
        burst = self._submit(f, "call", 1, [[args]], granularity=granularity, timeout=timeout, in_session=in_session,
                             memory_mb=memory_mb)
        future = Future(burst, 0, 0)
        self._futures.append(future)
        return future

    def map(self, f, items, granularity=None, extra_args=None, timeout=None, chunksize=1, in_session=False,
            memory_mb=None):
        """A future per item: ``f(item)`` (``f(*item)`` for a tuple item), as
        one burst. Each worker makes ``chunksize`` consecutive calls (1: a
        worker, so a process, per call; more: fewer processes for short calls)."""
        if not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"chunksize must be a whole number from 1, not {chunksize!r}")
        calls = []
        for item in items:
            args = item if isinstance(item, tuple) else (item,)
            calls.append(args + tuple(extra_args or ()))
        if not calls:
            return []
        chunks = [calls[i : i + chunksize] for i in range(0, len(calls), chunksize)]
        burst = self._submit(f, "call", len(chunks), chunks, granularity=granularity, timeout=timeout,
                             in_session=in_session, memory_mb=memory_mb)
        futures = [Future(burst, i // chunksize, i % chunksize) for i in range(len(calls))]
        self._futures.extend(futures)
        return futures

    def map_reduce(self, map_f, items, reduce_f, granularity=None, timeout=None):
        """``reduce_f(results)`` of the map's results, in item order, as one more call."""
        results = self.get_result(self.map(map_f, items, granularity=granularity, timeout=timeout))
        return self.call_async(reduce_f, (results,), timeout=timeout)

    def burst(self, f, workers, granularity=None, transport=None, params=None, timeout=None, storage=None,
              memory_mb=None):
        """``f(worker)`` on ``workers`` workers that start together; their results, in rank order.
        A worker's exception fails the burst (the others are stopped) and is raised here.
        ``storage``: the ``s3://`` prefixes the workers open with ``worker.storage(url)``.
        ``memory_mb``: each worker's memory (see ``call_async``)."""
        run = self._submit(f, "burst", workers, common=params, granularity=granularity, transport=transport,
                           timeout=timeout, storage=storage, memory_mb=memory_mb)
        futures = [Future(run, rank) for rank in range(workers)]
        record = run.record()
        if record["state"] != "succeeded":
            # The burst's error names the cause ("rank 2 failed: ..."); other
            # workers' errors only echo it.
            cause = re.match(r"rank (\d+) failed", record.get("error") or "")
            failing = [f for f in futures if record["workers"][f.rank].get("error")]
            if cause and int(cause.group(1)) < workers:
                failing.insert(0, futures[int(cause.group(1))])
            # A worker whose error is its own exception (its traceback is its
            # own rank's) goes first: an echo carries the cause's text, and
            # the burst's error may name the echo if it was decided first.
            own = [f for f in failing if f"Remote traceback (rank {f.rank})" in (record["workers"][f.rank].get("error") or "")]
            for future in own + failing or futures[:1]:
                future.result()
        return [f.result() for f in futures]

    def get_result(self, futures=None, timeout=None, progress=None):
        """The results of ``futures`` (a list, or one future), or of every call
        made so far. ``progress``: a bar of the calls done, on standard error
        when it is a terminal (None), always (True), never (False), or on the
        stream given."""
        if isinstance(futures, Future):
            return futures.result(timeout)
        futures = self._futures if futures is None else futures
        if progress is None:
            progress = sys.stderr.isatty()
        if progress:
            _show_progress(futures, sys.stderr if progress is True else progress, timeout)
        return [f.result(timeout) for f in futures]

    def wait(self, futures=None, return_when=ALL_COMPLETED, timeout=None):
        return wait(self._futures if futures is None else futures, return_when, timeout)


_default = None
_default_lock = threading.Lock()


def default_executor():
    """The process's executor for module-level calls (an embedded platform unless VOLLEY_CONTROLLER is set)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Executor()
        return _default


def burst(f, workers, granularity=None, transport=None, params=None, timeout=None, storage=None):
    """``f(worker)`` on ``workers`` workers of one burst (see ``Executor.burst``)."""
    return default_executor().burst(f, workers, granularity, transport, params, timeout, storage)
