//! Effects the engine committed and then performs: start a step's burst
//! (after a retry's backoff), start a trigger's burst, cancel bursts. An entry
//! stays in the store until it is performed, so a controller killed in
//! between performs it again on restart; performing one twice does it once
//! (bursts are started with idempotency keys, cancelling twice is harmless).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use volley_proto::api::BurstRequest;
use volley_proto::flow::CloudEvent;
use volley_proto::now_micros;

use super::Input;
use crate::control_plane::ControlPlane;
use crate::error::Error;

/// One committed effect.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// Sortable: the event sequence that decided it, then its place in that decision.
    pub(crate) id: String,
    pub(crate) namespace: String,
    pub(crate) effect: Pending,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Pending {
    /// Start attempt `attempt` of a run's step, not before `not_before` (µs);
    /// with `objects`, one worker per object under that prefix, listed first.
    StartStep {
        run: String,
        step: String,
        attempt: u32,
        request: Box<BurstRequest>,
        not_before: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        objects: Option<String>,
    },
    /// Start a burst a trigger asked for.
    StartBurst { request: Box<BurstRequest> },
    /// Cancel these bursts.
    Cancel { bursts: Vec<String>, reason: String },
    /// Tell the engine a state machine's timer fired, not before `not_before` (µs).
    Timer { run: String, token: u64, not_before: u64 },
    /// List a storage source's prefix at `at` (µs).
    Poll { source: String, url: String, at: u64 },
    /// A timer's slot: tell the engine at `slot` (µs).
    Tick { timer: String, slot: u64 },
    /// POST the event to a trigger's webhook.
    Webhook { url: String, event: Box<CloudEvent> },
}

/// How performing an entry went.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// `key` is the burst's idempotency key (which says the step's kind of run).
    StepStarted {
        run: String,
        step: String,
        attempt: u32,
        key: String,
        burst: String,
        /// The burst, if it has ended already: performed again after a
        /// restart, the submit returns the burst the first one started, which
        /// may have ended while no run knew it was the step's; its end is
        /// applied with this.
        ended: Option<Box<volley_proto::api::Burst>>,
    },
    /// The controller refused the step's burst (a bad request, say): the step fails.
    StepRefused {
        run: String,
        step: String,
        attempt: u32,
        key: String,
        error: String,
    },
    TimerFired {
        run: String,
        token: u64,
    },
    Tick {
        timer: String,
        slot: u64,
    },
    /// A storage source's listing (objects and sizes), or why it failed.
    Polled {
        source: String,
        listing: Result<Vec<(String, u64)>, String>,
    },
    Done,
}

/// Performs `entry` in a task of its own and reports to the engine.
/// Stops with the engine (`stop`): an effect owed is performed again on the next start.
pub(crate) fn perform(
    plane: Arc<ControlPlane>,
    entry: Entry,
    inbox: mpsc::UnboundedSender<Input>,
    stop: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = perform_until_done(plane, entry, inbox) => {}
        }
    });
}

