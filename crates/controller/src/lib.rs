//! The controller: Volley's API server.
//!
//! It accepts bursts over HTTP, keeps them in a durable store, places their
//! packs on the invokers (whole burst or nothing), relays the packs'
//! rendezvous, follows every worker to its end and fails bursts whose
//! invokers stop heartbeating or whose time runs out.
//!
//! Recipe: [`Options`] → [`Controller::bind`] → [`Controller::run`] until the
//! cancellation token fires.

mod api;
mod auth;
mod control_plane;
mod error;
mod functions;
mod invokers;
mod placement;
mod scheduler;
mod state;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use volley_comm::Brokers;
use volley_proto::api::FunctionInfo;

pub use auth::{MIN_SECRET_LEN, parse_keys};
pub use error::{Error, Result};
pub use store::Store;

/// How a controller runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen, e.g. `127.0.0.1:7070` (port 0 picks one).
    pub listen: String,
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
    pub heartbeat_timeout: Duration,
    /// Default longest run of a burst.
    pub burst_timeout: Duration,
    /// Default longest wait for capacity.
    pub queue_timeout: Duration,
    /// Longest a single communication operation may block inside a burst.
    pub op_timeout: Duration,
    /// Longest packs wait for each other at start and end.
    pub connect_timeout: Duration,
    /// Memory assumed per worker when a burst does not say, in MiB.
    pub default_memory_mb: u64,
    /// Largest burst accepted.
    pub max_workers: usize,
    /// API keys and their namespaces (key → namespace); empty: no keys, everyone is `default`.
    pub api_keys: std::collections::HashMap<String, String>,
    /// The token invokers must present; None: invoker endpoints are open (only
    /// allowed on loopback without API keys).
    pub invoker_token: Option<String>,
    /// The key `/metrics` requires; None: metrics are open (they carry no tenant data).
    pub metrics_key: Option<String>,
    /// Most bursts one namespace may have waiting in the queue.
    pub max_queued_per_namespace: usize,
    /// Longest queue timeout a burst may ask for.
    pub max_queue_timeout: Duration,
}

impl Options {
    /// Defaults for a controller listening on `listen` with its data in `data_dir`.
    pub fn new(listen: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Options {
            listen: listen.into(),
            data_dir: data_dir.into(),
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
            api_keys: Default::default(),
            invoker_token: None,
            metrics_key: None,
            max_queued_per_namespace: 1000,
            max_queue_timeout: Duration::from_secs(3600),
        }
    }
}

/// A controller bound to its address, ready to run.
pub struct Controller {
    listener: tokio::net::TcpListener,
    core: Arc<control_plane::ControlPlane>,
    shutdown: CancellationToken,
}

impl Controller {
    /// Opens the store, recovers unfinished bursts and binds the listener.
    pub async fn bind(opts: Options, shutdown: CancellationToken) -> Result<Controller> {
        auth::check_config(&opts)?;
        std::fs::create_dir_all(&opts.data_dir)
            .map_err(|e| Error::Store(format!("cannot create the data directory {}: {e}", opts.data_dir.display())))?;
        let store = Store::open(&opts.store, &opts.data_dir).await?;
        let listener = tokio::net::TcpListener::bind(&opts.listen)
            .await
            .map_err(|e| Error::BadRequest(format!("cannot listen on {}: {e}", opts.listen)))?;
        let addr =
            listener.local_addr().map_err(|e| Error::BadRequest(format!("cannot listen on {}: {e}", opts.listen)))?;
        auth::check_exposure(&addr, &opts)?;
        let core = control_plane::ControlPlane::start(opts, store, shutdown.clone()).await?;
        Ok(Controller { listener, core, shutdown })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serves the API until the shutdown token fires.
    pub async fn run(self) -> Result<()> {
        let app = api::router(self.core);
        let shutdown = self.shutdown.clone();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .map_err(|e| Error::Store(format!("the HTTP server stopped: {e}")))
    }
}
