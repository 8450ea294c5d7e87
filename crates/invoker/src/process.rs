//! One pack process from start to exit: spawn it, wait for its hello, hand it
//! its pack, relay its messages as events, stop it when told, and report how
//! it ended (with its captured output).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Child;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use volley_proto::cluster::Event;
use volley_proto::now_micros;
use volley_proto::pack::{CacheAnswer, FromPack, PROTOCOL, PYTHON_FUNCTION, PYTHON_WORKERS_ARG, PackSpec, ToPack};

use crate::logs::Logs;
use crate::pool::{Pool, ProgramKey};
use crate::router::PackConnection;
use crate::spawn::{self, Started, describe, finish_logs, kill_group, stop};
use crate::wasm;
use crate::{Shared, cache};

/// How long a cancelled pack may take to exit on its own before it is killed.
const CANCEL_GRACE: Duration = Duration::from_secs(2);
/// How long after a burst takes warm processes the pool starts their replacements.
const REFILL_DELAY: Duration = Duration::from_millis(500);
/// How long a pack that closed its connection may take to exit.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// What the invoker keeps to reach a running pack.
pub(crate) struct PackHandle {
    pub(crate) to_pack: mpsc::UnboundedSender<ToPack>,
    /// Kill the process now (the invoker is shutting down).
    pub(crate) kill: Arc<Notify>,
}

/// Runs the pack described by `spec` to its end and reports `PackExited`.
pub(crate) async fn run(shared: Arc<Shared>, spec: PackSpec, demand: usize) {
    let generation = shared.generation();
    let key = (spec.burst.clone(), spec.pack, generation);
    let (to_pack, mut inbox) = mpsc::unbounded_channel();
    let kill = Arc::new(Notify::new());
    shared.lock_packs().insert(key.clone(), PackHandle { to_pack, kill: kill.clone() });
    let mut logs = Logs::default();
    let mut written = Vec::new();
    let Ending { error, consequence, sent_bytes } =
        drive(&shared, &spec, generation, demand, &mut inbox, &kill, &mut logs, &mut written).await;
    remove_sockets(&spec);
    if let Some(sandbox) = &shared.sandbox
        && matches!(spec.transport, volley_comm::TransportOptions::Uds(_))
    {
        sandbox.pack_ended(&spec.comm_id());
    }
    if error.is_some() {
        // Before the exit is reported: a retry of the burst cannot start writing yet.
        remove_unfinished_writes(&spec, written).await;
    }
    let (stdout, cut_out) = logs.stdout.text();
    let (stderr, cut_err) = logs.stderr.text();
    shared.emit(
        generation,
        Event::PackExited {
            burst: spec.burst,
            pack: spec.pack,
            at: now_micros(),
            error,
            stdout,
            stderr,
            truncated: cut_out || cut_err,
            consequence,
            sent_bytes,
        },
    );
    // Gone only once its exit is reported: a drain that sees no pack left
    // leaves after this report, never before it.
    shared.lock_packs().remove(&key);
}

/// How a pack ended: why it failed, if it did, and whether that failure only
/// echoes another (it saw a peer vanish, or it was stopped because the burst
/// was ending) rather than being a cause of its own.
struct Ending {
    error: Option<String>,
    consequence: bool,
    /// What the pack said it sent to each pack (empty if it did not say).
    sent_bytes: Vec<u64>,
}

impl Ending {
    fn cause(error: String) -> Self {
        Ending { error: Some(error), consequence: false, sent_bytes: Vec::new() }
    }
}

/// Removes the staging files a pack that did not end cleanly may have left in
/// the local directories it said it was writing to.
async fn remove_unfinished_writes(spec: &PackSpec, dirs: Vec<std::path::PathBuf>) {
    for dir in dirs {
        let task = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || volley_storage::remove_staging_files(&dir)
        });
        match tokio::time::timeout(Duration::from_secs(10), task).await {
            Ok(Ok(Ok(0))) => {}
            Ok(Ok(Ok(n))) => {
                tracing::info!(burst = %spec.burst, pack = spec.pack, "removed {n} unfinished writes in {}", dir.display())
            }
            Ok(Ok(Err(e))) => {
                tracing::warn!(burst = %spec.burst, "removing unfinished writes in {}: {e}", dir.display())
            }
            Ok(Err(_)) | Err(_) => {
                tracing::warn!(burst = %spec.burst, "removing unfinished writes in {} did not finish", dir.display())
            }
        }
    }
}

