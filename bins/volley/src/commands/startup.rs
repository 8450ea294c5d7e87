//! `volley bench startup`: submit-to-running of bursts, cold and warm, burst vs FaaS mode.

use anyhow::{Context, bail};
use clap::Args;
use volley_bench::jobs::Mode;
use volley_bench::jobs::startup::{self, Plan};
use volley_bench::startup::StartupReport;

use super::platform::{PlatformArgs, with_platform};
use super::roles::Sandbox;
use super::{Output, Target};

#[derive(Args)]
pub struct StartupArgs {
    #[arg(long, default_value_t = 1024)]
    workers: usize,
    /// Granularities, comma separated; 1 is FaaS mode (one process per worker, a broker between them).
    #[arg(long, value_delimiter = ',', default_value = "64,1")]
    granularity: Vec<usize>,
    /// Warm bursts per granularity (after one cold burst).
    #[arg(long, default_value_t = 10)]
    repeat: usize,
    /// The function every worker runs. The default sleeps, so that what is measured is
    /// the start itself, not early workers' work competing with later workers' start.
    #[arg(long, default_value = "sleep")]
    function: String,
    /// Its parameters (JSON).
    #[arg(long, default_value = r#"{"seconds": 0.5}"#)]
    params: String,
    /// Transport of FaaS mode (g = 1).
    #[arg(long, default_value = "redis")]
    faas_transport: String,
    /// Measure every granularity twice in this run, packs unsandboxed then
    /// sandboxed (needs root), and print the sandbox's cost.
    #[arg(long)]
    compare_sandbox: bool,
    #[command(flatten)]
    platform: PlatformArgs,
}

pub fn run(mut args: StartupArgs, target: &Target, output: Output) -> anyhow::Result<()> {
    if args.granularity.iter().any(|&g| g == 0 || g > args.workers) {
        bail!("every granularity must be between 1 and --workers ({})", args.workers);
    }
    // The same warm-pool policy for both modes: room for every pack of the burst.
    args.platform.invoker.warm_pool = args.platform.invoker.warm_pool.max(args.workers);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut reports = Vec::new();
    if output == Output::Table {
        println!("function {} {}", args.function, args.params);
        println!(
            "{:<13} {:>6} {:>4} {:>6} {:<8} {:>9} {:>9} {:>9} {:>10} {:>10}",
            "mode", "N", "g", "packs", "via", "cold ms", "warm p50", "warm max", "spread p50", "spread max"
        );
    }
    let sandboxes = match args.compare_sandbox {
        true => vec![Sandbox::Off, Sandbox::On],
        false => vec![args.platform.invoker.sandbox],
    };
    let runs: Vec<(usize, Sandbox)> =
        args.granularity.iter().flat_map(|&g| sandboxes.iter().map(move |&s| (g, s))).collect();
    for (g, sandbox) in runs {
        args.platform.invoker.sandbox = sandbox;
        let mut report = runtime.block_on(measure(&args, target, g))?;
        // (auto sandboxes where the invoker is root: the embedded one runs as this process.)
        // SAFETY: geteuid(2) reads the caller's effective uid.
        let root = unsafe { libc::geteuid() } == 0;
        if sandbox == Sandbox::On || (sandbox == Sandbox::Auto && root) {
            report.mode.push_str("+sandbox");
        }
        if output == Output::Table {
            println!(
                "{:<13} {:>6} {:>4} {:>6} {:<8} {:>9.1} {:>9.1} {:>9.1} {:>10.2} {:>10.2}",
                report.mode,
                report.workers,
                report.granularity,
                report.packs,
                report.transport,
                report.cold_ms,
                report.warm.p50_us / 1e3,
                report.warm.max_us / 1e3,
                report.warm_spread.p50_us / 1e3,
                report.warm_spread.max_us / 1e3
            );
        }
        reports.push(report);
    }
    if output == Output::Table
        && let (Some(burst), Some(faas)) =
            (reports.iter().find(|r| r.mode == "burst"), reports.iter().find(|r| r.mode == "faas"))
    {
        println!(
            "FaaS mode / burst mode: cold {:.1}x, warm p50 {:.1}x",
            faas.cold_ms / burst.cold_ms,
            faas.warm.p50_us / burst.warm.p50_us
        );
    }
    if output == Output::Table && args.compare_sandbox {
        for pair in reports.chunks(2) {
            if let [plain, sandboxed] = pair {
                println!(
                    "g = {}: sandboxed / unsandboxed: cold {:.2}x, warm p50 {:.2}x",
                    plain.granularity,
                    sandboxed.cold_ms / plain.cold_ms,
                    sandboxed.warm.p50_us / plain.warm.p50_us
                );
            }
        }
    }
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(())
}

/// One cold burst on a fresh platform, then `repeat` warm ones, each after the pool refilled.
async fn measure(args: &StartupArgs, target: &Target, g: usize) -> anyhow::Result<StartupReport> {
    let params = serde_json::from_str(&args.params).context("--params is not valid JSON")?;
    let plan = Plan { workers: args.workers, function: args.function.clone(), params, repeat: args.repeat };
    let mode = if g == 1 { Mode::faas(&args.faas_transport) } else { Mode::burst(g) };
    with_platform(
        &args.platform,
        |url| async move { Ok(startup::measure(&target.client_at(&url)?, &plan, &mode).await?) },
    )
    .await
}
