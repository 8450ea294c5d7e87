//! `volley bench download`: every worker needs one object; cooperative
//! (one byte range per worker, pieces shared in the pack) vs each worker
//! downloading all of it, in one run.

use clap::Args;
use volley_bench::jobs::download::{self, Report};
use volley_bench::jobs::{fresh_run, remove_run};
use volley_storage::Storage;

use super::platform::{PlatformArgs, with_platform};
use super::{Output, Target};

#[derive(Args)]
pub struct DownloadArgs {
    #[arg(long, default_value = "256MiB", value_parser = super::output::parse_size)]
    size: usize,
    #[arg(long, default_value_t = 16)]
    workers: usize,
    #[arg(long, default_value_t = 8)]
    granularity: usize,
    #[arg(long, default_value = "file:///tmp/volley-bench-download")]
    storage: String,
    #[command(flatten)]
    platform: PlatformArgs,
}

pub fn run(mut args: DownloadArgs, target: &Target, output: Output) -> anyhow::Result<()> {
    if args.granularity == 0 || args.granularity > args.workers {
        anyhow::bail!("--granularity must be between 1 and --workers");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    args.platform.grant_local_storage(&args.storage)?;
    let base = fresh_run(&args.storage);
    let opts = args.platform.brokers.storage();
    let storage = Storage::open(&base, &opts)?;
    runtime.block_on(storage.put("object", download::object(args.size)))?;
    // The async work below captures references to these, not the values.
    let (args, base) = (&args, &base);
    let rows = runtime.block_on(with_platform(&args.platform, |url| async move {
        let client = target.client_at(&url)?;
        let mut rows = Vec::new();
        for cooperative in [false, true] {
            let object = (base.as_str(), "object");
            rows.push(download::on_platform(&client, args.workers, args.granularity, object, cooperative).await?);
        }
        Ok(rows)
    }));
    if let Err(e) = runtime.block_on(remove_run(base, &opts)) {
        eprintln!("warning: could not remove the benchmark's data under {base}: {e}");
    }
    let report = Report { bytes: args.size, workers: args.workers, granularity: args.granularity, rows: rows? };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{} workers in packs of {} read one object of {:.0} MiB",
        report.workers,
        report.granularity,
        report.bytes as f64 / (1 << 20) as f64
    );
    println!("{:<12} {:>14} {:>10}", "mode", "pulled MiB", "ms");
    for r in &report.rows {
        println!("{:<12} {:>14.1} {:>10.1}", r.mode, r.pulled_bytes as f64 / (1 << 20) as f64, r.ms);
    }
    Ok(())
}
