//! Running a state machine: an execution is a set of frames (the machine
//! itself, and one per Parallel branch or Map item running), each at a state
//! and possibly waiting (for a task, a timer, or its children). It moves only
//! when told something happened (started, a task ended, a timer fired) and
//! says what to do as effects, so the engine can persist it between events and
//! a waiting execution holds nothing but its record.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::model::{Machine, State};
use super::paths::{filter, place, select, template};
use super::{choice, task};

/// An error as ASL names it (`States.TaskFailed`, a `Fail` state's `Error`...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub error: String,
    pub cause: String,
}

impl Failure {
    pub fn new(error: &str, cause: impl Into<String>) -> Failure {
        Failure { error: error.into(), cause: cause.into() }
    }

    fn runtime(cause: impl Into<String>) -> Failure {
        Failure::new("States.Runtime", cause)
    }
}

/// What the engine does for an execution.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Run a task; report its end with [`Exec::task_ended`] and this token.
    StartTask { token: u64, step: String, attempt: u32, task: task::TaskRequest },
    /// Call [`Exec::timer_fired`] with this token after `after`.
    Timer { token: u64, after: Duration },
    /// These tasks are no longer wanted.
    Cancel { tokens: Vec<u64> },
    /// The execution ended.
    Ended(Result<Value, Failure>),
}

/// Where a frame's machine is inside the top one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Scope {
    /// Branch `1` of the Parallel state `0`.
    Branch(String, usize),
    /// The iterator of the Map state `0`, for item `1`.
    Item(String, usize),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Waiting {
    Nothing,
    Task {
        token: u64,
    },
    /// A Wait state's time.
    Timer {
        token: u64,
    },
    /// The pause before a retry.
    Retry {
        token: u64,
    },
    /// A Parallel's branches or a Map's items.
    Children {
        results: Vec<Value>,
        pending: usize,
        next: usize,
        items: Vec<Value>,
        limit: usize,
        input: Value,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Frame {
    scope: Vec<Scope>,
    state: String,
    /// The state's raw input.
    input: Value,
    parent: Option<(u64, usize)>,
    waiting: Waiting,
    /// Attempts used per retrier of the current state.
    retries: BTreeMap<usize, u32>,
    /// The item a Map iteration runs for.
    item: Option<(usize, Value)>,
}

/// One execution, as kept between events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exec {
    id: String,
    input: Value,
    frames: BTreeMap<u64, Frame>,
    next_frame: u64,
    next_token: u64,
    /// Which step each running task is (for the run's record), and its attempt.
    tasks: BTreeMap<u64, (String, u32)>,
    /// How often each step name was started, to name later visits apart.
    visits: BTreeMap<String, u32>,
    pub outcome: Option<Result<Value, Failure>>,
}

fn machine_at<'m>(top: &'m Machine, scope: &[Scope]) -> Option<&'m Machine> {
    let mut m = top;
    for s in scope {
        m = match (
            s,
            m.states.get(match s {
                Scope::Branch(n, _) | Scope::Item(n, _) => n.as_str(),
            })?,
        ) {
            (Scope::Branch(_, i), State::Parallel(p)) => p.branches.get(*i)?,
            (Scope::Item(_, _), State::Map(map)) => &map.iterator,
            _ => return None,
        };
    }
    Some(m)
}

impl Exec {
    /// Starts an execution of `machine` with `input`.
    pub fn start(machine: &Machine, id: &str, input: Value) -> (Exec, Vec<Effect>) {
        let mut exec = Exec {
            id: id.into(),
            input: input.clone(),
            frames: BTreeMap::new(),
            next_frame: 1,
            next_token: 1,
            tasks: BTreeMap::new(),
            visits: BTreeMap::new(),
            outcome: None,
        };
        let mut fx = Vec::new();
        let root = exec.add(Frame {
            scope: Vec::new(),
            state: machine.start_at.clone(),
            input,
            parent: None,
            waiting: Waiting::Nothing,
            retries: BTreeMap::new(),
            item: None,
        });
        exec.run(machine, root, &mut fx);
        (exec, fx)
    }

