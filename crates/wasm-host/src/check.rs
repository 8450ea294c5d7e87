//! What makes a module a Volley guest, said the way its author can fix it.

use wasmtime::{ExternType, Module};

use crate::Error;

/// How a guest built for the wrong target or without the SDK is told to rebuild.
const BUILD: &str = "build it with the volley-wasm SDK (`volley_wasm::main!`) for wasm32-wasip1-threads: \
     `rustup target add wasm32-wasip1-threads` and `cargo build --release --target wasm32-wasip1-threads`";

/// The first bytes: a core module (version 1), not a component or anything else.
pub(crate) fn magic(wasm: &[u8]) -> Result<(), Error> {
    match wasm.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Ok(()),
        Some([0, b'a', b's', b'm', ..]) => Err(Error::Invalid(format!(
            "it is a WebAssembly component or a module of another version, not a core module; {BUILD}"
        ))),
        _ => Err(Error::Invalid(format!("it is not a WebAssembly module; {BUILD}"))),
    }
}

/// Imports only what a pack provides (a shared memory, WASI preview 1, the
/// thread-spawn call and Volley's functions); exports the entry points.
pub(crate) fn shape(module: &Module) -> Result<(), Error> {
    let mut shared_memory = false;
    let mut uses_volley = false;
    for import in module.imports() {
        let (from, name) = (import.module(), import.name());
        match (from, name, import.ty()) {
            ("env", "memory", ExternType::Memory(m)) if m.is_shared() => shared_memory = true,
            ("env", "memory", ExternType::Memory(_)) => {
                return Err(Error::Invalid(format!(
                    "its memory is not shared (a module for wasm32-wasip1 without threads?); {BUILD}"
                )));
            }
            ("wasi_snapshot_preview1", _, ExternType::Func(_)) | ("wasi", "thread-spawn", ExternType::Func(_)) => {}
            ("volley", _, ExternType::Func(_)) => uses_volley = true,
            _ => {
                return Err(Error::Invalid(format!(
                    "it imports {from}.{name}, which a Volley pack does not provide (it offers a shared \
                     env.memory, wasi_snapshot_preview1, wasi.thread-spawn and volley.*)"
                )));
            }
        }
    }
    if !shared_memory {
        return Err(Error::Invalid(format!("it does not import a shared memory (env.memory); {BUILD}")));
    }
    if !uses_volley {
        return Err(Error::Invalid(format!("it does not use Volley's host functions; {BUILD}")));
    }
    for export in ["_start", "wasi_thread_start"] {
        if !module.exports().any(|e| e.name() == export && matches!(e.ty(), ExternType::Func(_))) {
            return Err(Error::Invalid(format!("it does not export the function {export}; {BUILD}")));
        }
    }
    Ok(())
}
