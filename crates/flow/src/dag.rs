//! The DAG front-end: steps with dependencies, written in YAML (or JSON,
//! which is YAML too), checked whole before anything runs, and compiled onto
//! the trigger engine: one trigger per step, joining the `step.succeeded`
//! events of what it needs.
//!
//! ```yaml
//! steps:
//!   generate: {function: gen, workers: 4, params: {to: "${input.data}"}}
//!   sort:
//!     needs: [generate]
//!     function: terasort
//!     workers: 8
//!     granularity: 4
//!     params: {input: "${input.data}", output: "${input.sorted}"}
//!   check: {needs: [sort], kind: task, function: validate, params: {records: "${steps.sort.output[*].records_out}"}}
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use volley_proto::api::{BurstRequest, Granularity};
use volley_proto::flow::{Action, CloudEvent, Condition, Match, Run, Trigger};

use crate::template;
use crate::{Error, Result};

/// Most retries a step may ask for.
pub const MAX_RETRIES: u32 = 10;

/// The event that starts a run's root steps.
pub const RUN_STARTED: &str = "volley.run.started";
/// The event a step's success is announced by.
pub const STEP_SUCCEEDED: &str = "volley.step.succeeded";

/// A DAG as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dag {
    #[serde(default)]
    pub description: String,
    pub steps: BTreeMap<String, Step>,
}

/// What a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// One burst of `workers` workers.
    #[default]
    Burst,
    /// One worker per item of `items` (a list, or a reference to one), packed
    /// g per pack into one burst; each worker gets its item as its own parameters.
    Map,
    /// One worker.
    Task,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The steps whose success it waits for.
    #[serde(default)]
    pub needs: Vec<String>,
    #[serde(default)]
    pub kind: StepKind,
    pub function: String,
    /// Workers of a `burst` step.
    #[serde(default)]
    pub workers: Option<usize>,
    #[serde(default)]
    pub granularity: Option<Granularity>,
    #[serde(default)]
    pub transport: Option<String>,
    /// Every worker's parameters; `${input...}` and `${steps.NAME.output...}` are filled in.
    #[serde(default)]
    pub params: Value,
    /// The items of a `map` step.
    #[serde(default)]
    pub items: Option<Value>,
    /// Or the objects of a `map` step: every object under this storage prefix
    /// (`file://` or `s3://`, `${...}` filled in), listed when the step
    /// starts; each worker gets `{url, prefix, key, size}` of its object.
    #[serde(default)]
    pub objects: Option<String>,
    #[serde(default)]
    pub timeout_secs: Option<f64>,
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// Runs of the step after a failure (each a fresh burst).
    #[serde(default)]
    pub retries: u32,
    /// Seconds before a retry, doubled after each.
    #[serde(default = "one_second")]
    pub backoff_secs: f64,
    /// When its output is saved (ExoFlow's annotation).
    #[serde(default)]
    pub checkpoint: Checkpoint,
    /// Its output may differ from one execution to the next: once a step has
    /// read it, it is saved and never computed again.
    #[serde(default)]
    pub nondeterministic: bool,
}

/// When a step's output is saved in the run's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Checkpoint {
    /// In the transaction that starts the steps after it: never computed again.
    #[default]
    Sync,
    /// In the engine's next transaction, after the steps after it have
    /// started: a restart in between loses it, and a step that still needs
    /// it has it computed again.
    Async,
    /// Never (held in memory while steps still need it): a restart loses it,
    /// and a step that still needs it has it computed again. For outputs too
    /// large to keep in the run's record.
    Off,
}

fn one_second() -> f64 {
    1.0
}

/// A checked DAG and the order its steps can run in.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub dag: Dag,
    /// Every step after every step it needs.
    pub order: Vec<String>,
}

/// Reads and checks a DAG: names, dependencies (no cycle, no unknown step),
/// each kind's fields, and every `${...}` reference (it must name the input or
/// a step the referring step needs, directly or not).
pub fn parse(source: &str) -> Result<Plan> {
    let dag: Dag = serde_saphyr::from_str(source)
        .map_err(|e| Error::invalid("the definition", format!("not a DAG: {e}; see examples/flows/ for the format")))?;
    check(dag)
}

