//! Python workers in Volley packs.
//!
//! The built-in function `python` runs a function the Python client pickled
//! (cloudpickle): the pack process is the supervisor, a Python fork server it
//! starts once unpickles the function (importing its modules once) and forks
//! one process per worker, and each worker's communication calls are carried
//! out here, by its rank's thread, on the middleware. Python code never holds
//! the pack's threads: a worker is a process of its own, so g workers of a
//! pack compute in parallel whatever the GIL.
//!
//! The function's parameters, as the client sends them:
//! `{"function": BASE64 PICKLE, "python": "3.11", "packages": {NAME: VERSION},
//! "mode": "call" | "burst", "arg": BASE64 PICKLE}`,
//! and each worker's own `{"arg": BASE64 PICKLE}` (a map's calls: their
//! argument lists). In `call` mode a worker makes its calls and each call's
//! outcome, value or exception, is its own (the other calls and workers go
//! on; a worker lost is its calls' outcome); in `burst` mode it calls the
//! function with the worker (rank, size, comm), and an exception fails the burst.

mod arena;
mod frame;
mod held;
mod relay;
mod supervisor;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use volley_sdk::{Functions, Worker, WorkerResult};

pub use supervisor::PYTHON_ENV;

/// The built-in's name.
pub const FUNCTION: &str = volley_proto::pack::PYTHON_FUNCTION;

/// Starts this process's fork server now, so that its first worker forks
/// sooner. A warm pack process (one the invoker told to prepare threads)
/// returns only once the fork server has imported the modules it preloads:
/// it is ready whole when it connects. A failure is only printed: the first
/// worker reports it.
pub fn prestart() {
    let warm = std::env::var(volley_proto::pack::PREPARE_ENV).is_ok_and(|n| n.parse().is_ok_and(|n: usize| n > 0));
    let ready = supervisor::Supervisor::get().and_then(|s| if warm { s.wait_ready() } else { Ok(()) });
    if let Err(e) = ready {
        eprintln!("volley: the Python fork server did not start: {e}");
    }
}

/// Adds the `python` built-in to `functions`.
pub fn register(functions: &mut Functions) {
    functions.add(
        FUNCTION,
        "runs a pickled Python function on every worker (sent by the volley Python package)",
        python,
    );
}

fn python(w: &Worker) -> WorkerResult {
    let params = w.params();
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(String::from);
    let function = text(params, "function")
        .ok_or("params.function (a base64 pickle) is missing: run Python functions with the volley Python package")?;
    let function = STANDARD.decode(function).map_err(|e| format!("params.function is not base64: {e}"))?;
    let python = text(params, "python").unwrap_or_default();
    let burst_mode = match text(params, "mode").as_deref() {
        Some("burst") => true,
        Some("call") | None => false,
        Some(other) => return Err(format!("params.mode {other:?} is neither call nor burst").into()),
    };
    let arg = match text(w.worker_params(), "arg").or_else(|| text(params, "arg")) {
        Some(a) => Bytes::from(STANDARD.decode(a).map_err(|e| format!("arg is not base64: {e}"))?),
        None => Bytes::new(),
    };
    let digest: String = Sha256::digest(&function).iter().map(|b| format!("{b:02x}")).collect();
    let comm = w.comm();
    let supervisor = supervisor::Supervisor::get()?;
    // The kernel's count of processes it killed for memory in this pack's cgroup, before this worker.
    let oom_before = volley_sandbox::own_memory().map(|(kills, _)| kills);
    // The installed packages the function refers to, with the client's versions: the fork server compares them.
    let packages = params.get("packages").cloned().unwrap_or(Value::Null);
    let loading = supervisor::Load { digest: &digest, pickle: &function, python: &python, packages: &packages };
    let supervisor::Forked { mut conn, token } = supervisor.spawn(&loading, comm.rank())?;
    let hello = json!({
        "rank": comm.rank(), "size": comm.size(), "pack": comm.pack(), "burst": w.burst_id(),
        "attempt": w.attempt(), "mode": if burst_mode { "burst" } else { "call" },
        // What `w.storage(url)` opens storage with: the pack's own options.
        "storage": w.storage_options(),
        // A program session's (volley.multiprocessing): where the worker prints, and its shared objects.
        "session": params.get("session"),
    });
    let (ended, echo) = match frame::write(&mut conn, &hello, &[arg]) {
        Ok(()) => relay::serve(&mut conn, w, supervisor.arena()),
        Err(e) => (Err(format!("starting the Python worker: {e}")), None),
    };
    // A worker lost is named by how its process exited (its code, or the signal that killed it).
    let exit = match &ended {
        Ok(_) => {
            supervisor.forget(&token);
            None
        }
        Err(_) => {
            // A worker still waiting for an answer learns there is none, and exits.
            let _ = conn.shutdown(std::net::Shutdown::Both);
            supervisor.exit_code(&token)
        }
    };
    let killed_for_memory = exit == Some(-9)
        && volley_sandbox::own_memory().zip(oom_before).is_some_and(|((kills, _), before)| kills > before);
    let ended = ended.map_err(|lost| match exit {
        Some(_) if killed_for_memory => {
            let limit = volley_sandbox::own_memory().and_then(|(_, limit)| limit);
            let limit = limit.map_or_else(String::new, |bytes| format!(" of {} MiB", bytes >> 20));
            format!(
                "the Python worker process was killed for memory: its pack exceeded its memory limit{limit} \
                 (the workers' memory_mb and 64 MiB for the pack's runtime); give the burst more memory_mb"
            )
        }
        Some(code) if lost == relay::NO_RESULT => format!(
            "the Python worker process {} without returning a result (its output is in the burst's logs)",
            supervisor::exit_text(code)
        ),
        Some(code) => format!("{lost} (its process {})", supervisor::exit_text(code)),
        None => lost,
    });
    // A worker that failed after its communicator reported another worker's
    // failure fails as that echo: the burst names the cause, not this one.
    if burst_mode
        && !matches!(ended, Ok(relay::Ended::Result(_)))
        && let Some(echo) = echo
    {
        return Err(Box::new(echo));
    }
    let ended = match ended {
        Ok(ended) => ended,
        // A map's calls are independent: a worker lost (a crash, `os._exit`) is
        // its calls' outcome, and the other workers go on.
        Err(lost) if !burst_mode => return Ok(json!({ "lost": lost, "exit": exit })),
        Err(lost) => return Err(lost.into()),
    };
    match ended {
        relay::Ended::Result(pickled) => Ok(json!({"pickle": STANDARD.encode(&pickled)})),
        relay::Ended::Raised { kind, message, traceback, pickled } if !burst_mode => Ok(json!({"raised": {
            "type": kind, "message": message, "traceback": traceback, "pickle": STANDARD.encode(&pickled),
        }})),
        relay::Ended::Raised { message, traceback, .. } => {
            Err(format!("{message}\n\nRemote traceback (rank {}):\n{traceback}", comm.rank()).into())
        }
    }
}
