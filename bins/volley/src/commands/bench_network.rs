//! `volley bench network`: TeraSort and PageRank as bursts and as classic
//! FaaS on an emulated cluster, in one run: hosts are network namespaces
//! whose links are limited to a rate (1 Gbit/s by default), with a broker
//! host of its own, so that what crosses the network costs what it costs
//! between machines. Reports each mode's time and the bytes that crossed
//! the links (a byte sent from one host to another crosses two links; one
//! relayed through the broker crosses four). Needs root, iproute2, `tc` and
//! `redis-server`; the genomics job also minimap2, samtools, bcftools and
//! dwgsim, and an S3-compatible server (s3s-fs) that runs on the broker host
//! and holds the job's input and output, so that the FaaS-style stages'
//! storage round trips cross the links as they would to a remote store.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use volley_bench::jobs::{Mode, fresh_run, pagerank, remove_run, startup, terasort};
use volley_bench::network::Network;
use volley_storage::{Storage, StorageOptions};

use super::Output;

mod genomics;

#[derive(Args)]
pub struct NetworkArgs {
    /// Hosts that run invokers (a broker host is added).
    #[arg(long, default_value_t = 4)]
    hosts: usize,
    /// Each link's rate, both ways, as `tc` spells it.
    #[arg(long, default_value = "1gbit")]
    rate: String,
    /// Jobs to run, comma separated: terasort, pagerank, startup, genomics.
    #[arg(long, default_value = "terasort,pagerank", value_delimiter = ',')]
    jobs: Vec<String>,
    /// Workers of the start-up job (sleeping 0.5 s each): submit to all
    /// running, cold then warm (3 runs), one pack per host against g = 1.
    #[arg(long, default_value_t = 256)]
    startup_workers: usize,
    /// The start-up job in burst mode only (FaaS mode starts one process
    /// per worker, which a small machine cannot do for thousands).
    #[arg(long)]
    startup_burst_only: bool,
    /// Workers of every burst; burst mode puts one pack on each host.
    #[arg(long, default_value_t = 64)]
    workers: usize,
    /// Bytes TeraSort sorts.
    #[arg(long, default_value = "256MiB", value_parser = super::output::parse_size)]
    terasort_size: usize,
    #[arg(long, default_value_t = 100_000)]
    vertices: u32,
    #[arg(long, default_value_t = 1_000_000)]
    edges: u64,
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// Transport of FaaS mode (its server runs on the broker host).
    #[arg(long, default_value = "redis")]
    faas_transport: String,
    /// Workers of the genomics job (burst mode: one pack on each host).
    #[arg(long, default_value_t = 8)]
    genomics_workers: usize,
    /// Bases of the genomics job's generated reference (four contigs; reads at 20x).
    #[arg(long, default_value_t = 4_000_000)]
    genomics_length: usize,
    /// A case made by `volley data gen genomics`, instead of a generated one.
    #[arg(long)]
    genomics_case: Option<PathBuf>,
    /// The S3-compatible server for the genomics job's storage (s3s-fs, which
    /// scripts/services installs), started on the broker host.
    #[arg(long, env = "VOLLEY_S3S_FS", default_value_os_t = default_s3s_fs())]
    s3s_fs: PathBuf,
    /// Seconds the controller waits for an invoker's poll before it takes the
    /// invoker for lost. Raise it (and --start-timeout) to measure FaaS mode
    /// with more processes than the 2 cores start at once in 10 s.
    #[arg(long, default_value_t = 10.0)]
    heartbeat_timeout: f64,
    /// Seconds an invoker waits for a started pack process to connect.
    #[arg(long, default_value_t = 10.0)]
    start_timeout: f64,
    /// Connections each pack of FaaS mode opens to the broker host's Redis
    /// for sending, and as many for receiving (the platform's default: 4).
    /// At 4,096 FaaS workers the default needs more clients than Redis can
    /// take here (open files are capped at 20,000 and cannot be raised).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    redis_connections: Option<u16>,
    /// Where inputs and outputs go: a directory every host sees (as a
    /// cluster's shared file system), not limited by the emulated links.
    #[arg(long, default_value = "/tmp/volley-bench-network")]
    storage: PathBuf,
}

