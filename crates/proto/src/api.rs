//! The public HTTP API's bodies (JSON under `/v1`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /v1/bursts`: start one burst of `workers` workers.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"function": "hello", "workers": 4, "granularity": 2})))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurstRequest {
    /// A built-in function or a deployed one.
    pub function: String,
    /// N: how many workers (ranks 0..N-1).
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub workers: usize,
    /// Workers per pack, or `"auto"` (the largest packs free capacity allows).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = granularity_schema))]
    pub granularity: Granularity,
    /// `tcp`, `uds`, `shm`, `redis`, `redis-streams`, `rabbitmq`, `nats`, `s3`; absent:
    /// `uds` when every pack lands on one host, `tcp` otherwise.
    #[serde(default)]
    pub transport: Option<String>,
    /// Parameters every worker receives.
    #[serde(default)]
    pub params: Value,
    /// One value per worker (rank order), if given.
    #[serde(default)]
    pub worker_params: Option<Vec<Value>>,
    /// Longest the burst may run once started (default 300 s).
    #[serde(default)]
    pub timeout_secs: Option<f64>,
    /// Longest the burst may wait for capacity before it fails (default 60 s).
    #[serde(default)]
    pub queue_timeout_secs: Option<f64>,
    /// Memory each worker needs, in MiB (default 16).
    #[serde(default, deserialize_with = "crate::whole::option")]
    pub memory_mb: Option<u64>,
    /// How many times a failed burst is run again, whole, on fresh packs (default 0, at most 10).
    #[serde(default, deserialize_with = "crate::whole::option")]
    pub retries: Option<u32>,
    /// Makes a submit safe to repeat: a second submit with the same key (in the
    /// same namespace) returns the burst the first one started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 256))]
    pub idempotency_key: Option<String>,
    /// The program session the burst belongs to (`/v1/sessions`): it is
    /// cancelled when the session ends (its program ended or died).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^s[0-9a-f]{16}$"))]
    pub session: Option<String>,
}

/// The schema of [`Granularity`]: a number of workers or `"auto"`.
#[cfg(feature = "openapi")]
pub(crate) fn granularity_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)))
        .item(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["auto"])))
        .description(Some("Workers per pack (the last one may be smaller), or \"auto\""))
        .into()
}

/// Workers per pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(untagged)]
pub enum Granularity {
    /// Packs of this many workers (the last one may be smaller).
    Fixed(usize),
    /// The largest packs the free capacity allows; packs may differ in size.
    #[default]
    #[serde(serialize_with = "auto")]
    Auto,
}

fn auto<S: serde::Serializer>(s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("auto")
}

impl<'de> Deserialize<'de> for Granularity {
    /// A whole number of workers (`8` or `8.0`) or `"auto"`.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::String(word) if word == "auto" => Ok(Granularity::Auto),
            Value::String(word) => Err(D::Error::custom(format!("granularity {word:?} is not a number or \"auto\""))),
            number @ Value::Number(_) => {
                crate::whole::deserialize(number).map(Granularity::Fixed).map_err(D::Error::custom)
            }
            other => Err(D::Error::custom(format!("granularity {other} is not a number or \"auto\""))),
        }
    }
}

impl std::fmt::Display for Granularity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Granularity::Fixed(g) => write!(f, "{g}"),
            Granularity::Auto => f.write_str("auto"),
        }
    }
}

impl std::str::FromStr for Granularity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(Granularity::Auto);
        }
        s.parse().map(Granularity::Fixed).map_err(|_| format!("granularity {s:?} must be a number or \"auto\""))
    }
}

/// Where a burst is in its life.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BurstState {
    /// Accepted, waiting for capacity.
    Queued,
    /// Placed; packs are starting and connecting.
    Starting,
    /// Every worker is running user code.
    Running,
    /// Every worker returned a result.
    Succeeded,
    /// A worker or pack failed; `error` says which and why.
    Failed,
    /// Cancelled by a user.
    Cancelled,
}

impl BurstState {
    /// Whether the burst has ended.
    pub fn is_final(self) -> bool {
        matches!(self, BurstState::Succeeded | BurstState::Failed | BurstState::Cancelled)
    }

    /// The state's name as the API spells it.
    pub fn name(self) -> &'static str {
        match self {
            BurstState::Queued => "queued",
            BurstState::Starting => "starting",
            BurstState::Running => "running",
            BurstState::Succeeded => "succeeded",
            BurstState::Failed => "failed",
            BurstState::Cancelled => "cancelled",
        }
    }
}

/// A burst as the API reports it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Burst {
    pub id: String,
    pub namespace: String,
    pub request: BurstRequest,
    pub state: BurstState,
    /// The first cause of a failure (or the reason of a cancel).
    pub error: Option<String>,
    /// The transport the packs use (the request's, or the one chosen for it).
    pub transport: Option<String>,
    pub submitted_at: u64,
    pub placed_at: Option<u64>,
    /// When the last worker started user code.
    pub running_at: Option<u64>,
    pub finished_at: Option<u64>,
    /// Last worker start minus first worker start.
    pub start_spread_us: Option<u64>,
    pub packs: Vec<PackRecord>,
    pub workers: Vec<WorkerRecord>,
    /// Which attempt this is (1 unless the burst was retried).
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// Why each earlier attempt failed.
    #[serde(default)]
    pub attempt_errors: Vec<String>,
    /// What happened that did not change the outcome, e.g. a pack that exited
    /// badly after every one of its workers had reported its result.
    #[serde(default)]
    pub notes: Vec<String>,
}

