//! What users ask of bursts: submit (validated, saved, queued), look up,
//! list, wait for, cancel, read the logs of. Every method works for one
//! namespace: another tenant's burst is reported as missing.

use std::sync::atomic::Ordering;
use std::time::Duration;

use volley_proto::api::{Burst, BurstLogs, BurstRequest, BurstState, Granularity, WorkerRecord};
use volley_proto::now_micros;

use super::ControlPlane;
use crate::error::{Error, Result};
use crate::store::{Batch, Docs};

/// Most retries a burst may ask for.
pub(crate) const MAX_RETRIES: u32 = 10;
/// Longest timeout a burst may ask for: a week.
pub(crate) const MAX_TIMEOUT_SECS: f64 = 7.0 * 86_400.0;
/// Longest a client may wait for a burst in one call.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(30);
/// Most bursts one listing returns.
pub(crate) const MAX_LIST: usize = 1000;

/// A new burst id: sortable by submission time.
/// Why a burst of an ended session was cancelled.
const SESSION_ENDED: &str =
    "cancelled: its session ended (the program that started it ended, or died and stopped renewing it)";

fn new_id() -> String {
    format!("b{:012x}{:06x}", now_micros() / 1000, rand::random::<u32>() & 0xff_ffff)
}

impl ControlPlane {
    /// Validates, saves and queues a new burst. With an idempotency key, a
    /// repeated submit returns the burst the first one started.
    pub(crate) async fn submit(&self, namespace: &str, request: BurstRequest) -> Result<Burst> {
        let Some(session) = request.session.clone() else { return self.submit_keyed(namespace, request).await };
        self.sessions.check(&session, namespace)?;
        let burst = self.submit_keyed(namespace, request).await?;
        if let Err(e) = self.sessions.adopt(&session, namespace, &burst.id) {
            // The session ended meanwhile: what it started must not outlive it.
            let _ = self.cancel_because(namespace, &burst.id, SESSION_ENDED).await;
            return Err(e.into());
        }
        Ok(burst)
    }

    /// Cancels what an ended session started.
    pub(crate) async fn session_ended(&self, ended: volley_sessions::Ended) {
        for id in ended.bursts {
            if self.is_active(&id) {
                let _ = self.cancel_because(&ended.namespace, &id, SESSION_ENDED).await;
            }
        }
    }

    async fn submit_keyed(&self, namespace: &str, request: BurstRequest) -> Result<Burst> {
        let Some(key) = request.idempotency_key.clone() else {
            self.validate(namespace, &request)?;
            return self.create(namespace, request, None).await;
        };
        // Characters, as the API's schema counts them (not bytes).
        if key.is_empty() || key.chars().count() > 256 {
            return Err(Error::BadRequest("an idempotency key has 1 to 256 characters".into()));
        }
        // One keyed submit at a time: two with the same key must not both start a burst.
        let _one = self.keyed.lock().await;
        let doc = format!("{namespace}/{key}");
        if let Some(id) = self.store.doc::<String>(Docs::Idempotency, &doc).await? {
            return self.burst(namespace, &id).await;
        }
        self.validate(namespace, &request)?;
        self.create(namespace, request, Some(doc)).await
    }

    /// Saves a new burst (with its idempotency key, in the same transaction) and queues it.
    async fn create(&self, namespace: &str, request: BurstRequest, key: Option<String>) -> Result<Burst> {
        let burst = Burst {
            id: new_id(),
            namespace: namespace.to_string(),
            state: BurstState::Queued,
            error: None,
            transport: request.transport.clone(),
            submitted_at: now_micros(),
            placed_at: None,
            running_at: None,
            finished_at: None,
            start_spread_us: None,
            packs: Vec::new(),
            workers: (0..request.workers).map(WorkerRecord::new).collect(),
            attempt: 1,
            attempt_errors: Vec::new(),
            notes: Vec::new(),
            request,
        };
        // Accepted means saved: the burst survives a controller restart from here on.
        match key {
            None => self.store.put_burst(&burst).await?,
            Some(key) => {
                let mut batch = Batch::default();
                batch.put(Docs::Idempotency, key, &burst.id);
                batch.bursts.push(burst.clone());
                self.store.commit(batch).await?;
            }
        }
        self.submitted.fetch_add(1, Ordering::Relaxed);
        let _ = self.changes.send(burst.clone());
        let program = self.functions.program(namespace, &burst.request.function);
        self.lock().submit(burst.clone(), program);
        Ok(burst)
    }

