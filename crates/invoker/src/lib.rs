//! The invoker: Volley's node agent.
//!
//! It registers with the controller, long-polls it for commands (each poll is
//! its heartbeat), starts one OS process per pack (packs of different bursts
//! never share a process), relays what the processes report as events, and
//! stops them when their burst is cancelled or the invoker shuts down.
//!
//! Recipe (the same for every long-running role): [`Options`] (serde, with
//! `Default`) → [`Options::build`] (checks, data directory, the packs' socket)
//! → [`Invoker::run`] with a cancellation token → a cheap [`Handle`]
//! (`ready()`: registered, `stop()`).

mod cache;
mod confine;
mod drain;
mod health;
mod host_memory;
mod logs;
mod options;
mod pool;
mod process;
mod programs;
mod router;
mod sandbox;
mod serve;
mod spawn;
mod wasm;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use volley_client::Client;
use volley_proto::cluster::Event;

pub use options::{Options, SandboxMode};

use crate::process::PackHandle;
use crate::router::Router;

/// What can stop an invoker from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The settings cannot work.
    #[error("invoker options: {0}")]
    Options(String),
    /// The data directory or the invoker's socket could not be set up.
    #[error("cannot prepare {path}: {source}; check that the data directory is writable")]
    DataDir { path: PathBuf, source: std::io::Error },
    /// The controller could not be used.
    #[error("controller: {0}")]
    Controller(#[from] volley_client::Error),
    /// The invoker stopped before it registered.
    #[error("the invoker stopped before it registered with the controller")]
    Stopped,
}

/// State shared by the invoker's tasks.
pub(crate) struct Shared {
    pub(crate) opts: Options,
    pub(crate) router: Arc<Router>,
    pub(crate) client: Client,
    pub(crate) programs: programs::Programs,
    /// Files packs keep for the later packs of their namespace.
    pub(crate) cache: Arc<cache::Cache>,
    pub(crate) pool: pool::Pool,
    /// Where pack processes' cgroups are made (None: without cgroups).
    pub(crate) cgroups: Option<volley_sandbox::Layout>,
    /// How packs are sandboxed (None: they are not).
    pub(crate) sandbox: Option<sandbox::Sandbox>,
    events: mpsc::UnboundedSender<Event>,
    packs: Mutex<HashMap<PackKey, PackHandle>>,
    /// Bumped each time the invoker registers again after the controller forgot
    /// it: packs of an earlier registration are stopped and their events dropped
    /// (the controller may already run a new attempt of their burst here).
    generation: AtomicU64,
    /// Why the invoker stops, told to the controller as it leaves.
    pub(crate) leaving: Arc<Mutex<Option<String>>>,
    /// Set when it drains: its health check says so, and it does not
    /// register again if the controller forgets it meanwhile.
    pub(crate) draining: Arc<AtomicBool>,
    /// Polls answered so far (a drain waits for the packs placed just before it).
    pub(crate) polls: AtomicU64,
    /// When the last poll was answered (µs since the epoch; 0: never), for the health check.
    pub(crate) last_poll: Arc<AtomicU64>,
    /// Whether pack reports are posted (false while the invoker's leaving must come first).
    pub(crate) reports: watch::Sender<bool>,
    /// Events emitted and not yet posted: a drain leaves only once its packs'
    /// last reports are with the controller (a leave that overtook a pack's
    /// exit would fail a burst that had finished).
    pub(crate) unposted: Arc<AtomicU64>,
}

/// A running pack: its burst, its index, and the registration it belongs to.
pub(crate) type PackKey = (String, usize, u64);

impl Shared {
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Reports `event` of a pack started under registration `generation`,
    /// unless the invoker has registered again since.
    pub(crate) fn emit(&self, generation: u64, event: Event) {
        if generation == self.generation() && self.events.send(event).is_ok() {
            self.unposted.fetch_add(1, Ordering::SeqCst);
        }
    }

    pub(crate) fn lock_packs(&self) -> MutexGuard<'_, HashMap<PackKey, PackHandle>> {
        self.packs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many bursts have a pack running here.
    fn running_bursts(&self) -> usize {
        let packs = self.lock_packs();
        let bursts: std::collections::HashSet<&String> = packs.keys().map(|(burst, _, _)| burst).collect();
        bursts.len()
    }

    fn kill_all(&self) {
        for handle in self.lock_packs().values() {
            handle.kill.notify_one();
        }
    }
}

/// An invoker with its data directory and socket ready; [`Invoker::run`] starts it.
pub struct Invoker {
    shared: Arc<Shared>,
    events: mpsc::UnboundedReceiver<Event>,
    health: Option<std::net::TcpListener>,
}

