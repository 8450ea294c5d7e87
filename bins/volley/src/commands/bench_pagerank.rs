//! `volley bench pagerank`: the same PageRank as a burst (packs of g, direct
//! transport) and as classic FaaS (g = 1, a broker), in one run on one graph:
//! bytes sent between processes and time per iteration.

use clap::Args;
use volley_bench::jobs::pagerank::{self, Report};
use volley_bench::jobs::{Mode, fresh_run, remove_run};
use volley_storage::Storage;

use super::platform::{PlatformArgs, with_platform};
use super::{Output, Target};

#[derive(Args)]
pub struct PagerankArgs {
    #[arg(long, default_value_t = 100_000)]
    vertices: u32,
    #[arg(long, default_value_t = 1_000_000)]
    edges: u64,
    #[arg(long, default_value_t = 128)]
    workers: usize,
    /// Workers per pack in burst mode.
    #[arg(long, default_value_t = 64)]
    granularity: usize,
    /// Iterations to run (the tolerance is set so that all of them run; PageRank
    /// typically needs 30 or more to converge).
    #[arg(long, default_value_t = 30)]
    iterations: usize,
    #[arg(long, default_value = "file:///tmp/volley-bench-pagerank")]
    storage: String,
    #[arg(long, default_value = "redis")]
    faas_transport: String,
    #[command(flatten)]
    platform: PlatformArgs,
}

pub fn run(mut args: PagerankArgs, target: &Target, output: Output) -> anyhow::Result<()> {
    if args.granularity == 0 || args.granularity > args.workers {
        anyhow::bail!("--granularity must be between 1 and --workers");
    }
    // Same warm-pool policy for both modes; room for every pack.
    args.platform.invoker.warm_pool = args.platform.invoker.warm_pool.max(args.workers);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    args.platform.grant_local_storage(&args.storage)?;
    let opts = args.platform.brokers.storage();
    let base = fresh_run(&args.storage);
    let graph = format!("{base}/graph");
    runtime.block_on(volley_apps::pagerank::generate(
        &Storage::open(&graph, &opts)?,
        args.vertices,
        args.edges,
        8,
        1,
    ))?;
    // The async work below captures references to these, not the values.
    let args = &args;
    let base = &base;
    let modes = [Mode::burst(args.granularity), Mode::faas(&args.faas_transport)];
    let rows = runtime.block_on(with_platform(&args.platform, |url| async move {
        let client = target.client_at(&url)?;
        let mut rows = Vec::new();
        for mode in &modes {
            let job = (graph.as_str(), args.vertices, args.iterations);
            rows.push(pagerank::on_platform(&client, args.workers, mode, job, &format!("{base}/{}", mode.name)).await?);
        }
        Ok(rows)
    }));
    if let Err(e) = runtime.block_on(remove_run(base, &opts)) {
        eprintln!("warning: could not remove the benchmark's data under {base}: {e}");
    }
    let report = Report::new(args.vertices, args.edges, args.iterations, rows?);
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("pagerank of {} vertices, {} edges, {} iterations", args.vertices, args.edges, args.iterations);
    println!(
        "{:<6} {:>5} {:>4} {:>6} {:<8} {:>10} {:>12} {:>12} {:>12} {:>12}",
        "mode", "N", "g", "packs", "via", "first ms", "steady ms", "all ms/iter", "remote MiB", "local MiB"
    );
    for r in &report.rows {
        println!(
            "{:<6} {:>5} {:>4} {:>6} {:<8} {:>10.1} {:>12.1} {:>12.1} {:>12.1} {:>12.1}",
            r.mode,
            r.workers,
            r.g,
            r.packs,
            r.transport.as_deref().unwrap_or(""),
            r.first_iteration_ms,
            r.steady_ms_per_iteration,
            r.ms_per_iteration,
            r.remote_bytes as f64 / (1 << 20) as f64,
            r.local_bytes as f64 / (1 << 20) as f64,
        );
    }
    println!(
        "burst mode sends {:.1}% fewer bytes between processes and is {:.1}x faster per steady \
         iteration ({:.1}x counting the first)",
        report.remote_bytes_saved * 100.0,
        report.speedup,
        report.speedup_with_first_iteration
    );
    Ok(())
}
