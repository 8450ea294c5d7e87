"""The base of every ``volley.multiprocessing`` object: a reference to an
object of the program's session (``volley._session``), which pickles as
that reference, so that every process of the program shares the object."""

from .. import _session
from ..executor import default_executor

# A process's or a pool's burst may run as long as its program does (its
# session bounds it), not a burst's default 300 s: a week, the platform's most.
LIFETIME_SECS = 7 * 86_400


def program_ref():
    """The session objects are made in: the one this worker runs for, or this program's."""
    return _session.attached() or default_executor().program().ref


class Shared:
    def _make(self, kind, ref=None):
        self._ref = ref or program_ref()
        self._id = _session.of(self._ref).create(kind)

    @property
    def _session(self):
        return _session.of(self._ref)

    def _op(self, op, wait=None, **fields):
        return self._session.op(self._id, op, wait=wait, **fields)

    def _blocking(self, op, timeout, pending, **fields):
        return self._session.blocking(self._id, op, timeout, pending, **fields)
