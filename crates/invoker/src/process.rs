//! One pack process from start to exit: spawn it, wait for its hello, hand it
//! its pack, relay its messages as events, stop it when told, and report how
//! it ended (with its captured output).

use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use volley_proto::cluster::Event;
use volley_proto::now_micros;
use volley_proto::pack::{FromPack, PROCESS_ENV, PROTOCOL, PackSpec, SOCKET_ENV, ToPack};

use crate::Shared;
use crate::logs::Captured;
use crate::router::PackConnection;

/// How long a cancelled pack may take to exit on its own before it is killed.
const CANCEL_GRACE: Duration = Duration::from_secs(2);
/// How long a pack that closed its connection may take to exit.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// What the invoker keeps to reach a running pack.
pub(crate) struct PackHandle {
    pub(crate) to_pack: mpsc::UnboundedSender<ToPack>,
    /// Kill the process now (the invoker is shutting down).
    pub(crate) kill: Arc<Notify>,
}

struct Logs {
    stdout: Captured,
    stderr: Captured,
}

impl Logs {
    /// The last lines the process printed, for an error message ("" if none).
    fn tail(&self) -> String {
        let err = self.stderr.last_lines(5);
        let text = if err.is_empty() { self.stdout.last_lines(5) } else { err };
        if text.is_empty() { String::new() } else { format!("; it printed: {text}") }
    }
}

/// Runs the pack described by `spec` to its end and reports `PackExited`.
pub(crate) async fn run(shared: Arc<Shared>, spec: PackSpec) {
    let key = (spec.burst.clone(), spec.pack);
    let (to_pack, mut inbox) = mpsc::unbounded_channel();
    let kill = Arc::new(Notify::new());
    shared.lock_packs().insert(key.clone(), PackHandle { to_pack, kill: kill.clone() });
    let logs = Logs { stdout: Captured::default(), stderr: Captured::default() };
    let error = drive(&shared, &spec, &mut inbox, &kill, &logs).await;
    shared.lock_packs().remove(&key);
    let (stdout, cut_out) = logs.stdout.text();
    let (stderr, cut_err) = logs.stderr.text();
    shared.emit(Event::PackExited {
        burst: spec.burst,
        pack: spec.pack,
        at: now_micros(),
        error,
        stdout,
        stderr,
        truncated: cut_out || cut_err,
    });
}

