//! The lifecycle of bursts: the queue, the active bursts, their events and
//! endings. Invokers are the [`Fleet`]'s; this module reaches them only through it.
//!
//! Every method runs under one lock and never waits; what must happen outside
//! the lock (saving records, purging broker state) is sent to the writer as a
//! [`Write`], in order.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use volley_proto::api::{Burst, BurstLogs, BurstState, MAX_PHASE_NAME, MAX_PHASES, PackLogs, PackRecord, Phase};
use volley_proto::cluster::{Command, Event, InvokerInfo};
use volley_proto::now_micros;
use volley_proto::pack::{Outcome, PackSpec, Program};

use crate::Options;
use crate::fleet::Fleet;
use crate::placement::Free;
use crate::scheduler::{self, Release, Waiting};

/// Work for the writer task, done in order outside the lock.
pub(crate) enum Write {
    Burst(Box<Burst>),
    Logs(String, BurstLogs),
    /// Delete what a burst may have left on its broker.
    Purge {
        burst: String,
        transport: String,
        packs: usize,
    },
    Flush(tokio::sync::oneshot::Sender<()>),
    /// The burst's placement (written just before) is saved: its packs may
    /// start. A pack never starts before the store knows its burst left the
    /// queue, so a controller that restarts never runs a started burst again
    /// as a queued one.
    Placed(String),
}

impl Write {
    /// The purge of what `burst`'s current attempt made on its broker, if it
    /// was placed on one (killed packs could not delete it themselves).
    pub(crate) fn purge_of(burst: &Burst) -> Option<Write> {
        let transport = burst.transport.clone().filter(|_| !burst.packs.is_empty())?;
        Some(Write::Purge {
            burst: volley_proto::pack::comm_id(&burst.id, burst.attempt),
            transport,
            packs: burst.packs.len(),
        })
    }
}

/// A burst that has not ended yet.
pub(crate) struct Active {
    pub(crate) burst: Burst,
    queued_until: Instant,
    deadline: Option<Instant>,
    addresses: Vec<Option<String>>,
    exited: Vec<bool>,
    logs: BurstLogs,
    /// How the burst will end once its packs are gone (a failure or a cancel).
    ending: Option<Ending>,
    /// The deployed binary to start (None: a built-in).
    program: Option<Program>,
    /// A pack that failed on its own after all its workers had reported: the
    /// cause if other workers then fail.
    late_exit: Option<String>,
}

/// How sure a reason is to be the first cause of a burst's failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Cause {
    /// A consequence of a failure elsewhere: a pack that saw a peer vanish, a
    /// pack stopped because the burst was ending. It ends the burst at once
    /// (fail fast), but a cause that arrives later takes its place.
    Echo,
    /// A failure of its own: a worker's error or panic, a pack process that
    /// died (a signal, an exit status), a lost invoker, a timeout, a cancel.
    Root,
}

/// The decided end of a burst, kept until its packs are gone.
struct Ending {
    state: BurstState,
    reason: String,
    cause: Cause,
}

pub(crate) struct Lifecycle {
    opts: Options,
    fleet: Fleet,
    active: HashMap<String, Active>,
    queue: VecDeque<String>,
    writes: mpsc::UnboundedSender<Write>,
    /// The queue or the capacity changed since placement last ran.
    unsettled: bool,
    /// Start commands of placed bursts, held until their placement is saved.
    held: HashMap<String, Vec<(String, Command)>>,
    /// The final records of the bursts that ended last, newest at the back:
    /// a burst leaves `active` when it ends, and its final record reaches the
    /// store a moment later, through `writes`; meanwhile it is read from here
    /// (a cancel's reply, a poll right after the end saw the store's older
    /// record: "queued" for a burst already cancelled).
    recent: VecDeque<Burst>,
}

/// How many final records of ended bursts are kept in memory for reads.
const RECENT_ENDS: usize = 256;

impl Lifecycle {
    pub(crate) fn new(opts: Options, writes: mpsc::UnboundedSender<Write>) -> Self {
        Lifecycle {
            opts,
            fleet: Fleet::default(),
            active: HashMap::new(),
            queue: VecDeque::new(),
            writes,
            unsettled: false,
            held: HashMap::new(),
            recent: VecDeque::new(),
        }
    }

