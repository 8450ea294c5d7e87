//! `volley bench wasm`: WebAssembly packs against native ones in one run:
//! warm start and idle memory of native unsandboxed, native sandboxed and
//! WebAssembly packs, the pi function's compute time, an in-pack hand-off and
//! an all_to_all (volley_bench::jobs::wasm measures; this prints).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use volley_bench::jobs::Mode;
use volley_bench::jobs::startup::{self, Plan};
use volley_bench::jobs::wasm::{self, WASM_EXCHANGE, WASM_HANDOFF, WASM_NAP};
use volley_bench::startup::StartupReport;
use volley_bench::stats::Percentiles;
use volley_client::Client;

use super::output::parse_size;
use super::platform::{PlatformArgs, with_platform};
use super::roles::Sandbox;
use super::{Output, Target};

#[derive(Args)]
pub struct WasmArgs {
    /// The module of examples/wasm-tour, built for wasm32-wasip1-threads.
    #[arg(long)]
    tour: PathBuf,
    /// The module of examples/wasm-pi.
    #[arg(long)]
    pi: PathBuf,
    /// The native pi of examples/pi (default: beside this volley binary, as the workspace builds it).
    #[arg(long)]
    native_pi: Option<PathBuf>,
    /// Workers of the start-up bursts, and their packs' size.
    #[arg(long, default_value_t = 64)]
    workers: usize,
    #[arg(long, default_value_t = 16)]
    granularity: usize,
    /// Warm start-up bursts after the cold one.
    #[arg(long, default_value_t = 10)]
    repeat: usize,
    /// Samples per worker of the pi bursts (16 workers in one pack), and how many bursts.
    #[arg(long, default_value_t = 4_000_000)]
    samples: u64,
    #[arg(long, default_value_t = 3)]
    pi_runs: usize,
    /// Message sizes of the in-pack hand-off (one pair of workers in one pack), comma separated.
    #[arg(long, default_value = "64KiB,1MiB,16MiB", value_delimiter = ',', value_parser = parse_size)]
    handoff: Vec<usize>,
    #[arg(long, default_value_t = 50)]
    handoff_rounds: usize,
    /// Bytes per pair of the all_to_all among 16 workers, in packs of each granularity given.
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    a2a_bytes: usize,
    #[arg(long, default_value = "16,8", value_delimiter = ',')]
    a2a_granularity: Vec<usize>,
    #[arg(long, default_value_t = 5)]
    a2a_rounds: usize,
    #[command(flatten)]
    platform: PlatformArgs,
}

/// Which packs a configuration runs.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Native,
    Wasm,
}

#[derive(Serialize)]
struct StartupRow {
    #[serde(flatten)]
    startup: StartupReport,
    /// PSS of the idle warm pack processes (and their launchers) over their worker slots.
    idle_kb_per_worker: f64,
}

#[derive(Serialize, Default)]
struct Compute {
    pi_ms: Vec<f64>,
    /// (bytes, send-to-arrival) per hand-off size; WebAssembly also with a copy.
    handoff: Vec<(usize, Percentiles)>,
    handoff_copy: Vec<(usize, Percentiles)>,
    /// (granularity, slowest worker's round) of the all_to_all.
    a2a: Vec<(usize, Percentiles)>,
}

#[derive(Serialize)]
struct Report {
    startup: Vec<StartupRow>,
    native: Compute,
    wasm: Compute,
}

pub fn run(mut args: WasmArgs, target: &Target, output: Output) -> anyhow::Result<()> {
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let tour = read(&args.tour)?;
    let pi = read(&args.pi)?;
    let native_pi_path = match &args.native_pi {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("pi"),
    };
    let native_pi = read(&native_pi_path).context("the native pi (build examples/pi or pass --native-pi)")?;
    args.platform.invoker.warm_pool = args.platform.invoker.warm_pool.max(args.workers);
    // SAFETY: geteuid(2) reads the caller's effective uid.
    let sandboxed = if unsafe { libc::geteuid() } == 0 { Sandbox::On } else { Sandbox::Off };
    let configurations =
        [("native", Sandbox::Off, Kind::Native), ("native", sandboxed, Kind::Native), ("wasm", sandboxed, Kind::Wasm)];
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut report = Report { startup: Vec::new(), native: Compute::default(), wasm: Compute::default() };
    for (name, sandbox, kind) in configurations {
        args.platform.invoker.sandbox = sandbox;
        let measure_compute = sandbox == sandboxed;
        let (row, compute) = runtime.block_on(with_platform(&args.platform, |url| {
            let (args, tour, pi, native_pi) = (&args, &tour, &pi, &native_pi);
            async move {
                let client = target.client_at(&url)?;
                match kind {
                    Kind::Wasm => {
                        wasm::deploy(&client, tour, &[WASM_NAP, WASM_HANDOFF, WASM_EXCHANGE]).await?;
                        wasm::deploy(&client, pi, &["pi"]).await?;
                    }
                    Kind::Native => wasm::deploy(&client, native_pi, &["pi"]).await?,
                }
                let mut row = start_up(&client, args, kind).await?;
                row.startup.mode = format!("{name}{}", if sandbox == Sandbox::On { "+sandbox" } else { "" });
                let compute = if measure_compute { Some(compute(&client, args, kind).await?) } else { None };
                anyhow::Ok((row, compute))
            }
        }))?;
        report.startup.push(row);
        match (kind, compute) {
            (Kind::Native, Some(c)) => report.native = c,
            (Kind::Wasm, Some(c)) => report.wasm = c,
            _ => {}
        }
    }
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => print(&report),
    }
    Ok(())
}

