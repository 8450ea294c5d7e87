//! The control plane: the locked state, the writer that saves records in
//! order, and the ticker that enforces heartbeats and deadlines.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use volley_proto::api::{Burst, BurstState};
use volley_proto::now_micros;

use crate::error::{Error, Result};
use crate::functions::Functions;
use crate::lifecycle::{Lifecycle, Write};

mod bursts;
mod cluster;
mod dashboard;
use crate::{Options, Store};

pub(crate) use bursts::{MAX_RETRIES, MAX_TIMEOUT_SECS};
pub(crate) use cluster::{MAX_MEMORY_MB, MAX_SLOTS};

pub(crate) struct ControlPlane {
    pub(crate) opts: Options,
    pub(crate) store: Store,
    lifecycle: Mutex<Lifecycle>,
    writes: mpsc::UnboundedSender<Write>,
    /// Fired whenever a burst reaches its final state.
    pub(crate) finished: Arc<Notify>,
    /// Fired whenever a burst may have progressed (event streams wait on it).
    pub(crate) changed: Notify,
    pub(crate) submitted: AtomicU64,
    pub(crate) functions: Functions,
    /// Submits with an idempotency key, one at a time.
    keyed: tokio::sync::Mutex<()>,
    /// Where bursts go, once saved in a new state, for the workflow engine.
    pub(crate) changes: mpsc::UnboundedSender<Burst>,
    /// The workflow engine, once started (it needs the control plane first).
    flows: std::sync::OnceLock<crate::flows::Engine>,
    /// Program sessions: shared objects of client programs, in memory.
    pub(crate) sessions: volley_sessions::Sessions,
}

impl ControlPlane {
    /// Builds the core and recovers what a previous run left unfinished; the
    /// receiver gets each burst when it is saved in a new state.
    pub(crate) async fn start(
        opts: Options,
        store: Store,
    ) -> Result<(Arc<ControlPlane>, mpsc::UnboundedReceiver<Burst>)> {
        let (writes, rx) = mpsc::unbounded_channel();
        let (ends, ended) = mpsc::unbounded_channel();
        let finished = Arc::new(Notify::new());
        let functions = Functions::load(opts.functions.clone(), opts.data_dir.join("blobs"), &store).await?;
        let core = Arc::new(ControlPlane {
            functions,
            lifecycle: Mutex::new(Lifecycle::new(opts.clone(), writes.clone())),
            opts,
            store: store.clone(),
            writes,
            finished: finished.clone(),
            changed: Notify::new(),
            submitted: AtomicU64::new(0),
            keyed: tokio::sync::Mutex::new(()),
            changes: ends.clone(),
            flows: std::sync::OnceLock::new(),
            sessions: volley_sessions::Sessions::default(),
        });
        let (placed, mut saved) = mpsc::unbounded_channel::<String>();
        tokio::spawn(writer(store.clone(), rx, finished, core.opts.brokers.clone(), ends, placed));
        // Start commands go out once their placement is saved (a weak handle:
        // this task must not keep a stopped control plane, and its store, alive).
        let weak = Arc::downgrade(&core);
        tokio::spawn(async move {
            while let Some(id) = saved.recv().await {
                let Some(plane) = weak.upgrade() else { return };
                plane.lock().release(&id);
            }
        });
        core.recover().await?;
        Ok((core, ended))
    }

    /// The workflow engine.
    pub(crate) fn flows(&self) -> Result<&crate::flows::Engine> {
        self.flows.get().ok_or_else(|| Error::Store("the workflow engine has not started".into()))
    }

