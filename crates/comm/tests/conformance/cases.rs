//! The cases every transport must pass.

use std::time::Duration;

use bytes::Bytes;
use volley_comm::{Error, Layout, LocalBurst, Op, TransportOptions};

/// Layouts that cover one pack, equal packs, and uneven packs.
fn layouts() -> Vec<Layout> {
    vec![Layout::new(&[3]).unwrap(), Layout::new(&[2, 2]).unwrap(), Layout::new(&[3, 1, 2]).unwrap()]
}

pub fn burst(layout: Layout, transport: &TransportOptions) -> LocalBurst {
    LocalBurst::new(layout).transport(transport.clone()).op_timeout(Duration::from_secs(30))
}

fn byte(v: usize) -> Bytes {
    Bytes::from(vec![v as u8])
}

pub fn point_to_point(t: TransportOptions) {
    for layout in layouts() {
        let out = burst(layout.clone(), &t)
            .run(|comm| {
                let (rank, size) = (comm.rank(), comm.size());
                // Everyone sends 5 numbered messages on tag 1 and one on tag 2 to everyone.
                for dst in 0..size {
                    comm.send(dst, 2, Bytes::from(format!("tag2 from {rank}")))?;
                    for i in 0..5 {
                        comm.send(dst, 1, Bytes::from(vec![rank as u8, i]))?;
                    }
                }
                for src in 0..size {
                    for i in 0..5 {
                        let m = comm.recv(src, 1)?;
                        assert_eq!(&m[..], &[src as u8, i], "messages from {src} overtook each other");
                    }
                }
                let mut seen = Vec::new();
                for _ in 0..size {
                    let (src, m) = comm.recv_any(2)?;
                    assert_eq!(m, Bytes::from(format!("tag2 from {src}")));
                    seen.push(src);
                }
                seen.sort();
                assert_eq!(seen, (0..size).collect::<Vec<_>>());
                Ok(comm.stats())
            })
            .unwrap();
        // Each worker sent 6 messages per destination; the remote ones are those outside its pack.
        for (rank, stats) in out.iter().enumerate() {
            let local = layout.pack_size(layout.pack_of(rank)) as u64;
            assert_eq!(stats.local_messages, 6 * local);
            assert_eq!(stats.remote_messages, 6 * (layout.workers() as u64 - local));
        }
    }
}

pub fn nonblocking(t: TransportOptions) {
    burst(Layout::new(&[2, 3]).unwrap(), &t)
        .run(|comm| {
            let size = comm.size();
            // Receives posted before anything is sent are matched in posting order.
            let posted: Vec<_> = (0..size).map(|src| comm.irecv(src, 9)).collect();
            let any_first = comm.irecv_any(10);
            let sends: Vec<_> = (0..size).map(|dst| comm.isend(dst, 9, byte(comm.rank()))).collect();
            comm.send((comm.rank() + 1) % size, 10, byte(comm.rank()))?;
            for s in sends {
                s.wait()?;
            }
            for (src, r) in posted.into_iter().enumerate() {
                let (from, data) = r.wait()?;
                assert_eq!((from, data), (src, byte(src)));
            }
            let (from, _) = any_first.wait()?;
            assert_eq!(from, (comm.rank() + size - 1) % size);
            // test() reports without blocking; a message to self is there at once.
            let mut r = comm.irecv(comm.rank(), 11);
            assert!(r.test().is_none());
            comm.send(comm.rank(), 11, byte(7))?;
            assert_eq!(r.test().unwrap()?.1, byte(7));
            Ok(())
        })
        .unwrap();
}

pub fn large_messages(t: TransportOptions) {
    const SIZE: usize = 20 << 20;
    burst(Layout::new(&[1, 1]).unwrap(), &t)
        .run(|comm| {
            let pattern = |seed: usize| -> Bytes { (0..SIZE).map(|i| ((i * 31 + seed) % 251) as u8).collect() };
            let peer = 1 - comm.rank();
            comm.send(peer, 0, pattern(comm.rank()))?;
            let got = comm.recv(peer, 0)?;
            assert_eq!(got.len(), SIZE);
            assert!(got == pattern(peer), "large message corrupted");
            Ok(())
        })
        .unwrap();
}