/// Removes the socket files a pack killed before it could clean up left behind
/// (named `volley-<burst>-<pack>-<nonce>.sock` by the uds transport).
fn remove_sockets(spec: &PackSpec) {
    let volley_comm::TransportOptions::Uds(volley_comm::StreamOptions { bind: Some(dir), .. }) = &spec.transport else {
        return;
    };
    let prefix = format!("volley-{}-{}-", spec.comm_id(), spec.pack);
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Runs the pack and says how it ended.
#[allow(clippy::too_many_arguments)]
async fn drive(
    shared: &Arc<Shared>,
    spec: &PackSpec,
    generation: u64,
    demand: usize,
    inbox: &mut mpsc::UnboundedReceiver<ToPack>,
    kill: &Notify,
    logs: &mut Logs,
    written: &mut Vec<std::path::PathBuf>,
) -> Ending {
    let opts = &shared.opts;
    let key: ProgramKey = match &spec.program {
        // Python workers' processes start Python at once, and are pooled apart.
        None if spec.function == PYTHON_FUNCTION => {
            let mut args = opts.program_args.clone();
            args.push(PYTHON_WORKERS_ARG.into());
            (opts.program.clone(), args)
        }
        None => (opts.program.clone(), opts.program_args.clone()),
        Some(p) => match shared.programs.path(&shared.client, p).await {
            // A WebAssembly module runs in the invoker's own binary, pooled by
            // module, from its snapshot where one could be made.
            Ok(path) => match shared.programs.launch(&path) {
                Some(Some(args)) => (opts.program.clone(), args),
                Some(None) => (path, Vec::new()),
                None if wasm::is_module(&path) => match wasm::pack_args(shared, &path).await {
                    Ok(args) => (opts.program.clone(), args),
                    Err(e) => return Ending::cause(e),
                },
                None => {
                    shared.programs.settle_launch(&path, None);
                    (path, Vec::new())
                }
            },
            Err(e) => return Ending::cause(e),
        },
    };
    let label = if spec.program.is_some() { spec.function.as_str() } else { "the built-in function program" };
    let pack_size = spec.pack_sizes.get(spec.pack).copied().unwrap_or(1);
    let _running = shared.pool.note_demand(&key, demand, pack_size, opts.warm_pool);
    let started = match shared.pool.take(&key) {
        Some(warm) => Ok(warm),
        None => tokio::select! {
            started = spawn::start(shared, &key.0, &key.1, label, 0) => started,
            _ = kill.notified() => Err("stopped before it started".into()),
        },
    };
    // Refill later: starting replacements now would take CPU from this very burst's start.
    let later = shared.clone();
    tokio::spawn(async move {
        tokio::time::sleep(REFILL_DELAY).await;
        Pool::refill(&later);
    });
    let Started { mut child, mut conn, logs: captured, collectors, group, mut confined, cell } = match started {
        Ok(s) => s,
        Err(e) => return Ending::cause(e),
    };
    *logs = captured;
    // A sandboxed pack may use its burst's socket directory from now on, until it ends.
    let admitted = match (&shared.sandbox, &cell) {
        (Some(sandbox), Some(cell)) => Some(Admitted::new(sandbox, spec.comm_id(), cell.uid)),
        _ => None,
    };
    let refused = match &admitted {
        Some(Err(e)) => Some(e.clone()),
        _ => refuse(&conn, spec),
    };
    if let Some(problem) = refused {
        stop(&mut child).await;
        if let Some(confined) = confined {
            confined.remove().await;
        }
        return Ending::cause(problem);
    }
    if let Some(confined) = confined.as_mut() {
        confined.take_pack(pack_size, spec.memory_mb);
    }
    let view_dir = format!("{}-{}-{generation}", spec.comm_id(), spec.pack);
    let asker = shared.cache.asker(&spec.namespace, cell.as_ref().map(|c| (c.uid, c.dir.as_path())), &view_dir);
    let link = Link { conn: &mut conn, child: &mut child, inbox, kill, asker: &asker };
    let Relayed { done, stopped, asked, sent_bytes } = relay(shared, spec, generation, link, written).await;
    let status = match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            stop(&mut child).await;
            None
        }
    };
    kill_group(group);
    cache::remove_views(&asker);
    finish_logs(collectors).await;
    // Killed for memory: the kernel's count says so, whatever the pack's last word was.
    let out_of_memory = confined.as_ref().and_then(|c| c.memory_verdict(spec.pack));
    if let Some(confined) = confined {
        confined.remove().await;
    }
    if let Some(verdict) = out_of_memory {
        return Ending::cause(verdict);
    }
    let error = match (done, status) {
        (Some((Some(error), consequence)), _) => {
            return Ending { error: Some(error), consequence: consequence || stopped, sent_bytes };
        }
        (Some((None, _)), Some(s)) if s.success() => None,
        (Some((None, _)), s) => Some(format!("the pack process finished but exited with {}", describe(s))),
        (None, s) => Some(format!("the pack process ended ({}) before it finished{}", describe(s), logs.tail())),
    };
    // A process the invoker killed (the burst was ending) is an echo. One it
    // only asked to stop, that then ended by a signal or an exit status of its
    // own without a word, did not stop as asked: it died (the cancel may have
    // been on its way when it did), a cause.
    let died = status.is_some_and(|s| !s.success());
    Ending { error, consequence: stopped || (asked && !died), sent_bytes }
}