/// Checks a DAG already read.
pub fn check(dag: Dag) -> Result<Plan> {
    if dag.steps.is_empty() {
        return Err(Error::invalid("steps", "a DAG needs at least one step"));
    }
    for (name, step) in &dag.steps {
        let at = format!("step {name}");
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::invalid(at, "a step's name has 1 to 64 characters from A-Z a-z 0-9 _"));
        }
        for need in &step.needs {
            if need == name {
                return Err(Error::invalid(at, "a step cannot need itself"));
            }
            if !dag.steps.contains_key(need) {
                let known: Vec<&str> = dag.steps.keys().map(String::as_str).collect();
                return Err(Error::invalid(
                    at,
                    format!("needs {need:?}, which is not a step (steps: {})", known.join(", ")),
                ));
            }
        }
        check_kind(&at, step)?;
        if step.retries > MAX_RETRIES {
            return Err(Error::invalid(at, format!("retries must be at most {MAX_RETRIES}")));
        }
        if !(step.backoff_secs.is_finite() && step.backoff_secs >= 0.0 && step.backoff_secs <= 3600.0) {
            return Err(Error::invalid(at, "backoff_secs must be between 0 and 3600"));
        }
    }
    let order = order(&dag)?;
    for (name, step) in &dag.steps {
        let before = upstream(&dag, name);
        let mut refs = template::references(&step.params);
        if let Some(items) = &step.items {
            refs.extend(template::references(items));
        }
        if let Some(objects) = &step.objects {
            refs.extend(template::references(&Value::String(objects.clone())));
        }
        for r in refs {
            check_reference(name, &r, &before, &dag)?;
        }
    }
    Ok(Plan { dag, order })
}

fn check_kind(at: &str, step: &Step) -> Result<()> {
    match step.kind {
        StepKind::Burst => match step.workers {
            Some(n) if n >= 1 => Ok(()),
            _ => Err(Error::invalid(at, "a burst step needs workers (at least 1)")),
        },
        StepKind::Map => match (&step.items, &step.objects, step.workers) {
            (None, None, _) => Err(Error::invalid(
                at,
                "a map step needs items (a list, or a reference to one) or objects (a storage prefix)",
            )),
            (Some(_), Some(_), _) => Err(Error::invalid(at, "a map step maps items or objects, not both")),
            (_, _, Some(_)) => Err(Error::invalid(at, "a map step has one worker per item: leave workers out")),
            (Some(Value::Array(_) | Value::String(_)), None, None) => Ok(()),
            (Some(_), None, None) => Err(Error::invalid(at, "items must be a list or a ${...} reference to one")),
            (None, Some(prefix), None) => match prefix.split_once("://") {
                Some(("file" | "s3", _)) => Ok(()),
                _ if prefix.starts_with("${") => Ok(()),
                _ => Err(Error::invalid(at, format!("objects {prefix:?} is not a file:// or s3:// prefix"))),
            },
        },
        StepKind::Task => match step.workers {
            None | Some(1) => Ok(()),
            Some(_) => Err(Error::invalid(at, "a task is one worker: leave workers out")),
        },
    }
}

impl Plan {
    /// The steps whose outputs `step`'s references read.
    pub fn reads(&self, step: &str) -> BTreeSet<String> {
        let Some(s) = self.dag.steps.get(step) else { return BTreeSet::new() };
        let mut refs = template::references(&s.params);
        refs.extend(s.items.iter().flat_map(template::references));
        refs.extend(s.objects.iter().flat_map(|o| template::references(&Value::String(o.clone()))));
        refs.iter()
            .filter_map(|r| r.strip_prefix("steps."))
            .filter_map(|r| r.split(['.', '[']).next())
            .filter(|name| self.dag.steps.contains_key(*name))
            .map(String::from)
            .collect()
    }
}

/// Every step `name` needs, directly or not.
fn upstream(dag: &Dag, name: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&str> = dag.steps[name].needs.iter().map(String::as_str).collect();
    while let Some(s) = todo.pop() {
        if seen.insert(s.to_string()) {
            todo.extend(dag.steps[s].needs.iter().map(String::as_str));
        }
    }
    seen
}

fn check_reference(step: &str, path: &str, before: &BTreeSet<String>, dag: &Dag) -> Result<()> {
    let at = format!("step {step}, reference ${{{path}}}");
    let mut words = path.split(['.', '[']);
    match (words.next(), words.next(), words.next()) {
        (Some("input"), _, _) => Ok(()),
        (Some("steps"), Some(other), rest) => {
            if !dag.steps.contains_key(other) {
                return Err(Error::invalid(at, format!("{other:?} is not a step")));
            }
            if !before.contains(other) {
                return Err(Error::invalid(at, format!("{step} does not need {other:?}: add it to needs")));
            }
            if rest != Some("output") && !rest.is_some_and(|r| r.starts_with("output")) {
                return Err(Error::invalid(at, "a step's reference reads its output: steps.NAME.output..."));
            }
            Ok(())
        }
        _ => Err(Error::invalid(at, "a reference reads input... or steps.NAME.output...")),
    }
}

