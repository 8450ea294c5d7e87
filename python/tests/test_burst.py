"""Bursts of Python workers: ranks, the communicator's every call, failures."""

import numpy as np
import pytest

import volley


def test_every_worker_knows_its_place(ex):
    info = ex.burst(lambda w: (w.rank, w.size, w.pack), workers=6, granularity=4)
    assert [i[0] for i in info] == list(range(6))
    assert {i[1] for i in info} == {6}
    assert [i[2] for i in info] == [0, 0, 0, 0, 1, 1], "packs of 4: ranks 0-3, then 4-5"


def point_to_point(w):
    c = w.comm
    right, left = (w.rank + 1) % w.size, (w.rank - 1) % w.size
    c.send({"from": w.rank}, right, tag=1)
    got = c.recv(left, tag=1)
    req = c.isend(np.arange(4) * w.rank, right, tag=2)
    incoming = c.irecv(left, tag=2)
    array = incoming.wait()
    req.wait()
    any_source = None
    if w.rank == 0:
        any_source = sorted(c.recv(None, tag=3) for _ in range(w.size - 1))
    else:
        c.send(w.rank, 0, tag=3)
    return got["from"], array.tolist(), any_source


def test_send_recv_and_nonblocking_requests(ex):
    results = ex.burst(point_to_point, workers=4, granularity=2)
    for rank, (got, array, any_source) in enumerate(results):
        left = (rank - 1) % 4
        assert got == left
        assert array == [0, left, 2 * left, 3 * left]
    assert results[0][2] == [1, 2, 3]


def collectives(w):
    c = w.comm
    c.barrier()
    shared = c.broadcast({"seed": 42} if w.rank == 0 else None, root=0)
    mine = c.scatter([f"part {i}" for i in range(w.size)] if w.rank == 1 else None, root=1)
    gathered = c.gather(w.rank * 10, root=2)
    everyone = c.all_gather(bytes([w.rank]))
    exchanged = c.all_to_all([np.full(3, w.rank * 100 + dst, dtype=np.int32) for dst in range(w.size)])
    total = c.all_reduce(np.array([w.rank, 1.0]), op="sum")
    biggest = c.all_reduce(w.rank, op="max")
    at_root = c.reduce(np.array([w.rank], dtype=np.int64), op="min", root=0)
    # 7 elements over 5 ranks: blocks of 2, 2, 1, 1, 1.
    block = c.reduce_scatter(np.arange(7, dtype=np.float64) * (w.rank + 1), op="sum")
    return {
        "shared": shared,
        "mine": mine,
        "gathered": gathered,
        "everyone": [bytes(e) for e in everyone],
        "exchanged": [e.tolist() for e in exchanged],
        "total": total.tolist(),
        "biggest": biggest,
        "at_root": None if at_root is None else at_root.tolist(),
        "block": block.tolist(),
    }


def test_every_collective_gives_what_the_standard_says(ex):
    n = 5
    results = ex.burst(collectives, workers=n, granularity=2)
    for rank, r in enumerate(results):
        assert r["shared"] == {"seed": 42}
        assert r["mine"] == f"part {rank}"
        assert r["gathered"] == ([i * 10 for i in range(n)] if rank == 2 else None)
        assert r["everyone"] == [bytes([i]) for i in range(n)]
        assert r["exchanged"] == [[src * 100 + rank] * 3 for src in range(n)]
        assert r["total"] == [sum(range(n)), float(n)]
        assert r["biggest"] == n - 1
        assert r["at_root"] == ([0] if rank == 0 else None)
        starts = [0, 2, 4, 5, 6, 7]
        ranks_sum = sum(range(1, n + 1))
        assert r["block"] == [float(i * ranks_sum) for i in range(starts[rank], starts[rank + 1])]


def test_large_arrays_move_intact(ex):
    def exchange(w):
        parts = [np.full(1 << 17, w.rank * w.size + dst, dtype=np.float64) for dst in range(w.size)]
        got = w.comm.all_to_all(parts)
        return [float(g.sum()) / g.size for g in got]

    results = ex.burst(exchange, workers=4, granularity=2)
    for rank, means in enumerate(results):
        assert means == [float(src * 4 + rank) for src in range(4)]