/// Returns why the pack failed, or None if it ended cleanly.
async fn drive(
    shared: &Shared,
    spec: &PackSpec,
    inbox: &mut mpsc::UnboundedReceiver<ToPack>,
    kill: &Notify,
    logs: &Logs,
) -> Option<String> {
    let opts = &shared.opts;
    let process_id = format!("{}-{}-{:08x}", spec.burst, spec.pack, rand::random::<u32>());
    let (program, args) = match &spec.program {
        None => (opts.program.clone(), opts.program_args.clone()),
        Some(p) => match shared.programs.path(&shared.client, p).await {
            Ok(path) => (path, Vec::new()),
            Err(e) => return Some(e),
        },
    };
    let hello = shared.router.expect(&process_id);
    let spawned = Command::new(&program)
        .args(&args)
        .env(SOCKET_ENV, &shared.router.path)
        .env(PROCESS_ENV, &process_id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so that stopping the pack also stops anything it started.
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            shared.router.forget(&process_id);
            return Some(format!("cannot start the pack program {}: {e}", program.display()));
        }
    };
    let group = child.id();
    let mut collectors = Vec::new();
    if let Some(out) = child.stdout.take() {
        collectors.push(logs.stdout.collect(out, opts.log_limit));
    }
    if let Some(err) = child.stderr.take() {
        collectors.push(logs.stderr.collect(err, opts.log_limit));
    }

    let conn = tokio::select! {
        conn = hello => conn.ok(),
        status = child.wait() => {
            shared.router.forget(&process_id);
            kill_group(group);
            finish_logs(collectors).await;
            return Some(format!(
                "the pack process exited ({}) before it connected to the invoker{}",
                describe(status.ok()),
                logs.tail()
            ));
        }
        _ = tokio::time::sleep(opts.start_timeout) => None,
        _ = kill.notified() => {
            shared.router.forget(&process_id);
            stop(&mut child).await;
            return Some("stopped before it started".into());
        }
    };
    let Some(mut conn) = conn else {
        shared.router.forget(&process_id);
        stop(&mut child).await;
        return Some(format!(
            "{} did not connect to the invoker within {:?}: is it a Volley function binary (built with volley_sdk::main!)?",
            spec.program.as_ref().map(|_| spec.function.as_str()).unwrap_or("the built-in function program"),
            opts.start_timeout
        ));
    };
    if let Some(problem) = refuse(&conn, spec) {
        stop(&mut child).await;
        return Some(problem);
    }
    let done = relay(shared, spec, &mut conn, &mut child, inbox, kill).await;
    let status = match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            stop(&mut child).await;
            None
        }
    };
    kill_group(group);
    finish_logs(collectors).await;
    match (done, status) {
        (Some(Some(error)), _) => Some(error),
        (Some(None), Some(s)) if s.success() => None,
        (Some(None), s) => Some(format!("the pack process finished but exited with {}", describe(s))),
        (None, s) => {
            Some(format!("the pack process ended ({}) before it finished: {}", describe(s), logs.stderr.last_lines(5)))
        }
    }
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
/// closes its connection. Returns `Some(error)` if it said it was done.
async fn relay(
    shared: &Shared,
    spec: &PackSpec,
    conn: &mut PackConnection,
    child: &mut Child,
    inbox: &mut mpsc::UnboundedReceiver<ToPack>,
    kill: &Notify,
) -> Option<Option<String>> {
    if write(conn, &ToPack::Assign(Box::new(spec.clone()))).await.is_err() {
        return None;
    }
    let mut done = None;
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
                    Ok(FromPack::Done { error }) => done = Some(error),
                    Ok(msg) => {
                        if let Some(event) = to_event(spec, msg) {
                            shared.emit(event);
                        }
                    }
                    Err(e) => tracing::warn!(burst = %spec.burst, pack = spec.pack, "unreadable message from a pack: {e}"),
                },
                _ => return done,
            },
            msg = inbox.recv() => {
                let Some(msg) = msg else { continue };
                if matches!(msg, ToPack::Cancel { .. }) {
                    kill_at.get_or_insert(Instant::now() + CANCEL_GRACE);
                }
                let _ = write(conn, &msg).await;
            }
            _ = deadline => {
                stop(child).await;
                return done;
            }
            _ = kill.notified() => {
                stop(child).await;
                return done;
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
        FromPack::WorkerFinished { rank, at, outcome } => Event::WorkerFinished { burst, rank, at, outcome },
        FromPack::Hello { .. } | FromPack::Done { .. } => return None,
    })
}

async fn write(conn: &mut PackConnection, msg: &ToPack) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    conn.write.write_all(&line).await
}

/// Kills the pack process and everything in its process group.
async fn stop(child: &mut Child) {
    kill_group(child.id());
    let _ = child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
}

/// Kills whatever is left in the pack's process group: a pack that exited or
/// was stopped must not leave processes it started behind.
fn kill_group(group: Option<u32>) {
    if let Some(pid) = group {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
        }
    }
}

async fn finish_logs(collectors: Vec<tokio::task::JoinHandle<()>>) {
    for c in collectors {
        // A grandchild holding the pipe open must not hold the report back.
        let _ = tokio::time::timeout(Duration::from_secs(1), c).await;
    }
}

fn describe(status: Option<ExitStatus>) -> String {
    match status {
        Some(s) => s.to_string(),
        None => "status unknown".into(),
    }
}
