"""``multiprocessing.Pool`` on Volley: a pool is one burst of ``processes``
workers, started with the pool and packed for locality, that take tasks
from a queue of the program's session and put their results on another, as
the standard library's pool processes do with its pipes. An ``apply_async``
then costs a few session round trips, not a burst start; the initializer
runs once in each worker; ``maxtasksperchild`` retires a worker after so
many tasks and starts another in its place.

If the pool's burst fails (a worker crashed, the platform cancelled it),
the pool is broken: the calls not done raise the error that says why, and
new calls are refused. The standard library's pool would wait for them
forever."""

import functools
import itertools
import multiprocessing as _std
import sys
import threading
import traceback
import warnings
from multiprocessing.pool import ExceptionWithTraceback, MaybeEncodingError

import cloudpickle

from ..errors import VolleyError
from ..executor import _ship_module_of, default_executor
from ._shared import LIFETIME_SECS
from .queues import Queue

TimeoutError = _std.TimeoutError  # noqa: A001 - the standard library's name

_RUN, _CLOSE, _TERMINATE = "RUN", "CLOSE", "TERMINATE"

def _serve(w):
    """A pool worker: runs tasks until it is told to stop or has run ``maxtasks``."""
    tasks, results, initializer, initargs, maxtasks = w.params
    initialized = _Initialized(initargs)
    if initializer is not None and _importable(initializer):
        initialized.run(initializer)
    loaded = {}
    done = 0
    while maxtasks is None or done < maxtasks:
        task = tasks.get()
        if task is None:
            return
        job, index, code, calls = task
        try:
            if code not in loaded:
                loaded[code] = cloudpickle.loads(code)
            init, function = loaded[code]
            if init is not None:
                initialized.run(init)
            outcome = (True, [function(*args) for args in calls])
        except BaseException as e:  # noqa: BLE001 - the task's outcome, raised by its caller
            outcome = (False, ExceptionWithTraceback(e, e.__traceback__))
        results.put((job, index) + _portable(outcome))
        done += 1
    results.put(("retired",))


def _importable(function):
    """Whether ``function`` lives in a module this process imported (not one that travelled by value)."""
    module = sys.modules.get(getattr(function, "__module__", None) or "")
    return module is not None and getattr(function, "__globals__", None) is vars(module)


class _Initialized:
    """Runs a pool's initializer once per worker, in the namespace of the code
    that needs it: the module's own when it is importable here. A module that
    travelled by value (a script's ``__main__``, a test file) arrives anew
    with each function, each with its own copy of the module's globals, so
    that the initializer runs once for each: the globals it sets are those its
    function reads, as under the standard library's fork."""

    def __init__(self, initargs):
        self._initargs = initargs
        self._namespaces = []

    def run(self, initializer):
        namespace = getattr(initializer, "__globals__", None)
        if any(namespace is seen for seen in self._namespaces):
            return
        # Kept, so that the namespace's identity stays its own.
        self._namespaces.append(namespace)
        initializer(*self._initargs)


def _portable(outcome):
    """An outcome as it travels: pickled here, so that one that does not pickle is an error of its task."""
    try:
        return outcome[0], cloudpickle.dumps(outcome[1])
    except Exception as e:  # noqa: BLE001 - as the standard library reports it
        error = MaybeEncodingError(e, outcome[1])
        return False, cloudpickle.dumps(ExceptionWithTraceback(error, e.__traceback__))


