//! Starting a pack process: spawn it in its own process group, capture its
//! output, and wait until it connects back and says hello.

use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use volley_proto::pack::{CA_FILE_ENV, PREPARE_ENV, PROCESS_ENV, PYTHON_ENV, PYTHON_PRELOAD_ENV, SOCKET_ENV};
use volley_sandbox::Cell;

use crate::Shared;
use crate::confine::Confined;
use crate::logs::Logs;
use crate::router::{self, PackConnection};
use crate::sandbox::{CONTROL_FD, LOCK_FD, Sandbox};

/// A pack process that has connected and waits for its pack.
pub(crate) struct Started {
    pub(crate) child: Child,
    pub(crate) conn: PackConnection,
    pub(crate) logs: Logs,
    pub(crate) collectors: Vec<JoinHandle<()>>,
    /// Its process group (its pid), killed as a whole when the pack ends.
    pub(crate) group: Option<u32>,
    /// Its cgroup, where the invoker can make one.
    pub(crate) confined: Option<Confined>,
    /// Its cell, when packs are sandboxed (last: removed after the cgroup emptied).
    pub(crate) cell: Option<Cell>,
}

/// How many times the start timeout a warm process is given.
const WARM_START_FACTOR: u32 = 6;

/// Starts `program` and waits for its hello; `label` names it in errors.
/// `prepare`: worker threads the process makes while it waits (a warm process).
pub(crate) async fn start(
    shared: &Shared,
    program: &Path,
    args: &[String],
    label: &str,
    prepare: usize,
) -> Result<Started, String> {
    let opts = &shared.opts;
    // A warm process starts off any burst's clock and readies more before it
    // connects (a Python one imports its preloaded modules): it may take longer.
    let timeout = if prepare > 0 { opts.start_timeout * WARM_START_FACTOR } else { opts.start_timeout };
    let process_id = format!("p{:016x}", rand::random::<u64>());
    let confined = shared.cgroups.as_ref().and_then(|layout| Confined::new(layout, &process_id));
    let cell = match shared.sandbox.as_ref().map(Sandbox::cell) {
        Some(Err(e)) => {
            if let Some(confined) = confined {
                confined.remove().await;
            }
            return Err(e);
        }
        Some(Ok(cell)) => Some(cell),
        None => None,
    };
    let (mut command, hello, control) = match (&shared.sandbox, &cell) {
        (Some(sandbox), Some(cell)) => {
            let (ours, theirs) = match control_pair() {
                Ok(pair) => pair,
                Err(e) => {
                    if let Some(confined) = confined {
                        confined.remove().await;
                    }
                    return Err(format!("cannot make a pack's control socket: {e}"));
                }
            };
            let cgroups = confined.as_ref().map(|c| c.dirs().to_vec()).unwrap_or_default();
            let mut command = sandbox.command(cell, &cgroups, program, args);
            command.env(SOCKET_ENV, format!("fd:{CONTROL_FD}"));
            pass_descriptors(&mut command, &[(theirs.as_raw_fd(), CONTROL_FD), (cell.lock_fd().as_raw_fd(), LOCK_FD)]);
            let id = process_id.clone();
            let hello: BoxFuture<'static, Option<PackConnection>> = Box::pin(async move {
                match router::hello(ours, timeout).await {
                    Some((process, conn)) if process == id => Some(conn),
                    // Closed without a hello: the process's exit (or the timeout) says why.
                    _ => std::future::pending().await,
                }
            });
            (command, hello, Some(theirs))
        }
        _ => {
            let waiter = shared.router.hello_of(&process_id);
            let mut command = Command::new(program);
            command.args(args).env(SOCKET_ENV, &shared.router.path);
            let hello: BoxFuture<'static, Option<PackConnection>> = Box::pin(async move { waiter.await.ok() });
            (command, hello, None)
        }
    };
    ignore_drain_signal(&mut command);
    let spawned = command
        .env(PROCESS_ENV, &process_id)
        .env(PREPARE_ENV, prepare.to_string())
        .env(PYTHON_ENV, &opts.python)
        .env(PYTHON_PRELOAD_ENV, &opts.python_preload)
        .envs(opts.ca_file.as_ref().map(|ca| (CA_FILE_ENV, ca)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so that stopping the pack also stops anything it started.
        .process_group(0)
        .spawn();
    // The pack holds its end now (or never will).
    drop(control);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            shared.router.forget(&process_id);
            if let Some(confined) = confined {
                confined.remove().await;
            }
            return Err(format!("cannot start the pack program {}: {e}", program.display()));
        }
    };
    let group = child.id();
    if let (Some(confined), Some(pid)) = (&confined, group) {
        confined.admit(pid);
    }
    let logs = Logs::default();
    let mut collectors = Vec::new();
    if let Some(out) = child.stdout.take() {
        collectors.push(logs.stdout.collect(out, opts.log_limit));
    }
    if let Some(err) = child.stderr.take() {
        collectors.push(logs.stderr.collect(err, opts.log_limit));
    }
    let conn = tokio::select! {
        conn = hello => conn,
        status = child.wait() => {
            shared.router.forget(&process_id);
            kill_group(group);
            finish_logs(collectors).await;
            if let Some(confined) = confined {
                confined.remove().await;
            }
            return Err(format!(
                "the pack process exited ({}) before it connected to the invoker{}",
                describe(status.ok()),
                logs.tail()
            ));
        }
        _ = tokio::time::sleep(timeout) => None,
    };
    match conn {
        Some(conn) => Ok(Started { child, conn, logs, collectors, group, confined, cell }),
        None => {
            shared.router.forget(&process_id);
            stop(&mut child).await;
            if let Some(confined) = confined {
                confined.remove().await;
            }
            Err(format!(
                "{label} did not connect to the invoker within {timeout:?}: is it a Volley function binary (built with volley_sdk::main!)?"
            ))
        }
    }
}

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A connected socket pair: the invoker's end (async) and the pack's.
fn control_pair() -> std::io::Result<(tokio::net::UnixStream, std::os::unix::net::UnixStream)> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    ours.set_nonblocking(true)?;
    Ok((tokio::net::UnixStream::from_std(ours)?, theirs))
}