    /// The request's own fields against this controller's limits: what can be
    /// checked before the burst is due (a trigger's burst is checked when the
    /// trigger is created, not first when it fires).
    pub(crate) fn check_request(&self, r: &BurstRequest) -> Result<()> {
        let bad = |m: String| Err(Error::BadRequest(m));
        if r.workers == 0 {
            return bad("workers must be at least 1".into());
        }
        if r.workers > self.opts.max_workers {
            return bad(format!("workers {} is above this controller's limit of {}", r.workers, self.opts.max_workers));
        }
        if let Granularity::Fixed(g) = r.granularity {
            if g == 0 {
                return bad("granularity must be at least 1 (or \"auto\")".into());
            }
            if g > r.workers {
                return Err(Error::Unprocessable(format!(
                    "granularity {g} is larger than the burst's {} workers; use at most {}",
                    r.workers, r.workers
                )));
            }
        }
        if let Some(wp) = &r.worker_params
            && wp.len() != r.workers
        {
            return Err(Error::Unprocessable(format!(
                "worker_params has {} entries but the burst has {} workers; give one per worker",
                wp.len(),
                r.workers
            )));
        }
        if r.retries.is_some_and(|n| n > MAX_RETRIES) {
            return bad(format!("retries must be at most {MAX_RETRIES}"));
        }
        if let Some(s) = r.timeout_secs
            && !(s.is_finite() && s > 0.0 && s <= MAX_TIMEOUT_SECS)
        {
            return bad(format!(
                "timeout_secs must be a positive number of seconds up to {MAX_TIMEOUT_SECS} (a week), got {s}"
            ));
        }
        let max_queue = self.opts.max_queue_timeout.as_secs_f64();
        if let Some(s) = r.queue_timeout_secs
            && !(s.is_finite() && s > 0.0 && s <= max_queue)
        {
            return bad(format!(
                "queue_timeout_secs must be a positive number of seconds up to this controller's limit of {max_queue}, got {s}"
            ));
        }
        if let Some(t) = &r.transport
            && let Err(e) = self.opts.brokers.transport(t, Default::default())
        {
            return bad(e.to_string());
        }
        if r.memory_mb.is_some_and(|m| m > super::MAX_MEMORY_MB) {
            return bad(format!("memory_mb must be at most {} (an exbibyte)", super::MAX_MEMORY_MB));
        }
        Ok(())
    }

    fn validate(&self, namespace: &str, r: &BurstRequest) -> Result<()> {
        if self.functions.get(namespace, &r.function).is_none() {
            let names: Vec<_> = self.functions.list(namespace).into_iter().map(|f| f.name).collect();
            return Err(Error::NotFound(format!(
                "unknown function {:?}; known functions: {} (`volley functions list`)",
                r.function,
                names.join(", ")
            )));
        }
        self.check_request(r)?;
        let state = self.lock();
        let queued = state.queued_in(namespace);
        if queued >= self.opts.max_queued_per_namespace {
            return Err(Error::QueueFull(format!(
                "namespace {namespace:?} already has {queued} bursts waiting for capacity, its limit; \
                 wait for some of them to start (or cancel them) and submit again"
            )));
        }
        let whole = state.capacity();
        drop(state);
        // Refuse what could never be placed, even on an idle cluster: waiting
        // would only block the queue until the burst's queue timeout (unless
        // the fleet is elastic: the capacity may be on its way).
        let memory = r.memory_mb.unwrap_or(self.opts.default_memory_mb);
        if !whole.is_empty()
            && !self.opts.elastic
            && crate::placement::place(r.workers, r.granularity, memory, &whole).is_none()
        {
            let pack = match r.granularity {
                Granularity::Fixed(g) => format!("packs of {g} ({} MiB each)", (g as u64).saturating_mul(memory)),
                Granularity::Auto => "packs of any size".into(),
            };
            return Err(Error::Capacity(format!(
                "the burst can never be placed: it needs {} workers × {memory} MiB = {} MiB in {pack}, \
                 and the whole cluster has {}; use fewer workers, a smaller granularity or less memory_mb, or add invokers",
                r.workers,
                (r.workers as u64).saturating_mul(memory),
                crate::placement::describe(&whole)
            )));
        }
        Ok(())
    }

