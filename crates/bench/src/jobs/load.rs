//! Many bursts submitted at once from several clients: all must complete
//! exactly once, and the API must keep answering (the latency of a status
//! request is sampled throughout).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use volley_client::Client;
use volley_proto::api::{BurstRequest, BurstState};

use super::Mode;
use crate::stats::Percentiles;
use crate::{Error, Result};

/// What is submitted.
#[derive(Debug, Clone)]
pub struct Plan {
    pub bursts: usize,
    pub workers: usize,
    pub granularity: usize,
    /// Concurrent clients submitting.
    pub clients: usize,
}

/// Whether the platform under load is the benchmark's own (so it holds only
/// the bursts this run submits) or a shared one (other bursts may be listed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Platform {
    Own,
    Shared,
}

/// The outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub bursts: usize,
    pub workers: usize,
    pub clients: usize,
    pub succeeded: usize,
    pub seconds: f64,
    pub status_requests: usize,
    pub status_p50_ms: f64,
    pub status_p99_ms: f64,
    pub status_max_ms: f64,
}

/// Loads the platform of `client` with `plan`.
pub async fn run(client: &Client, plan: &Plan, platform: Platform) -> Result<Report> {
    if plan.clients == 0 || plan.bursts == 0 {
        return Err(Error::Invalid("--bursts and --clients must be at least 1".into()));
    }
    let started = Instant::now();
    let request = BurstRequest {
        timeout_secs: Some(600.0),
        queue_timeout_secs: Some(600.0),
        ..super::job_request("sum", plan.workers, &Mode::burst(plan.granularity), serde_json::Value::Null)
    };
    // The probe asks for one burst's status again and again while the load runs.
    let first = client.submit(&request).await?;
    let done = Arc::new(tokio::sync::Notify::new());
    let probe = {
        let (done, id, probe) = (done.clone(), first.id.clone(), client.clone());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                let t = Instant::now();
                if probe.burst(&id).await.is_ok() {
                    samples.push(t.elapsed());
                }
                tokio::select! {
                    _ = done.notified() => return samples,
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        })
    };
    let per_client = (plan.bursts - 1).div_ceil(plan.clients);
    let mut submitters = Vec::new();
    for c in 0..plan.clients {
        let (client, request) = (client.clone(), request.clone());
        let count = per_client.min((plan.bursts - 1).saturating_sub(c * per_client));
        submitters.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..count {
                ids.push(client.submit(&request).await?.id);
            }
            Ok::<_, volley_client::Error>(ids)
        }));
    }
    let mut ids = vec![first.id];
    for s in submitters {
        ids.extend(s.await.map_err(|e| Error::Invalid(format!("a submitting client failed: {e}")))??);
    }
    let mut succeeded = 0;
    for id in &ids {
        // Exactly once: one result per worker.
        let b = client.wait_until_final(id, Duration::from_secs(600)).await?;
        let results = b.workers.iter().filter(|w| w.result.is_some()).count();
        if b.state != BurstState::Succeeded || results != plan.workers {
            return Err(Error::Invalid(format!(
                "burst {id} ended {} with {results} results: {:?}",
                b.state.name(),
                b.error
            )));
        }
        succeeded += 1;
    }
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    if unique.len() != plan.bursts {
        return Err(Error::Invalid(format!("{} ids for {} bursts", unique.len(), plan.bursts)));
    }
    // Listed once each: on a platform of our own, exactly ours; on a shared
    // one, ours among the newest.
    let listed = client.list((plan.bursts + 10).min(1000)).await?;
    match platform {
        Platform::Own if listed.len() != plan.bursts => {
            return Err(Error::Invalid(format!(
                "the controller lists {} bursts, {} were submitted",
                listed.len(),
                plan.bursts
            )));
        }
        Platform::Shared if plan.bursts <= 990 => {
            let ours = listed.iter().filter(|b| unique.contains(&&b.id)).count();
            if ours != plan.bursts {
                return Err(Error::Invalid(format!(
                    "the controller lists {ours} of the {} bursts this run submitted",
                    plan.bursts
                )));
            }
        }
        _ => {}
    }
    let seconds = started.elapsed().as_secs_f64();
    done.notify_one();
    let samples = probe.await.map_err(|e| Error::Invalid(format!("the status probe failed: {e}")))?;
    let p = Percentiles::of(&samples);
    Ok(Report {
        bursts: plan.bursts,
        workers: plan.workers,
        clients: plan.clients,
        succeeded,
        seconds,
        status_requests: samples.len(),
        status_p50_ms: p.p50_us / 1e3,
        status_p99_ms: p.p99_us / 1e3,
        status_max_ms: p.max_us / 1e3,
    })
}
