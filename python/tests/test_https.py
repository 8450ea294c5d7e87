"""A controller that serves HTTPS (issue 16): the Python client and the
workers in sandboxed packs reach it trusting its CA (``VOLLEY_CA_FILE``, which
the invoker hands to its packs), and a client that cannot check its
certificate is refused, saying what to do."""

import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import _volley_binary

PROGRAM = """
from volley.multiprocessing import Process, Queue

def answer(q):
    q.put("from a worker over HTTPS")

if __name__ == "__main__":
    q = Queue()
    p = Process(target=answer, args=(q,))
    p.start()
    print(q.get(timeout=60), flush=True)
    p.join(60)
"""


@pytest.fixture(scope="module")
def https_up(tmp_path_factory):
    binary = _volley_binary()
    if binary is None or os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("needs the volley binary and root (sandboxed packs)")
        pytest.skip("needs the volley binary and root (sandboxed packs)")
    tmp = tmp_path_factory.mktemp("https")
    certs = tmp / "certs"
    subprocess.run([binary, "certificates", "--out", str(certs)], check=True, capture_output=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--ca-file", str(certs / "ca.crt"), "up", "--listen", f"127.0.0.1:{port}", "--data-dir",
         str(tmp / "data"), "--python", sys.executable, "--sandbox", "on", "--tls-cert",
         str(certs / "controller.crt"), "--tls-key", str(certs / "controller.key")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
    yield f"https://127.0.0.1:{port}", certs / "ca.crt"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _program(tmp_path, url, ca):
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    env = dict(os.environ, VOLLEY_CONTROLLER=url)
    env.pop("VOLLEY_CA_FILE", None)
    if ca is not None:
        env["VOLLEY_CA_FILE"] = str(ca)
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)


def test_a_program_and_its_sandboxed_workers_reach_an_https_controller_trusting_its_ca(https_up, tmp_path):
    url, ca = https_up
    done = _program(tmp_path, url, ca)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "from a worker over HTTPS"


def test_a_client_without_the_ca_is_refused_and_told_what_to_do(https_up, tmp_path):
    url, _ = https_up
    refused = _program(tmp_path, url, None)
    assert refused.returncode != 0
    assert "UnknownIssuer" in refused.stderr and "--ca-file" in refused.stderr, refused.stderr


def test_the_executor_takes_the_ca_as_an_argument(https_up):
    import volley

    url, ca = https_up
    with volley.Executor(controller=url, ca_file=str(ca)) as ex:
        futures = ex.map(abs, [-1, -2, -3])
        assert ex.get_result(futures, timeout=60) == [1, 2, 3]
