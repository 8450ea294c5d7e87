//! Program sessions (`/v1/sessions`): the shared objects of one client
//! program, its queues, locks, events, barriers and shared values, which the
//! controller keeps in memory for the program's processes (Python's
//! `volley.multiprocessing`). A session lives while its program renews it and
//! is deleted, with its objects and the bursts started in it, when the
//! program ends it or stops renewing it.
//!
//! Items and values are opaque to the controller: base64 text (a Python
//! pickle, the bytes of a shared array).

use serde::{Deserialize, Serialize};

/// `POST /v1/sessions`: open a session.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// Seconds the session lives without a renewal (2 to 300; 15 if not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 2, maximum = 300))]
    pub lease_secs: Option<f64>,
}

/// An open session. `token` is its only credential (the processes of the
/// program send it as `Authorization: Bearer TOKEN`); it is shown once.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    pub lease_secs: f64,
    /// Objects in the session now.
    pub objects: usize,
    /// Bytes its objects hold now (items, values).
    pub bytes: usize,
}

/// `POST /v1/sessions/{id}/ops`: one operation on one object of the session.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"object": 1, "wait_secs": 5, "op": {"type": "get"}})))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpRequest {
    /// The object operated on (none for `create`).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::whole::option")]
    pub object: Option<u64>,
    /// How long a blocking operation may wait, in seconds (0, the default:
    /// not at all; at most 25: a longer wait is repeated by the caller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub wait_secs: Option<f64>,
    pub op: Op,
}

/// Who holds a lock: a process and thread of the program, as it names itself.
pub type Owner = String;

/// The operations, by object kind.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// A new object; the reply is `created`.
    Create {
        kind: Kind,
    },
    /// Deletes the object (its waiters are told it is gone).
    Drop,
    // Queues (FIFO of items).
    /// Appends an item; `full` when the queue stays full for the whole wait.
    Put {
        item: String,
    },
    /// Takes the first item: `items` with one, `empty`, or `eof` once the writer closed and the queue is empty.
    Get,
    /// Takes up to `max` items as soon as there is one.
    GetMany {
        #[serde(deserialize_with = "crate::whole::deserialize")]
        max: usize,
    },
    /// `count`: items in the queue.
    Size,
    /// One item taken has been dealt with (a joinable queue).
    TaskDone,
    /// `flag` true once every item put has been dealt with.
    Join,
    /// One more writer holds the queue (a pipe's end copied to another process).
    OpenWriting,
    /// A writer is done: once none is left, readers get `eof` when the queue is empty.
    CloseWriting,
    // Locks and semaphores.
    /// `flag`: whether `owner` got it (one more level for a recursive lock it holds).
    Acquire {
        owner: Owner,
    },
    /// Gives one level back.
    Release {
        owner: Owner,
    },
    /// `count`: the semaphore's value (levels held, for a recursive lock).
    Value,
    /// `flag`: whether `owner` holds it.
    Owned {
        owner: Owner,
    },
    // Events.
    Set,
    Clear,
    /// `flag`: set or not (waits until set).
    IsSet,
    // Conditions (over a lock of the session).
    /// Releases the condition's lock held by `owner` and waits for a notify: `ticket`.
    Wait {
        owner: Owner,
    },
    /// `flag`: whether ticket's waiter has been notified (waits until it is).
    Notified {
        #[serde(deserialize_with = "crate::whole::deserialize")]
        ticket: u64,
    },
    /// The waiter of `ticket` stops waiting (its wait timed out).
    Forget {
        #[serde(deserialize_with = "crate::whole::deserialize")]
        ticket: u64,
    },
    /// Wakes `n` waiters (all if not given); `owner` must hold the lock.
    Notify {
        owner: Owner,
        #[serde(default, deserialize_with = "crate::whole::option")]
        n: Option<usize>,
    },
    // Barriers.
    /// Arrives: `arrived` with this arrival's index and the barrier's generation.
    Arrive,
    /// `barrier`: whether `generation` has passed or broke (waits until one).
    Passed {
        #[serde(deserialize_with = "crate::whole::deserialize")]
        generation: u64,
    },
    /// The last to arrive ran the barrier's action (`ok` false: it raised).
    Pass {
        #[serde(deserialize_with = "crate::whole::deserialize")]
        generation: u64,
        ok: bool,
    },
    /// Breaks the barrier: waiters and later arrivals get `broken`.
    Abort,
    /// Breaks the waiting generation and starts afresh.
    Reset,
    /// `barrier` now, without waiting.
    BarrierState,
    // Shared values (bytes).
    /// `data`: `len` bytes from `offset` (to the end if not given), with the value's version.
    Read {
        #[serde(deserialize_with = "crate::whole::deserialize")]
        offset: usize,
        #[serde(default, deserialize_with = "crate::whole::option")]
        len: Option<usize>,
    },
    /// Writes `data` at `offset`; `version`.
    Write {
        #[serde(deserialize_with = "crate::whole::deserialize")]
        offset: usize,
        data: String,
    },
    /// Replaces the whole value if its version is still `version`; else `conflict` with the value now.
    Swap {
        #[serde(deserialize_with = "crate::whole::deserialize")]
        version: u64,
        data: String,
    },
}

impl Op {
    /// The operation's name as requests spell it (`"get_many"`).
    pub fn name(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(String::from))
            .unwrap_or_default()
    }
}

/// What an object is.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Kind {
    /// `maxsize` 0: unbounded.
    Queue {
        #[serde(deserialize_with = "crate::whole::deserialize")]
        maxsize: usize,
    },
    /// A counting semaphore; `max` bounds releases (a lock is `value` 1, `max` 1).
    Semaphore {
        #[serde(deserialize_with = "crate::whole::deserialize")]
        value: u64,
        #[serde(default, deserialize_with = "crate::whole::option")]
        max: Option<u64>,
    },
    /// A lock its owner may take again.
    RecursiveLock,
    Event,
    /// A condition variable over the session's lock `lock`.
    Condition {
        #[serde(deserialize_with = "crate::whole::deserialize")]
        lock: u64,
    },
    /// A barrier of `parties`; with `action`, the last to arrive runs it before the others pass.
    Barrier {
        #[serde(deserialize_with = "crate::whole::deserialize")]
        parties: usize,
        action: bool,
    },
    /// Bytes (a shared value or array, or a pickled object).
    Value {
        data: String,
    },
}

/// What an operation answers.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Created {
        object: u64,
    },
    Done,
    Flag {
        flag: bool,
    },
    Count {
        count: u64,
    },
    Items {
        items: Vec<String>,
    },
    Empty,
    Full,
    Eof,
    /// A condition waiter: its ticket, and the levels of the lock it gave back (to take again).
    Ticket {
        ticket: u64,
        levels: u64,
    },
    Arrived {
        index: usize,
        generation: u64,
        state: BarrierState,
    },
    Barrier {
        state: BarrierState,
        waiting: usize,
    },
    Data {
        data: String,
        version: u64,
    },
    Version {
        version: u64,
    },
    Conflict {
        data: String,
        version: u64,
    },
    /// The operation is a misuse of the object (say, releasing a lock
    /// released already); the program raises its own error for it.
    Refused {
        reason: String,
    },
}

/// Where a barrier's generation stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BarrierState {
    /// Still filling.
    Waiting,
    /// The last arrival must run the action, then `pass`.
    RunAction,
    Passed,
    Broken,
}
