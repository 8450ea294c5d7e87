//! The engine every WebAssembly pack runs on, and the compiled modules the
//! invoker keeps: a module is compiled once per invoker (`volley
//! wasm-compile`, by the invoker itself, never by a pack), written as
//! wasmtime's serialized artefact, and loaded by every pack process of it.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use wasmtime::{Config, Engine, Module, OptLevel};

use crate::Error;
use crate::check;

/// The engine: core wasm threads over one shared memory, optimised code.
/// The artefact records this configuration; a pack loads only artefacts
/// made with the same one (wasmtime checks, and refuses others).
pub(crate) fn engine() -> Result<Engine, Error> {
    let mut config = Config::new();
    config.wasm_threads(true).shared_memory(true).cranelift_opt_level(OptLevel::Speed);
    Engine::new(&config).map_err(|e| Error::Engine(format!("{e:?}")))
}

/// Checks the module at `module` is a Volley guest, compiles it and writes
/// the artefact to `artifact` (whole or not at all).
pub fn compile(module: &Path, artifact: &Path) -> Result<(), Error> {
    let wasm = std::fs::read(module).map_err(|source| Error::Read { path: module.into(), source })?;
    check::magic(&wasm)?;
    let engine = engine()?;
    let compiled = Module::new(&engine, &wasm).map_err(|e| Error::Invalid(format!("{e:?}")))?;
    check::shape(&compiled)?;
    let bytes = compiled.serialize().map_err(|e| Error::Invalid(format!("{e:?}")))?;
    let tmp = artifact.with_extension(format!("tmp{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, artifact));
    written.map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        Error::Write { path: artifact.into(), source }
    })
}

/// Loads the artefact at `path`, which must be one this machine's trusted
/// side wrote: an artefact is native code, run as it is.
pub(crate) fn load(engine: &Engine, path: &Path) -> Result<Module, Error> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Read { path: path.into(), source })?;
    // SAFETY: geteuid(2) only reads the caller's effective uid.
    let me = unsafe { libc::geteuid() };
    // Written by root (the invoker of sandboxed packs: seen from a pack's
    // user namespace, where root is not mapped, as the overflow uid) or by
    // this very user, and writable by nobody else: no pack could have put
    // code there.
    let owner_trusted = meta.uid() == 0 || meta.uid() == me || (in_user_namespace() && meta.uid() == overflow_uid());
    if !owner_trusted || meta.mode() & 0o022 != 0 {
        return Err(Error::Untrusted(path.into()));
    }
    // SAFETY: the file is an artefact `compile` wrote (owner and mode checked
    // above) and is never rewritten in place (`compile` renames a new file
    // over it); wasmtime checks that it was made by this version and config.
    unsafe { Module::deserialize_file(engine, path) }
        .map_err(|e| Error::Load { path: path.into(), reason: format!("{e:?}") })
}

/// Whether this process runs in a user namespace other than the machine's
/// (whose map is the whole range, `0 0 4294967295`).
fn in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|map| map.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
        .unwrap_or(false)
}

/// The uid a user namespace shows for users it does not map.
fn overflow_uid() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/overflowuid").ok().and_then(|u| u.trim().parse().ok()).unwrap_or(65534)
}
