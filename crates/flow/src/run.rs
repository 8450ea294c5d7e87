//! The rules a DAG run follows, as transitions of its record that return the
//! effects the controller must perform (start a burst, cancel bursts, emit an
//! event, drop the run's triggers). Pure: the same record and the same input
//! give the same effects, which is what makes recovery a replay.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use volley_proto::api::BurstRequest;
use volley_proto::flow::{CloudEvent, Run, RunState, StepRecord};

use crate::dag::{Checkpoint, Plan, STEP_SUCCEEDED, run_started, run_subject, step_subject};

/// What the controller must do after a transition.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Start attempt `attempt` of `step` (after `after`, a retry's backoff);
    /// with `objects`, one worker per object under that prefix, listed then.
    Start {
        step: String,
        attempt: u32,
        request: Box<BurstRequest>,
        key: String,
        after: Duration,
        objects: Option<String>,
    },
    /// Cancel these bursts (the run is ending).
    Cancel { bursts: Vec<String>, reason: String },
    /// Log and apply this event.
    Emit(Box<CloudEvent>),
    /// Call back with this token after `after` (a state machine's Wait or retry).
    Timer { token: u64, after: Duration },
    /// Tell the run `seq` when an event of type `kind` (and `subject`) comes.
    Listen { seq: u32, kind: String, subject: Option<String> },
    /// Save `step`'s output (held in memory) in a later transaction: an
    /// asynchronous checkpoint.
    SaveOutput { step: String },
    /// The run has ended: its triggers go.
    Finished,
}

/// A run that starts now, with no steps yet (each front-end adds its own).
pub fn new_run(id: &str, namespace: &str, workflow: &str, input: Value, now: u64) -> Run {
    Run {
        id: id.into(),
        namespace: namespace.into(),
        workflow: workflow.into(),
        input,
        state: RunState::Running,
        steps: BTreeMap::new(),
        created_at: now,
        finished_at: None,
        error: None,
        output: None,
        execution: None,
    }
}

/// A new run of `plan`: every step waiting; the effects announce its start.
pub fn create(plan: &Plan, id: &str, namespace: &str, workflow: &str, input: Value, now: u64) -> (Run, Vec<Effect>) {
    let steps: BTreeMap<String, StepRecord> = plan.order.iter().map(|s| (s.clone(), StepRecord::waiting())).collect();
    let run = Run { steps, ..new_run(id, namespace, workflow, input, now) };
    let started = run_started(&run);
    (run, vec![Effect::Emit(Box::new(started))])
}

/// Every step `step` needs has succeeded: start its first attempt.
pub fn advance(plan: &Plan, run: &mut Run, step: &str, now: u64) -> Vec<Effect> {
    match run.steps.get(step) {
        Some(rec) if rec.state == RunState::Waiting && !run.state.is_final() => {
            start(plan, run, step, 1, Duration::ZERO, now)
        }
        _ => Vec::new(),
    }
}

/// Starts `attempt` of `step`, unless an output it reads was lost with a
/// restart: then those steps are computed again first, and it waits for them.
fn start(plan: &Plan, run: &mut Run, step: &str, attempt: u32, after: Duration, now: u64) -> Vec<Effect> {
    let reads = plan.reads(step);
    let missing: Vec<&String> = reads.iter().filter(|r| !output_ready(run, r)).collect();
    if !missing.is_empty() {
        if let Some(rec) = run.steps.get_mut(step) {
            rec.state = RunState::Waiting;
            rec.next_attempt = Some(attempt);
        }
        return missing.into_iter().flat_map(|m| recompute(plan, run, m, now)).collect();
    }
    // A nondeterministic output is saved when a step first reads it (in the
    // transaction that starts that step): what was read is never computed again.
    for read in &reads {
        if plan.dag.steps.get(read).is_some_and(|s| s.nondeterministic) {
            save_output(run, read);
        }
    }
    match plan.request(run, step, attempt).and_then(|(request, key)| Ok((request, key, plan.objects(run, step)?))) {
        Ok((request, key, objects)) => {
            if let Some(rec) = run.steps.get_mut(step) {
                rec.state = RunState::Running;
                rec.attempts = attempt;
                rec.next_attempt = None;
                rec.started_at.get_or_insert(now);
            }
            vec![Effect::Start { step: step.into(), attempt, request: Box::new(request), key, after, objects }]
        }
        // A reference that names nothing at run time (an output without that
        // field, say) fails the step, and so the run, with the place named.
        Err(e) => fail(run, step, format!("step {step} cannot start: {e}"), now),
    }
}

