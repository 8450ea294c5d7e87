//! `volley bench download`: every worker needs one object; cooperative
//! (one byte range per worker, pieces shared in the pack) vs each worker
//! downloading all of it, in one run.

use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use serde_json::json;
use volley_proto::api::BurstRequest;
use volley_storage::Storage;

use super::Output;
use super::client::{Client, Results, job_request};
use super::data::storage_options;
use super::platform::{PlatformArgs, with_platform};

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

pub fn run(args: DownloadArgs, output: Output) -> anyhow::Result<()> {
    if args.granularity == 0 || args.granularity > args.workers {
        anyhow::bail!("--granularity must be between 1 and --workers");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let base = format!("{}/run-{:08x}", args.storage.trim_end_matches('/'), rand::random::<u32>());
    let opts = storage_options(&args.platform.brokers);
    let storage = Storage::open(&base, &opts)?;
    let object: Vec<u8> = (0..args.size).map(|i| (i % 251) as u8).collect();
    runtime.block_on(storage.put("object", Bytes::from(object)))?;
    // The async work below captures references to these, not the values.
    let args = &args;
    let base = &base;
    let rows = runtime.block_on(with_platform(&args.platform, |url| async move {
        let client = Client::new(&url)?;
        let mut rows = Vec::new();
        for cooperative in [false, true] {
            let params = json!({"storage": base, "key": "object", "cooperative": cooperative});
            let request = BurstRequest {
                memory_mb: Some(1),
                ..job_request("download", args.workers, args.granularity, None, params)
            };
            let b = client.run_to_success(&request, Duration::from_secs(3600)).await?;
            let results = Results::of(&b);
            let sums: std::collections::BTreeSet<u64> = results.iter().filter_map(|r| r["checksum"].as_u64()).collect();
            if sums.len() != 1 || results.len() != args.workers {
                anyhow::bail!("the workers did not all get the same bytes");
            }
            let (pulled, ms) = (results.sum("pulled_bytes"), results.slowest("/ms"));
            rows.push(json!({"mode": if cooperative { "cooperative" } else { "per-worker" }, "pulled_bytes": pulled, "ms": ms}));
        }
        Ok(rows)
    }));
    super::data::remove_run(&runtime, base, &opts);
    let rows = rows?;
    if output == Output::Json {
        let doc = json!({"bytes": args.size, "workers": args.workers, "granularity": args.granularity, "rows": rows});
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!(
        "{} workers in packs of {} read one object of {:.0} MiB",
        args.workers,
        args.granularity,
        args.size as f64 / (1 << 20) as f64
    );
    println!("{:<12} {:>14} {:>10}", "mode", "pulled MiB", "ms");
    for r in &rows {
        println!(
            "{:<12} {:>14.1} {:>10.1}",
            r["mode"].as_str().unwrap_or(""),
            r["pulled_bytes"].as_f64().unwrap_or(0.0) / (1 << 20) as f64,
            r["ms"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}