/// The steps in an order that respects `needs` (Kahn's algorithm, by name
/// among ready steps); a cycle is named.
fn order(dag: &Dag) -> Result<Vec<String>> {
    let mut left: BTreeMap<&str, usize> = dag.steps.iter().map(|(n, s)| (n.as_str(), s.needs.len())).collect();
    let mut out = Vec::new();
    while let Some(next) = left.iter().find(|(_, n)| **n == 0).map(|(s, _)| s.to_string()) {
        left.remove(next.as_str());
        for (name, step) in &dag.steps {
            if step.needs.contains(&next)
                && let Some(n) = left.get_mut(name.as_str())
            {
                *n -= 1;
            }
        }
        out.push(next);
    }
    if left.is_empty() {
        return Ok(out);
    }
    Err(Error::invalid("steps", format!("the dependencies form a cycle: {}", cycle(dag, &left))))
}

/// One cycle among the steps that could not be ordered, as `a -> b -> a`.
fn cycle(dag: &Dag, left: &BTreeMap<&str, usize>) -> String {
    let Some(start) = left.keys().next() else { return String::new() };
    let mut path = vec![start.to_string()];
    let mut at = start.to_string();
    while let Some(next) = dag.steps[&at].needs.iter().find(|n| left.contains_key(n.as_str())) {
        if let Some(i) = path.iter().position(|p| p == next) {
            let mut c = path[i..].to_vec();
            c.push(next.clone());
            return c.join(" -> ");
        }
        path.push(next.clone());
        at = next.clone();
    }
    path.join(" -> ")
}

impl Plan {
    /// The triggers of one run: a root step starts when the run starts;
    /// another when every step it needs has succeeded.
    pub fn triggers(&self, namespace: &str, run: &str) -> Vec<Trigger> {
        self.order
            .iter()
            .map(|name| {
                let step = &self.dag.steps[name];
                let (matcher, condition) = if step.needs.is_empty() {
                    (
                        Match { kind: RUN_STARTED.into(), source: None, subject: Some(run_subject(run)) },
                        Condition::Always,
                    )
                } else {
                    let among = step.needs.iter().map(|n| json!(step_subject(run, n))).collect();
                    (
                        Match { kind: STEP_SUCCEEDED.into(), source: None, subject: Some(format!("run/{run}/*")) },
                        Condition::Join {
                            count: Some(step.needs.len() as u64),
                            count_from: None,
                            key: Some("$.event.subject".into()),
                            among: Some(among),
                        },
                    )
                };
                Trigger {
                    id: trigger_id(run, name),
                    namespace: namespace.into(),
                    run: Some(run.into()),
                    matcher,
                    condition,
                    actions: vec![Action::Advance { run: run.into(), step: name.clone() }],
                    context: Value::Null,
                    once: true,
                    fired: 0,
                    error: None,
                }
            })
            .collect()
    }

    /// The storage prefix whose objects `step` of `run` maps over, filled in
    /// (None unless it is a map over objects).
    pub fn objects(&self, run: &Run, step: &str) -> Result<Option<String>> {
        let Some(prefix) = self.dag.steps.get(step).and_then(|s| s.objects.as_ref()) else { return Ok(None) };
        let at = |e: Error| Error::invalid(format!("step {step}"), e.to_string());
        match template::fill(&Value::String(prefix.clone()), &scope(run)).map_err(at)? {
            Value::String(url) if url.starts_with("file://") || url.starts_with("s3://") => Ok(Some(url)),
            other => Err(Error::invalid(
                format!("step {step}"),
                format!("objects is {other}, not a file:// or s3:// prefix"),
            )),
        }
    }