    fn save(&self, burst: &Burst) {
        let _ = self.writes.send(Write::Burst(Box::new(burst.clone())));
    }

    // ---- invokers ----

    pub(crate) fn register(&mut self, registration: volley_proto::cluster::Registration) -> String {
        let id = self.fleet.register(registration);
        self.schedule();
        id
    }

    /// The invokers, for the calls they make and the listing.
    pub(crate) fn fleet(&mut self) -> &mut Fleet {
        &mut self.fleet
    }

    pub(crate) fn invokers(&self) -> Vec<InvokerInfo> {
        self.fleet.infos()
    }

    /// Every live invoker's whole capacity (as if nothing ran): what a burst
    /// must fit into to be placeable ever.
    pub(crate) fn capacity(&self) -> Vec<Free> {
        self.fleet.capacity()
    }

    /// The burst as it is now, if it has not ended.
    pub(crate) fn live(&self, id: &str) -> Option<&Burst> {
        self.active.get(id).map(|a| &a.burst)
    }

    /// The burst as it is now if it is active, or its final record if it
    /// ended lately (the store may not have it yet).
    pub(crate) fn current(&self, id: &str) -> Option<&Burst> {
        self.live(id).or_else(|| self.recent.iter().rev().find(|b| b.id == id))
    }

    /// How many bursts are queued or running.
    pub(crate) fn active_count(&self) -> usize {
        self.active.len()
    }

    /// Bursts of `namespace` waiting in the queue.
    pub(crate) fn queued_in(&self, namespace: &str) -> usize {
        self.queue.iter().filter(|id| self.active.get(*id).is_some_and(|a| a.burst.namespace == namespace)).count()
    }

    /// Does not count the last `gap` of every invoker's silence (the controller could not hear them).
    pub(crate) fn forgive_silence(&mut self, now: Instant, gap: std::time::Duration) {
        self.fleet.forgive(now, gap);
    }

    /// Declares invokers that missed their heartbeats lost; their bursts fail.
    pub(crate) fn check_heartbeats(&mut self, now: Instant) {
        let timeout = self.opts.heartbeat_timeout;
        for invoker in self.fleet.silent(now, timeout) {
            let reason = format!(
                "invoker {} ({}) stopped sending heartbeats for {timeout:?}; its packs are lost",
                invoker.name(),
                invoker.id()
            );
            self.fail_bursts_on(invoker.id(), &reason, "its invoker was lost");
        }
    }

    /// The invoker `id` drains (`why`): nothing more is placed on it. False if it is not known.
    pub(crate) fn invoker_drains(&mut self, id: &str, why: &str) -> bool {
        self.fleet.drain(id, why)
    }

    /// The invoker `id` said it is leaving (`why`): its bursts end now, with
    /// that cause, not at the heartbeat timeout. False if it is not known.
    pub(crate) fn invoker_left(&mut self, id: &str, why: &str) -> bool {
        let Some(invoker) = self.fleet.leave(id) else { return false };
        let reason = format!("invoker {} left: {why}", invoker.name());
        self.fail_bursts_on(id, &reason, "its invoker left");
        true
    }

    /// Ends every burst with a pack on invoker `id` with `reason` (or retries it, as its policy says).
    fn fail_bursts_on(&mut self, id: &str, reason: &str, pack_note: &str) {
        let affected: Vec<String> = self
            .active
            .iter()
            .filter(|(_, a)| a.burst.packs.iter().any(|p| p.invoker == id))
            .map(|(b, _)| b.clone())
            .collect();
        for burst in affected {
            let packs: Vec<usize> =
                self.active[&burst].burst.packs.iter().filter(|p| p.invoker == id).map(|p| p.index).collect();
            self.end(&burst, BurstState::Failed, reason.to_string());
            for pack in packs {
                self.pack_gone(&burst, pack, Some(pack_note.into()));
            }
        }
    }

    // ---- bursts ----