/// Many large messages held by the receiver at once, then checked: in
/// `shm` mode each stays in its own segment until dropped, so a segment in
/// use must never be written again (and the mode must really be used).
pub fn held_messages(t: TransportOptions) {
    const COUNT: usize = 24;
    const SIZE: usize = (1 << 20) + 3;
    let shared = t.name() == "shm";
    burst(Layout::new(&[1, 1]).unwrap(), &t)
        .run(move |comm| {
            let pattern = |k: usize| -> Bytes { (0..SIZE).map(|i| ((i * 7 + k * 13) % 251) as u8).collect() };
            if comm.rank() == 0 {
                for k in 0..COUNT {
                    comm.send(1, k as u64, pattern(k))?;
                }
                comm.recv(1, 0)?;
                return Ok(());
            }
            let held: Vec<Bytes> = (0..COUNT).map(|k| comm.recv(0, k as u64)).collect::<Result<_, _>>()?;
            if shared {
                let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
                assert!(maps.contains("memfd:volley-shm"), "shm mode maps no shared memory segment");
            }
            for (k, got) in held.iter().enumerate() {
                assert!(*got == pattern(k), "held message {k} changed under its receiver");
            }
            drop(held);
            // Segments released: more messages reuse them.
            comm.send(0, 0, Bytes::from_static(b"done"))?;
            Ok(())
        })
        .unwrap();
}

pub fn collectives(t: TransportOptions) {
    for layout in layouts() {
        let n = layout.workers();
        burst(layout, &t)
            .run(move |comm| {
                let r = comm.rank();
                comm.barrier()?;
                let root = n - 1;
                assert_eq!(comm.broadcast(root, byte(if r == root { 42 } else { 0 }))?, byte(42));
                let parts = if r == 1 % n { (0..n).map(|i| byte(100 + i)).collect() } else { Vec::new() };
                assert_eq!(comm.scatter(1 % n, parts)?, byte(100 + r));
                let gathered = comm.gather(0, byte(r * 2))?;
                if r == 0 {
                    assert_eq!(gathered.unwrap(), (0..n).map(|i| byte(i * 2)).collect::<Vec<_>>());
                } else {
                    assert!(gathered.is_none());
                }
                assert_eq!(comm.all_gather(byte(r))?, (0..n).map(byte).collect::<Vec<_>>());
                let parts: Vec<Bytes> = (0..n).map(|dst| Bytes::from(vec![r as u8, dst as u8])).collect();
                let got = comm.all_to_all(parts)?;
                assert_eq!(got, (0..n).map(|src| Bytes::from(vec![src as u8, r as u8])).collect::<Vec<_>>());

                let sum_f64 = comm.all_reduce(&[r as f64, 0.5], Op::Sum)?;
                assert_eq!(sum_f64, vec![(n * (n - 1) / 2) as f64, 0.5 * n as f64]);
                assert_eq!(comm.all_reduce(&[r as f32], Op::Max)?, vec![(n - 1) as f32]);
                assert_eq!(comm.all_reduce(&[-(r as i64)], Op::Min)?, vec![-((n - 1) as i64)]);
                assert_eq!(comm.all_reduce(&[r as u64 + 1], Op::Sum)?, vec![(n * (n + 1) / 2) as u64]);
                let reduced = comm.reduce(n / 2, &[r as u64], Op::Max)?;
                assert_eq!(reduced, if r == n / 2 { Some(vec![n as u64 - 1]) } else { None });
                // A user function that is associative but not commutative shows the rank order.
                let concat = comm.all_reduce_with(byte(r), |a, b| [a, b].concat())?;
                assert_eq!(&concat[..], &(0..n as u8).collect::<Vec<_>>()[..]);
                let at_root = comm.reduce_with(0, byte(r), |a, b| [a, b].concat())?;
                assert_eq!(at_root.is_some(), r == 0);
                let root = n - 1;
                let in_place = comm.reduce_in_place(root, byte(r), |acc, b| acc.extend_from_slice(b))?;
                assert_eq!(in_place.map(|b| b.to_vec()), (r == root).then(|| (0..n as u8).collect::<Vec<_>>()));
                Ok(())
            })
            .unwrap();
    }
}

