//! `volley bench ...`

use clap::{Args, Subcommand};
use volley_bench::comm::{self, Brokers, CommBench, CommReport, Operation};

use super::Output;
use super::output::{bytes, parse_size};

#[derive(Subcommand)]
pub enum Bench {
    /// Latency and throughput of the communication middleware, with the raw link.
    Comm(Box<CommArgs>),
    /// Many bursts at once from several clients: all complete once; the API keeps answering.
    Load(Box<super::bench_load::LoadArgs>),
    /// One object needed by every worker: cooperative vs per-worker download.
    Download(Box<super::bench_download::DownloadArgs>),
    /// PageRank as a burst and as classic FaaS: bytes between processes, time per iteration.
    Pagerank(Box<super::bench_pagerank::PagerankArgs>),
    /// TeraSort as a burst, as classic FaaS and as one process, on the same input.
    Terasort(Box<super::bench_terasort::TerasortArgs>),
    /// Variant calling: the single-node pipeline, the burst and the FaaS-style stages, on one case.
    Genomics(Box<super::bench_genomics::GenomicsArgs>),
    /// TeraSort and PageRank, burst vs FaaS, on an emulated cluster with rate-limited links (root).
    Network(Box<super::bench_network::NetworkArgs>),
    /// Workflows: fork-join, trigger throughput and step-to-step latency, each with its baseline.
    Flow(Box<super::bench_flow::FlowArgs>),
    /// Submit-to-running of bursts, cold and warm, burst mode vs FaaS mode.
    Startup(Box<super::startup::StartupArgs>),
    /// The Python package: a map vs multiprocessing.Pool, warm start, all_to_all vs Rust workers.
    Python(Box<super::bench_python::PythonArgs>),
    /// WebAssembly packs vs native: warm start, idle memory, pi, in-pack hand-off, all_to_all.
    Wasm(Box<super::bench_wasm::WasmArgs>),
    /// Internal: runs one pack of a `bench comm --processes` run.
    #[command(hide = true)]
    CommPack,
}

#[derive(Args)]
pub struct CommArgs {
    /// Transports between packs, comma separated: tcp, uds, shm, redis, redis-streams, rabbitmq, nats, s3.
    #[arg(long, default_value = "tcp", value_delimiter = ',')]
    transport: Vec<String>,
    /// Operations, comma separated: ping-pong, stream, barrier, broadcast,
    /// scatter, gather, all-gather, all-to-all, all-reduce (or `all`).
    #[arg(long, default_value = "ping-pong", value_delimiter = ',')]
    op: Vec<String>,
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Workers per pack; equal to --workers measures the in-pack path.
    #[arg(long, default_value_t = 1)]
    granularity: usize,
    /// Message sizes, comma separated (64, 1KiB, 64MiB ...).
    #[arg(long, default_value = "1KiB", value_delimiter = ',', value_parser = parse_size)]
    size: Vec<usize>,
    #[arg(long, default_value_t = 200)]
    iters: usize,
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// Connections per pack pair (tcp/uds) or per pack (redis); 0 = default.
    #[arg(long, default_value_t = 0)]
    connections: usize,
    #[arg(long, env = "VOLLEY_REDIS_URL", default_value = "redis://127.0.0.1:6379/")]
    redis_url: String,
    #[arg(long, env = "VOLLEY_AMQP_URL", default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    #[arg(long, env = "VOLLEY_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// S3-compatible endpoint for the s3 transport (the test server by default).
    #[arg(long, env = "VOLLEY_S3_ENDPOINT", default_value = "http://127.0.0.1:9900")]
    s3_endpoint: String,
    #[arg(long, env = "VOLLEY_S3_BUCKET", default_value = "volley-test")]
    s3_bucket: String,
    #[arg(long, env = "VOLLEY_S3_ACCESS_KEY", default_value = "volley")]
    s3_access_key: String,
    #[arg(long, env = "VOLLEY_S3_SECRET_KEY", default_value = "volley-secret")]
    s3_secret_key: String,
    /// Microseconds a blocked worker busy-polls before it parks (default 50).
    #[arg(long)]
    spin_us: Option<u64>,
    /// Packet size of the transport (e.g. 1MiB); default per transport.
    #[arg(long, value_parser = parse_size)]
    chunk: Option<usize>,
    /// Runs of each configuration; the median run is reported (this machine is noisy).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Run each pack in its own process (packs meet through Redis), as the platform does.
    #[arg(long)]
    processes: bool,
    /// Skip measuring the raw link.
    #[arg(long)]
    no_baseline: bool,
    /// Do not check what is received (by default the first and last measured
    /// iterations carry patterned parts, checked byte for byte outside the timing).
    #[arg(long)]
    no_verify: bool,
    /// Above this many packs reductions combine along a tree of packs
    /// (default 64); set it high to measure all pairs at once instead.
    #[arg(long)]
    tree_above_packs: Option<usize>,
}

