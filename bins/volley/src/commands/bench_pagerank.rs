//! `volley bench pagerank`: the same PageRank as a burst (packs of g, direct
//! transport) and as classic FaaS (g = 1, a broker), in one run on one graph:
//! bytes sent between processes and time per iteration.

use std::time::Duration;

use clap::Args;
use serde_json::json;
use volley_proto::api::BurstRequest;
use volley_storage::Storage;

use super::Output;
use super::client::{Client, Results, job_request};
use super::data::storage_options;
use super::platform::{PlatformArgs, with_platform};

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

pub fn run(mut args: PagerankArgs, output: Output) -> anyhow::Result<()> {
    if args.granularity == 0 || args.granularity > args.workers {
        anyhow::bail!("--granularity must be between 1 and --workers");
    }
    // Same warm-pool policy for both modes; room for every pack.
    args.platform.invoker.warm_pool = args.platform.invoker.warm_pool.max(args.workers);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let opts = storage_options(&args.platform.brokers);
    let base = format!("{}/run-{:08x}", args.storage.trim_end_matches('/'), rand::random::<u32>());
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
    let rows = runtime.block_on(with_platform(&args.platform, |url| async move {
        let client = Client::new(&url)?;
        let mut rows = Vec::new();
        for (mode, g, transport) in [("burst", args.granularity, None), ("faas", 1, Some(args.faas_transport.clone()))]
        {
            let params = json!({"input": graph, "output": format!("{base}/{mode}"), "vertices": args.vertices,
                               "tolerance": 0.0, "max_iterations": args.iterations});
            let request =
                BurstRequest { memory_mb: Some(1), ..job_request("pagerank", args.workers, g, transport, params) };
            let b = client.run_to_success(&request, Duration::from_secs(3600)).await?;
            let r = Results::of(&b);
            rows.push(json!({"mode": mode, "workers": args.workers, "g": g, "packs": b.packs.len(),
                "transport": b.transport, "ms_per_iteration": r.slowest("/ms_per_iteration"),
                "steady_ms_per_iteration": r.slowest("/steady_ms_per_iteration"),
                "first_iteration_ms": r.slowest("/first_iteration_ms"), "remote_bytes": r.sum("remote_bytes"),
                "local_bytes": r.sum("local_bytes")}));
        }
        Ok(rows)
    }));
    super::data::remove_run(&runtime, base, &opts);
    let rows = rows?;
    let f = |i: usize, k: &str| rows[i][k].as_f64().unwrap_or(0.0);
    let less_remote = 1.0 - f(0, "remote_bytes") / f(1, "remote_bytes").max(1.0);
    let speedup = f(1, "steady_ms_per_iteration") / f(0, "steady_ms_per_iteration").max(1e-9);
    let speedup_all = f(1, "ms_per_iteration") / f(0, "ms_per_iteration").max(1e-9);
    if output == Output::Json {
        let doc = json!({"vertices": args.vertices, "edges": args.edges, "iterations": args.iterations,
            "rows": rows, "remote_bytes_saved": less_remote, "speedup": speedup,
            "speedup_with_first_iteration": speedup_all});
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!("pagerank of {} vertices, {} edges, {} iterations", args.vertices, args.edges, args.iterations);
    println!(
        "{:<6} {:>5} {:>4} {:>6} {:<8} {:>10} {:>12} {:>12} {:>12} {:>12}",
        "mode", "N", "g", "packs", "via", "first ms", "steady ms", "all ms/iter", "remote MiB", "local MiB"
    );
    for r in &rows {
        println!(
            "{:<6} {:>5} {:>4} {:>6} {:<8} {:>10.1} {:>12.1} {:>12.1} {:>12.1} {:>12.1}",
            r["mode"].as_str().unwrap_or(""),
            r["workers"].as_u64().unwrap_or(0),
            r["g"].as_u64().unwrap_or(0),
            r["packs"].as_u64().unwrap_or(0),
            r["transport"].as_str().unwrap_or(""),
            r["first_iteration_ms"].as_f64().unwrap_or(0.0),
            r["steady_ms_per_iteration"].as_f64().unwrap_or(0.0),
            r["ms_per_iteration"].as_f64().unwrap_or(0.0),
            r["remote_bytes"].as_f64().unwrap_or(0.0) / (1 << 20) as f64,
            r["local_bytes"].as_f64().unwrap_or(0.0) / (1 << 20) as f64,
        );
    }
    println!(
        "burst mode sends {:.1}% fewer bytes between processes and is {speedup:.1}x faster per steady \
         iteration ({speedup_all:.1}x counting the first)",
        less_remote * 100.0
    );
    Ok(())
}
