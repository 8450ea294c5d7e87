//! Snapshots of an initialised module (Faasm's Proto-Faaslets): the pack's
//! memory as the module's start-up left it, when its main said it was ready,
//! with what the host must know to go on from there without running that
//! start-up again. The invoker has one made per module (`volley
//! wasm-snapshot`, in a sandboxed process like a pack's), keeps it beside the
//! compiled module, and starts each pack process from it: the image is mapped
//! copy-on-write as the pack's memory (the processes share its pages until
//! they write them), and the thread that starts the workers, which the
//! module's main had made but not run, is run when the pack comes.
//!
//! Only memory is restored: globals start fresh in every instance, as in any
//! worker's instance (a guest thread sets its stack and TLS from its start
//! argument), and the module's main is not there. WASI contexts are made the
//! same way in every process, so what the libc learned of them holds.

use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wasmtime::SharedMemory;

use crate::Error;

/// What the host needs beside the memory image.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    /// The module's function names, from its hello.
    pub(crate) names: Vec<String>,
    /// The thread that starts the workers: its thread id and start argument.
    pub(crate) starter: (i32, i32),
    /// The next thread id to give.
    pub(crate) next_tid: i32,
    /// The memory's size, in wasm pages of 64 KiB.
    pub(crate) pages: u64,
}

/// The image's file in `dir`, and the description's.
pub(crate) fn files(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("snapshot.image"), dir.join("snapshot.json"))
}

/// Writes the memory and its description into `dir` (the memory must not change meanwhile).
pub(crate) fn write(memory: &SharedMemory, snapshot: &Snapshot, dir: &Path) -> Result<(), Error> {
    let (image, description) = files(dir);
    let bytes = memory.data_size();
    let mut out = std::fs::File::create(&image).map_err(|source| Error::Write { path: image.clone(), source })?;
    // SAFETY: `bytes` bytes from the memory's base lie inside it; no guest
    // thread runs while the snapshot is taken (the main waits in `ready`, no
    // other thread was started).
    let data = unsafe { std::slice::from_raw_parts(memory.data().as_ptr().cast::<u8>(), bytes) };
    out.write_all(data).and_then(|()| out.sync_all()).map_err(|source| Error::Write { path: image.clone(), source })?;
    let json = serde_json::to_vec(snapshot).map_err(|e| Error::Engine(e.to_string()))?;
    std::fs::write(&description, json).map_err(|source| Error::Write { path: description, source })
}

/// Reads the description of the snapshot whose image is `image` and checks the image fits it.
pub(crate) fn read(image: &Path) -> Result<Snapshot, Error> {
    let description = image.with_extension("json");
    let bytes = std::fs::read(&description).map_err(|source| Error::Read { path: description.clone(), source })?;
    let snapshot: Snapshot = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Load { path: description.clone(), reason: format!("not a snapshot description: {e}") })?;
    let size = std::fs::metadata(image).map_err(|source| Error::Read { path: image.into(), source })?.len();
    if snapshot.starter.0 <= 0 || snapshot.names.is_empty() || size != snapshot.pages * PAGE {
        return Err(Error::Load {
            path: image.into(),
            reason: format!("{size} bytes do not fit the description {snapshot:?}"),
        });
    }
    Ok(snapshot)
}

const PAGE: u64 = 65536;

/// The largest memory a snapshot holds (the invoker copies no larger image).
pub(crate) const MAX_IMAGE: u64 = 256 << 20;

/// Makes `image` the contents of `memory` (grown to its size first), mapped
/// copy-on-write: nothing is copied now, and processes of the same image
/// share its pages until they write them.
pub(crate) fn map(memory: &SharedMemory, image: &Path, snapshot: &Snapshot) -> Result<(), Error> {
    let have = memory.size();
    if snapshot.pages > have {
        memory.grow(snapshot.pages - have).map_err(|e| Error::Load { path: image.into(), reason: format!("{e:?}") })?;
    }
    let file = std::fs::File::open(image).map_err(|source| Error::Read { path: image.into(), source })?;
    let len = (snapshot.pages * PAGE) as usize;
    if memory.data_size() < len {
        return Err(Error::Load { path: image.into(), reason: "the memory did not grow to the image's size".into() });
    }
    let base = memory.data().as_ptr().cast::<u8>().cast_mut().cast::<libc::c_void>();
    // SAFETY: [base, base + len) is the memory's accessible range (checked
    // above), page-aligned (wasm pages are multiples of the host's), and no
    // instance of it exists yet; MAP_FIXED replaces those pages with the
    // file's, privately (wasmtime maps its own memory images the same way).
    let mapped = unsafe {
        libc::mmap(
            base,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_FIXED,
            file.as_raw_fd(),
            0,
        )
    };
    if mapped == libc::MAP_FAILED || mapped != base {
        return Err(Error::Load {
            path: image.into(),
            reason: format!("cannot map it: {}", std::io::Error::last_os_error()),
        });
    }
    Ok(())
}
