//! The pack runtime: what a function binary does when an invoker starts it.
//!
//! 1. connect to the invoker (`VOLLEY_INVOKER_SOCKET`), say hello, wait for a pack;
//! 2. connect the pack to the other packs of the burst (addresses meet through
//!    the controller);
//! 3. gang start: every worker thread passes one barrier across the whole burst
//!    before user code runs, so no worker starts before every pack is connected;
//! 4. run the function on each rank in its own thread, report each result;
//! 5. close the pack (goodbyes, broker cleanup) and report the pack's end.
//!
//! The process exits when its invoker goes away or cancels the burst: a pack
//! never outlives the platform that started it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use volley_comm::{Layout, Pack, PackOptions};
use volley_proto::api::WorkerReport;
use volley_proto::now_micros;
use volley_proto::pack::{FromPack, Outcome, PREPARE_ENV, PROCESS_ENV, PROTOCOL, PackSpec, SOCKET_ENV, ToPack};

use crate::control::{Control, ControlRendezvous};
use crate::functions::{Function, Functions};
use crate::threads::{Job, Prepared};
use crate::worker::Worker;

/// Most threads a warm process prepares, whatever it is told.
const MAX_PREPARED: usize = 4096;

/// Exit code when the invoker cancelled the burst or went away.
const EXIT_STOPPED: u8 = 3;

/// Runs one pack for the invoker that started this process; returns the exit code.
pub fn serve(functions: Functions) -> ExitCode {
    ExitCode::from(serve_status(functions))
}

/// As [`serve`], the exit status as a number (for a host that exits itself,
/// such as a Python interpreter).
pub fn serve_status(functions: Functions) -> u8 {
    let Ok(socket) = std::env::var(SOCKET_ENV) else {
        note!(
            "This program is a Volley function binary (functions: {}).\n\
             Deploy it with `volley deploy NAME PATH` and run it with `volley run NAME --workers N`;\n\
             an invoker starts it with {SOCKET_ENV} set.",
            functions.names().join(", ")
        );
        return 2;
    };
    tag_panics();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            note!("volley: cannot start the pack's runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(run(&socket, &functions)) {
        Ok(code) => code,
        Err(message) => {
            note!("volley: {message}");
            1
        }
    }
}

async fn run(socket: &str, functions: &Functions) -> Result<u8, String> {
    let prepare = std::env::var(PREPARE_ENV).ok().and_then(|n| n.parse().ok()).unwrap_or(0usize);
    let threads = Prepared::spawn(prepare.min(MAX_PREPARED));
    let (control, mut incoming) =
        Control::connect(socket).await.map_err(|e| format!("cannot reach the invoker at {socket}: {e}"))?;
    control.send(FromPack::Hello {
        process: std::env::var(PROCESS_ENV).unwrap_or_default(),
        pid: std::process::id(),
        protocol: PROTOCOL,
        functions: functions.names(),
    });
    // A warm process waits here until the invoker hands it a pack (or goes away).
    let spec = match incoming.recv().await {
        Some(ToPack::Assign(spec)) => spec,
        Some(other) => return Err(format!("the invoker sent {other:?} before assigning a pack")),
        None => return Ok(EXIT_STOPPED),
    };
    let Some(function) = functions.get(&spec.function) else {
        let error =
            format!("function {:?} is not in this binary (it has: {})", spec.function, functions.names().join(", "));
        control.send(FromPack::Done { error: Some(error.clone()), consequence: false, sent_bytes: Vec::new() });
        control.flush().await;
        return Err(error);
    };
    let (peers_tx, peers_rx) = oneshot::channel();
    follow_invoker(incoming, peers_tx, control.clone());
    let mut sent_bytes = Vec::new();
    let failure = run_pack(&spec, function, &control, peers_rx, threads, &mut sent_bytes).await.err();
    crate::cache::clean_up();
    let code = if failure.is_some() { 1 } else { 0 };
    let (error, consequence) = match failure {
        Some(f) => (Some(f.message), f.consequence),
        None => (None, false),
    };
    control.send(FromPack::Done { error, consequence, sent_bytes });
    control.flush().await;
    Ok(code)
}

/// Why a pack failed, and whether that is only the echo of another failure.
struct PackFailure {
    message: String,
    consequence: bool,
}

