"""The fork server's spares (workers forked ahead, before their function is
known), driven as the pack's supervisor drives them: through a socket they
connect back to. Each scenario runs in an interpreter of its own, as a fork
server does (this test process has the client's threads: no forking here)."""

import json
import subprocess
import sys
import textwrap

_SCENARIO = textwrap.dedent(
    """
    import json, os, pickle, socket, sys, time
    import cloudpickle
    from volley import _forkserver, _wire, _worker

    name = "\\0volley-test-spares-%d" % os.getpid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(name)
    listener.listen(8)
    listener.settimeout(30)
    spares = _forkserver._Spares(name, 3)
    forked = [pid for pid, _ in spares._idle]

    def triple(x):
        return (x * 3, os.getpid())

    workers = {}
    blob = cloudpickle.dumps(triple)
    pid = spares.hand({"spawn": "digest", "rank": 5, "token": "t" * 32}, blob, _worker.python_version(), workers)
    conn, _ = listener.accept()
    conn.settimeout(30)
    hello, _ = _wire.recv(conn)
    _wire.send(conn, {"rank": 5, "size": 8, "pack": 0, "mode": "call"}, [pickle.dumps([(14,)])])
    result, parts = _wire.recv(conn)
    outcome = pickle.loads(pickle.loads(bytes(parts[0]))[0][1])
    _, status = os.waitpid(pid, 0)

    # A function pickled by another Python is refused by the spare, by name.
    other = spares.hand({"spawn": "digest", "rank": 6, "token": "u" * 32}, blob, "3.1", workers)
    conn2, _ = listener.accept()
    conn2.settimeout(30)
    _wire.recv(conn2)
    _wire.send(conn2, {"rank": 6, "size": 8, "pack": 0, "mode": "call"}, [pickle.dumps([(1,)])])
    refused, _ = _wire.recv(conn2)
    os.waitpid(other, 0)

    # The spare left is dismissed: it exits without connecting.
    left = [p for p, _ in spares._idle]
    spares.dismiss()
    ended = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in left]
    empty = spares.hand({"spawn": "digest", "rank": 7, "token": "v" * 32}, blob, _worker.python_version(), workers)
    print(json.dumps({
        "forked": forked, "pid": pid, "token_of_pid": workers.get(pid), "hello": hello,
        "result": result, "outcome": outcome, "exit": os.waitstatus_to_exitcode(status),
        "refused": refused, "left": left, "ended": ended, "empty": empty,
    }))
    """
)


def test_a_spare_runs_the_request_handed_to_it_and_the_others_leave_when_dismissed():
    out = subprocess.run([sys.executable, "-c", _SCENARIO], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(got["forked"]) == 3 and got["pid"] in got["forked"]
    assert got["token_of_pid"] == "t" * 32, "its exit is reported under its request's token"
    assert got["hello"] == {"op": "hello", "token": "t" * 32, "rank": 5, "pid": got["pid"]}
    assert got["result"]["op"] == "result" and got["outcome"] == [42, got["pid"]], "it ran the function it was handed"
    assert got["exit"] == 0
    assert got["refused"]["op"] == "error" and "pickled by Python 3.1 but this invoker runs" in got["refused"]["message"]
    assert len(got["left"]) == 1 and got["ended"] == [0], "a dismissed spare exits"
    assert got["empty"] is None, "with no spare left, the fork server forks"


def test_the_client_names_the_installed_packages_a_function_refers_to_and_the_worker_compares_them():
    import cloudpickle
    import numpy as np

    from volley import _packages

    def norm(x):
        return np.sqrt(x)

    _, versions = _packages.dumps(norm)
    assert versions == {"cloudpickle": cloudpickle.__version__, "numpy": np.__version__}
    assert _packages.dumps(len)[1] == {}, "the standard library is the Python version's"
    wanted = {"numpy": "0.1", "volley_no_such_package": "1.0", "cloudpickle": cloudpickle.__version__}
    assert _packages.missing(wanted) == ["volley_no_such_package 1.0"]
    assert _packages.differing(wanted) == [f"numpy 0.1 (here {np.__version__})"]
