//! The guest SDK of Volley's WebAssembly packs.
//!
//! A function is a plain Rust function from a [`Worker`] (its rank, the
//! burst's size, its parameters and its [`Comm`]) to a JSON result, as with
//! the native SDK; one macro makes the module:
//!
//! ```ignore
//! use volley_wasm::{Op, Worker, WorkerResult, serde_json::json};
//!
//! fn sum_of_ranks(w: &Worker) -> WorkerResult {
//!     let total = w.comm().all_reduce(&[w.rank() as u64], Op::Sum)?;
//!     Ok(json!({ "rank": w.rank(), "sum": total[0] }))
//! }
//!
//! volley_wasm::main!(sum_of_ranks);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip1-threads`,
//! `volley deploy NAME target/wasm32-wasip1-threads/release/NAME.wasm`,
//! `volley run NAME --workers 64`.
//!
//! A pack of a WebAssembly function is one process with one memory: its
//! workers are threads of this module, so they share its statics and heap
//! (an `Arc`, a `static` with atomics or a lock) as threads of one program do.
//! What they send each other in the pack is handed over, not copied
//! ([`Comm::send_vec`]). The module has no network and sees files only under
//! `/work` (the pack's own directory); object storage is the host's
//! ([`Worker::storage_get`], [`Worker::storage_put`]).

#[cfg(not(target_family = "wasm"))]
compile_error!("volley-wasm is the SDK of WebAssembly guests: build for --target wasm32-wasip1-threads");

mod comm;
mod error;
mod sys;
mod worker;

pub use comm::{Comm, CommStats, Element, Op, RecvRequest, SendRequest};
pub use error::Error;
pub use serde_json;
pub use worker::Worker;

/// Any error a function returns; its text becomes the worker's error.
pub type WorkerError = Box<dyn std::error::Error + Send + Sync>;

/// What a function returns: a JSON result or an error.
pub type WorkerResult = Result<serde_json::Value, WorkerError>;

/// A function: runs on every worker of a burst.
pub type Function = fn(&Worker) -> WorkerResult;

/// The stack of each worker thread (taken from the pack's memory).
const WORKER_STACK: usize = 1 << 20;

/// Declares the module's `main`: it serves the functions named (each under
/// its own name) in the pack that starts it. `init = path;` first names a
/// function of the module's start-up, run once before any pack: what it
/// leaves in statics (a table, a model) every worker finds; with the
/// invoker's snapshot of the initialised module, it runs once per invoker,
/// not once per pack (a start-up that starts threads of its own cannot be
/// snapshotted: it runs in every pack process instead).
#[macro_export]
macro_rules! main {
    (init = $init:path; $($function:path),+ $(,)?) => {
        fn main() {
            $crate::serve(Some($init), &[$((stringify!($function), $function as $crate::Function)),+]);
        }
    };
    ($($function:path),+ $(,)?) => {
        fn main() {
            $crate::serve(None, &[$((stringify!($function), $function as $crate::Function)),+]);
        }
    };
}

/// Serves `functions` (name, function): says hello, runs `init`, and starts
/// the thread that will start the workers; then says it is ready (the
/// invoker's snapshot of this memory is taken here, once per invoker) and
/// waits. When a pack comes (in this process or in one started from the
/// snapshot), the host runs that thread: it starts one thread per worker.
pub fn serve(init: Option<fn()>, functions: &[(&str, Function)]) {
    tell_panics();
    let names = functions.iter().map(|(name, _)| *name).collect::<Vec<_>>().join("\n");
    // SAFETY: the host reads `names` during the call.
    unsafe { sys::hello(names.as_ptr(), names.len()) };
    if let Some(init) = init {
        init();
    }
    let table: Vec<Function> = functions.iter().map(|(_, f)| *f).collect();
    // SAFETY: no memory passed.
    unsafe { sys::starting() };
    let starter = match std::thread::Builder::new().stack_size(STARTER_STACK).spawn(move || start_workers(&table)) {
        Ok(starter) => starter,
        Err(e) => return fail(&format!("the module could not make its thread that starts the workers: {e}")),
    };
    // SAFETY: no memory passed.
    unsafe { sys::ready() };
    let _ = starter.join();
}

/// The stack of the thread that starts the workers.
const STARTER_STACK: usize = 256 << 10;

fn fail(message: &str) {
    // SAFETY: the host reads `message` during the call.
    unsafe { sys::fail(message.as_ptr(), message.len()) };
}

/// Waits for the pack and starts one thread per worker.
fn start_workers(table: &[Function]) {
    // SAFETY: no memory passed.
    let workers = unsafe { sys::wait_pack() };
    let mut threads = Vec::new();
    for _ in 0..workers.max(0) {
        let table = table.to_vec();
        match std::thread::Builder::new().stack_size(WORKER_STACK).spawn(move || run_worker(&table)) {
            Ok(thread) => threads.push(thread),
            Err(e) => {
                fail(&format!("the module could not start a worker thread: {e}"));
                break;
            }
        }
    }
    for thread in threads {
        let _ = thread.join();
    }
}

fn run_worker(table: &[Function]) {
    let result = Worker::current().map_err(WorkerError::from).and_then(|worker| match table.get(worker.function()) {
        Some(function) => function(&worker),
        None => Err(format!("the module has no function {}", worker.function()).into()),
    });
    let (kind, text) = match result {
        Ok(value) => (0, value.to_string()),
        Err(e) => {
            let echo = e.downcast_ref::<Error>().is_some_and(Error::is_echo);
            (if echo { 2 } else { 1 }, e.to_string())
        }
    };
    // SAFETY: the host reads `text` during the call.
    unsafe { sys::finish(kind, text.as_ptr(), text.len()) };
}

/// A panic's message goes to the host before the thread aborts (a trap
/// carries none), and to the pack's log as usual.
fn tell_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.to_string().replace('\n', " ");
        // SAFETY: the host reads `message` during the call.
        unsafe { sys::panicked(message.as_ptr(), message.len()) };
        default(info);
    }));
}