impl From<String> for PackFailure {
    fn from(message: String) -> Self {
        PackFailure { message, consequence: false }
    }
}

impl From<&str> for PackFailure {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

impl PackFailure {
    /// A middleware error, prefixed with what the pack was doing.
    fn comm(doing: &str, e: volley_comm::Error) -> Self {
        PackFailure { consequence: is_consequence(&e), message: format!("{doing}{e}") }
    }
}

/// Handles the invoker's later messages: the peers' addresses, a cancel, or
/// its disappearance (both of which end the process at once).
fn follow_invoker(
    mut incoming: mpsc::UnboundedReceiver<ToPack>,
    peers: oneshot::Sender<Vec<String>>,
    control: Control,
) {
    tokio::spawn(async move {
        let mut peers = Some(peers);
        loop {
            match incoming.recv().await {
                Some(ToPack::Peers { addresses }) => {
                    if let Some(p) = peers.take() {
                        let _ = p.send(addresses);
                    }
                }
                Some(ToPack::Cancel { reason }) => {
                    note!("volley: the burst was stopped: {reason}");
                    let stopped = Some(format!("stopped: {reason}"));
                    control.send(FromPack::Done { error: stopped, consequence: true, sent_bytes: Vec::new() });
                    control.flush().await;
                    std::process::exit(EXIT_STOPPED.into());
                }
                Some(ToPack::Assign(_)) => note!("volley: ignoring a second pack assignment"),
                // (Answers are handed to their askers by the control line itself.)
                Some(ToPack::Cache(_)) => {}
                None => {
                    note!("volley: the invoker went away; stopping the pack");
                    std::process::exit(EXIT_STOPPED.into());
                }
            }
        }
    });
}

async fn run_pack(
    spec: &PackSpec,
    function: Function,
    control: &Control,
    peers: oneshot::Receiver<Vec<String>>,
    mut threads: Prepared,
    sent_bytes: &mut Vec<u64>,
) -> Result<(), PackFailure> {
    let opts = pack_options(spec)?;
    trace("assigned");
    threads.ensure(opts.layout.pack_size(opts.pack))?;
    trace("threads ready");
    let rendezvous = Arc::new(ControlRendezvous { control: control.clone(), peers: Mutex::new(Some(peers)) });
    let pack =
        Pack::connect(opts, rendezvous).await.map_err(|e| PackFailure::comm("the pack could not connect: ", e))?;
    control.send(FromPack::Connected { at: now_micros() });
    trace("connected");
    let burst: Arc<str> = spec.burst.as_str().into();
    let params = Arc::new(spec.params.clone());
    let storage = Arc::new(spec.storage.clone());
    let runtime = tokio::runtime::Handle::current();
    let notice = write_notice(control.clone());
    let jobs: Vec<Job> = pack
        .comms()
        .into_iter()
        .enumerate()
        .map(|(local, comm)| {
            let own = spec.worker_params.get(local).cloned().unwrap_or(Value::Null);
            let worker = Worker::new(comm, burst.clone(), params.clone(), own, runtime.clone(), storage.clone())
                .with_attempt(spec.attempt)
                .with_idempotency_key(spec.idempotency_key.clone())
                .with_write_notice(notice.clone())
                .with_control(control.clone());
            let (function, control) = (function.clone(), control.clone());
            Box::new(move || run_worker(worker, function, control)) as Job
        })
        .collect();
    let busy = threads.run(jobs)?;
    let joined = tokio::task::spawn_blocking(move || busy.into_iter().all(|t| t.join().is_ok())).await.unwrap_or(false);
    *sent_bytes = pack.sent_bytes();
    let closed = pack.close().await;
    if !joined {
        return Err("a worker thread died without reporting".into());
    }
    closed.map_err(|e| PackFailure::comm("", e))
}

/// Tells the invoker, once per directory and before the first write there,
/// where this pack writes local files: if the pack is killed mid-write, the
/// invoker removes the unfinished files it left (the message is flushed to the
/// invoker's socket first, so a kill cannot outrun it).
fn write_notice(control: Control) -> volley_storage::WriteNotice {
    // Directories the invoker has surely heard of. Until then every writer
    // announces (and waits), so none of them writes before the invoker knows.
    let confirmed: Arc<Mutex<std::collections::HashSet<std::path::PathBuf>>> = Arc::default();
    Arc::new(move |dir: &std::path::Path| {
        let known = confirmed.lock().unwrap_or_else(|p| p.into_inner()).contains(dir);
        let (control, confirmed, dir) = (control.clone(), confirmed.clone(), dir.to_path_buf());
        Box::pin(async move {
            if !known {
                control.send(FromPack::Writing { dir: dir.display().to_string() });
                control.flush().await;
                confirmed.lock().unwrap_or_else(|p| p.into_inner()).insert(dir);
            }
        })
    })
}

thread_local! {
    /// The rank the current thread works for (for the panic hook's tag).
    static RANK: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Panic messages carry the worker's rank, like `Worker::log` lines.
fn tag_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| match RANK.with(|r| r.get()) {
        Some(rank) => {
            let message = panic_message(info.payload());
            let at = info.location().map(|l| format!(" at {l}")).unwrap_or_default();
            // One line, so that the rank's log filter keeps all of it.
            note!("[rank {rank}] panicked{at}: {}", message.replace('\n', " "));
        }
        None => default(info),
    }));
}