/// Whether `step` has succeeded and its output is at hand (saved, or held).
fn output_ready(run: &Run, step: &str) -> bool {
    run.steps.get(step).is_some_and(|r| r.state == RunState::Succeeded && (!r.output_unsaved || r.held.is_some()))
}

/// Computes `step` again: its output, unsaved, was lost with a restart and a
/// step needs it. Nothing if it is being computed already.
fn recompute(plan: &Plan, run: &mut Run, step: &str, now: u64) -> Vec<Effect> {
    let Some(rec) = run.steps.get_mut(step).filter(|r| r.state == RunState::Succeeded) else { return Vec::new() };
    let attempt = rec.attempts + 1;
    rec.recomputed_at.push(attempt);
    start(plan, run, step, attempt, Duration::ZERO, now)
}

/// Saves `step`'s output, held in memory until now, in the run's record.
pub fn save_output(run: &mut Run, step: &str) {
    if let Some(rec) = run.steps.get_mut(step)
        && let Some(output) = rec.held.take()
    {
        rec.output = output;
        rec.output_unsaved = false;
    }
}

/// The burst of `attempt` of `step` started as `burst`.
pub fn burst_started(run: &mut Run, step: &str, attempt: u32, burst: &str) {
    if let Some(rec) = run.steps.get_mut(step)
        && rec.attempts == attempt
        && !rec.bursts.iter().any(|b| b == burst)
    {
        rec.bursts.push(burst.into());
    }
}

/// How a step's burst ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// Every worker's result, in rank order.
    Succeeded(Value),
    Failed(String),
    Cancelled(String),
}

/// The burst of `attempt` of `step` ended. An end of an earlier attempt, or
/// of a step that is not running, changes nothing (it was already decided).
pub fn burst_ended(plan: &Plan, run: &mut Run, step: &str, attempt: u32, ended: Ended, now: u64) -> Vec<Effect> {
    let current = run.steps.get(step).is_some_and(|r| r.state == RunState::Running && r.attempts == attempt);
    if !current || run.state.is_final() {
        return Vec::new();
    }
    match ended {
        Ended::Succeeded(output) => {
            let checkpoint = plan.dag.steps.get(step).map(|s| s.checkpoint).unwrap_or_default();
            let rec = run.steps.get_mut(step).expect("checked above");
            let again = rec.recomputed_at.last().is_some_and(|a| *a <= attempt);
            rec.state = RunState::Succeeded;
            rec.finished_at = Some(now);
            let mut effects = Vec::new();
            // Only a synchronous checkpoint puts the output in the log's event too.
            let announced = match checkpoint {
                Checkpoint::Sync => {
                    rec.output = output.clone();
                    output
                }
                Checkpoint::Async | Checkpoint::Off => {
                    rec.held = Some(output);
                    rec.output_unsaved = true;
                    if checkpoint == Checkpoint::Async {
                        effects.push(Effect::SaveOutput { step: step.into() });
                    }
                    Value::Null
                }
            };
            // Computed again, it was announced already: its dependents' triggers have fired.
            if !again {
                effects.push(Effect::Emit(Box::new(CloudEvent::new(
                    format!("{}/succeeded", step_subject(&run.id, step)),
                    "volley/flow",
                    STEP_SUCCEEDED,
                    Some(step_subject(&run.id, step)),
                    json!({"run": run.id, "step": step, "attempts": attempt, "output": announced}),
                ))));
            }
            let waiting: Vec<(String, u32)> = run
                .steps
                .iter()
                .filter(|(_, r)| r.state == RunState::Waiting)
                .filter_map(|(name, r)| r.next_attempt.map(|a| (name.clone(), a)))
                .collect();
            for (name, attempt) in waiting {
                effects.extend(start(plan, run, &name, attempt, Duration::ZERO, now));
            }
            if run.steps.values().all(|r| r.state == RunState::Succeeded) {
                run.state = RunState::Succeeded;
                run.finished_at = Some(now);
                effects.push(Effect::Emit(Box::new(run_ended(run))));
                effects.push(Effect::Finished);
            }
            effects
        }
        Ended::Failed(reason) | Ended::Cancelled(reason) => {
            let rec = run.steps.get_mut(step).expect("checked above");
            rec.errors.push(format!("attempt {attempt}: {reason}"));
            let retries = plan.dag.steps.get(step).map(|s| (s.retries, s.backoff_secs)).unwrap_or((0, 0.0));
            // A computation again has the step's retries afresh.
            let again = rec.recomputed_at.last().copied();
            let tries = attempt + 1 - again.unwrap_or(1);
            if tries <= retries.0 {
                // Backoff doubles: b, 2b, 4b, ...
                let backoff = Duration::from_secs_f64(retries.1 * 2f64.powi(tries as i32 - 1));
                return start(plan, run, step, attempt + 1, backoff, now);
            }
            let tries = if tries > 1 { format!(" after {tries} attempts") } else { String::new() };
            let why = if again.is_some() { " computing again its output, lost with a restart," } else { "" };
            fail(run, step, format!("step {step} failed{why}{tries}: {reason}"), now)
        }
    }
}