/// One job in one mode.
#[derive(Debug, Serialize)]
struct Row {
    job: &'static str,
    mode: String,
    workers: usize,
    g: usize,
    /// TeraSort: the slowest worker's total; PageRank: per iteration, steady state.
    ms: f64,
    /// TeraSort: the slowest worker's shuffle (the phase that crosses the
    /// links); start-up: the cold start (`ms` is the warm ones' median).
    part_ms: Option<f64>,
    /// Bytes through all links, and through the broker host's alone.
    link_bytes: u64,
    broker_link_bytes: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    hosts: usize,
    rate: String,
    rows: Vec<Row>,
    /// FaaS time over burst time, per job.
    faas_over_burst: Vec<(&'static str, f64)>,
}

/// Where scripts/services installs s3s-fs.
fn default_s3s_fs() -> PathBuf {
    let cache = std::env::var_os("VOLLEY_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/volley"));
    cache.join("tools/bin/s3s-fs")
}

/// The jobs each kind of platform runs: invokers sized to one pack of the kind's bursts.
const KINDS: [(&str, &[&str]); 3] =
    [("data", &["terasort", "pagerank"]), ("startup", &["startup"]), ("genomics", &["genomics"])];

pub fn run(args: NetworkArgs, output: Output) -> anyhow::Result<()> {
    let spread = |n: usize| args.hosts > 0 && n > 0 && n.is_multiple_of(args.hosts);
    if !spread(args.workers) || !spread(args.startup_workers) || !spread(args.genomics_workers) {
        bail!(
            "--workers, --startup-workers and --genomics-workers must be positive multiples \
             of --hosts, so that burst mode puts one pack on each host"
        );
    }
    for job in &args.jobs {
        if !KINDS.iter().any(|(_, jobs)| jobs.contains(&job.as_str())) {
            bail!("unknown job {job:?}: choose terasort, pagerank, startup, genomics");
        }
    }
    if args.jobs.iter().any(|j| j == "genomics") && !args.s3s_fs.is_file() {
        bail!("the genomics job needs s3s-fs at {} (run scripts/services, or give --s3s-fs)", args.s3s_fs.display());
    }
    raise_open_files();
    let mut names: Vec<String> = (0..args.hosts).map(|i| format!("host{i}")).collect();
    names.push("broker".into());
    let net = Network::new(&names, &args.rate).context("building the emulated network (run as root)")?;
    let dir = std::env::temp_dir().join(format!("volley-network-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&args.storage)
        .with_context(|| format!("cannot make the storage directory {}", args.storage.display()))?;
    // Each kind of job on a platform of its own, sized to it: invokers with
    // exactly one pack's room make burst mode put one pack on each host.
    let per_host = |n: usize| n / args.hosts;
    let mut rows = Vec::new();
    let mut result = Ok(());
    for (kind, kind_jobs) in KINDS {
        let jobs: Vec<&str> = args.jobs.iter().map(String::as_str).filter(|j| kind_jobs.contains(j)).collect();
        if jobs.is_empty() || result.is_err() {
            continue;
        }
        let workers = match kind {
            "startup" => args.startup_workers,
            "genomics" => args.genomics_workers,
            _ => args.workers,
        };
        // FaaS mode's start-up is measured warm too: a warm process per worker.
        let warm = if kind == "startup" && args.startup_burst_only { 1 } else { per_host(workers) };
        let sizes = (per_host(workers), warm);
        let dir = dir.join(kind);
        let s3 = (kind == "genomics").then_some(args.s3s_fs.as_path());
        let measured = Cluster::start(&net, &dir, &args, sizes, s3).and_then(|cluster| {
            if kind == "genomics" {
                genomics::measure(&net, &cluster, &args, &dir)
            } else {
                measure(&net, &cluster, &args, &jobs)
            }
        });
        result = measured.map(|more| rows.extend(more));
    }
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    print(&Report::new(&args, rows), output)
}

/// The platform on the emulated hosts: the controller in the root namespace
/// (the bridge's address), an invoker on every host, Redis (and, for the
/// genomics job, the S3 server) on the broker host.
struct Cluster {
    url: String,
    key: String,
    s3: Option<S3Server>,
    _roles: Roles,
}

/// The S3-compatible server on the broker host: its endpoint, and the
/// directory it serves (each folder a bucket, each file an object).
struct S3Server {
    endpoint: String,
    root: PathBuf,
}

impl S3Server {
    const PORT: u16 = 9900;
    const ACCESS_KEY: &str = "volley";
    const SECRET_KEY: &str = "volley-secret";

    fn options(&self) -> StorageOptions {
        StorageOptions {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key: Some(Self::ACCESS_KEY.into()),
            secret_key: Some(Self::SECRET_KEY.into()),
        }
    }
}

/// The cluster's processes, stopped in the reverse of their start: invokers
/// first (they end their packs), then the controller, then the broker.
#[derive(Default)]
struct Roles(Vec<Spawned>);

impl Drop for Roles {
    fn drop(&mut self) {
        while let Some(role) = self.0.pop() {
            drop(role);
        }
    }
}

/// Raises this process's open-file limit as far as it may (to the kernel's
/// most with CAP_SYS_RESOURCE, else to its hard limit), for the platform it
/// starts to inherit: Redis on the broker host refuses clients past its own
/// open-file limit (less 32) with a reset, whatever `--maxclients`, and
/// thousands of FaaS workers hold several connections each.
fn raise_open_files() {
    let most = std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|s| s.trim().parse::<u64>().ok());
    let mut now = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) != 0 {
            return;
        }
        // (A hard limit of RLIM_INFINITY is above any cap: the soft one is set to the cap.)
        let cap = most.unwrap_or(1 << 20).min(1 << 20);
        let raised = libc::rlimit { rlim_cur: cap, rlim_max: now.rlim_max.max(cap) };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            let soft = libc::rlimit { rlim_cur: now.rlim_max.min(cap), rlim_max: now.rlim_max };
            libc::setrlimit(libc::RLIMIT_NOFILE, &soft);
        }
    }
}