impl Options {
    /// Checks the settings, prepares the data directory and binds the socket
    /// packs connect to.
    pub fn build(self) -> Result<Invoker, Error> {
        self.validate()?;
        let health = self.health_listen.as_deref().map(health::bind).transpose()?;
        let sockets = self.data_dir.join("sockets");
        std::fs::create_dir_all(&sockets).map_err(|source| Error::DataDir { path: sockets.clone(), source })?;
        let socket = self.data_dir.join("invoker.sock");
        let router = Router::bind(&socket).map_err(|source| Error::DataDir { path: socket.clone(), source })?;
        let client = Client::with_ca(&self.controller, self.token.as_deref(), self.ca_file.as_deref())?;
        let (events, events_rx) = mpsc::unbounded_channel();
        let programs = programs::Programs::new(self.data_dir.join("programs"));
        let unavailable = match self.sandbox {
            SandboxMode::Off => None,
            _ => sandbox::Sandbox::unavailable(&self),
        };
        let sandbox = match (self.sandbox, unavailable) {
            (SandboxMode::Off, _) => None,
            (SandboxMode::On, Some(why)) => {
                return Err(Error::Options(format!("{why}; or run the invoker with --sandbox off (development only)")));
            }
            (SandboxMode::Auto, Some(why)) => {
                tracing::warn!("pack processes run unsandboxed: {why} (--sandbox on refuses to start instead)");
                None
            }
            (_, None) => Some(sandbox::Sandbox::prepare(&self)?),
        };
        let cgroups = if self.pack_cgroups || sandbox.is_some() { confine::detect() } else { None };
        if sandbox.is_some() && cgroups.is_none() {
            // Without cgroups a sandboxed pack has no memory or process limit.
            let why =
                "sandboxed packs need cgroups (v1 memory, pids and cpu controllers, or a v2 tree) for their limits";
            if self.sandbox == SandboxMode::On {
                return Err(Error::Options(format!("{why}; or run the invoker with --sandbox off (development only)")));
            }
            tracing::warn!("{why}: packs run sandboxed without memory and process limits");
        }
        // Built before `self` moves into the shared state below.
        let cache = Arc::new(cache::Cache::new(&self.data_dir, self.cache_dir.clone(), self.cache_bytes));
        let shared = Arc::new(Shared {
            opts: self,
            router,
            client,
            programs,
            cache,
            pool: pool::Pool::default(),
            cgroups,
            sandbox,
            events,
            packs: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            leaving: Arc::new(Mutex::new(None)),
            draining: Arc::new(AtomicBool::new(false)),
            polls: AtomicU64::new(0),
            last_poll: Arc::new(AtomicU64::new(0)),
            reports: watch::Sender::new(true),
            unposted: Arc::default(),
        });
        Ok(Invoker { shared, events: events_rx, health })
    }
}

impl Invoker {
    /// Registers and serves until `cancel` fires (or [`Handle::stop`]); returns at once.
    pub fn run(self, cancel: CancellationToken) -> Handle {
        let (registered_tx, registered) = watch::channel(None);
        let (done_tx, done) = watch::channel(false);
        let leaving = self.shared.leaving.clone();
        let shared = Arc::downgrade(&self.shared);
        if let Some(listener) = self.health {
            let (draining, last_poll) = (self.shared.draining.clone(), self.shared.last_poll.clone());
            tokio::spawn(health::serve(listener, registered.clone(), draining, last_poll, cancel.clone()));
        }
        let task = serve::serve(self.shared, self.events, registered_tx, cancel.clone());
        tokio::spawn(async move {
            task.await;
            let _ = done_tx.send(true);
        });
        Handle { cancel, registered, done, leaving, shared }
    }
}

/// A running invoker. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    cancel: CancellationToken,
    registered: watch::Receiver<Option<String>>,
    done: watch::Receiver<bool>,
    leaving: Arc<Mutex<Option<String>>>,
    /// Weak: the invoker's state goes when it stops, handles or not.
    shared: Weak<Shared>,
}

impl Handle {
    /// Returns the invoker's id once it has registered with the controller
    /// (it keeps trying while the controller is unreachable); an error if it
    /// stopped first.
    pub async fn ready(&self) -> Result<String, Error> {
        let mut registered = self.registered.clone();
        let mut done = self.done.clone();
        tokio::select! {
            id = registered.wait_for(Option::is_some) => {
                id.map_err(|_| Error::Stopped).and_then(|id| id.clone().ok_or(Error::Stopped))
            }
            _ = done.wait_for(|d| *d) => Err(Error::Stopped),
        }
    }

    /// The id of the invoker's current registration, if it has one.
    pub fn id(&self) -> Option<String> {
        self.registered.borrow().clone()
    }

    /// As [`Handle::stop`], telling the controller why the invoker leaves
    /// (`Slurm allocation 42 was cancelled (SIGTERM)`): its bursts end at once
    /// with that cause ("invoker NAME left: ...").
    pub async fn leave(&self, reason: &str) {
        *self.leaving.lock().unwrap_or_else(|p| p.into_inner()) = Some(drain::bounded(reason));
        self.stop().await;
    }

    /// Holds back what packs report (their exits) until the controller has
    /// heard the invoker leave: when the packs are being stopped with it
    /// (Slurm signals them too), their exits would only echo its cause.
    pub fn hold_reports(&self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.reports.send_replace(false);
        }
    }

    /// Drains, then leaves (Slurm's early SIGUSR1, a pod's grace period): the
    /// controller places nothing more here at once, the bursts running here go
    /// on for up to `grace`, then the invoker leaves with `reason` (saying how
    /// many bursts were still running, which end with it).
    pub async fn drain(&self, reason: &str, grace: Duration) {
        let mut still_running = 0;
        if let (Some(id), Some(shared)) = (self.id(), self.shared.upgrade())
            && !grace.is_zero()
        {
            still_running = drain::drain(&shared, &id, reason, grace, self.done.clone()).await;
        }
        match still_running {
            0 => self.leave(reason).await,
            n => {
                let why = format!("{reason}; {n} burst(s) still ran here after a drain of {} s", grace.as_secs_f64());
                self.leave(&why).await
            }
        }
    }

    /// Stops every pack and warm process, then the invoker (which tells the
    /// controller it leaves); returns when all are gone.
    pub async fn stop(&self) {
        self.cancel.cancel();
        let mut done = self.done.clone();
        let _ = done.wait_for(|d| *d).await;
    }
}