def shared_memory_rounds(w):
    """Large messages through the pack's shared memory: in the pack and across
    packs, kept or dropped, changed by their receiver."""
    import os

    from volley import _arena

    c = w.comm
    kept = []
    for round_ in range(40):
        parts = [np.full(1 << 16, round_ * 1000 + w.rank * w.size + dst, dtype=np.int64) for dst in range(w.size)]
        got = c.all_to_all(parts)
        for src, g in enumerate(got):
            assert (g == round_ * 1000 + src * w.size + w.rank).all(), f"round {round_}: wrong data from {src}"
        if round_ % 10 == 0:
            kept.append(got[0])
    # A broadcast array is one message for every receiver of the pack: changing
    # one's copy must not change another's.
    big = c.broadcast(np.arange(1 << 16, dtype=np.int64) if w.rank == 0 else None, root=0)
    big[:] = -w.rank
    c.barrier()
    again = c.broadcast(np.arange(1 << 16, dtype=np.int64) if w.rank == 0 else None, root=0)
    c.barrier()
    unchanged = bool((again == np.arange(1 << 16)).all()) and bool((big == -w.rank).all())
    # Arrays kept from early rounds are still what they were.
    intact = all((k == i * 10 * 1000 + 0 * w.size + w.rank).all() for i, k in enumerate(kept))
    # Slots are given back: 40 rounds of 4 x 512 KiB do not pile up.
    arena_bytes = os.fstat(_arena._fd).st_size if _arena.attached() else None
    return unchanged, intact, arena_bytes


def test_large_messages_go_through_shared_memory_and_their_slots_are_reused(ex):
    results = ex.burst(shared_memory_rounds, workers=4, granularity=2)
    for unchanged, intact, arena_bytes in results:
        assert unchanged, "a receiver's change reached another receiver or the sender"
        assert intact, "an array kept from an earlier round changed"
        assert arena_bytes is not None, "the workers got no shared memory from their pack"
        # A round takes at most 2 x 4 x 512 KiB per worker (sent and received), 2 workers per pack.
        assert arena_bytes <= 64 << 20, f"the pack's shared memory grew to {arena_bytes} bytes"


def test_params_reach_every_worker(ex):
    results = ex.burst(lambda w: w.params["scale"] * w.rank, workers=3, params={"scale": 7})
    assert results == [0, 7, 14]


def fail_at_two(w):
    if w.rank == 2:
        raise ValueError("rank two refuses")
    w.comm.barrier()
    return w.rank


def test_a_worker_exception_fails_the_burst_naming_the_rank(ex):
    with pytest.raises(volley.WorkerError) as caught:
        ex.burst(fail_at_two, workers=4, granularity=2, timeout=60)
    assert caught.value.rank == 2
    assert "ValueError: rank two refuses" in str(caught.value)
    assert "fail_at_two" in caught.value.remote_traceback


def test_misuse_of_the_communicator_raises_in_the_worker(ex):
    def wrong(w):
        try:
            w.comm.all_to_all([1])
        except ValueError as e:
            return str(e)

    assert ex.burst(wrong, workers=2) == ["all_to_all takes 2 objects, one per rank, not 1"] * 2


def _loaded(w):
    import sys

    return "numpy" in sys.modules


def test_python_pack_processes_preload_numpy_before_they_count_as_started(ex):
    # Nothing the function's pickle references imports numpy: the fork server did (--python-preload).
    assert ex.burst(_loaded, workers=2) == [True, True]


def phased(w):
    w.phase("load")
    w.comm.barrier()
    w.phase("compute")
    return w.rank


def test_phases_a_worker_marks_reach_its_record(ex):
    # What the dashboard draws on the timeline: each worker's marks, in order, with their times.
    run = ex._submit(phased, "burst", 3, granularity=3)
    record = run.record()
    assert record["state"] == "succeeded", record
    for worker in record["workers"]:
        assert [p["name"] for p in worker["phases"]] == ["load", "compute"]
        load, compute = (p["at"] for p in worker["phases"])
        assert worker["started_at"] <= load <= compute <= worker["finished_at"]
