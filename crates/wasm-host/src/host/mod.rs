//! What a guest thread's store holds, and the functions a pack offers its
//! module: WASI preview 1 (stdio, clocks, randomness, the pack's files; no
//! sockets), `wasi.thread-spawn`, and Volley's `volley.*` (the worker's place,
//! parameters and result; its communicator; object storage).
//!
//! Calls that can fail return a status: a value ≥ 0, or [`FAILED`] /
//! [`ECHO`] with the error's text waiting as the one pending reply. Replies
//! (a received message, a collective's results) wait in the thread's store
//! until the guest, which knows their lengths only then, copies them out
//! (`pending_len`, `pending_take`). A pointer outside the memory traps.

mod calls;
mod comm;
pub(crate) mod memory;
mod requests;
mod storage;

use std::ptr::NonNull;
use std::sync::Arc;

use bytes::Bytes;
use volley_sdk::{Worker, WorkerResult};
use wasmtime::{Caller, Linker};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, HostMonotonicClock, WasiCtxBuilder};

use crate::pack::{Pack, Spawner};

/// The call failed; its message is the pending reply.
pub(crate) const FAILED: i32 = -1;
/// The call failed because another worker did (an echo, not the cause).
pub(crate) const ECHO: i32 = -2;

/// Which guest thread a store runs.
pub(crate) enum Role {
    /// The module's `main`: says hello, runs the start-up, makes the starter.
    Main,
    /// The thread that starts the workers once the pack is there.
    Starter,
    /// One worker of the pack.
    Worker(WorkerRef),
    /// A thread the guest started for itself.
    Helper,
}

/// The worker a worker thread's store serves.
///
/// The SDK lends the worker to the function for the length of its call; the
/// store that holds this reference is made and dropped inside that call (see
/// `Pack::run_worker`), on that thread, and only that thread's host calls
/// read it.
pub(crate) struct WorkerRef(NonNull<Worker>);

// SAFETY: the pointer is only dereferenced on the worker's own thread while
// the SDK's borrow lasts (above); the store carrying it never leaves the thread.
unsafe impl Send for WorkerRef {}

impl WorkerRef {
    pub(crate) fn new(worker: &Worker) -> Self {
        WorkerRef(NonNull::from(worker))
    }

    fn get(&self) -> &Worker {
        // SAFETY: see the type's comment: the borrow outlives every store holding this.
        unsafe { self.0.as_ref() }
    }
}

/// One guest thread's store data.
pub(crate) struct Host {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) pack: Arc<Pack>,
    pub(crate) role: Role,
    /// Replies waiting to be copied out by the guest.
    pub(crate) pending: Vec<Bytes>,
    /// The last communicator error, returned as the worker's error when the
    /// guest gives up because of it (so an echo is known for one).
    pub(crate) last_comm_error: Option<volley_comm::Error>,
    /// What the worker's function returned.
    pub(crate) finished: Option<WorkerResult>,
    /// What a panic in this thread said, before the guest aborted.
    pub(crate) panicked: Option<String>,
    /// Non-blocking sends and receives posted, by number.
    pub(crate) requests: Vec<Option<requests::Request>>,
}

impl Host {
    pub(crate) fn new(pack: Arc<Pack>, role: Role) -> Result<Host, crate::Error> {
        Ok(Host {
            wasi: wasi(&pack)?,
            pack,
            role,
            pending: Vec::new(),
            last_comm_error: None,
            finished: None,
            panicked: None,
            requests: Vec::new(),
        })
    }

    /// The worker this thread serves, or why it has none.
    pub(crate) fn worker(&self) -> Result<&Worker, String> {
        match &self.role {
            Role::Worker(w) => Ok(w.get()),
            Role::Main | Role::Starter => {
                Err("the module's main thread is not a worker: call this from the function".into())
            }
            Role::Helper => {
                Err("a thread the module started is not a worker: call this from the function's own thread".into())
            }
        }
    }

    /// Leaves `replies` for the guest to copy; returns how many.
    pub(crate) fn reply(&mut self, replies: Vec<Bytes>) -> i32 {
        self.pending = replies;
        self.pending.len() as i32
    }

    /// Leaves `message` as the pending reply and returns `status`.
    pub(crate) fn refuse(&mut self, status: i32, message: impl Into<String>) -> i32 {
        self.pending = vec![Bytes::from(message.into())];
        status
    }

    /// A communicator error as a status (the error is kept for the worker's result).
    pub(crate) fn comm_failed(&mut self, e: volley_comm::Error) -> i32 {
        let status = if volley_sdk::is_consequence(&e) { ECHO } else { FAILED };
        let status = self.refuse(status, e.to_string());
        self.last_comm_error = Some(e);
        status
    }
}

/// The machine's monotonic clock (CLOCK_MONOTONIC), for every guest thread:
/// wasmtime's own counts from each WASI context's creation, so an `Instant`
/// taken on one worker's thread would be meaningless on another's, or in a
/// process started from a snapshot.
struct MachineClock;

impl HostMonotonicClock for MachineClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime(2) writes the timespec it is given.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
        (now.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(now.tv_nsec as u64)
    }
}

/// The WASI context of one guest thread: the pack's stdio, clocks and
/// randomness, and its files directory as `/work`; no environment, no network
/// (preview 1 has no sockets to open). Every thread gets its own context
/// (wasmtime's cannot be shared), made the same way: a file opened on one
/// thread is not open on another.
fn wasi(pack: &Pack) -> Result<WasiP1Ctx, crate::Error> {
    let mut builder = WasiCtxBuilder::new();
    builder
        .inherit_stdout()
        .inherit_stderr()
        .args(&["volley-wasm"])
        .monotonic_clock(MachineClock)
        .allow_blocking_current_thread(true);
    builder.preopened_dir(&pack.files, "/work", FsPerms::ReadWrite).map_err(|e| {
        crate::Error::Engine(format!("cannot open the pack's files directory {}: {e:?}", pack.files.display()))
    })?;
    Ok(builder.build_p1())
}

/// The memory of the pack the caller runs in.
pub(crate) fn memory(caller: &Caller<'_, Host>) -> wasmtime::SharedMemory {
    caller.data().pack.memory.clone()
}

/// Every function a pack offers its module.
pub(crate) fn link(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_sync(linker, |host: &mut Host| &mut host.wasi)?;
    linker.func_wrap("wasi", "thread-spawn", |caller: Caller<'_, Host>, start_arg: i32| -> i32 {
        let host = caller.data();
        let from = match host.role {
            Role::Main => Spawner::Main,
            Role::Starter => Spawner::Starter,
            _ => Spawner::Other,
        };
        Pack::thread_spawn(&host.pack, from, start_arg)
    })?;
    calls::link(linker)?;
    comm::link(linker)?;
    requests::link(linker)?;
    storage::link(linker)?;
    Ok(())
}
