//! What invokers do (with the invoker token as the secret): register, poll
//! for commands, report events, fetch deployed binaries.

use std::time::Duration;

use volley_proto::cluster::{Command, Event, Leaving, Registered, Registration};

use crate::{CALL_TIMEOUT, Client, Error, paths};

/// How long fetching a deployed binary may take.
const BLOB_TIMEOUT: Duration = Duration::from_secs(300);

impl Client {
    /// Registers an invoker.
    pub async fn register(&self, registration: &Registration) -> Result<Registered, Error> {
        self.json(self.post(paths::INVOKERS).json(registration)).await
    }

    /// Long-polls for the invoker's commands; the call itself is its heartbeat.
    pub async fn poll_commands(&self, invoker: &str, wait: Duration, warm: usize) -> Result<Vec<Command>, Error> {
        let req = self
            .request(reqwest::Method::GET, &paths::invoker_commands(invoker), wait + CALL_TIMEOUT)
            .query(&[("wait_ms", wait.as_millis() as u64), ("warm", warm as u64)]);
        self.json(req).await
    }

    /// Reports events; returns once results among them are saved.
    pub async fn report_events(&self, invoker: &str, events: &[Event]) -> Result<(), Error> {
        self.json::<serde_json::Value>(self.post(&paths::invoker_events(invoker)).json(events)).await.map(drop)
    }

    /// Says the invoker is leaving, and why: its bursts end at once with the reason.
    pub async fn leave(&self, invoker: &str, reason: &str) -> Result<(), Error> {
        let body = Leaving { reason: reason.to_string() };
        self.json::<serde_json::Value>(self.post(&paths::invoker_leave(invoker)).json(&body)).await.map(drop)
    }

    /// Says the invoker is draining (`reason`): nothing more is placed on it;
    /// its running bursts go on until it leaves.
    pub async fn drain(&self, invoker: &str, reason: &str) -> Result<(), Error> {
        let body = Leaving { reason: reason.to_string() };
        self.json::<serde_json::Value>(self.post(&paths::invoker_drain(invoker)).json(&body)).await.map(drop)
    }

    /// A deployed binary, by its SHA-256.
    pub async fn blob(&self, digest: &str) -> Result<Vec<u8>, Error> {
        let resp = self.send(self.request(reqwest::Method::GET, &paths::blob(digest), BLOB_TIMEOUT)).await?;
        let bytes = resp.bytes().await.map_err(|source| Error::unreachable(&self.base, source))?;
        Ok(bytes.to_vec())
    }
}