class _Job:
    """The chunks of one call of a pool, filled in as they arrive."""

    def __init__(self, chunks, single, callback, error_callback):
        self._chunks, self._single = chunks, single
        self._callback, self._error_callback = callback, error_callback
        self._values = [None] * chunks
        self._errors = {}
        self._arrived = []
        self._error = None
        self._changed = threading.Condition()

    def _set(self, index, ok, value):
        """Records chunk ``index``; True once the job is complete."""
        with self._changed:
            if self._complete():
                return True
            if ok:
                self._values[index] = value
            else:
                self._errors[index] = value
                # The first error to arrive is the job's, as in the standard library.
                self._error = self._error or value
            self._arrived.append(index)
            complete = self._complete()
            self._changed.notify_all()
        if complete:
            try:
                if self._error is None and self._callback is not None:
                    self._callback(self._result())
                if self._error is not None and self._error_callback is not None:
                    self._error_callback(self._error)
            except Exception:  # noqa: BLE001 - the user's callback: said, and the pool goes on
                # The standard library's result thread would die of it and
                # every later result wait forever.
                traceback.print_exc()
        return complete

    def _fail(self, error):
        """The job will not complete: what is missing raises ``error``."""
        missing = [i for i in range(self._chunks) if i not in self._arrived]
        for index in missing:
            self._set(index, False, error)

    def _complete(self):
        return len(self._arrived) == self._chunks

    def _result(self):
        values = [x for chunk in self._values for x in chunk]
        return values[0] if self._single else values

    def _wait_for(self, predicate, timeout):
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def _chunk(self, index, timeout=None):
        """Chunk ``index``'s values once it arrived (its error raised)."""
        if not self._wait_for(lambda: index in self._arrived, timeout):
            raise TimeoutError
        if index in self._errors:
            raise self._errors[index]
        return self._values[index]


class AsyncResult:
    """The result of ``apply_async``/``map_async``: ``get``, ``wait``, ``ready``, ``successful``."""

    def __init__(self, pool, job):
        # The pool lives while its results are waited for (as the standard library's).
        self._pool = pool
        self._job = job

    def ready(self):
        return self._job._complete()

    def successful(self):
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._job._error is None

    def wait(self, timeout=None):
        self._job._wait_for(self._job._complete, timeout)

    def get(self, timeout=None):
        if not self._job._wait_for(self._job._complete, timeout):
            raise TimeoutError
        if self._job._error is not None:
            raise self._job._error
        return self._job._result()


MapResult = ApplyResult = AsyncResult


