//! Workflows as code: an orchestrator is a function that calls
//! [`Orchestration::burst`], [`Orchestration::task`], [`Orchestration::map`], [`Orchestration::sleep`] and
//! [`Orchestration::wait_event`], and waits for their results with
//! [`Orchestration::wait`] or [`Orchestration::wait_all`]. It runs as a
//! short burst of one worker each time something it waits for finishes, and
//! is replayed from the start with the history of what finished: a call whose
//! result is in the history returns it at once; a wait for something not yet
//! finished ends the replay (no process waits). The code must therefore ask
//! for the same things in the same order on every replay; if it does not, the
//! replay fails naming both lines.
//!
//! ```no_run
//! use volley_sdk::orchestrate::{Orchestration, orchestrate};
//! use volley_sdk::{Worker, WorkerResult};
//! use volley_sdk::serde_json::json;
//!
//! fn pipeline(w: &Worker) -> WorkerResult {
//!     orchestrate(w, |ctx: &Orchestration| {
//!         let a = ctx.task("hello", json!({}));
//!         let b = ctx.task("hello", json!({}));
//!         let both = ctx.wait_all(&[a, b])?;
//!         Ok(json!({"results": both}))
//!     })
//! }
//! ```

use std::cell::RefCell;
use std::panic::Location;

use serde_json::Value;
pub use volley_proto::api::{BurstRequest, Granularity};
use volley_proto::flow::{Command, Completed, Issued, Replay, ReplayInput};

use crate::{Worker, WorkerError, WorkerResult};

/// Why a wait did not return a result.
#[derive(Debug, thiserror::Error)]
pub enum Interrupt {
    /// The replay stops here until what it waits for has finished (not a
    /// failure: `orchestrate` turns it into the commands to start).
    #[error("waiting")]
    Suspend,
    /// A command this orchestration waited for failed.
    #[error("{at}: {error}")]
    Failed {
        /// The line that asked for it.
        at: String,
        /// Why it failed.
        error: String,
    },
    /// The code asked for something else than the history says it asked for.
    #[error("the orchestration is not deterministic: {0}")]
    Diverged(String),
    /// The orchestration's own error.
    #[error("{0}")]
    Other(String),
}

impl From<WorkerError> for Interrupt {
    fn from(e: WorkerError) -> Self {
        Interrupt::Other(e.to_string())
    }
}

/// A command asked for: wait on it to get its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handle(u32);

/// One replay's view of the orchestration.
pub struct Orchestration {
    input: Value,
    run: String,
    history: Vec<Completed>,
    issued: RefCell<Vec<Issued>>,
}

impl Orchestration {
    /// The run's input.
    pub fn input(&self) -> &Value {
        &self.input
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run
    }

    /// Runs `request` as a burst.
    #[track_caller]
    pub fn burst(&self, request: BurstRequest) -> Handle {
        self.issue(Command::Burst { request: Box::new(request) }, Location::caller())
    }

    /// Runs one worker of `function` with `params`.
    #[track_caller]
    pub fn task(&self, function: &str, params: Value) -> Handle {
        let request = BurstRequest { params, ..plain(function, 1, Granularity::Fixed(1)) };
        self.issue(Command::Burst { request: Box::new(request) }, Location::caller())
    }

    /// Runs `function` once per item, packed `granularity` per pack into one
    /// burst (each worker gets its item as its own parameters); the result is
    /// every item's, in order.
    #[track_caller]
    pub fn map(&self, function: &str, items: Vec<Value>, granularity: Granularity) -> Handle {
        let workers = items.len().max(1);
        let request = BurstRequest { worker_params: Some(items), ..plain(function, workers, granularity) };
        self.issue(Command::Burst { request: Box::new(request) }, Location::caller())
    }

    /// Waits `secs` seconds (no process waits meanwhile).
    #[track_caller]
    pub fn sleep(&self, secs: f64) -> Handle {
        self.issue(Command::Sleep { secs }, Location::caller())
    }

    /// Waits for an event of type `kind` (and `subject`, if given).
    #[track_caller]
    pub fn wait_event(&self, kind: &str, subject: Option<&str>) -> Handle {
        self.issue(Command::WaitEvent { kind: kind.into(), subject: subject.map(String::from) }, Location::caller())
    }

    /// The result of `handle` (for a burst, every worker's result; for a task, its worker's).
    pub fn wait(&self, handle: Handle) -> Result<Value, Interrupt> {
        self.wait_all(&[handle]).map(|mut v| v.pop().unwrap_or(Value::Null))
    }

    /// The results of every handle, in order; suspends until all have finished.
    pub fn wait_all(&self, handles: &[Handle]) -> Result<Vec<Value>, Interrupt> {
        let mut out = Vec::new();
        for h in handles {
            match self.history.iter().find(|c| c.issued.seq == h.0) {
                Some(Completed { error: Some(error), issued, .. }) => {
                    return Err(Interrupt::Failed { at: issued.at.clone(), error: error.clone() });
                }
                Some(c) => out.push(single(&c.issued.command, c.result.clone().unwrap_or(Value::Null))),
                None => return Err(Interrupt::Suspend),
            }
        }
        Ok(out)
    }