pub fn one_transfer_per_pack_pair(t: TransportOptions) {
    // Packs of 3, 2 and 2: whatever the number of messages, a collective moves
    // one transfer per (source pack, destination pack).
    let layout = Layout::new(&[3, 2, 2]).unwrap();
    let transfers = |op: fn(&volley_comm::Comm) -> volley_comm::Result<()>| -> u64 {
        let stats = burst(layout.clone(), &t).run(move |comm| op(comm).map(|_| comm.stats())).unwrap();
        stats.iter().map(|s| s.remote_transfers).sum()
    };
    assert_eq!(transfers(|c| c.all_to_all((0..c.size()).map(byte).collect()).map(drop)), 3 * 2);
    assert_eq!(transfers(|c| c.all_gather(byte(c.rank())).map(drop)), 3 * 2);
    assert_eq!(transfers(|c| c.gather(0, byte(c.rank())).map(drop)), 2);
    assert_eq!(
        transfers(|c| {
            let parts = if c.rank() == 0 { (0..c.size()).map(byte).collect() } else { Vec::new() };
            c.scatter(0, parts).map(drop)
        }),
        2
    );
    assert_eq!(transfers(|c| c.broadcast(6, byte(1)).map(drop)), 2);
    // A reduction: one partial from each other pack to the root's, then one broadcast per pack.
    assert_eq!(transfers(|c| c.all_reduce(&[1u64], Op::Sum).map(drop)), 2 + 2);
    // A large one goes through blocks: each pack sends each other pack its
    // partials of that pack's blocks, then the reduced blocks.
    assert_eq!(transfers(|c| c.all_reduce(&vec![1u64; 10_000], Op::Sum).map(drop)), 3 * 2 + 3 * 2);
    assert_eq!(transfers(|c| c.reduce_scatter(&vec![1u64; 10_000], Op::Sum).map(drop)), 3 * 2);
    assert_eq!(transfers(|c| c.reduce(0, &vec![1u64; 10_000], Op::Sum).map(drop)), 3 * 2 + 2);
}

pub fn repeated_collectives(t: TransportOptions) {
    burst(Layout::new(&[3, 2]).unwrap(), &t)
        .run(|comm| {
            let n = comm.size();
            for round in 0..40usize {
                let root = round % n;
                let got = comm.broadcast(root, Bytes::from(round.to_le_bytes().to_vec()))?;
                assert_eq!(&got[..], &round.to_le_bytes());
                let sum = comm.all_reduce(&[(round * n + comm.rank()) as u64], Op::Sum)?;
                assert_eq!(sum[0] as usize, round * n * n + n * (n - 1) / 2);
                let parts = (0..n).map(|d| Bytes::from(vec![round as u8, comm.rank() as u8, d as u8])).collect();
                let got = comm.all_to_all(parts)?;
                for (src, m) in got.iter().enumerate() {
                    assert_eq!(&m[..], &[round as u8, src as u8, comm.rank() as u8]);
                }
            }
            Ok(())
        })
        .unwrap();
}

pub fn in_pack_zero_copy(t: TransportOptions) {
    burst(Layout::new(&[2, 1]).unwrap(), &t)
        .run(|comm| {
            let big = Bytes::from(vec![7u8; 8 << 20]);
            match comm.rank() {
                0 => {
                    comm.send(1, 0, big.clone())?;
                    let echoed = comm.recv(1, 1)?;
                    assert_eq!(echoed.as_ptr(), big.as_ptr(), "an in-pack message was copied");
                    let all = comm.all_to_all(vec![big.clone(), big.clone(), big.clone()])?;
                    assert_eq!(all[0].as_ptr(), big.as_ptr());
                }
                1 => {
                    let m = comm.recv(0, 0)?;
                    comm.send(0, 1, m)?;
                    let all = comm.all_to_all(vec![big.clone(), big.clone(), big.clone()])?;
                    assert_eq!(all[1].as_ptr(), big.as_ptr());
                }
                _ => {
                    comm.all_to_all(vec![big.clone(), big.clone(), big.clone()])?;
                }
            }
            Ok(())
        })
        .unwrap();
}

