"""The installed packages a pickled function refers to, with their versions.

The client names them with the function (``dumps``); the fork server holds
them against its own (``missing`` before it unpickles the function,
``differing`` after): a
package the invoker's Python lacks is refused by name instead of failing as
an obscure unpickling error, and versions that differ are said in the
pack's log and in the error if the function then fails to load.

Only installed packages count (those under the interpreter's site
directories): the standard library comes with the Python version, which is
checked on its own, and the user's own modules travel by value.
"""

import io
import os
import pickle
import sys
import types

import cloudpickle

# (importlib.metadata, importlib.util and sysconfig are imported when used:
# the fork server imports this module, and every import there is in each fork.)

_versions = {}


def _site_dirs():
    import sysconfig

    paths = sysconfig.get_paths()
    return tuple(os.path.realpath(paths[k]) for k in ("purelib", "platlib") if k in paths)


class _Recorder(cloudpickle.Pickler):
    """cloudpickle's pickler, noting the top-level module of every module,
    function and class it pickles (by reference or not)."""

    def __init__(self, file):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.modules = set()

    def reducer_override(self, obj):
        name = None
        try:
            if isinstance(obj, types.ModuleType):
                name = obj.__name__
            elif isinstance(obj, type) or callable(obj):
                name = getattr(obj, "__module__", None)
        except Exception:  # noqa: BLE001 - an object whose attributes raise: pickled as before, not noted
            name = None
        if isinstance(name, str):
            self.modules.add(name.partition(".")[0])
        return super().reducer_override(obj)


def dumps(obj):
    """``obj`` pickled by cloudpickle, and ``{package: version}`` of the installed
    packages it refers to (version None when the package does not say)."""
    buffer = io.BytesIO()
    recorder = _Recorder(buffer)
    recorder.dump(obj)
    return buffer.getvalue(), versions(recorder.modules)


def versions(names):
    sites = _site_dirs()
    found = {}
    for name in sorted(names):
        module = sys.modules.get(name)
        # Volley's own package is the platform's: its protocol is its concern.
        if module is None or name == "volley" or not _installed_under(module, sites):
            continue
        found[name] = _version(name)
    return found


def _installed_under(module, sites):
    paths = [getattr(module, "__file__", None), *list(getattr(module, "__path__", []) or [])]
    return any(p and os.path.realpath(p).startswith(sites) for p in paths)


def _version(name):
    """The version of the package imported as ``name`` (None if it does not say)."""
    if name not in _versions:
        version = getattr(sys.modules.get(name), "__version__", None)
        if not isinstance(version, str):
            import importlib.metadata

            try:
                version = importlib.metadata.version(name)
            except (importlib.metadata.PackageNotFoundError, ValueError):
                version = None
        _versions[name] = version
    return _versions[name]


def missing(wanted):
    """The packages of ``wanted`` ({name: version}) not installed here, as
    text (looked up without importing anything)."""
    import importlib.util

    return [
        f"{name} {version}" if version else name
        for name, version in sorted((wanted or {}).items())
        if name not in sys.modules and _find(importlib.util, name) is None
    ]


def differing(wanted):
    """The packages of ``wanted`` whose version here differs, as text. Only
    those imported here that say their ``__version__`` are compared (the
    function's loading imported those it refers to): nothing is imported or
    read from disk for it."""
    found = []
    for name, version in sorted((wanted or {}).items()):
        mine = getattr(sys.modules.get(name), "__version__", None)
        if version and isinstance(mine, str) and mine != version:
            found.append(f"{name} {version} (here {mine})")
    return found


def _find(util, name):
    try:
        return util.find_spec(name)
    except (ImportError, ValueError):
        return None