impl Bench {
    /// Runs the benchmark; `controller` is the platform to load (`bench load`
    /// only: the others compare modes on a platform of their own).
    pub fn run(self, target: &super::Target, output: Output) -> anyhow::Result<()> {
        match self {
            Bench::Comm(args) => run_comm(*args, output),
            Bench::Startup(args) => super::startup::run(*args, target, output),
            Bench::Load(args) => super::bench_load::run(*args, target, output),
            Bench::Flow(args) => super::bench_flow::run(*args, target, output),
            Bench::Python(args) => super::bench_python::run(*args, target, output),
            Bench::Wasm(args) => super::bench_wasm::run(*args, target, output),
            Bench::Download(args) => super::bench_download::run(*args, target, output),
            Bench::Pagerank(args) => super::bench_pagerank::run(*args, target, output),
            Bench::Terasort(args) => super::bench_terasort::run(*args, target, output),
            Bench::Genomics(args) => super::bench_genomics::run(*args, target, output),
            Bench::Network(args) => super::bench_network::run(*args, output),
            Bench::CommPack => {
                println!("{}", volley_bench::processes::run_pack_from_env()?);
                Ok(())
            }
        }
    }
}

fn run_comm(args: CommArgs, output: Output) -> anyhow::Result<()> {
    let ops: Vec<Operation> = if args.op.iter().any(|o| o == "all") {
        Operation::ALL.to_vec()
    } else {
        args.op.iter().map(|o| o.parse()).collect::<Result<_, _>>()?
    };
    let mut reports = Vec::new();
    if output == Output::Table {
        println!(
            "{:<9} {:<11} {:>4} {:>3} {:>9} {:>10} {:>10} {:>10} {:>10} {:>12} {:>10} {:>10}",
            "transport",
            "op",
            "N",
            "g",
            "size",
            "p50 us",
            "p99 us",
            "MiB/s",
            "raw p50",
            "raw MiB/s",
            "remote",
            "vs raw"
        );
    }
    for transport in &args.transport {
        for &op in &ops {
            for &size in &args.size {
                let bench = CommBench {
                    transport: transport.clone(),
                    brokers: brokers(&args),
                    op,
                    workers: args.workers,
                    granularity: args.granularity,
                    size,
                    iters: args.iters,
                    warmup: args.warmup,
                    connections: args.connections,
                    // Collectives have a raw floor over Redis (what the operation
                    // moves between packs, moved by plain clients).
                    baseline: !args.no_baseline
                        && (matches!(op, Operation::PingPong | Operation::Stream)
                            || (matches!(op, Operation::AllToAll | Operation::Broadcast)
                                && transport.starts_with("redis"))),
                    spin: args.spin_us.map(std::time::Duration::from_micros),
                    chunk: args.chunk.map(|c| c.min(u32::MAX as usize) as u32),
                    processes: if args.processes { Some(std::env::current_exe()?) } else { None },
                    verify: !args.no_verify,
                    tree_above_packs: args.tree_above_packs,
                };
                let report = comm::run_repeated(&bench, args.repeat)?;
                if output == Output::Table {
                    print_row(&report);
                }
                reports.push(report);
            }
        }
    }
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(())
}

fn brokers(args: &CommArgs) -> Brokers {
    Brokers {
        redis_url: args.redis_url.clone(),
        amqp_url: args.amqp_url.clone(),
        nats_url: args.nats_url.clone(),
        s3_endpoint: args.s3_endpoint.clone(),
        s3_bucket: args.s3_bucket.clone(),
        s3_access_key: args.s3_access_key.clone(),
        s3_secret_key: args.s3_secret_key.clone(),
        s3_prefix: String::new(),
        redis_connections: None,
    }
}

fn print_row(r: &CommReport) {
    let opt = |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    let floor = r.raw.as_ref().is_some_and(|raw| raw.floor);
    let vs_raw = match (r.latency_vs_raw, r.throughput_vs_raw) {
        (Some(x), _) if floor => format!("{x:.2}x floor"),
        (Some(x), _) => format!("{x:.2}x lat"),
        (_, Some(f)) => format!("{:.0}% thr", f * 100.0),
        _ => "-".into(),
    };
    let p50 = if r.latency.p50_us > 0.0 { format!("{:.1}", r.latency.p50_us) } else { "-".into() };
    let p99 = if r.latency.p99_us > 0.0 { format!("{:.1}", r.latency.p99_us) } else { "-".into() };
    println!(
        "{:<9} {:<11} {:>4} {:>3} {:>9} {:>10} {:>10} {:>10} {:>10} {:>12} {:>10} {:>10}",
        r.transport,
        r.op.name(),
        r.workers,
        r.granularity,
        bytes(r.size_bytes as u64),
        p50,
        p99,
        opt(r.mib_per_s, 0),
        r.raw.as_ref().map_or("-".into(), |raw| format!("{:.1}", raw.one_way.p50_us)),
        opt(r.raw.as_ref().and_then(|raw| raw.mib_per_s), 0),
        bytes(r.remote_bytes),
        vs_raw
    );
}
