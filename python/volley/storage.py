"""Object storage from Python, over Volley's storage crate (the one workers
read and write with): ``file:///dir`` or ``s3://bucket/prefix``.

    s = volley.Storage("s3://bucket/job")
    s.put_object("in/a.txt", b"...")
    s.get_object("in/a.txt", range=(0, 100))    # bytes 0..100
    s.list_keys("in/")

For ``s3://``, the endpoint and keys come from the arguments, else from
``VOLLEY_S3_ENDPOINT``, ``VOLLEY_S3_ACCESS_KEY``, ``VOLLEY_S3_SECRET_KEY``
(as for the ``volley`` command), else from the ``AWS_*`` variables.
"""

import os

from . import _native


class Storage:
    """The objects under one prefix; keys are relative to it."""

    def __init__(self, url, endpoint=None, access_key=None, secret_key=None, region=None):
        self.url = url
        self._inner = _native.Storage(
            url,
            endpoint or os.environ.get("VOLLEY_S3_ENDPOINT"),
            region or os.environ.get("VOLLEY_S3_REGION"),
            access_key or os.environ.get("VOLLEY_S3_ACCESS_KEY"),
            secret_key or os.environ.get("VOLLEY_S3_SECRET_KEY"),
        )

    @classmethod
    def _with(cls, url, options):
        """Storage opened with the options a worker's pack was given."""
        self = cls.__new__(cls)
        self.url = url
        options = options or {}
        self._inner = _native.Storage(
            url, options.get("endpoint"), options.get("region"), options.get("access_key"), options.get("secret_key")
        )
        return self

    def put_object(self, key, data):
        """Writes ``data`` (bytes, or str as UTF-8) as ``key``, whole (a reader never sees half)."""
        if isinstance(data, str):
            data = data.encode()
        self._inner.put(key, bytes(data))

    def get_object(self, key, range=None):
        """The object's bytes; ``range=(start, end)``: bytes ``start`` to ``end`` (exclusive; None: to the end)."""
        if range is None:
            return self._inner.get(key)
        start, end = range
        return self._inner.get(key, start, end)

    def list_objects(self, prefix=""):
        """``(key, size)`` of every object under ``prefix``, by key."""
        return self._inner.list(prefix)

    def list_keys(self, prefix=""):
        return [key for key, _ in self._inner.list(prefix)]

    def delete_object(self, key):
        self._inner.delete(key)

    def delete_objects(self, keys):
        for key in keys:
            self._inner.delete(key)
