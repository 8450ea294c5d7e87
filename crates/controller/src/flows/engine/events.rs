//! Events meet triggers: each event is logged once (by namespace, source and
//! id) and applied to the triggers of its namespace and type that match it;
//! a trigger that fires takes its actions. Triggers are kept by
//! `namespace/id`, the key they are stored under.

use serde_json::{Value, json};
use volley_flow::run::Ended;
use volley_flow::{condition, matching, template};
use volley_proto::api::BurstRequest;
use volley_proto::flow::{Action, CloudEvent, LoggedEvent, Timer, TimerRequest, Trigger, TriggerRequest};
use volley_proto::now_micros;

use super::super::outbox::Pending;
use super::{State, Tx};
use crate::error::{Error, Result};
use crate::store::Docs;

/// The key a trigger is kept and stored under.
pub(super) fn trigger_key(namespace: &str, id: &str) -> String {
    format!("{namespace}/{id}")
}

impl State {
    /// Logs `event` and applies it to the triggers it matches; false if it
    /// was logged before (it is then not applied again).
    pub(super) fn ingest(&mut self, namespace: &str, mut event: CloudEvent, tx: &mut Tx) -> bool {
        let seen = format!("{namespace}/{}/{}", event.source, event.id);
        if !self.seen.insert(seen.clone()) {
            return false;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        event.time.get_or_insert_with(|| volley_flow::rfc3339(now_micros()));
        tx.batch.put(Docs::EventIds, seen, &seq);
        let keys: Vec<String> = self.by_type.get(&event.kind).map(|s| s.iter().cloned().collect()).unwrap_or_default();
        for key in keys {
            let Some(trigger) = self.triggers.get_mut(&key) else { continue };
            if trigger.namespace != namespace || !matching::matches(&trigger.matcher, &event) {
                continue;
            }
            let fired = match condition::apply(trigger, &event) {
                Ok(fired) => fired,
                Err(e) => {
                    // Kept where the user reads it (`volley triggers list`); the event goes on.
                    tracing::warn!(trigger = %key, "{e}");
                    trigger.error = Some(e.to_string());
                    false
                }
            };
            tx.dirty.insert(key.clone());
            if !fired {
                continue;
            }
            let (actions, context, id) = (trigger.actions.clone(), trigger.context.clone(), trigger.id.clone());
            if trigger.once {
                self.unindex(&key);
                tx.batch.delete(Docs::Triggers, key.clone());
            }
            self.act(namespace, &id, &context, actions, &event, tx);
        }
        tx.batch.events.push(LoggedEvent { seq, namespace: namespace.into(), received_at: now_micros(), event });
        true
    }

    fn act(
        &mut self,
        namespace: &str,
        trigger: &str,
        context: &Value,
        actions: Vec<Action>,
        event: &CloudEvent,
        tx: &mut Tx,
    ) {
        let scope = json!({"event": event, "context": context});
        for action in actions {
            match action {
                Action::Advance { run, step } => self.advance(&run, &step, event, tx),
                Action::StartBurst { request, idempotency_key } => {
                    let filled = fill::<BurstRequest>(&request, &scope);
                    let key = match idempotency_key {
                        Some(k) => fill::<String>(&k, &scope),
                        None => Ok(format!("trigger/{trigger}/{}/{}", event.source, event.id)),
                    };
                    match filled.and_then(|r| Ok((r, key?))) {
                        Ok((mut request, key)) => {
                            request.idempotency_key = Some(key);
                            self.owe(namespace, Pending::StartBurst { request: Box::new(request) }, tx);
                        }
                        Err(e) => self.refuse(
                            namespace,
                            trigger,
                            format!("its burst cannot be made from event {}: {e}", event.id),
                            tx,
                        ),
                    }
                }
                Action::Emit { event: template_event } => match fill::<CloudEvent>(&template_event, &scope) {
                    Ok(e) => tx.queue.push_back((namespace.into(), e)),
                    Err(e) => self.refuse(
                        namespace,
                        trigger,
                        format!("its event cannot be made from event {}: {e}", event.id),
                        tx,
                    ),
                },
                Action::Webhook { url } => {
                    self.owe(namespace, Pending::Webhook { url, event: Box::new(event.clone()) }, tx)
                }
                Action::StartRun { workflow, input } => {
                    let started = fill::<Value>(&input, &scope).map_err(|e| e.to_string()).and_then(|input| {
                        let request = volley_proto::flow::RunRequest { workflow: workflow.clone(), input };
                        self.start_run(namespace, request, tx).map_err(|e| e.to_string())
                    });
                    if let Err(e) = started {
                        let message = format!("its run of {workflow} cannot start on event {}: {e}", event.id);
                        self.refuse(namespace, trigger, message, tx);
                    }
                }
            }
        }
    }

    /// An action that could not be taken: said in the trigger (if it still listens) and in the log.
    fn refuse(&mut self, namespace: &str, trigger: &str, message: String, tx: &mut Tx) {
        tracing::warn!(namespace, trigger, "{message}");
        let key = trigger_key(namespace, trigger);
        if let Some(t) = self.triggers.get_mut(&key) {
            t.error = Some(message);
            tx.dirty.insert(key);
        }
    }

    /// A user's trigger: checked, then listening from the next event on.
    pub(super) fn create_trigger(&mut self, namespace: &str, request: TriggerRequest, tx: &mut Tx) -> Result<Trigger> {
        let trigger =
            volley_flow::trigger::make(namespace, request).map_err(|e| Error::Unprocessable(e.to_string()))?;
        for action in &trigger.actions {
            if let volley_proto::flow::Action::StartBurst { request, .. } = action {
                self.plane.check_request(request).map_err(|e| Error::Unprocessable(format!("start_burst: {e}")))?;
            }
        }
        let key = trigger_key(namespace, &trigger.id);
        if self.triggers.contains_key(&key) {
            return Err(Error::Conflict(format!(
                "trigger {} exists; delete it first (`volley triggers delete {}`)",
                trigger.id, trigger.id
            )));
        }
        tx.batch.put(Docs::Triggers, key, &trigger);
        self.index(namespace, trigger.clone());
        Ok(trigger)
    }

    pub(super) fn delete_trigger(&mut self, namespace: &str, id: &str, tx: &mut Tx) -> Result<()> {
        let key = trigger_key(namespace, id);
        match self.triggers.get(&key) {
            Some(t) if t.run.is_none() => {
                self.unindex(&key);
                tx.batch.delete(Docs::Triggers, key);
                Ok(())
            }
            Some(t) => Err(Error::Conflict(format!(
                "trigger {id} belongs to run {}; it goes when the run ends (`volley flow cancel`)",
                t.run.as_deref().unwrap_or_default()
            ))),
            None => Err(Error::NotFound(format!("no trigger {id}; `volley triggers list` shows yours"))),
        }
    }

    /// A timer: checked, stored, and its first slot owed.
    pub(super) fn create_timer(&mut self, namespace: &str, request: TimerRequest, tx: &mut Tx) -> Result<Timer> {
        let timer = volley_flow::timer::make(namespace, request, now_micros())
            .map_err(|e| Error::Unprocessable(e.to_string()))?;
        let key = trigger_key(namespace, &timer.id);
        let mine = self.timers.values().filter(|t| t.namespace == namespace).count();
        if mine >= volley_flow::timer::MAX_PER_NAMESPACE {
            return Err(Error::QueueFull(format!(
                "namespace {namespace} has {mine} timers, its limit; delete some (`volley timers delete ID`)"
            )));
        }
        if self.timers.contains_key(&key) {
            return Err(Error::Conflict(format!(
                "timer {} exists; delete it first (`volley timers delete {}`)",
                timer.id, timer.id
            )));
        }
        if let Some(slot) = timer.next_at {
            self.owe(namespace, Pending::Tick { timer: key.clone(), slot }, tx);
        }
        tx.batch.put(Docs::Timers, key.clone(), &timer);
        self.timers.insert(key, timer.clone());
        Ok(timer)
    }

    pub(super) fn delete_timer(&mut self, namespace: &str, id: &str, tx: &mut Tx) -> Result<()> {
        let key = trigger_key(namespace, id);
        // Its owed tick finds it gone and does nothing.
        match self.timers.remove(&key) {
            Some(_) => {
                tx.batch.delete(Docs::Timers, key);
                Ok(())
            }
            None => Err(Error::NotFound(format!("no timer {id}; `volley timers list` shows yours"))),
        }
    }

    /// A timer's slot came: its event, and its next slot owed.
    pub(super) fn tick(&mut self, key: &str, slot: u64, tx: &mut Tx) {
        let Some(timer) = self.timers.get_mut(key) else { return };
        if timer.next_at != Some(slot) {
            return;
        }
        let event = volley_flow::timer::fire(timer, slot, now_micros());
        let (namespace, next, snapshot) = (timer.namespace.clone(), timer.next_at, timer.clone());
        tx.batch.put(Docs::Timers, key.to_string(), &snapshot);
        if let Some(next) = next {
            self.owe(&namespace, Pending::Tick { timer: key.into(), slot: next }, tx);
        }
        tx.queue.push_back((namespace, event));
    }

    /// Saves the triggers and runs that changed in this batch (once each,
    /// however many events touched them).
    pub(super) fn save_dirty(&mut self, tx: &mut Tx) {
        for key in std::mem::take(&mut tx.dirty) {
            if let Some(t) = self.triggers.get(&key) {
                tx.batch.put(Docs::Triggers, key, t);
            }
        }
        for id in std::mem::take(&mut tx.dirty_runs) {
            if let Some(run) = self.runs.get(&id).or_else(|| tx.ended.get(&id)) {
                tx.batch.put(Docs::Runs, format!("{}/{id}", run.namespace), run);
            }
        }
    }

    pub(super) fn index(&mut self, namespace: &str, trigger: Trigger) {
        let key = trigger_key(namespace, &trigger.id);
        self.by_type.entry(trigger.matcher.kind.clone()).or_default().insert(key.clone());
        self.triggers.insert(key, trigger);
    }

    pub(super) fn unindex(&mut self, key: &str) {
        if let Some(t) = self.triggers.remove(key)
            && let Some(keys) = self.by_type.get_mut(&t.matcher.kind)
        {
            keys.remove(key);
        }
    }
}

/// `template` (any value with `${...}` in its strings) filled from `scope`, as a `T`.
fn fill<T: serde::Serialize + serde::de::DeserializeOwned>(template: &T, scope: &Value) -> volley_flow::Result<T> {
    let value = serde_json::to_value(template).map_err(|e| volley_flow::Error::Reference(e.to_string()))?;
    let filled = template::fill(&value, scope)?;
    serde_json::from_value(filled).map_err(|e| volley_flow::Error::Reference(e.to_string()))
}

/// How a step's burst ended, as the run's rules take it.
pub(super) fn ended(burst: &volley_proto::api::Burst) -> Ended {
    use volley_proto::api::BurstState;
    match burst.state {
        BurstState::Succeeded => Ended::Succeeded(Value::Array(
            burst.workers.iter().map(|w| w.result.clone().unwrap_or(Value::Null)).collect(),
        )),
        BurstState::Cancelled => Ended::Cancelled(burst.error.clone().unwrap_or_else(|| "cancelled".into())),
        _ => Ended::Failed(format!("burst {}: {}", burst.id, burst.error.clone().unwrap_or_default())),
    }
}
