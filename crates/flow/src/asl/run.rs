//! A state machine's run, as the engine keeps it: the execution ([`Exec`])
//! stored in the run's record, each task a step of the run (a retry is the
//! step's next attempt), and the execution's effects turned into the run's
//! (start a burst, set a timer, cancel bursts, announce the end).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use volley_proto::api::{BurstRequest, Granularity};
use volley_proto::flow::{Run, RunState, StepRecord};

use super::exec::{self, Exec, Failure};
use super::model::Machine;
use crate::dag::run_started;
use crate::run::{Effect, Ended, run_ended};

/// The execution and what the run needs beside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    exec: Exec,
    /// The burst each started task runs in.
    bursts: BTreeMap<u64, String>,
    /// Tasks whose result is every worker's (bursts), not one worker's.
    lists: BTreeSet<u64>,
}

/// The idempotency key a task's burst is started with.
pub fn key(run: &str, token: u64) -> String {
    format!("asl/{run}/{token}")
}

/// `asl/RUN/TOKEN` → its parts.
pub fn parse_key(key: &str) -> Option<(&str, u64)> {
    let (run, token) = key.strip_prefix("asl/")?.split_once('/')?;
    Some((run, token.parse().ok()?))
}

fn load(run: &Run) -> Option<Record> {
    run.execution.as_ref().and_then(|v| serde_json::from_value(v.clone()).ok())
}

fn save(run: &mut Run, record: &Record) {
    run.execution = serde_json::to_value(record).ok();
}

/// A new run of `machine`; its effects start it.
pub fn create(
    machine: &Machine,
    id: &str,
    namespace: &str,
    workflow: &str,
    input: Value,
    now: u64,
) -> (Run, Vec<Effect>) {
    let mut run = crate::run::new_run(id, namespace, workflow, input.clone(), now);
    let (exec, fx) = Exec::start(machine, id, input);
    let mut record = Record { exec, bursts: BTreeMap::new(), lists: BTreeSet::new() };
    let mut effects = vec![Effect::Emit(Box::new(run_started(&run)))];
    effects.extend(apply(&mut run, &mut record, fx, now));
    save(&mut run, &record);
    (run, effects)
}

/// The burst of a task started.
pub fn task_started(run: &mut Run, token: u64, burst: &str) {
    let Some(mut record) = load(run) else { return };
    if let Some((step, _)) = record.exec.task(token).cloned()
        && let Some(rec) = run.steps.get_mut(&step)
        && !rec.bursts.iter().any(|b| b == burst)
    {
        rec.bursts.push(burst.into());
    }
    record.bursts.insert(token, burst.into());
    save(run, &record);
}

/// A task's burst ended.
pub fn task_ended(machine: &Machine, run: &mut Run, token: u64, ended: Ended, now: u64) -> Vec<Effect> {
    let Some(mut record) = load(run) else { return Vec::new() };
    let Some((step, _)) = record.exec.task(token).cloned() else { return Vec::new() };
    let result = match ended {
        Ended::Succeeded(Value::Array(results)) if !record.lists.contains(&token) => {
            Ok(results.into_iter().next().unwrap_or(Value::Null))
        }
        Ended::Succeeded(results) => Ok(results),
        Ended::Failed(cause) if cause.contains("timed out") || cause.contains("timeout") => {
            Err(Failure::new("States.Timeout", cause))
        }
        Ended::Failed(cause) => Err(Failure::new("States.TaskFailed", cause)),
        Ended::Cancelled(cause) => Err(Failure::new("States.TaskFailed", cause)),
    };
    if let Some(rec) = run.steps.get_mut(&step) {
        let outcome = match &result {
            Ok(out) => Ok(out.clone()),
            Err(f) => Err(format!("attempt {}: {}: {}", rec.attempts, f.error, f.cause)),
        };
        rec.finish(outcome, now);
    }
    record.bursts.remove(&token);
    record.lists.remove(&token);
    let fx = record.exec.task_ended(machine, token, result);
    let effects = apply(run, &mut record, fx, now);
    save(run, &record);
    effects
}

/// A timer of the run fired.
pub fn timer_fired(machine: &Machine, run: &mut Run, token: u64, now: u64) -> Vec<Effect> {
    let Some(mut record) = load(run) else { return Vec::new() };
    let fx = record.exec.timer_fired(machine, token);
    let effects = apply(run, &mut record, fx, now);
    save(run, &record);
    effects
}

/// Cancels the run: its running bursts are cancelled.
pub fn cancel(run: &mut Run, reason: &str, now: u64) -> Vec<Effect> {
    let Some(mut record) = load(run) else { return Vec::new() };
    let fx = record.exec.cancel(reason);
    let effects = apply(run, &mut record, fx, now);
    save(run, &record);
    effects
}