    /// The step and attempt a task token stands for.
    pub fn task(&self, token: u64) -> Option<&(String, u32)> {
        self.tasks.get(&token)
    }

    /// Every task still running.
    pub fn running(&self) -> Vec<u64> {
        self.tasks.keys().copied().collect()
    }

    /// A task ended: with its result, or failed.
    pub fn task_ended(&mut self, machine: &Machine, token: u64, result: Result<Value, Failure>) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.tasks.remove(&token).is_none() {
            return fx;
        }
        let Some(id) = self.frame_waiting(|w| *w == Waiting::Task { token }) else { return fx };
        match result {
            Ok(result) => self.task_succeeded(machine, id, result, &mut fx),
            Err(failure) => self.state_failed(machine, id, failure, &mut fx),
        }
        fx
    }

    /// A timer this execution asked for fired.
    pub fn timer_fired(&mut self, machine: &Machine, token: u64) -> Vec<Effect> {
        let mut fx = Vec::new();
        if let Some(id) = self.frame_waiting(|w| *w == Waiting::Retry { token }) {
            self.set_waiting(id, Waiting::Nothing);
            self.run(machine, id, &mut fx);
        } else if let Some(id) = self.frame_waiting(|w| *w == Waiting::Timer { token }) {
            self.set_waiting(id, Waiting::Nothing);
            let Some(frame) = self.frames.get(&id).cloned() else { return fx };
            let Some(State::Wait(w)) = machine_at(machine, &frame.scope).and_then(|m| m.states.get(&frame.state))
            else {
                return fx;
            };
            let context = self.context(&frame);
            let out = filter(&w.input_path, &frame.input, &context).and_then(|v| filter(&w.output_path, &v, &context));
            match out {
                Ok(out) => self.transition(machine, id, w.next.clone(), w.end, out, &mut fx),
                Err(cause) => self.fail_frame(machine, id, Failure::runtime(cause), &mut fx),
            }
        }
        fx
    }

    /// Stops the execution: its running tasks are cancelled.
    pub fn cancel(&mut self, cause: &str) -> Vec<Effect> {
        if self.outcome.is_some() {
            return Vec::new();
        }
        let tokens = self.running();
        self.tasks.clear();
        self.frames.clear();
        let failure = Failure::new("States.Cancelled", cause);
        self.outcome = Some(Err(failure.clone()));
        let mut fx = Vec::new();
        if !tokens.is_empty() {
            fx.push(Effect::Cancel { tokens });
        }
        fx.push(Effect::Ended(Err(failure)));
        fx
    }

    fn add(&mut self, frame: Frame) -> u64 {
        let id = self.next_frame;
        self.next_frame += 1;
        self.frames.insert(id, frame);
        id
    }

    fn token(&mut self) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        t
    }

    fn frame_waiting(&self, test: impl Fn(&Waiting) -> bool) -> Option<u64> {
        self.frames.iter().find(|(_, f)| test(&f.waiting)).map(|(id, _)| *id)
    }

    fn set_waiting(&mut self, id: u64, waiting: Waiting) {
        if let Some(f) = self.frames.get_mut(&id) {
            f.waiting = waiting;
        }
    }

    /// The context object (`$$`) of a frame.
    fn context(&self, frame: &Frame) -> Value {
        let mut c = json!({
            "Execution": {"Id": self.id, "Name": self.id, "Input": self.input},
            "State": {"Name": frame.state},
        });
        if let Some((index, value)) = &frame.item {
            c["Map"] = json!({"Item": {"Index": index, "Value": value}});
        }
        c
    }

    /// The name a task of this frame's state is recorded under.
    fn step_name(&self, frame: &Frame) -> String {
        let mut name = String::new();
        for s in &frame.scope {
            match s {
                Scope::Branch(state, i) => name.push_str(&format!("{state}[branch {i}]/")),
                Scope::Item(state, i) => name.push_str(&format!("{state}[{i}]/")),
            }
        }
        name.push_str(&frame.state);
        name
    }

    /// Runs frame `id` from its current state until it waits or ends.
    fn run(&mut self, machine: &Machine, id: u64, fx: &mut Vec<Effect>) {
        let Some(frame) = self.frames.get(&id).cloned() else { return };
        let Some(state) = machine_at(machine, &frame.scope).and_then(|m| m.states.get(&frame.state)).cloned() else {
            let cause = format!("no state {:?}", frame.state);
            return self.fail_frame(machine, id, Failure::runtime(cause), fx);
        };
        let context = self.context(&frame);
        let raw = &frame.input;
        match &state {
            State::Pass(p) => {
                let out = filter(&p.input_path, raw, &context)
                    .and_then(|input| match &p.parameters {
                        Some(t) => template(t, &input, &context),
                        None => Ok(input),
                    })
                    .and_then(|effective| place(&p.result_path, raw, p.result.clone().unwrap_or(effective)))
                    .and_then(|v| filter(&p.output_path, &v, &context));
                match out {
                    Ok(out) => self.transition(machine, id, p.next.clone(), p.end, out, fx),
                    Err(cause) => self.fail_frame(machine, id, Failure::runtime(cause), fx),
                }
            }
            State::Task(t) => {
                let effective = filter(&t.input_path, raw, &context).and_then(|input| match &t.parameters {
                    Some(tpl) => template(tpl, &input, &context),
                    None => Ok(input),
                });
                let request = effective.and_then(|params| task::request(&t.resource, params, t.timeout_seconds));
                match request {
                    Ok(task) => {
                        let token = self.token();
                        let step = self.step_name(&frame);
                        let attempt = frame.retries.values().sum::<u32>() + 1;
                        let visit = if attempt == 1 {
                            let n = self.visits.entry(step.clone()).or_insert(0);
                            *n += 1;
                            *n
                        } else {
                            self.visits.get(&step).copied().unwrap_or(1)
                        };
                        let step = if visit > 1 { format!("{step}#{visit}") } else { step };
                        self.tasks.insert(token, (step.clone(), attempt));
                        self.set_waiting(id, Waiting::Task { token });
                        fx.push(Effect::StartTask { token, step, attempt, task });
                    }
                    Err(cause) => self.fail_frame(machine, id, Failure::runtime(cause), fx),
                }
            }
            State::Choice(c) => {
                let decided = filter(&c.input_path, raw, &context).and_then(|input| {
                    for rule in &c.choices {
                        if choice::holds(rule, &input, &context)? {
                            let next = rule.get("Next").and_then(Value::as_str).map(String::from);
                            return Ok((input, next));
                        }
                    }
                    Ok((input, c.default.clone()))
                });
                match decided {
                    Ok((input, Some(next))) => match filter(&c.output_path, &input, &context) {
                        Ok(out) => self.transition(machine, id, Some(next), None, out, fx),
                        Err(cause) => self.fail_frame(machine, id, Failure::runtime(cause), fx),
                    },
                    Ok((_, None)) => {
                        let failure =
                            Failure::new("States.NoChoiceMatched", format!("no rule of {} matched", frame.state));
                        self.fail_frame(machine, id, failure, fx)
                    }
                    Err(cause) => self.fail_frame(machine, id, Failure::runtime(cause), fx),
                }
            }
            State::Wait(w) => {
                let delay = filter(&w.input_path, raw, &context).and_then(|input| wait_for(w, &input, &context));
                match delay {
                    Ok(after) => {
                        let token = self.token();
                        self.set_waiting(id, Waiting::Timer { token });
                        fx.push(Effect::Timer { token, after });
                    }
                    Err(cause) => self.fail_frame(machine, id, Failure::runtime(cause), fx),
                }
            }
            State::Succeed(s) => {
                match filter(&s.input_path, raw, &context).and_then(|v| filter(&s.output_path, &v, &context)) {
                    Ok(out) => self.finish_frame(machine, id, out, fx),
                    Err(cause) => self.fail_frame(machine, id, Failure::runtime(cause), fx),
                }
            }
            State::Fail(f) => {
                let failure =
                    Failure::new(f.error.as_deref().unwrap_or("States.Fail"), f.cause.clone().unwrap_or_default());
                self.fail_frame(machine, id, failure, fx)
            }
            State::Parallel(p) => {
                let effective = filter(&p.input_path, raw, &context).and_then(|input| match &p.parameters {
                    Some(tpl) => template(tpl, &input, &context),
                    None => Ok(input),
                });
                match effective {
                    Ok(input) => {
                        let n = p.branches.len();
                        let waiting = Waiting::Children {
                            results: vec![Value::Null; n],
                            pending: n,
                            next: n,
                            items: Vec::new(),
                            limit: n,
                            input: input.clone(),
                        };
                        self.set_waiting(id, waiting);
                        let children: Vec<u64> = (0..n)
                            .map(|i| {
                                let mut scope = frame.scope.clone();
                                scope.push(Scope::Branch(frame.state.clone(), i));
                                self.add(Frame {
                                    scope,
                                    state: p.branches[i].start_at.clone(),
                                    input: input.clone(),
                                    parent: Some((id, i)),
                                    waiting: Waiting::Nothing,
                                    retries: BTreeMap::new(),
                                    item: None,
                                })
                            })
                            .collect();
                        for child in children {
                            self.run(machine, child, fx);
                        }
                    }
                    Err(cause) => self.fail_frame(machine, id, Failure::runtime(cause), fx),
                }
            }
            State::Map(m) => {
                let items = filter(&m.input_path, raw, &context).and_then(|input| {
                    let items = select(m.items_path.as_deref().unwrap_or("$"), &input, &context)?;
                    match items {
                        Value::Array(items) => Ok((input, items)),
                        other => Err(format!("ItemsPath selects {other}, not a list")),
                    }
                });
                match items {
                    Ok((input, items)) => {
                        let n = items.len();
                        let limit = match m.max_concurrency {
                            Some(0) | None => n.max(1),
                            Some(k) => k,
                        };
                        let waiting = Waiting::Children {
                            results: vec![Value::Null; n],
                            pending: n,
                            next: 0,
                            items,
                            limit,
                            input,
                        };
                        self.set_waiting(id, waiting);
                        if n == 0 {
                            return self.children_done(machine, id, Vec::new(), fx);
                        }
                        self.start_items(machine, id, fx);
                    }
                    Err(cause) => self.fail_frame(machine, id, Failure::runtime(cause), fx),
                }
            }
        }
    }

    /// Starts Map items of frame `id` up to its limit.
    fn start_items(&mut self, machine: &Machine, id: u64, fx: &mut Vec<Effect>) {
        loop {
            let Some(frame) = self.frames.get(&id).cloned() else { return };
            let Waiting::Children { pending, next, items, limit, input, results } = &frame.waiting else { return };
            let running = (*next).saturating_sub(results.len() - *pending);
            if *next >= items.len() || running >= *limit {
                return;
            }
            let (index, item) = (*next, items[*next].clone());
            let Some(State::Map(m)) = machine_at(machine, &frame.scope).and_then(|mm| mm.states.get(&frame.state))
            else {
                return;
            };
            let mut child = Frame {
                scope: [frame.scope.clone(), vec![Scope::Item(frame.state.clone(), index)]].concat(),
                state: m.iterator.start_at.clone(),
                input: item.clone(),
                parent: Some((id, index)),
                waiting: Waiting::Nothing,
                retries: BTreeMap::new(),
                item: Some((index, item.clone())),
            };
            if let Some(tpl) = &m.parameters {
                let mut ctx_frame = frame.clone();
                ctx_frame.item = Some((index, item));
                match template(tpl, input, &self.context(&ctx_frame)) {
                    Ok(v) => child.input = v,
                    Err(cause) => return self.fail_frame(machine, id, Failure::runtime(cause), fx),
                }
            }
            if let Some(f) = self.frames.get_mut(&id)
                && let Waiting::Children { next, .. } = &mut f.waiting
            {
                *next += 1;
            }
            let child = self.add(child);
            self.run(machine, child, fx);
        }
    }

    /// Moves frame `id` to `next` with `out` as its input, or ends it.
    fn transition(
        &mut self,
        machine: &Machine,
        id: u64,
        next: Option<String>,
        end: Option<bool>,
        out: Value,
        fx: &mut Vec<Effect>,
    ) {
        match (next, end) {
            (Some(next), _) => {
                if let Some(f) = self.frames.get_mut(&id) {
                    f.state = next;
                    f.input = out;
                    f.retries.clear();
                    f.waiting = Waiting::Nothing;
                }
                self.run(machine, id, fx);
            }
            _ => self.finish_frame(machine, id, out, fx),
        }
    }

    fn task_succeeded(&mut self, machine: &Machine, id: u64, result: Value, fx: &mut Vec<Effect>) {
        let Some(frame) = self.frames.get(&id).cloned() else { return };
        let Some(state) = machine_at(machine, &frame.scope).and_then(|m| m.states.get(&frame.state)) else { return };
        let (selector, result_path, output_path, next, end) = match state {
            State::Task(t) => (&t.result_selector, &t.result_path, &t.output_path, t.next.clone(), t.end),
            State::Parallel(p) => (&p.result_selector, &p.result_path, &p.output_path, p.next.clone(), p.end),
            State::Map(m) => (&m.result_selector, &m.result_path, &m.output_path, m.next.clone(), m.end),
            _ => return,
        };
        let context = self.context(&frame);
        let out = match selector {
            Some(tpl) => template(tpl, &result, &context),
            None => Ok(result),
        }
        .and_then(|selected| place(result_path, &frame.input, selected))
        .and_then(|v| filter(output_path, &v, &context));
        match out {
            Ok(out) => self.transition(machine, id, next, end, out, fx),
            Err(cause) => self.fail_frame(machine, id, Failure::runtime(cause), fx),
        }
    }

    /// The state of frame `id` failed: retry it, catch it, or fail the frame.
    fn state_failed(&mut self, machine: &Machine, id: u64, failure: Failure, fx: &mut Vec<Effect>) {
        let Some(frame) = self.frames.get(&id).cloned() else { return };
        let Some(state) = machine_at(machine, &frame.scope).and_then(|m| m.states.get(&frame.state)).cloned() else {
            return;
        };
        let matches = |names: &[String]| {
            failure.error != "States.Runtime"
                && names
                    .iter()
                    .any(|n| n == &failure.error || (n == "States.ALL" && failure.error != "States.Cancelled"))
        };
        if let Some((index, r)) = state.retriers().iter().enumerate().find(|(_, r)| matches(&r.error_equals)) {
            let used = frame.retries.get(&index).copied().unwrap_or(0);
            if used < r.max_attempts {
                let after = Duration::from_secs_f64((r.interval_seconds * r.backoff_rate.powi(used as i32)).max(0.0));
                let token = self.token();
                if let Some(f) = self.frames.get_mut(&id) {
                    f.retries.insert(index, used + 1);
                    f.waiting = Waiting::Retry { token };
                }
                fx.push(Effect::Timer { token, after });
                return;
            }
        }
        if let Some(c) = state.catchers().iter().find(|c| matches(&c.error_equals)) {
            let error = json!({"Error": failure.error, "Cause": failure.cause});
            match place(&c.result_path, &frame.input, error) {
                Ok(out) => return self.transition(machine, id, Some(c.next.clone()), None, out, fx),
                Err(cause) => return self.fail_frame(machine, id, Failure::runtime(cause), fx),
            }
        }
        self.fail_frame(machine, id, failure, fx)
    }

    /// Frame `id` reached its end with `out`.
    fn finish_frame(&mut self, machine: &Machine, id: u64, out: Value, fx: &mut Vec<Effect>) {
        let Some(frame) = self.frames.remove(&id) else { return };
        let Some((parent, slot)) = frame.parent else {
            self.outcome = Some(Ok(out.clone()));
            fx.push(Effect::Ended(Ok(out)));
            return;
        };
        let done = match self.frames.get_mut(&parent).map(|f| &mut f.waiting) {
            Some(Waiting::Children { results, pending, .. }) => {
                if let Some(r) = results.get_mut(slot) {
                    *r = out;
                }
                *pending -= 1;
                (*pending == 0).then(|| std::mem::take(results))
            }
            _ => return,
        };
        match done {
            Some(results) => self.children_done(machine, parent, results, fx),
            None => self.start_items(machine, parent, fx),
        }
    }

    /// Every branch or item of frame `id` finished: its state's result is their outputs.
    fn children_done(&mut self, machine: &Machine, id: u64, results: Vec<Value>, fx: &mut Vec<Effect>) {
        self.set_waiting(id, Waiting::Nothing);
        self.task_succeeded(machine, id, Value::Array(results), fx);
    }

    /// Frame `id` failed: a child fails its parent's state (its siblings are
    /// stopped); the top frame fails the execution.
    fn fail_frame(&mut self, machine: &Machine, id: u64, failure: Failure, fx: &mut Vec<Effect>) {
        let Some(frame) = self.frames.remove(&id) else { return };
        let Some((parent, _)) = frame.parent else {
            let tokens = self.running();
            self.tasks.clear();
            self.frames.clear();
            if !tokens.is_empty() {
                fx.push(Effect::Cancel { tokens });
            }
            self.outcome = Some(Err(failure.clone()));
            fx.push(Effect::Ended(Err(failure)));
            return;
        };
        let mut stopped = Vec::new();
        self.remove_children(parent, &mut stopped);
        if !stopped.is_empty() {
            fx.push(Effect::Cancel { tokens: stopped });
        }
        self.set_waiting(parent, Waiting::Nothing);
        self.state_failed(machine, parent, failure, fx);
    }

    /// Removes every frame below `id`, collecting the tasks they were running.
    fn remove_children(&mut self, id: u64, tokens: &mut Vec<u64>) {
        let children: Vec<u64> =
            self.frames.iter().filter(|(_, f)| f.parent.map(|p| p.0) == Some(id)).map(|(c, _)| *c).collect();
        for child in children {
            self.remove_children(child, tokens);
            if let Some(f) = self.frames.remove(&child)
                && let Waiting::Task { token } = f.waiting
            {
                self.tasks.remove(&token);
                tokens.push(token);
            }
        }
    }
}