class _Workers:
    """What a pool runs on: its bursts, queues, jobs and threads. Its threads
    hold this, not the ``Pool``, so that a pool dropped while running can be
    collected (and terminated), as the standard library's is."""

    def __init__(self, processes, initializer, initargs, maxtasksperchild, executor, granularity):
        self._processes = processes
        self._executor = executor
        self._granularity = granularity
        if initializer is not None:
            _ship_module_of(initializer)
        self._initializer = initializer
        self._codes = {}
        program = self._executor.program()
        ref = program.ref
        self._tasks, self._results = Queue._in(ref), Queue._in(ref)
        self._worker_params = (self._tasks, self._results, initializer, tuple(initargs), maxtasksperchild)
        self._jobs = {}
        self._job_ids = itertools.count()
        # Reentrant: a garbage collection in a thread holding it may terminate a dropped pool.
        self._lock = threading.RLock()
        self._bursts = []
        self._live = 0
        self._broken = None
        self._state = _RUN
        self._program = program
        self._watchers = []
        self._start(self._processes)
        self._collector = threading.Thread(target=self._collect, name="volley-pool-results", daemon=True)
        # Waited for when the program ends too: no thread may be in native code then.
        program.own(self._collector)

    def _start(self, workers):
        """Workers that serve the pool's tasks: a burst in the program's session."""
        burst = self._executor._submit(_serve, "burst", workers, common=self._worker_params,
                                       granularity=self._granularity, timeout=LIFETIME_SECS, in_session=True)
        with self._lock:
            self._bursts.append(burst)
            self._live += 1
            terminated = self._state == _TERMINATE
        if terminated:
            # Terminated while this burst was being submitted: it is not wanted.
            try:
                burst.cancel()
            except Exception:  # noqa: BLE001 - ended meanwhile
                pass
        watcher = threading.Thread(target=self._watch, args=(burst,), name="volley-pool-burst", daemon=True)
        self._watchers.append(watcher)
        self._program.own(watcher)

    def _watch(self, burst):
        """Waits for a burst of the pool to end; a failure breaks the pool."""
        try:
            record = burst.record()
            failed = record["state"] != "succeeded" and f"burst {burst.id} {record['state']}: {record.get('error')}"
        except Exception as e:  # noqa: BLE001 - the platform went away: the pool is over
            failed = f"{type(e).__name__}: {e}"
        with self._lock:
            self._live -= 1
            last = self._live == 0
        if failed and self._state != _TERMINATE:
            self._break(VolleyError(f"the pool's workers ended: {failed}"))
        if last and self._state != _RUN:
            # Every worker is done: what they put is ahead of this in the queue.
            self._stop_collecting()

    def _break(self, error):
        with self._lock:
            if self._broken is None:
                self._broken = error
            jobs = list(self._jobs.values())
            self._jobs.clear()
        for job in jobs:
            job._fail(error)
        self._stop_collecting()

    def _stop_collecting(self):
        try:
            self._results.put(None)
        except Exception:  # noqa: BLE001 - the session is over: so is the collector
            pass

    def _collect(self):
        """Hands each result to its job; starts a worker in place of each retired one."""
        while True:
            try:
                message = self._results.get()
            except Exception as e:  # noqa: BLE001 - the program's session ended
                self._break(VolleyError(f"the pool's results cannot be read: {e}"))
                return
            if message is None:
                if self._live == 0 or self._broken is not None:
                    return
                continue
            if message[0] == "retired":
                if self._state != _TERMINATE and self._broken is None:
                    try:
                        self._start(1)
                    except Exception as e:  # noqa: BLE001 - no worker in its place: the pool cannot go on
                        self._break(VolleyError(f"the pool could not start a worker in place of a retired one: {e}"))
                        return
                continue
            job_id, index, ok, blob = message
            try:
                value = cloudpickle.loads(blob)
            except Exception as e:  # noqa: BLE001 - the outcome does not unpickle here
                ok, value = False, e
            if not ok and not isinstance(value, BaseException):
                value = VolleyError(str(value))
            job = self._jobs.get(job_id)
            if job is not None and job._set(index, ok, value):
                with self._lock:
                    self._jobs.pop(job_id, None)

    def _check_running(self):
        if self._state != _RUN:
            raise ValueError("Pool not running")
        if self._broken is not None:
            raise self._broken

    def _chunksize(self, n, chunksize):
        if chunksize is not None:
            if chunksize < 1:
                raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
            return chunksize
        # The standard library's rule: about four chunks per process.
        chunks, extra = divmod(n, self._processes * 4)
        return chunks + 1 if extra else max(chunks, 1)

    def _submit(self, function, calls, chunksize, callback=None, error_callback=None, single=False):
        """Puts a job's chunks on the task queue; returns the job."""
        self._check_running()
        calls = list(calls)
        _ship_module_of(getattr(function, "func", function))
        chunksize = self._chunksize(len(calls), chunksize)
        chunks = [calls[i : i + chunksize] for i in range(0, len(calls), chunksize)]
        job = _Job(len(chunks), single, callback, error_callback)
        if not chunks:
            job._values, job._arrived = [], []
            if callback is not None:
                callback([])
            return job
        code = self._code(function)
        job_id = next(self._job_ids)
        with self._lock:
            self._jobs[job_id] = job
        for index, chunk in enumerate(chunks):
            self._tasks.put((job_id, index, code, chunk))
        return job

    def _code(self, function):
        """The function pickled with the initializer (they share the globals of
        a module that travels by value), once per function: a worker loads it once."""
        key = id(function)
        cached = self._codes.get(key)
        if cached is None or cached[0] is not function:
            try:
                cached = (function, cloudpickle.dumps((self._initializer, function)))
            except Exception as e:
                raise TypeError(f"the function cannot be pickled: {type(e).__name__}: {e}") from e
            if len(self._codes) >= 64:
                self._codes.pop(next(iter(self._codes)))
            self._codes[key] = cached
        return cached[1]

    def close(self):
        """No more work; the tasks given are done, then the workers leave."""
        if self._state == _RUN:
            self._state = _CLOSE
            for _ in range(self._processes):
                self._tasks.put(None)

    def terminate(self, join=True):
        """Stops the workers at once; calls not done raise an error."""
        with self._lock:
            if self._state == _TERMINATE:
                return
            self._state = _TERMINATE
            bursts = list(self._bursts)
        for burst in bursts:
            try:
                burst.cancel()
            except Exception:  # noqa: BLE001 - ended meanwhile
                pass
        self._break(VolleyError("the pool was terminated before this call was done"))
        if join:
            self._join_threads()

    def _join_threads(self):
        # Their waits end now: the bursts are over and the collector was told to stop.
        for thread in [*self._watchers, self._collector]:
            if thread is not threading.current_thread():
                thread.join(30)

    def join(self):
        """Waits for the workers to leave; the pool must be closed or terminated first."""
        if self._state == _RUN:
            raise ValueError("Pool is still running")
        # The collector ends once every burst of the pool has, those started in
        # place of retired workers too (their "retired" comes before the end of
        # the burst that said it, and the last end is told to it after).
        self._collector.join()
        self._join_threads()