impl Burst {
    /// The rank whose own failure failed the burst (not an echo of another's),
    /// the one that finished first if several did.
    pub fn failed_rank(&self) -> Option<usize> {
        self.workers
            .iter()
            .filter(|w| w.error.is_some() && !w.aborted)
            .min_by_key(|w| (w.finished_at.unwrap_or(u64::MAX), w.rank))
            .map(|w| w.rank)
    }
}

fn first_attempt() -> u32 {
    1
}

/// One pack of a burst.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackRecord {
    pub index: usize,
    pub first_rank: usize,
    pub size: usize,
    /// The invoker it runs on.
    pub invoker: String,
    /// When its process was connected to every other pack.
    pub started_at: Option<u64>,
    pub exited_at: Option<u64>,
    /// Why the pack process failed, if it did.
    pub error: Option<String>,
    /// Bytes it sent to each pack, by pack index (its own entry is 0: what
    /// stays in the pack is in its workers' `traffic.local_bytes`). Reported
    /// when it exits; empty until then.
    #[serde(default, deserialize_with = "crate::whole::list")]
    pub sent_bytes: Vec<u64>,
}

/// One worker of a burst.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub rank: usize,
    pub pack: Option<usize>,
    /// When its pack was placed on an invoker.
    #[serde(default)]
    pub placed_at: Option<u64>,
    /// When its pack process was connected to every other pack.
    #[serde(default)]
    pub pack_started_at: Option<u64>,
    /// When it started user code (after the gang-start barrier).
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub result: Option<Value>,
    pub error: Option<String>,
    /// Its `error` only echoes another worker's failure (the failing rank is
    /// the one whose error is not `aborted`).
    #[serde(default)]
    pub aborted: bool,
    /// What it sent, reported when it finished (None: not reported).
    #[serde(default)]
    pub traffic: Option<WorkerTraffic>,
    /// The phases its function marked (`Worker::phase`), in order: each lasts
    /// until the next one starts, the last until the worker finished.
    #[serde(default)]
    pub phases: Vec<Phase>,
}

/// Messages and bytes one worker sent, inside its pack and to other packs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerTraffic {
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub local_messages: u64,
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub local_bytes: u64,
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub remote_messages: u64,
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub remote_bytes: u64,
    /// Transfers to other packs (a collective makes one per destination pack
    /// for the whole pack, whatever the number of messages).
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub remote_transfers: u64,
}

impl From<volley_comm::CommStats> for WorkerTraffic {
    fn from(s: volley_comm::CommStats) -> Self {
        WorkerTraffic {
            local_messages: s.local_messages,
            local_bytes: s.local_bytes,
            remote_messages: s.remote_messages,
            remote_bytes: s.remote_bytes,
            remote_transfers: s.remote_transfers,
        }
    }
}

/// The start of a named phase of a worker's function (e.g. TeraSort's `shuffle`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    pub name: String,
    /// When it started, in microseconds since the Unix epoch.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub at: u64,
}

/// What a worker reports with its result besides the outcome.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerReport {
    pub traffic: Option<WorkerTraffic>,
    pub phases: Vec<Phase>,
}

/// Most phases a worker's record keeps (later marks are dropped).
pub const MAX_PHASES: usize = 64;
/// Longest phase name kept (longer ones are cut).
pub const MAX_PHASE_NAME: usize = 64;

impl WorkerRecord {
    /// A worker that has not been placed yet.
    pub fn new(rank: usize) -> Self {
        WorkerRecord {
            rank,
            pack: None,
            placed_at: None,
            pack_started_at: None,
            started_at: None,
            finished_at: None,
            result: None,
            error: None,
            aborted: false,
            traffic: None,
            phases: Vec::new(),
        }
    }
}

/// `GET /v1/bursts/{id}/logs`: each pack's captured stdout and stderr.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BurstLogs {
    pub packs: Vec<PackLogs>,
}

/// What one pack process printed (bounded; `truncated` says if bytes were dropped).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PackLogs {
    pub pack: usize,
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
}

/// A function the platform can run.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionInfo {
    pub name: String,
    /// The namespace a deployed function belongs to (None: a built-in, visible to all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `builtin` or `deployed`.
    pub kind: String,
    pub description: String,
    /// A deployed function's binary: its SHA-256 (hex), which names it in the blob store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_at: Option<u64>,
}

impl FunctionInfo {
    /// A function compiled into the `volley` binary.
    pub fn builtin(name: &str, description: &str) -> Self {
        FunctionInfo {
            name: name.into(),
            namespace: None,
            kind: "builtin".into(),
            description: description.into(),
            digest: None,
            size_bytes: None,
            deployed_at: None,
        }
    }
}

/// Every error body: `{"error": {"code": "...", "message": "..."}}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The code (stable, machine-readable) and message (what to do) of an error.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granularity_reads_numbers_and_auto() {
        let g: Granularity = serde_json::from_str("8").unwrap();
        assert_eq!(g, Granularity::Fixed(8));
        let g: Granularity = serde_json::from_str("\"auto\"").unwrap();
        assert_eq!(g, Granularity::Auto);
        assert_eq!(serde_json::to_string(&Granularity::Auto).unwrap(), "\"auto\"");
        assert!(serde_json::from_str::<Granularity>("\"big\"").is_err());
    }

    #[test]
    fn a_minimal_request_gets_defaults_and_typos_are_refused() {
        let r: BurstRequest = serde_json::from_str(r#"{"function":"hello","workers":4}"#).unwrap();
        assert_eq!((r.granularity, r.transport, r.params), (Granularity::Auto, None, Value::Null));
        let err = serde_json::from_str::<BurstRequest>(r#"{"function":"hello","workers":4,"wrokers":2}"#);
        assert!(err.unwrap_err().to_string().contains("wrokers"));
    }
}
