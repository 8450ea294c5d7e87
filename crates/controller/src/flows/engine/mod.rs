//! The engine's task and its state: triggers indexed by event type, the
//! plans of deployed workflows, the active runs, the ids of the events
//! already logged. One task owns it all, so applying an event never races
//! another; each batch of inputs is committed in one store transaction (the
//! events, the triggers' contexts, the runs, the outbox) before anyone is told.

mod events;
mod runs;
mod sources;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use volley_flow::asl::model::Machine;
use volley_flow::dag::{self, Plan};
use volley_proto::flow::{CloudEvent, Ingested, Run, Source, Timer, Trigger, Workflow, WorkflowKind};
use volley_proto::now_micros;

use super::Input;
use super::outbox::{self, Entry, Outcome};
use crate::control_plane::ControlPlane;
use crate::error::{Error, Result};
use crate::store::{Batch, Docs};

/// Most work taken into one commit: an input counts 1, plus 1 per event it carries.
const BATCH: usize = 8192;

pub(super) struct State {
    plane: Arc<ControlPlane>,
    inbox: mpsc::UnboundedSender<Input>,
    /// By `namespace/id`.
    triggers: HashMap<String, Trigger>,
    /// Event type → the keys of the triggers listening to it.
    by_type: HashMap<String, BTreeSet<String>>,
    /// `namespace/name` → the checked plan of a DAG.
    plans: HashMap<String, Plan>,
    /// Timers by `namespace/id`.
    timers: HashMap<String, Timer>,
    /// Event sources by `namespace/id`.
    sources: HashMap<String, Source>,
    /// Stops what the engine started (outbox tasks, subscriptions) with it.
    stop: CancellationToken,
    /// The running subscriptions' stops, by source key.
    subscriptions: HashMap<String, tokio_util::sync::CancellationToken>,
    /// `namespace/name` → a checked state machine.
    machines: HashMap<String, Machine>,
    /// `namespace/name` → a code workflow's orchestrator.
    codes: HashMap<String, volley_flow::code::Definition>,
    /// Runs that have not ended.
    runs: HashMap<String, Run>,
    /// `namespace/source/id` of every logged event.
    seen: HashSet<String>,
    next_seq: u64,
    next_entry: u64,
    /// Outbox entries found at recovery, performed once the task runs.
    owed: Vec<Entry>,
    changed: Arc<Notify>,
}

/// What one batch changes, and what to do once it is durable.
#[derive(Default)]
struct Tx {
    batch: Batch,
    /// Events decided during the batch, applied before it commits.
    queue: VecDeque<(String, CloudEvent)>,
    perform: Vec<Entry>,
    replies: Vec<Reply>,
    /// Runs that ended in this batch: the engine forgets them, a reply may still show them.
    ended: HashMap<String, Run>,
    /// Subscriptions to start once the batch is durable.
    subscribe: Vec<(String, Source)>,
    /// Triggers whose context changed: saved once at the end of the batch.
    dirty: HashSet<String>,
    /// Runs that changed: saved once at the end of the batch.
    dirty_runs: HashSet<String>,
    /// Steps' outputs (run, step) to save in the next batch (asynchronous checkpoints).
    saves: Vec<(String, String)>,
    /// How much work the batch holds.
    size: usize,
}

/// An answer owed, given once the batch is committed.
enum Reply {
    Ingested(oneshot::Sender<Result<Ingested>>, Ingested),
    Workflow(oneshot::Sender<Result<Workflow>>, Result<Workflow>),
    Done(oneshot::Sender<Result<()>>, Result<()>),
    Trigger(oneshot::Sender<Result<Trigger>>, Result<Trigger>),
    Timer(oneshot::Sender<Result<Timer>>, Result<Timer>),
    Source(oneshot::Sender<Result<Source>>, Result<Source>),
    /// The run as it is once the whole batch is applied.
    Run(oneshot::Sender<Result<Run>>, Result<String>),
}

