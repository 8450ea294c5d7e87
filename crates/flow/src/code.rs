//! Workflows as code (the engine's side of `volley_sdk::orchestrate`): a run
//! of an orchestrator function is a series of replays, each a one-worker
//! burst given the history of what finished. A replay that suspends names
//! what it waits for: new bursts are started, sleeps become timers, waits for
//! events become triggers of the run. When one of them finishes it joins the
//! history and the orchestrator is replayed again (one replay at a time; if
//! more finished meanwhile, the next replay sees them all).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use volley_proto::api::{BurstRequest, Granularity};
use volley_proto::flow::{Command, Completed, Issued, Replay, ReplayInput, Run, RunState, StepRecord};

use crate::dag::run_started;
use crate::run::{Effect, Ended, run_ended};

/// A code workflow's definition: the orchestrator function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    pub function: String,
    #[serde(default)]
    pub description: String,
}

/// Reads a definition (`{"function": "NAME"}`, JSON or YAML).
pub fn parse(source: &str) -> crate::Result<Definition> {
    let d: Definition = serde_saphyr::from_str(source)
        .map_err(|e| crate::Error::invalid("definition", format!("not a code workflow ({{function: NAME}}): {e}")))?;
    let ok = !d.function.is_empty() && d.function.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(crate::Error::invalid("function", format!("{:?} is not a function name", d.function)));
    }
    Ok(d)
}

/// Most replays one run may take (a loop that never ends stops here).
pub const MAX_REPLAYS: u32 = 10_000;

/// The run's record beside its steps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Record {
    history: Vec<Completed>,
    /// Commands started and not finished, by seq.
    running: BTreeMap<u32, Issued>,
    /// Replays started; whether one is in flight; whether history grew since it started.
    replays: u32,
    replaying: bool,
    stale: bool,
}

fn load(run: &Run) -> Record {
    run.execution.as_ref().and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default()
}

fn save(run: &mut Run, r: &Record) {
    run.execution = serde_json::to_value(r).ok();
}

/// The idempotency key of replay `n` and of command `seq`.
pub fn replay_key(run: &str, n: u32) -> String {
    format!("code/{run}/replay/{n}")
}

pub fn command_key(run: &str, seq: u32) -> String {
    format!("code/{run}/cmd/{seq}")
}

/// What a key of this module names.
pub enum Key<'a> {
    Replay(&'a str, u32),
    Command(&'a str, u32),
}

pub fn parse_key(key: &str) -> Option<Key<'_>> {
    let mut parts = key.strip_prefix("code/")?.split('/');
    let (run, what, n) = (parts.next()?, parts.next()?, parts.next()?.parse().ok()?);
    match what {
        "replay" => Some(Key::Replay(run, n)),
        "cmd" => Some(Key::Command(run, n)),
        _ => None,
    }
}

/// The name a command's step has in the run.
fn step_name(i: &Issued) -> String {
    format!("#{} {}", i.seq, i.at)
}

/// A new run: its first replay starts.
pub fn create(
    def: &Definition,
    id: &str,
    namespace: &str,
    workflow: &str,
    input: Value,
    now: u64,
) -> (Run, Vec<Effect>) {
    let mut run = crate::run::new_run(id, namespace, workflow, input, now);
    let mut record = Record::default();
    let mut effects = vec![Effect::Emit(Box::new(run_started(&run)))];
    effects.extend(replay(def, &mut run, &mut record, now));
    save(&mut run, &record);
    (run, effects)
}

/// Starts the next replay (one at a time).
fn replay(def: &Definition, run: &mut Run, r: &mut Record, now: u64) -> Vec<Effect> {
    if r.replaying {
        r.stale = true;
        return Vec::new();
    }
    if r.replays >= MAX_REPLAYS {
        return end(run, r, Err(format!("the orchestration took {MAX_REPLAYS} replays without ending")), now);
    }
    r.replays += 1;
    r.replaying = true;
    r.stale = false;
    let params =
        serde_json::to_value(ReplayInput { run: run.id.clone(), input: run.input.clone(), history: r.history.clone() })
            .unwrap_or(Value::Null);
    let request = BurstRequest {
        function: def.function.clone(),
        workers: 1,
        granularity: Granularity::Fixed(1),
        transport: None,
        params,
        worker_params: None,
        timeout_secs: Some(300.0),
        queue_timeout_secs: None,
        memory_mb: None,
        retries: Some(2),
        idempotency_key: Some(replay_key(&run.id, r.replays)),
        session: None,
    };
    let step = format!("replay {}", r.replays);
    let rec = run.steps.entry(step.clone()).or_insert_with(StepRecord::waiting);
    rec.state = RunState::Running;
    rec.attempts = 1;
    rec.started_at = Some(now);
    vec![Effect::Start {
        step,
        attempt: 1,
        key: replay_key(&run.id, r.replays),
        request: Box::new(request),
        after: Duration::ZERO,
        objects: None,
    }]
}

