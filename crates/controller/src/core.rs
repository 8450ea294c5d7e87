//! The controller's core: the locked state, the writer that saves records in
//! order, and the ticker that enforces heartbeats and deadlines.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use volley_proto::api::{Burst, BurstState, Granularity, WorkerRecord};
use volley_proto::now_micros;

use crate::error::{Error, Result};
use crate::functions::Functions;
use crate::state::{State, Write};
use crate::{Options, Store};

/// Most retries a burst may ask for.
pub(crate) const MAX_RETRIES: u32 = 10;
/// Longest timeout a burst may ask for: a week.
pub(crate) const MAX_TIMEOUT_SECS: f64 = 7.0 * 86_400.0;

pub(crate) struct Core {
    pub(crate) opts: Options,
    pub(crate) store: Store,
    state: Mutex<State>,
    writes: mpsc::UnboundedSender<Write>,
    /// Fired whenever a burst reaches its final state.
    pub(crate) finished: Arc<Notify>,
    /// Fired whenever a burst may have progressed (event streams wait on it).
    pub(crate) changed: Notify,
    pub(crate) submitted: AtomicU64,
    pub(crate) functions: Functions,
}

impl Core {
    /// Builds the core and recovers what a previous run left unfinished.
    pub(crate) async fn start(opts: Options, store: Store, shutdown: CancellationToken) -> Result<Arc<Core>> {
        let (writes, rx) = mpsc::unbounded_channel();
        let finished = Arc::new(Notify::new());
        let functions = Functions::load(opts.functions.clone(), opts.data_dir.join("blobs"), &store).await?;
        let core = Arc::new(Core {
            functions,
            state: Mutex::new(State::new(opts.clone(), writes.clone())),
            opts,
            store: store.clone(),
            writes,
            finished: finished.clone(),
            changed: Notify::new(),
            submitted: AtomicU64::new(0),
        });
        tokio::spawn(writer(store.clone(), rx, finished, core.opts.brokers.clone()));
        core.recover().await?;
        tokio::spawn(ticker(core.clone(), shutdown));
        Ok(core)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until every record written so far is saved.
    pub(crate) async fn flush(&self) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.writes.send(Write::Flush(tx)).map_err(|_| Error::Store("the writer stopped".into()))?;
        rx.await.map_err(|_| Error::Store("the writer stopped".into()))
    }

    /// Bursts that were queued when the controller stopped run now; those that
    /// were running cannot be resumed (their packs died with their invokers'
    /// links): they run again as their next attempt if their retries allow,
    /// and otherwise end failed with the reason. What their packs left on a
    /// broker is purged either way.
    async fn recover(&self) -> Result<()> {
        const REASON: &str = "the controller restarted while the burst was running";
        for mut burst in self.store.unfinished().await? {
            if burst.state != BurstState::Queued {
                if let Some(purge) = Write::purge_of(&burst) {
                    let _ = self.writes.send(purge);
                }
                if !crate::state::may_retry(&burst) {
                    burst.state = BurstState::Failed;
                    burst.error = Some(format!("{REASON}; submit it again"));
                    burst.finished_at = Some(now_micros());
                    self.store.put_burst(&burst).await?;
                    continue;
                }
                crate::state::next_attempt(&mut burst, REASON);
                self.store.put_burst(&burst).await?;
            }
            tracing::info!(burst = %burst.id, attempt = burst.attempt, "requeued after a controller restart");
            let program = self.functions.program(&burst.namespace, &burst.request.function);
            self.lock().submit(burst, program);
        }
        Ok(())
    }

