//! Starting a pack process: spawn it in its own process group, capture its
//! output, and wait until it connects back and says hello.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use volley_proto::pack::{PREPARE_ENV, PROCESS_ENV, PYTHON_ENV, PYTHON_PRELOAD_ENV, SOCKET_ENV};

use crate::Shared;
use crate::confine::Confined;
use crate::logs::Logs;
use crate::router::PackConnection;

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
    let hello = shared.router.hello_of(&process_id);
    let confined = shared.cgroups.as_ref().and_then(|layout| Confined::new(layout, &process_id));
    let spawned = Command::new(program)
        .args(args)
        .env(SOCKET_ENV, &shared.router.path)
        .env(PROCESS_ENV, &process_id)
        .env(PREPARE_ENV, prepare.to_string())
        .env(PYTHON_ENV, &opts.python)
        .env(PYTHON_PRELOAD_ENV, &opts.python_preload)
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
        conn = hello => conn.ok(),
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
        Some(conn) => Ok(Started { child, conn, logs, collectors, group, confined }),
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