/// Ends the run failed because of `step`: running steps are cancelled.
fn fail(run: &mut Run, step: &str, reason: String, now: u64) -> Vec<Effect> {
    if let Some(rec) = run.steps.get_mut(step) {
        rec.state = RunState::Failed;
        rec.finished_at = Some(now);
    }
    end(run, RunState::Failed, reason, now)
}

/// Cancels the run (a user asked): its running bursts are cancelled.
pub fn cancel(run: &mut Run, reason: &str, now: u64) -> Vec<Effect> {
    if run.state.is_final() {
        return Vec::new();
    }
    end(run, RunState::Cancelled, reason.into(), now)
}

fn end(run: &mut Run, state: RunState, reason: String, now: u64) -> Vec<Effect> {
    let mut bursts = Vec::new();
    for rec in run.steps.values_mut() {
        match rec.state {
            RunState::Running => {
                bursts.extend(rec.bursts.last().cloned());
                rec.state = RunState::Cancelled;
                rec.finished_at = Some(now);
            }
            RunState::Waiting => rec.state = RunState::Cancelled,
            _ => {}
        }
    }
    run.state = state;
    run.error = Some(reason.clone());
    run.finished_at = Some(now);
    let mut effects = Vec::new();
    if !bursts.is_empty() {
        effects.push(Effect::Cancel { bursts, reason: format!("the workflow run {} ended: {reason}", run.id) });
    }
    effects.push(Effect::Emit(Box::new(run_ended(run))));
    effects.push(Effect::Finished);
    effects
}