    /// The burst that runs `step` of `run` (its references filled from the
    /// run's input and its steps' outputs), and the idempotency key of this
    /// attempt. A map over objects has no workers yet: see [`Plan::objects`].
    pub fn request(&self, run: &Run, step: &str, attempt: u32) -> Result<(BurstRequest, String)> {
        let s = self.dag.steps.get(step).ok_or_else(|| Error::Reference(format!("no step {step:?}")))?;
        let scope = scope(run);
        let at = |e: Error| Error::invalid(format!("step {step}"), e.to_string());
        let params = template::fill(&s.params, &scope).map_err(at)?;
        let (workers, worker_params) = match s.kind {
            StepKind::Burst => (s.workers.unwrap_or(1), None),
            StepKind::Task => (1, None),
            // Listed when the step's burst is submitted: one worker per object then.
            StepKind::Map if s.objects.is_some() => (0, None),
            StepKind::Map => {
                let items = template::fill(s.items.as_ref().unwrap_or(&Value::Null), &scope).map_err(at)?;
                match items {
                    Value::Array(items) if !items.is_empty() => (items.len(), Some(items)),
                    Value::Array(_) => {
                        return Err(Error::invalid(
                            format!("step {step}"),
                            "its items are an empty list: nothing to map",
                        ));
                    }
                    other => {
                        return Err(Error::invalid(
                            format!("step {step}"),
                            format!("its items are {other}, not a list"),
                        ));
                    }
                }
            }
        };
        let key = idempotency_key(&run.id, step, attempt);
        let request = BurstRequest {
            function: s.function.clone(),
            workers,
            granularity: s.granularity.unwrap_or_default(),
            transport: s.transport.clone(),
            params,
            worker_params,
            timeout_secs: s.timeout_secs,
            queue_timeout_secs: None,
            memory_mb: s.memory_mb,
            retries: None,
            idempotency_key: Some(key.clone()),
            session: None,
        };
        Ok((request, key))
    }
}

/// What a step's `${...}` references read: the run's input and its steps' outputs.
fn scope(run: &Run) -> Value {
    let outputs: serde_json::Map<String, Value> = run
        .steps
        .iter()
        .map(|(name, rec)| (name.clone(), json!({"output": rec.held.as_ref().unwrap_or(&rec.output)})))
        .collect();
    json!({"input": run.input, "steps": outputs})
}

/// The subject of a run's own events.
pub fn run_subject(run: &str) -> String {
    format!("run/{run}")
}

/// The id of the trigger that starts `step` of `run`.
pub fn trigger_id(run: &str, step: &str) -> String {
    format!("run/{run}/{step}")
}

/// The subject of a step's events.
pub fn step_subject(run: &str, step: &str) -> String {
    format!("run/{run}/{step}")
}

/// The key a step's attempt is started with: a second start returns the first burst.
pub fn idempotency_key(run: &str, step: &str, attempt: u32) -> String {
    format!("run/{run}/{step}/{attempt}")
}

