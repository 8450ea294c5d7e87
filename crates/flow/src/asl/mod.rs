//! The Amazon States Language front-end: a state machine (JSON or YAML) is
//! read, checked whole (unknown fields and states, missing `Next`, states
//! nothing reaches, paths that do not parse), and run by [`exec::Exec`], which
//! the engine drives with the ends of tasks and timers. Supported: Task, Pass,
//! Choice, Wait, Parallel, Map (`ItemsPath`, `MaxConcurrency`), Succeed, Fail;
//! `InputPath`, `Parameters`, `ResultSelector`, `ResultPath`, `OutputPath`;
//! `Retry` and `Catch`; the intrinsic functions in [`intrinsics::SUPPORTED`]. A Task runs a Volley function or burst ([`task`]).

pub mod choice;
pub mod exec;
pub mod intrinsics;
pub mod model;
pub mod paths;
pub mod run;
pub mod task;

use std::collections::{BTreeSet, VecDeque};

use model::{Machine, State};
use serde_json::Value;

use crate::{Error, Result};

/// Reads and checks a state machine.
pub fn parse(source: &str) -> Result<Machine> {
    let machine: Machine = serde_saphyr::from_str(source)
        .map_err(|e| Error::invalid("definition", format!("not a state machine (Amazon States Language): {e}")))?;
    check(&machine, "")?;
    Ok(machine)
}

/// Checks `machine` (at `place`, for nested ones) whole.
pub fn check(machine: &Machine, place: &str) -> Result<()> {
    let at = |state: &str| format!("{place}States.{state}");
    if !machine.states.contains_key(&machine.start_at) {
        return Err(Error::invalid(format!("{place}StartAt"), format!("names no state: {:?}", machine.start_at)));
    }
    let exists = |name: &str, from: &str, field: &str| -> Result<()> {
        if machine.states.contains_key(name) {
            Ok(())
        } else {
            Err(Error::invalid(format!("{}.{field}", at(from)), format!("names no state: {name:?}")))
        }
    };
    for (name, state) in &machine.states {
        if name.is_empty() || name.len() > 80 {
            return Err(Error::invalid(at(name), "a state's name has 1 to 80 characters"));
        }
        if let Some((next, end)) = state.transition() {
            match (next, end) {
                (Some(n), None | Some(false)) => exists(n, name, "Next")?,
                (None, Some(true)) => {}
                (Some(_), Some(true)) => return Err(Error::invalid(at(name), "has both Next and End; keep one")),
                (None, _) => {
                    return Err(Error::invalid(
                        at(name),
                        format!("a {} state needs Next (or End: true)", state.kind()),
                    ));
                }
            }
        }
        for c in state.catchers() {
            exists(&c.next, name, "Catch.Next")?;
            paths::check(&c.result_path, true).map_err(|e| Error::invalid(format!("{}.Catch", at(name)), e))?;
            if c.error_equals.is_empty() {
                return Err(Error::invalid(format!("{}.Catch", at(name)), "ErrorEquals names no error"));
            }
        }
        for r in state.retriers() {
            if r.error_equals.is_empty() || r.interval_seconds < 0.0 || r.backoff_rate < 1.0 {
                return Err(Error::invalid(
                    format!("{}.Retry", at(name)),
                    "needs ErrorEquals, IntervalSeconds >= 0 and BackoffRate >= 1",
                ));
            }
        }
        check_state(name, state, &at(name), &exists)?;
    }
    // Every state must be reachable from StartAt.
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([machine.start_at.clone()]);
    while let Some(name) = queue.pop_front() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Some(state) = machine.states.get(&name) else { continue };
        let mut next: Vec<String> = state.catchers().iter().map(|c| c.next.clone()).collect();
        if let Some((Some(n), _)) = state.transition() {
            next.push(n.clone());
        }
        if let State::Choice(c) = state {
            next.extend(c.choices.iter().filter_map(|r| r.get("Next").and_then(Value::as_str).map(String::from)));
            next.extend(c.default.clone());
        }
        queue.extend(next);
    }
    let unreachable: Vec<&String> = machine.states.keys().filter(|k| !seen.contains(*k)).collect();
    if !unreachable.is_empty() {
        return Err(Error::invalid(
            format!("{place}States"),
            format!("no path from StartAt reaches {unreachable:?}; remove them or lead to them"),
        ));
    }
    Ok(())
}

