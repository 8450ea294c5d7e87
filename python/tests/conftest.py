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


@pytest.fixture(scope="module")
def up():
    """An executor of a `volley up` platform whose invoker runs this interpreter's workers."""
    binary = _volley_binary()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the volley binary is not built (cargo build -p volley)")
        pytest.skip("the volley binary is not built (cargo build -p volley)")
    data = tempfile.mkdtemp(prefix="volley-pytest-up-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "up", "--listen", f"127.0.0.1:{port}", "--data-dir", data, "--python", sys.executable],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"volley up did not start: {proc.stderr.read().decode()}")
            time.sleep(0.05)
    try:
        yield volley.Executor(controller=url)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(data, ignore_errors=True)
