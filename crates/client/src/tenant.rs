//! What tenants do: run bursts, follow them, deploy functions.

use std::time::Duration;

use volley_proto::api::{Burst, BurstLogs, BurstRequest, BurstState, FunctionInfo};
use volley_proto::cluster::InvokerInfo;

use crate::{CALL_TIMEOUT, Client, Error, paths};

/// How long a deploy may take to upload (binaries can be large).
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest one wait call asks the controller to wait.
const MAX_WAIT: Duration = Duration::from_secs(25);

impl Client {
    /// Starts a burst; it is saved and queued when this returns.
    pub async fn submit(&self, request: &BurstRequest) -> Result<Burst, Error> {
        self.json(self.post(paths::BURSTS).json(request)).await
    }

    /// The burst as it is now.
    pub async fn burst(&self, id: &str) -> Result<Burst, Error> {
        self.json(self.get(&paths::burst(id))).await
    }

    /// The burst once it has ended, or as it is after `wait` (at most 25 s per call).
    pub async fn wait(&self, id: &str, wait: Duration) -> Result<Burst, Error> {
        let wait = wait.min(MAX_WAIT);
        let req = self
            .request(reqwest::Method::GET, &paths::burst_wait(id), wait + CALL_TIMEOUT)
            .query(&[("timeout_ms", wait.as_millis() as u64)]);
        self.json(req).await
    }

    /// Waits (up to `limit`) until the burst has ended, and returns it.
    pub async fn wait_until_final(&self, id: &str, limit: Duration) -> Result<Burst, Error> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let burst = self.wait(id, left).await?;
            if burst.state.is_final() {
                return Ok(burst);
            }
            if left.is_zero() {
                return Err(Error::Burst {
                    id: id.into(),
                    state: burst.state.name().into(),
                    reason: format!("it had not ended after {limit:?}"),
                });
            }
        }
    }

    /// Submits `request` and waits (up to `limit`) for the burst to succeed;
    /// any other ending is an [`Error::Burst`] with the burst's reason.
    pub async fn run_to_success(&self, request: &BurstRequest, limit: Duration) -> Result<Burst, Error> {
        let burst = self.submit(request).await?;
        let done = self.wait_until_final(&burst.id, limit).await?;
        if done.state != BurstState::Succeeded {
            return Err(Error::Burst {
                id: done.id.clone(),
                state: done.state.name().into(),
                reason: done.error.clone().unwrap_or_default(),
            });
        }
        Ok(done)
    }

    /// Your bursts, newest first (1 to 1000).
    pub async fn list(&self, limit: usize) -> Result<Vec<Burst>, Error> {
        self.json(self.get(paths::BURSTS).query(&[("limit", limit)])).await
    }

    /// Cancels a queued or running burst.
    pub async fn cancel(&self, id: &str) -> Result<Burst, Error> {
        self.json(self.post(&paths::burst_cancel(id))).await
    }

    /// What each pack printed; with `rank`, only that worker's lines.
    pub async fn logs(&self, id: &str, rank: Option<usize>) -> Result<BurstLogs, Error> {
        let mut req = self.get(&paths::burst_logs(id));
        if let Some(rank) = rank {
            req = req.query(&[("rank", rank)]);
        }
        self.json(req).await
    }

    /// The server-sent events of a burst, as raw text, until it ends (or `limit` passes).
    pub async fn events_text(&self, id: &str, limit: Duration) -> Result<String, Error> {
        self.text(self.request(reqwest::Method::GET, &paths::burst_events(id), limit)).await
    }

    /// Deploys (or replaces) function `name` from an executable.
    pub async fn deploy(&self, name: &str, description: &str, binary: Vec<u8>) -> Result<FunctionInfo, Error> {
        let req = self
            .request(reqwest::Method::PUT, &paths::function(name), UPLOAD_TIMEOUT)
            .query(&[("description", description)])
            .header("content-type", "application/octet-stream")
            .body(binary);
        self.json(req).await
    }

    /// Deletes a deployed function.
    pub async fn delete_function(&self, name: &str) -> Result<(), Error> {
        self.send(self.request(reqwest::Method::DELETE, &paths::function(name), CALL_TIMEOUT)).await.map(drop)
    }

    /// The built-in functions and those deployed in your namespace.
    pub async fn functions(&self) -> Result<Vec<FunctionInfo>, Error> {
        self.json(self.get(paths::FUNCTIONS)).await
    }

    /// The cluster's invokers, ready or lost.
    pub async fn invokers(&self) -> Result<Vec<InvokerInfo>, Error> {
        self.json(self.get(paths::INVOKERS)).await
    }
}