impl Cluster {
    /// Invokers with `slots` and `warm` processes each; with `s3s_fs`, an
    /// S3 server on the broker host too, the workers' s3:// storage.
    fn start(
        net: &Network,
        dir: &Path,
        args: &NetworkArgs,
        (slots, warm): (usize, usize),
        s3s_fs: Option<&Path>,
    ) -> anyhow::Result<Cluster> {
        let broker = net.hosts.len() - 1;
        let broker_addr = net.hosts[broker].addr.clone();
        let mut roles = Roles::default();
        let mut redis = net.command(broker, "redis-server");
        redis.args(["--bind", &broker_addr, "--port", "6379", "--save", "", "--appendonly", "no"]);
        redis.args(["--protected-mode", "no", "--loglevel", "warning"]);
        // FaaS mode's workers open several connections each: thousands of
        // workers pass Redis's default of 10,000 clients.
        redis.args(["--maxclients", "100000"]);
        roles.0.push(Spawned::start(redis, None)?.0);
        wait_for_port(&format!("{broker_addr}:6379"))?;
        let s3 = match s3s_fs {
            None => None,
            Some(exe) => {
                let root = dir.join("s3");
                std::fs::create_dir_all(&root)?;
                let mut server = net.command(broker, &exe.display().to_string());
                server.args(["--host", &broker_addr, "--port", &S3Server::PORT.to_string()]);
                server.args(["--access-key", S3Server::ACCESS_KEY, "--secret-key", S3Server::SECRET_KEY]);
                server.arg(&root);
                roles.0.push(Spawned::start(server, None)?.0);
                wait_for_port(&format!("{broker_addr}:{}", S3Server::PORT))?;
                Some(S3Server { endpoint: format!("http://{broker_addr}:{}", S3Server::PORT), root })
            }
        };

        let exe = std::env::current_exe()?;
        let (key, token) = (random_secret(), random_secret());
        let keys = dir.join("keys");
        std::fs::create_dir_all(dir)?;
        std::fs::write(&keys, format!("default {key}\n"))?;
        let mut controller = Command::new(&exe);
        controller.args(["controller", "--insecure-plain-http"]);
        controller.arg("--heartbeat-timeout").arg(args.heartbeat_timeout.to_string());
        controller.arg("--listen").arg(format!("{}:0", net.gateway()));
        controller.arg("--api-keys").arg(&keys).args(["--invoker-token", &token]);
        controller.arg("--redis-url").arg(format!("redis://{broker_addr}:6379/"));
        if let Some(n) = args.redis_connections {
            controller.arg("--redis-connections").arg(n.to_string());
        }
        controller.arg("--data-dir").arg(dir.join("controller"));
        if let Some(s3) = &s3 {
            // (The controller hands its storage settings to the packs it places.)
            controller.args(["--s3-endpoint", &s3.endpoint]);
            controller.args(["--s3-access-key", S3Server::ACCESS_KEY, "--s3-secret-key", S3Server::SECRET_KEY]);
        }
        let (role, line) = Spawned::start_ready(controller, "listening on ")?;
        roles.0.push(role);
        let url = line.split("listening on ").nth(1).unwrap_or_default().trim().to_string();

        let (slots, warm) = (slots.to_string(), warm.to_string());
        for (i, host) in net.hosts[..broker].iter().enumerate() {
            let mut invoker = net.command(i, &exe.display().to_string());
            invoker.args(["invoker", "--controller", &url, "--token", &token, "--slots", &slots]);
            invoker.args(["--advertise-host", &host.addr, "--name", &host.name, "--warm-pool", &warm]);
            invoker.arg("--local-storage").arg(&args.storage);
            invoker.arg("--data-dir").arg(dir.join(&host.name));
            invoker.arg("--start-timeout").arg(args.start_timeout.to_string());
            roles.0.push(Spawned::start_ready(invoker, "registered with the controller")?.0);
        }
        Ok(Cluster { url, key, s3, _roles: roles })
    }
}

