"""The futures API: map, call_async, map_reduce, wait, results and errors."""

import os
import signal
import sys
import time

import pytest

import volley
from volley import _packages
from volley import executor as executor_module


def square(x):
    return x * x


def test_map_returns_each_items_result_in_order(ex):
    futures = ex.map(square, range(20), granularity=4)
    assert ex.get_result(futures) == [x * x for x in range(20)]
    assert len({f.burst_id for f in futures}) == 1, "a map is one burst"


def test_calls_packed_several_to_a_worker_keep_their_own_outcomes(ex):
    futures = ex.map(divide, [1, 2, 0, 4, 5, 0, 8], chunksize=3)
    assert len({f.rank for f in futures}) == 3, "7 calls, 3 to a worker: 3 workers"
    for item, future in zip([1, 2, 0, 4, 5, 0, 8], futures):
        if item == 0:
            with pytest.raises(volley.WorkerError, match="ZeroDivisionError"):
                future.result()
        else:
            assert future.result() == 1 / item, "a call after one that raised still ran"
    with pytest.raises(ValueError, match="chunksize"):
        ex.map(divide, [1], chunksize=0)


def test_a_progress_bar_counts_the_calls_done(ex):
    import io

    shown = io.StringIO()
    assert ex.get_result(ex.map(square, range(10), chunksize=3), progress=shown) == [x * x for x in range(10)]
    assert shown.getvalue().endswith("] 10/10 calls\n"), shown.getvalue()
    assert "[" + "#" * 30 + "]" in shown.getvalue()


def test_tuple_items_are_argument_lists_and_extra_args_follow(ex):
    futures = ex.map(lambda a, b, c: a * b + c, [(1, 2), (3, 4)], extra_args=(10,))
    assert ex.get_result(futures) == [12, 22]


def test_call_async_and_map_reduce(ex):
    assert ex.call_async(sum, ([1, 2, 3],)).result() == 6
    assert ex.call_async(square, 7).result() == 49
    total = ex.map_reduce(square, range(10), sum)
    assert total.result() == sum(x * x for x in range(10))


def test_closures_and_objects_travel(ex):
    offset = {"k": 5}
    result = ex.call_async(lambda x: (x + offset["k"], os.getpid()), 1).result()
    assert result[0] == 6
    assert result[1] != os.getpid(), "the call ran in a worker process"


def test_wait_returns_done_and_pending(ex):
    futures = ex.map(square, range(3))
    done, pending = volley.wait(futures, return_when=volley.ALL_COMPLETED, timeout=60)
    assert len(done) == 3 and pending == []
    first, _ = volley.wait(ex.map(square, range(2)), return_when=volley.FIRST_COMPLETED, timeout=60)
    assert len(first) >= 1


def test_a_burst_outliving_one_wait_is_waited_for_again(ex):
    # One wait of the platform returns the burst as it is (not an error), and
    # the future asks again: a burst may run longer than any one wait.
    future = ex.call_async(time.sleep, (1.5,))
    record = __import__("json").loads(ex._client.wait(future.burst_id, 0.05))
    assert record["state"] not in ("succeeded", "failed", "cancelled")
    old_step, executor_module._WAIT_STEP = executor_module._WAIT_STEP, 0.2
    try:
        assert future.result(timeout=60) is None
    finally:
        executor_module._WAIT_STEP = old_step


def divide(x):
    return 1 / x


def test_an_exception_is_raised_in_the_client_with_its_rank_and_remote_traceback(ex):
    futures = ex.map(divide, [1, 0, 4])
    assert futures[0].result() == 1.0
    with pytest.raises(volley.WorkerError) as caught:
        futures[1].result()
    error = caught.value
    assert error.rank == 1 and error.kind == "ZeroDivisionError"
    assert isinstance(error.exception, ZeroDivisionError)
    assert "in divide" in error.remote_traceback, error.remote_traceback
    assert futures[2].result() == 0.25, "the other calls went on"


def leave(code):
    sys.exit(code)


def crash_at(x):
    if x == 0:
        os.kill(os.getpid(), signal.SIGSEGV)
    return x


