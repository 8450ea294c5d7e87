//! The invoker: Volley's node agent.
//!
//! It registers with the controller, long-polls it for commands (each poll is
//! its heartbeat), starts one OS process per pack (packs of different bursts
//! never share a process), relays what the processes report as events, and
//! stops them when their burst is cancelled or the invoker shuts down.
//!
//! Recipe: [`Options`] → [`run`] until the cancellation token fires.

mod client;
mod logs;
mod pool;
mod process;
mod programs;
mod router;
mod spawn;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use volley_comm::TransportOptions;
use volley_proto::cluster::{Command, Event, Registration};
use volley_proto::pack::ToPack;

use crate::client::{CallError, ControllerClient};
use crate::process::PackHandle;
use crate::router::Router;

/// What can stop an invoker from running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory or the invoker's socket could not be set up.
    #[error("cannot prepare {path}: {source}; check that the data directory is writable")]
    DataDir { path: PathBuf, source: std::io::Error },
    /// The controller could not be used.
    #[error("controller: {0}")]
    Controller(String),
}

/// How an invoker runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The controller's base URL, e.g. `http://127.0.0.1:7070`.
    pub controller: String,
    /// Sent as a bearer token, when the controller requires keys.
    pub api_key: Option<String>,
    /// The invoker's name (the host name by default).
    pub name: String,
    /// The host other packs reach this invoker's packs at.
    pub host: String,
    /// Worker threads it offers.
    pub slots: usize,
    /// Memory it offers, in MiB.
    pub memory_mb: u64,
    /// Sockets and pack files live here.
    pub data_dir: PathBuf,
    /// The program started for every pack of a built-in function, and its arguments.
    pub program: PathBuf,
    pub program_args: Vec<String>,
    /// How long a new process may take to connect back.
    pub start_timeout: Duration,
    /// Bytes of stdout and of stderr kept per pack.
    pub log_limit: usize,
    /// How long one poll for commands may wait at the controller.
    pub poll_wait: Duration,
    /// Most idle pack processes kept warm per program (0 turns the warm pool off).
    pub warm_pool: usize,
    /// An idle warm process older than this is stopped.
    pub idle_timeout: Duration,
}

