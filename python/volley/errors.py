"""The exceptions the client raises."""


class VolleyError(RuntimeError):
    """A burst could not run, or failed for a reason that is not one worker's exception."""


class WorkerError(VolleyError):
    """A worker raised: ``rank``, the exception's type name, its message and
    the remote traceback; ``exception`` is the original exception when it
    could be sent back (it is then this error's ``__cause__``)."""

    def __init__(self, rank, kind, message, remote_traceback, exception=None):
        super().__init__(f"worker {rank} raised {message}\n\nRemote traceback:\n{remote_traceback}")
        self.rank = rank
        self.kind = kind
        self.message = message
        self.remote_traceback = remote_traceback
        self.exception = exception


class WorkerLost(VolleyError):
    """A worker's process ended without returning (``os._exit``, a crash, a
    kill): ``rank``, and ``exit_code``, its exit code or minus the signal that
    killed it, as ``multiprocessing.Process.exitcode`` says (None if unknown)."""

    def __init__(self, message, rank, exit_code):
        super().__init__(message)
        self.rank = rank
        self.exit_code = exit_code


class SessionEnded(VolleyError):
    """A shared object (a ``volley.multiprocessing`` queue, lock, value...) was
    used after its program's session ended: the program ended, or died and
    stopped renewing it, and the platform deleted its objects."""