impl State {
    /// Reads back what the store holds and schedules what was owed.
    pub(super) async fn recover(
        plane: Arc<ControlPlane>,
        inbox: mpsc::UnboundedSender<Input>,
        changed: Arc<Notify>,
    ) -> Result<State> {
        let store = &plane.store;
        let mut state = State {
            next_seq: store.last_event().await? + 1,
            seen: store.docs::<u64>(Docs::EventIds, "").await?.into_iter().map(|(k, _)| k).collect(),
            triggers: HashMap::new(),
            by_type: HashMap::new(),
            plans: HashMap::new(),
            machines: HashMap::new(),
            codes: HashMap::new(),
            timers: store.docs::<Timer>(Docs::Timers, "").await?.into_iter().collect(),
            sources: store.docs::<Source>(Docs::Sources, "").await?.into_iter().collect(),
            subscriptions: HashMap::new(),
            stop: CancellationToken::new(),
            runs: HashMap::new(),
            next_entry: now_micros(),
            plane: plane.clone(),
            inbox: inbox.clone(),
            owed: Vec::new(),
            changed,
        };
        for (_, trigger) in store.docs::<Trigger>(Docs::Triggers, "").await? {
            let namespace = trigger.namespace.clone();
            state.index(&namespace, trigger);
        }
        for (key, w) in store.docs::<Workflow>(Docs::Workflows, "").await? {
            let parsed = match w.kind {
                WorkflowKind::Dag => dag::parse(&w.source).map(|p| drop(state.plans.insert(key.clone(), p))),
                WorkflowKind::StateMachine => {
                    volley_flow::asl::parse(&w.source).map(|m| drop(state.machines.insert(key.clone(), m)))
                }
                WorkflowKind::Code => {
                    volley_flow::code::parse(&w.source).map(|d| drop(state.codes.insert(key.clone(), d)))
                }
            };
            if let Err(e) = parsed {
                tracing::error!(workflow = %key, "a stored workflow no longer parses: {e}");
            }
        }
        for (_, run) in store.docs::<Run>(Docs::Runs, "").await? {
            if !run.state.is_final() {
                state.runs.insert(run.id.clone(), run);
            }
        }
        let owed = store.docs::<Entry>(Docs::Outbox, "").await?;
        if let Some((last, _)) = owed.last() {
            state.next_entry = state.next_entry.max(last.parse::<u64>().unwrap_or(0) + 1);
        }
        state.owed = owed.into_iter().map(|(_, entry)| entry).collect();
        // A step whose burst ended while the controller was down (or whose end
        // was not yet applied): apply that end once running. Applying it twice changes nothing.
        for run in state.runs.values() {
            for rec in run.steps.values() {
                let Some(id) = rec.bursts.last() else { continue };
                if let Some(burst) = store.get_burst(id).await?
                    && burst.state.is_final()
                {
                    let _ = inbox.send(Input::BurstChanged(Box::new(burst)));
                }
            }
        }
        tracing::info!(triggers = state.triggers.len(), runs = state.runs.len(), "workflow engine recovered");
        Ok(state)
    }

    pub(super) fn inbox(&self) -> mpsc::UnboundedSender<Input> {
        self.inbox.clone()
    }