    pub(crate) fn submit(&mut self, burst: Burst, program: Option<Program>) {
        let id = burst.id.clone();
        let queue_timeout =
            burst.request.queue_timeout_secs.map(Duration::from_secs_f64).unwrap_or(self.opts.queue_timeout);
        let active = Active {
            queued_until: Instant::now() + queue_timeout,
            deadline: None,
            addresses: Vec::new(),
            exited: Vec::new(),
            logs: BurstLogs::default(),
            ending: None,
            late_exit: None,
            program,
            burst,
        };
        self.active.insert(id.clone(), active);
        self.queue.push_back(id);
        self.schedule();
    }

    /// Runs placement if the queue or the capacity changed since it last ran.
    /// Every caller of the state calls this once its changes are made (a lost
    /// invoker ends many packs, and placement runs once after all of them).
    pub(crate) fn settle(&mut self) {
        if self.unsettled {
            self.schedule();
        }
    }

    /// Starts the queued bursts that may start now: in order of arrival, with
    /// backfilling around a head that does not fit yet (see `scheduler.rs`).
    /// Runs on every change of the queue or of capacity.
    pub(crate) fn schedule(&mut self) {
        self.unsettled = false;
        let active = &self.active;
        self.queue.retain(|id| active.get(id).is_some_and(|a| a.ending.is_none()));
        if self.queue.is_empty() {
            return;
        }
        let waiting: Vec<Waiting> = self.queue.iter().map(|id| self.waiting(&self.active[id].burst)).collect();
        let free = self.fleet.free();
        let plan = scheduler::plan(&waiting, &free, &self.releases(), Instant::now());
        if plan.is_empty() {
            return;
        }
        let starting: Vec<(String, Vec<crate::placement::Placed>, u64)> = plan
            .into_iter()
            .map(|(index, placement)| (self.queue[index].clone(), placement, waiting[index].memory_mb))
            .collect();
        self.queue.retain(|id| !starting.iter().any(|(s, _, _)| s == id));
        for (id, placement, memory) in starting {
            self.start(&id, placement, memory);
        }
    }

    /// A queued burst's demand, as the scheduler sees it.
    fn waiting(&self, burst: &Burst) -> Waiting {
        let req = &burst.request;
        Waiting {
            workers: req.workers,
            granularity: req.granularity,
            memory_mb: req.memory_mb.unwrap_or(self.opts.default_memory_mb),
            runtime: self.timeout_of(burst),
        }
    }

    fn timeout_of(&self, burst: &Burst) -> Duration {
        burst.request.timeout_secs.map(Duration::from_secs_f64).unwrap_or(self.opts.burst_timeout)
    }

    /// What the live packs give back at the latest (their burst's deadline),
    /// one entry per burst and invoker.
    fn releases(&self) -> Vec<Release> {
        let mut releases = Vec::new();
        for a in self.active.values() {
            let Some(at) = a.deadline else { continue };
            let memory = a.burst.request.memory_mb.unwrap_or(self.opts.default_memory_mb);
            let mut held: BTreeMap<&str, usize> = BTreeMap::new();
            for (pack, exited) in a.burst.packs.iter().zip(&a.exited) {
                if !exited {
                    *held.entry(&pack.invoker).or_default() += pack.size;
                }
            }
            releases.extend(held.into_iter().map(|(invoker, slots)| Release {
                at,
                invoker: invoker.to_string(),
                slots,
                memory_mb: (slots as u64).saturating_mul(memory),
            }));
        }
        releases
    }

