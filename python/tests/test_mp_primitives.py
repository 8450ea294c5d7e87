"""Each shared object of volley.multiprocessing against the standard
library's: the same program, run with either module, prints the same
transcript (values, exceptions for misuse), across real processes."""

import multiprocessing as std_mp
import os
import queue
import re
import signal
import threading
import time

import pytest

import volley.multiprocessing as vmp

STD = std_mp.get_context("fork")


@pytest.fixture(params=["stdlib", "volley"])
def mp(request):
    return STD if request.param == "stdlib" else vmp


def both(scenario):
    """The scenario's transcript with the standard library and with Volley: they must be equal."""
    theirs, ours = scenario(STD), scenario(vmp)
    assert ours == theirs
    return ours


def raised(call):
    try:
        result = call()
    except BaseException as e:  # noqa: BLE001 - the transcript records it
        # An object's address differs between the two runs.
        return ("raised", type(e).__name__, re.sub(r"<[^<>]* at 0x[0-9a-f]+>", "<object>", str(e)))
    return ("returned", result)


def test_a_queue_fifo_its_timeouts_and_its_misuse():
    def scenario(mp):
        q = mp.Queue(2)
        out = [raised(lambda: q.get(timeout=0.05)), raised(q.get_nowait)]
        q.put("a")
        q.put(["b", 2])
        out += [raised(lambda: q.put("c", timeout=0.05)), raised(lambda: q.put_nowait("c"))]
        out += [q.full(), q.empty(), q.get(), q.get()]
        q.close()
        out += [raised(lambda: q.put(1)), raised(q.get), raised(q.join_thread)]
        return out

    out = both(scenario)
    assert out[2][0] == "raised" and out[2][1] == "Full"


def test_an_item_that_does_not_pickle_fails_its_put_by_name():
    # (The standard library's put returns, and its feeder thread prints the error later.)
    q = vmp.Queue()
    with pytest.raises(TypeError, match="the item cannot be pickled"):
        q.put(threading.Lock())
    q.put("fine")
    assert q.get(timeout=30) == "fine"


def test_a_joinable_queue_counts_its_tasks():
    def scenario(mp):
        q = mp.JoinableQueue()
        for i in range(3):
            q.put(i)
        got = [q.get() for _ in range(3)]
        for _ in got:
            q.task_done()
        q.join()
        return [got, raised(q.task_done)]

    assert both(scenario)[1] == ("raised", "ValueError", "task_done() called too many times")


def _producer(q, n):
    for i in range(n):
        q.put(i * i)
    q.put(None)


def test_a_queue_carries_items_between_processes_in_order():
    def scenario(mp):
        q = mp.Queue()
        p = mp.Process(target=_producer, args=(q, 20))
        p.start()
        got = list(iter(q.get, None))
        p.join()
        return [got, p.exitcode]

    assert both(scenario) == [[i * i for i in range(20)], 0]


def _echo(conn, other_end):
    other_end.close()  # a forked child holds a copy of the parent's end too
    while True:
        try:
            message = conn.recv()
        except EOFError:
            break
        conn.send(("echo", message))
    conn.close()


def test_a_pipe_both_ways_with_eof_and_one_way_misuse():
    def scenario(mp):
        parent, child = mp.Pipe()
        p = mp.Process(target=_echo, args=(child, parent))
        p.start()
        child.close()  # the child has its own copy: EOF comes once that one is closed too
        out = []
        for m in ([1, None, "x"], b"raw"):
            parent.send(m)
            out.append(parent.recv())
        out.append(parent.poll(0.05))
        parent.close()
        p.join()
        out.append(raised(parent.recv))
        reader, writer = mp.Pipe(duplex=False)
        writer.send_bytes(b"abc")
        writer.send_bytes(b"0123456789", 2, 3)
        writer.send([1, 2])
        buffer = bytearray(8)
        out += [reader.recv_bytes(), reader.recv_bytes_into(buffer, 1), bytes(buffer), reader.poll(), reader.recv()]
        out += [raised(lambda: reader.send(1)), raised(writer.recv)]
        writer.close()
        out.append(raised(reader.recv))
        return out

    out = both(scenario)
    assert out[0] == ("echo", [1, None, "x"]) and out[-1] == ("raised", "EOFError", "")


def _count(lock, counter, n):
    for _ in range(n):
        with lock:
            counter.value += 1


def test_a_lock_makes_increments_from_many_processes_add_up():
    def scenario(mp):
        lock, counter = mp.Lock(), mp.Value("i", 0, lock=False)
        ps = [mp.Process(target=_count, args=(lock, counter, 25)) for _ in range(4)]
        for p in ps:
            p.start()
        for p in ps:
            p.join()
        return counter.value

    assert both(scenario) == 100


