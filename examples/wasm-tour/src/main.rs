//! Every call of the WebAssembly guest SDK, each checked against what it
//! must give: the module the tests deploy (`bins/volley/tests/wasm.rs`) and
//! `volley bench wasm` runs. A check that fails fails the worker with what it saw.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use volley_wasm::serde_json::{Value, json};
use volley_wasm::{Op, Worker, WorkerResult};

/// Counted by every worker of the pack: they share this module's memory.
static ARRIVED: AtomicU64 = AtomicU64::new(0);
/// Drawn once by the module's start-up (`init`): every pack started from the
/// invoker's snapshot of this module finds the same number.
static INIT_STAMP: AtomicU64 = AtomicU64::new(0);

/// The module's start-up: draws a random number (WASI's randomness).
fn init() {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x5EED);
    INIT_STAMP.store(hasher.finish() | 1, Ordering::SeqCst);
    #[cfg(feature = "threaded-init")]
    let _ = std::thread::spawn(|| ()).join();
}

/// Where the buffer handed over in the pack was, as its sender saw it.
static HANDED_AT: AtomicU32 = AtomicU32::new(0);

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seed.wrapping_mul(31).wrapping_add(i)) as u8).collect()
}

/// Messages, collectives, shared memory, files and storage, all checked.
fn tour(w: &Worker) -> WorkerResult {
    let (c, rank, size) = (w.comm(), w.rank(), w.size());
    let ranks = c.pack_ranks();
    let mut facts = serde_json::Map::new();

    // Shared memory: every worker of the pack counts itself in one static.
    ARRIVED.fetch_add(1, Ordering::SeqCst);
    c.barrier()?;
    facts.insert("arrived_in_pack".into(), json!(ARRIVED.load(Ordering::SeqCst)));

    // A ring of point-to-point messages (in the pack and across packs).
    c.send((rank + 1) % size, 1, &pattern(rank, 1000))?;
    let prev = (rank + size - 1) % size;
    let got = c.recv(prev, 1)?;
    check(got == pattern(prev, 1000), || format!("ring: rank {prev}'s message arrived changed"))?;

    // Non-blocking: receives posted before the sends they wait for.
    let posted = c.irecv(prev, 8);
    let from_any = c.irecv_any(9);
    c.isend((rank + 1) % size, 8, &pattern(rank, 300)).wait()?;
    c.isend((rank + 1) % size, 9, b"any").wait()?;
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while !from_any.test() && Instant::now() < deadline {
        std::thread::yield_now();
    }
    check(from_any.wait()? == (prev, b"any".to_vec()), || "irecv_any".into())?;
    check(posted.wait()? == (prev, pattern(prev, 300)), || "irecv: the message arrived changed".into())?;

    // A buffer handed over in the pack: the receiver gets the very bytes.
    if ranks.len() >= 2 && rank == ranks.start {
        let buffer = pattern(7, 64 << 10);
        HANDED_AT.store(buffer.as_ptr() as u32, Ordering::SeqCst);
        c.send_vec(rank + 1, 2, buffer)?;
    }
    if ranks.len() >= 2 && rank == ranks.start + 1 {
        let got = c.recv(rank - 1, 2)?;
        check(got == pattern(7, 64 << 10), || "hand-off: the buffer arrived changed".into())?;
        facts.insert("handed_in_place".into(), json!(got.as_ptr() as u32 == HANDED_AT.load(Ordering::SeqCst)));
    }

    // Any sender.
    c.send(0, 3, &(rank as u64).to_le_bytes())?;
    if rank == 0 {
        let mut from: Vec<usize> = (0..size).map(|_| c.recv_any(3).map(|(src, _)| src)).collect::<Result<_, _>>()?;
        from.sort();
        check(from == (0..size).collect::<Vec<_>>(), || format!("recv_any: senders {from:?}"))?;
    }

    let said = c.broadcast(0, if rank == 0 { b"hello from 0" } else { b"" })?;
    check(said == b"hello from 0", || format!("broadcast gave {said:?}"))?;

    let root = size - 1;
    let parts: Vec<Vec<u8>> = if rank == root { (0..size).map(|i| vec![i as u8; i + 1]).collect() } else { Vec::new() };
    let mine = c.scatter(root, &parts)?;
    check(mine == vec![rank as u8; rank + 1], || format!("scatter gave {mine:?}"))?;

    let gathered = c.gather(0, &[rank as u8])?;
    if rank == 0 {
        let expected: Vec<Vec<u8>> = (0..size).map(|i| vec![i as u8]).collect();
        check(gathered.as_ref() == Some(&expected), || format!("gather gave {gathered:?}"))?;
    } else {
        check(gathered.is_none(), || "gather gave a result off its root".into())?;
    }

    let all = c.all_gather(&(rank as u64 * 3).to_le_bytes())?;
    check(all.iter().enumerate().all(|(i, b)| b[..] == (i as u64 * 3).to_le_bytes()), || "all_gather".into())?;

    let sent: Vec<Vec<u8>> = (0..size).map(|j| vec![rank as u8, j as u8]).collect();
    let received = c.all_to_all(&sent)?;
    check(received.iter().enumerate().all(|(i, b)| b[..] == [i as u8, rank as u8]), || {
        format!("all_to_all gave {received:?}")
    })?;

    let given: Vec<Vec<u8>> = (0..size).map(|j| vec![rank as u8, j as u8, 9]).collect();
    let taken = c.all_to_all_vec(given)?;
    check(taken.iter().enumerate().all(|(i, b)| b[..] == [i as u8, rank as u8, 9]), || {
        format!("all_to_all_vec gave {taken:?}")
    })?;

    let sum = c.reduce(0, &[rank as f64, 1.0], Op::Sum)?;
    if rank == 0 {
        let n = size as f64;
        check(sum == Some(vec![n * (n - 1.0) / 2.0, n]), || format!("reduce gave {sum:?}"))?;
    }
    let max = c.all_reduce(&[rank as i64, -(rank as i64)], Op::Max)?;
    check(max == [size as i64 - 1, 0], || format!("all_reduce max gave {max:?}"))?;
    let min = c.all_reduce(&[rank as f32 + 0.5], Op::Min)?;
    check(min == [0.5], || format!("all_reduce min gave {min:?}"))?;
    // Block `rank` of the sum of (i * (r + 1)) over every rank r, 7 elements.
    let scattered = c.reduce_scatter(&(0..7).map(|i| i * (rank as u64 + 1)).collect::<Vec<_>>(), Op::Sum)?;
    let (base, extra) = (7 / size, 7 % size);
    let first = rank * base + rank.min(extra);
    let block = first..first + base + usize::from(rank < extra);
    let ranks_sum = (size * (size + 1) / 2) as u64;
    check(scattered == block.map(|i| i as u64 * ranks_sum).collect::<Vec<_>>(), || {
        format!("reduce_scatter gave {scattered:?}")
    })?;
    // Reductions by the module's own functions: rank order is kept.
    let joined = c.all_reduce_with(&[rank as u8], |a, b| [a, b].concat())?;
    check(joined == (0..size as u8).collect::<Vec<_>>(), || format!("all_reduce_with gave {joined:?}"))?;
    let longest =
        c.reduce_with(0, &vec![7; rank + 1], |a, b| if b.len() > a.len() { b.to_vec() } else { a.to_vec() })?;
    check(longest.as_ref().map(Vec::len) == (rank == 0).then_some(size), || format!("reduce_with gave {longest:?}"))?;
    let summed = c.reduce_in_place(size - 1, &[1], |acc, v| acc[0] += v[0])?;
    check(summed == (rank == size - 1).then(|| vec![size as u8]), || format!("reduce_in_place gave {summed:?}"))?;

    let total = c.all_reduce(&[rank as u64, 1], Op::Sum)?;
    facts.insert("sum_of_ranks".into(), json!(total[0]));
    facts.insert("workers".into(), json!(total[1]));

    // Files: the pack's own directory, nothing else.
    let path = format!("/work/rank-{rank}.txt");
    std::fs::write(&path, format!("rank {rank}"))?;
    check(std::fs::read_to_string(&path)? == format!("rank {rank}"), || "a file read back changed".into())?;
    facts.insert("outside_refused".into(), json!(std::fs::read("/etc/passwd").is_err()));

    // Object storage through the host.
    if let Some(url) = w.params().get("storage").and_then(Value::as_str) {
        let key = format!("wasm-tour/{}/{rank}", w.burst_id());
        w.storage_put(url, &key, &pattern(rank, 5000))?;
        check(w.storage_get(url, &key)? == pattern(rank, 5000), || "storage: the object read back changed".into())?;
        facts.insert("storage".into(), json!(true));
    }

    // One clock for every thread of the pack: a time another worker of the
    // pack took, read here, is not in the future.
    if ranks.len() >= 2 && rank == ranks.start {
        c.send(rank + 1, 7, &now_ns().to_le_bytes())?;
    }
    if ranks.len() >= 2 && rank == ranks.start + 1 {
        let then = u64::from_le_bytes(c.recv(rank - 1, 7)?[..8].try_into().unwrap_or_default());
        let now = now_ns();
        check(now >= then, || format!("rank {}'s clock read {then} ns, after this one's {now} ns", rank - 1))?;
    }

    // Threads of the module's own, beside the workers.
    let helpers: Vec<_> =
        (0..2u64).map(|i| std::thread::spawn(move || (0..1000u64).map(|k| k * i).sum::<u64>())).collect();
    let helped: u64 = helpers.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    check(helped == 499_500, || format!("helper threads summed {helped}"))?;

    let stats = c.stats()?;
    check(stats.local_messages + stats.remote_messages > 0, || format!("the counters saw nothing: {stats:?}"))?;
    check(c.op_timeout().as_millis() > 0, || "no operation timeout".into())?;
    facts.insert("remote_bytes".into(), json!(stats.remote_bytes));
    facts.insert("init_stamp".into(), json!(INIT_STAMP.load(Ordering::SeqCst)));
    facts.insert("rank".into(), json!(rank));
    facts.insert("pack".into(), json!(w.pack()));
    facts.insert("own".into(), w.worker_params().clone());
    w.log(format!("toured {} checks", facts.len()));
    Ok(Value::Object(facts))
}

