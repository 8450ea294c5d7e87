//! What invokers ask of the control plane (register, poll for commands,
//! report events), what operators read of the cluster (its invokers, its
//! metrics).

use std::sync::atomic::Ordering;
use std::time::Duration;

use volley_proto::cluster::{Command, Event, InvokerInfo, Registered, Registration};

use super::ControlPlane;
use crate::error::{Error, Result};
use crate::fleet::Poll;

/// Most slots one invoker may offer (2^20 worker threads).
pub(crate) const MAX_SLOTS: usize = 1 << 20;
/// Most memory one invoker may offer: 2^40 MiB (an exbibyte).
pub(crate) const MAX_MEMORY_MB: u64 = 1 << 40;

/// Longest an invoker's poll for commands may wait.
pub(crate) const MAX_POLL: Duration = Duration::from_secs(30);
/// The longest reason an invoker may give for leaving, in characters.
pub(crate) const MAX_LEAVE_REASON: usize = 1024;

impl ControlPlane {
    /// Registers an invoker; it must then poll at least every `heartbeat_ms`.
    pub(crate) fn register(&self, registration: Registration) -> Result<Registered> {
        if !(1..=MAX_SLOTS).contains(&registration.slots) {
            return Err(Error::BadRequest(format!("an invoker offers 1 to {MAX_SLOTS} slots")));
        }
        if registration.memory_mb > MAX_MEMORY_MB {
            return Err(Error::BadRequest(format!("an invoker offers at most {MAX_MEMORY_MB} MiB")));
        }
        if registration.name.is_empty() || registration.host.is_empty() {
            return Err(Error::BadRequest("an invoker needs a name and a host its packs are reached at".into()));
        }
        let invoker_id = self.lock().register(registration);
        Ok(Registered { invoker_id, heartbeat_ms: self.opts.heartbeat_timeout.as_millis() as u64 })
    }

    /// The invoker's long poll: its commands, at once if it has some, else
    /// as soon as one comes or `wait` passes. The start of every poll counts
    /// as a heartbeat (not its end: an invoker cut off mid-poll must not look
    /// alive when the poll times out), and a poll never outlasts a third of
    /// the heartbeat timeout, so a live invoker always calls again in time.
    pub(crate) async fn poll(&self, invoker: &str, wait: Duration, warm: usize) -> Result<Vec<Command>> {
        if wait > MAX_POLL {
            return Err(Error::BadRequest(format!("a poll waits at most {} ms", MAX_POLL.as_millis())));
        }
        let wake = match self.lock().fleet().poll(invoker, warm).ok_or_else(|| forgotten(invoker))? {
            Poll::Commands(commands) => return Ok(commands),
            Poll::Wait(wake) => wake,
        };
        let wait = wait.min(self.opts.heartbeat_timeout / 3);
        let _ = tokio::time::timeout(wait, wake.notified()).await;
        self.lock().fleet().take_commands(invoker).ok_or_else(|| forgotten(invoker))
    }

    /// Applies what an invoker reports. Returns once results among them are
    /// saved: a result the invoker was told is taken is never dropped.
    pub(crate) async fn report(&self, invoker: &str, events: Vec<Event>) -> Result<()> {
        let results = events.iter().any(|e| matches!(e, Event::WorkerFinished { .. } | Event::PackExited { .. }));
        {
            let mut state = self.lock();
            if !state.fleet().heard_from(invoker) {
                return Err(forgotten(invoker));
            }
            for event in events {
                state.apply(invoker, event);
            }
            state.settle();
        }
        self.changed.notify_waiters();
        // Progress events need no such wait: they are on the start-up path.
        if results {
            self.flush().await?;
        }
        Ok(())
    }

    /// The invoker says it drains: nothing more is placed on it; its running
    /// bursts go on until it leaves.
    pub(crate) fn drain(&self, invoker: &str, reason: &str) -> Result<()> {
        check_reason(reason)?;
        if !self.lock().invoker_drains(invoker, reason) {
            return Err(forgotten(invoker));
        }
        self.changed.notify_waiters();
        Ok(())
    }

    /// The invoker says it is leaving: its bursts end at once with `reason`.
    pub(crate) async fn leave(&self, invoker: &str, reason: &str) -> Result<()> {
        check_reason(reason)?;
        {
            let mut state = self.lock();
            if !state.invoker_left(invoker, reason) {
                return Err(forgotten(invoker));
            }
            state.settle();
        }
        self.changed.notify_waiters();
        self.flush().await
    }

    /// Every invoker, ready or lost.
    pub(crate) fn invokers(&self) -> Vec<InvokerInfo> {
        self.lock().invokers()
    }

    /// Prometheus text: counts only, never a tenant's names or ids.
    pub(crate) fn metrics(&self) -> String {
        let state = self.lock();
        let invokers = state.invokers();
        let ready: Vec<&InvokerInfo> = invokers.iter().filter(|i| i.status == "ready").collect();
        let free = ready.iter().fold(0usize, |sum, i| sum.saturating_add(i.free_slots));
        let total = ready.iter().fold(0usize, |sum, i| sum.saturating_add(i.registration.slots));
        format!(
            "# HELP volley_bursts_submitted_total Bursts accepted since the controller started.\n\
             # TYPE volley_bursts_submitted_total counter\n\
             volley_bursts_submitted_total {}\n\
             # HELP volley_bursts_active Bursts queued or running.\n\
             # TYPE volley_bursts_active gauge\n\
             volley_bursts_active {}\n\
             # HELP volley_bursts_queued Bursts waiting for capacity.\n\
             # TYPE volley_bursts_queued gauge\n\
             volley_bursts_queued {}\n\
             # HELP volley_invokers Invokers by status.\n\
             # TYPE volley_invokers gauge\n\
             volley_invokers{{status=\"ready\"}} {}\n\
             volley_invokers{{status=\"lost\"}} {}\n\
             # HELP volley_slots Worker slots of ready invokers.\n\
             # TYPE volley_slots gauge\n\
             volley_slots{{kind=\"total\"}} {}\n\
             volley_slots{{kind=\"free\"}} {}\n",
            self.submitted.load(Ordering::Relaxed),
            state.active_count(),
            state.queued(),
            ready.len(),
            invokers.len() - ready.len(),
            total,
            free,
        )
    }
}

fn forgotten(id: &str) -> Error {
    Error::NotFound(format!(
        "invoker {id} is not registered (it was declared lost, or the controller restarted); register again"
    ))
}

fn check_reason(reason: &str) -> Result<()> {
    if reason.is_empty() || reason.chars().count() > MAX_LEAVE_REASON {
        return Err(Error::BadRequest(format!("a reason for leaving has 1 to {MAX_LEAVE_REASON} characters")));
    }
    Ok(())
}
