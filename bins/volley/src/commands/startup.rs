//! `volley bench startup`: submit-to-running of bursts, cold and warm, burst vs FaaS mode.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use volley_bench::startup::StartupReport;
use volley_proto::api::{BurstRequest, Granularity};

use super::Output;
use super::client::Client;
use super::platform::{PlatformArgs, with_platform};

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
    #[command(flatten)]
    platform: PlatformArgs,
}

pub fn run(mut args: StartupArgs, output: Output) -> anyhow::Result<()> {
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
            "{:<5} {:>6} {:>4} {:>6} {:<8} {:>9} {:>9} {:>9} {:>10} {:>10}",
            "mode", "N", "g", "packs", "via", "cold ms", "warm p50", "warm max", "spread p50", "spread max"
        );
    }
    for &g in &args.granularity {
        let report = runtime.block_on(measure(&args, g))?;
        if output == Output::Table {
            println!(
                "{:<5} {:>6} {:>4} {:>6} {:<8} {:>9.1} {:>9.1} {:>9.1} {:>10.2} {:>10.2}",
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
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(())
}

/// One cold burst on a fresh platform, then `repeat` warm ones, each after the pool refilled.
async fn measure(args: &StartupArgs, g: usize) -> anyhow::Result<StartupReport> {
    with_platform(&args.platform, |url| async move {
        let client = Client::new(&url)?;
        let faas = g == 1;
        let request = BurstRequest {
            function: args.function.clone(),
            workers: args.workers,
            granularity: Granularity::Fixed(g),
            transport: faas.then(|| args.faas_transport.clone()),
            params: serde_json::from_str(&args.params).context("--params is not valid JSON")?,
            worker_params: None,
            timeout_secs: Some(300.0),
            queue_timeout_secs: Some(300.0),
            memory_mb: Some(1),
            retries: None,
        };
        let packs = args.workers.div_ceil(g);
        let cold = client.run_to_success(&request, Duration::from_secs(300)).await?;
        let mut warm = Vec::new();
        for _ in 0..args.repeat {
            wait_for_warm(&url, packs).await?;
            warm.push(client.run_to_success(&request, Duration::from_secs(300)).await?);
        }
        Ok(StartupReport::new(if faas { "faas" } else { "burst" }, &cold, &warm)?)
    })
    .await
}

/// Waits until the invoker reports `packs` warm processes (bounded).
async fn wait_for_warm(url: &str, packs: usize) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list: Vec<volley_proto::cluster::InvokerInfo> =
            http.get(format!("{url}/v1/invokers")).send().await?.json().await.context("listing invokers")?;
        if list.iter().map(|i| i.warm).sum::<usize>() >= packs {
            // Let the last started processes settle (their start-up work is done off the clock).
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the warm pool did not refill to {packs} processes within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