async fn start_up(client: &Client, args: &WasmArgs, kind: Kind) -> anyhow::Result<StartupRow> {
    let function = if kind == Kind::Wasm { WASM_NAP } else { "sleep" };
    let plan = Plan {
        workers: args.workers,
        function: function.into(),
        params: serde_json::json!({ "seconds": 0.5 }),
        repeat: args.repeat,
    };
    let mode = Mode::burst(args.granularity);
    let startup = startup::measure(client, &plan, &mode).await?;
    // The pool refilled with idle processes, each ready for a pack of g.
    startup::wait_for_warm(client, args.workers.div_ceil(args.granularity)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let warm: usize = client.invokers().await?.iter().map(|i| i.warm).sum();
    let idle_kb_per_worker = wasm::idle_kb() as f64 / (warm.max(1) * args.granularity) as f64;
    Ok(StartupRow { startup, idle_kb_per_worker })
}

async fn compute(client: &Client, args: &WasmArgs, kind: Kind) -> anyhow::Result<Compute> {
    let mut c = Compute::default();
    for _ in 0..args.pi_runs {
        c.pi_ms.push(wasm::pi_ms(client, "pi", 16, 16, args.samples).await?);
    }
    let (handoff, exchange) = match kind {
        Kind::Native => ("handoff", "exchange"),
        Kind::Wasm => (WASM_HANDOFF, WASM_EXCHANGE),
    };
    for &bytes in &args.handoff {
        c.handoff.push((bytes, wasm::handoff(client, handoff, 2, bytes, args.handoff_rounds, false).await?));
        if kind == Kind::Wasm {
            c.handoff_copy.push((bytes, wasm::handoff(client, handoff, 2, bytes, args.handoff_rounds, true).await?));
        }
    }
    for &g in &args.a2a_granularity {
        c.a2a.push((g, wasm::exchange(client, exchange, 16, g, args.a2a_bytes, args.a2a_rounds).await?));
    }
    Ok(c)
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn print(r: &Report) {
    println!(
        "{:<16} {:>5} {:>4} {:>9} {:>9} {:>9} {:>14}",
        "packs", "N", "g", "cold ms", "warm p50", "warm max", "idle kB/worker"
    );
    for row in &r.startup {
        let s = &row.startup;
        println!(
            "{:<16} {:>5} {:>4} {:>9.1} {:>9.1} {:>9.1} {:>14.0}",
            s.mode,
            s.workers,
            s.granularity,
            s.cold_ms,
            s.warm.p50_us / 1e3,
            s.warm.max_us / 1e3,
            row.idle_kb_per_worker
        );
    }
    if let [.., native, wasm] = r.startup.as_slice() {
        println!(
            "wasm / {}: warm p50 {:.2}x, idle memory {:.2}x",
            native.startup.mode,
            wasm.startup.warm.p50_us / native.startup.warm.p50_us,
            wasm.idle_kb_per_worker / native.idle_kb_per_worker
        );
    }
    let (n, w) = (median(&r.native.pi_ms), median(&r.wasm.pi_ms));
    println!(
        "pi, 16 workers in one pack, slowest worker (median of runs): native {n:.1} ms, wasm {w:.1} ms: {:.2}x",
        w / n
    );
    println!("{:<22} {:>10} {:>12} {:>12} {:>10}", "in-pack hand-off", "bytes", "native p50", "wasm p50", "wasm copy");
    for (i, (bytes, native)) in r.native.handoff.iter().enumerate() {
        let wasm = r.wasm.handoff.get(i).map_or(f64::NAN, |(_, p)| p.p50_us);
        let copy = r.wasm.handoff_copy.get(i).map_or(f64::NAN, |(_, p)| p.p50_us);
        println!("{:<22} {:>10} {:>10.1}us {:>10.1}us {:>8.1}us", "", bytes, native.p50_us, wasm, copy);
    }
    for (i, (g, native)) in r.native.a2a.iter().enumerate() {
        let wasm = r.wasm.a2a.get(i).map_or(f64::NAN, |(_, p)| p.p50_us);
        println!(
            "all_to_all 16 workers, g = {g}: native p50 {:.2} ms, wasm p50 {:.2} ms: {:.2}x",
            native.p50_us / 1e3,
            wasm / 1e3,
            wasm / native.p50_us
        );
    }
}
