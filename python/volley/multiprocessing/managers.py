"""``Manager()``: shared dicts, lists and namespaces (and the other shared
objects) of a program, without a manager process: each is a pickled value in
the program's session on the controller. A read unpickles the value; a
change is made on a copy here and swapped in only if nobody changed the
value meanwhile (else made again on the new value), so concurrent changes
from many processes are never lost. Each operation moves the whole value:
keep large data in storage, not in a managed dict."""

import array

from .. import _session
from . import queues, sharedctypes, synchronize
from ._shared import Shared


class BaseProxy(Shared):
    def __init__(self, value):
        self._make({"type": "value", "data": _session.dumps(value)})

    def _get(self):
        reply = self._op("read", offset=0, len=None)
        return _session.loads(reply["data"]), reply["version"]

    def _value(self):
        return self._get()[0]

    def _change(self, change):
        """``change(value)`` on the shared value, atomically; its result."""
        value, version = self._get()
        while True:
            result = change(value)
            reply = self._op("swap", version=version, data=_session.dumps(value))
            if reply["reply"] == "version":
                return result
            value, version = _session.loads(reply["data"]), reply["version"]

    def __str__(self):
        return str(self._value())

    def __repr__(self):
        return f"<{type(self).__name__} object, typeid {self._typeid!r} at {hex(id(self))}>"

    def _getvalue(self):
        """A copy of the value (as the standard library's proxies give)."""
        return self._value()


def _reading(name):
    def method(self, *args, **kwargs):
        return getattr(self._value(), name)(*args, **kwargs)

    method.__name__ = name
    return method


def _changing(name):
    def method(self, *args, **kwargs):
        return self._change(lambda value: getattr(value, name)(*args, **kwargs))

    method.__name__ = name
    return method


def _listed(name):
    def method(self, *args, **kwargs):
        return list(getattr(self._value(), name)(*args, **kwargs))

    method.__name__ = name
    return method


class DictProxy(BaseProxy):
    _typeid = "dict"
    for _name in ("__contains__", "__getitem__", "__len__", "copy", "get"):
        locals()[_name] = _reading(_name)
    for _name in ("__delitem__", "__setitem__", "clear", "pop", "popitem", "setdefault", "update"):
        locals()[_name] = _changing(_name)
    for _name in ("keys", "values", "items"):
        locals()[_name] = _listed(_name)

    def __iter__(self):
        return iter(list(self._value()))


class ListProxy(BaseProxy):
    _typeid = "list"
    for _name in ("__contains__", "__getitem__", "__len__", "__add__", "__mul__", "__rmul__", "count", "index"):
        locals()[_name] = _reading(_name)
    for _name in ("__delitem__", "__setitem__", "append", "extend", "insert", "pop", "remove", "reverse", "sort"):
        locals()[_name] = _changing(_name)

    def __iter__(self):
        return iter(self._value())

    def __reversed__(self):
        return reversed(self._value())

    def __iadd__(self, other):
        self._change(lambda value: value.extend(other))
        return self

    def __imul__(self, n):
        self._change(lambda value: value.__imul__(n))
        return self


class ArrayProxy(ListProxy):
    _typeid = "Array"


class NamespaceProxy(BaseProxy):
    _typeid = "Namespace"

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        attributes = self._value()
        try:
            return attributes[name]
        except KeyError:
            raise AttributeError(f"'Namespace' object has no attribute {name!r}") from None

    def __setattr__(self, name, value):
        if name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        self._change(lambda attributes: attributes.__setitem__(name, value))

    def __delattr__(self, name):
        if name.startswith("_"):
            object.__delattr__(self, name)
            return

        def delete(attributes):
            if name not in attributes:
                raise AttributeError(name)
            del attributes[name]

        self._change(delete)

    def __repr__(self):
        items = ", ".join(f"{k}={v!r}" for k, v in sorted(self._value().items()))
        return f"Namespace({items})"

    __str__ = __repr__


class ValueProxy(BaseProxy):
    _typeid = "Value"

    def get(self):
        return self._value()

    def set(self, value):
        data = _session.dumps(value)
        version = self._get()[1]
        while (reply := self._op("swap", version=version, data=data))["reply"] != "version":
            version = reply["version"]

    value = property(get, set)

    def __repr__(self):
        return f"{type(self).__name__}({self.get()!r})"


class SyncManager:
    """The object ``Manager()`` returns: makes shared objects; ``shutdown()`` (or
    leaving its ``with`` block) deletes the ones it made."""

    def __init__(self, address=None, authkey=None, serializer="pickle", ctx=None, *, shutdown_timeout=1.0):
        self._made = []
        self._state = "INITIAL"

    def _track(self, obj):
        if self._state != "STARTED":
            raise RuntimeError("Manager has not been started" if self._state == "INITIAL" else "Manager has shut down")
        target = getattr(obj, "_obj", obj)
        self._made.append(target)
        return obj

    def start(self, initializer=None, initargs=()):
        if self._state == "STARTED":
            raise RuntimeError("Already started server")
        if initializer is not None:
            initializer(*initargs)
        self._state = "STARTED"

    def connect(self):
        self._state = "STARTED"

    def join(self, timeout=None):
        pass

    def shutdown(self):
        if self._state != "STARTED":
            return
        self._state = "SHUTDOWN"
        for obj in self._made:
            try:
                obj._op("drop")
            except Exception:  # noqa: BLE001 - gone with its session already
                pass
        self._made.clear()

    def __enter__(self):
        if self._state == "INITIAL":
            self.start()
        return self

    def __exit__(self, *args):
        self.shutdown()

    def dict(self, *args, **kwargs):  # noqa: A003 - the standard library's name
        return self._track(DictProxy(dict(*args, **kwargs)))

    def list(self, sequence=()):  # noqa: A003
        return self._track(ListProxy(list(sequence)))

    def Namespace(self, **attributes):  # noqa: N802
        return self._track(NamespaceProxy(dict(attributes)))

    def Value(self, typecode, value, lock=True):  # noqa: N802
        return self._track(ValueProxy(value))

    def Array(self, typecode, sequence, lock=True):  # noqa: N802
        return self._track(ArrayProxy(array.array(typecode, sequence)))

    def Queue(self, maxsize=0):  # noqa: N802
        return self._track(queues.Queue(maxsize))

    def JoinableQueue(self, maxsize=0):  # noqa: N802
        return self._track(queues.JoinableQueue(maxsize))

    def Lock(self):  # noqa: N802
        return self._track(synchronize.Lock())

    def RLock(self):  # noqa: N802
        return self._track(synchronize.RLock())

    def Semaphore(self, value=1):  # noqa: N802
        return self._track(synchronize.Semaphore(value))

    def BoundedSemaphore(self, value=1):  # noqa: N802
        return self._track(synchronize.BoundedSemaphore(value))

    def Event(self):  # noqa: N802
        return self._track(synchronize.Event())

    def Condition(self, lock=None):  # noqa: N802
        return self._track(synchronize.Condition(lock))

    def Barrier(self, parties, action=None, timeout=None):  # noqa: N802
        return self._track(synchronize.Barrier(parties, action, timeout))

    def Pool(self, processes=None, initializer=None, initargs=()):  # noqa: N802
        from .pool import Pool

        return Pool(processes, initializer, initargs)

    def RawValue(self, typecode, *args):  # noqa: N802
        return self._track(sharedctypes.RawValue(typecode, *args))


def Manager(*, ctx=None):  # noqa: N802 - the standard library's name
    """A started ``SyncManager``."""
    manager = SyncManager()
    manager.start()
    return manager
