//! `volley bench comm`: latency and throughput of the middleware, with the raw
//! link measured in the same run so each figure reads as a fraction of it.

use std::str::FromStr;
use std::time::{Duration, Instant};

use bytes::Bytes;
pub use volley_comm::Brokers;
use volley_comm::{Comm, Layout, LocalBurst, Op, TransportOptions, Tuning};

use crate::raw::{self, Raw};
use crate::raw_redis;
use crate::stats::Percentiles;
use crate::verify;
use crate::{Error, Result};

/// The operation a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// Rank 0 and the last rank bounce a message; one-way latency.
    PingPong,
    /// Rank 0 streams messages to the last rank; throughput.
    Stream,
    Barrier,
    Broadcast,
    Scatter,
    Gather,
    AllGather,
    AllToAll,
    AllReduce,
}

impl Operation {
    pub const ALL: [Operation; 9] = [
        Operation::PingPong,
        Operation::Stream,
        Operation::Barrier,
        Operation::Broadcast,
        Operation::Scatter,
        Operation::Gather,
        Operation::AllGather,
        Operation::AllToAll,
        Operation::AllReduce,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Operation::PingPong => "ping-pong",
            Operation::Stream => "stream",
            Operation::Barrier => "barrier",
            Operation::Broadcast => "broadcast",
            Operation::Scatter => "scatter",
            Operation::Gather => "gather",
            Operation::AllGather => "all-gather",
            Operation::AllToAll => "all-to-all",
            Operation::AllReduce => "all-reduce",
        }
    }
}

impl FromStr for Operation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Operation::ALL.into_iter().find(|o| o.name() == s).ok_or_else(|| {
            let names: Vec<_> = Operation::ALL.iter().map(|o| o.name()).collect();
            Error::Invalid(format!("unknown operation {s:?}; choose one of {}", names.join(", ")))
        })
    }
}

/// One benchmark configuration.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CommBench {
    /// `tcp`, `uds`, `redis`, `redis-streams`, `rabbitmq`, `nats` or `s3`.
    pub transport: String,
    pub brokers: Brokers,
    pub op: Operation,
    pub workers: usize,
    pub granularity: usize,
    /// Bytes per message (per rank pair for all-to-all).
    pub size: usize,
    pub iters: usize,
    pub warmup: usize,
    /// Connections per pack pair (direct) or per pack (Redis); 0 keeps the default.
    pub connections: usize,
    /// Measure the raw link too.
    pub baseline: bool,
    /// How long a blocked worker busy-polls before parking; None keeps the default.
    pub spin: Option<Duration>,
    /// Packet size for the transport; None keeps its default.
    pub chunk: Option<u32>,
    /// Check what every rank receives in the first and last measured
    /// iterations (patterned parts, made and checked outside the timing).
    #[serde(default = "verify_by_default")]
    pub verify: bool,
    /// Run each pack in its own process: this program is started once per pack
    /// with `bench comm-pack` and the pack's spec in `VOLLEY_PACK_SPEC`.
    /// Packs find each other through a Redis hash at `brokers.redis_url`.
    pub processes: Option<std::path::PathBuf>,
    /// Above this many packs reductions go along a tree of packs; None keeps
    /// the default (`volley_comm::TREE_ABOVE_PACKS`).
    #[serde(default)]
    pub tree_above_packs: Option<usize>,
}

fn verify_by_default() -> bool {
    true
}

impl CommBench {
    pub(crate) fn transport_options(&self) -> Result<TransportOptions> {
        let tuning =
            Tuning { connections: (self.connections > 0).then_some(self.connections), chunk_bytes: self.chunk };
        let mut brokers = self.brokers.clone();
        brokers.s3_prefix = "bench/".into();
        Ok(brokers.transport(&self.transport, tuning)?)
    }
}

/// What one run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CommReport {
    pub transport: String,
    pub op: Operation,
    pub workers: usize,
    pub granularity: usize,
    pub packs: usize,
    pub size_bytes: usize,
    pub iters: usize,
    /// Per operation (one-way for ping-pong), slowest rank of each iteration.
    pub latency: Percentiles,
    pub mib_per_s: Option<f64>,
    pub local_bytes: u64,
    pub remote_bytes: u64,
    pub local_messages: u64,
    pub remote_messages: u64,
    /// Transfers between packs (a collective makes one per pack pair).
    pub remote_transfers: u64,
    pub raw: Option<Raw>,
    /// Our p50 latency divided by the raw link's (1.0 = as fast as raw).
    pub latency_vs_raw: Option<f64>,
    /// Our throughput as a fraction of the raw link's.
    pub throughput_vs_raw: Option<f64>,
    /// How many runs this report is the median of.
    pub repeats: usize,
    /// Whether every byte received in the first and last iterations was checked (and was right).
    pub verified: bool,
}