/// A sandboxed pack's grant on its burst's socket directory, withdrawn when dropped.
struct Admitted<'a> {
    sandbox: &'a crate::sandbox::Sandbox,
    comm_id: String,
    uid: u32,
}

impl<'a> Admitted<'a> {
    fn new(sandbox: &'a crate::sandbox::Sandbox, comm_id: String, uid: u32) -> Result<Admitted<'a>, String> {
        // (Dropped on failure too: the entry made before the failure goes.)
        let admitted = Admitted { sandbox, comm_id, uid };
        sandbox.admit(&admitted.comm_id, uid)?;
        Ok(admitted)
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.sandbox.withdraw(&self.comm_id, self.uid);
    }
}

/// The relay's ends: the pack's connection and process, the invoker's
/// messages for it, the kill switch, and who it is to the cache.
struct Link<'a> {
    conn: &'a mut PackConnection,
    child: &'a mut Child,
    inbox: &'a mut mpsc::UnboundedReceiver<ToPack>,
    kill: &'a Notify,
    asker: &'a cache::Asker,
}

/// What the relay saw: the pack's own last word (`Done`: its error and
/// whether that is a consequence), and whether the invoker stopped it.
struct Relayed {
    done: Option<(Option<String>, bool)>,
    /// The invoker killed it.
    stopped: bool,
    /// The invoker asked it to stop (a cancel went to it).
    asked: bool,
    /// Bytes it sent to each pack, from its `Done`.
    sent_bytes: Vec<u64>,
}

/// Why this process cannot run the pack, if it cannot.
fn refuse(conn: &PackConnection, spec: &PackSpec) -> Option<String> {
    if conn.protocol != PROTOCOL {
        return Some(format!(
            "the function binary speaks pack protocol {} but this invoker speaks {PROTOCOL}; rebuild it against this Volley version",
            conn.protocol
        ));
    }
    if !conn.functions.contains(&spec.function) {
        return Some(format!(
            "the binary does not contain function {:?} (it has: {})",
            spec.function,
            conn.functions.join(", ")
        ));
    }
    None
}