fn run_worker(worker: Worker, function: Function, control: Control) {
    let rank = worker.rank();
    RANK.with(|r| r.set(Some(rank)));
    if let Err(e) = worker.comm().barrier() {
        // The burst failed before it started; the pack reports why.
        control.send(FromPack::WorkerFinished {
            rank,
            at: now_micros(),
            outcome: Outcome::Aborted(e.to_string()),
            report: WorkerReport::default(),
        });
        return;
    }
    control.send(FromPack::WorkerStarted { rank, at: now_micros() });
    let outcome = match catch_unwind(AssertUnwindSafe(|| function(&worker))) {
        Ok(Ok(value)) => Outcome::Ok(value),
        Ok(Err(e)) => {
            let message = e.to_string();
            if is_worker_consequence(&*e) {
                Outcome::Aborted(message)
            } else {
                // In the rank's own log too (one line, like the panic hook's):
                // `logs --rank N` then says why rank N failed.
                note!("[rank {rank}] failed: {}", message.replace('\n', " "));
                worker.comm().abort(&message);
                Outcome::Error(message)
            }
        }
        Err(panic) => {
            let message = format!("worker {rank} panicked: {}", panic_message(&*panic));
            worker.comm().abort(&message);
            Outcome::Error(message)
        }
    };
    let report = WorkerReport { traffic: Some(worker.comm().stats().into()), phases: worker.take_phases() };
    control.send(FromPack::WorkerFinished { rank, at: now_micros(), outcome, report });
}

/// A worker that failed because another one did must not claim to be the cause.
fn is_worker_consequence(err: &(dyn std::error::Error + 'static)) -> bool {
    err.downcast_ref::<volley_comm::Error>().is_some_and(is_consequence)
}

/// Errors that only echo a failure elsewhere: a peer that failed or vanished.
/// (A host of workers of its own, such as Python's, returns such an error as
/// its worker's so that the burst names the cause, not the echo.)
pub fn is_consequence(err: &volley_comm::Error) -> bool {
    matches!(
        err,
        volley_comm::Error::PeerFailed { .. } | volley_comm::Error::Disconnected { .. } | volley_comm::Error::Closed
    )
}

/// The text a panic was raised with.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn pack_options(spec: &PackSpec) -> Result<PackOptions, String> {
    let layout = Layout::new(&spec.pack_sizes).map_err(|e| e.to_string())?;
    let secret = decode_hex(&spec.secret).ok_or("the burst secret is not hex")?;
    let mut opts = PackOptions::new(spec.comm_id(), secret, layout, spec.pack).with_transport(spec.transport.clone());
    opts.op_timeout = Duration::from_millis(spec.op_timeout_ms.max(1));
    opts.connect_timeout = Duration::from_millis(spec.connect_timeout_ms.max(1));
    Ok(opts)
}

/// With `VOLLEY_TRACE_START` set, prints when each start-up phase ended (to find where time goes).
pub(crate) fn trace(phase: &str) {
    if std::env::var_os("VOLLEY_TRACE_START").is_some() {
        note!("volley start trace: {} {phase}", now_micros());
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::decode_hex;

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        assert_eq!(decode_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(decode_hex("0"), None);
        assert_eq!(decode_hex("zz"), None);
    }
}