    fn start(&mut self, id: &str, placement: Vec<crate::placement::Placed>, memory: u64) {
        let secret: [u8; 32] = rand::random();
        let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let now = now_micros();
        let single_host = placement.iter().all(|p| p.invoker == placement[0].invoker);
        let Some(active) = self.active.get_mut(id) else { return };
        let burst = &mut active.burst;
        let transport =
            burst.request.transport.clone().unwrap_or_else(|| if single_host { "shm" } else { "tcp" }.into());
        // Resolved once: each pack gets this transport's settings and nothing else.
        // (Submit checked the name; a build without that transport still ends cleanly.)
        let resolved = match self.opts.brokers.transport(&transport, Default::default()) {
            Ok(t) => t,
            Err(e) => {
                let reason = format!("cannot use transport {transport:?}: {e}");
                active.ending = Some(Ending { state: BurstState::Failed, reason, cause: Cause::Root });
                self.finish(id);
                return;
            }
        };
        let sizes: Vec<usize> = placement.iter().map(|p| p.size).collect();
        let mut first = 0;
        burst.packs = placement
            .iter()
            .enumerate()
            .map(|(index, p)| {
                let record = PackRecord {
                    index,
                    first_rank: first,
                    size: p.size,
                    invoker: p.invoker.clone(),
                    started_at: None,
                    exited_at: None,
                    error: None,
                    sent_bytes: Vec::new(),
                };
                first += p.size;
                record
            })
            .collect();
        for pack in &burst.packs {
            for w in &mut burst.workers[pack.first_rank..pack.first_rank + pack.size] {
                w.pack = Some(pack.index);
                w.placed_at = Some(now);
            }
        }
        burst.state = BurstState::Starting;
        burst.placed_at = Some(now);
        burst.transport = Some(transport.clone());
        let timeout = burst.request.timeout_secs.map(Duration::from_secs_f64).unwrap_or(self.opts.burst_timeout);
        active.deadline = Some(Instant::now() + timeout);
        active.addresses = vec![None; sizes.len()];
        active.exited = vec![false; sizes.len()];
        let op_timeout = timeout.min(self.opts.op_timeout);
        let transport = resolved;
        // Storage credentials go only to bursts whose parameters name an s3:// URL.
        let storage = if names_s3(&burst.request.params) || burst.request.worker_params.iter().flatten().any(names_s3) {
            self.opts.storage.clone()
        } else {
            Default::default()
        };
        let mut commands = Vec::new();
        for pack in &burst.packs {
            let worker_params = match &burst.request.worker_params {
                Some(all) => all[pack.first_rank..pack.first_rank + pack.size].to_vec(),
                None => Vec::new(),
            };
            let spec = PackSpec {
                burst: id.to_string(),
                attempt: burst.attempt,
                idempotency_key: burst.request.idempotency_key.clone(),
                namespace: burst.namespace.clone(),
                secret: secret.clone(),
                function: burst.request.function.clone(),
                program: active.program.clone(),
                pack: pack.index,
                pack_sizes: sizes.clone(),
                transport: transport.clone(),
                storage: storage.clone(),
                params: burst.request.params.clone(),
                worker_params,
                op_timeout_ms: op_timeout.as_millis() as u64,
                connect_timeout_ms: self.opts.connect_timeout.as_millis() as u64,
                memory_mb: burst.request.memory_mb,
            };
            commands.push((pack.invoker.clone(), pack.size, Command::StartPack(Box::new(spec))));
        }
        let snapshot = burst.clone();
        let mut held = Vec::new();
        for (invoker, size, command) in commands {
            self.fleet.reserve(&invoker, size, (size as u64).saturating_mul(memory));
            held.push((invoker, command));
        }
        self.held.insert(id.to_string(), held);
        self.save(&snapshot);
        let _ = self.writes.send(Write::Placed(id.to_string()));
    }

    /// Burst `id`'s placement is saved: its start commands go to the invokers
    /// (unless it ended meanwhile).
    pub(crate) fn release(&mut self, id: &str) {
        let Some(commands) = self.held.remove(id) else { return };
        if self.active.get(id).is_some_and(|a| a.burst.state == BurstState::Starting) {
            for (invoker, command) in commands {
                self.fleet.send(&invoker, command);
            }
        }
    }

