//! `volley bench load`: many bursts submitted at once from several clients.
//! All must complete exactly once, and the API must keep answering: the
//! latency of a status request is sampled throughout.

use clap::Args;
use volley_bench::jobs::load::{self, Plan, Platform};

use super::platform::{PlatformArgs, with_platform};
use super::{Output, Target};

#[derive(Args)]
pub struct LoadArgs {
    #[arg(long, default_value_t = 200)]
    bursts: usize,
    #[arg(long, default_value_t = 8)]
    workers: usize,
    #[arg(long, default_value_t = 4)]
    granularity: usize,
    /// Concurrent clients submitting.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    #[command(flatten)]
    platform: PlatformArgs,
}

/// Loads the controller at `controller`, or an embedded platform of its own without one.
/// Loads the controller of `target`, or an embedded platform of its own without one.
pub fn run(args: LoadArgs, target: &Target, output: Output) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let plan =
        Plan { bursts: args.bursts, workers: args.workers, granularity: args.granularity, clients: args.clients };
    let plan = &plan;
    let report = match &target.controller {
        Some(_) => runtime
            .block_on(async { Ok::<_, anyhow::Error>(load::run(&target.client()?, plan, Platform::Shared).await?) })?,
        None => runtime.block_on(with_platform(&args.platform, |url| async move {
            Ok(load::run(&target.client_at(&url)?, plan, Platform::Own).await?)
        }))?,
    };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} bursts of {} workers from {} clients: {} succeeded, each exactly once, in {:.1} s",
            report.bursts, report.workers, report.clients, report.succeeded, report.seconds
        );
        println!(
            "status request during the load: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} requests",
            report.status_p50_ms, report.status_p99_ms, report.status_max_ms, report.status_requests
        );
    }
    Ok(())
}