    fn issue(&self, command: Command, at: &Location) -> Handle {
        let mut issued = self.issued.borrow_mut();
        let seq = issued.len() as u32;
        issued.push(Issued { seq, command, at: format!("{}:{}", at.file(), at.line()) });
        Handle(seq)
    }

    /// Checks that this replay asked for what earlier replays did, in order.
    fn check(&self) -> Result<(), Interrupt> {
        let issued = self.issued.borrow();
        for done in &self.history {
            let Some(now) = issued.get(done.issued.seq as usize) else {
                return Err(Interrupt::Diverged(format!(
                    "{} asked for command {} before, and this replay asked for only {}",
                    done.issued.at,
                    done.issued.seq,
                    issued.len()
                )));
            };
            if now.command != done.issued.command {
                return Err(Interrupt::Diverged(format!(
                    "command {} was {} at {} before, and is {} at {} now",
                    done.issued.seq,
                    describe(&done.issued.command),
                    done.issued.at,
                    describe(&now.command),
                    now.at
                )));
            }
        }
        Ok(())
    }
}

/// A burst of `workers` workers of `function` with the platform's defaults.
fn plain(function: &str, workers: usize, granularity: Granularity) -> BurstRequest {
    BurstRequest {
        function: function.into(),
        workers,
        granularity,
        transport: None,
        params: Value::Null,
        worker_params: None,
        timeout_secs: None,
        queue_timeout_secs: None,
        memory_mb: None,
        retries: None,
        idempotency_key: None,
        session: None,
    }
}

/// A task's result is its one worker's; a burst's, every worker's.
fn single(command: &Command, result: Value) -> Value {
    match (command, result) {
        (Command::Burst { request }, Value::Array(mut all)) if request.workers == 1 && all.len() == 1 => all.remove(0),
        (_, result) => result,
    }
}

fn describe(c: &Command) -> String {
    match c {
        Command::Burst { request } => {
            let params = request.params.to_string();
            let params =
                if params.len() > 120 { format!("{}...", &params[..params.floor_char_boundary(120)]) } else { params };
            format!("a burst of {} x {} with params {params}", request.workers, request.function)
        }
        Command::Sleep { secs } => format!("a sleep of {secs} s"),
        Command::WaitEvent { kind, .. } => format!("a wait for {kind}"),
    }
}

/// Runs one replay of the orchestration `body` (the worker's parameters are
/// the engine's [`ReplayInput`]) and returns what the engine does next.
pub fn orchestrate(w: &Worker, body: impl FnOnce(&Orchestration) -> Result<Value, Interrupt>) -> WorkerResult {
    let ReplayInput { run, input, history } = w.params_as()?;
    let ctx = Orchestration { input, run, history, issued: RefCell::new(Vec::new()) };
    let ended = body(&ctx);
    ctx.check().map_err(|e| -> WorkerError { e.to_string().into() })?;
    let replay = match ended {
        Ok(output) => Replay::Done { output },
        Err(Interrupt::Suspend) => {
            let done: Vec<u32> = ctx.history.iter().map(|c| c.issued.seq).collect();
            let waiting = ctx.issued.into_inner().into_iter().filter(|i| !done.contains(&i.seq)).collect();
            Replay::Suspended { waiting }
        }
        Err(e) => return Err(e.to_string().into()),
    };
    Ok(serde_json::to_value(replay)?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn replay(history: Vec<Completed>) -> Orchestration {
        Orchestration { input: json!({}), run: "r1".into(), history, issued: RefCell::new(Vec::new()) }
    }

    #[test]
    fn a_replay_returns_what_finished_suspends_on_the_rest_and_refuses_another_order() {
        let first = replay(Vec::new());
        let a = first.sleep(1.0);
        assert!(matches!(first.wait(a), Err(Interrupt::Suspend)));
        let done = Completed { issued: first.issued.borrow()[0].clone(), result: Some(json!(null)), error: None };
        first.check().unwrap();

        let second = replay(vec![done.clone()]);
        let a = second.sleep(1.0);
        assert_eq!(second.wait(a).unwrap(), json!(null), "a finished command returns at once");
        let b = second.task("hello", json!({}));
        assert!(matches!(second.wait_all(&[a, b]), Err(Interrupt::Suspend)));
        second.check().unwrap();

        let other = replay(vec![done]);
        other.wait_event("x", None);
        let e = other.check().unwrap_err().to_string();
        assert!(e.contains("not deterministic") && e.contains("a sleep of 1 s") && e.contains("a wait for x"), "{e}");
    }
}