/// Runs `jobs` on `cluster`: a row per job and mode.
fn measure(net: &Network, cluster: &Cluster, args: &NetworkArgs, jobs: &[&str]) -> anyhow::Result<Vec<Row>> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let client = volley_client::Client::with_ca(&cluster.url, Some(&cluster.key), None)?;
    let opts = StorageOptions::default();
    let base = fresh_run(&format!("file://{}", args.storage.display()));
    let g = args.workers / args.hosts;
    let modes = [Mode::burst(g), Mode::faas(&args.faas_transport)];
    let mut rows = Vec::new();
    let mut crossing =
        |job: &'static str, (mode, workers): (&Mode, usize), ms: (f64, Option<f64>), before: Vec<u64>| {
            rows.push(Row::measured(net, job, (mode.name, workers, mode.granularity), ms, &before)?);
            anyhow::Ok(())
        };
    let work = async {
        for &job in jobs {
            if job == "terasort" {
                let input_url = format!("{base}/terasort-input");
                let input = Storage::open(&input_url, &opts)?;
                terasort::generate(&input, args.terasort_size).await?;
                for mode in &modes {
                    let sorted_url = format!("{base}/terasort-{}", mode.name);
                    let sorted = Storage::open(&sorted_url, &opts)?;
                    let before = net.traffic()?;
                    let row = terasort::on_platform(
                        &client,
                        args.workers,
                        mode,
                        (&input_url, &input),
                        (&sorted_url, &sorted),
                    )
                    .await
                    .with_context(|| format!("terasort in {} mode", mode.name))?;
                    crossing("terasort", (mode, args.workers), (row.total_ms, Some(row.ms.shuffle)), before)?;
                }
            } else if job == "pagerank" {
                let graph = format!("{base}/pagerank-graph");
                volley_apps::pagerank::generate(&Storage::open(&graph, &opts)?, args.vertices, args.edges, 8, 1)
                    .await?;
                for mode in &modes {
                    let before = net.traffic()?;
                    let job = (graph.as_str(), args.vertices, args.iterations);
                    let out = format!("{base}/pagerank-{}", mode.name);
                    let row = pagerank::on_platform(&client, args.workers, mode, job, &out)
                        .await
                        .with_context(|| format!("pagerank in {} mode", mode.name))?;
                    crossing("pagerank", (mode, args.workers), (row.steady_ms_per_iteration, None), before)?;
                }
            } else {
                let n = args.startup_workers;
                let plan = startup::Plan {
                    workers: n,
                    function: "sleep".into(),
                    params: serde_json::json!({"seconds": 0.5}),
                    repeat: 3,
                };
                let modes = [Mode::burst(n / args.hosts), Mode::faas(&args.faas_transport)];
                let modes = if args.startup_burst_only { &modes[..1] } else { &modes[..] };
                for mode in modes {
                    let before = net.traffic()?;
                    let report = startup::measure(&client, &plan, mode)
                        .await
                        .with_context(|| format!("start-up in {} mode", mode.name))?;
                    crossing("startup", (mode, n), (report.warm.p50_us / 1e3, Some(report.cold_ms)), before)?;
                }
            }
        }
        anyhow::Ok(())
    };
    let result = until_interrupted(&runtime, work);
    if let Err(e) = runtime.block_on(remove_run(&base, &opts)) {
        eprintln!("warning: could not remove the benchmark's data under {base}: {e}");
    }
    result?;
    Ok(rows)
}

impl Row {
    /// A row of `job` in `mode` that took `ms`, with the bytes that crossed
    /// the links since their counters read `before`; told as it is made.
    fn measured(
        net: &Network,
        job: &'static str,
        (mode, workers, g): (&str, usize, usize),
        (ms, part_ms): (f64, Option<f64>),
        before: &[u64],
    ) -> anyhow::Result<Row> {
        let after = net.traffic()?;
        let moved: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
        let broker = net.hosts.len() - 1;
        let row = Row {
            job,
            mode: mode.to_string(),
            workers,
            g,
            ms,
            part_ms,
            link_bytes: moved.iter().sum(),
            broker_link_bytes: moved[broker],
        };
        eprintln!("{job} {}: {ms:.0} ms, {:.1} MiB through the links", row.mode, row.link_bytes as f64 / MIB);
        Ok(row)
    }
}