def test_locks_and_semaphores_refuse_as_the_standard_library_does():
    def scenario(mp):
        lock, rlock, sem, bounded = mp.Lock(), mp.RLock(), mp.Semaphore(2), mp.BoundedSemaphore(1)
        out = [lock.acquire(), lock.acquire(timeout=0.05), lock.acquire(False)]
        lock.release()
        out.append(raised(lock.release))
        out += [rlock.acquire(), rlock.acquire()]
        rlock.release()
        rlock.release()
        out.append(raised(rlock.release))
        out += [sem.acquire(), sem.acquire(), sem.acquire(timeout=0.05), sem.get_value()]
        sem.release()
        sem.release()
        sem.release()
        out.append(sem.get_value())
        out.append(raised(bounded.release))
        with bounded:
            out.append(bounded.acquire(False))
        out.append(raised(lambda: mp.Semaphore(-1)))
        return out

    both(scenario)


def _other_releases(rlock, out):
    out.put(raised(rlock.release))


def test_only_the_holder_of_an_rlock_releases_it():
    def scenario(mp):
        rlock, out = mp.RLock(), mp.Queue()
        rlock.acquire()
        p = mp.Process(target=_other_releases, args=(rlock, out))
        p.start()
        p.join()
        return out.get(timeout=30)

    assert both(scenario)[0] == "raised"


def _wait_then_report(event, out):
    out.put(("woke", event.wait(30)))


def test_an_event_wakes_every_waiting_process():
    def scenario(mp):
        event, out = mp.Event(), mp.Queue()
        res = [event.is_set(), event.wait(0.05)]
        ps = [mp.Process(target=_wait_then_report, args=(event, out)) for _ in range(3)]
        for p in ps:
            p.start()
        event.set()
        res += [out.get(timeout=30) for _ in ps]
        for p in ps:
            p.join()
        event.clear()
        return res + [event.is_set()]

    assert both(scenario) == [False, False, ("woke", True), ("woke", True), ("woke", True), False]


def _consume(cond, items, out):
    with cond:
        cond.wait_for(lambda: len(items) > 0, timeout=30)
        out.put(items[0])


def test_a_condition_waits_for_a_predicate_and_refuses_unheld_use():
    def scenario(mp):
        cond = mp.Condition()
        manager_list = mp.Manager().list() if mp is vmp else std_mp.get_context("fork").Manager().list()
        out = mp.Queue()
        p = mp.Process(target=_consume, args=(cond, manager_list, out))
        p.start()
        time.sleep(0.2)
        with cond:
            manager_list.append("item")
            cond.notify_all()
        got = out.get(timeout=30)
        p.join()
        res = [got, raised(cond.notify), raised(lambda: cond.wait(0.01))]
        with cond:
            res.append(cond.wait(0.05))
        return res

    assert both(scenario)[0] == "item"


def _at_barrier(barrier, out):
    out.put(barrier.wait(30))


def test_a_barrier_lets_its_parties_through_together_and_breaks_on_timeout():
    def scenario(mp):
        barrier, out = mp.Barrier(3), mp.Queue()
        ps = [mp.Process(target=_at_barrier, args=(barrier, out)) for _ in range(2)]
        for p in ps:
            p.start()
        mine = barrier.wait(30)
        indices = sorted([mine] + [out.get(timeout=30) for _ in ps])
        for p in ps:
            p.join()
        lonely = mp.Barrier(2)
        res = [indices, barrier.parties, raised(lambda: lonely.wait(0.1)), lonely.broken]
        lonely.reset()
        res += [lonely.broken, lonely.n_waiting]
        lonely.abort()
        res.append(raised(lonely.wait))
        return res

    out = both(scenario)
    assert out[0] == [0, 1, 2] and out[2][1] == "BrokenBarrierError"


def _negate(n, a):
    n.value = 3.1415927
    for i in range(len(a)):
        a[i] = -a[i]


def test_shared_values_and_arrays_as_the_documentation_shows():
    def scenario(mp):
        num, arr = mp.Value("d", 0.0), mp.Array("i", range(10))
        p = mp.Process(target=_negate, args=(num, arr))
        p.start()
        p.join()
        chars = mp.Array("c", b"hello")
        res = [num.value, arr[:], arr[2:5], arr[::-1], arr[1:8:3], arr[-1], len(arr), raised(lambda: arr[10])]
        res.append(chars.value)
        arr[0:3] = [7, 8, 9]
        res += [arr[:4], raised(lambda: arr.__setitem__(slice(0, 2), [1])), mp.Value("i", 5, lock=False).value]
        with num.get_lock():
            num.value += 1
        return res + [round(num.value, 4)]

    out = both(scenario)
    assert out[0] == 3.1415927 and out[1] == [0, -1, -2, -3, -4, -5, -6, -7, -8, -9]


