"""Python workers in sandboxed packs (issue 15, `volley up --sandbox on`):
each pack process runs under a uid of its own, in its own namespaces; the
workers still share their pack's memory and talk to other packs."""

import os

import numpy as np


def _identity(worker, data_dir):
    total = worker.comm.all_reduce(np.full(1 << 16, worker.rank + 1, dtype=np.int64))
    try:
        os.listdir(data_dir)
        reached = "listed"
    except OSError as e:
        reached = type(e).__name__
    return {
        "rank": worker.rank,
        "uid": os.getuid(),
        "sum": int(total[0]),
        "data_dir": reached,
        "home": os.environ.get("HOME", ""),
    }


def test_python_workers_run_in_sandboxed_packs_each_under_a_uid_of_its_own(sandboxed_up):
    data_dir = sandboxed_up.data
    results = sandboxed_up.executor.burst(lambda w: _identity(w, data_dir), 4, granularity=2)
    by_rank = sorted(results, key=lambda r: r["rank"])
    assert [r["sum"] for r in by_rank] == [1 + 2 + 3 + 4] * 4, by_rank
    uids = [r["uid"] for r in by_rank]
    # Ranks 0-1 share pack 0's process, ranks 2-3 pack 1's: one uid each, neither root's.
    assert uids[0] == uids[1] and uids[2] == uids[3] and uids[0] != uids[2], uids
    assert all(uid >= 200_000 for uid in uids), uids
    # The platform's data directory is out of reach; the pack's own home is its cell.
    assert all(r["data_dir"] in ("PermissionError", "FileNotFoundError") for r in by_rank), by_rank
    assert all("/cells/" in r["home"] for r in by_rank), by_rank


def test_a_map_runs_in_sandboxed_packs(sandboxed_up):
    ex = sandboxed_up.executor
    assert ex.get_result(ex.map(lambda x: (x * x, os.getuid() >= 200_000), range(8))) == [(x * x, True) for x in range(8)]
