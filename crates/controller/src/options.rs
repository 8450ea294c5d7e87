//! How a controller runs: every setting, its default and its check, in one place.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use volley_comm::Brokers;
use volley_proto::api::FunctionInfo;

use crate::error::{Error, Result};

/// A controller's settings. `Default` gives a controller on `127.0.0.1:7070`
/// for one tenant; every role starts through [`Options::build`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Where to listen, e.g. `127.0.0.1:7070` (port 0 picks one).
    pub listen: String,
    /// Serve HTTPS with this certificate and key (needed beyond loopback,
    /// unless `insecure_plain_http`).
    pub tls: Option<crate::tls::TlsFiles>,
    /// Serve plain HTTP beyond loopback anyway: API keys and the invoker
    /// token then cross the network in clear (a private network you trust only).
    pub insecure_plain_http: bool,
    /// The data directory (the embedded store and function binaries live here).
    pub data_dir: PathBuf,
    /// `embedded` (a file in the data directory) or a `postgres://` URL.
    pub store: String,
    /// The built-in functions (deployed ones are kept in the store).
    pub functions: Vec<FunctionInfo>,
    /// Brokers handed to packs that use a broker transport.
    pub brokers: Brokers,
    /// How workers reach object storage.
    pub storage: volley_storage::StorageOptions,
    /// An invoker silent for this long is declared lost.
    #[serde(with = "volley_proto::seconds")]
    pub heartbeat_timeout: Duration,
    /// Default longest run of a burst.
    #[serde(with = "volley_proto::seconds")]
    pub burst_timeout: Duration,
    /// Default longest wait for capacity.
    #[serde(with = "volley_proto::seconds")]
    pub queue_timeout: Duration,
    /// Longest a single communication operation may block inside a burst.
    #[serde(with = "volley_proto::seconds")]
    pub op_timeout: Duration,
    /// Longest packs wait for each other at start and end.
    #[serde(with = "volley_proto::seconds")]
    pub connect_timeout: Duration,
    /// Memory assumed per worker when a burst does not say, in MiB.
    pub default_memory_mb: u64,
    /// Largest burst accepted.
    pub max_workers: usize,
    /// API keys and their namespaces (key → namespace); empty: no keys, everyone is `default`.
    pub api_keys: HashMap<String, String>,
    /// The token invokers must present; None: invoker endpoints are open (only
    /// allowed on loopback without API keys).
    pub invoker_token: Option<String>,
    /// The key `/metrics` requires; None: metrics are open (they carry no tenant data).
    pub metrics_key: Option<String>,
    /// The fleet grows and shrinks (Slurm allocations, a Kubernetes
    /// autoscaler): a burst larger than the invokers registered now waits in
    /// the queue (up to its queue timeout) instead of being refused at once.
    pub elastic: bool,
    /// Most bursts one namespace may have waiting in the queue.
    pub max_queued_per_namespace: usize,
    /// Longest queue timeout a burst may ask for.
    #[serde(with = "volley_proto::seconds")]
    pub max_queue_timeout: Duration,
    /// How long the workflow engine keeps logged events (and so how long an
    /// event id is deduplicated); zero: forever.
    #[serde(with = "volley_proto::seconds")]
    pub event_retention: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: "127.0.0.1:7070".into(),
            tls: None,
            insecure_plain_http: false,
            data_dir: std::env::temp_dir().join("volley").join("controller"),
            store: "embedded".into(),
            functions: Vec::new(),
            brokers: Brokers::default(),
            storage: Default::default(),
            heartbeat_timeout: Duration::from_secs(10),
            burst_timeout: Duration::from_secs(300),
            queue_timeout: Duration::from_secs(60),
            op_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(30),
            default_memory_mb: 16,
            max_workers: 100_000,
            api_keys: HashMap::new(),
            invoker_token: None,
            metrics_key: None,
            elastic: false,
            max_queued_per_namespace: 1000,
            max_queue_timeout: Duration::from_secs(3600),
            event_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl Options {
    /// Refuses settings that cannot work or that weaken authentication,
    /// saying what to change.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::BadRequest(m));
        if self.heartbeat_timeout < Duration::from_secs(1) {
            return bad("the heartbeat timeout must be at least 1 second".into());
        }
        for (name, d) in [
            ("burst timeout", self.burst_timeout),
            ("queue timeout", self.queue_timeout),
            ("operation timeout", self.op_timeout),
            ("connect timeout", self.connect_timeout),
            ("longest queue timeout", self.max_queue_timeout),
        ] {
            if d.is_zero() {
                return bad(format!("the {name} must be positive"));
            }
        }
        if self.max_workers == 0 || self.max_queued_per_namespace == 0 {
            return bad("the largest burst and the queue per namespace must allow at least 1".into());
        }
        crate::auth::check_config(self)
    }
}