pub fn failure_propagates(t: TransportOptions) {
    for failing in [0usize, 4] {
        // A long operation timeout: an answer must come from failure propagation, not from a timeout.
        let (results, failure) = LocalBurst::new(Layout::new(&[2, 2, 1]).unwrap())
            .transport(t.clone())
            .op_timeout(Duration::from_secs(120))
            .run_each(move |comm| {
                if comm.rank() == failing {
                    return Err(Error::InvalidArgument("the user function gave up".into()));
                }
                // Everyone else waits for a message that will never come, or a collective.
                if comm.rank() % 2 == 0 {
                    comm.recv(failing, 5)?;
                } else {
                    comm.barrier()?;
                }
                Ok(())
            })
            .unwrap();
        for (rank, r) in results.iter().enumerate() {
            if rank == failing {
                continue;
            }
            match r {
                Err(Error::PeerFailed { rank: who, reason }) => {
                    assert_eq!(*who, failing);
                    assert!(reason.contains("gave up"), "reason lost: {reason}");
                }
                other => panic!("rank {rank} should see rank {failing} fail, got {other:?}"),
            }
        }
        assert!(matches!(failure, Some(Error::PeerFailed { rank, .. }) if rank == failing));
    }

    // A panicking worker is a failure too.
    let (results, _) = burst(Layout::new(&[1, 1]).unwrap(), &t)
        .run_each(|comm| {
            if comm.rank() == 1 {
                panic!("worker bug");
            }
            comm.recv(1, 0).map(drop)
        })
        .unwrap();
    assert!(matches!(&results[0], Err(Error::PeerFailed { rank: 1, reason }) if reason.contains("worker bug")));
}

pub fn timeout(t: TransportOptions) {
    let (results, _) = LocalBurst::new(Layout::new(&[1, 1]).unwrap())
        .transport(t)
        .op_timeout(Duration::from_millis(300))
        .run_each(|comm| if comm.rank() == 0 { comm.recv(1, 3).map(drop) } else { Ok(()) })
        .unwrap();
    match &results[0] {
        Err(Error::Timeout { .. } | Error::PeerClosed { .. } | Error::PeerFailed { .. }) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
}

pub fn bad_arguments(t: TransportOptions) {
    let (results, _) = burst(Layout::new(&[2, 1]).unwrap(), &t)
        .run_each(|comm| {
            let e = comm.send(99, 0, Bytes::new()).unwrap_err();
            assert!(e.to_string().contains("outside the burst"), "{e}");
            assert!(comm.recv(3, 0).is_err());
            assert!(comm.all_to_all(vec![Bytes::new()]).unwrap_err().to_string().contains("one part per rank"));
            Ok(())
        })
        .unwrap();
    // The all_to_all misuse fails the burst; the first cause is reported to everyone.
    assert!(results.iter().all(|r| r.is_ok() || matches!(r, Err(Error::PeerFailed { .. }))));
}

pub fn nothing_left_behind(t: TransportOptions) {
    // After a clean run.
    let ok = burst(Layout::new(&[2, 1, 1]).unwrap(), &t);
    ok.run(|comm| comm.all_to_all((0..comm.size()).map(byte).collect()).map(drop)).unwrap();
    assert_eq!(super::services::leftovers(&t, ok.id(), 3), Vec::<String>::new());
    // After a failed one.
    let failed = burst(Layout::new(&[2, 1, 1]).unwrap(), &t);
    let (_, failure) = failed
        .run_each(|comm| {
            if comm.rank() == 3 {
                return Err(Error::InvalidArgument("boom".into()));
            }
            comm.all_to_all((0..comm.size()).map(byte).collect()).map(drop)
        })
        .unwrap();
    assert!(failure.is_some());
    assert_eq!(super::services::leftovers(&t, failed.id(), 3), Vec::<String>::new());
}