/// The execution's effects as the run's.
fn apply(run: &mut Run, record: &mut Record, fx: Vec<exec::Effect>, now: u64) -> Vec<Effect> {
    let mut out = Vec::new();
    for effect in fx {
        match effect {
            exec::Effect::StartTask { token, step, attempt, task } => {
                let rec = run.steps.entry(step.clone()).or_insert_with(StepRecord::waiting);
                rec.state = RunState::Running;
                rec.attempts = attempt;
                rec.started_at.get_or_insert(now);
                rec.finished_at = None;
                if task.burst {
                    record.lists.insert(token);
                }
                let request = BurstRequest {
                    function: task.function,
                    workers: task.workers,
                    granularity: task.granularity.map(Granularity::Fixed).unwrap_or_default(),
                    transport: task.transport,
                    params: task.params,
                    worker_params: None,
                    timeout_secs: task.timeout_secs,
                    queue_timeout_secs: None,
                    memory_mb: None,
                    retries: None,
                    idempotency_key: Some(key(&run.id, token)),
                    session: None,
                };
                out.push(Effect::Start {
                    step,
                    attempt,
                    key: key(&run.id, token),
                    request: Box::new(request),
                    after: std::time::Duration::ZERO,
                    objects: None,
                });
            }
            exec::Effect::Timer { token, after } => out.push(Effect::Timer { token, after }),
            exec::Effect::Cancel { tokens } => {
                let bursts: Vec<String> = tokens.iter().filter_map(|t| record.bursts.remove(t)).collect();
                if !bursts.is_empty() {
                    out.push(Effect::Cancel {
                        bursts,
                        reason: format!("the state machine run {} no longer needs it", run.id),
                    });
                }
            }
            exec::Effect::Ended(result) => {
                run.finished_at = Some(now);
                match result {
                    Ok(output) => {
                        run.state = RunState::Succeeded;
                        run.output = Some(output);
                    }
                    Err(f) => {
                        run.state = if f.error == "States.Cancelled" { RunState::Cancelled } else { RunState::Failed };
                        run.error = Some(format!("{}: {}", f.error, f.cause));
                    }
                }
                for rec in run.steps.values_mut().filter(|r| r.state == RunState::Running) {
                    rec.state = RunState::Cancelled;
                    rec.finished_at = Some(now);
                }
                out.push(Effect::Emit(Box::new(run_ended(run))));
                out.push(Effect::Finished);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_state_machine_run_records_its_tasks_as_steps() {
        let machine = super::super::parse(
            &json!({"StartAt": "Gen", "States": {
                "Gen": {"Type": "Task", "Resource": "volley:burst:teragen?workers=2", "ResultPath": "$.gen", "Next": "Check"},
                "Check": {"Type": "Task", "Resource": "volley:function:teravalidate", "OutputPath": "$.valid", "End": true,
                          "Retry": [{"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 0, "MaxAttempts": 1}]}
            }})
            .to_string(),
        )
        .unwrap();
        let (mut run, fx) = create(&machine, "r1", "ns", "ts", json!({"n": 1}), 10);
        let Some(Effect::Start { key: k, request, step, .. }) = fx.iter().find(|e| matches!(e, Effect::Start { .. }))
        else {
            panic!("{fx:?}")
        };
        assert_eq!((step.as_str(), request.workers, request.params.clone()), ("Gen", 2, json!({"n": 1})));
        let (_, token) = parse_key(k).unwrap();
        task_started(&mut run, token, "b1");
        let fx = task_ended(&machine, &mut run, token, Ended::Succeeded(json!([{"p": 0}, {"p": 1}])), 20);
        let Some(Effect::Start { key: k, request, .. }) = fx.first() else { panic!("{fx:?}") };
        assert_eq!(request.params, json!({"n": 1, "gen": [{"p": 0}, {"p": 1}]}), "a burst's result is every worker's");
        let (_, token) = parse_key(k).unwrap();
        task_started(&mut run, token, "b2");
        let fx = task_ended(&machine, &mut run, token, Ended::Failed("burst b2: broke".into()), 30);
        let Some(Effect::Timer { token: timer, .. }) = fx.first() else { panic!("a retry: {fx:?}") };
        let fx = timer_fired(&machine, &mut run, *timer, 31);
        let Some(Effect::Start { key: k, attempt: 2, .. }) = fx.first() else { panic!("{fx:?}") };
        let (_, token) = parse_key(k).unwrap();
        let fx = task_ended(&machine, &mut run, token, Ended::Succeeded(json!([{"valid": true}])), 40);
        assert!(fx.contains(&Effect::Finished));
        assert_eq!(run.state, RunState::Succeeded);
        assert_eq!(run.output, Some(json!(true)), "a function's result is its one worker's");
        assert_eq!(run.steps["Check"].attempts, 2);
        assert_eq!(run.steps["Check"].errors.len(), 1);
        assert_eq!(run.steps["Gen"].bursts, ["b1"]);
    }
}