    /// The burst of `namespace`, live if active, else as stored.
    pub(crate) async fn burst(&self, namespace: &str, id: &str) -> Result<Burst> {
        let live = self.lock().current(id).cloned();
        let burst = match live {
            Some(b) => Some(b),
            None => self.store.get_burst(id).await?,
        };
        // Another namespace's burst is reported as missing, not as forbidden.
        burst.filter(|b| b.namespace == namespace).ok_or_else(|| Error::NotFound(format!("no burst {id:?}")))
    }

    /// Whether the burst has not reached its final record yet.
    pub(crate) fn is_active(&self, id: &str) -> bool {
        self.lock().live(id).is_some()
    }

    /// The namespace's bursts, newest first; active ones as they are now.
    pub(crate) async fn list_bursts(&self, namespace: &str, limit: usize) -> Result<Vec<Burst>> {
        if !(1..=MAX_LIST).contains(&limit) {
            return Err(Error::BadRequest(format!("limit must be between 1 and {MAX_LIST}, got {limit}")));
        }
        let mut list = self.store.list_bursts(namespace, limit).await?;
        let state = self.lock();
        for b in &mut list {
            if let Some(live) = state.current(&b.id) {
                *b = live.clone();
            }
        }
        Ok(list)
    }

    /// The burst once it has ended, or as it is when `timeout` (at most
    /// [`MAX_WAIT`]) runs out.
    pub(crate) async fn wait(&self, namespace: &str, id: &str, timeout: Duration) -> Result<Burst> {
        if timeout > MAX_WAIT {
            return Err(Error::BadRequest(format!(
                "a wait lasts at most {} ms; call again to wait longer",
                MAX_WAIT.as_millis()
            )));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let finished = self.finished.notified();
            let burst = self.burst(namespace, id).await?;
            if burst.state.is_final() && !self.is_active(id) {
                return Ok(burst);
            }
            if tokio::time::timeout_at(deadline, finished).await.is_err() {
                return self.burst(namespace, id).await;
            }
        }
    }

    /// Cancels the namespace's burst (queued or running); returns it as it is then.
    pub(crate) async fn cancel(&self, namespace: &str, id: &str) -> Result<Burst> {
        self.cancel_because(namespace, id, "cancelled by a user").await
    }

    /// Cancels an active burst, saying `reason` in its error.
    pub(crate) async fn cancel_because(&self, namespace: &str, id: &str, reason: &str) -> Result<Burst> {
        self.burst(namespace, id).await?;
        {
            let mut state = self.lock();
            if state.live(id).is_none() {
                return Err(Error::Conflict(format!("burst {id} is not active (it has ended); nothing to cancel")));
            }
            state.end(id, BurstState::Cancelled, reason.into());
            state.settle();
        }
        self.changed.notify_waiters();
        self.burst(namespace, id).await
    }

    /// What each pack printed; with `rank`, only that worker's tagged lines.
    pub(crate) async fn logs(&self, namespace: &str, id: &str, rank: Option<usize>) -> Result<BurstLogs> {
        let burst = self.burst(namespace, id).await?;
        let mut logs = self.store.get_logs(id).await?.unwrap_or_default();
        let Some(rank) = rank else { return Ok(logs) };
        let Some(worker) = burst.workers.get(rank) else {
            return Err(Error::NotFound(format!(
                "rank {rank} is not in burst {id}, whose ranks are 0 to {}",
                burst.workers.len().saturating_sub(1)
            )));
        };
        let tag = format!("[rank {rank}] ");
        let only = |text: &str| text.lines().filter(|l| l.starts_with(&tag)).map(|l| format!("{l}\n")).collect();
        logs.packs.retain(|p| Some(p.pack) == worker.pack);
        for p in &mut logs.packs {
            p.stdout = only(&p.stdout);
            p.stderr = only(&p.stderr);
        }
        Ok(logs)
    }
}
