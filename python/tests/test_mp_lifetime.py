"""A program's shared objects and processes last as long as the program:
when it exits they are gone, and when it is killed the platform ends its
session once the lease runs out and cancels what it left running."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import volley
from volley import _native, _session

PROGRAM = """
import json, sys, time
from volley.executor import default_executor
from volley.multiprocessing import Process, Queue

def wait_forever(q):
    q.get()

if __name__ == "__main__":
    q = Queue()
    p = Process(target=wait_forever, args=(q,), daemon=True)
    p.start()
    print(json.dumps({"ref": default_executor().program().ref, "burst": p._future.burst_id}), flush=True)
    if sys.argv[1] == "sleep":
        time.sleep(600)
"""


def _start(up, tmp_path, how):
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    env = dict(os.environ, VOLLEY_CONTROLLER=up.controller, VOLLEY_SESSION_LEASE="3")
    proc = subprocess.Popen([sys.executable, str(script), how], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, text=True)
    line = proc.stdout.readline()
    assert line, proc.stderr.read()
    return proc, json.loads(line)


def _burst_state(up, burst_id):
    return json.loads(_native.Client(up.controller, None).burst(burst_id))


def _until(predicate, limit=60.0):
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "the platform did not clean up in time"
        time.sleep(0.1)


def test_a_killed_programs_session_ends_with_its_lease_and_its_processes_are_cancelled(up, tmp_path):
    proc, told = _start(up, tmp_path, "sleep")
    _until(lambda: _burst_state(up, told["burst"])["state"] == "running")
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    _until(lambda: _burst_state(up, told["burst"])["state"] == "cancelled")
    assert "its session ended" in _burst_state(up, told["burst"])["error"]
    # An object of the dead program, used afterwards (as a worker still holding it would): a clear error.
    with pytest.raises(volley.SessionEnded, match="live only while their program runs"):
        _session.Session(told["ref"]).op(1, "size")


def test_an_exiting_program_ends_its_daemon_processes_and_its_session_at_once(up, tmp_path):
    proc, told = _start(up, tmp_path, "exit")
    assert proc.wait(60) == 0
    # The session is gone at once (not at its lease's end)...
    with pytest.raises(volley.SessionEnded):
        _session.Session(told["ref"]).op(1, "size")
    # ...and its daemon process's burst was cancelled then (final once its packs have stopped).
    _until(lambda: _burst_state(up, told["burst"])["state"] == "cancelled")
