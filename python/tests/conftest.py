"""Fixtures: an executor on an embedded platform (shared by the module's
tests: a platform per test would be slow), and one on a `volley up` platform
started from the Rust binary when it is built (CI always builds it)."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

import volley


@pytest.fixture(scope="module")
def ex():
    with volley.Executor() as executor:
        yield executor


def _volley_binary():
    given = os.environ.get("VOLLEY_BIN")
    if given:
        return given
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/volley/target"))
    path = os.path.join(target, "debug", "volley")
    return path if os.path.exists(path) else None


class _Up:
    """A `volley up` platform started from the Rust binary, and an executor of it."""

    def __init__(self, extra=(), ca_file=None):
        """``ca_file``: the platform serves HTTPS (``extra`` gives its
        certificate) and its clients trust that CA."""
        binary = _volley_binary()
        if binary is None:
            if os.environ.get("CI") == "true":
                pytest.fail("the volley binary is not built (cargo build -p volley)")
            pytest.skip("the volley binary is not built (cargo build -p volley)")
        self.data = tempfile.mkdtemp(prefix="volley-pytest-up-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [binary, "up", "--listen", f"127.0.0.1:{port}", "--data-dir", self.data, "--python", sys.executable,
             *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.url = f"{'https' if ca_file else 'http'}://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.proc.kill()
                    raise RuntimeError(f"volley up did not start: {self.proc.stderr.read().decode()}")
                time.sleep(0.05)
        self.executor = volley.Executor(controller=self.url, ca_file=ca_file)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.data, ignore_errors=True)


def _executor_of(extra=()):
    platform = _Up(extra)
    try:
        yield platform.executor
    finally:
        platform.close()


@pytest.fixture(scope="module")
def up():
    """An executor of a `volley up` platform whose invoker runs this interpreter's workers."""
    yield from _executor_of()


@pytest.fixture(scope="module")
def unsandboxed_up():
    """A `volley up` platform whose packs are not sandboxed: its workers'
    ``os.getpid()`` are host pids, as the standard library's are (a sandboxed
    pack's are those of its own PID namespace, small and repeated across packs)."""
    yield from _executor_of(["--sandbox", "off"])


@pytest.fixture(scope="module")
def sandboxed_up():
    """A `volley up` platform whose packs are sandboxed (needs root; CI runs as root)."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("sandboxed packs need root")
        pytest.skip("sandboxed packs need root")
    platform = _Up(["--sandbox", "on"])
    try:
        yield platform
    finally:
        platform.close()
