//! Workflow runs: deploy a definition, start a run, move it on each of its
//! steps' events and bursts' ends, and carry out what the rules decide.

use volley_flow::dag::{self, Plan};
use volley_flow::run::{self as rules, Effect, Ended};
use volley_proto::api::Burst;
use volley_proto::flow::{CloudEvent, Run, RunRequest, Workflow, WorkflowDefinition, WorkflowKind};
use volley_proto::now_micros;

use super::super::outbox::{Entry, Pending};
use super::events::{ended, trigger_key};
use super::{State, Tx};
use crate::error::{Error, Result};
use crate::store::Docs;

pub(super) fn workflow_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl State {
    /// Changes run `id` by `change` (given its plan), saves it, and carries out the effects.
    pub(super) fn transition(&mut self, id: &str, tx: &mut Tx, change: impl FnOnce(&Plan, &mut Run) -> Vec<Effect>) {
        let Some(mut run) = self.runs.remove(id) else { return };
        let Some(plan) = self.plans.get(&workflow_key(&run.namespace, &run.workflow)) else {
            tracing::error!(run = id, "the run's workflow is gone; it cannot go on");
            self.runs.insert(id.into(), run);
            return;
        };
        let effects = change(plan, &mut run);
        let steps = plan.order.clone();
        let namespace = run.namespace.clone();
        for effect in effects {
            match effect {
                Effect::Start { step, attempt, request, key: _, after } => {
                    let not_before = now_micros() + after.as_micros() as u64;
                    self.owe(&namespace, Pending::StartStep { run: id.into(), step, attempt, request, not_before }, tx);
                }
                Effect::Cancel { bursts, reason } => self.owe(&namespace, Pending::Cancel { bursts, reason }, tx),
                Effect::Emit(event) => tx.queue.push_back((namespace.clone(), *event)),
                // The run's triggers go with it (one per step).
                Effect::Finished => {
                    for step in &steps {
                        let key = trigger_key(&namespace, &dag::trigger_id(id, step));
                        if self.triggers.contains_key(&key) {
                            self.unindex(&key);
                            tx.batch.delete(Docs::Triggers, key);
                        }
                    }
                }
            }
        }
        // Saved once at the end of the batch, however many events moved it.
        tx.dirty_runs.insert(id.into());
        // An ended run stays readable from the store; the engine forgets it.
        if run.state.is_final() {
            tx.ended.insert(id.into(), run);
        } else {
            self.runs.insert(id.into(), run);
        }
    }

    /// A trigger of a run fired: start the step.
    pub(super) fn advance(&mut self, run: &str, step: &str, tx: &mut Tx) {
        let now = now_micros();
        self.transition(run, tx, |plan, r| rules::advance(plan, r, step, now));
    }

    /// Commits `effect` to the outbox; it is performed once the batch is durable.
    pub(super) fn owe(&mut self, namespace: &str, effect: Pending, tx: &mut Tx) {
        self.next_entry += 1;
        let entry = Entry { id: format!("{:020}", self.next_entry), namespace: namespace.into(), effect };
        tx.batch.put(Docs::Outbox, entry.id.clone(), &entry);
        tx.perform.push(entry);
    }

    pub(super) fn deploy(
        &mut self,
        namespace: &str,
        name: &str,
        definition: WorkflowDefinition,
        tx: &mut Tx,
    ) -> Result<Workflow> {
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

    pub(super) fn undeploy(&mut self, namespace: &str, name: &str, tx: &mut Tx) -> Result<()> {
        let key = workflow_key(namespace, name);
        if !self.plans.contains_key(&key) {
            return Err(Error::NotFound(format!("no workflow {name:?}")));
        }
        if let Some(run) = self.runs.values().find(|r| r.namespace == namespace && r.workflow == name) {
            return Err(Error::Conflict(format!("run {} of {name} has not ended; cancel it first", run.id)));
        }
        self.plans.remove(&key);
        tx.batch.delete(Docs::Workflows, key);
        Ok(())
    }

    pub(super) fn start_run(&mut self, namespace: &str, request: RunRequest, tx: &mut Tx) -> Result<String> {
        let Some(plan) = self.plans.get(&workflow_key(namespace, &request.workflow)) else {
            return Err(Error::NotFound(format!(
                "no workflow {:?}; deploy it first (`volley flow deploy NAME FILE`)",
                request.workflow
            )));
        };
        let id = format!("r{:012x}{:06x}", now_micros() / 1000, rand::random::<u32>() & 0xff_ffff);
        let (run, effects) = rules::create(plan, &id, namespace, &request.workflow, request.input, now_micros());
        for trigger in plan.triggers(namespace, &id) {
            tx.batch.put(Docs::Triggers, trigger_key(namespace, &trigger.id), &trigger);
            self.index(namespace, trigger);
        }
        self.runs.insert(id.clone(), run);
        self.transition(&id, tx, |_, _| effects);
        Ok(id)
    }

    pub(super) fn cancel_run(&mut self, namespace: &str, id: &str, tx: &mut Tx) -> Result<String> {
        match self.runs.get(id) {
            Some(run) if run.namespace == namespace => {
                self.transition(id, tx, |_, run| rules::cancel(run, "cancelled by a user", now_micros()));
                Ok(id.into())
            }
            _ => Err(Error::Conflict(format!("run {id} is not running (it has ended, or does not exist)"))),
        }
    }

    /// A burst ended: announce it (triggers may listen), and if it was a step's, move its run.
    pub(super) fn burst_ended(&mut self, burst: Burst, tx: &mut Tx) {
        let event = CloudEvent::new(
            format!("burst/{}/{}/{}", burst.id, burst.attempt, burst.state.name()),
            "volley/platform",
            &format!("volley.burst.{}", burst.state.name()),
            Some(burst.id.clone()),
            serde_json::json!({"burst": burst.id, "function": burst.request.function, "state": burst.state,
                "error": burst.error, "idempotency_key": burst.request.idempotency_key,
                "results": burst.workers.iter().map(|w| w.result.clone()).collect::<Vec<_>>()}),
        );
        if !self.ingest(&burst.namespace, event, tx) {
            return;
        }
        let Some(key) = burst.request.idempotency_key.as_deref() else { return };
        let Some((run, step, attempt)) = parse_step_key(key) else { return };
        let how: Ended = ended(&burst);
        let now = now_micros();
        self.transition(run, tx, |plan, r| {
            rules::burst_started(r, step, attempt, &burst.id);
            rules::burst_ended(plan, r, step, attempt, how, now)
        });
    }

    /// A step's burst was started (`burst`), or refused (`error`).
    pub(super) fn step_performed(
        &mut self,
        run: &str,
        step: &str,
        attempt: u32,
        started: std::result::Result<String, String>,
        tx: &mut Tx,
    ) {
        let now = now_micros();
        self.transition(run, tx, |plan, r| match started {
            Ok(burst) => {
                rules::burst_started(r, step, attempt, &burst);
                Vec::new()
            }
            Err(error) => rules::burst_ended(plan, r, step, attempt, Ended::Failed(error), now),
        });
    }
}

/// `run/RUN/STEP/ATTEMPT` → its parts.
fn parse_step_key(key: &str) -> Option<(&str, &str, u32)> {
    let rest = key.strip_prefix("run/")?;
    let mut parts = rest.split('/');
    let (run, step, attempt) = (parts.next()?, parts.next()?, parts.next()?.parse().ok()?);
    parts.next().is_none().then_some((run, step, attempt))
}