/// `work` run to its end, or ended by Ctrl-C or SIGTERM with an error, so
/// that an interrupted run still removes the hosts, their processes and its data.
fn until_interrupted<T>(
    runtime: &tokio::runtime::Runtime,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            done = work => done,
            _ = tokio::signal::ctrl_c() => bail!("interrupted: the emulated cluster is being removed"),
            _ = term.recv() => bail!("terminated: the emulated cluster is being removed"),
        }
    })
}

impl Report {
    fn new(args: &NetworkArgs, rows: Vec<Row>) -> Report {
        let ms = |job: &str, mode: &str| rows.iter().find(|r| r.job == job && r.mode == mode).map(|r| r.ms);
        let faas_over_burst = ["terasort", "pagerank", "startup", "genomics"]
            .into_iter()
            .filter_map(|job| Some((job, ms(job, "faas")? / ms(job, "burst")?)))
            .collect();
        Report { hosts: args.hosts, rate: args.rate.clone(), rows, faas_over_burst }
    }
}

const MIB: f64 = (1 << 20) as f64;

fn print(report: &Report, output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    println!("{} hosts and a broker host, every link {} both ways", report.hosts, report.rate);
    println!(
        "{:<9} {:<6} {:>4} {:>3} {:>10} {:>10} {:>12} {:>12}",
        "job", "mode", "N", "g", "ms", "part ms", "links MiB", "broker MiB"
    );
    for r in &report.rows {
        let part = r.part_ms.map(|ms| format!("{ms:.1}")).unwrap_or_else(|| "-".into());
        println!(
            "{:<9} {:<6} {:>4} {:>3} {:>10.1} {:>10} {:>12.1} {:>12.1}",
            r.job,
            r.mode,
            r.workers,
            r.g,
            r.ms,
            part,
            r.link_bytes as f64 / MIB,
            r.broker_link_bytes as f64 / MIB
        );
    }
    for (job, x) in &report.faas_over_burst {
        println!("{job}: FaaS mode / burst mode {x:.2}x");
    }
    println!("(terasort: the slowest worker's total, part: its shuffle; pagerank: per iteration, steady state;");
    println!(" startup: submit to all running, warm median, part: cold;");
    println!(" genomics: first submit to the calls on storage, index cached, part: the slowest worker's regroup)");
    Ok(())
}

/// A process of the emulated cluster, stopped (SIGTERM, then SIGKILL) when dropped.
struct Spawned {
    child: Child,
}

impl Spawned {
    fn start(mut cmd: Command, ready: Option<&str>) -> anyhow::Result<(Spawned, String)> {
        let mut child = cmd
            .env("VOLLEY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let stderr = child.stderr.take().context("no stderr")?;
        // With VOLLEY_BENCH_LOGS=DIR, every role's whole log is kept there
        // (`<program>-<pid>.log`), for a run that fails far from its cause.
        let mut keep = std::env::var_os("VOLLEY_BENCH_LOGS").and_then(|dir| {
            let program = Path::new(cmd.get_program()).file_name()?.to_string_lossy().into_owned();
            let path = Path::new(&dir).join(format!("{program}-{}.log", child.id()));
            std::fs::File::create(path).ok()
        });
        let spawned = Spawned { child };
        let (tx, rx) = mpsc::channel();
        let waits = ready.is_some();
        let ready = ready.map(str::to_string);
        std::thread::spawn(move || {
            // The last lines only, for a process that ends before it is ready.
            let mut log = std::collections::VecDeque::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(file) = keep.as_mut() {
                    let _ = writeln!(file, "{line}");
                }
                if ready.as_ref().is_some_and(|r| line.contains(r)) {
                    let _ = tx.send(Ok(line.clone()));
                }
                if log.len() == 20 {
                    log.pop_front();
                }
                log.push_back(line);
            }
            let _ = tx.send(Err(Vec::from(log).join("\n")));
        });
        if !waits {
            return Ok((spawned, String::new()));
        }
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(line)) => Ok((spawned, line)),
            Ok(Err(log)) => bail!("{cmd:?} ended before it was ready:\n{log}"),
            Err(_) => bail!("{cmd:?} was not ready within 60 s"),
        }
    }

    fn start_ready(cmd: Command, ready: &str) -> anyhow::Result<(Spawned, String)> {
        Spawned::start(cmd, Some(ready))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child, which has not been reaped yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        for _ in 0..150 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_port(addr: &str) -> anyhow::Result<()> {
    for _ in 0..100 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("nothing listens on {addr} after 10 s")
}

fn random_secret() -> String {
    (0..32).map(|_| char::from(b'a' + rand::random::<u8>() % 26)).collect()
}