def _fill(d, lst, ns):
    d[1] = "1"
    d["2"] = 2
    d[0.25] = None
    lst.reverse()
    ns.x = ns.x + 1


def test_a_manager_shares_dicts_lists_and_namespaces():
    def scenario(mp):
        with mp.Manager() as manager:
            d, lst, ns = manager.dict(), manager.list(range(10)), manager.Namespace(x=1)
            p = mp.Process(target=_fill, args=(d, lst, ns))
            p.start()
            p.join()
            res = [str(d), str(lst), ns.x, d.get("missing", "dflt"), sorted(d.keys(), key=str), len(lst)]
            res += [raised(lambda: d["missing"]), raised(lambda: ns.missing), raised(lambda: lst.remove(99))]
            lst.append(99)
            d.update(a=1)
            res += [lst[-1], d.pop("a"), 3 in lst, list(lst)[:3]]
            return res

    assert both(scenario)[:2] == ["{1: '1', '2': 2, 0.25: None}", "[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]"]


def _exits(how):
    if how == "raise":
        raise ValueError("boom")
    if how == "exit3":
        raise SystemExit(3)
    if how == "sleep":
        time.sleep(60)
    if how == "os_exit5":
        os._exit(5)
    if how == "killed":
        # (Not SIGSEGV: pytest's faulthandler would print the forked child's stack.)
        os.kill(os.getpid(), signal.SIGKILL)


def test_processes_exit_codes_names_and_misuse():
    def scenario(mp):
        res = []
        for how in ("ok", "raise", "exit3", "os_exit5", "killed"):
            p = mp.Process(target=_exits, args=(how,), name=f"p-{how}")
            res.append((p.name, p.exitcode, p.is_alive(), p.pid))
            p.start()
            p.join()
            res.append((p.exitcode, p.is_alive(), isinstance(p.pid, int)))
            res.append(raised(p.start))
        sleeper = mp.Process(target=_exits, args=("sleep",), daemon=True)
        sleeper.start()
        # The pid of a running process (a process of the invoker's machine: here, this one's).
        res.append(sleeper.is_alive())
        res.append(sleeper.pid != os.getpid() and os.path.exists(f"/proc/{sleeper.pid}"))
        sleeper.terminate()
        sleeper.join(30)
        res += [sleeper.exitcode, raised(mp.Process(target=_exits).join)]
        res.append(mp.current_process().name)
        return res

    out = both(scenario)
    assert out[1] == (0, False, True) and out[4] == (1, False, True) and out[7] == (3, False, True)
    assert out[10] == (5, False, True) and out[13] == (-signal.SIGKILL, False, True)
    assert out[-5] is True and out[-4] is True and out[-3] == -15


def test_a_blocking_get_gives_up_at_its_timeout_and_nothing_hangs():
    q = vmp.Queue()
    started = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.3)
    assert time.monotonic() - started >= 0.3


class Squarer(std_mp.Process):
    """A subclass with its own ``run`` (the standard library's base; Volley's below)."""

    def __init__(self, q, n):
        super().__init__()
        self.q, self.n = q, n

    def run(self):
        self.q.put((type(self).__name__, self.n * self.n))


class VolleySquarer(vmp.Process):
    def __init__(self, q, n):
        super().__init__()
        self.q, self.n = q, n

    def run(self):
        self.q.put(("Squarer", self.n * self.n))


def _shout(i):
    print(f"call {i} speaks")
    return i


def test_a_process_subclass_runs_its_own_run_and_pool_workers_print_here(capfd):
    for mp, cls in ((STD, Squarer), (vmp, VolleySquarer)):
        q = mp.Queue()
        p = cls(q, 7)
        p.start()
        p.join()
        assert q.get(timeout=30) == ("Squarer", 49) and p.exitcode == 0
    with vmp.Pool(2) as pool:
        assert pool.map(_shout, range(3)) == [0, 1, 2]
        vmp.process.default_executor().program().printed()
    out = capfd.readouterr().out
    assert sorted(line for line in out.splitlines() if "speaks" in line) == [f"call {i} speaks" for i in range(3)]


def test_a_session_is_reached_with_its_token_only():
    from volley import _native, _session

    ref = dict(vmp.process.default_executor().program().ref)
    q = vmp.Queue()
    q.put("mine")
    ref["token"] = "0" * len(ref["token"])
    with pytest.raises(RuntimeError, match="reached with its token only"):
        _native.Session(ref["url"], ref["id"], ref["token"]).op('{"object": %d, "op": {"type": "get"}}' % q._id)
    assert q.get(timeout=30) == "mine"