/// The run's start, as an event (the same id however often it is made).
pub fn run_started(run: &Run) -> CloudEvent {
    CloudEvent::new(
        format!("{}/started", run_subject(&run.id)),
        "volley/flow",
        RUN_STARTED,
        Some(run_subject(&run.id)),
        json!({"workflow": run.workflow}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIPELINE: &str = r#"
description: generate, sort, validate
steps:
  generate: {function: gen, workers: 2, params: {to: "${input.data}"}}
  sort:
    needs: [generate]
    function: terasort
    workers: 4
    granularity: 2
    params: {input: "${input.data}", parts: "${steps.generate.output[*].part}"}
  check: {needs: [sort], kind: task, function: validate, params: {sorted: "${steps.sort.output}"}}
"#;

    #[test]
    fn a_pipeline_is_ordered_and_compiled_to_one_trigger_per_step() {
        let plan = parse(PIPELINE).unwrap();
        assert_eq!(plan.order, vec!["generate", "sort", "check"]);
        let triggers = plan.triggers("ns", "r1");
        assert_eq!(triggers.len(), 3);
        assert_eq!(triggers[0].matcher.kind, RUN_STARTED);
        assert_eq!(triggers[1].matcher.kind, STEP_SUCCEEDED);
        assert!(matches!(&triggers[1].condition, Condition::Join { count: Some(1), .. }));
        assert!(triggers.iter().all(|t| t.once && t.run.as_deref() == Some("r1")));
    }

    #[test]
    fn json_is_read_too() {
        let plan = parse(r#"{"steps": {"only": {"function": "hello", "workers": 3}}}"#).unwrap();
        assert_eq!(plan.order, vec!["only"]);
    }

    #[test]
    fn cycles_unknown_steps_and_bad_references_are_named() {
        let err = |src: &str| parse(src).unwrap_err().to_string();
        let e = err("steps: {a: {needs: [b], function: f, workers: 1}, b: {needs: [a], function: f, workers: 1}}");
        assert!(e.contains("cycle: a -> b -> a"), "{e}");
        let e = err("steps: {a: {needs: [zz], function: f, workers: 1}}");
        assert!(e.contains("step a: needs \"zz\", which is not a step"), "{e}");
        let e = err(
            "steps: {a: {function: f, workers: 1}, b: {function: f, workers: 1, params: {x: \"${steps.a.output}\"}}}",
        );
        assert!(e.contains("b does not need \"a\": add it to needs"), "{e}");
        let e = err("steps: {a: {function: f, workers: 1, params: {x: \"${steps.q.output}\"}}}");
        assert!(e.contains("\"q\" is not a step"), "{e}");
        let e = err("steps: {a: {function: f, workers: 1, params: {x: \"${env.HOME}\"}}}");
        assert!(e.contains("reads input... or steps.NAME.output"), "{e}");
        let e = err("steps: {a: {function: f}}");
        assert!(e.contains("needs workers"), "{e}");
        let e = err("steps: {a: {kind: map, function: f}}");
        assert!(e.contains("needs items"), "{e}");
        let e = err("steps: {a: {kind: map, function: f, items: [1], objects: \"s3://b/p\"}}");
        assert!(e.contains("items or objects, not both"), "{e}");
        let e = err("steps: {a: {kind: map, function: f, objects: \"/tmp/in\"}}");
        assert!(e.contains("not a file:// or s3:// prefix"), "{e}");
        let e =
            err("steps: {a: {kind: map, function: f, objects: \"${steps.b.output}\"}, b: {kind: task, function: f}}");
        assert!(e.contains("a does not need \"b\""), "{e}");
        let e = err("steps: {a: {function: f, workers: 1, colour: red}}");
        assert!(e.contains("colour"), "{e}");
        let e = err("steps: {}");
        assert!(e.contains("at least one step"), "{e}");
    }

    #[test]
    fn requests_are_filled_from_the_input_and_the_outputs() {
        let plan = parse(PIPELINE).unwrap();
        let mut run = Run {
            id: "r1".into(),
            namespace: "ns".into(),
            workflow: "w".into(),
            input: json!({"data": "file:///tmp/d"}),
            state: volley_proto::flow::RunState::Running,
            steps: BTreeMap::new(),
            created_at: 0,
            finished_at: None,
            error: None,
            output: None,
            execution: None,
        };
        for name in &plan.order {
            run.steps.insert(name.clone(), volley_proto::flow::StepRecord::waiting());
        }
        run.steps.get_mut("generate").unwrap().output = json!([{"part": "p0"}, {"part": "p1"}]);
        let (req, key) = plan.request(&run, "sort", 2).unwrap();
        assert_eq!(req.params, json!({"input": "file:///tmp/d", "parts": ["p0", "p1"]}));
        assert_eq!((req.workers, req.granularity), (4, Granularity::Fixed(2)));
        assert_eq!(key, "run/r1/sort/2");
        let (req, _) = plan.request(&run, "check", 1).unwrap();
        assert_eq!(req.workers, 1);
    }

    #[test]
    fn a_map_step_has_a_worker_per_item() {
        let plan = parse("steps: {m: {kind: map, function: f, granularity: 2, items: \"${input.files}\"}}").unwrap();
        let run = Run {
            id: "r".into(),
            namespace: "ns".into(),
            workflow: "w".into(),
            input: json!({"files": ["a", "b", "c"]}),
            state: volley_proto::flow::RunState::Running,
            steps: BTreeMap::new(),
            created_at: 0,
            finished_at: None,
            error: None,
            output: None,
            execution: None,
        };
        let (req, _) = plan.request(&run, "m", 1).unwrap();
        assert_eq!(req.workers, 3);
        assert_eq!(req.worker_params, Some(vec![json!("a"), json!("b"), json!("c")]));
        let empty = Run { input: json!({"files": []}), ..run };
        assert!(plan.request(&empty, "m", 1).unwrap_err().to_string().contains("empty list"));
        let plan = parse("steps: {m: {kind: map, function: f, objects: \"${input.texts}/in\"}}").unwrap();
        let run = Run { input: json!({"texts": "s3://bucket/job"}), ..empty };
        assert_eq!(plan.objects(&run, "m").unwrap().as_deref(), Some("s3://bucket/job/in"));
        assert_eq!(plan.request(&run, "m", 1).unwrap().0.worker_params, None, "listed when the burst is submitted");
        let run = Run { input: json!({"texts": "/home/me"}), ..run };
        assert!(plan.objects(&run, "m").unwrap_err().to_string().contains("not a file:// or s3:// prefix"));
    }
}
