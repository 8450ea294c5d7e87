//! Amazon States Language as written: the states this engine runs and every
//! field it reads. An unknown field or state type is refused by name (serde's
//! `deny_unknown_fields`), so a definition never runs with a field ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A state machine: where it starts and its states.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Machine {
    #[serde(default)]
    pub comment: Option<String>,
    pub start_at: String,
    pub states: BTreeMap<String, State>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "Type")]
pub enum State {
    Task(Task),
    Pass(Pass),
    Choice(Choice),
    Wait(Wait),
    Succeed(Succeed),
    Fail(Fail),
    Parallel(Parallel),
    Map(Map),
}

/// `InputPath`, `OutputPath` and `ResultPath` may be absent (`$`), a path, or
/// `null` (nothing passes): kept as the JSON written, `Some(Null)` for `null`.
pub type MaybePath = Option<Value>;

/// Reads a present field as written, `null` included (serde's `Option` would
/// read `null` as absent, and `ResultPath: null` means something else).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<MaybePath, D::Error> {
    Value::deserialize(d).map(Some)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Task {
    /// `volley:function:NAME` (one worker) or `volley:burst:NAME?workers=N&granularity=G&transport=T`.
    pub resource: String,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub end: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub input_path: MaybePath,
    #[serde(default, deserialize_with = "present")]
    pub output_path: MaybePath,
    #[serde(default)]
    pub parameters: Option<Value>,
    #[serde(default)]
    pub result_selector: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub result_path: MaybePath,
    #[serde(default)]
    pub retry: Vec<Retrier>,
    #[serde(default)]
    pub catch: Vec<Catcher>,
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Pass {
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub end: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub input_path: MaybePath,
    #[serde(default, deserialize_with = "present")]
    pub output_path: MaybePath,
    #[serde(default)]
    pub parameters: Option<Value>,
    #[serde(default)]
    pub result: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub result_path: MaybePath,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Choice {
    #[serde(default)]
    pub comment: Option<String>,
    pub choices: Vec<Value>,
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub input_path: MaybePath,
    #[serde(default, deserialize_with = "present")]
    pub output_path: MaybePath,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Wait {
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub end: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub input_path: MaybePath,
    #[serde(default, deserialize_with = "present")]
    pub output_path: MaybePath,
    #[serde(default)]
    pub seconds: Option<f64>,
    #[serde(default)]
    pub seconds_path: Option<String>,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub timestamp_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Succeed {
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub input_path: MaybePath,
    #[serde(default, deserialize_with = "present")]
    pub output_path: MaybePath,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Fail {
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub cause: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Parallel {
    pub branches: Vec<Machine>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub end: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub input_path: MaybePath,
    #[serde(default, deserialize_with = "present")]
    pub output_path: MaybePath,
    #[serde(default)]
    pub parameters: Option<Value>,
    #[serde(default)]
    pub result_selector: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub result_path: MaybePath,
    #[serde(default)]
    pub retry: Vec<Retrier>,
    #[serde(default)]
    pub catch: Vec<Catcher>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Map {
    /// The machine run for each item (`ItemProcessor` in newer definitions).
    #[serde(alias = "ItemProcessor")]
    pub iterator: Machine,
    #[serde(default)]
    pub items_path: Option<String>,
    /// At most this many items at once (0: no limit).
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub end: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub input_path: MaybePath,
    #[serde(default, deserialize_with = "present")]
    pub output_path: MaybePath,
    /// Each item's input (`ItemSelector` in newer definitions).
    #[serde(default, alias = "ItemSelector")]
    pub parameters: Option<Value>,
    #[serde(default)]
    pub result_selector: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub result_path: MaybePath,
    #[serde(default)]
    pub retry: Vec<Retrier>,
    #[serde(default)]
    pub catch: Vec<Catcher>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Retrier {
    pub error_equals: Vec<String>,
    #[serde(default = "one_second")]
    pub interval_seconds: f64,
    #[serde(default = "three")]
    pub max_attempts: u32,
    #[serde(default = "two")]
    pub backoff_rate: f64,
}

fn one_second() -> f64 {
    1.0
}

fn three() -> u32 {
    3
}

fn two() -> f64 {
    2.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Catcher {
    pub error_equals: Vec<String>,
    pub next: String,
    #[serde(default, deserialize_with = "present")]
    pub result_path: MaybePath,
}

impl State {
    /// The states it may go to next: `Next`, each choice's `Next` and the
    /// `Default`, each catcher's `Next` (what a run's graph draws as edges).
    pub fn successors(&self) -> Vec<&str> {
        fn catchers(c: &[Catcher]) -> impl Iterator<Item = &str> {
            c.iter().map(|c| c.next.as_str())
        }
        let mut out: Vec<&str> = match self {
            State::Task(t) => [t.next.as_deref()].into_iter().flatten().chain(catchers(&t.catch)).collect(),
            State::Pass(p) => p.next.as_deref().into_iter().collect(),
            State::Wait(w) => w.next.as_deref().into_iter().collect(),
            State::Choice(c) => c
                .choices
                .iter()
                .filter_map(|rule| rule.get("Next").and_then(Value::as_str))
                .chain(c.default.as_deref())
                .collect(),
            State::Parallel(p) => [p.next.as_deref()].into_iter().flatten().chain(catchers(&p.catch)).collect(),
            State::Map(m) => [m.next.as_deref()].into_iter().flatten().chain(catchers(&m.catch)).collect(),
            State::Succeed(_) | State::Fail(_) => Vec::new(),
        };
        out.dedup();
        out
    }

    /// The state's type as ASL names it.
    pub fn kind(&self) -> &'static str {
        match self {
            State::Task(_) => "Task",
            State::Pass(_) => "Pass",
            State::Choice(_) => "Choice",
            State::Wait(_) => "Wait",
            State::Succeed(_) => "Succeed",
            State::Fail(_) => "Fail",
            State::Parallel(_) => "Parallel",
            State::Map(_) => "Map",
        }
    }

    /// `Next` and `End` of the states that have them.
    pub fn transition(&self) -> Option<(&Option<String>, &Option<bool>)> {
        match self {
            State::Task(s) => Some((&s.next, &s.end)),
            State::Pass(s) => Some((&s.next, &s.end)),
            State::Wait(s) => Some((&s.next, &s.end)),
            State::Parallel(s) => Some((&s.next, &s.end)),
            State::Map(s) => Some((&s.next, &s.end)),
            State::Choice(_) | State::Succeed(_) | State::Fail(_) => None,
        }
    }

    /// The catchers of the states that have them.
    pub fn catchers(&self) -> &[Catcher] {
        match self {
            State::Task(s) => &s.catch,
            State::Parallel(s) => &s.catch,
            State::Map(s) => &s.catch,
            _ => &[],
        }
    }

    pub fn retriers(&self) -> &[Retrier] {
        match self {
            State::Task(s) => &s.retry,
            State::Parallel(s) => &s.retry,
            State::Map(s) => &s.retry,
            _ => &[],
        }
    }
}
