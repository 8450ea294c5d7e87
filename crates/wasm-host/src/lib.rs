//! WebAssembly packs (issue 15, ADR 0009): a function built for
//! `wasm32-wasip1-threads` with the guest SDK (`volley_wasm::main!`) runs as a
//! pack of one process, one wasmtime engine and ONE shared linear memory for
//! the pack's workers, one instance per worker thread; the workers share data
//! through that memory and talk through Volley's communicator, offered as
//! host functions.
//!
//! Two entry points, both run by the `volley` binary (feature `wasm`):
//! [`compile`] (`volley wasm-compile MODULE ARTIFACT`), which the invoker runs
//! once per module to keep its compiled artefact, and [`serve`] (`volley
//! wasm-pack ARTIFACT`), the pack process.

mod check;
mod engine;
mod host;
mod pack;
mod snapshot;

use std::path::{Path, PathBuf};

pub use engine::compile;

/// What can go wrong loading or running a module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    /// The module is not one a pack can run.
    #[error("the module cannot run as a Volley function: {0}")]
    Invalid(String),
    /// The engine refused something it should not have.
    #[error("the WebAssembly engine failed: {0}")]
    Engine(String),
    /// An artefact someone other than this machine's trusted side could have written.
    #[error(
        "refusing to load {0}: a compiled module must be owned by root (unmapped, in a pack's user namespace) or this user, and writable by no one else"
    )]
    Untrusted(PathBuf),
    /// An artefact wasmtime would not load (another version or configuration).
    #[error("cannot load the compiled module {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    /// The guest failed before serving.
    #[error("{0}")]
    Guest(String),
}

/// Serves one pack of the module compiled at `artifact` (started from the
/// snapshot `image` if given) for the invoker that started this process;
/// returns the exit code.
pub fn serve(artifact: &Path, image: Option<&Path>) -> u8 {
    if std::env::var_os(volley_proto::pack::SOCKET_ENV).is_none() {
        eprintln!(
            "This is a WebAssembly pack process; an invoker starts it for a module deployed with \
             `volley deploy NAME module.wasm`."
        );
        return 2;
    }
    let (pack, names) = match pack::Pack::start(artifact, image, None) {
        Ok(started) => started,
        Err(e) => {
            eprintln!("volley: {e}");
            return 1;
        }
    };
    let mut functions = volley_sdk::Functions::new();
    for (index, name) in names.iter().enumerate() {
        let pack = pack.clone();
        functions.add(name, "a WebAssembly function", move |worker| pack.run_worker(index, worker));
    }
    let code = volley_sdk::serve_status(functions);
    let _ = std::fs::remove_dir_all(&pack.files);
    code
}

/// Runs the module compiled at `artifact` until its main is ready and writes
/// its snapshot into `dir` (`snapshot.image`, `snapshot.json`); returns the exit code.
pub fn make_snapshot(artifact: &Path, dir: &Path) -> u8 {
    // On success the process ends as the snapshot is written (`Pack::ready`).
    match pack::Pack::start(artifact, None, Some(dir.to_path_buf())) {
        Ok((pack, _)) => {
            match pack.failure_within(SNAPSHOT_TIMEOUT) {
                Some(why) => eprintln!("volley: no snapshot of the module: {why}"),
                None => eprintln!("volley: the module was not ready within {SNAPSHOT_TIMEOUT:?} of its hello"),
            }
            1
        }
        Err(e) => {
            eprintln!("volley: {e}");
            1
        }
    }
}

/// How long a module's start-up may take after its hello, for a snapshot.
const SNAPSHOT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
