//! Workflows of bursts as the API shows them: events (CloudEvents 1.0),
//! triggers, deployed workflows and their runs. The engine that applies them
//! is `volley-flow`; the controller keeps them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::BurstRequest;

/// An event, in the CloudEvents 1.0 JSON format.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    /// Always `1.0`.
    #[serde(default = "spec_version")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^1\\.0$"))]
    pub specversion: String,
    /// Unique per source: an event seen twice is applied once.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 512))]
    pub id: String,
    /// Where it comes from, e.g. `volley/platform` or `myapp/uploader`.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 512))]
    pub source: String,
    /// What happened, e.g. `volley.burst.succeeded`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 512))]
    pub kind: String,
    /// What it is about, e.g. a burst's id or `run/ID/step`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 512))]
    pub subject: Option<String>,
    /// When it happened (RFC 3339); the engine sets it when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
        )
    )]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    #[serde(default)]
    pub data: Value,
}

fn spec_version() -> String {
    "1.0".into()
}

impl CloudEvent {
    /// An event of `kind` from `source` about `subject`, with `data`.
    pub fn new(id: impl Into<String>, source: &str, kind: &str, subject: Option<String>, data: Value) -> Self {
        CloudEvent {
            specversion: spec_version(),
            id: id.into(),
            source: source.into(),
            kind: kind.into(),
            subject,
            time: None,
            datacontenttype: Some("application/json".into()),
            data,
        }
    }
}

/// `POST /v1/events`: one event, or a list of them.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Events {
    One(Box<CloudEvent>),
    Many(Vec<CloudEvent>),
}

impl Events {
    pub fn into_vec(self) -> Vec<CloudEvent> {
        match self {
            Events::One(e) => vec![*e],
            Events::Many(v) => v,
        }
    }
}

/// How events sent over the API were taken (once the answer comes, they are durable).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ingested {
    /// Logged and applied to the triggers they match.
    pub accepted: usize,
    /// Logged before (same source and id): applied once, not again.
    pub duplicates: usize,
}

/// An event as the log keeps it: its position and namespace.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedEvent {
    pub seq: u64,
    pub namespace: String,
    /// When the engine received it, µs since the Unix epoch.
    pub received_at: u64,
    pub event: CloudEvent,
}

/// Which events a trigger listens to.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// The event type, exactly.
    #[serde(rename = "type")]
    pub kind: String,
    /// The source, exactly (absent: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The subject: exact, or a pattern where `*` stands for any run of characters (absent: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// When a trigger fires.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// On every matching event.
    Always,
    /// Once `count` events have come (each event is applied once: the log
    /// drops a repeated id); with `key` (a JSONPath into `{"event": ...,
    /// "context": ...}`), once `count` distinct values of it have. The count
    /// may be read from the context instead (`count_from`, a JSONPath).
    Join {
        #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::whole::option")]
        count: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count_from: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// Only these key values count (the dependencies of a step, say).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        among: Option<Vec<Value>>,
    },
    /// When the JSONPath `path` (over `{"event": ..., "context": ...}`)
    /// selects a value, equal to `equals` if given.
    Predicate {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        equals: Option<Value>,
    },
}

/// What a trigger does when it fires.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Start a burst; `${...}` in its parameters are filled from the event and the context.
    StartBurst {
        request: Box<BurstRequest>,
        /// Makes a repeated start (after a crash) return the first burst.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
    },
    /// Emit an event (its fields may use `${...}`).
    Emit { event: Box<CloudEvent> },
    /// Start a step of a workflow run (workflows' own triggers only).
    Advance { run: String, step: String },
    /// Start a run of a deployed workflow; `${...}` in its input are filled
    /// from the event and the context.
    StartRun {
        #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9_-]{1,64}$"))]
        workflow: String,
        #[serde(default)]
        input: Value,
    },
    /// POST the event (as JSON) to `url`, an `http://` or `https://` address;
    /// retried a few times, then given up with a warning in the trigger.
    Webhook {
        #[cfg_attr(feature = "openapi", schema(pattern = "^https?://.+", max_length = 2048))]
        url: String,
    },
}