fn check_state(name: &str, state: &State, at: &str, exists: &dyn Fn(&str, &str, &str) -> Result<()>) -> Result<()> {
    let bad = |e: String| Error::invalid(at, e);
    let io = |input: &model::MaybePath, output: &model::MaybePath| -> Result<()> {
        paths::check(input, false).map_err(|e| bad(format!("InputPath: {e}")))?;
        paths::check(output, false).map_err(|e| bad(format!("OutputPath: {e}")))
    };
    let payload = |field: &str, v: &Option<Value>| -> Result<()> {
        v.as_ref().map_or(Ok(()), |v| paths::check_template(v).map_err(|e| bad(format!("{field}: {e}"))))
    };
    let result = |p: &model::MaybePath| paths::check(p, true).map_err(|e| bad(format!("ResultPath: {e}")));
    match state {
        State::Task(t) => {
            io(&t.input_path, &t.output_path)?;
            payload("Parameters", &t.parameters)?;
            payload("ResultSelector", &t.result_selector)?;
            result(&t.result_path)?;
            task::request(&t.resource, Value::Null, t.timeout_seconds).map_err(bad)?;
        }
        State::Pass(p) => {
            io(&p.input_path, &p.output_path)?;
            payload("Parameters", &p.parameters)?;
            result(&p.result_path)?;
        }
        State::Choice(c) => {
            io(&c.input_path, &c.output_path)?;
            if c.choices.is_empty() {
                return Err(bad("a Choice state needs Choices".into()));
            }
            for (i, rule) in c.choices.iter().enumerate() {
                choice::check(rule, true).map_err(|e| bad(format!("Choices[{i}]: {e}")))?;
                if let Some(next) = rule.get("Next").and_then(Value::as_str) {
                    exists(next, name, &format!("Choices[{i}].Next"))?;
                }
            }
            if let Some(d) = &c.default {
                exists(d, name, "Default")?;
            }
        }
        State::Wait(w) => {
            io(&w.input_path, &w.output_path)?;
            let given =
                [w.seconds.is_some(), w.seconds_path.is_some(), w.timestamp.is_some(), w.timestamp_path.is_some()];
            if given.iter().filter(|g| **g).count() != 1 {
                return Err(bad(
                    "a Wait state takes exactly one of Seconds, SecondsPath, Timestamp, TimestampPath".into()
                ));
            }
        }
        State::Succeed(s) => io(&s.input_path, &s.output_path)?,
        State::Fail(_) => {}
        State::Parallel(p) => {
            io(&p.input_path, &p.output_path)?;
            payload("Parameters", &p.parameters)?;
            payload("ResultSelector", &p.result_selector)?;
            result(&p.result_path)?;
            if p.branches.is_empty() {
                return Err(bad("a Parallel state needs Branches".into()));
            }
            for (i, b) in p.branches.iter().enumerate() {
                check(b, &format!("{at}.Branches[{i}]."))?;
            }
        }
        State::Map(m) => {
            io(&m.input_path, &m.output_path)?;
            payload("Parameters", &m.parameters)?;
            payload("ResultSelector", &m.result_selector)?;
            result(&m.result_path)?;
            if let Some(p) = &m.items_path {
                paths::check(&Some(Value::String(p.clone())), false).map_err(|e| bad(format!("ItemsPath: {e}")))?;
            }
            check(&m.iterator, &format!("{at}.Iterator."))?;
        }
    }
    Ok(())
}
