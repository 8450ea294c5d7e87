//! `volley bench terasort`: the same sort as a burst (packs of g, direct
//! transport), as classic FaaS (g = 1, shuffle through a broker) and as one
//! process sorting the records in memory, in one run on the same input.

use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use volley_bench::jobs::terasort::{self, Report};
use volley_bench::jobs::{Mode, fresh_run, remove_run};
use volley_storage::Storage;

use super::platform::{PlatformArgs, with_platform};
use super::{Output, Target};

#[derive(Args)]
pub struct TerasortArgs {
    /// Bytes to sort (records of 100 bytes).
    #[arg(long, default_value = "256MiB", value_parser = super::output::parse_size)]
    size: usize,
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Workers per pack in burst mode.
    #[arg(long, default_value_t = 4)]
    granularity: usize,
    /// Where input and outputs go (a fresh prefix under it per run).
    #[arg(long, default_value = "file:///tmp/volley-bench-terasort")]
    storage: String,
    /// Transport of FaaS mode (g = 1).
    #[arg(long, default_value = "redis")]
    faas_transport: String,
    /// Skip FaaS mode (it moves every byte through the broker).
    #[arg(long)]
    no_faas: bool,
    #[command(flatten)]
    platform: PlatformArgs,
}

pub fn run(mut args: TerasortArgs, target: &Target, output: Output) -> anyhow::Result<()> {
    if args.granularity == 0 || args.granularity > args.workers {
        bail!("--granularity must be between 1 and --workers");
    }
    args.platform.grant_local_storage(&args.storage)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let opts = args.platform.brokers.storage();
    let base = fresh_run(&args.storage);
    let input_url = format!("{base}/input");
    let input = Storage::open(&input_url, &opts)?;
    let started = Instant::now();
    let records = runtime.block_on(terasort::generate(&input, args.size))?;
    eprintln!("generated {records} records in {:.1} s", started.elapsed().as_secs_f64());

    let single = runtime.block_on(terasort::one_process(&input, &format!("{base}/single"), &opts));
    let mut modes = vec![Mode::burst(args.granularity)];
    if !args.no_faas {
        modes.push(Mode::faas(&args.faas_transport));
    }
    // The async work below captures references to these, not the values.
    let (args, base, opts, input) = (&args, &base, &opts, &input);
    // (Skipped when the baseline failed: its error is the one to report.)
    let result = if single.is_err() {
        Ok(Vec::new())
    } else {
        runtime.block_on(with_platform(&args.platform, |url| async move {
            let client = target.client_at(&url)?;
            let mut rows = Vec::new();
            for mode in &modes {
                let sorted_url = format!("{base}/{}", mode.name);
                let sorted = Storage::open(&sorted_url, opts)?;
                let row =
                    terasort::on_platform(&client, args.workers, mode, (&input_url, input), (&sorted_url, &sorted))
                        .await
                        .with_context(|| format!("{} mode", mode.name))?;
                rows.push(row);
            }
            Ok(rows)
        }))
    };
    if let Err(e) = runtime.block_on(remove_run(base, opts)) {
        eprintln!("warning: could not remove the benchmark's data under {base}: {e}");
    }
    let mut rows = vec![single?];
    rows.extend(result?);
    print(&Report::new(args.size, rows), output)
}

fn print(report: &Report, output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    println!("terasort of {:.0} MiB (phase times: slowest worker, ms)", report.bytes as f64 / (1 << 20) as f64);
    println!(
        "{:<10} {:>3} {:>3} {:<9} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>9} {:>10}",
        "mode", "N", "g", "via", "read", "sample", "partition", "shuffle", "sort", "write", "total", "remote MiB"
    );
    for r in &report.rows {
        let m = &r.ms;
        println!(
            "{:<10} {:>3} {:>3} {:<9} {:>8.0} {:>8.0} {:>9.0} {:>8.0} {:>8.0} {:>8.0} {:>9.0} {:>10.1}",
            r.mode,
            r.workers,
            r.g,
            r.transport,
            m.read,
            m.sample,
            m.partition,
            m.shuffle,
            m.sort,
            m.write,
            r.total_ms,
            r.remote_bytes as f64 / (1 << 20) as f64
        );
    }
    if let Some(x) = report.faas_over_burst {
        println!("FaaS mode / burst mode: {x:.2}x");
    }
    if let Some(x) = report.burst_over_one_process {
        println!("burst mode / one process in memory: {x:.2}x");
    }
    Ok(())
}
