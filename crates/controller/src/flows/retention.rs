//! The event log's retention: events older than the controller's
//! `event_retention` are removed from the log, a bounded number at a time,
//! and the engine forgets their ids, so the log and the dedup index stay
//! bounded. An event id is deduplicated for as long as its event is kept.
//! A storage source's ids are kept: they say which objects were reported,
//! and forgetting them would report every object under its prefix again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use volley_proto::now_micros;

use super::Input;
use crate::control_plane::ControlPlane;

/// Most events removed by one store call.
const CHUNK: usize = 10_000;

/// Prunes the log every quarter of the retention (between 0.25 s and an hour)
/// until `stop`; does nothing if the retention is zero (keep forever).
pub(crate) fn start(plane: Arc<ControlPlane>, inbox: mpsc::UnboundedSender<Input>, stop: CancellationToken) {
    let keep = plane.opts.event_retention;
    if keep.is_zero() {
        return;
    }
    let period = (keep / 4).clamp(Duration::from_millis(250), Duration::from_secs(3600));
    tokio::spawn(async move {
        loop {
            prune(&plane, &inbox, keep).await;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
        }
    });
}

async fn prune(plane: &ControlPlane, inbox: &mpsc::UnboundedSender<Input>, keep: Duration) {
    let before = now_micros().saturating_sub(keep.as_micros() as u64);
    loop {
        let pruned = match plane.store.prune_events(before, CHUNK).await {
            Ok(pruned) => pruned,
            // The store is down: the next period tries again.
            Err(e) => return tracing::warn!("pruning the event log failed: {e}"),
        };
        let full = pruned.len() == CHUNK;
        let ids = pruned
            .into_iter()
            .filter(|e| !e.event.source.starts_with("volley/storage/"))
            .map(|e| format!("{}/{}/{}", e.namespace, e.event.source, e.event.id))
            .collect();
        if inbox.send(Input::Forget { ids }).is_err() || !full {
            return;
        }
    }
}
