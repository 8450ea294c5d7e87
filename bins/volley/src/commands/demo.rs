//! `volley demo terasort`: the main job end to end, saying what happens at each
//! step: generate records, sort them as a burst, validate the output.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use volley_apps::terasort::{data, records};
use volley_storage::Storage;

use super::platform::{PlatformArgs, with_platform};
use super::{Output, Target};
use volley_bench::jobs::{Mode, Results, job_request};
use volley_proto::api::BurstRequest;

#[derive(Subcommand)]
pub enum Demo {
    /// Generate records, sort them as a burst, and validate the sorted output.
    Terasort(TerasortDemo),
}

#[derive(Args)]
pub struct TerasortDemo {
    /// Bytes to sort (records of 100 bytes).
    #[arg(long, default_value = "1GiB", value_parser = super::output::parse_size)]
    size: usize,
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Workers per pack.
    #[arg(long, default_value_t = 4)]
    granularity: usize,
    /// Where the input (`in/`) and the sorted output (`out/`) go.
    #[arg(long, default_value = "file:///tmp/volley-demo")]
    storage: String,
    #[command(flatten)]
    platform: PlatformArgs,
}

impl Demo {
    pub fn run(self, target: &Target, output: Output) -> anyhow::Result<()> {
        match self {
            Demo::Terasort(args) => terasort(args, target, output),
        }
    }
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

fn terasort(mut args: TerasortDemo, target: &Target, output: Output) -> anyhow::Result<()> {
    if args.workers == 0 || args.granularity == 0 || args.granularity > args.workers {
        bail!("--workers must be at least 1 and --granularity between 1 and --workers");
    }
    let records = (args.size / records::RECORD) as u64;
    if records == 0 {
        bail!("--size must hold at least one 100-byte record");
    }
    let say = |line: String| {
        if output == Output::Table {
            println!("{line}");
        }
    };
    args.platform.grant_local_storage(&args.storage)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let opts = args.platform.brokers.storage();
    let base = args.storage.trim_end_matches('/');
    let (in_url, out_url) = (format!("{base}/in"), format!("{base}/out"));
    let input = Storage::open(&in_url, &opts)?;
    let sorted = Storage::open(&out_url, &opts)?;

    let mib = args.size as f64 / (1 << 20) as f64;
    say(format!("1/3 generating {records} records ({mib:.0} MiB, gensort layout) into {in_url}"));
    let t = Instant::now();
    runtime.block_on(async {
        for (key, _) in input.list("").await? {
            input.delete(&key).await?;
        }
        data::generate(&input, records, args.workers, 1).await.map_err(anyhow::Error::from)
    })?;
    let gen_s = secs(t);
    say(format!("    done in {gen_s:.1} s"));

    let packs = args.workers.div_ceil(args.granularity);
    let platform = if target.controller.is_some() { "the controller" } else { "an embedded platform" };
    say(format!("2/3 sorting as one burst of {} workers in {packs} packs on {platform}", args.workers));
    let params = json!({"input": in_url, "output": out_url});
    let request = BurstRequest {
        memory_mb: None,
        ..job_request("terasort", args.workers, &Mode::burst(args.granularity), params)
    };
    let t = Instant::now();
    let sort = |url: String| async move {
        let client = target.client_at(&url)?;
        Ok(client.run_to_success(&request, Duration::from_secs(3600)).await?)
    };
    let burst = match &target.controller {
        Some(url) => runtime.block_on(sort(url.clone())),
        None => runtime.block_on(with_platform(&args.platform, sort)),
    }
    .context("the sort")?;
    let sort_s = secs(t);
    let results = Results::of(&burst);
    let phase = |p: &str| results.slowest(&format!("/ms/{p}")) / 1e3;
    let remote = results.sum("remote_bytes");
    say(format!(
        "    burst {} succeeded in {sort_s:.1} s over {}: read {:.1} s, sample {:.1} s, partition {:.1} s, \
         shuffle {:.1} s ({:.0} MiB between packs), sort {:.1} s, write {:.1} s (slowest worker per phase)",
        burst.id,
        burst.transport.clone().unwrap_or_default(),
        phase("read"),
        phase("sample"),
        phase("partition"),
        phase("shuffle"),
        remote as f64 / (1 << 20) as f64,
        phase("sort"),
        phase("write"),
    ));
    let (least, most, skew) = results.balance("records_out");
    say(format!("    records per worker: {least} to {most} (the busiest holds {skew:.2}x the mean)"));

    say(format!("3/3 validating {out_url} against the input"));
    let t = Instant::now();
    let report = runtime.block_on(data::validate(&input, &sorted)).context("validation")?;
    say(format!(
        "    valid in {:.1} s: {} records in {} parts, in global key order, checksum {:016x} equals the input's",
        secs(t),
        report.output.records,
        report.output_parts,
        report.output.checksum
    ));
    if output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "records": records, "bytes": args.size, "input": in_url, "output": out_url,
                "burst": burst.id, "transport": burst.transport, "generate_s": gen_s, "sort_s": sort_s,
                "records_per_worker": {"min": least, "max": most, "max_over_mean": skew},
                "validation": report,
            }))?
        );
    } else {
        say(format!("sorted {mib:.0} MiB in {sort_s:.1} s ({:.0} MiB/s)", mib / sort_s.max(1e-9)));
        say(format!("input and output stay in {base} (the next run replaces them)"));
    }
    Ok(())
}