/// Ends badly on the rank `params.rank` as `params.how` says: "error",
/// "panic" or "exit"; every other worker waits for a message that never comes.
fn fail(w: &Worker) -> WorkerResult {
    let victim = w.params().get("rank").and_then(Value::as_u64).unwrap_or(0) as usize;
    if w.rank() == victim {
        match w.params().get("how").and_then(Value::as_str).unwrap_or("error") {
            "panic" => panic!("deliberate panic on rank {victim}"),
            "exit" => std::process::exit(7),
            _ => return Err(format!("rank {victim} was asked to fail").into()),
        }
    }
    w.comm().recv(victim, 99)?;
    Ok(json!("unreachable"))
}

/// The byte every position of the part from `src` to `dst` holds in `round`
/// (as the native built-in `exchange` fills its parts).
fn fill(src: usize, dst: usize, round: usize) -> u8 {
    ((src * 31 + dst * 7 + round) % 251) as u8
}

/// The clock both workers of a hand-off read: one, as they share the memory.
static EPOCH: OnceLock<Instant> = OnceLock::new();

fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The native built-in `handoff` in WebAssembly: each even worker of a pack
/// hands `bytes` to the next one, `rounds` times, one at a time (the receiver
/// answers each); the receiver returns each message's time from send to
/// arrival and checks its bytes. `copy: true` sends a borrowed buffer instead
/// (copied once into the buffer handed over).
fn wasm_handoff(w: &Worker) -> WorkerResult {
    let bytes = (w.params().get("bytes").and_then(Value::as_u64).unwrap_or(1 << 20) as usize).max(8);
    let rounds = w.params().get("rounds").and_then(Value::as_u64).unwrap_or(20) as usize;
    let copy = w.params().get("copy").and_then(Value::as_bool).unwrap_or(false);
    let (c, rank) = (w.comm(), w.rank());
    let local = rank - c.pack_ranks().start;
    let partner = if local % 2 == 0 { rank + 1 } else { rank - 1 };
    if !c.pack_ranks().contains(&partner) {
        return Ok(json!({ "rank": rank }));
    }
    let mut latencies = Vec::new();
    // The sender fills the next message while the receiver checks the last
    // one, and sends it as soon as the receiver answers (as the native one).
    let make = |round: usize| vec![fill(rank, partner, round); bytes];
    let mut next = (local % 2 == 0).then(|| make(0));
    for round in 0..rounds {
        if let Some(mut buffer) = next.take() {
            buffer[..8].copy_from_slice(&now_ns().to_le_bytes());
            if copy {
                c.send(partner, 5, &buffer)?
            } else {
                c.send_vec(partner, 5, buffer)?
            }
            next = (round + 1 < rounds).then(|| make(round + 1));
            c.recv(partner, 6)?;
        } else if local % 2 == 0 {
            break;
        } else {
            let got = c.recv(partner, 5)?;
            let sent = u64::from_le_bytes(got[..8].try_into().unwrap_or_default());
            latencies.push(now_ns().saturating_sub(sent) as f64 / 1e3);
            let want = fill(partner, rank, round);
            check(got.len() == bytes && got[8..].iter().all(|b| *b == want), || {
                format!("hand-off round {round} arrived changed")
            })?;
            // Freed before the answer, so that the next message's time does not count it.
            drop(got);
            c.send(partner, 6, &[])?;
        }
    }
    Ok(json!({ "rank": rank, "latencies_us": latencies }))
}