    pub(crate) fn set_flows(&self, engine: crate::flows::Engine) {
        let _ = self.flows.set(engine);
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Lifecycle> {
        self.lifecycle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
                if !crate::lifecycle::may_retry(&burst) {
                    burst.state = BurstState::Failed;
                    burst.error = Some(format!("{REASON}; submit it again"));
                    burst.finished_at = Some(now_micros());
                    self.store.put_burst(&burst).await?;
                    continue;
                }
                crate::lifecycle::next_attempt(&mut burst, REASON);
                self.store.put_burst(&burst).await?;
            }
            tracing::info!(burst = %burst.id, attempt = burst.attempt, "requeued after a controller restart");
            let program = self.functions.program(&burst.namespace, &burst.request.function);
            self.lock().submit(burst, program);
        }
        Ok(())
    }
}

async fn writer(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<Write>,
    finished: Arc<Notify>,
    brokers: volley_comm::Brokers,
    ends: mpsc::UnboundedSender<Burst>,
    placed: mpsc::UnboundedSender<String>,
) {
    let mut next = None;
    // The state (and attempt) the engine was last told of each unfinished burst.
    let mut told: std::collections::HashMap<String, (BurstState, u32)> = std::collections::HashMap::new();
    while let Some(write) = match next.take() {
        Some(w) => Some(w),
        None => rx.recv().await,
    } {
        match write {
            Write::Burst(first) => {
                // The bursts waiting behind this one are saved with it, in one
                // transaction: a hundred bursts ending together cost one write.
                let mut bursts = vec![*first];
                while bursts.len() < WRITE_BATCH {
                    match rx.try_recv() {
                        Ok(Write::Burst(b)) => bursts.push(*b),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                save_bursts(&store, &bursts).await;
                if bursts.iter().any(|b| b.state.is_final()) {
                    finished.notify_waiters();
                }
                // Saved first: the workflow engine hears of a change the store
                // holds; of each burst, each state once (its end always).
                for burst in bursts {
                    let new = if burst.state.is_final() {
                        told.remove(&burst.id);
                        true
                    } else {
                        told.insert(burst.id.clone(), (burst.state, burst.attempt))
                            != Some((burst.state, burst.attempt))
                    };
                    if new {
                        let _ = ends.send(burst);
                    }
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
            Write::Placed(id) => {
                let _ = placed.send(id);
            }
            Write::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// Most burst records saved in one transaction.
const WRITE_BATCH: usize = 512;

/// Saves `bursts` (in order: a later record of the same burst wins), retrying
/// until the store takes them: a reported result is never dropped.
async fn save_bursts(store: &Store, bursts: &[Burst]) {
    let mut delay = Duration::from_millis(50);
    loop {
        let result = match bursts {
            [one] => store.put_burst(one).await,
            many => {
                let mut batch = crate::store::Batch::default();
                let mut latest: std::collections::HashMap<&str, &Burst> = std::collections::HashMap::new();
                for b in many {
                    latest.insert(&b.id, b);
                }
                batch.bursts = latest.into_values().cloned().collect();
                store.commit(batch).await
            }
        };
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(bursts = bursts.len(), "saving bursts failed, retrying: {e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
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

/// Enforces heartbeats and deadlines ten times a second, until `shutdown`.
pub(crate) async fn ticker(core: Arc<ControlPlane>, shutdown: CancellationToken) {
    /// A gap between ticks this long means the controller itself was held up.
    const STALL: Duration = Duration::from_secs(1);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut last = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = {
            let mut state = core.lock();
            let now = std::time::Instant::now();
            // A controller held up (a starved runtime, the state lock held, a
            // paused machine) heard no poll meanwhile: that silence is its own,
            // not the invokers', and does not count towards their heartbeats.
            let gap = now.duration_since(last);
            last = now;
            if gap > STALL {
                tracing::warn!("the controller was held up for {gap:?}; invokers' heartbeats are not counted over it");
                state.forgive_silence(now, gap);
            }
            state.check_heartbeats(now);
            state.check_deadlines(now);
            state.settle();
            now
        };
        for ended in core.sessions.sweep(now) {
            tracing::info!(session = ended.id, "session expired: its program stopped renewing it");
            let plane = core.clone();
            tokio::spawn(async move { plane.session_ended(ended).await });
        }
    }
}