/// The run's end, as an event.
pub(crate) fn run_ended(run: &Run) -> CloudEvent {
    CloudEvent::new(
        format!("{}/{}", run_subject(&run.id), run.state.name()),
        "volley/flow",
        &format!("volley.run.{}", run.state.name()),
        Some(run_subject(&run.id)),
        json!({"run": run.id, "workflow": run.workflow, "error": run.error}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::parse;

    fn plan() -> Plan {
        parse("steps: {a: {function: f, workers: 1, retries: 1, backoff_secs: 0.5}, b: {needs: [a], function: g, workers: 2, params: {x: \"${steps.a.output[0]}\"}}}")
            .unwrap()
    }

    fn started(effects: &[Effect]) -> Vec<(String, u32)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Start { step, attempt, .. } => Some((step.clone(), *attempt)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_run_goes_step_by_step_to_success() {
        let p = plan();
        let (mut run, effects) = create(&p, "r", "ns", "w", Value::Null, 1);
        assert!(matches!(&effects[0], Effect::Emit(e) if e.kind == "volley.run.started"));
        assert_eq!(started(&advance(&p, &mut run, "a", 2)), vec![("a".into(), 1)]);
        assert!(advance(&p, &mut run, "a", 2).is_empty(), "advancing twice starts nothing twice");
        burst_started(&mut run, "a", 1, "b-1");
        let effects = burst_ended(&p, &mut run, "a", 1, Ended::Succeeded(json!([42])), 3);
        assert!(matches!(&effects[0], Effect::Emit(e) if e.kind == STEP_SUCCEEDED && e.id == "run/r/a/succeeded"));
        let effects = advance(&p, &mut run, "b", 4);
        let Effect::Start { request, key, .. } = &effects[0] else { panic!("{effects:?}") };
        assert_eq!((request.params.clone(), key.as_str()), (json!({"x": 42}), "run/r/b/1"));
        let effects = burst_ended(&p, &mut run, "b", 1, Ended::Succeeded(json!([1, 2])), 5);
        assert_eq!(run.state, RunState::Succeeded);
        assert!(effects.iter().any(|e| matches!(e, Effect::Emit(e) if e.kind == "volley.run.succeeded")));
        assert!(effects.contains(&Effect::Finished));
    }

    #[test]
    fn a_failed_step_is_retried_with_backoff_then_fails_the_run() {
        let p = plan();
        let (mut run, _) = create(&p, "r", "ns", "w", Value::Null, 1);
        advance(&p, &mut run, "a", 2);
        let effects = burst_ended(&p, &mut run, "a", 1, Ended::Failed("boom".into()), 3);
        let Effect::Start { attempt: 2, after, .. } = &effects[0] else { panic!("{effects:?}") };
        assert_eq!(*after, Duration::from_millis(500));
        assert!(burst_ended(&p, &mut run, "a", 1, Ended::Failed("late".into()), 4).is_empty(), "an old attempt's end");
        let effects = burst_ended(&p, &mut run, "a", 2, Ended::Failed("boom again".into()), 5);
        assert_eq!(run.state, RunState::Failed);
        assert_eq!(run.error.as_deref(), Some("step a failed after 2 attempts: boom again"));
        assert_eq!(run.steps["b"].state, RunState::Cancelled);
        assert!(effects.contains(&Effect::Finished));
        assert_eq!(run.steps["a"].errors.len(), 2);
    }

    #[test]
    fn a_cancelled_run_cancels_its_running_bursts() {
        let p = plan();
        let (mut run, _) = create(&p, "r", "ns", "w", Value::Null, 1);
        advance(&p, &mut run, "a", 2);
        burst_started(&mut run, "a", 1, "burst-a");
        let effects = cancel(&mut run, "cancelled by a user", 3);
        assert_eq!(
            effects[0],
            Effect::Cancel {
                bursts: vec!["burst-a".into()],
                reason: "the workflow run r ended: cancelled by a user".into()
            }
        );
        assert_eq!(run.state, RunState::Cancelled);
        assert!(cancel(&mut run, "again", 4).is_empty());
        assert!(advance(&p, &mut run, "b", 5).is_empty(), "nothing starts in an ended run");
    }

    /// The run as a restarted controller reads it back from the store.
    fn restarted(run: &Run) -> Run {
        serde_json::from_value(serde_json::to_value(run).unwrap()).unwrap()
    }

    fn annotated(a: &str) -> Plan {
        parse(&format!(
            "steps: {{a: {{function: f, workers: 1, retries: 1, {a}}}, b: {{needs: [a], function: g, workers: 1, retries: 1, params: {{x: \"${{steps.a.output[0]}}\"}}}}}}"
        ))
        .unwrap()
    }

    #[test]
    fn an_unsaved_output_lost_with_a_restart_is_computed_again_before_the_step_that_reads_it() {
        let p = annotated("checkpoint: off");
        let (mut run, _) = create(&p, "r", "ns", "w", Value::Null, 1);
        advance(&p, &mut run, "a", 2);
        let effects = burst_ended(&p, &mut run, "a", 1, Ended::Succeeded(json!([7])), 3);
        let Effect::Emit(announce) = &effects[0] else { panic!("{effects:?}") };
        assert_eq!(announce.data["output"], Value::Null, "an unsaved output is not logged either");
        assert_eq!((run.steps["a"].output.clone(), run.steps["a"].output_unsaved), (Value::Null, true));
        let mut run = restarted(&run);
        assert_eq!(run.steps["a"].held, None, "held in memory only");
        let effects = advance(&p, &mut run, "b", 4);
        assert_eq!(started(&effects), vec![("a".into(), 2)], "a is computed again first");
        assert_eq!((run.steps["b"].state, run.steps["b"].next_attempt), (RunState::Waiting, Some(1)));
        assert_eq!(run.steps["a"].recomputed_at, vec![2]);
        let effects = burst_ended(&p, &mut run, "a", 2, Ended::Succeeded(json!([8])), 5);
        assert!(!effects.iter().any(|e| matches!(e, Effect::Emit(_))), "announced once: {effects:?}");
        let Some(Effect::Start { request, step, attempt: 1, .. }) = effects.first() else { panic!("{effects:?}") };
        assert_eq!((step.as_str(), request.params.clone()), ("b", json!({"x": 8})));
        assert_eq!(run.steps["b"].next_attempt, None);
    }

    #[test]
    fn an_async_output_is_saved_by_a_later_transaction() {
        let p = annotated("checkpoint: async");
        let (mut run, _) = create(&p, "r", "ns", "w", Value::Null, 1);
        advance(&p, &mut run, "a", 2);
        let effects = burst_ended(&p, &mut run, "a", 1, Ended::Succeeded(json!([7])), 3);
        assert!(effects.contains(&Effect::SaveOutput { step: "a".into() }), "{effects:?}");
        assert!(run.steps["a"].output_unsaved);
        save_output(&mut run, "a");
        let mut run = restarted(&run);
        assert_eq!((run.steps["a"].output.clone(), run.steps["a"].output_unsaved), (json!([7]), false));
        assert_eq!(started(&advance(&p, &mut run, "b", 4)), vec![("b".into(), 1)], "nothing computed again");
    }

    #[test]
    fn a_nondeterministic_output_once_read_is_saved_and_never_computed_again() {
        let p = annotated("checkpoint: off, nondeterministic: true");
        let (mut run, _) = create(&p, "r", "ns", "w", Value::Null, 1);
        advance(&p, &mut run, "a", 2);
        burst_ended(&p, &mut run, "a", 1, Ended::Succeeded(json!([7])), 3);
        assert_eq!(started(&advance(&p, &mut run, "b", 4)), vec![("b".into(), 1)]);
        assert_eq!((run.steps["a"].output.clone(), run.steps["a"].output_unsaved), (json!([7]), false));
        let mut run = restarted(&run);
        let effects = burst_ended(&p, &mut run, "b", 1, Ended::Failed("lost with the restart".into()), 5);
        let Some(Effect::Start { step, attempt: 2, request, .. }) = effects.first() else { panic!("{effects:?}") };
        assert_eq!((step.as_str(), request.params.clone()), ("b", json!({"x": 7})), "the output b read the first time");
        assert!(run.steps["a"].recomputed_at.is_empty());
    }

    #[test]
    fn a_computation_again_has_the_steps_retries_afresh_and_its_failure_says_why() {
        let p = annotated("checkpoint: off");
        let (mut run, _) = create(&p, "r", "ns", "w", Value::Null, 1);
        advance(&p, &mut run, "a", 2);
        burst_ended(&p, &mut run, "a", 1, Ended::Failed("once".into()), 3);
        burst_ended(&p, &mut run, "a", 2, Ended::Succeeded(json!([7])), 4);
        let mut run = restarted(&run);
        assert_eq!(started(&advance(&p, &mut run, "b", 5)), vec![("a".into(), 3)]);
        let effects = burst_ended(&p, &mut run, "a", 3, Ended::Failed("again".into()), 6);
        assert_eq!(started(&effects), vec![("a".into(), 4)], "retries: 1 counts from the computation again");
        burst_ended(&p, &mut run, "a", 4, Ended::Failed("and again".into()), 7);
        assert_eq!(run.state, RunState::Failed);
        let error = run.error.unwrap();
        assert!(error.contains("computing again its output, lost with a restart, after 2 attempts"), "{error}");
        assert_eq!(run.steps["b"].state, RunState::Cancelled);
    }

    #[test]
    fn a_reference_that_names_nothing_at_run_time_fails_the_run_saying_where() {
        let p = plan();
        let (mut run, _) = create(&p, "r", "ns", "w", Value::Null, 1);
        advance(&p, &mut run, "a", 2);
        burst_ended(&p, &mut run, "a", 1, Ended::Succeeded(json!([])), 3);
        advance(&p, &mut run, "b", 4);
        assert_eq!(run.state, RunState::Failed);
        let error = run.error.unwrap();
        assert!(error.contains("step b cannot start") && error.contains("steps.a.output[0]"), "{error}");
    }
}