/// Runs `b` `repeat` times and returns the median run: by its ratio to the raw
/// link when one was measured, else by its own figure. Raw link and system are
/// measured in the same run, so the ratio is the steadier number on a noisy machine.
pub fn run_repeated(b: &CommBench, repeat: usize) -> Result<CommReport> {
    let mut runs = (0..repeat.max(1)).map(|_| run(b)).collect::<Result<Vec<_>>>()?;
    let key = |r: &CommReport| -> f64 {
        r.latency_vs_raw
            .or(r.throughput_vs_raw.map(|f| -f))
            .or(r.mib_per_s.filter(|_| r.op == Operation::Stream).map(|t| -t))
            .unwrap_or(r.latency.p50_us)
    };
    runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let mut median = runs.swap_remove(runs.len() / 2);
    median.repeats = repeat.max(1);
    Ok(median)
}

pub fn run(b: &CommBench) -> Result<CommReport> {
    if b.iters == 0 {
        return Err(Error::Invalid("iterations must be at least 1".into()));
    }
    let layout = Layout::uniform(b.workers, b.granularity)?;
    let (op, size, iters) = (b.op, b.size, b.iters);
    let per_rank = match &b.processes {
        None => {
            let mut burst =
                LocalBurst::new(layout.clone()).transport(b.transport_options()?).op_timeout(Duration::from_secs(120));
            if let Some(spin) = b.spin {
                burst = burst.spin(spin);
            }
            if let Some(packs) = b.tree_above_packs {
                burst = burst.tree_above_packs(packs);
            }
            let spec = b.clone();
            burst.run(move |comm| measure(comm, &spec).map(|m| (m, comm.stats())))?
        }
        Some(exe) => crate::processes::run(exe, b, &layout)?,
    };

    // Per iteration, the slowest rank decides.
    let mut samples = vec![Duration::ZERO; iters];
    let mut stats = volley_comm::CommStats::default();
    let mut mib_per_s = None;
    // A run that moved the wrong bytes has no figure to report.
    if let Some(wrong) = per_rank.iter().find_map(|(m, _)| m.mismatch.clone()) {
        return Err(Error::Verify(wrong));
    }
    for (measured, s) in &per_rank {
        stats = stats + *s;
        match &measured.timing {
            Timing::Samples(v) => {
                for (slot, ns) in samples.iter_mut().zip(v) {
                    *slot = (*slot).max(Duration::from_nanos(*ns));
                }
            }
            Timing::Throughput(t) => mib_per_s = Some(*t),
            Timing::None => {}
        }
    }
    let latency = if op == Operation::Stream { Percentiles::default() } else { Percentiles::of(&samples) };
    if op == Operation::PingPong && latency.p50_us > 0.0 {
        mib_per_s = Some(size as f64 / (latency.p50_us / 1e6) / (1 << 20) as f64);
    }

    let raw = if b.baseline { baseline(b, layout.packs())? } else { None };
    let latency_vs_raw = raw
        .as_ref()
        .filter(|r| (op == Operation::PingPong || r.floor) && r.one_way.p50_us > 0.0)
        .map(|r| latency.p50_us / r.one_way.p50_us);
    let throughput_vs_raw =
        raw.as_ref().and_then(|r| Some(mib_per_s? / r.mib_per_s?)).filter(|_| op == Operation::Stream);
    Ok(CommReport {
        transport: if layout.packs() == 1 { "in-pack".into() } else { b.transport.clone() },
        op,
        workers: b.workers,
        granularity: b.granularity,
        packs: layout.packs(),
        size_bytes: size,
        iters,
        latency,
        mib_per_s,
        local_bytes: stats.local_bytes,
        remote_bytes: stats.remote_bytes,
        local_messages: stats.local_messages,
        remote_messages: stats.remote_messages,
        remote_transfers: stats.remote_transfers,
        raw,
        latency_vs_raw,
        throughput_vs_raw,
        repeats: 1,
        verified: b.verify,
    })
}

