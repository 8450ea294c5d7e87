//! Workflow runs: deploy a definition, start a run, move it on each of its
//! steps' events and bursts' ends, and carry out what the rules decide.

use serde_json::Value;
use std::collections::HashMap;

use volley_flow::asl::model::Machine;
use volley_flow::dag::{self, Plan};
use volley_flow::run::{self as rules, Effect, Ended};
use volley_proto::api::Burst;
use volley_proto::flow::{CloudEvent, Edge, Run, RunRequest, Workflow, WorkflowDefinition, WorkflowKind};
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
    /// Changes DAG run `id` by `change` (given its plan), and carries out the effects.
    pub(super) fn transition(&mut self, id: &str, tx: &mut Tx, change: impl FnOnce(&Plan, &mut Run) -> Vec<Effect>) {
        let Some(mut run) = self.runs.remove(id) else { return };
        let Some(plan) = self.plans.get(&workflow_key(&run.namespace, &run.workflow)) else {
            return self.orphan(run, tx);
        };
        let effects = change(plan, &mut run);
        let steps = plan.order.clone();
        self.settle(run, effects, &steps, tx);
    }

    /// Changes state machine run `id` by `change`, and carries out the effects.
    pub(super) fn transition_machine(
        &mut self,
        id: &str,
        tx: &mut Tx,
        change: impl FnOnce(&Machine, &mut Run) -> Vec<Effect>,
    ) {
        self.transition_by(id, tx, |s| &s.machines, change)
    }

    /// Changes code workflow run `id` by `change`, and carries out the effects.
    pub(super) fn transition_code(
        &mut self,
        id: &str,
        tx: &mut Tx,
        change: impl FnOnce(&volley_flow::code::Definition, &mut Run) -> Vec<Effect>,
    ) {
        self.transition_by(id, tx, |s| &s.codes, change)
    }

    /// Changes run `id` by `change`, given its definition from `definitions`.
    fn transition_by<D>(
        &mut self,
        id: &str,
        tx: &mut Tx,
        definitions: impl Fn(&State) -> &HashMap<String, D>,
        change: impl FnOnce(&D, &mut Run) -> Vec<Effect>,
    ) {
        let Some(mut run) = self.runs.remove(id) else { return };
        let Some(definition) = definitions(self).get(&workflow_key(&run.namespace, &run.workflow)) else {
            return self.orphan(run, tx);
        };
        let effects = change(definition, &mut run);
        self.settle(run, effects, &[], tx);
    }

    /// A run whose workflow is gone (it cannot be: undeploy waits for runs to end).
    fn orphan(&mut self, run: Run, _tx: &mut Tx) {
        tracing::error!(run = %run.id, "the run's workflow is gone; it cannot go on");
        self.runs.insert(run.id.clone(), run);
    }

    /// Carries out a run's effects; `steps` name its triggers, dropped when it ends.
    fn settle(&mut self, run: Run, effects: Vec<Effect>, steps: &[String], tx: &mut Tx) {
        let (id, namespace) = (run.id.clone(), run.namespace.clone());
        for effect in effects {
            match effect {
                Effect::Start { step, attempt, request, key: _, after, objects } => {
                    let not_before = now_micros() + after.as_micros() as u64;
                    let start = Pending::StartStep { run: id.clone(), step, attempt, request, not_before, objects };
                    self.owe(&namespace, start, tx);
                }
                Effect::Cancel { bursts, reason } => self.owe(&namespace, Pending::Cancel { bursts, reason }, tx),
                Effect::Emit(event) => tx.queue.push_back((namespace.clone(), *event)),
                Effect::Timer { token, after } => {
                    let not_before = now_micros() + after.as_micros() as u64;
                    self.owe(&namespace, Pending::Timer { run: id.clone(), token, not_before }, tx);
                }
                Effect::Listen { seq, kind, subject } => {
                    let trigger = volley_proto::flow::Trigger {
                        id: format!("run/{id}/code-{seq}"),
                        namespace: namespace.clone(),
                        run: Some(id.clone()),
                        matcher: volley_proto::flow::Match { kind, source: None, subject },
                        condition: volley_proto::flow::Condition::Always,
                        actions: vec![volley_proto::flow::Action::Advance {
                            run: id.clone(),
                            step: format!("code:{seq}"),
                        }],
                        context: serde_json::Value::Null,
                        once: true,
                        fired: 0,
                        error: None,
                    };
                    tx.batch.put(Docs::Triggers, trigger_key(&namespace, &trigger.id), &trigger);
                    self.index(&namespace, trigger);
                }
                // Written by the next batch: this one starts the steps after it first.
                Effect::SaveOutput { step } => tx.saves.push((id.clone(), step)),
                // The run's triggers go with it (one per step of a DAG; a code run's waits).
                Effect::Finished => {
                    let mut keys: Vec<String> =
                        steps.iter().map(|step| trigger_key(&namespace, &dag::trigger_id(&id, step))).collect();
                    let waits = trigger_key(&namespace, &format!("run/{id}/code-"));
                    keys.extend(self.triggers.keys().filter(|k| k.starts_with(&waits)).cloned());
                    for key in keys {
                        if self.triggers.contains_key(&key) {
                            self.unindex(&key);
                            tx.batch.delete(Docs::Triggers, key);
                        }
                    }
                }
            }
        }
        // Saved once at the end of the batch, however many events moved it.
        tx.dirty_runs.insert(id.clone());
        // An ended run stays readable from the store; the engine forgets it.
        if run.state.is_final() {
            tx.ended.insert(id, run);
        } else {
            self.runs.insert(id, run);
        }
    }

    fn is_code(&self, run: &str) -> bool {
        self.runs.get(run).is_some_and(|r| self.codes.contains_key(&workflow_key(&r.namespace, &r.workflow)))
    }

    fn is_machine(&self, run: &str) -> bool {
        self.runs.get(run).is_some_and(|r| self.machines.contains_key(&workflow_key(&r.namespace, &r.workflow)))
    }

    /// A trigger of a run fired: start the step (a DAG), or deliver the event a
    /// code run waits for (`code:SEQ`).
    pub(super) fn advance(&mut self, run: &str, step: &str, event: &CloudEvent, tx: &mut Tx) {
        let now = now_micros();
        if let Some(seq) = step.strip_prefix("code:").and_then(|s| s.parse::<u32>().ok()) {
            let event = serde_json::to_value(event).unwrap_or_default();
            return self.transition_code(run, tx, |d, r| volley_flow::code::finished(d, r, seq, Ok(event), now));
        }
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
        let unusable = |e: volley_flow::Error| Error::Unprocessable(e.to_string());
        let key = workflow_key(namespace, name);
        // A run follows the definition it started with: none may be going when it changes.
        if let Some(run) = self.runs.values().find(|r| r.namespace == namespace && r.workflow == name) {
            return Err(Error::Conflict(format!(
                "run {} of {name} has not ended; wait for it (or cancel it) before replacing the workflow",
                run.id
            )));
        }
        let (description, steps, edges) = match definition.kind {
            WorkflowKind::Dag => {
                let plan = dag::parse(&definition.source).map_err(unusable)?;
                let edges = plan
                    .dag
                    .steps
                    .iter()
                    .flat_map(|(step, s)| s.needs.iter().map(|need| Edge { from: need.clone(), to: step.clone() }))
                    .collect();
                let found = (plan.dag.description.clone(), plan.order.clone(), edges);
                self.machines.remove(&key);
                self.codes.remove(&key);
                self.plans.insert(key.clone(), plan);
                found
            }
            WorkflowKind::StateMachine => {
                let machine = volley_flow::asl::parse(&definition.source).map_err(unusable)?;
                let edges = machine
                    .states
                    .iter()
                    .flat_map(|(name, state)| {
                        state.successors().into_iter().map(|to| Edge { from: name.clone(), to: to.to_string() })
                    })
                    .collect();
                let found =
                    (machine.comment.clone().unwrap_or_default(), machine.states.keys().cloned().collect(), edges);
                self.plans.remove(&key);
                self.codes.remove(&key);
                self.machines.insert(key.clone(), machine);
                found
            }
            WorkflowKind::Code => {
                let def = volley_flow::code::parse(&definition.source).map_err(unusable)?;
                if self.plane.functions.get(namespace, &def.function).is_none() {
                    return Err(Error::Unprocessable(format!(
                        "no function {:?} to orchestrate; deploy it first (`volley deploy NAME BINARY`)",
                        def.function
                    )));
                }
                let found = (def.description.clone(), vec![def.function.clone()], Vec::new());
                self.plans.remove(&key);
                self.machines.remove(&key);
                self.codes.insert(key.clone(), def);
                found
            }
        };
        let workflow = Workflow {
            name: name.into(),
            namespace: namespace.into(),
            kind: definition.kind,
            source: definition.source,
            description: if definition.description.is_empty() { description } else { definition.description },
            steps,
            edges,
            deployed_at: now_micros(),
        };
        tx.batch.put(Docs::Workflows, key, &workflow);
        Ok(workflow)
    }

    pub(super) fn undeploy(&mut self, namespace: &str, name: &str, tx: &mut Tx) -> Result<()> {
        let key = workflow_key(namespace, name);
        if !self.plans.contains_key(&key) && !self.machines.contains_key(&key) && !self.codes.contains_key(&key) {
            return Err(Error::NotFound(format!("no workflow {name:?}")));
        }
        if let Some(run) = self.runs.values().find(|r| r.namespace == namespace && r.workflow == name) {
            return Err(Error::Conflict(format!("run {} of {name} has not ended; cancel it first", run.id)));
        }
        self.plans.remove(&key);
        self.machines.remove(&key);
        self.codes.remove(&key);
        tx.batch.delete(Docs::Workflows, key);
        Ok(())
    }

    pub(super) fn start_run(&mut self, namespace: &str, request: RunRequest, tx: &mut Tx) -> Result<String> {
        let id = format!("r{:012x}{:06x}", now_micros() / 1000, rand::random::<u32>() & 0xff_ffff);
        let key = workflow_key(namespace, &request.workflow);
        if let Some(def) = self.codes.get(&key) {
            let (run, effects) =
                volley_flow::code::create(def, &id, namespace, &request.workflow, request.input, now_micros());
            self.runs.insert(id.clone(), run);
            self.transition_code(&id, tx, |_, _| effects);
            return Ok(id);
        }
        if let Some(machine) = self.machines.get(&key) {
            let (run, effects) =
                volley_flow::asl::run::create(machine, &id, namespace, &request.workflow, request.input, now_micros());
            self.runs.insert(id.clone(), run);
            self.transition_machine(&id, tx, |_, _| effects);
            return Ok(id);
        }
        let Some(plan) = self.plans.get(&key) else {
            return Err(Error::NotFound(format!(
                "no workflow {:?}; deploy it first (`volley flow deploy NAME FILE`)",
                request.workflow
            )));
        };
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
                let now = now_micros();
                if self.is_code(id) {
                    self.transition_code(id, tx, |_, run| volley_flow::code::cancel(run, "cancelled by a user", now));
                } else if self.is_machine(id) {
                    self.transition_machine(id, tx, |_, run| {
                        volley_flow::asl::run::cancel(run, "cancelled by a user", now)
                    });
                } else {
                    self.transition(id, tx, |_, run| rules::cancel(run, "cancelled by a user", now));
                }
                Ok(id.into())
            }
            _ => Err(Error::Conflict(format!("run {id} is not running (it has ended, or does not exist)"))),
        }
    }

    /// A burst was queued or started running: announce it
    /// (`volley.burst.queued|running`) to the triggers that listen for it.
    /// Unlike an end, which moves runs and is always logged, a progress event
    /// nobody listens to is not logged: each one would cost a commit on the
    /// path of the next step.
    pub(super) fn burst_progressed(&mut self, burst: &Burst, tx: &mut Tx) {
        let kind = format!("volley.burst.{}", burst.state.name());
        let announced =
            matches!(burst.state, volley_proto::api::BurstState::Queued | volley_proto::api::BurstState::Running);
        if !announced || self.by_type.get(&kind).is_none_or(|t| t.is_empty()) {
            return;
        }
        let event = burst_event(burst, serde_json::json!({"attempt": burst.attempt}));
        self.ingest(&burst.namespace, event, tx);
    }

    /// A burst ended: announce it (triggers may listen), and if it was a step's, move its run.
    pub(super) fn burst_ended(&mut self, burst: Burst, tx: &mut Tx) {
        let results: Vec<_> = burst.workers.iter().map(|w| w.result.clone()).collect();
        let event = burst_event(&burst, serde_json::json!({"error": burst.error, "results": results}));
        if !self.ingest(&burst.namespace, event, tx) {
            return;
        }
        let Some(key) = burst.request.idempotency_key.as_deref() else { return };
        let how: Ended = ended(&burst);
        let now = now_micros();
        if let Some(code_key) = volley_flow::code::parse_key(key) {
            use volley_flow::code::{self, Key};
            return match code_key {
                Key::Replay(run, n) => self.transition_code(run, tx, |d, r| {
                    code::replay_started(r, n, &burst.id);
                    code::replay_ended(d, r, n, how, now)
                }),
                Key::Command(run, seq) => self.transition_code(run, tx, |d, r| {
                    code::command_started(r, seq, &burst.id);
                    let result = match how {
                        Ended::Succeeded(results) => Ok(results),
                        Ended::Failed(e) | Ended::Cancelled(e) => Err(e),
                    };
                    code::finished(d, r, seq, result, now)
                }),
            };
        }
        if let Some((run, token)) = volley_flow::asl::run::parse_key(key) {
            return self.transition_machine(run, tx, |machine, r| {
                volley_flow::asl::run::task_started(r, token, &burst.id);
                volley_flow::asl::run::task_ended(machine, r, token, how, now)
            });
        }
        let Some((run, step, attempt)) = parse_step_key(key) else { return };
        self.transition(run, tx, |plan, r| {
            rules::burst_started(r, step, attempt, &burst.id);
            rules::burst_ended(plan, r, step, attempt, how, now)
        });
    }

    /// A state machine's timer fired, or a code run's sleep ended.
    pub(super) fn timer_fired(&mut self, run: &str, token: u64, tx: &mut Tx) {
        let now = now_micros();
        if self.is_code(run) {
            let seq = token as u32;
            return self.transition_code(run, tx, |d, r| volley_flow::code::finished(d, r, seq, Ok(Value::Null), now));
        }
        self.transition_machine(run, tx, |machine, r| volley_flow::asl::run::timer_fired(machine, r, token, now));
    }

    /// A step's burst was started (`burst`), or refused (`error`).
    pub(super) fn step_performed(
        &mut self,
        run: &str,
        step: &str,
        attempt: u32,
        key: &str,
        started: std::result::Result<String, String>,
        tx: &mut Tx,
    ) {
        let now = now_micros();
        if let Some(code_key) = volley_flow::code::parse_key(key) {
            use volley_flow::code::{self, Key};
            return match code_key {
                Key::Replay(_, n) => self.transition_code(run, tx, |d, r| match started {
                    Ok(burst) => {
                        code::replay_started(r, n, &burst);
                        Vec::new()
                    }
                    Err(error) => code::replay_ended(d, r, n, Ended::Failed(error), now),
                }),
                Key::Command(_, seq) => self.transition_code(run, tx, |d, r| match started {
                    Ok(burst) => {
                        code::command_started(r, seq, &burst);
                        Vec::new()
                    }
                    Err(error) => code::finished(d, r, seq, Err(error), now),
                }),
            };
        }
        if let Some((_, token)) = volley_flow::asl::run::parse_key(key) {
            use volley_flow::asl::run as machine_run;
            return self.transition_machine(run, tx, |machine, r| match started {
                Ok(burst) => {
                    machine_run::task_started(r, token, &burst);
                    Vec::new()
                }
                Err(error) => machine_run::task_ended(machine, r, token, Ended::Failed(error), now),
            });
        }
        self.transition(run, tx, |plan, r| match started {
            Ok(burst) => {
                rules::burst_started(r, step, attempt, &burst);
                Vec::new()
            }
            Err(error) => rules::burst_ended(plan, r, step, attempt, Ended::Failed(error), now),
        });
    }
}

/// The platform's event of `burst` in its current state (`volley.burst.STATE`,
/// the same id however often it is made), its data the burst's identity and `more`.
fn burst_event(burst: &Burst, more: Value) -> CloudEvent {
    let mut data = serde_json::json!({"burst": burst.id, "function": burst.request.function, "state": burst.state,
        "idempotency_key": burst.request.idempotency_key});
    if let (Some(data), Value::Object(more)) = (data.as_object_mut(), more) {
        data.extend(more);
    }
    CloudEvent::new(
        format!("burst/{}/{}/{}", burst.id, burst.attempt, burst.state.name()),
        "volley/platform",
        &format!("volley.burst.{}", burst.state.name()),
        Some(burst.id.clone()),
        data,
    )
}

/// `run/RUN/STEP/ATTEMPT` → its parts.
fn parse_step_key(key: &str) -> Option<(&str, &str, u32)> {
    let rest = key.strip_prefix("run/")?;
    let mut parts = rest.split('/');
    let (run, step, attempt) = (parts.next()?, parts.next()?, parts.next()?.parse().ok()?);
    parts.next().is_none().then_some((run, step, attempt))
}