/// How long a Wait state waits.
fn wait_for(w: &super::model::Wait, input: &Value, context: &Value) -> Result<Duration, String> {
    let seconds = if let Some(s) = w.seconds {
        s
    } else if let Some(p) = &w.seconds_path {
        select(p, input, context)?.as_f64().ok_or(format!("SecondsPath {p} selects no number"))?
    } else {
        let at = match (&w.timestamp, &w.timestamp_path) {
            (Some(t), _) => t.clone(),
            (None, Some(p)) => {
                select(p, input, context)?.as_str().ok_or(format!("TimestampPath {p} selects no text"))?.into()
            }
            (None, None) => return Err("a Wait state needs Seconds, SecondsPath, Timestamp or TimestampPath".into()),
        };
        let at = chrono::DateTime::parse_from_rfc3339(&at).map_err(|e| format!("{at} is not an RFC 3339 time: {e}"))?;
        (at.timestamp_micros() - chrono::Utc::now().timestamp_micros()) as f64 / 1e6
    };
    if !(seconds.is_finite()) || seconds > 31_536_000.0 {
        return Err(format!("a wait of {seconds} s is not one this engine takes (up to a year)"));
    }
    Ok(Duration::from_secs_f64(seconds.max(0.0)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn machine(def: Value) -> Machine {
        super::super::parse(&def.to_string()).unwrap()
    }

    /// The tasks started by `fx`: (token, step, function, params).
    fn started(fx: &[Effect]) -> Vec<(u64, String, String, Value)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::StartTask { token, step, task, .. } => {
                    Some((*token, step.clone(), task.function.clone(), task.params.clone()))
                }
                _ => None,
            })
            .collect()
    }

    fn ended(fx: &[Effect]) -> Option<&Result<Value, Failure>> {
        fx.iter().find_map(|e| match e {
            Effect::Ended(r) => Some(r),
            _ => None,
        })
    }

    #[test]
    fn data_flows_through_pass_task_choice_map_and_parallel() {
        let m = machine(json!({
            "StartAt": "Init",
            "States": {
                "Init": {"Type": "Pass", "Result": {"parts": [1, 2, 3]}, "ResultPath": "$.plan", "Next": "Gen"},
                "Gen": {"Type": "Task", "Resource": "volley:burst:teragen?workers=2", "Parameters": {"n.$": "$.plan.parts[2]"},
                        "ResultSelector": {"first.$": "$[0]"}, "ResultPath": "$.gen", "Next": "Big?"},
                "Big?": {"Type": "Choice", "Choices": [{"Variable": "$.gen.first.records", "NumericGreaterThan": 10, "Next": "Each"}],
                         "Default": "Small"},
                "Small": {"Type": "Fail", "Error": "TooSmall"},
                "Each": {"Type": "Map", "ItemsPath": "$.plan.parts", "MaxConcurrency": 2, "ResultPath": "$.squares",
                         "Parameters": {"x.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index"},
                         "Iterator": {"StartAt": "Sq", "States": {"Sq": {"Type": "Task", "Resource": "volley:function:square", "End": true}}},
                         "Next": "Both"},
                "Both": {"Type": "Parallel", "ResultPath": "$.both", "OutputPath": "$.both", "End": true, "Branches": [
                    {"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": "a", "End": true}}},
                    {"StartAt": "B", "States": {"B": {"Type": "Task", "Resource": "volley:function:hello", "End": true}}}
                ]}
            }
        }));
        let (mut exec, fx) = Exec::start(&m, "r1", json!({"who": "me"}));
        let generate = started(&fx);
        assert_eq!(generate.len(), 1);
        assert_eq!(
            (generate[0].1.as_str(), generate[0].2.as_str(), &generate[0].3),
            ("Gen", "teragen", &json!({"n": 3}))
        );
        let fx = exec.task_ended(&m, generate[0].0, Ok(json!([{"records": 50}, {"records": 50}])));
        // The Map starts two items of three (MaxConcurrency 2), each with its own input.
        let items = started(&fx);
        assert_eq!(items.iter().map(|t| t.1.as_str()).collect::<Vec<_>>(), ["Each[0]/Sq", "Each[1]/Sq"]);
        assert_eq!(items[1].3, json!({"x": 2, "i": 1}));
        let fx = exec.task_ended(&m, items[1].0, Ok(json!(4)));
        let third = started(&fx);
        assert_eq!(third.len(), 1, "a slot freed: the third item starts");
        assert_eq!(third[0].3, json!({"x": 3, "i": 2}));
        assert!(started(&exec.task_ended(&m, items[0].0, Ok(json!(1)))).is_empty());
        let fx = exec.task_ended(&m, third[0].0, Ok(json!(9)));
        let hello = started(&fx);
        assert_eq!(hello[0].1, "Both[branch 1]/B");
        let fx = exec.task_ended(&m, hello[0].0, Ok(json!("hi")));
        assert_eq!(ended(&fx), Some(&Ok(json!(["a", "hi"]))), "the Parallel's output, in branch order");
        assert_eq!(exec.outcome, Some(Ok(json!(["a", "hi"]))));
    }

    #[test]
    fn retry_then_catch_then_fail_and_a_wait() {
        let m = machine(json!({
            "StartAt": "Try",
            "States": {
                "Try": {"Type": "Task", "Resource": "volley:function:flaky",
                        "Retry": [{"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 2, "MaxAttempts": 2, "BackoffRate": 3}],
                        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Pause"}],
                        "End": true},
                "Pause": {"Type": "Wait", "Seconds": 5, "Next": "Give up"},
                "Give up": {"Type": "Fail", "Error": "Broken", "Cause": "it kept failing"}
            }
        }));
        let (mut exec, fx) = Exec::start(&m, "r2", json!({"k": 1}));
        let mut token = started(&fx)[0].0;
        let mut waits = Vec::new();
        for _ in 0..2 {
            let fx = exec.task_ended(&m, token, Err(Failure::new("States.TaskFailed", "boom")));
            let Some(Effect::Timer { token: t, after }) = fx.first() else { panic!("a retry waits: {fx:?}") };
            waits.push(after.as_secs_f64());
            let again = exec.timer_fired(&m, *t);
            let (tok, step, ..) = started(&again)[0].clone();
            assert_eq!(step, "Try", "a retry is the same step");
            assert_eq!(exec.task(tok).map(|t| t.1), Some(waits.len() as u32 + 1), "its next attempt");
            token = tok;
        }
        assert_eq!(waits, [2.0, 6.0], "IntervalSeconds, then times BackoffRate");
        let fx = exec.task_ended(&m, token, Err(Failure::new("States.TaskFailed", "boom")));
        let Some(Effect::Timer { token: wait, after }) = fx.first() else { panic!("caught, then the Wait: {fx:?}") };
        assert_eq!(after.as_secs(), 5);
        let fx = exec.timer_fired(&m, *wait);
        assert_eq!(ended(&fx), Some(&Err(Failure::new("Broken", "it kept failing"))));
    }

    #[test]
    fn a_failing_branch_stops_its_siblings_and_cancel_stops_everything() {
        let m = machine(json!({
            "StartAt": "P",
            "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
                {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "volley:function:a", "End": true}}},
                {"StartAt": "B", "States": {"B": {"Type": "Task", "Resource": "volley:function:b", "End": true}}}
            ]}}
        }));
        let (mut exec, fx) = Exec::start(&m, "r3", json!({}));
        let tasks = started(&fx);
        let fx = exec.task_ended(&m, tasks[0].0, Err(Failure::new("States.TaskFailed", "a broke")));
        assert!(fx.contains(&Effect::Cancel { tokens: vec![tasks[1].0] }), "{fx:?}");
        assert_eq!(ended(&fx), Some(&Err(Failure::new("States.TaskFailed", "a broke"))));
        assert!(exec.task_ended(&m, tasks[1].0, Ok(json!(1))).is_empty(), "a stopped task's end changes nothing");

        let (mut exec, _) = Exec::start(&m, "r4", json!({}));
        let fx = exec.cancel("a user asked");
        assert!(matches!(&fx[0], Effect::Cancel { tokens } if tokens.len() == 2));
        assert!(matches!(ended(&fx), Some(Err(f)) if f.error == "States.Cancelled"));
    }

    #[test]
    fn wrong_machines_are_refused_naming_the_place() {
        let refuse = |def: Value| super::super::parse(&def.to_string()).unwrap_err().to_string();
        let e = refuse(json!({"StartAt": "A", "States": {"A": {"Type": "Pass"}}}));
        assert!(e.contains("States.A") && e.contains("needs Next"), "{e}");
        let e =
            refuse(json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}, "B": {"Type": "Succeed"}}}));
        assert!(e.contains("reaches") && e.contains("\"B\""), "{e}");
        let e = refuse(json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}}));
        assert!(e.contains("Nowhere"), "{e}");
        let e = refuse(json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Heartbeat": 3}}}));
        assert!(e.contains("Heartbeat"), "{e}");
        let e = refuse(json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "InputPath": "$.a["}}}));
        assert!(e.contains("InputPath"), "{e}");
        let e = refuse(
            json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "arn:aws:states:::sns:publish", "End": true}}}),
        );
        assert!(e.contains("not a Volley task"), "{e}");
        let e = refuse(json!({"StartAt": "A", "States": {"A": {"Type": "Magic", "End": true}}}));
        assert!(e.contains("Magic"), "{e}");
    }
}
