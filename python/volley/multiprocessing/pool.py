"""``multiprocessing.Pool`` on Volley: each call of a pool is a call of a
Volley map (a forked worker process runs a chunk of them), so a program that
uses a pool runs unchanged on a platform of many machines."""

import functools
import multiprocessing as _std
import threading

from ..errors import WorkerError
from ..executor import FIRST_COMPLETED, _ship_module_of, default_executor, wait

TimeoutError = _std.TimeoutError  # noqa: A001 - the standard library's name

_RUN, _CLOSE, _TERMINATE = "RUN", "CLOSE", "TERMINATE"


def _unwrapped(error):
    """The exception a call raised, as the standard library raises it: itself when it travelled."""
    if isinstance(error, WorkerError) and error.exception is not None:
        return error.exception
    return error


class _Initialized:
    """A pool's function with its initializer, run once in each worker process before its first call."""

    def __init__(self, function, initializer, initargs):
        self.function, self.initializer, self.initargs = function, initializer, initargs

    def __call__(self, *args):
        if self.initializer is not None and not _Initialized.done:
            _Initialized.done = True
            self.initializer(*self.initargs)
        return self.function(*args)

    done = False


class AsyncResult:
    """The result of ``apply_async``/``map_async``: ``get``, ``wait``, ``ready``, ``successful``."""

    def __init__(self, futures, single, callback=None, error_callback=None):
        self._futures, self._single = futures, single
        self._done = threading.Event()
        self._value = self._error = None
        threading.Thread(target=self._collect, args=(callback, error_callback), daemon=True).start()

    def _collect(self, callback, error_callback):
        try:
            values = [f.result() for f in self._futures]
            self._value = values[0] if self._single else values
        except BaseException as e:  # noqa: BLE001 - kept for get()
            self._error = _unwrapped(e)
        self._done.set()
        if self._error is None and callback is not None:
            callback(self._value)
        if self._error is not None and error_callback is not None:
            error_callback(self._error)

    def ready(self):
        return self._done.is_set()

    def successful(self):
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._error is None

    def wait(self, timeout=None):
        self._done.wait(timeout)

    def get(self, timeout=None):
        if not self._done.wait(timeout):
            raise TimeoutError
        if self._error is not None:
            raise self._error
        return self._value


class Pool:
    """``Pool(processes=None, initializer=None, initargs=())``: ``processes``
    workers share each map's calls (by default ``cpu_count()``, as the standard
    library's; more is fine: they are Volley's workers, not this machine's)."""

    def __init__(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None, context=None,
                 executor=None, granularity=None):
        if processes is not None and processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._processes = processes or _std.cpu_count()
        self._initializer, self._initargs = initializer, tuple(initargs)
        self._executor = executor or default_executor()
        self._granularity = granularity
        self._state = _RUN
        self._futures = []

    def __repr__(self):
        return f"<volley.multiprocessing.Pool state={self._state} pool_size={self._processes}>"

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, *exc):
        self.terminate()

    def _check_running(self):
        if self._state != _RUN:
            raise ValueError("Pool not running")

    def _chunksize(self, n, chunksize):
        if chunksize is not None:
            if chunksize < 1:
                raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
            return chunksize
        # The standard library's rule: about four chunks per process.
        chunks, extra = divmod(n, self._processes * 4)
        return chunks + 1 if extra else max(chunks, 1)

    def _map(self, function, calls, chunksize):
        self._check_running()
        calls = list(calls)
        if not calls:
            return []
        # The user's function (inside a partial or this pool's wrapper) and
        # initializer travel by value when their modules are the user's own.
        for callable_ in (getattr(function, "func", function), self._initializer):
            if callable_ is not None:
                _ship_module_of(callable_)
        wrapped = _Initialized(function, self._initializer, self._initargs)
        # In the program's session: the workers print here, and die with the program.
        futures = self._executor.map(wrapped, calls, granularity=self._granularity,
                                     chunksize=self._chunksize(len(calls), chunksize), in_session=True)
        self._futures.extend(futures)
        return futures

    def apply(self, func, args=(), kwds=None):
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func, args=(), kwds=None, callback=None, error_callback=None):
        function = functools.partial(func, **kwds) if kwds else func
        futures = self._map(function, [tuple(args)], 1)
        return AsyncResult(futures, True, callback, error_callback)

    def map(self, func, iterable, chunksize=None):
        return self.map_async(func, iterable, chunksize).get()

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        futures = self._map(func, [(x,) for x in iterable], chunksize)
        return AsyncResult(futures, False, callback, error_callback)

    def starmap(self, func, iterable, chunksize=None):
        return self.starmap_async(func, iterable, chunksize).get()

    def starmap_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        futures = self._map(func, [tuple(args) for args in iterable], chunksize)
        return AsyncResult(futures, False, callback, error_callback)

    def imap(self, func, iterable, chunksize=1):
        """Results in order, each as soon as it and those before it are done."""
        for future in self._map(func, [(x,) for x in iterable], chunksize):
            try:
                yield future.result()
            except BaseException as e:  # noqa: BLE001 - raised as the call raised it
                raise _unwrapped(e) from None

    def imap_unordered(self, func, iterable, chunksize=1):
        """Results as they are done, in any order."""
        pending = self._map(func, [(x,) for x in iterable], chunksize)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    yield future.result()
                except BaseException as e:  # noqa: BLE001 - raised as the call raised it
                    raise _unwrapped(e) from None

    def close(self):
        """No more work; the calls made go on."""
        if self._state == _RUN:
            self._state = _CLOSE

    def terminate(self):
        """Stops at once: the bursts of calls not yet done are cancelled."""
        self._state = _TERMINATE
        for future in self._futures:
            try:
                if not future.done():
                    future.cancel()
            except Exception:  # noqa: BLE001 - ended meanwhile
                pass

    def join(self):
        """Waits for the calls made; the pool must be closed or terminated first."""
        if self._state == _RUN:
            raise ValueError("Pool is still running")
        for future in self._futures:
            try:
                future.result()
            except Exception:  # noqa: BLE001 - their errors were the callers' to see
                pass
