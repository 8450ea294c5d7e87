//! The engine's task and its state: triggers indexed by event type, the
//! plans of deployed workflows, the active runs, the ids of the events
//! already logged. One task owns it all, so applying an event never races
//! another; each batch of inputs is committed in one store transaction (the
//! events, the triggers' contexts, the runs, the outbox) before anyone is told.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot};
use volley_flow::dag::{self, Plan};
use volley_flow::run::{self as rules, Effect, Ended};
use volley_flow::{condition, matching, template};
use volley_proto::api::{Burst, BurstState};
use volley_proto::flow::{
    Action, CloudEvent, Ingested, LoggedEvent, Run, RunRequest, Trigger, Workflow, WorkflowDefinition, WorkflowKind,
};
use volley_proto::now_micros;

use super::Input;
use super::outbox::{self, Entry, Outcome, Pending};
use crate::control_plane::ControlPlane;
use crate::error::{Error, Result};
use crate::store::{Batch, Docs};

/// Most inputs taken into one commit.
const BATCH: usize = 1024;

pub(super) struct State {
    plane: Arc<ControlPlane>,
    inbox: mpsc::UnboundedSender<Input>,
    triggers: HashMap<String, Trigger>,
    /// Event type → the ids of the triggers listening to it.
    by_type: HashMap<String, BTreeSet<String>>,
    /// `namespace/name` → the checked plan.
    plans: HashMap<String, Plan>,
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
}

/// An answer owed, given once the batch is committed.
enum Reply {
    Ingested(oneshot::Sender<Result<Ingested>>, Ingested),
    Workflow(oneshot::Sender<Result<Workflow>>, Result<Workflow>),
    Done(oneshot::Sender<Result<()>>, Result<()>),
    /// The run as it is once the whole batch is applied.
    Run(oneshot::Sender<Result<Run>>, Result<String>),
}

