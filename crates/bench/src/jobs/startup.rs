//! Submit to every worker running, cold (a fresh platform) then warm (the
//! warm pool refilled between bursts), for one granularity.

use std::time::{Duration, Instant};

use volley_client::Client;
use volley_proto::api::BurstRequest;

use super::Mode;
use crate::startup::StartupReport;
use crate::{Error, Result};

/// How long one start-up burst may take: 300 s, or 150 ms a worker for
/// thousands of them (two cores start FaaS mode's 4,096 processes, three
/// each with the sandbox's, in minutes).
fn limit(workers: usize) -> Duration {
    Duration::from_secs(300).max(Duration::from_millis(150) * workers as u32)
}

/// What is measured.
#[derive(Debug, Clone)]
pub struct Plan {
    pub workers: usize,
    /// The function every worker runs, and its parameters.
    pub function: String,
    pub params: serde_json::Value,
    /// Warm bursts after the cold one.
    pub repeat: usize,
}

/// One cold burst on the (fresh) platform of `client`, then `repeat` warm
/// ones, each after the warm pool refilled.
pub async fn measure(client: &Client, plan: &Plan, mode: &Mode) -> Result<StartupReport> {
    let limit = limit(plan.workers);
    let request = BurstRequest {
        function: plan.function.clone(),
        params: plan.params.clone(),
        timeout_secs: Some(limit.as_secs_f64()),
        queue_timeout_secs: Some(limit.as_secs_f64()),
        ..super::job_request("", plan.workers, mode, serde_json::Value::Null)
    };
    let packs = plan.workers.div_ceil(mode.granularity);
    let cold = client.run_to_success(&request, limit).await?;
    let mut warm = Vec::new();
    for _ in 0..plan.repeat {
        wait_for_warm(client, packs).await?;
        warm.push(client.run_to_success(&request, limit).await?);
    }
    StartupReport::new(mode.name, &cold, &warm)
}

/// Waits until the invokers hold `packs` warm processes: at most 120 s, or
/// 50 ms a process for thousands of them (a pool refilling beside a burst
/// that holds as many waits for its memory, and two cores start a few dozen
/// processes a second).
pub async fn wait_for_warm(client: &Client, packs: usize) -> Result<()> {
    let bound = Duration::from_secs(120).max(Duration::from_millis(50) * packs as u32);
    let deadline = Instant::now() + bound;
    loop {
        if client.invokers().await?.iter().map(|i| i.warm).sum::<usize>() >= packs {
            // Let the last started processes settle (their start-up work is done off the clock).
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Invalid(format!(
                "the warm pool did not refill to {packs} processes within {} s",
                bound.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
