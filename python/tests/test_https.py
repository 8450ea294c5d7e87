"""A controller that serves HTTPS (issue 16): the Python client and the
workers in sandboxed packs reach it trusting its CA (``VOLLEY_CA_FILE``, which
the invoker hands to its packs), and a client that cannot check its
certificate is refused, saying what to do."""

import os
import subprocess
import sys

import pytest

from conftest import _Up, _volley_binary

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
    """A `volley up` serving HTTPS with a certificate of `volley certificates`,
    its packs sandboxed, its invoker trusting the CA."""
    binary = _volley_binary()
    if binary is None or os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("needs the volley binary and root (sandboxed packs)")
        pytest.skip("needs the volley binary and root (sandboxed packs)")
    certs = tmp_path_factory.mktemp("https") / "certs"
    subprocess.run([binary, "certificates", "--out", str(certs)], check=True, capture_output=True)
    ca = certs / "ca.crt"
    platform = _Up(["--ca-file", str(ca), "--sandbox", "on", "--tls-cert", str(certs / "controller.crt"),
                    "--tls-key", str(certs / "controller.key")], ca_file=str(ca))
    try:
        yield platform
    finally:
        platform.close()


def _program(tmp_path, url, ca):
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    env = dict(os.environ, VOLLEY_CONTROLLER=url)
    env.pop("VOLLEY_CA_FILE", None)
    if ca is not None:
        env["VOLLEY_CA_FILE"] = str(ca)
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)


def test_a_program_and_its_sandboxed_workers_reach_an_https_controller_trusting_its_ca(https_up, tmp_path):
    done = _program(tmp_path, https_up.url, https_up.executor._ca_file)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "from a worker over HTTPS"


def test_a_client_without_the_ca_is_refused_and_told_what_to_do(https_up, tmp_path):
    refused = _program(tmp_path, https_up.url, None)
    assert refused.returncode != 0
    assert "UnknownIssuer" in refused.stderr and "--ca-file" in refused.stderr, refused.stderr


def test_the_executor_takes_the_ca_as_an_argument(https_up):
    ex = https_up.executor
    futures = ex.map(abs, [-1, -2, -3])
    assert ex.get_result(futures, timeout=60) == [1, 2, 3]
