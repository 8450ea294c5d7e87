//! Draining (ADR 0010): the controller is told first, so that it places
//! nothing more here; the invoker then lets the bursts running here go on
//! until they end or the grace runs out, and says how many were left.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::{Shared, serve};

/// The longest reason the controller takes (`MAX_LEAVE_REASON` there).
pub(crate) const MAX_REASON_CHARS: usize = 1024;

/// `reason` cut to what the controller takes, on a character boundary.
pub(crate) fn bounded(reason: &str) -> String {
    match reason.char_indices().nth(MAX_REASON_CHARS) {
        Some((end, _)) => reason[..end].to_string(),
        None => reason.to_string(),
    }
}

/// Drains registration `id` for up to `grace`; how many bursts still had a
/// pack here when it ended (0: all finished). Returns early if the invoker stops.
pub(crate) async fn drain(
    shared: &Arc<Shared>,
    id: &str,
    reason: &str,
    grace: Duration,
    mut done: watch::Receiver<bool>,
) -> usize {
    shared.draining.store(true, Ordering::SeqCst);
    // A grace beyond what an Instant can hold is a drain without end (the caller caps it).
    let deadline = Instant::now().checked_add(grace);
    match tokio::time::timeout(serve::LEAVE_TIMEOUT, shared.client.drain(id, &bounded(reason))).await {
        Ok(Ok(())) => tracing::info!("draining for up to {grace:?}: {reason}"),
        Ok(Err(e)) => tracing::warn!("could not tell the controller this invoker drains: {e}"),
        Err(_) => tracing::warn!("the controller did not answer this invoker's draining in time"),
    }
    // Packs the controller placed just before it heard of the drain reach
    // this invoker with its next poll: two polls later, all of them are here.
    let polls = shared.polls.load(Ordering::SeqCst);
    loop {
        let now = Instant::now();
        let polled = shared.polls.load(Ordering::SeqCst) >= polls.saturating_add(2);
        let running = shared.running_bursts();
        let reported = shared.unposted.load(Ordering::SeqCst) == 0;
        if (polled && running == 0 && reported) || deadline.is_some_and(|d| now >= d) || *done.borrow() {
            return running;
        }
        let pause = deadline.map_or(Duration::from_millis(100), |d| (d - now).min(Duration::from_millis(100)));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = done.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_REASON_CHARS + 10);
        assert_eq!(bounded(&long).chars().count(), MAX_REASON_CHARS);
        assert_eq!(bounded("short"), "short");
    }
}