    /// Takes inputs until the controller stops.
    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>, stop: CancellationToken) {
        self.stop = stop;
        for entry in std::mem::take(&mut self.owed) {
            outbox::perform(self.plane.clone(), entry, self.inbox.clone(), self.stop.clone());
        }
        let subscriptions: Vec<(String, Source)> =
            self.sources.iter().filter(|(_, s)| s.storage.is_none()).map(|(k, s)| (k.clone(), s.clone())).collect();
        self.subscribe(subscriptions);
        super::retention::start(self.plane.clone(), self.inbox.clone(), self.stop.clone());
        while let Some(first) = rx.recv().await {
            let mut tx = Tx::default();
            self.handle(first, &mut tx);
            while tx.size < BATCH {
                match rx.try_recv() {
                    Ok(input) => self.handle(input, &mut tx),
                    Err(_) => break,
                }
            }
            while let Some((namespace, event)) = tx.queue.pop_front() {
                self.ingest(&namespace, event, &mut tx);
            }
            self.save_dirty(&mut tx);
            self.commit(tx).await;
        }
    }

    async fn commit(&mut self, tx: Tx) {
        let Tx { batch, perform, replies, ended, subscribe, saves, .. } = tx;
        // Retried until it holds: the state in memory is already ahead of the store.
        let mut delay = Duration::from_millis(50);
        let mut batch = Some(batch);
        while let Some(b) = batch.take().filter(|b| !b.is_empty()) {
            let copy = b.clone();
            if let Err(e) = self.plane.store.commit(b).await {
                tracing::error!("saving the workflow engine's changes failed, retrying: {e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                batch = Some(copy);
            }
        }
        self.changed.notify_waiters();
        for (run, step) in saves {
            let _ = self.inbox.send(Input::SaveOutput { run, step });
        }
        self.subscribe(subscribe);
        for entry in perform {
            outbox::perform(self.plane.clone(), entry, self.inbox.clone(), self.stop.clone());
        }
        for reply in replies {
            match reply {
                Reply::Ingested(done, n) => drop(done.send(Ok(n))),
                Reply::Workflow(done, w) => drop(done.send(w)),
                Reply::Done(done, r) => drop(done.send(r)),
                Reply::Trigger(done, t) => drop(done.send(t)),
                Reply::Timer(done, t) => drop(done.send(t)),
                Reply::Source(done, s) => drop(done.send(s)),
                Reply::Run(done, id) => {
                    let run = id.and_then(|id| {
                        let run = self.runs.get(&id).or_else(|| ended.get(&id)).cloned();
                        run.ok_or_else(|| Error::NotFound(format!("no run {id}")))
                    });
                    drop(done.send(run));
                }
            }
        }
    }

    fn handle(&mut self, input: Input, tx: &mut Tx) {
        tx.size += 1;
        match input {
            Input::Events { namespace, events, done } => {
                tx.size += events.len();
                let mut n = Ingested { accepted: 0, duplicates: 0 };
                for event in events {
                    if self.ingest(&namespace, event, tx) {
                        n.accepted += 1;
                    } else {
                        n.duplicates += 1;
                    }
                }
                tx.replies.push(Reply::Ingested(done, n));
            }
            Input::Deploy { namespace, name, definition, done } => {
                let result = self.deploy(&namespace, &name, definition, tx);
                tx.replies.push(Reply::Workflow(done, result));
            }
            Input::Undeploy { namespace, name, done } => {
                let result = self.undeploy(&namespace, &name, tx);
                tx.replies.push(Reply::Done(done, result));
            }
            Input::StartRun { namespace, request, done } => {
                let result = self.start_run(&namespace, request, tx);
                tx.replies.push(Reply::Run(done, result));
            }
            Input::CancelRun { namespace, id, done } => {
                let result = self.cancel_run(&namespace, &id, tx);
                tx.replies.push(Reply::Run(done, result));
            }
            Input::CreateTrigger { namespace, request, done } => {
                let result = self.create_trigger(&namespace, request, tx);
                tx.replies.push(Reply::Trigger(done, result));
            }
            Input::DeleteTrigger { namespace, id, done } => {
                let result = self.delete_trigger(&namespace, &id, tx);
                tx.replies.push(Reply::Done(done, result));
            }
            Input::CreateTimer { namespace, request, done } => {
                let result = self.create_timer(&namespace, request, tx);
                tx.replies.push(Reply::Timer(done, result));
            }
            Input::DeleteTimer { namespace, id, done } => {
                let result = self.delete_timer(&namespace, &id, tx);
                tx.replies.push(Reply::Done(done, result));
            }
            Input::CreateSource { namespace, request, done } => {
                let result = self.create_source(&namespace, request, tx);
                tx.replies.push(Reply::Source(done, result));
            }
            Input::DeleteSource { namespace, id, done } => {
                let result = self.delete_source(&namespace, &id, tx);
                tx.replies.push(Reply::Done(done, result));
            }
            Input::SourceNote { key, reported, error } => self.source_note(&key, reported, error, tx),
            Input::Forget { ids } => {
                tx.size += ids.len();
                for id in ids {
                    if self.seen.remove(&id) {
                        tx.batch.delete(Docs::EventIds, id);
                    }
                }
            }
            Input::SaveOutput { run, step } => self.transition(&run, tx, |_, r| {
                volley_flow::run::save_output(r, &step);
                Vec::new()
            }),
            Input::BurstChanged(burst) if burst.state.is_final() => self.burst_ended(*burst, tx),
            Input::BurstChanged(burst) => self.burst_progressed(&burst, tx),
            Input::Performed { id, outcome } => {
                tx.batch.delete(Docs::Outbox, id);
                match outcome {
                    Outcome::Done => {}
                    Outcome::StepStarted { run, step, attempt, key, burst, ended } => {
                        self.step_performed(&run, &step, attempt, &key, Ok(burst), tx);
                        if let Some(burst) = ended {
                            self.burst_ended(*burst, tx);
                        }
                    }
                    Outcome::StepRefused { run, step, attempt, key, error } => {
                        self.step_performed(&run, &step, attempt, &key, Err(error), tx)
                    }
                    Outcome::TimerFired { run, token } => self.timer_fired(&run, token, tx),
                    Outcome::Tick { timer, slot } => self.tick(&timer, slot, tx),
                    Outcome::Polled { source, listing } => self.polled(&source, listing, tx),
                }
            }
        }
    }
}