    /// Applies one event from invoker `from`.
    pub(crate) fn apply(&mut self, from: &str, event: Event) {
        let burst_id = event.burst().to_string();
        let Some(active) = self.active.get_mut(&burst_id) else { return };
        match event {
            Event::PackAddress { pack, address, .. } => {
                if let Some(slot) = active.addresses.get_mut(pack) {
                    *slot = Some(address);
                }
                if let Some(addresses) = active.addresses.iter().cloned().collect::<Option<Vec<String>>>() {
                    // One message per invoker, not per pack: the list is the same for all.
                    let mut targets: Vec<String> = active.burst.packs.iter().map(|p| p.invoker.clone()).collect();
                    targets.sort();
                    targets.dedup();
                    for invoker in targets {
                        self.fleet
                            .send(&invoker, Command::Peers { burst: burst_id.clone(), addresses: addresses.clone() });
                    }
                }
            }
            Event::PackConnected { pack, at, .. } => {
                if let Some(p) = active.burst.packs.get_mut(pack) {
                    p.started_at = Some(at);
                    let ranks = p.first_rank..p.first_rank + p.size;
                    for w in active.burst.workers.get_mut(ranks).into_iter().flatten() {
                        w.pack_started_at = Some(at);
                    }
                }
            }
            Event::WorkerStarted { rank, at, .. } => {
                if let Some(w) = active.burst.workers.get_mut(rank) {
                    w.started_at = Some(at);
                }
                let starts: Option<Vec<u64>> = active.burst.workers.iter().map(|w| w.started_at).collect();
                if let (Some(starts), BurstState::Starting) = (starts, active.burst.state) {
                    let (first, last) = (starts.iter().min().copied(), starts.iter().max().copied());
                    active.burst.state = BurstState::Running;
                    active.burst.running_at = last;
                    active.burst.start_spread_us = first.zip(last).map(|(f, l)| l - f);
                    let snapshot = active.burst.clone();
                    self.save(&snapshot);
                }
            }
            Event::WorkerPhase { rank, phase, .. } => {
                // While it runs; the list it reports when it finishes replaces these.
                if let Some(w) = active.burst.workers.get_mut(rank)
                    && w.finished_at.is_none()
                    && w.phases.len() < MAX_PHASES
                {
                    w.phases.extend(bounded_phases(vec![phase]));
                }
            }
            Event::WorkerFinished { rank, at, outcome, report, .. } => {
                let Some(w) = active.burst.workers.get_mut(rank) else { return };
                w.finished_at = Some(at);
                w.traffic = report.traffic;
                w.phases = bounded_phases(report.phases);
                match outcome {
                    Outcome::Ok(v) => w.result = Some(v),
                    Outcome::Error(e) => {
                        w.error = Some(e.clone());
                        // Fail fast: workers that never touch the communicator must stop too.
                        self.end(&burst_id, BurstState::Failed, format!("rank {rank} failed: {e}"));
                    }
                    Outcome::Aborted(e) => {
                        w.error = Some(e);
                        w.aborted = true;
                    }
                }
            }
            Event::PackExited { pack, at, error, stdout, stderr, truncated, consequence, mut sent_bytes, .. } => {
                let packs = active.burst.packs.len();
                let Some(record) = active.burst.packs.get_mut(pack) else { return };
                record.exited_at = Some(at);
                // One entry per pack, whatever the process claimed.
                sent_bytes.truncate(packs);
                record.sent_bytes = sent_bytes;
                record.error = error.clone();
                let ranks = record.first_rank..record.first_rank + record.size;
                let invoker = record.invoker.clone();
                active.logs.packs.push(PackLogs { pack, stdout, stderr, truncated });
                if let Some(e) = &error {
                    let name = self.fleet.name_of(&invoker);
                    let what = format!("pack {pack} on invoker {name} failed: {e}");
                    let active = self.active.get_mut(&burst_id).expect("looked up above");
                    let reported =
                        active.burst.workers.get(ranks).is_some_and(|ws| ws.iter().all(|w| w.result.is_some()));
                    if reported {
                        // Its work is committed: every one of its workers reported a
                        // result. The burst's outcome follows the results; say what happened.
                        active.burst.notes.push(format!("{what} (after all its workers had reported their results)"));
                        if !consequence {
                            active.late_exit.get_or_insert(what);
                        }
                    } else {
                        let cause = if consequence { Cause::Echo } else { Cause::Root };
                        self.end_with(&burst_id, BurstState::Failed, what, cause);
                    }
                }
                let _ = from;
                self.pack_gone(&burst_id, pack, None);
            }
        }
    }

    /// Decides how a burst ends (the first cause wins) and stops its packs.
    pub(crate) fn end(&mut self, id: &str, state: BurstState, reason: String) {
        self.end_with(id, state, reason, Cause::Root);
    }

