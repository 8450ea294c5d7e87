//! Submit to every worker running, cold (a fresh platform) then warm (the
//! warm pool refilled between bursts), for one granularity.

use std::time::{Duration, Instant};

use volley_client::Client;
use volley_proto::api::BurstRequest;

use super::Mode;
use crate::startup::StartupReport;
use crate::{Error, Result};

/// How long one start-up burst may take.
const LIMIT: Duration = Duration::from_secs(300);

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
    let request = BurstRequest {
        function: plan.function.clone(),
        params: plan.params.clone(),
        timeout_secs: Some(LIMIT.as_secs_f64()),
        queue_timeout_secs: Some(LIMIT.as_secs_f64()),
        ..super::job_request("", plan.workers, mode, serde_json::Value::Null)
    };
    let packs = plan.workers.div_ceil(mode.granularity);
    let cold = client.run_to_success(&request, LIMIT).await?;
    let mut warm = Vec::new();
    for _ in 0..plan.repeat {
        wait_for_warm(client, packs).await?;
        warm.push(client.run_to_success(&request, LIMIT).await?);
    }
    StartupReport::new(mode.name, &cold, &warm)
}

/// Waits until the invokers hold `packs` warm processes (bounded).
pub async fn wait_for_warm(client: &Client, packs: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if client.invokers().await?.iter().map(|i| i.warm).sum::<usize>() >= packs {
            // Let the last started processes settle (their start-up work is done off the clock).
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Invalid(format!("the warm pool did not refill to {packs} processes within 120 s")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