fn baseline(b: &CommBench, packs: usize) -> Result<Option<Raw>> {
    let iters = b.iters.clamp(4, 2000);
    if packs == 1 {
        return raw::threads(b.size, iters).map(Some);
    }
    let floor_of = match b.op {
        // Every rank of a pack sends every rank of each other pack its part.
        Operation::AllToAll => Some((packs * (packs - 1), b.granularity * b.granularity * b.size)),
        // The root's pack sends the message once to each other pack.
        Operation::Broadcast => Some((packs - 1, b.size)),
        _ => None,
    };
    match b.transport.as_str() {
        "redis" | "redis-streams" if floor_of.is_some() => {
            let (flows, bytes) = floor_of.unwrap_or_default();
            let (chunk, connections) = redis_tuning(b);
            let via = raw_redis::Via::of_transport(&b.transport);
            raw_redis::floor(&b.brokers.redis_url, via, (flows, bytes), iters, chunk, connections).map(Some)
        }
        "tcp" => raw::tcp(b.size, iters).map(Some),
        "uds" | "shm" => raw::uds(b.size, iters).map(Some),
        "redis" | "redis-streams" => {
            let (chunk, connections) = redis_tuning(b);
            let via = raw_redis::Via::of_transport(&b.transport);
            raw_redis::link(&b.brokers.redis_url, via, b.size, iters, chunk, connections).map(Some)
        }
        "nats" => {
            let chunk = b.chunk.unwrap_or(volley_comm::NatsOptions::new("").chunk_bytes) as usize;
            raw::nats(&b.brokers.nats_url, b.size, iters, chunk)
        }
        "rabbitmq" => {
            let defaults = volley_comm::RabbitMqOptions::new("");
            let chunk = b.chunk.unwrap_or(defaults.chunk_bytes) as usize;
            let channels = if b.connections > 0 { b.connections } else { defaults.channels };
            raw::rabbitmq(&b.brokers.amqp_url, b.size, iters, chunk, channels).map(Some)
        }
        _ => Ok(None),
    }
}

/// The value size and connections the Redis transport uses, for its raw link.
fn redis_tuning(b: &CommBench) -> (usize, usize) {
    let defaults = volley_comm::RedisOptions::new(b.brokers.redis_url.clone());
    let chunk = b.chunk.unwrap_or(defaults.chunk_bytes) as usize;
    (chunk, if b.connections > 0 { b.connections } else { defaults.connections })
}

/// What one rank measured: per-iteration nanoseconds, or a throughput in MiB/s.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) enum Timing {
    Samples(Vec<u64>),
    Throughput(f64),
    None,
}

/// One rank's timing and the first thing it received that was not what was sent.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Measured {
    pub timing: Timing,
    pub mismatch: Option<String>,
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos() as u64
}

/// What a collective gave this rank, kept until it is checked (after the timer).
enum Received {
    Nothing,
    One(Bytes),
    Some(Option<Vec<Bytes>>),
    Many(Vec<Bytes>),
    Sum(Vec<f64>),
}