/// A trigger: match, condition, actions and its durable context.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub id: String,
    pub namespace: String,
    /// The workflow run it belongs to, if any (removed with the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    #[serde(rename = "match")]
    pub matcher: Match,
    pub condition: Condition,
    pub actions: Vec<Action>,
    /// What the condition keeps between events (a join's arrivals, say).
    #[serde(default)]
    pub context: Value,
    /// Fire once, then stop listening.
    #[serde(default)]
    pub once: bool,
    /// How many times it fired.
    #[serde(default)]
    pub fired: u64,
    /// Why its condition last failed to evaluate, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `POST /v1/triggers`: a trigger of your own.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "id": "on-upload",
    "match": {"type": "upload.done"},
    "condition": {"kind": "join", "count": 3},
    "actions": [{"kind": "emit", "event": {"id": "all-uploaded", "source": "my-trigger", "type": "uploads.complete"}}]
})))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    /// Its name in your namespace.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9_-]{1,64}$"))]
    pub id: String,
    #[serde(rename = "match")]
    pub matcher: Match,
    #[serde(default = "always")]
    pub condition: Condition,
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 16))]
    pub actions: Vec<Action>,
    /// Its starting context (what `${context...}` and JSONPath `$.context` read).
    #[serde(default)]
    pub context: Value,
    /// Fire once, then stop listening (and be removed).
    #[serde(default)]
    pub once: bool,
}

fn always() -> Condition {
    Condition::Always
}

/// A workflow's definition language.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowKind {
    /// Steps with dependencies (YAML or JSON).
    Dag,
    /// A state machine in Amazon States Language (JSON or YAML).
    StateMachine,
    /// An orchestrator function (`{"function": NAME}`) that calls bursts,
    /// sleeps and waits for events with `volley_sdk::orchestrate`.
    Code,
}

/// `PUT /v1/workflows/{name}`: a definition to deploy.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "kind": "dag",
    "source": "steps:\n  hi: {function: hello, workers: 2}\n  bye: {needs: [hi], kind: task, function: hello}\n"
})))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowDefinition {
    pub kind: WorkflowKind,
    /// The definition as written (YAML or JSON text).
    pub source: String,
    #[serde(default)]
    pub description: String,
}

/// A deployed workflow.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workflow {
    pub name: String,
    pub namespace: String,
    pub kind: WorkflowKind,
    pub source: String,
    pub description: String,
    /// Its steps, in an order that respects their dependencies.
    pub steps: Vec<String>,
    /// Which step leads to which: a DAG step after each step it needs; a
    /// state machine's top-level transitions (`Next`, choices, `Default`,
    /// catchers). Empty for workflows as code (their steps are found as they run).
    #[serde(default)]
    pub edges: Vec<Edge>,
    pub deployed_at: u64,
}

/// One arrow of a workflow's graph.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
}

/// Where a run or a step is in its life.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Waiting for what it depends on.
    Waiting,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunState {
    /// Whether it has ended.
    pub fn is_final(self) -> bool {
        matches!(self, RunState::Succeeded | RunState::Failed | RunState::Cancelled)
    }

    /// The state's name as the API spells it.
    pub fn name(self) -> &'static str {
        match self {
            RunState::Waiting => "waiting",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        }
    }
}

/// One step of a run.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub state: RunState,
    /// How many times it was started (more than 1: it was retried).
    pub attempts: u32,
    /// The burst of each attempt.
    #[serde(default)]
    pub bursts: Vec<String>,
    /// What it produced (every worker's result, in rank order).
    #[serde(default)]
    pub output: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
    /// Why each failed attempt failed.
    #[serde(default)]
    pub errors: Vec<String>,
    /// Its output is not in the store (`checkpoint: off`, or `async` not yet
    /// written): after a restart it is computed again if a step still needs it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub output_unsaved: bool,
    /// The attempts that computed its output again because a restart lost it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recomputed_at: Vec<u32>,
    /// The attempt it starts once the outputs it reads, being computed
    /// again, are back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<u32>,
    /// An unsaved output, held by the engine in memory only (never serialized:
    /// that is what makes it unsaved).
    #[serde(skip)]
    pub held: Option<Value>,
}

impl StepRecord {
    /// The step ended at `now`: succeeded with its output, or failed with the error recorded.
    pub fn finish(&mut self, outcome: Result<Value, String>, now: u64) {
        self.finished_at = Some(now);
        match outcome {
            Ok(output) => {
                self.state = RunState::Succeeded;
                self.output = output;
            }
            Err(error) => {
                self.state = RunState::Failed;
                self.errors.push(error);
            }
        }
    }

    /// A step that has not started.
    pub fn waiting() -> Self {
        StepRecord {
            state: RunState::Waiting,
            attempts: 0,
            bursts: Vec::new(),
            output: Value::Null,
            started_at: None,
            finished_at: None,
            errors: Vec::new(),
            output_unsaved: false,
            recomputed_at: Vec::new(),
            next_attempt: None,
            held: None,
        }
    }
}

