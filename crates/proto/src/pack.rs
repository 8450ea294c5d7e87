//! Invoker ⇄ pack process: one JSON message per line over the Unix socket
//! whose path the invoker puts in [`SOCKET_ENV`].

use serde::{Deserialize, Serialize};
use serde_json::Value;
use volley_comm::TransportOptions;
use volley_storage::StorageOptions;

use crate::Micros;

/// The environment variable holding the invoker's socket path.
/// The Python interpreter a pack's Python workers run with (the invoker's `--python`).
pub const PYTHON_ENV: &str = "VOLLEY_PYTHON";
/// Modules a pack's Python fork server imports before it is ready (the invoker's `--python-preload`).
pub const PYTHON_PRELOAD_ENV: &str = "VOLLEY_PYTHON_PRELOAD";
/// The CA file the invoker trusts for an `https://` controller, handed to its
/// packs (a Python worker reaching its program's session uses it).
pub const CA_FILE_ENV: &str = "VOLLEY_CA_FILE";
/// The built-in function that runs Python workers (pickled by the Python package).
pub const PYTHON_FUNCTION: &str = "python";
/// The argument an invoker adds to a pack program it starts for Python
/// workers: the process starts its Python fork server at once, so that a
/// warm process has Python ready (and such processes are pooled apart).
pub const PYTHON_WORKERS_ARG: &str = "--python-workers";
pub const SOCKET_ENV: &str = "VOLLEY_INVOKER_SOCKET";
/// The environment variable naming the process to the invoker.
pub const PROCESS_ENV: &str = "VOLLEY_PROCESS_ID";
/// The environment variable telling a warm process how many worker threads to prepare.
pub const PREPARE_ENV: &str = "VOLLEY_PREPARE_WORKERS";
/// The subcommand of the `volley` binary that runs a WebAssembly pack: `volley wasm-pack ARTIFACT`.
pub const WASM_PACK_ARG: &str = "wasm-pack";
/// The subcommand that compiles a module into its artefact: `volley wasm-compile MODULE ARTIFACT`.
pub const WASM_COMPILE_ARG: &str = "wasm-compile";
/// The subcommand that writes the snapshot of a module's initialised memory: `volley wasm-snapshot ARTIFACT DIR`.
pub const WASM_SNAPSHOT_ARG: &str = "wasm-snapshot";
/// What a `volley` built without WebAssembly support says when asked to run a module.
pub const NO_WASM: &str = "this volley binary was built without WebAssembly support, so it cannot run \
     WebAssembly functions: build it with `cargo build --release -p volley --features wasm` and restart the invoker";
/// Bumped whenever these messages change incompatibly.
pub const PROTOCOL: u32 = 2;

/// Everything a pack process needs to run its part of a burst.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackSpec {
    pub burst: String,
    /// Which attempt of the burst this pack belongs to (1 unless retried).
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// The burst's idempotency key, if it was submitted with one (a workflow
    /// step's is `run/RUN/STEP/ATTEMPT`): what the function may key its own
    /// side effects by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The namespace the burst belongs to: the scope of what its packs
    /// keep in the invoker's cache (a tenant never reads another's entries).
    #[serde(default)]
    pub namespace: String,
    /// The per-burst secret, hex.
    pub secret: String,
    pub function: String,
    /// The deployed binary to start (fetched from the controller's blob store by
    /// digest); None: the invoker's own program, which serves the built-ins.
    #[serde(default)]
    pub program: Option<Program>,
    /// This pack's index.
    pub pack: usize,
    /// Every pack's size, in pack order (ranks are contiguous).
    pub pack_sizes: Vec<usize>,
    /// The burst's transport, resolved by the controller: only that transport's
    /// servers and credentials (a pack of a Redis burst never sees the S3 or
    /// AMQP secrets). The invoker fills in where `tcp`/`uds` bind.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub transport: TransportOptions,
    /// How workers reach object storage (`s3://` settings; `file://` needs none).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub storage: StorageOptions,
    pub params: Value,
    /// This pack's workers' own parameters, in rank order (empty: none).
    #[serde(default)]
    pub worker_params: Vec<Value>,
    /// Longest any one communication operation may block.
    pub op_timeout_ms: u64,
    /// Longest the pack waits for its peers at connect and close.
    pub connect_timeout_ms: u64,
    /// Memory each worker may use, in MiB, when the burst said (`memory_mb`):
    /// the invoker holds the pack to it (its workers' sum, and an allowance for
    /// the pack's runtime) where it can confine packs in cgroups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
}