class Pool:
    """``Pool(processes=None, initializer=None, initargs=(), maxtasksperchild=None)``:
    ``processes`` workers (by default ``cpu_count()``, as the standard
    library's; more is fine: they are Volley's workers, not this machine's)."""

    def __init__(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None, context=None,
                 executor=None, granularity=None):
        if processes is not None and processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None and (not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0):
            raise ValueError("maxtasksperchild must be a positive int or None")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._workers = _Workers(processes or _std.cpu_count(), initializer, tuple(initargs), maxtasksperchild,
                                 executor or default_executor(), granularity)

    def __repr__(self):
        workers = self._workers
        return f"<volley.multiprocessing.Pool state={workers._state} pool_size={workers._processes}>"

    def __enter__(self):
        self._workers._check_running()
        return self

    def __exit__(self, *exc):
        self.terminate()

    def __del__(self):
        # A pool dropped while running is terminated, with the standard library's
        # warning. Its threads are not joined here: a collection may run this in
        # any thread, one of the pool's own included (they end by themselves).
        workers = getattr(self, "_workers", None)
        if workers is not None and workers._state == _RUN:
            try:
                warnings.warn(f"unclosed running multiprocessing pool {self!r}", ResourceWarning, source=self)
            finally:
                try:
                    workers.terminate(join=False)
                except Exception:  # noqa: BLE001 - its program may be over
                    pass

    def apply(self, func, args=(), kwds=None):
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func, args=(), kwds=None, callback=None, error_callback=None):
        function = _with_keywords(func, kwds) if kwds else func
        return AsyncResult(self, self._workers._submit(function, [tuple(args)], 1, callback, error_callback, single=True))

    def map(self, func, iterable, chunksize=None):
        return self.map_async(func, iterable, chunksize).get()

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        return AsyncResult(self, self._workers._submit(func, [(x,) for x in iterable], chunksize, callback, error_callback))

    def starmap(self, func, iterable, chunksize=None):
        return self.starmap_async(func, iterable, chunksize).get()

    def starmap_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        calls = [tuple(args) for args in iterable]
        return AsyncResult(self, self._workers._submit(func, calls, chunksize, callback, error_callback))

    def imap(self, func, iterable, chunksize=1):
        """Results in order, each as soon as it and those before it are done."""
        job = self._workers._submit(func, [(x,) for x in iterable], chunksize)
        return _results_in_order(self, job)

    def imap_unordered(self, func, iterable, chunksize=1):
        """Results as they are done, in any order."""
        job = self._workers._submit(func, [(x,) for x in iterable], chunksize)
        return _results_as_done(self, job)

    def close(self):
        """No more work; the tasks given are done, then the workers leave."""
        self._workers.close()

    def terminate(self):
        """Stops the workers at once; calls not done raise an error."""
        self._workers.terminate()

    def join(self):
        """Waits for the workers to leave; the pool must be closed or terminated first."""
        self._workers.join()


def _with_keywords(func, kwds):
    return functools.partial(func, **kwds)


def _results_in_order(pool, job):
    # ``pool`` is held: it lives while its results are read.
    for index in range(job._chunks):
        yield from job._chunk(index)


def _results_as_done(pool, job):
    for seen in itertools.count():
        if seen == job._chunks:
            return
        job._wait_for(lambda: len(job._arrived) > seen, None)
        yield from job._chunk(job._arrived[seen])