async fn perform_until_done(plane: Arc<ControlPlane>, entry: Entry, inbox: mpsc::UnboundedSender<Input>) {
    {
        let Entry { id, namespace, effect } = entry;
        let outcome = loop {
            match attempt(&plane, &namespace, &effect).await {
                Ok(outcome) => break outcome,
                // The store failed: try again, the effect is still owed.
                Err(_) if inbox.is_closed() => return,
                Err(e) => {
                    tracing::warn!(entry = %id, "performing a workflow effect failed, retrying: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let _ = inbox.send(Input::Performed { id, outcome });
    }
}

async fn attempt(plane: &ControlPlane, namespace: &str, effect: &Pending) -> Result<Outcome, Error> {
    match effect {
        Pending::StartStep { run, step, attempt, request, not_before, objects } => {
            let wait = not_before.saturating_sub(now_micros());
            if wait > 0 {
                tokio::time::sleep(Duration::from_micros(wait)).await;
            }
            let (run, step, attempt) = (run.clone(), step.clone(), *attempt);
            let key = request.idempotency_key.clone().unwrap_or_default();
            let mut request = (**request).clone();
            if let Some(prefix) = objects {
                // Listed again if this is performed again after a restart: the
                // idempotency key returns the first burst if it was started.
                match one_worker_per_object(plane, prefix, &mut request).await {
                    Ok(()) => {}
                    Err(error) => return Ok(Outcome::StepRefused { run, step, attempt, key, error }),
                }
            }
            match plane.submit(namespace, request).await {
                Ok(burst) => {
                    let ended = burst.state.is_final().then(|| Box::new(burst.clone()));
                    Ok(Outcome::StepStarted { run, step, attempt, key, burst: burst.id, ended })
                }
                Err(Error::Store(e)) => Err(Error::Store(e)),
                Err(e) => Ok(Outcome::StepRefused { run, step, attempt, key, error: e.to_string() }),
            }
        }
        Pending::StartBurst { request } => match plane.submit(namespace, (**request).clone()).await {
            Err(Error::Store(e)) => Err(Error::Store(e)),
            Err(e) => {
                tracing::warn!(namespace, "a trigger's burst was refused: {e}");
                Ok(Outcome::Done)
            }
            Ok(_) => Ok(Outcome::Done),
        },
        Pending::Timer { run, token, not_before } => {
            let wait = not_before.saturating_sub(now_micros());
            if wait > 0 {
                tokio::time::sleep(Duration::from_micros(wait)).await;
            }
            Ok(Outcome::TimerFired { run: run.clone(), token: *token })
        }
        Pending::Poll { source, url, at } => {
            let wait = at.saturating_sub(now_micros());
            if wait > 0 {
                tokio::time::sleep(Duration::from_micros(wait)).await;
            }
            Ok(Outcome::Polled { source: source.clone(), listing: list(plane, url).await })
        }
        Pending::Tick { timer, slot } => {
            let wait = slot.saturating_sub(now_micros());
            if wait > 0 {
                tokio::time::sleep(Duration::from_micros(wait)).await;
            }
            Ok(Outcome::Tick { timer: timer.clone(), slot: *slot })
        }
        Pending::Webhook { url, event } => {
            webhook(url, event).await;
            Ok(Outcome::Done)
        }
        Pending::Cancel { bursts, reason } => {
            for id in bursts {
                // Already ended is fine: the end is what was wanted.
                match plane.cancel_because(namespace, id, reason).await {
                    Ok(_) | Err(Error::Conflict(_) | Error::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(Outcome::Done)
        }
    }
}

/// Tries to deliver a webhook a few times (10 s each, 1 s then 2 s apart);
/// gives up with a warning: a receiver that is gone must not hold the outbox.
async fn webhook(url: &str, event: &CloudEvent) {
    let client = reqwest::Client::new();
    for attempt in 1..=3u32 {
        let sent = client
            .post(url)
            .header("content-type", "application/cloudevents+json")
            .timeout(Duration::from_secs(10))
            .json(event)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => tracing::warn!(url, attempt, "the webhook answered {}", r.status()),
            Err(e) => tracing::warn!(url, attempt, "the webhook could not be reached: {e}"),
        }
        if attempt < 3 {
            tokio::time::sleep(Duration::from_secs(attempt as u64)).await;
        }
    }
    tracing::warn!(url, event = %event.id, "gave up delivering the event to the webhook after 3 attempts");
}

/// Most objects one listing of a source reports.
const MAX_LISTED: usize = 100_000;

/// The objects under `url`, with sizes (bounded by a timeout: a storage that
/// hangs must not hold the source).
async fn list(plane: &ControlPlane, url: &str) -> Result<Vec<(String, u64)>, String> {
    let storage = volley_storage::Storage::open(url, &plane.opts.storage).map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(60), storage.list("")).await {
        Ok(Ok(mut objects)) => {
            objects.truncate(MAX_LISTED);
            Ok(objects)
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("listing {url} took more than 60 s")),
    }
}

/// Fills a map step's burst with one worker per object under `prefix` (names
/// starting with `_`, such as `_SUCCESS`, are markers, not data), in name order.
async fn one_worker_per_object(plane: &ControlPlane, prefix: &str, request: &mut BurstRequest) -> Result<(), String> {
    let prefix = prefix.trim_end_matches('/');
    if prefix.starts_with("file://") && !plane.opts.api_keys.is_empty() {
        return Err(
            "a controller with API keys maps over s3:// prefixes only: tenants do not list its host's files".into()
        );
    }
    let mut objects = list(plane, prefix).await.map_err(|e| format!("listing the objects under {prefix}: {e}"))?;
    objects.retain(|(key, _)| !key.rsplit('/').next().unwrap_or(key).starts_with('_'));
    if objects.is_empty() {
        return Err(format!("there are no objects under {prefix} to map over"));
    }
    objects.sort();
    request.workers = objects.len();
    request.worker_params = Some(
        objects
            .into_iter()
            .map(|(key, size)| serde_json::json!({"url": format!("{prefix}/{key}"), "prefix": prefix, "key": key, "size": size}))
            .collect(),
    );
    Ok(())
}
