"""The Python side of ``volley bench python``: each figure beside its baseline,
measured in the same run, every result checked.

- map: N trivial calls, time to all results, vs ``multiprocessing.Pool``
  (created for the run, and already made) on the same calls;
- start: submit to every worker of a burst running its code, warm (each run
  once the invokers' warm pool holds a process per pack, as ``volley bench
  startup`` waits), burst mode (packs of g) vs FaaS mode (g = 1, the Redis
  transport), p50 and p99;
- all_to_all: numpy arrays of B bytes between every pair of W Python workers
  in packs of g, vs the same exchange among Rust workers (the built-in
  ``exchange``), per round (the slowest worker's time), p50;
- a ``volley.multiprocessing.Pool`` of P processes (one burst serving a task
  queue) vs the standard library's: time to make it and have its first
  result, and an ``apply``'s round trip (p50), every result checked;
- shared objects of ``volley.multiprocessing`` (on the controller) vs the
  standard library's (in this machine's kernel): a queue's put and get, a
  lock's acquire and release, per pair (p50), and P processes adding to one
  locked value (time to the checked total).

Run by ``volley bench python`` (which starts the platform); by hand:
``python -m volley.bench --controller URL``.
"""

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time

import numpy as np

import volley
from volley._started import started_at


def inc(x):
    return x + 1