impl Options {
    /// Defaults for an invoker of `controller` that starts `program` for packs.
    pub fn new(controller: impl Into<String>, data_dir: impl Into<PathBuf>, program: impl Into<PathBuf>) -> Self {
        Options {
            controller: controller.into(),
            api_key: None,
            name: hostname(),
            host: "127.0.0.1".into(),
            slots: 2048,
            memory_mb: total_memory_mb().unwrap_or(4096),
            data_dir: data_dir.into(),
            program: program.into(),
            program_args: vec!["pack".into()],
            start_timeout: Duration::from_secs(10),
            log_limit: 256 * 1024,
            poll_wait: Duration::from_millis(1000),
            warm_pool: 64,
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// State shared by the invoker's tasks.
pub(crate) struct Shared {
    pub(crate) opts: Options,
    pub(crate) router: Arc<Router>,
    pub(crate) client: ControllerClient,
    pub(crate) programs: programs::Programs,
    pub(crate) pool: pool::Pool,
    events: mpsc::UnboundedSender<Event>,
    packs: Mutex<HashMap<PackKey, PackHandle>>,
    /// Bumped each time the invoker registers again after the controller forgot
    /// it: packs of an earlier registration are stopped and their events dropped
    /// (the controller may already run a new attempt of their burst here).
    generation: AtomicU64,
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
        if generation == self.generation() {
            let _ = self.events.send(event);
        }
    }

    pub(crate) fn lock_packs(&self) -> MutexGuard<'_, HashMap<PackKey, PackHandle>> {
        self.packs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn kill_all(&self) {
        for handle in self.lock_packs().values() {
            handle.kill.notify_one();
        }
    }
}

/// Runs the invoker until `shutdown` fires; every pack it started is stopped before it returns.
pub async fn run(opts: Options, shutdown: CancellationToken) -> Result<(), Error> {
    let sockets = opts.data_dir.join("sockets");
    std::fs::create_dir_all(&sockets).map_err(|source| Error::DataDir { path: sockets.clone(), source })?;
    let socket = opts.data_dir.join("invoker.sock");
    let router = Router::bind(&socket).map_err(|source| Error::DataDir { path: socket.clone(), source })?;
    let client = ControllerClient::new(&opts.controller, opts.api_key.clone())?;
    let registration =
        Registration { name: opts.name.clone(), host: opts.host.clone(), slots: opts.slots, memory_mb: opts.memory_mb };
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let programs = programs::Programs::new(opts.data_dir.join("programs"));
    let shared = Arc::new(Shared {
        opts,
        router,
        client: client.clone(),
        programs,
        pool: pool::Pool::default(),
        events: events_tx,
        packs: Mutex::new(HashMap::new()),
        generation: AtomicU64::new(0),
    });
    let packs = TaskTracker::new();

    let Some(mut id) = register(&client, &registration, &shutdown).await else { return Ok(()) };
    let expiry = tokio::spawn(expire_warm(shared.clone(), shutdown.clone()));
    let (id_tx, id_rx) = tokio::sync::watch::channel(id.clone());
    let poster = tokio::spawn(post_events(client.clone(), id_rx, events_rx, shutdown.clone()));
    loop {
        let polled = tokio::select! {
            _ = shutdown.cancelled() => break,
            polled = client.commands(&id, shared.opts.poll_wait, shared.pool.warm()) => polled,
        };
        match polled {
            Ok(commands) => {
                // Packs per burst in this batch: the warm pool keeps that many ready for next time.
                let mut per_burst: HashMap<String, usize> = HashMap::new();
                for c in &commands {
                    if let Command::StartPack(spec) = c {
                        *per_burst.entry(spec.burst.clone()).or_default() += 1;
                    }
                }
                for command in commands {
                    handle(&shared, &packs, command, &per_burst);
                }
            }
            Err(CallError::Forgotten) => {
                tracing::warn!("the controller forgot this invoker; stopping its packs and registering again");
                shared.generation.fetch_add(1, Ordering::SeqCst);
                shared.kill_all();
                let Some(new_id) = register(&client, &registration, &shutdown).await else { break };
                id = new_id;
                let _ = id_tx.send(id.clone());
            }
            Err(CallError::Other(e)) => {
                tracing::warn!("polling the controller failed: {e}");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    }
    shared.kill_all();
    shared.pool.drain().await;
    packs.close();
    let _ = tokio::time::timeout(Duration::from_secs(10), packs.wait()).await;
    let _ = expiry.await;
    // The poster ends once it has posted the last PackExited events (or gives up on them).
    drop(shared);
    let _ = tokio::time::timeout(Duration::from_secs(5), poster).await;
    Ok(())
}

fn handle(shared: &Arc<Shared>, packs: &TaskTracker, command: Command, per_burst: &HashMap<String, usize>) {
    match command {
        Command::StartPack(mut spec) => {
            place_sockets(&shared.opts, &mut spec);
            let demand = per_burst.get(&spec.burst).copied().unwrap_or(1);
            packs.spawn(process::run(shared.clone(), *spec, demand));
        }
        Command::Peers { burst, addresses } => {
            for ((b, _, _), h) in shared.lock_packs().iter() {
                if *b == burst {
                    let _ = h.to_pack.send(ToPack::Peers { addresses: addresses.clone() });
                }
            }
        }
        Command::Cancel { burst, reason } => {
            for ((b, _, _), h) in shared.lock_packs().iter() {
                if *b == burst {
                    let _ = h.to_pack.send(ToPack::Cancel { reason: reason.clone() });
                }
            }
        }
    }
}

/// Stops warm processes nobody used for the idle timeout.
async fn expire_warm(shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        shared.pool.expire(shared.opts.idle_timeout).await;
    }
}

/// Where this host's packs listen: UDS files in the data directory; TCP on
/// loopback for a loopback invoker, on every interface otherwise, advertised
/// under the invoker's host.
fn place_sockets(opts: &Options, spec: &mut volley_proto::pack::PackSpec) {
    match &mut spec.transport {
        TransportOptions::Uds(o) => o.bind = Some(opts.data_dir.join("sockets").display().to_string()),
        TransportOptions::Tcp(o) => {
            let loopback = opts.host.starts_with("127.") || opts.host == "localhost";
            o.bind = Some(if loopback { "127.0.0.1:0".into() } else { "0.0.0.0:0".into() });
            o.advertise_host = Some(opts.host.clone());
        }
        _ => {}
    }
}

async fn register(
    client: &ControllerClient,
    registration: &Registration,
    shutdown: &CancellationToken,
) -> Option<String> {
    loop {
        match client.register(registration).await {
            Ok(r) => {
                tracing::info!(invoker = %r.invoker_id, "registered with the controller");
                return Some(r.invoker_id);
            }
            Err(CallError::Forgotten) => tracing::warn!("the controller refused the registration"),
            Err(CallError::Other(e)) => tracing::warn!("cannot register with the controller yet: {e}"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Posts events in order, in batches; a failed post is retried so that no
/// result is dropped while the controller is briefly unreachable.
async fn post_events(
    client: ControllerClient,
    id: tokio::sync::watch::Receiver<String>,
    mut events: mpsc::UnboundedReceiver<Event>,
    shutdown: CancellationToken,
) {
    while let Some(first) = events.recv().await {
        let mut batch = vec![first];
        while batch.len() < 512 {
            match events.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let mut delay = Duration::from_millis(50);
        loop {
            let current = id.borrow().clone();
            match client.events(&current, &batch).await {
                Ok(()) => break,
                Err(CallError::Forgotten) => break,
                Err(CallError::Other(e)) => {
                    tracing::warn!("posting {} events failed, retrying: {e}", batch.len());
                    if shutdown.is_cancelled() && delay > Duration::from_secs(1) {
                        break;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "invoker".into())
}

fn total_memory_mb() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}