fn first_attempt() -> u32 {
    1
}

impl PackSpec {
    /// The name the attempt's packs use on transports and brokers: a retry
    /// never meets (or deletes) what an earlier attempt left.
    pub fn comm_id(&self) -> String {
        comm_id(&self.burst, self.attempt)
    }
}

/// See [`PackSpec::comm_id`].
pub fn comm_id(burst: &str, attempt: u32) -> String {
    if attempt <= 1 { burst.to_string() } else { format!("{burst}-a{attempt}") }
}

/// A deployed function binary, named by content.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    /// SHA-256 of the binary, hex.
    pub digest: String,
    pub size_bytes: u64,
}

/// A worker's result.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The function returned this value.
    Ok(Value),
    /// The function failed (or panicked) on its own: a cause.
    Error(String),
    /// The function failed because another worker or pack did: a consequence.
    Aborted(String),
}

/// Invoker → pack process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToPack {
    Assign(Box<PackSpec>),
    Peers {
        addresses: Vec<String>,
    },
    Cancel {
        reason: String,
    },
    /// The answer to a [`FromPack::CacheOpen`] or [`FromPack::CacheKeep`].
    Cache(CacheAnswer),
}

/// Checks a cache key or the name of a file in a cache entry: 1 to 128
/// letters, digits, `.`, `_` or `-`, not starting with a dot (`what` names it in the error).
pub fn check_cache_name(what: &str, name: &str) -> Result<(), String> {
    let fine = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if fine {
        Ok(())
    } else {
        Err(format!("{what} {name:?}: use 1 to 128 letters, digits, '.', '_' or '-', not starting with '.'"))
    }
}

/// The invoker's answer to a pack's cache request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheAnswer {
    /// The request's number, as the pack gave it.
    pub request: u64,
    /// For an open: a directory holding the entry's files (read-only, the
    /// pack's until it ends), or None when the cache has no such entry.
    #[serde(default)]
    pub dir: Option<String>,
    /// Why the request could not be met (the pack carries on without the cache).
    #[serde(default)]
    pub error: Option<String>,
}

/// Pack process → invoker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromPack {
    /// First message: who is speaking, and which functions it can run.
    Hello {
        process: String,
        pid: u32,
        protocol: u32,
        functions: Vec<String>,
    },
    Address {
        address: String,
    },
    Connected {
        at: Micros,
    },
    WorkerStarted {
        rank: usize,
        at: Micros,
    },
    /// Sent as the function marks it, so the dashboard shows it while the burst runs.
    WorkerPhase {
        rank: usize,
        phase: crate::api::Phase,
    },
    WorkerFinished {
        rank: usize,
        at: Micros,
        outcome: Outcome,
        #[serde(default)]
        report: crate::api::WorkerReport,
    },
    /// A worker is about to write to this local directory (`file://` storage):
    /// if the pack dies, the invoker removes the unfinished writes it leaves there.
    /// Sent (and flushed) before the write starts, so a kill cannot outrun it.
    Writing {
        dir: String,
    },
    /// Asks for the entry `key` of the invoker's cache for this burst's
    /// namespace (content-addressed files a pack made once, such as a
    /// reference genome's index): answered by [`ToPack::Cache`].
    CacheOpen {
        request: u64,
        key: String,
    },
    /// Offers the regular files of the directory `dir` (the pack's own) as
    /// the cache entry `key`; answered once the invoker holds them open.
    CacheKeep {
        request: u64,
        key: String,
        dir: String,
    },
    /// Last message: the pack closed; `error` is the burst's failure as this pack saw it.
    Done {
        error: Option<String>,
        /// Whether that error is a consequence of another pack's or worker's
        /// failure (a peer that vanished, a cancel) rather than a cause.
        #[serde(default)]
        consequence: bool,
        /// Bytes it sent to each pack, by pack index.
        #[serde(default, deserialize_with = "crate::whole::list")]
        sent_bytes: Vec<u64>,
    },
}