def _percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def bench_map(ex, calls, granularity):
    items = list(range(calls))
    expected = [x + 1 for x in items]
    # A quarter of the calls to a worker: four processes, as many as a pool's
    # (first: the thousand processes of the other map would load the machine under it).
    chunk = -(-calls // 4)
    start = time.perf_counter()
    got = ex.get_result(ex.map(inc, items, granularity=granularity, chunksize=chunk))
    chunked_s = time.perf_counter() - start
    assert got == expected, "the chunked map's results differ from the calls'"
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(os.cpu_count()) as pool:
        made = time.perf_counter() - start
        assert pool.map(inc, items) == expected
    pool_s = time.perf_counter() - start
    with multiprocessing.get_context("fork").Pool(os.cpu_count()) as pool:
        start = time.perf_counter()
        assert pool.map(inc, items) == expected
        warm_pool_s = time.perf_counter() - start
    # A worker, so a process, per call.
    start = time.perf_counter()
    got = ex.get_result(ex.map(inc, items, granularity=granularity))
    volley_s = time.perf_counter() - start
    assert got == expected, "the map's results differ from the calls'"
    return {
        "calls": calls,
        "granularity": granularity,
        "volley_s": volley_s,
        "chunksize": chunk,
        "chunked_s": chunked_s,
        "pool_s": pool_s,
        "pool_made_s": made,
        "warm_pool_s": warm_pool_s,
        "processes": os.cpu_count(),
    }


_LITHOPS = """
import sys, time, lithops
def inc(x): return x + 1
calls = int(sys.argv[1])
start = time.perf_counter()
fexec = lithops.LocalhostExecutor(log_level=None)
got = fexec.get_result(fexec.map(inc, list(range(calls))))
assert got == [x + 1 for x in range(calls)], "Lithops' results differ from the calls'"
print(time.perf_counter() - start)
fexec.clean()
"""


def bench_lithops(python, calls):
    """The same calls through Lithops' localhost executor, with an interpreter
    Lithops is installed for (its workers run ``python`` from PATH: that one)."""
    import subprocess

    env = dict(os.environ, PATH=os.path.dirname(python) + os.pathsep + os.environ.get("PATH", ""))
    out = subprocess.run([python, "-c", _LITHOPS, str(calls)], env=env, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"Lithops failed: {out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def _start_once(ex, workers, granularity, transport):
    submitted = time.time()
    starts = ex.burst(started_at, workers=workers, granularity=granularity, transport=transport)
    assert len(starts) == workers
    return max(starts) - submitted


def _wait_for_warm(ex, packs):
    """Until the invokers hold ``packs`` warm processes (the pool refills after a burst)."""
    deadline = time.monotonic() + 120
    while sum(i.get("warm", 0) for i in json.loads(ex._client.invokers())) < packs:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the warm pool did not refill to {packs} processes within 120 s")
        time.sleep(0.05)
    # The last started processes settle (their start-up work is done off the clock).
    time.sleep(0.2)


def bench_start(ex, workers, granularity, runs, transport=None):
    _start_once(ex, workers, granularity, transport)  # makes the pool's demand known
    packs = -(-workers // granularity)
    samples = []
    for _ in range(runs):
        _wait_for_warm(ex, packs)
        samples.append(_start_once(ex, workers, granularity, transport))
    return {
        "workers": workers,
        "granularity": granularity,
        "transport": transport or "default",
        "p50_ms": 1e3 * statistics.median(samples),
        "p99_ms": 1e3 * _percentile(samples, 0.99),
    }


def _fill(src, dst, rnd):
    return (src * 31 + dst * 7 + rnd) % 251


def python_exchange(w):
    nbytes, rounds = w.params["bytes"], w.params["rounds"]
    seconds = []
    for rnd in range(rounds):
        parts = [np.full(nbytes, _fill(w.rank, dst, rnd), dtype=np.uint8) for dst in range(w.size)]
        w.comm.barrier()
        start = time.perf_counter()
        got = w.comm.all_to_all(parts)
        seconds.append(time.perf_counter() - start)
        for src, part in enumerate(got):
            if part.size != nbytes or not (part == _fill(src, w.rank, rnd)).all():
                raise ValueError(f"round {rnd}: the part from rank {src} is not what it sent")
    return seconds


def _rounds(per_worker):
    """The slowest worker's time of each round."""
    return [max(times) for times in zip(*per_worker)]


def bench_all_to_all(ex, workers, granularity, nbytes, rounds):
    params = {"bytes": nbytes, "rounds": rounds}
    python = _rounds(ex.burst(python_exchange, workers=workers, granularity=granularity, params=params))
    request = {"function": "exchange", "workers": workers, "granularity": granularity, "params": params}
    record = json.loads(ex._client.submit(json.dumps(request)))
    record = json.loads(ex._client.wait(record["id"], 600))
    if record["state"] != "succeeded":
        raise RuntimeError(f"the Rust exchange {record['state']}: {record.get('error')}")
    rust = _rounds([w["result"]["seconds"] for w in record["workers"]])
    # The first round pays for connections and buffers in both: it is left out.
    python_ms, rust_ms = 1e3 * statistics.median(python[1:]), 1e3 * statistics.median(rust[1:])
    return {
        "workers": workers,
        "granularity": granularity,
        "bytes": nbytes,
        "python_ms": python_ms,
        "rust_ms": rust_ms,
        "ratio": python_ms / rust_ms,
    }


def _add(lock, total, n):
    for _ in range(n):
        with lock:
            total.value += 1


def _shared_ops(mp, ops):
    q, lock = mp.Queue(), mp.Lock()
    queue_us, lock_us = [], []
    for i in range(ops):
        start = time.perf_counter()
        q.put(i)
        got = q.get()
        queue_us.append(1e6 * (time.perf_counter() - start))
        assert got == i, "the queue gave back another item"
        start = time.perf_counter()
        lock.acquire()
        lock.release()
        lock_us.append(1e6 * (time.perf_counter() - start))
    return statistics.median(queue_us), statistics.median(lock_us)


def _counted(mp, processes, adds):
    lock, total = mp.Lock(), mp.Value("i", 0, lock=False)
    start = time.perf_counter()
    ps = [mp.Process(target=_add, args=(lock, total, adds)) for _ in range(processes)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    seconds = time.perf_counter() - start
    assert total.value == processes * adds, f"the locked total is {total.value}, not {processes * adds}"
    return seconds


def _redis_pair_us(ops):
    """A put and a get on a Redis list (LPUSH, RPOP), one round trip each: what a
    queue costs where a Redis holds it (Lithops' multiprocessing), p50 in us."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("VOLLEY_REDIS_URL", "redis://127.0.0.1:6379"))
    key = f"volley-bench-{os.getpid()}"

    def command(sock, reader, *parts):
        sock.sendall(b"".join([f"*{len(parts)}\r\n".encode()] + [f"${len(p)}\r\n{p}\r\n".encode() for p in parts]))
        line = reader.readline()
        if line.startswith(b"$") and line != b"$-1\r\n":
            return reader.read(int(line[1:]) + 2)[:-2]
        if line.startswith(b"-"):
            raise RuntimeError(f"Redis refused: {line!r}")
        return line

    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379), timeout=10) as sock:
        reader = sock.makefile("rb")
        pairs = []
        for i in range(ops):
            start = time.perf_counter()
            command(sock, reader, "LPUSH", key, str(i))
            got = command(sock, reader, "RPOP", key)
            pairs.append(1e6 * (time.perf_counter() - start))
            assert got == str(i).encode(), "Redis gave back another item"
        command(sock, reader, "DEL", key)
    return statistics.median(pairs)


def _pool_applies(mp, processes, applies):
    start = time.perf_counter()
    with mp.Pool(processes) as pool:
        assert pool.apply(inc, (0,)) == 1, "the pool's first call gave another result"
        made_s = time.perf_counter() - start
        times = []
        for i in range(applies):
            start = time.perf_counter()
            got = pool.apply(inc, (i,))
            times.append(1e6 * (time.perf_counter() - start))
            assert got == i + 1, "the pool's call gave another result"
    return made_s, statistics.median(times)


def bench_pool(processes, applies):
    import volley.multiprocessing as vmp

    ours = _pool_applies(vmp, processes, applies)
    theirs = _pool_applies(multiprocessing.get_context("fork"), processes, applies)
    return {
        "processes": processes,
        "applies": applies,
        "made_ms": 1e3 * ours[0],
        "std_made_ms": 1e3 * theirs[0],
        "apply_us": ours[1],
        "std_apply_us": theirs[1],
    }


def bench_shared(ops, processes, adds):
    import volley.multiprocessing as vmp

    std = multiprocessing.get_context("fork")
    ours, theirs = _shared_ops(vmp, ops), _shared_ops(std, ops)
    return {
        "ops": ops,
        "queue_us": ours[0],
        "std_queue_us": theirs[0],
        "lock_us": ours[1],
        "std_lock_us": theirs[1],
        "redis_queue_us": _redis_pair_us(ops),
        "processes": processes,
        "adds": adds,
        "counter_s": _counted(vmp, processes, adds),
        "std_counter_s": _counted(std, processes, adds),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m volley.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--controller", required=True)
    parser.add_argument("--api-key")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--map-granularity", type=int, default=50)
    parser.add_argument("--start-workers", type=int, default=64)
    parser.add_argument("--start-granularity", type=int, default=16)
    parser.add_argument("--start-runs", type=int, default=10)
    parser.add_argument("--faas-transport", default="redis")
    parser.add_argument("--a2a-workers", type=int, default=16)
    parser.add_argument("--a2a-granularity", type=int, default=8)
    parser.add_argument("--a2a-bytes", type=int, default=1 << 20)
    parser.add_argument("--a2a-rounds", type=int, default=6)
    parser.add_argument("--pool-processes", type=int, default=4)
    parser.add_argument("--pool-applies", type=int, default=300)
    parser.add_argument("--shared-ops", type=int, default=500)
    parser.add_argument("--shared-processes", type=int, default=4)
    parser.add_argument("--shared-adds", type=int, default=100)
    parser.add_argument("--lithops", metavar="PYTHON", help="also run the map's calls on Lithops' localhost executor")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    ex = volley.Executor(controller=args.controller, api_key=args.api_key)
    # volley.multiprocessing's objects and processes use the process's default executor: this platform's.
    os.environ["VOLLEY_CONTROLLER"] = args.controller
    if args.api_key:
        os.environ["VOLLEY_API_KEY"] = args.api_key
    load_before = _load()
    # The map's thousand processes go last: their ends would load the machine under the others.
    report = {
        "start": [
            bench_start(ex, args.start_workers, args.start_granularity, args.start_runs),
            bench_start(ex, args.start_workers, 1, args.start_runs, args.faas_transport),
        ],
        "all_to_all": bench_all_to_all(ex, args.a2a_workers, args.a2a_granularity, args.a2a_bytes, args.a2a_rounds),
    }
    report["pool"] = bench_pool(args.pool_processes, args.pool_applies)
    report["shared"] = bench_shared(args.shared_ops, args.shared_processes, args.shared_adds)
    report["map"] = bench_map(ex, args.calls, args.map_granularity)
    report["lithops_s"] = bench_lithops(args.lithops, args.calls) if args.lithops else None
    report["load"] = {"before": load_before, "after": _load()}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    m = report["map"]
    print(f"map of {m['calls']} calls (packs of {m['granularity']}): volley {m['volley_s'] * 1e3:.0f} ms "
          f"(a process per call), {m['chunked_s'] * 1e3:.0f} ms ({m['chunksize']} calls per process); "
          f"multiprocessing.Pool({m['processes']}) {m['pool_s'] * 1e3:.0f} ms made and run "
          f"({m['pool_made_s'] * 1e3:.0f} ms to make), {m['warm_pool_s'] * 1e3:.0f} ms already made; "
          f"to the pool made for it: {m['volley_s'] / m['pool_s']:.1f}x and {m['chunked_s'] / m['pool_s']:.1f}x")
    if report["lithops_s"] is not None:
        print(f"the same calls on Lithops' localhost executor: {report['lithops_s'] * 1e3:.0f} ms "
              f"(volley, a process per call: {report['lithops_s'] / m['volley_s']:.1f}x faster)")
    burst, faas = report["start"]
    print(f"start of {burst['workers']} workers, warm: packs of {burst['granularity']} p50 {burst['p50_ms']:.1f} ms "
          f"p99 {burst['p99_ms']:.1f} ms; FaaS (g = 1, {faas['transport']}) p50 {faas['p50_ms']:.1f} ms "
          f"p99 {faas['p99_ms']:.1f} ms; burst/FaaS {burst['p50_ms'] / faas['p50_ms']:.2f}x")
    a = report["all_to_all"]
    print(f"all_to_all of {a['bytes']} B per pair among {a['workers']} workers in packs of {a['granularity']}: "
          f"Python {a['python_ms']:.1f} ms, Rust {a['rust_ms']:.1f} ms per round (p50): {a['ratio']:.2f}x")
    p = report["pool"]
    print(f"Pool({p['processes']}): made with its first result in {p['made_ms']:.0f} ms (the standard library's "
          f"{p['std_made_ms']:.0f} ms); apply round trip p50 {p['apply_us']:.0f} us vs {p['std_apply_us']:.0f} us "
          f"({p['apply_us'] / p['std_apply_us']:.1f}x), {p['applies']} applies")
    s = report["shared"]
    print(f"shared objects ({s['ops']} pairs, p50): queue put+get {s['queue_us']:.0f} us vs the standard library's "
          f"{s['std_queue_us']:.0f} us ({s['queue_us'] / s['std_queue_us']:.1f}x) and a Redis list's LPUSH+RPOP "
          f"{s['redis_queue_us']:.0f} us ({s['queue_us'] / s['redis_queue_us']:.1f}x); lock acquire+release "
          f"{s['lock_us']:.0f} us vs {s['std_lock_us']:.1f} us ({s['lock_us'] / s['std_lock_us']:.0f}x); "
          f"{s['processes']} processes adding {s['adds']} each to a locked Value: {s['counter_s'] * 1e3:.0f} ms "
          f"vs {s['std_counter_s'] * 1e3:.0f} ms ({s['counter_s'] / s['std_counter_s']:.1f}x)")
    print(f"load average before {report['load']['before']}, after {report['load']['after']}")


if __name__ == "__main__":
    sys.exit(main())
