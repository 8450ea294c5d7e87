"""``Value`` and ``Array``: ctypes values shared by the processes of a
program, kept as bytes by its session on the controller. Each read or write
of the value, or of an element or slice of the array, is one operation on
the platform; ``get_lock()`` guards read-modify-write sequences (``with
v.get_lock(): v.value += 1``) as in the standard library."""

import ctypes
from multiprocessing.sharedctypes import typecode_to_type

from .. import _session
from ._shared import Shared
from .synchronize import Lock, RLock


def _ctype(typecode_or_type):
    ctype = typecode_to_type.get(typecode_or_type, typecode_or_type)
    if not (isinstance(ctype, type) and issubclass(ctype, ctypes._SimpleCData)):  # noqa: SLF001 - ctypes' base
        raise TypeError(f"{typecode_or_type!r} is neither a typecode of the array module nor a simple ctypes type")
    return ctype


def _lock_of(lock):
    if lock is True or lock is None:
        return RLock()
    if isinstance(lock, (Lock, RLock)):
        return lock
    raise AttributeError(f"{lock!r} has no method 'acquire'")


class _Bytes(Shared):
    def _read(self, offset=0, length=None):
        return _session.decode(self._op("read", offset=offset, len=length)["data"])

    def _write(self, offset, data):
        self._op("write", offset=offset, data=_session.encode(bytes(data)))


class RawValue(_Bytes):
    """A shared ctypes value without a lock."""

    def __init__(self, typecode_or_type, *args):
        self._type = _ctype(typecode_or_type)
        self._make({"type": "value", "data": _session.encode(bytes(self._type(*args)))})

    @property
    def value(self):
        return self._type.from_buffer_copy(self._read()).value

    @value.setter
    def value(self, value):
        self._write(0, bytes(self._type(value)))

    def __repr__(self):
        return f"{self._type.__name__}({self.value!r})"


class RawArray(_Bytes):
    """A shared ctypes array without a lock: indexing and slices read and write the platform's copy."""

    def __init__(self, typecode_or_type, size_or_initializer):
        self._type = _ctype(typecode_or_type)
        if isinstance(size_or_initializer, int):
            initial = (self._type * size_or_initializer)()
        else:
            items = list(size_or_initializer)
            initial = (self._type * len(items))(*items)
        self._length = len(initial)
        self._make({"type": "value", "data": _session.encode(bytes(initial))})

    def __len__(self):
        return self._length

    def _size(self):
        return ctypes.sizeof(self._type)

    def _decoded(self, data, n):
        return (self._type * n).from_buffer_copy(data)[:]

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(self._length)
            if step != 1:
                # A strided or reversed slice: the whole array, sliced here.
                return self._decoded(self._read(), self._length)[index]
            n = max(stop - start, 0)
            data = self._read(start * self._size(), n * self._size()) if n else b""
            return self._decoded(data, n)
        index = self._index(index)
        return self._decoded(self._read(index * self._size(), self._size()), 1)[0]

    def __setitem__(self, index, value):
        if isinstance(index, slice):
            start, stop, step = index.indices(self._length)
            values = list(value)
            positions = range(start, stop, step)
            if len(values) != len(positions):
                raise ValueError("Can only assign sequence of same size")
            if step == 1 and values:
                self._write(start * self._size(), bytes((self._type * len(values))(*values)))
            else:
                for i, v in zip(positions, values, strict=True):
                    self._write(i * self._size(), bytes(self._type(v)))
            return
        self._write(self._index(index) * self._size(), bytes(self._type(value)))

    def _index(self, index):
        index = index.__index__()
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError("invalid index")
        return index

    @property
    def value(self):
        """A char array's bytes up to the first NUL (``typecode 'c'``)."""
        return self.raw.split(b"\0", 1)[0]

    @property
    def raw(self):
        return self._read()

    def __repr__(self):
        return f"<{type(self).__name__} of {self._length} {self._type.__name__}>"


class _Synchronized:
    """The locking of a shared value: ``get_lock``, ``acquire``/``release``, the context manager."""

    def get_lock(self):
        return self._lock

    def get_obj(self):
        return self._obj

    def acquire(self, *args):
        return self._lock.acquire(*args)

    def release(self):
        return self._lock.release()

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *args):
        return self._lock.__exit__(*args)


class Synchronized(_Synchronized):
    def __init__(self, obj, lock):
        self._obj, self._lock = obj, lock

    @property
    def value(self):
        return self._obj.value

    @value.setter
    def value(self, value):
        self._obj.value = value

    def __repr__(self):
        return f"<Synchronized wrapper for {self._obj!r}>"


class SynchronizedArray(_Synchronized):
    def __init__(self, obj, lock):
        self._obj, self._lock = obj, lock

    def __len__(self):
        return len(self._obj)

    def __getitem__(self, index):
        return self._obj[index]

    def __setitem__(self, index, value):
        self._obj[index] = value

    @property
    def value(self):
        return self._obj.value

    @property
    def raw(self):
        return self._obj.raw

    def __repr__(self):
        return f"<SynchronizedArray wrapper for {self._obj!r}>"


def Value(typecode_or_type, *args, lock=True, ctx=None):  # noqa: N802 - the standard library's name
    """A shared value; with ``lock`` (True: a new RLock) wrapped to have ``get_lock()``."""
    obj = RawValue(typecode_or_type, *args)
    if lock is False:
        return obj
    return Synchronized(obj, _lock_of(lock))


def Array(typecode_or_type, size_or_initializer, *, lock=True, ctx=None):  # noqa: N802 - the standard library's name
    """A shared array; with ``lock`` (True: a new RLock) wrapped to have ``get_lock()``."""
    obj = RawArray(typecode_or_type, size_or_initializer)
    if lock is False:
        return obj
    return SynchronizedArray(obj, _lock_of(lock))