def test_sys_exit_and_a_crash_are_errors_that_say_so(ex):
    with pytest.raises(volley.WorkerError, match=r"sys.exit\(3\)"):
        ex.call_async(leave, 3).result(timeout=60)
    futures = ex.map(crash_at, [1, 0, 2])
    with pytest.raises(volley.WorkerLost, match=r"killed by SIGSEGV \(signal 11: it crashed\) without returning") as lost:
        futures[1].result(timeout=60)
    assert lost.value.exit_code == -signal.SIGSEGV and lost.value.rank == 1
    with pytest.raises(volley.WorkerLost, match="exited with code 7 without returning") as lost:
        ex.call_async(os._exit, 7).result(timeout=60)
    assert lost.value.exit_code == 7
    assert [futures[0].result(), futures[2].result()] == [1, 2], "a crashed call does not take the others"


def test_an_unpicklable_function_or_argument_is_named(ex):
    import threading

    lock = threading.Lock()
    with pytest.raises(TypeError, match="the function cannot be pickled"):
        ex.call_async(lambda: lock, ())
    with pytest.raises(TypeError, match="item 2 cannot be pickled"):
        ex.map(square, [1, 2, lock])


def test_a_function_pickled_by_another_python_is_refused_by_name(ex, monkeypatch):
    monkeypatch.setattr(executor_module, "_python_version", lambda: "3.99")
    future = ex.call_async(square, 2)
    with pytest.raises(volley.WorkerError, match=r"pickled by Python 3\.99 but this invoker runs Python 3\.\d+"):
        future.result(timeout=60)


def test_a_function_needing_a_package_the_invoker_lacks_is_refused_by_name(ex, tmp_path, monkeypatch):
    # A package installed here (its directory counts as a site directory) but not for the invoker's Python.
    package = tmp_path / "volley_test_only_here"
    package.mkdir()
    (package / "__init__.py").write_text("__version__ = '1.2.3'\n\ndef double(x):\n    return 2 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "volley_test_only_here", raising=False)
    import volley_test_only_here as only

    site = (os.path.realpath(tmp_path),)
    monkeypatch.setattr(_packages, "_site_dirs", lambda: site)
    monkeypatch.setattr(executor_module, "_installed", lambda: site)
    needs = r"the function needs volley_test_only_here 1\.2\.3 \(the client's versions\), not installed for this invoker's Python"
    with pytest.raises(volley.WorkerError, match=needs):
        ex.call_async(only.double, 4).result(timeout=60)
    # Another version of a package the invoker has is said in its log, and the function runs.
    monkeypatch.setitem(_packages._versions, "cloudpickle", "0.0.1")
    assert ex.call_async(lambda x: x + 1, 1).result(timeout=60) == 2


def hog(mib):
    block = bytearray(mib << 20)  # written: really held
    return len(block)


def test_a_call_past_its_memory_is_stopped_and_named_where_packs_are_confined(ex):
    if os.geteuid() != 0:
        pytest.skip("packs are confined in cgroups only by an invoker running as root")
    # A call of 32 MiB may hold 32 + 64 (the runtime's allowance) = 96 MiB: 300 MiB is past it.
    with pytest.raises(volley.VolleyError, match=r"killed for memory: its pack exceeded its memory limit of 96 MiB"):
        ex.call_async(hog, 300, memory_mb=32).result(timeout=120)
    assert ex.call_async(hog, 16, memory_mb=32).result(timeout=120) == 16 << 20, "within its memory it runs"


def test_a_volley_up_platform_runs_python_workers(up):
    futures = up.map(square, range(8), granularity=4)
    assert up.get_result(futures) == [x * x for x in range(8)]


def whose(w):
    return os.getpid(), os.getppid()


def test_nothing_is_left_running_once_the_executor_closes():
    with volley.Executor() as own:
        pids = own.burst(whose, workers=4, granularity=2)
        calls = [f.result() for f in own.map(lambda _: (os.getpid(), os.getppid()), range(3))]
    # Workers, their fork servers, and (their parents) the pack processes.
    everyone = {pid for pair in pids + calls for pid in pair}
    deadline = time.monotonic() + 15
    while True:
        alive = {pid for pid in everyone if _running(pid)}
        if not alive:
            break
        assert time.monotonic() < deadline, f"still running after the executor closed: {sorted(alive)}"
        time.sleep(0.05)


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