/// Runs the measured operation on one rank; with `verify`, the first and last
/// measured iterations carry patterned parts that are checked once timed.
pub(crate) fn measure(comm: &Comm, b: &CommBench) -> volley_comm::Result<Measured> {
    let (op, size, iters, warmup) = (b.op, b.size, b.iters, b.warmup);
    let (rank, n) = (comm.rank(), comm.size());
    let payload = Bytes::from(vec![0x5a; size]);
    let (a, z) = (0, n - 1);
    let checked = |i: usize| b.verify && (i == warmup || i + 1 == warmup + iters);
    let mut mismatch: Option<String> = None;
    let mut note = |found: Option<String>| {
        if mismatch.is_none() {
            mismatch = found;
        }
    };
    // Beyond the limit a sender's parts share one pattern (see verify.rs).
    let to = |r: usize| if n.saturating_mul(size) > verify::DISTINCT_PARTS_LIMIT { verify::EVERY } else { r };
    let timing = match op {
        Operation::PingPong => {
            if n < 2 {
                return Ok(Measured { timing: Timing::None, mismatch: None });
            }
            let mut samples = Vec::with_capacity(iters);
            // The receiver checks after the loop: a check in it would delay the next round trip.
            let mut kept = Vec::new();
            for i in 0..warmup + iters {
                let verified = checked(i);
                let message = if verified { verify::part(a, z, i, size) } else { payload.clone() };
                if rank == a {
                    let start = Instant::now();
                    comm.send(z, 0, message)?;
                    let echo = comm.recv(z, 0)?;
                    if i >= warmup {
                        samples.push(nanos(start.elapsed() / 2));
                    }
                    if verified {
                        note(verify::check("ping-pong (echoed)", a, z, i, size, &echo));
                    }
                } else if rank == z {
                    let m = comm.recv(a, 0)?;
                    comm.send(a, 0, m.clone())?;
                    if verified {
                        kept.push((i, m));
                    }
                }
            }
            for (i, m) in kept {
                note(verify::check("ping-pong", a, z, i, size, &m));
            }
            if rank == a { Timing::Samples(samples) } else { Timing::None }
        }
        Operation::Stream => {
            if n < 2 {
                return Ok(Measured { timing: Timing::None, mismatch: None });
            }
            // Warm-up messages first: the receiver's pooled buffers then have
            // their pages, as the raw link's one reused buffer has.
            for _ in 0..warmup {
                if rank == a {
                    comm.send(z, 1, payload.clone())?;
                } else if rank == z {
                    comm.recv(a, 1)?;
                }
            }
            // The first and last messages carry patterns (made before the timer).
            let patterned = |j: usize| b.verify && (j == 0 || j + 1 == iters);
            comm.barrier()?;
            if rank == a {
                let (first, last) = match b.verify {
                    true => (verify::part(a, z, 0, size), verify::part(a, z, iters - 1, size)),
                    false => (payload.clone(), payload.clone()),
                };
                let start = Instant::now();
                for j in 0..iters {
                    let m = match j {
                        0 => first.clone(),
                        j if j + 1 == iters => last.clone(),
                        _ => payload.clone(),
                    };
                    comm.send(z, 1, m)?;
                }
                comm.recv(z, 2)?;
                let secs = start.elapsed().as_secs_f64();
                Timing::Throughput((size * iters) as f64 / secs / (1 << 20) as f64)
            } else {
                if rank == z {
                    let mut kept = Vec::new();
                    for j in 0..iters {
                        let m = comm.recv(a, 1)?;
                        if patterned(j) {
                            kept.push((j, m));
                        }
                    }
                    comm.send(a, 2, Bytes::new())?;
                    for (j, m) in kept {
                        note(verify::check("stream", a, z, j, size, &m));
                    }
                }
                Timing::None
            }
        }
        collective => {
            let mut samples = Vec::with_capacity(iters);
            let ones = vec![1.0f64; size / 8];
            for i in 0..warmup + iters {
                let verified = checked(i);
                let mine = |receiver: usize| match verified {
                    true => verify::part(rank, receiver, i, size),
                    false => payload.clone(),
                };
                // Inputs made before the timer.
                let (one, many, mut elements) = match collective {
                    Operation::Broadcast => (mine(verify::EVERY), Vec::new(), Vec::new()),
                    Operation::Scatter if rank == 0 => {
                        (payload.clone(), (0..n).map(|r| mine(to(r))).collect(), Vec::new())
                    }
                    Operation::Gather => (mine(0), Vec::new(), Vec::new()),
                    Operation::AllGather => (mine(verify::EVERY), Vec::new(), Vec::new()),
                    Operation::AllToAll => (payload.clone(), (0..n).map(|r| mine(to(r))).collect(), Vec::new()),
                    Operation::AllReduce if verified => {
                        (payload.clone(), Vec::new(), verify::elements(rank, i, size / 8))
                    }
                    Operation::AllReduce => (payload.clone(), Vec::new(), ones.clone()),
                    _ => (payload.clone(), Vec::new(), Vec::new()),
                };
                comm.barrier()?;
                let start = Instant::now();
                let received = match collective {
                    Operation::Barrier => {
                        comm.barrier()?;
                        Received::Nothing
                    }
                    Operation::Broadcast => Received::One(comm.broadcast(0, one)?),
                    Operation::Scatter => Received::One(comm.scatter(0, many)?),
                    Operation::Gather => Received::Some(comm.gather(0, one)?),
                    Operation::AllGather => Received::Many(comm.all_gather(one)?),
                    Operation::AllToAll => Received::Many(comm.all_to_all(many)?),
                    // In place, as MPI_IN_PLACE: the result replaces the input
                    // (made before the timer), so no fresh memory per call.
                    Operation::AllReduce => {
                        comm.all_reduce_in_place(&mut elements, Op::Sum)?;
                        Received::Sum(elements)
                    }
                    Operation::PingPong | Operation::Stream => unreachable!("handled above"),
                };
                if i >= warmup {
                    samples.push(nanos(start.elapsed()));
                }
                if verified {
                    // Every rank is out of the timed operation before any checks:
                    // a check would take the cores a slower rank still times on.
                    comm.barrier()?;
                    let name = collective.name();
                    match received {
                        Received::Nothing => {}
                        Received::One(got) if collective == Operation::Broadcast => {
                            note(verify::check(name, 0, verify::EVERY, i, size, &got))
                        }
                        Received::One(got) => note(verify::check(name, 0, to(rank), i, size, &got)),
                        Received::Some(None) => {}
                        Received::Some(Some(parts)) | Received::Many(parts) => {
                            if parts.len() != n {
                                note(Some(format!("{name} in iteration {i}: {} parts, not {n}", parts.len())));
                            }
                            let meant = match collective {
                                Operation::Gather => 0,
                                Operation::AllGather => verify::EVERY,
                                _ => to(rank),
                            };
                            for (sender, got) in parts.iter().enumerate() {
                                note(verify::check(name, sender, meant, i, size, got));
                            }
                        }
                        Received::Sum(sum) => note(verify::check_sum(n, i, &sum, size / 8)),
                    }
                }
            }
            Timing::Samples(samples)
        }
    };
    Ok(Measured { timing, mismatch })
}