/// Starts the program with SIGUSR1 ignored (inherited across exec, until the
/// program handles it itself). Slurm sends a signal to every process of a job
/// step, packs included; SIGUSR1 is the invokers' "drain" (the allocation's
/// early signal, `volley slurm down/shrink`): a draining pack must go on
/// until its burst ends or its invoker stops it. SIGTERM keeps its meaning.
fn ignore_drain_signal(command: &mut Command) {
    // SAFETY: between fork and exec only signal(2) runs, which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::signal(libc::SIGUSR1, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Leaves each `(fd, at)` at descriptor `at` of the started program (the
/// originals are close-on-exec: no other process the invoker starts
/// meanwhile gets them).
pub(crate) fn pass_descriptors(command: &mut Command, moves: &[(RawFd, RawFd)]) {
    let moves: Vec<(RawFd, RawFd)> = moves.to_vec();
    // SAFETY: between fork and exec only fcntl(2) and dup2(2) run, both
    // async-signal-safe; nothing is allocated (the moves were copied before).
    unsafe {
        command.pre_exec(move || {
            // Each source copied above the targets first (close-on-exec), so
            // that placing one cannot overwrite another still to be placed.
            let mut copies = [0; 8];
            for (i, &(fd, _)) in moves.iter().enumerate().take(copies.len()) {
                copies[i] = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 64);
                if copies[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, &(_, at)) in moves.iter().enumerate().take(copies.len()) {
                // (dup2 leaves the target without close-on-exec.)
                if libc::dup2(copies[i], at) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Kills the pack process and everything in its process group.
pub(crate) async fn stop(child: &mut Child) {
    kill_group(child.id());
    let _ = child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
}

/// Kills whatever is left in a pack's process group: a pack that exited or
/// was stopped must not leave processes it started behind.
pub(crate) fn kill_group(group: Option<u32>) {
    if let Some(pid) = group {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
        }
    }
}

pub(crate) async fn finish_logs(collectors: Vec<JoinHandle<()>>) {
    for c in collectors {
        // A grandchild holding the pipe open must not hold the report back.
        let _ = tokio::time::timeout(Duration::from_secs(1), c).await;
    }
}

pub(crate) fn describe(status: Option<ExitStatus>) -> String {
    match status {
        Some(s) => s.to_string(),
        None => "status unknown".into(),
    }
}
