//! `volley bench terasort`: the same sort as a burst (packs of g, direct
//! transport), as classic FaaS (g = 1, shuffle through a broker) and as one
//! process sorting the records in memory, in one run on the same input.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};
use volley_apps::terasort::{data, records};
use volley_proto::api::BurstRequest;
use volley_storage::Storage;

use super::Output;
use super::client::{Client, Results, job_request};
use super::data::storage_options;
use super::platform::{PlatformArgs, with_platform};

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

const PHASES: [&str; 6] = ["read", "sample", "partition", "shuffle", "sort", "write"];

pub fn run(args: TerasortArgs, output: Output) -> anyhow::Result<()> {
    if args.granularity == 0 || args.granularity > args.workers {
        bail!("--granularity must be between 1 and --workers");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let opts = storage_options(&args.platform.brokers);
    let base = format!("{}/run-{:08x}", args.storage.trim_end_matches('/'), rand::random::<u32>());
    let input_url = format!("{base}/input");
    let input = Storage::open(&input_url, &opts)?;
    let record_count = (args.size / records::RECORD) as u64;
    let gen_started = Instant::now();
    runtime.block_on(data::generate(&input, record_count, 8, 1))?;
    eprintln!("generated {record_count} records in {:.1} s", gen_started.elapsed().as_secs_f64());

    let single = runtime.block_on(one_process(&input, &format!("{base}/single"), &opts));
    let modes: Vec<(&str, usize, Option<String>)> = if args.no_faas {
        vec![("burst", args.granularity, None)]
    } else {
        vec![("burst", args.granularity, None), ("faas", 1, Some(args.faas_transport.clone()))]
    };
    // The async work below captures references to these, not the values.
    let args = &args;
    let base = &base;
    let opts = &opts;
    // (Skipped when the baseline failed: its error is the one to report.)
    let result = if single.is_err() {
        Ok(Vec::new())
    } else {
        runtime.block_on(with_platform(&args.platform, |url| async move {
            let client = Client::new(&url)?;
            let mut out = Vec::new();
            for (mode, g, transport) in &modes {
                let sorted_url = format!("{base}/{mode}");
                let row = burst(&client, args, &input_url, &sorted_url, *g, transport.clone(), mode).await?;
                data::validate(&input, &Storage::open(&sorted_url, opts)?).await.context("the sorted output")?;
                out.push(row);
            }
            Ok(out)
        }))
    };
    super::data::remove_run(&runtime, base, opts);
    let mut rows = vec![single?];
    rows.extend(result?);
    report(&rows, args.size, output)
}

/// One process: read every record, sort in memory, write one output.
async fn one_process(input: &Storage, out_url: &str, opts: &volley_storage::StorageOptions) -> anyhow::Result<Value> {
    let t = Instant::now();
    let mut pieces = Vec::new();
    for (key, _) in data::parts(input).await? {
        pieces.push(input.get(&key).await?);
    }
    let read = t.elapsed();
    let t = Instant::now();
    let sorted = tokio::task::spawn_blocking(move || records::sort_records(pieces.iter().map(|p| &p[..]))).await?;
    let sort = t.elapsed();
    let t = Instant::now();
    let out = Storage::open(out_url, opts)?;
    out.put(&data::part_name(0), bytes::Bytes::from(sorted)).await?;
    let write = t.elapsed();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(json!({"mode": "1 process", "workers": 1, "g": 1, "transport": "-",
        "ms": {"read": ms(read), "sample": 0.0, "partition": 0.0, "shuffle": 0.0, "sort": ms(sort), "write": ms(write)},
        "total_ms": ms(read + sort + write), "remote_bytes": 0}))
}

async fn burst(
    client: &Client,
    args: &TerasortArgs,
    input: &str,
    output: &str,
    g: usize,
    transport: Option<String>,
    mode: &str,
) -> anyhow::Result<Value> {
    let params = json!({"input": input, "output": output});
    let request = BurstRequest { memory_mb: Some(1), ..job_request("terasort", args.workers, g, transport, params) };
    let b = client.run_to_success(&request, Duration::from_secs(3600)).await.with_context(|| format!("{mode} mode"))?;
    let results = Results::of(&b);
    let remote = results.sum("remote_bytes");
    let total = (b.finished_at.unwrap_or(0).saturating_sub(b.running_at.unwrap_or(0))) as f64 / 1e3;
    let mut ms = serde_json::Map::new();
    for p in PHASES {
        ms.insert(p.into(), json!(results.slowest(&format!("/ms/{p}"))));
    }
    Ok(json!({"mode": mode, "workers": args.workers, "g": g, "transport": b.transport.unwrap_or_default(),
        "ms": ms, "total_ms": total, "remote_bytes": remote}))
}

fn report(rows: &[Value], size: usize, output: Output) -> anyhow::Result<()> {
    let total = |mode: &str| rows.iter().find(|r| r["mode"] == mode).and_then(|r| r["total_ms"].as_f64());
    let (single, burst, faas) = (total("1 process"), total("burst"), total("faas"));
    let summary = json!({
        "bytes": size,
        "rows": rows,
        "faas_over_burst": faas.zip(burst).map(|(f, b)| f / b),
        "burst_over_one_process": burst.zip(single).map(|(b, s)| b / s),
    });
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    println!("terasort of {:.0} MiB (phase times: slowest worker, ms)", size as f64 / (1 << 20) as f64);
    println!(
        "{:<10} {:>3} {:>3} {:<9} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>9} {:>10}",
        "mode", "N", "g", "via", "read", "sample", "partition", "shuffle", "sort", "write", "total", "remote MiB"
    );
    for r in rows {
        let m = &r["ms"];
        println!(
            "{:<10} {:>3} {:>3} {:<9} {:>8.0} {:>8.0} {:>9.0} {:>8.0} {:>8.0} {:>8.0} {:>9.0} {:>10.1}",
            r["mode"].as_str().unwrap_or(""),
            r["workers"].as_u64().unwrap_or(0),
            r["g"].as_u64().unwrap_or(0),
            r["transport"].as_str().unwrap_or(""),
            m["read"].as_f64().unwrap_or(0.0),
            m["sample"].as_f64().unwrap_or(0.0),
            m["partition"].as_f64().unwrap_or(0.0),
            m["shuffle"].as_f64().unwrap_or(0.0),
            m["sort"].as_f64().unwrap_or(0.0),
            m["write"].as_f64().unwrap_or(0.0),
            r["total_ms"].as_f64().unwrap_or(0.0),
            r["remote_bytes"].as_u64().unwrap_or(0) as f64 / (1 << 20) as f64
        );
    }
    if let (Some(f), Some(b)) = (faas, burst) {
        println!("FaaS mode / burst mode: {:.2}x", f / b);
    }
    if let (Some(b), Some(s)) = (burst, single) {
        println!("burst mode / one process in memory: {:.2}x", b / s);
    }
    Ok(())
}