    /// Validates, saves and queues a new burst.
    pub(crate) async fn submit(&self, namespace: &str, request: volley_proto::api::BurstRequest) -> Result<Burst> {
        self.validate(namespace, &request)?;
        let id = format!("b{:012x}{:06x}", now_micros() / 1000, rand::random::<u32>() & 0xff_ffff);
        let burst = Burst {
            id,
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
        self.store.put_burst(&burst).await?;
        self.submitted.fetch_add(1, Ordering::Relaxed);
        let program = self.functions.program(namespace, &burst.request.function);
        self.lock().submit(burst.clone(), program);
        Ok(burst)
    }

    fn validate(&self, namespace: &str, r: &volley_proto::api::BurstRequest) -> Result<()> {
        let bad = |m: String| Err(Error::BadRequest(m));
        if self.functions.get(namespace, &r.function).is_none() {
            let names: Vec<_> = self.functions.list(namespace).into_iter().map(|f| f.name).collect();
            return Err(Error::NotFound(format!(
                "unknown function {:?}; known functions: {} (`volley functions list`)",
                r.function,
                names.join(", ")
            )));
        }
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
                return bad(format!(
                    "granularity {g} is larger than the burst's {} workers; use at most {}",
                    r.workers, r.workers
                ));
            }
        }
        if let Some(wp) = &r.worker_params
            && wp.len() != r.workers
        {
            return bad(format!("worker_params has {} entries but the burst has {} workers", wp.len(), r.workers));
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
        // would only block the queue until the burst's queue timeout.
        let memory = r.memory_mb.unwrap_or(self.opts.default_memory_mb);
        if !whole.is_empty() && crate::placement::place(r.workers, r.granularity, memory, &whole).is_none() {
            let pack = match r.granularity {
                Granularity::Fixed(g) => format!("packs of {g} ({} MiB each)", g as u64 * memory),
                Granularity::Auto => "packs of any size".into(),
            };
            return Err(Error::Capacity(format!(
                "the burst can never be placed: it needs {} workers × {memory} MiB = {} MiB in {pack}, \
                 and the whole cluster has {}; use fewer workers, a smaller granularity or less memory_mb, or add invokers",
                r.workers,
                r.workers as u64 * memory,
                crate::placement::describe(&whole)
            )));
        }
        Ok(())
    }

    /// The burst of `namespace`, live if active, else as stored.
    pub(crate) async fn burst(&self, namespace: &str, id: &str) -> Result<Burst> {
        let live = self.lock().active.get(id).map(|a| a.burst.clone());
        let burst = match live {
            Some(b) => Some(b),
            None => self.store.get_burst(id).await?,
        };
        // Another namespace's burst is reported as missing, not as forbidden.
        burst.filter(|b| b.namespace == namespace).ok_or_else(|| Error::NotFound(format!("no burst {id:?}")))
    }

    pub(crate) fn cancel(&self, id: &str) -> Result<()> {
        let mut state = self.lock();
        if !state.active.contains_key(id) {
            return Err(Error::Conflict(format!("burst {id} is not active (it has ended, or does not exist)")));
        }
        state.end(id, BurstState::Cancelled, "cancelled by a user".into());
        Ok(())
    }
}

async fn writer(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<Write>,
    finished: Arc<Notify>,
    brokers: volley_comm::Brokers,
) {
    while let Some(write) = rx.recv().await {
        match write {
            Write::Burst(burst) => {
                let is_final = burst.state.is_final();
                // A store that fails now is retried: a reported result is never dropped.
                let mut delay = Duration::from_millis(50);
                while let Err(e) = store.put_burst(&burst).await {
                    tracing::error!(burst = %burst.id, "saving the burst failed, retrying: {e}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                if is_final {
                    finished.notify_waiters();
                }
            }
            Write::Logs(id, logs) => {
                if let Err(e) = store.put_logs(&id, &logs).await {
                    tracing::error!(burst = %id, "saving the logs failed: {e}");
                }
            }
            Write::Purge { burst, transport, packs } => {
                tokio::spawn(purge(brokers.clone(), burst, transport, packs));
            }
            Write::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

async fn purge(brokers: volley_comm::Brokers, burst: String, transport: String, packs: usize) {
    let Ok(opts) = brokers.transport(&transport, Default::default()) else { return };
    // Packs that were killed could not delete their broker objects.
    match tokio::time::timeout(Duration::from_secs(30), opts.purge(&burst, packs)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(burst, "purging {transport} state failed: {e}"),
        Err(_) => tracing::warn!(burst, "purging {transport} state timed out"),
    }
}

async fn ticker(core: Arc<Core>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = std::time::Instant::now();
        let mut state = core.lock();
        state.check_heartbeats(now);
        state.check_deadlines(now);
    }
}