/// Hands the pack its spec and relays messages both ways until the process
/// closes its connection; notes the local directories it writes to.
async fn relay(
    shared: &Shared,
    spec: &PackSpec,
    generation: u64,
    link: Link<'_>,
    written: &mut Vec<std::path::PathBuf>,
) -> Relayed {
    let Link { conn, child, inbox, kill, asker } = link;
    // The cache's answers, made off the runtime (they copy files).
    let (answer, mut answers) = mpsc::unbounded_channel::<ToPack>();
    if write(conn, &ToPack::Assign(Box::new(spec.clone()))).await.is_err() {
        return Relayed { done: None, stopped: false, asked: false, sent_bytes: Vec::new() };
    }
    let mut done = None;
    let mut sent_bytes = Vec::new();
    let mut kill_at: Option<Instant> = None;
    loop {
        let deadline = async {
            match kill_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            line = conn.lines.next_line() => match line {
                Ok(Some(line)) => match serde_json::from_str::<FromPack>(&line) {
                    Ok(FromPack::Done { error, consequence, sent_bytes: sent }) => {
                        done = Some((error, consequence));
                        sent_bytes = sent;
                    }
                    Ok(FromPack::Writing { dir }) => {
                        let dir = std::path::PathBuf::from(dir);
                        if !written.contains(&dir) {
                            written.push(dir);
                        }
                    }
                    Ok(FromPack::CacheOpen { request, key }) => {
                        let (cache, asker, answer) = (shared.cache.clone(), asker.clone(), answer.clone());
                        tokio::task::spawn_blocking(move || {
                            let (dir, error) = match cache.open(&asker, &key) {
                                Ok(dir) => (dir.map(|d| d.display().to_string()), None),
                                Err(e) => (None, Some(e)),
                            };
                            let _ = answer.send(ToPack::Cache(CacheAnswer { request, dir, error }));
                        });
                    }
                    Ok(FromPack::CacheKeep { request, key, dir }) => {
                        let (cache, asker, answer) = (shared.cache.clone(), asker.clone(), answer.clone());
                        tokio::task::spawn_blocking(move || {
                            // Answered once the files are open: the pack may go on (and end) while they are copied.
                            let offered = cache.offer(&asker, &dir);
                            let error = offered.as_ref().err().cloned();
                            let _ = answer.send(ToPack::Cache(CacheAnswer { request, dir: None, error }));
                            if let Err(e) = offered.and_then(|files| cache.store(&asker, &key, files)) {
                                tracing::warn!(key, "a pack's files were not kept in the cache: {e}");
                            }
                        });
                    }
                    Ok(msg) => {
                        if let Some(event) = to_event(spec, msg) {
                            shared.emit(generation, event);
                        }
                    }
                    Err(e) => tracing::warn!(burst = %spec.burst, pack = spec.pack, "unreadable message from a pack: {e}"),
                },
                _ => return Relayed { done, stopped: false, asked: kill_at.is_some(), sent_bytes },
            },
            Some(msg) = answers.recv() => {
                let _ = write(conn, &msg).await;
            }
            msg = inbox.recv() => {
                let Some(msg) = msg else { continue };
                if matches!(msg, ToPack::Cancel { .. }) {
                    kill_at.get_or_insert(Instant::now() + CANCEL_GRACE);
                }
                let _ = write(conn, &msg).await;
            }
            _ = deadline => {
                stop(child).await;
                return Relayed { done, stopped: true, asked: true, sent_bytes };
            }
            _ = kill.notified() => {
                stop(child).await;
                return Relayed { done, stopped: true, asked: kill_at.is_some(), sent_bytes };
            }
        }
    }
}

fn to_event(spec: &PackSpec, msg: FromPack) -> Option<Event> {
    let (burst, pack) = (spec.burst.clone(), spec.pack);
    Some(match msg {
        FromPack::Address { address } => Event::PackAddress { burst, pack, address },
        FromPack::Connected { at } => Event::PackConnected { burst, pack, at },
        FromPack::WorkerStarted { rank, at } => Event::WorkerStarted { burst, rank, at },
        FromPack::WorkerPhase { rank, phase } => Event::WorkerPhase { burst, rank, phase },
        FromPack::WorkerFinished { rank, at, outcome, report } => {
            Event::WorkerFinished { burst, rank, at, outcome, report }
        }
        FromPack::Hello { .. }
        | FromPack::Done { .. }
        | FromPack::Writing { .. }
        | FromPack::CacheOpen { .. }
        | FromPack::CacheKeep { .. } => return None,
    })
}

async fn write(conn: &mut PackConnection, msg: &ToPack) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    conn.write.write_all(&line).await
}
