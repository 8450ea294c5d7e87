//! `volley bench load`: many bursts submitted at once from several clients.
//! All must complete exactly once, and the API must keep answering: the
//! latency of a status request is sampled throughout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use volley_bench::stats::Percentiles;
use volley_proto::api::{BurstRequest, BurstState, Granularity};

use super::Output;
use super::client::Client;
use super::platform::{PlatformArgs, with_platform};

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
pub fn run(args: LoadArgs, controller: Option<String>, output: Output) -> anyhow::Result<()> {
    if args.clients == 0 || args.bursts == 0 {
        anyhow::bail!("--bursts and --clients must be at least 1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // The async work below captures references to these, not the values.
    let args = &args;
    let report = match controller {
        Some(url) => runtime.block_on(load(url.trim_end_matches('/'), args, Platform::Shared))?,
        None => runtime
            .block_on(with_platform(&args.platform, |url| async move { load(&url, args, Platform::Own).await }))?,
    };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} bursts of {} workers from {} clients: {} succeeded, each exactly once, in {:.1} s",
            args.bursts,
            args.workers,
            args.clients,
            report["succeeded"],
            report["seconds"].as_f64().unwrap_or(0.0)
        );
        println!(
            "status request during the load: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} requests",
            report["status_p50_ms"].as_f64().unwrap_or(0.0),
            report["status_p99_ms"].as_f64().unwrap_or(0.0),
            report["status_max_ms"].as_f64().unwrap_or(0.0),
            report["status_requests"]
        );
    }
    Ok(())
}

/// Whether the platform under load is this command's own (so it holds only
/// the bursts this run submits) or a shared one (other bursts may be listed).
#[derive(Clone, Copy, PartialEq)]
enum Platform {
    Own,
    Shared,
}

async fn load(url: &str, args: &LoadArgs, platform: Platform) -> anyhow::Result<serde_json::Value> {
    let started = Instant::now();
    let request = BurstRequest {
        function: "sum".into(),
        workers: args.workers,
        granularity: Granularity::Fixed(args.granularity),
        transport: None,
        params: json!(null),
        worker_params: None,
        timeout_secs: Some(600.0),
        queue_timeout_secs: Some(600.0),
        memory_mb: Some(1),
        retries: None,
    };
    // The probe asks for one burst's status again and again while the load runs.
    let probe_client = Client::new(url)?;
    let first = probe_client.submit(&request).await?;
    let done = Arc::new(tokio::sync::Notify::new());
    let probe = {
        let done = done.clone();
        let id = first.id.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                let t = Instant::now();
                let answered = probe_client.burst(&id).await.is_ok();
                if answered {
                    samples.push(t.elapsed());
                }
                tokio::select! {
                    _ = done.notified() => return samples,
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        })
    };
    let per_client = (args.bursts - 1).div_ceil(args.clients);
    let mut clients = Vec::new();
    for c in 0..args.clients {
        let (url, request) = (url.to_string(), request.clone());
        let count = per_client.min((args.bursts - 1).saturating_sub(c * per_client));
        clients.push(tokio::spawn(async move {
            let client = Client::new(&url)?;
            let mut ids = Vec::new();
            for _ in 0..count {
                ids.push(client.submit(&request).await?.id);
            }
            Ok::<_, anyhow::Error>(ids)
        }));
    }
    let mut ids = vec![first.id];
    for c in clients {
        ids.extend(c.await??);
    }
    let waiter = Client::new(url)?;
    let mut succeeded = 0;
    for id in &ids {
        let b = loop {
            let b = waiter.wait(id, Duration::from_secs(30)).await?;
            if b.state.is_final() {
                break b;
            }
        };
        // Exactly once: one result per worker, every pack exited once.
        let results = b.workers.iter().filter(|w| w.result.is_some()).count();
        if b.state != BurstState::Succeeded || results != args.workers {
            anyhow::bail!("burst {id} ended {} with {results} results: {:?}", b.state.name(), b.error);
        }
        succeeded += 1;
    }
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    if unique.len() != args.bursts {
        anyhow::bail!("{} ids for {} bursts", unique.len(), args.bursts);
    }
    // Listed once each: on a platform of our own, exactly ours; on a shared
    // one, ours among the newest.
    let listed = waiter.list((args.bursts + 10).min(1000)).await?;
    match platform {
        Platform::Own if listed.len() != args.bursts => {
            anyhow::bail!("the controller lists {} bursts, {} were submitted", listed.len(), args.bursts)
        }
        Platform::Shared if args.bursts <= 990 => {
            let ours = listed.iter().filter(|b| unique.contains(&&b.id)).count();
            if ours != args.bursts {
                anyhow::bail!("the controller lists {ours} of the {} bursts this run submitted", args.bursts);
            }
        }
        _ => {}
    }
    let seconds = started.elapsed().as_secs_f64();
    done.notify_one();
    let samples = probe.await?;
    let p = Percentiles::of(&samples);
    Ok(json!({
        "bursts": args.bursts, "workers": args.workers, "clients": args.clients, "succeeded": succeeded,
        "seconds": seconds, "status_requests": samples.len(),
        "status_p50_ms": p.p50_us / 1e3, "status_p99_ms": p.p99_us / 1e3, "status_max_ms": p.max_us / 1e3,
    }))
}