    /// The same for a reason that may only echo the real cause: the first
    /// decision stops the burst at once, and a root cause that arrives later
    /// (before the burst is final) replaces an echo as its error.
    pub(crate) fn end_with(&mut self, id: &str, state: BurstState, reason: String, cause: Cause) {
        let Some(active) = self.active.get_mut(id) else { return };
        if let Some(ending) = &mut active.ending {
            if cause > ending.cause && ending.state == BurstState::Failed && state == BurstState::Failed {
                tracing::info!(
                    burst = id,
                    "the cause of the failure: {reason} (it was first seen as: {})",
                    ending.reason
                );
                *ending = Ending { state, reason, cause };
            }
            return;
        }
        tracing::info!(burst = id, state = state.name(), "{reason}");
        active.ending = Some(Ending { state, reason: reason.clone(), cause });
        if active.burst.state == BurstState::Queued {
            self.queue.retain(|q| q != id);
            self.finish(id);
            // The bursts behind it (or beside its reservation) may fit now.
            self.unsettled = true;
            return;
        }
        if self.held.remove(id).is_some() {
            // Placed, but its start commands wait for the placement to be
            // saved: they are never sent (a cancel sent now would reach the
            // invokers before them, and the packs would run on), and its
            // packs, which never started, are gone now.
            let packs = active.burst.packs.len();
            for pack in 0..packs {
                self.pack_gone(id, pack, None);
            }
            return;
        }
        let invokers: Vec<String> = active.burst.packs.iter().map(|p| p.invoker.clone()).collect();
        for invoker in invokers {
            let pending = |c: &Command| matches!(c, Command::Cancel { burst, .. } if burst == id);
            if !self.fleet.has_pending(&invoker, pending) {
                self.fleet.send(&invoker, Command::Cancel { burst: id.to_string(), reason: reason.clone() });
            }
        }
    }

    /// A pack's process is gone: its capacity returns; the burst ends when all are gone.
    fn pack_gone(&mut self, id: &str, pack: usize, error: Option<String>) {
        let memory = self.opts.default_memory_mb;
        let Some(active) = self.active.get_mut(id) else { return };
        if active.exited.get(pack).copied() != Some(false) {
            return;
        }
        active.exited[pack] = true;
        let Some(record) = active.burst.packs.get_mut(pack) else { return };
        if record.exited_at.is_none() {
            record.exited_at = Some(now_micros());
            record.error = error;
        }
        let per_worker = active.burst.request.memory_mb.unwrap_or(memory);
        let (invoker, size) = (record.invoker.clone(), record.size);
        self.fleet.release(&invoker, size, (size as u64).saturating_mul(per_worker));
        if active.exited.iter().all(|e| *e) {
            self.finish(id);
        }
        self.unsettled = true;
    }

    /// Records the burst's final state, saves it with its logs, forgets it.
    fn finish(&mut self, id: &str) {
        let Some(mut active) = self.active.remove(id) else { return };
        let burst = &mut active.burst;
        burst.finished_at = Some(now_micros());
        let (state, error) = match active.ending.take() {
            Some(Ending { state, reason, .. }) => (state, Some(reason)),
            None => match burst.workers.iter().find(|w| w.result.is_none()) {
                None => (BurstState::Succeeded, None),
                // A pack that died after its own workers reported is what the
                // others' failures echo.
                Some(_) if active.late_exit.is_some() => (BurstState::Failed, active.late_exit.take()),
                Some(w) => (
                    BurstState::Failed,
                    Some(
                        w.error
                            .clone()
                            .map(|e| format!("rank {} failed: {e}", w.rank))
                            .unwrap_or_else(|| format!("rank {} ended without reporting a result", w.rank)),
                    ),
                ),
            },
        };
        burst.state = state;
        burst.error = error;
        if state != BurstState::Succeeded
            && let Some(purge) = Write::purge_of(burst)
        {
            let _ = self.writes.send(purge);
        }
        // A failure (not a cancel, not a burst that never found room) is retried
        // whole, on fresh packs, while attempts remain.
        if state == BurstState::Failed && !burst.packs.is_empty() && may_retry(burst) {
            self.retry(active);
            return;
        }
        let mut logs = active.logs;
        logs.packs.sort_by_key(|p| p.pack);
        let _ = self.writes.send(Write::Logs(id.to_string(), logs));
        if self.recent.len() >= RECENT_ENDS {
            self.recent.pop_front();
        }
        self.recent.push_back(active.burst.clone());
        let _ = self.writes.send(Write::Burst(Box::new(active.burst)));
    }