/// `POST /v1/runs`: start a run of a deployed workflow.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9_-]{1,64}$"))]
    pub workflow: String,
    /// The run's input (`${input...}` in the definition).
    #[serde(default)]
    pub input: Value,
}

/// One run of a workflow.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    pub namespace: String,
    pub workflow: String,
    pub input: Value,
    pub state: RunState,
    /// Every step by name.
    pub steps: BTreeMap<String, StepRecord>,
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
    /// Why it failed (the step and its cause) or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What it produced (a state machine's output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Where a state machine's execution is (the engine's record of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<Value>,
}

/// `POST /v1/timers`: events on a schedule.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"id": "nightly", "cron": "0 0 2 * * *", "data": {"job": "sort"}})))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerRequest {
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9_-]{1,64}$"))]
    pub id: String,
    /// Every this many seconds (at least 0.2), from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.2, maximum = 31536000))]
    pub every_secs: Option<f64>,
    /// Or a cron schedule, UTC, with seconds: `sec min hour day month weekday [year]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 256))]
    pub cron: Option<String>,
    /// Fire this many times, then stop (absent: until deleted).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::whole::option")]
    pub times: Option<u64>,
    /// The `data` of each event.
    #[serde(default)]
    pub data: Value,
}

/// A timer: each firing is an event `volley.timer.fired` from `volley/timer`,
/// subject the timer's id, id `TIMER/SLOT` (SLOT: the scheduled time, in µs).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timer {
    pub id: String,
    pub namespace: String,
    pub every_secs: Option<f64>,
    pub cron: Option<String>,
    pub times: Option<u64>,
    pub data: Value,
    /// How many times it fired.
    pub fired: u64,
    /// When it fires next (µs since the Unix epoch).
    pub next_at: Option<u64>,
}

/// `POST /v1/sources`: events from outside the platform. Give exactly one of
/// `storage`, `redis_stream`, `rabbitmq_queue`, `nats_subject`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"id": "uploads", "storage": {"url": "s3://volley-test/uploads"}})))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRequest {
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9_-]{1,64}$"))]
    pub id: String,
    /// Objects created under a prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSource>,
    /// Entries added to this Redis stream (of the platform's Redis), read by a consumer group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9_.:-]{1,200}$"))]
    pub redis_stream: Option<String>,
    /// Messages of this RabbitMQ queue (of the platform's RabbitMQ), acknowledged once logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9_.:-]{1,200}$"))]
    pub rabbitmq_queue: Option<String>,
    /// Messages published on this NATS subject (of the platform's NATS; at most once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9_.:-]{1,200}$"))]
    pub nats_subject: Option<String>,
}

/// Watches a prefix of object storage: each object that appears after the
/// source is made (or changes size) is an event `volley.storage.object.created`
/// from `volley/storage/ID`, subject the object's key, data `{url, key, size}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSource {
    /// `s3://bucket/prefix`, or `file:///dir` (only on a controller without API keys).
    #[cfg_attr(feature = "openapi", schema(max_length = 2048))]
    pub url: String,
    /// How often the prefix is listed (at least 1 s).
    #[serde(default = "five_seconds")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 86400))]
    pub every_secs: f64,
}

fn five_seconds() -> f64 {
    5.0
}

/// A source, as kept.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub id: String,
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_stream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbitmq_queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_subject: Option<String>,
    /// Listings done (storage).
    pub polls: u64,
    /// Objects or messages reported as events.
    pub reported: u64,
    /// Why the last listing or connection failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a workflow-as-code orchestrator asks for (see `volley_sdk::orchestrate`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Command {
    /// Run a burst; its result is every worker's result, in rank order.
    Burst { request: Box<BurstRequest> },
    /// Wait this long.
    Sleep { secs: f64 },
    /// Wait for an event of this type (and subject, if given); its result is the event.
    WaitEvent {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
    },
}

/// A command as the orchestrator issued it: its place in the orchestration's
/// order and the line of code that asked.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issued {
    pub seq: u32,
    pub command: Command,
    /// `file:line` of the call.
    pub at: String,
}

/// A command that finished, as the history a replay reads.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completed {
    pub issued: Issued,
    /// Its result; absent if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The parameters of one replay of an orchestrator.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayInput {
    pub run: String,
    pub input: Value,
    pub history: Vec<Completed>,
}

/// How one replay of an orchestrator ended (its worker's result).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "replay", rename_all = "snake_case")]
pub enum Replay {
    /// The orchestration returned: the run's output.
    Done { output: Value },
    /// It waits for these (new ones are started; the rest are in flight).
    Suspended { waiting: Vec<Issued> },
}