fn workflow_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
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
            runs: HashMap::new(),
            next_entry: now_micros(),
            plane: plane.clone(),
            inbox: inbox.clone(),
            owed: Vec::new(),
            changed,
        };
        for (_, trigger) in store.docs::<Trigger>(Docs::Triggers, "").await? {
            state.index(trigger);
        }
        for (key, w) in store.docs::<Workflow>(Docs::Workflows, "").await? {
            match dag::parse(&w.source) {
                Ok(plan) => {
                    state.plans.insert(key, plan);
                }
                Err(e) => tracing::error!(workflow = %key, "a stored workflow no longer parses: {e}"),
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
                    let _ = inbox.send(Input::BurstEnded(Box::new(burst)));
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
    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>) {
        for entry in std::mem::take(&mut self.owed) {
            outbox::perform(self.plane.clone(), entry, self.inbox.clone());
        }
        while let Some(first) = rx.recv().await {
            let mut tx = Tx::default();
            self.handle(first, &mut tx);
            while tx.replies.len() < BATCH {
                match rx.try_recv() {
                    Ok(input) => self.handle(input, &mut tx),
                    Err(_) => break,
                }
            }
            while let Some((namespace, event)) = tx.queue.pop_front() {
                self.ingest(&namespace, event, &mut tx);
            }
            self.commit(tx).await;
        }
    }

    async fn commit(&mut self, tx: Tx) {
        let Tx { batch, perform, replies, ended, .. } = tx;
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
        for entry in perform {
            outbox::perform(self.plane.clone(), entry, self.inbox.clone());
        }
        for reply in replies {
            match reply {
                Reply::Ingested(done, n) => drop(done.send(Ok(n))),
                Reply::Workflow(done, w) => drop(done.send(w)),
                Reply::Done(done, r) => drop(done.send(r)),
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
        match input {
            Input::Events { namespace, events, done } => {
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
                let key = workflow_key(&namespace, &name);
                let result = if !self.plans.contains_key(&key) {
                    Err(Error::NotFound(format!("no workflow {name:?}")))
                } else if let Some(run) = self.runs.values().find(|r| r.namespace == namespace && r.workflow == name) {
                    Err(Error::Conflict(format!("run {} of {name} has not ended; cancel it first", run.id)))
                } else {
                    self.plans.remove(&key);
                    tx.batch.delete(Docs::Workflows, key);
                    Ok(())
                };
                tx.replies.push(Reply::Done(done, result));
            }
            Input::StartRun { namespace, request, done } => {
                let result = self.start_run(&namespace, request, tx);
                tx.replies.push(Reply::Run(done, result));
            }
            Input::CancelRun { namespace, id, done } => {
                let result = match self.runs.get(&id) {
                    Some(run) if run.namespace == namespace => {
                        self.transition(&id, tx, |_, run| rules::cancel(run, "cancelled by a user", now_micros()));
                        Ok(id)
                    }
                    _ => Err(Error::Conflict(format!("run {id} is not running (it has ended, or does not exist)"))),
                };
                tx.replies.push(Reply::Run(done, result));
            }
            Input::BurstEnded(burst) => self.burst_ended(*burst, tx),
            Input::Performed { id, outcome } => {
                tx.batch.delete(Docs::Outbox, id);
                match outcome {
                    Outcome::Done => {}
                    Outcome::StepStarted { run, step, attempt, burst } => {
                        self.transition(&run, tx, |_, r| {
                            rules::burst_started(r, &step, attempt, &burst);
                            Vec::new()
                        });
                    }
                    Outcome::StepRefused { run, step, attempt, error } => {
                        let now = now_micros();
                        self.transition(&run, tx, |plan, r| {
                            rules::burst_ended(plan, r, &step, attempt, Ended::Failed(error), now)
                        });
                    }
                }
            }
        }
    }

    /// Logs `event` and applies it to the triggers it matches; false if it
    /// was logged before (it is then not applied again).
    fn ingest(&mut self, namespace: &str, mut event: CloudEvent, tx: &mut Tx) -> bool {
        let key = format!("{namespace}/{}/{}", event.source, event.id);
        if !self.seen.insert(key.clone()) {
            return false;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        event.time.get_or_insert_with(|| volley_flow::rfc3339(now_micros()));
        tx.batch.put(Docs::EventIds, key, &seq);
        tx.batch.events.push(LoggedEvent {
            seq,
            namespace: namespace.into(),
            received_at: now_micros(),
            event: event.clone(),
        });
        let ids: Vec<String> = self.by_type.get(&event.kind).map(|s| s.iter().cloned().collect()).unwrap_or_default();
        for id in ids {
            let Some(trigger) = self.triggers.get_mut(&id) else { continue };
            if trigger.namespace != namespace || !matching::matches(&trigger.matcher, &event) {
                continue;
            }
            let fired = match condition::apply(trigger, &event) {
                Ok(fired) => fired,
                Err(e) => {
                    // Recorded where it can be read (the trigger's context), and the event goes on.
                    tracing::warn!(trigger = %id, "{e}");
                    trigger.context = json!({"error": e.to_string(), "context": trigger.context});
                    false
                }
            };
            let (actions, once, snapshot) = (trigger.actions.clone(), trigger.once, trigger.clone());
            if fired && once {
                self.unindex(&id);
                tx.batch.delete(Docs::Triggers, id.clone());
            } else {
                tx.batch.put(Docs::Triggers, id.clone(), &snapshot);
            }
            if fired {
                self.act(namespace, &snapshot, actions, &event, tx);
            }
        }
        true
    }

    fn act(&mut self, namespace: &str, trigger: &Trigger, actions: Vec<Action>, event: &CloudEvent, tx: &mut Tx) {
        let scope = json!({"event": event, "context": trigger.context});
        for action in actions {
            match action {
                Action::Advance { run, step } => {
                    let now = now_micros();
                    self.transition(&run, tx, |plan, r| rules::advance(plan, r, &step, now));
                }
                Action::StartBurst { request, idempotency_key } => {
                    let filled = template::fill(&serde_json::to_value(&request).unwrap_or(Value::Null), &scope)
                        .and_then(|v| {
                            serde_json::from_value(v).map_err(|e| volley_flow::Error::Reference(e.to_string()))
                        });
                    match filled {
                        Ok(mut request) => {
                            let default_key = format!("trigger/{}/{}/{}", trigger.id, event.source, event.id);
                            let key = idempotency_key.map(|k| {
                                template::fill(&json!(k), &scope).ok().and_then(|v| v.as_str().map(String::from))
                            });
                            let request: &mut volley_proto::api::BurstRequest = &mut request;
                            request.idempotency_key = Some(key.flatten().unwrap_or(default_key));
                            self.owe(namespace, Pending::StartBurst { request: Box::new(request.clone()) }, tx);
                        }
                        Err(e) => {
                            tracing::warn!(trigger = %trigger.id, "its burst cannot be made from event {}: {e}", event.id)
                        }
                    }
                }
                Action::Emit { event: template_event } => {
                    match template::fill(&serde_json::to_value(&*template_event).unwrap_or(Value::Null), &scope)
                        .and_then(|v| {
                            serde_json::from_value::<CloudEvent>(v)
                                .map_err(|e| volley_flow::Error::Reference(e.to_string()))
                        }) {
                        Ok(e) => tx.queue.push_back((namespace.into(), e)),
                        Err(e) => {
                            tracing::warn!(trigger = %trigger.id, "its event cannot be made from event {}: {e}", event.id)
                        }
                    }
                }
            }
        }
    }

    /// Changes run `id` by `change` (given its plan), saves it, and carries out the effects.
    fn transition(&mut self, id: &str, tx: &mut Tx, change: impl FnOnce(&Plan, &mut Run) -> Vec<Effect>) {
        let Some(mut run) = self.runs.remove(id) else { return };
        let Some(plan) = self.plans.get(&workflow_key(&run.namespace, &run.workflow)) else {
            tracing::error!(run = id, "the run's workflow is gone; it cannot go on");
            self.runs.insert(id.into(), run);
            return;
        };
        let effects = change(plan, &mut run);
        let namespace = run.namespace.clone();
        for effect in effects {
            match effect {
                Effect::Start { step, attempt, request, key: _, after } => {
                    let not_before = now_micros() + after.as_micros() as u64;
                    self.owe(&namespace, Pending::StartStep { run: id.into(), step, attempt, request, not_before }, tx);
                }
                Effect::Cancel { bursts, reason } => self.owe(&namespace, Pending::Cancel { bursts, reason }, tx),
                Effect::Emit(event) => tx.queue.push_back((namespace.clone(), *event)),
                Effect::Finished => {
                    let ids: Vec<String> =
                        self.triggers.values().filter(|t| t.run.as_deref() == Some(id)).map(|t| t.id.clone()).collect();
                    for t in ids {
                        self.unindex(&t);
                        tx.batch.delete(Docs::Triggers, t);
                    }
                }
            }
        }
        tx.batch.put(Docs::Runs, format!("{namespace}/{id}"), &run);
        // An ended run stays readable from the store; the engine forgets it.
        if run.state.is_final() {
            tx.ended.insert(id.into(), run);
        } else {
            self.runs.insert(id.into(), run);
        }
    }

    fn owe(&mut self, namespace: &str, effect: Pending, tx: &mut Tx) {
        self.next_entry += 1;
        let entry = Entry { id: format!("{:020}", self.next_entry), namespace: namespace.into(), effect };
        tx.batch.put(Docs::Outbox, entry.id.clone(), &entry);
        tx.perform.push(entry);
    }

    fn deploy(&mut self, namespace: &str, name: &str, definition: WorkflowDefinition, tx: &mut Tx) -> Result<Workflow> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(Error::BadRequest(format!(
                "workflow name {name:?} must be 1 to 64 characters from A-Z a-z 0-9 - _"
            )));
        }
        let plan = match definition.kind {
            WorkflowKind::Dag => dag::parse(&definition.source).map_err(|e| Error::Unprocessable(e.to_string()))?,
        };
        let workflow = Workflow {
            name: name.into(),
            namespace: namespace.into(),
            kind: definition.kind,
            source: definition.source,
            description: if definition.description.is_empty() {
                plan.dag.description.clone()
            } else {
                definition.description
            },
            steps: plan.order.clone(),
            deployed_at: now_micros(),
        };
        let key = workflow_key(namespace, name);
        tx.batch.put(Docs::Workflows, key.clone(), &workflow);
        self.plans.insert(key, plan);
        Ok(workflow)
    }

    fn start_run(&mut self, namespace: &str, request: RunRequest, tx: &mut Tx) -> Result<String> {
        let Some(plan) = self.plans.get(&workflow_key(namespace, &request.workflow)) else {
            return Err(Error::NotFound(format!(
                "no workflow {:?}; deploy it first (`volley flow deploy NAME FILE`)",
                request.workflow
            )));
        };
        let id = format!("r{:012x}{:06x}", now_micros() / 1000, rand::random::<u32>() & 0xff_ffff);
        let (run, effects) = rules::create(plan, &id, namespace, &request.workflow, request.input, now_micros());
        for trigger in plan.triggers(namespace, &id) {
            tx.batch.put(Docs::Triggers, trigger.id.clone(), &trigger);
            self.index(trigger);
        }
        self.runs.insert(id.clone(), run);
        self.transition(&id, tx, |_, _| effects);
        Ok(id)
    }

    /// A burst ended: announce it (triggers may listen), and if it was a step's, move its run.
    fn burst_ended(&mut self, burst: Burst, tx: &mut Tx) {
        let event = CloudEvent::new(
            format!("burst/{}/{}/{}", burst.id, burst.attempt, burst.state.name()),
            "volley/platform",
            &format!("volley.burst.{}", burst.state.name()),
            Some(burst.id.clone()),
            json!({"burst": burst.id, "function": burst.request.function, "state": burst.state, "error": burst.error,
                   "idempotency_key": burst.request.idempotency_key,
                   "results": burst.workers.iter().map(|w| w.result.clone()).collect::<Vec<_>>()}),
        );
        let namespace = burst.namespace.clone();
        if !self.ingest(&namespace, event, tx) {
            return;
        }
        let Some(key) = burst.request.idempotency_key.as_deref() else { return };
        let Some((run, step, attempt)) = parse_step_key(key) else { return };
        let ended = match burst.state {
            BurstState::Succeeded => Ended::Succeeded(Value::Array(
                burst.workers.iter().map(|w| w.result.clone().unwrap_or(Value::Null)).collect(),
            )),
            BurstState::Cancelled => Ended::Cancelled(burst.error.clone().unwrap_or_else(|| "cancelled".into())),
            _ => Ended::Failed(format!("burst {}: {}", burst.id, burst.error.clone().unwrap_or_default())),
        };
        let now = now_micros();
        self.transition(run, tx, |plan, r| {
            rules::burst_started(r, step, attempt, &burst.id);
            rules::burst_ended(plan, r, step, attempt, ended, now)
        });
    }

    fn index(&mut self, trigger: Trigger) {
        self.by_type.entry(trigger.matcher.kind.clone()).or_default().insert(trigger.id.clone());
        self.triggers.insert(trigger.id.clone(), trigger);
    }

    fn unindex(&mut self, id: &str) {
        if let Some(t) = self.triggers.remove(id)
            && let Some(ids) = self.by_type.get_mut(&t.matcher.kind)
        {
            ids.remove(id);
        }
    }
}

/// `run/RUN/STEP/ATTEMPT` → its parts.
fn parse_step_key(key: &str) -> Option<(&str, &str, u32)> {
    let rest = key.strip_prefix("run/")?;
    let mut parts = rest.split('/');
    let (run, step, attempt) = (parts.next()?, parts.next()?, parts.next()?.parse().ok()?);
    parts.next().is_none().then_some((run, step, attempt))
}