    /// Queues a failed burst again as its next attempt.
    fn retry(&mut self, mut active: Active) {
        let reason = active.burst.error.take().unwrap_or_default();
        tracing::info!(burst = %active.burst.id, attempt = active.burst.attempt, "retrying after: {reason}");
        next_attempt(&mut active.burst, &reason);
        let queue_timeout =
            active.burst.request.queue_timeout_secs.map(Duration::from_secs_f64).unwrap_or(self.opts.queue_timeout);
        active.queued_until = Instant::now() + queue_timeout;
        active.deadline = None;
        active.addresses.clear();
        active.exited.clear();
        active.ending = None;
        active.late_exit = None;
        let id = active.burst.id.clone();
        self.save(&active.burst);
        self.active.insert(id.clone(), active);
        self.queue.push_back(id);
        self.unsettled = true;
    }

    /// Fails bursts that waited too long for capacity or ran past their timeout.
    pub(crate) fn check_deadlines(&mut self, now: Instant) {
        let mut late = Vec::new();
        for (id, a) in &self.active {
            if a.ending.is_some() {
                continue;
            }
            if a.burst.state == BurstState::Queued && now > a.queued_until {
                let free = self.fleet.free();
                let need = self.waiting(&a.burst);
                late.push((id.clone(), format!(
                    "could not be placed within its queue timeout: it needs {} workers in packs of {} with {} MiB each; \
                     free when it gave up: {} (bursts ahead of it in the queue: {})",
                    need.workers, need.granularity, need.memory_mb, crate::placement::describe(&free),
                    self.queue.iter().take_while(|q| *q != id).count()
                )));
            } else if a.deadline.is_some_and(|d| now > d) {
                let timeout =
                    a.burst.request.timeout_secs.map(Duration::from_secs_f64).unwrap_or(self.opts.burst_timeout);
                late.push((id.clone(), format!("exceeded its timeout of {:?}", timeout)));
            }
        }
        for (id, reason) in late {
            self.end(&id, BurstState::Failed, reason);
        }
    }

    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }
}

/// Whether a value holds an `s3://` URL anywhere.
fn names_s3(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.starts_with("s3://"),
        serde_json::Value::Array(items) => items.iter().any(names_s3),
        serde_json::Value::Object(map) => map.values().any(names_s3),
        _ => false,
    }
}

/// Whether a failed attempt of `burst` may run again (its `retries` allow it).
pub(crate) fn may_retry(burst: &Burst) -> bool {
    burst.attempt <= burst.request.retries.unwrap_or(0)
}

/// Turns a failed attempt into the next one, queued and placed nowhere yet,
/// keeping why the last one failed.
pub(crate) fn next_attempt(burst: &mut Burst, reason: &str) {
    burst.attempt_errors.push(format!("attempt {}: {reason}", burst.attempt));
    burst.attempt += 1;
    burst.state = BurstState::Queued;
    burst.error = None;
    burst.transport = burst.request.transport.clone();
    burst.placed_at = None;
    burst.running_at = None;
    burst.finished_at = None;
    burst.start_spread_us = None;
    burst.packs.clear();
    burst.notes.clear();
    burst.workers = (0..burst.request.workers).map(volley_proto::api::WorkerRecord::new).collect();
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;

/// A worker's phases as its record keeps them: the first `MAX_PHASES`, names
/// cut to `MAX_PHASE_NAME` characters (a function's marks are its own input).
fn bounded_phases(mut phases: Vec<Phase>) -> Vec<Phase> {
    phases.truncate(MAX_PHASES);
    for p in &mut phases {
        if let Some((cut, _)) = p.name.char_indices().nth(MAX_PHASE_NAME) {
            p.name.truncate(cut);
        }
    }
    phases
}