/// A replay's burst ended.
pub fn replay_ended(def: &Definition, run: &mut Run, n: u32, ended: Ended, now: u64) -> Vec<Effect> {
    let mut r = load(run);
    if n != r.replays || !r.replaying || run.state.is_final() {
        return Vec::new();
    }
    r.replaying = false;
    let step = format!("replay {n}");
    let outcome = match ended {
        Ended::Succeeded(Value::Array(mut results)) if !results.is_empty() => {
            serde_json::from_value::<Replay>(results.remove(0))
                .map_err(|e| format!("replay {n} returned no replay: {e}"))
        }
        Ended::Succeeded(other) => Err(format!("replay {n} returned {other}")),
        Ended::Failed(e) | Ended::Cancelled(e) => Err(e),
    };
    if let Some(rec) = run.steps.get_mut(&step) {
        rec.finished_at = Some(now);
        rec.state = if outcome.is_ok() { RunState::Succeeded } else { RunState::Failed };
    }
    let effects = match outcome {
        Err(e) => end(run, &mut r, Err(e), now),
        Ok(Replay::Done { output }) => end(run, &mut r, Ok(output), now),
        Ok(Replay::Suspended { waiting }) => {
            let mut effects = Vec::new();
            for issued in waiting {
                let known = r.running.contains_key(&issued.seq) || r.history.iter().any(|c| c.issued.seq == issued.seq);
                if !known {
                    effects.extend(begin(run, &mut r, issued, now));
                }
            }
            if r.stale {
                effects.extend(replay(def, run, &mut r, now));
            }
            effects
        }
    };
    save(run, &r);
    effects
}

/// Starts a command the orchestrator asked for.
fn begin(run: &mut Run, r: &mut Record, issued: Issued, now: u64) -> Vec<Effect> {
    let rec = run.steps.entry(step_name(&issued)).or_insert_with(StepRecord::waiting);
    rec.state = RunState::Running;
    rec.attempts = 1;
    rec.started_at = Some(now);
    let effect = match &issued.command {
        Command::Burst { request } => {
            let mut request = request.clone();
            request.idempotency_key = Some(command_key(&run.id, issued.seq));
            Effect::Start {
                step: step_name(&issued),
                attempt: 1,
                key: command_key(&run.id, issued.seq),
                request,
                after: Duration::ZERO,
                objects: None,
            }
        }
        Command::Sleep { secs } => {
            Effect::Timer { token: issued.seq as u64, after: Duration::from_secs_f64(secs.clamp(0.0, 31_536_000.0)) }
        }
        Command::WaitEvent { kind, subject } => {
            Effect::Listen { seq: issued.seq, kind: kind.clone(), subject: subject.clone() }
        }
    };
    r.running.insert(issued.seq, issued);
    vec![effect]
}

/// Command `seq` finished: into the history, and a replay.
pub fn finished(def: &Definition, run: &mut Run, seq: u32, result: Result<Value, String>, now: u64) -> Vec<Effect> {
    let mut r = load(run);
    let Some(issued) = r.running.remove(&seq) else { return Vec::new() };
    if let Some(rec) = run.steps.get_mut(&step_name(&issued)) {
        rec.finish(result.clone(), now);
    }
    let (result, error) = match result {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e)),
    };
    r.history.push(Completed { issued, result, error });
    let effects = replay(def, run, &mut r, now);
    save(run, &r);
    effects
}

/// The burst of command `seq` started.
pub fn command_started(run: &mut Run, seq: u32, burst: &str) {
    let r = load(run);
    if let Some(issued) = r.running.get(&seq)
        && let Some(rec) = run.steps.get_mut(&step_name(issued))
        && !rec.bursts.iter().any(|b| b == burst)
    {
        rec.bursts.push(burst.into());
    }
}

/// The burst of replay `n` started.
pub fn replay_started(run: &mut Run, n: u32, burst: &str) {
    if let Some(rec) = run.steps.get_mut(&format!("replay {n}"))
        && !rec.bursts.iter().any(|b| b == burst)
    {
        rec.bursts.push(burst.into());
    }
}

/// Cancels the run: its running bursts are cancelled.
pub fn cancel(run: &mut Run, reason: &str, now: u64) -> Vec<Effect> {
    let mut r = load(run);
    let effects = end(run, &mut r, Err(format!("cancelled: {reason}")), now);
    run.state = RunState::Cancelled;
    save(run, &r);
    effects
}

fn end(run: &mut Run, r: &mut Record, outcome: Result<Value, String>, now: u64) -> Vec<Effect> {
    let bursts: Vec<String> = run
        .steps
        .values_mut()
        .filter(|s| s.state == RunState::Running)
        .flat_map(|s| {
            s.state = RunState::Cancelled;
            s.finished_at = Some(now);
            s.bursts.last().cloned()
        })
        .collect();
    r.running.clear();
    r.replaying = false;
    run.finished_at = Some(now);
    match outcome {
        Ok(output) => {
            run.state = RunState::Succeeded;
            run.output = Some(output);
        }
        Err(e) => {
            run.state = RunState::Failed;
            run.error = Some(e);
        }
    }
    let mut effects = Vec::new();
    if !bursts.is_empty() {
        effects.push(Effect::Cancel { bursts, reason: format!("the run {} ended", run.id) });
    }
    effects.push(Effect::Emit(Box::new(run_ended(run))));
    effects.push(Effect::Finished);
    effects
}
