//! Benchmarks of whole jobs on a running platform (TeraSort, PageRank,
//! variant calling, cooperative download, start-up, load): each runs the same job in the modes
//! it compares, checks what the job produced, and reports typed rows (the same
//! values for the table and for JSON). They take a [`Client`] of a platform;
//! the CLI starts one (embedded) or names one.

pub mod download;
pub mod flow;
pub mod genomics;
pub mod load;
pub mod pagerank;
pub mod startup;
pub mod terasort;
pub mod wasm;

use std::time::Duration;

use serde_json::Value;
use volley_client::Client;
use volley_proto::api::{Burst, BurstRequest, Granularity};
use volley_storage::{Storage, StorageOptions};

use crate::{Error, Result};

/// How long one benchmark job may run.
const JOB_LIMIT: Duration = Duration::from_secs(3600);

/// A mode a job runs in: burst (packs of g, direct links) or FaaS (g = 1, a broker).
#[derive(Debug, Clone)]
pub struct Mode {
    pub name: &'static str,
    pub granularity: usize,
    pub transport: Option<String>,
}

impl Mode {
    /// Burst mode with packs of `g` and the platform's choice of link.
    pub fn burst(g: usize) -> Mode {
        Mode { name: "burst", granularity: g, transport: None }
    }

    /// FaaS mode: one worker per process, everything through `transport`.
    pub fn faas(transport: &str) -> Mode {
        Mode { name: "faas", granularity: 1, transport: Some(transport.into()) }
    }
}

/// A request for a long job: up to an hour of running and a minute of waiting
/// for room; no `memory_mb` (the platform's default reservation, and no hard
/// limit: a job measured must not be killed for memory it was not told of).
pub fn job_request(function: &str, workers: usize, mode: &Mode, params: Value) -> BurstRequest {
    BurstRequest {
        function: function.into(),
        workers,
        granularity: Granularity::Fixed(mode.granularity),
        transport: mode.transport.clone(),
        params,
        worker_params: None,
        timeout_secs: Some(JOB_LIMIT.as_secs_f64()),
        queue_timeout_secs: Some(60.0),
        memory_mb: None,
        retries: None,
        idempotency_key: None,
        session: None,
    }
}

/// Runs a job to success on the platform.
pub async fn run_job(client: &Client, request: &BurstRequest) -> Result<Burst> {
    Ok(client.run_to_success(request, JOB_LIMIT).await?)
}

/// The workers' results of a finished burst, for summing and taking maxima.
pub struct Results<'a>(Vec<&'a Value>);

impl<'a> Results<'a> {
    pub fn of(burst: &'a Burst) -> Self {
        Results(burst.workers.iter().filter_map(|w| w.result.as_ref()).collect())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &&'a Value> {
        self.0.iter()
    }

    /// The largest value at `pointer` (`/ms/read`): the slowest worker, as they all wait for it.
    pub fn slowest(&self, pointer: &str) -> f64 {
        self.0.iter().filter_map(|r| r.pointer(pointer)?.as_f64()).fold(0.0, f64::max)
    }

    /// The smallest and largest value of counter `key` over the workers, and
    /// the largest over the mean (1.0: perfectly balanced).
    pub fn balance(&self, key: &str) -> (u64, u64, f64) {
        let values: Vec<u64> = self.0.iter().filter_map(|r| r[key].as_u64()).collect();
        let (min, max) = (values.iter().copied().min().unwrap_or(0), values.iter().copied().max().unwrap_or(0));
        let mean = values.iter().sum::<u64>() as f64 / values.len().max(1) as f64;
        (min, max, if mean > 0.0 { max as f64 / mean } else { 1.0 })
    }

    /// The sum over the workers of the counter `key`.
    pub fn sum(&self, key: &str) -> u64 {
        self.0.iter().filter_map(|r| r[key].as_u64()).sum()
    }
}

/// A fresh prefix for one run under `storage` (a `file://` or `s3://` URL).
pub fn fresh_run(storage: &str) -> String {
    format!("{}/run-{:08x}", storage.trim_end_matches('/'), rand::random::<u32>())
}

/// Deletes everything a benchmark run wrote under `url`, whether it succeeded or not.
pub async fn remove_run(url: &str, opts: &StorageOptions) -> Result<()> {
    if let Some(local) = url.strip_prefix("file://") {
        return match std::fs::remove_dir_all(local) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Invalid(format!("cannot remove {local}: {e}"))),
        };
    }
    let storage = Storage::open(url, opts)?;
    for (key, _) in storage.list("").await? {
        storage.delete(&key).await?;
    }
    Ok(())
}

/// Milliseconds of a duration, as reports give them.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
