"""volley.multiprocessing.Pool against the standard library's: the same calls
give the same results, and misuse raises the same errors."""

import gc
import multiprocessing as std
import os

import pytest

import volley
import volley.multiprocessing as vmp


def square(x):
    return x * x


def power(x, y):
    return x**y


def divide(x):
    return 1 / x


def keyword(x, scale=1):
    return x * scale


_GREETING = None


def remember(greeting):
    global _GREETING
    _GREETING = greeting


def greeted(x):
    return f"{_GREETING} {x}"


@pytest.fixture(scope="module")
def pools(ex):
    with std.get_context("fork").Pool(2, initializer=remember, initargs=("hi",)) as theirs:
        with vmp.Pool(3, initializer=remember, initargs=("hi",), executor=ex) as ours:
            yield ours, theirs


def test_every_call_gives_what_the_standard_pool_gives(pools):
    ours, theirs = pools
    items = list(range(23))
    assert ours.map(square, items) == theirs.map(square, items)
    assert ours.map(square, items, chunksize=5) == theirs.map(square, items, chunksize=5)
    pairs = [(x, 3) for x in range(7)]
    assert ours.starmap(power, pairs) == theirs.starmap(power, pairs)
    assert list(ours.imap(square, items, chunksize=4)) == list(theirs.imap(square, items, chunksize=4))
    assert sorted(ours.imap_unordered(square, items)) == sorted(theirs.imap_unordered(square, items))
    assert ours.apply(power, (2, 10)) == theirs.apply(power, (2, 10))
    assert ours.apply_async(keyword, (4,), {"scale": 3}).get(60) == theirs.apply_async(keyword, (4,), {"scale": 3}).get(60)
    assert ours.map_async(square, items).get(60) == theirs.map_async(square, items).get(60)
    assert ours.map(greeted, [1, 2]) == theirs.map(greeted, [1, 2]) == ["hi 1", "hi 2"]
    assert ours.map(square, []) == theirs.map(square, []) == []


def test_a_calls_exception_is_raised_as_itself(pools):
    ours, theirs = pools
    for pool in (ours, theirs):
        with pytest.raises(ZeroDivisionError):
            pool.map(divide, [1, 0, 2])
        with pytest.raises(ZeroDivisionError):
            list(pool.imap(divide, [0]))
        result = pool.apply_async(divide, (0,))
        result.wait(60)
        assert result.ready() and not result.successful()


def test_callbacks_get_the_results_or_the_error(pools):
    ours, _ = pools
    got, errors = [], []
    ours.map_async(square, [1, 2], callback=got.append).wait(60)
    ours.apply_async(divide, (0,), error_callback=errors.append).wait(60)
    import time

    time.sleep(0.1)
    assert got == [[1, 4]]
    assert isinstance(errors[0], ZeroDivisionError)


def test_a_callback_that_raises_does_not_stop_the_pool(ex, capfd):
    pool = vmp.Pool(1, executor=ex)
    pool.apply_async(square, (3,), callback=lambda _: 1 / 0).wait(60)
    assert pool.apply_async(square, (4,)).get(60) == 16
    pool.close()
    pool.join()
    assert "ZeroDivisionError" in capfd.readouterr().err


def test_misuse_raises_what_the_standard_library_raises(ex):
    for make in (lambda: std.get_context("fork").Pool(1), lambda: vmp.Pool(1, executor=ex)):
        pool = make()
        with pytest.raises(ValueError, match="Pool is still running"):
            pool.join()
        pool.close()
        with pytest.raises(ValueError, match="Pool not running"):
            pool.map(square, [1])
        pool.join()
        pool.terminate()
    with pytest.raises(ValueError, match="Number of processes must be at least 1"):
        vmp.Pool(0)
    with pytest.raises(ValueError, match="Number of processes must be at least 1"):
        std.Pool(0)
    with pytest.raises(std.TimeoutError):
        vmp.Pool(1, executor=ex).apply_async(__import__("time").sleep, (5,)).get(timeout=0.01)


def pid_of(_):
    return os.getpid()


def die(_):
    os._exit(3)


def test_a_pool_is_its_processes_and_maxtasksperchild_replaces_them(ex):
    for make in (lambda **k: std.get_context("fork").Pool(**k), lambda **k: vmp.Pool(executor=ex, **k)):
        with make(processes=2) as pool:
            # Every call runs in one of the pool's two processes (not a process per call).
            pids = {pool.apply_async(os.getpid).get(60) for _ in range(8)}
            pids |= set(pool.map(pid_of, range(20), chunksize=1))
            assert 1 <= len(pids) <= 2, pids
        with make(processes=2, maxtasksperchild=1) as pool:
            # A process retires after one task and another takes its place.
            assert len(set(pool.map(pid_of, range(6), chunksize=1))) == 6
    with pytest.raises(ValueError, match="maxtasksperchild must be a positive int or None"):
        vmp.Pool(1, maxtasksperchild=0, executor=ex)


def test_a_pool_whose_worker_dies_raises_in_its_calls_instead_of_waiting(ex):
    # The standard library's pool would wait forever for the lost task.
    pool = vmp.Pool(2, executor=ex)
    lost = pool.apply_async(die, (1,))
    with pytest.raises(volley.VolleyError, match="the pool's workers ended"):
        lost.get(60)
    with pytest.raises(volley.VolleyError, match="the pool's workers ended"):
        pool.apply(square, (2,))
    pool.terminate()
    pool.join()


def test_a_pool_dropped_while_running_is_terminated_with_the_standard_librarys_warning(ex):
    pool = vmp.Pool(2, executor=ex)
    pending = pool.apply_async(__import__("time").sleep, (600,))
    assert pool.apply(square, (3,)) == 9
    bursts = list(pool._workers._bursts)
    # A result still waited for keeps its pool alive.
    del pool
    gc.collect()
    assert not any(b.done() for b in bursts)
    with pytest.warns(ResourceWarning, match="unclosed running multiprocessing pool"):
        del pending
        gc.collect()
    assert all(b.record(60)["state"] == "cancelled" for b in bursts)


def test_cpu_count_and_current_process_answer_like_the_standard_library():
    assert vmp.cpu_count() == std.cpu_count()
    assert vmp.current_process().name == std.current_process().name == "MainProcess"


EXAMPLE = """
{import_line}

def f(x):
    return x*x

if __name__ == '__main__':
    with Pool(5) as p:
        print(p.map(f, [1, 2, 3]))
        print(p.starmap(pow, [(2, 3), (3, 2)]))
        print(sorted(p.imap_unordered(f, range(6))))
"""


def test_the_documentations_first_example_runs_unchanged_but_for_the_import(tmp_path):
    import subprocess
    import sys

    outputs = []
    for import_line in ("from multiprocessing import Pool", "from volley.multiprocessing import Pool"):
        script = tmp_path / "example.py"
        script.write_text(EXAMPLE.format(import_line=import_line))
        run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        outputs.append(run.stdout)
    assert outputs[0] == outputs[1] == "[1, 4, 9]\n[8, 9]\n[0, 1, 4, 9, 16, 25]\n"
