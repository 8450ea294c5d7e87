//! `volley bench comm`: latency and throughput of the middleware, with the raw
//! link measured in the same run so each figure reads as a fraction of it.

use std::str::FromStr;
use std::time::{Duration, Instant};

use bytes::Bytes;
pub use volley_comm::Brokers;
use volley_comm::{Comm, Layout, LocalBurst, Op, TransportOptions, Tuning};

use crate::raw::{self, Raw};
use crate::stats::Percentiles;
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
    /// Run each pack in its own process: this program is started once per pack
    /// with `bench comm-pack` and the pack's spec in `VOLLEY_PACK_SPEC`.
    /// Packs find each other through a Redis hash at `brokers.redis_url`.
    pub processes: Option<std::path::PathBuf>,
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
            let spec = b.clone();
            burst.run(move |comm| measure(comm, &spec).map(|t| (t, comm.stats())))?
        }
        Some(exe) => crate::processes::run(exe, b, &layout)?,
    };

    // Per iteration, the slowest rank decides.
    let mut samples = vec![Duration::ZERO; iters];
    let mut stats = volley_comm::CommStats::default();
    let mut mib_per_s = None;
    for (timing, s) in &per_rank {
        stats = stats + *s;
        match timing {
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
    let latency_vs_raw = raw.as_ref().filter(|_| op == Operation::PingPong).map(|r| latency.p50_us / r.one_way.p50_us);
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
    })
}

fn baseline(b: &CommBench, packs: usize) -> Result<Option<Raw>> {
    let iters = b.iters.clamp(4, 2000);
    if packs == 1 {
        return raw::threads(b.size, iters).map(Some);
    }
    match b.transport.as_str() {
        "tcp" => raw::tcp(b.size, iters).map(Some),
        "uds" => raw::uds(b.size, iters).map(Some),
        "redis" | "redis-streams" => raw::redis(&b.brokers.redis_url, b.size, iters).map(Some),
        "nats" => raw::nats(&b.brokers.nats_url, b.size, iters),
        "rabbitmq" => raw::rabbitmq(&b.brokers.amqp_url, b.size, iters).map(Some),
        _ => Ok(None),
    }
}

/// What one rank measured: per-iteration nanoseconds, or a throughput in MiB/s.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) enum Timing {
    Samples(Vec<u64>),
    Throughput(f64),
    None,
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos() as u64
}

/// Runs the measured operation on one rank.
pub(crate) fn measure(comm: &Comm, b: &CommBench) -> volley_comm::Result<Timing> {
    let (op, size, iters, warmup) = (b.op, b.size, b.iters, b.warmup);
    let (rank, n) = (comm.rank(), comm.size());
    let payload = Bytes::from(vec![0x5a; size]);
    let (a, b) = (0, n - 1);
    match op {
        Operation::PingPong => {
            if n < 2 {
                return Ok(Timing::None);
            }
            let mut samples = Vec::with_capacity(iters);
            for i in 0..warmup + iters {
                if rank == a {
                    let start = Instant::now();
                    comm.send(b, 0, payload.clone())?;
                    comm.recv(b, 0)?;
                    if i >= warmup {
                        samples.push(nanos(start.elapsed() / 2));
                    }
                } else if rank == b {
                    let m = comm.recv(a, 0)?;
                    comm.send(a, 0, m)?;
                }
            }
            Ok(if rank == a { Timing::Samples(samples) } else { Timing::None })
        }
        Operation::Stream => {
            if n < 2 {
                return Ok(Timing::None);
            }
            // Warm-up messages first: the receiver's pooled buffers then have
            // their pages, as the raw link's one reused buffer has.
            for _ in 0..warmup {
                if rank == a {
                    comm.send(b, 1, payload.clone())?;
                } else if rank == b {
                    comm.recv(a, 1)?;
                }
            }
            comm.barrier()?;
            if rank == a {
                let start = Instant::now();
                for _ in 0..iters {
                    comm.send(b, 1, payload.clone())?;
                }
                comm.recv(b, 2)?;
                let secs = start.elapsed().as_secs_f64();
                return Ok(Timing::Throughput((size * iters) as f64 / secs / (1 << 20) as f64));
            }
            if rank == b {
                for _ in 0..iters {
                    comm.recv(a, 1)?;
                }
                comm.send(a, 2, Bytes::new())?;
            }
            Ok(Timing::None)
        }
        collective => {
            let mut samples = Vec::with_capacity(iters);
            let elements = vec![1.0f64; size / 8];
            for i in 0..warmup + iters {
                comm.barrier()?;
                let start = Instant::now();
                match collective {
                    Operation::Barrier => comm.barrier()?,
                    Operation::Broadcast => drop(comm.broadcast(0, payload.clone())?),
                    Operation::Scatter => {
                        let parts = if rank == 0 { vec![payload.clone(); n] } else { Vec::new() };
                        drop(comm.scatter(0, parts)?)
                    }
                    Operation::Gather => drop(comm.gather(0, payload.clone())?),
                    Operation::AllGather => drop(comm.all_gather(payload.clone())?),
                    Operation::AllToAll => drop(comm.all_to_all(vec![payload.clone(); n])?),
                    Operation::AllReduce => drop(comm.all_reduce(&elements, Op::Sum)?),
                    Operation::PingPong | Operation::Stream => unreachable!("handled above"),
                }
                if i >= warmup {
                    samples.push(nanos(start.elapsed()));
                }
            }
            Ok(Timing::Samples(samples))
        }
    }
}