/// The native built-in `exchange` in WebAssembly: `rounds` all_to_all of
/// `bytes` per pair, every byte checked; each round's seconds.
fn wasm_exchange(w: &Worker) -> WorkerResult {
    let bytes = w.params().get("bytes").and_then(Value::as_u64).unwrap_or(1 << 20) as usize;
    let rounds = w.params().get("rounds").and_then(Value::as_u64).unwrap_or(5) as usize;
    let (c, rank, n) = (w.comm(), w.rank(), w.size());
    let mut seconds = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let parts: Vec<Vec<u8>> = (0..n).map(|dst| vec![fill(rank, dst, round); bytes]).collect();
        c.barrier()?;
        let started = Instant::now();
        let got = c.all_to_all_vec(parts)?;
        seconds.push(started.elapsed().as_secs_f64());
        for (src, part) in got.iter().enumerate() {
            let want = fill(src, rank, round);
            check(part.len() == bytes && part.iter().all(|b| *b == want), || {
                format!("round {round}: the part from rank {src} changed")
            })?;
        }
    }
    Ok(json!({ "seconds": seconds }))
}

/// Sleeps `params.seconds` (0.5 by default): what `volley bench startup
/// --wasm` runs, so that the start itself is measured, not early workers'
/// work competing with later workers' start.
fn nap(w: &Worker) -> WorkerResult {
    let seconds = w.params().get("seconds").and_then(Value::as_f64).unwrap_or(0.5);
    std::thread::sleep(std::time::Duration::from_secs_f64(seconds.clamp(0.0, 3600.0)));
    Ok(json!({ "rank": w.rank() }))
}

volley_wasm::main!(init = init; tour, fail, wasm_handoff, wasm_exchange, nap);
