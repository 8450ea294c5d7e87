//! The Volley SDK: what a function links.
//!
//! A function is a plain Rust function from a [`Worker`] (its rank, the burst's
//! size, its [`Comm`] and its parameters) to a JSON result. One macro turns a
//! binary into a deployable function:
//!
//! ```no_run
//! use volley_sdk::{Worker, WorkerResult, serde_json::json};
//!
//! fn sum_of_ranks(w: &Worker) -> WorkerResult {
//!     let total = w.comm().all_reduce(&[w.rank() as u64], volley_sdk::Op::Sum)?;
//!     Ok(json!({ "rank": w.rank(), "sum": total[0] }))
//! }
//!
//! volley_sdk::main!(sum_of_ranks);
//! ```
//!
//! Build it, `volley deploy NAME target/release/BINARY`, `volley run NAME --workers 64`.
//! The invoker starts the binary once per pack; [`serve`] then runs the pack:
//! it connects to the other packs, waits until every worker of the burst is
//! ready (gang start), runs the function on every rank of the pack in its own
//! thread and reports each result.

#![warn(missing_docs)]

/// Prints to stderr, ignoring failure: when the invoker has died, its end of
/// the pipe is closed and `eprintln!` would panic instead of letting the pack stop.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod cache;
mod control;
mod functions;
pub mod orchestrate;
mod runtime;
mod threads;
mod worker;

pub use cache::Cached;
pub use functions::{Function, Functions};
pub use runtime::{is_consequence, serve, serve_status};
pub use serde_json;
pub use volley_comm::{Comm, Element, Op};
pub use volley_storage::{Chunks, Error as StorageError, Overlap, Storage, StorageOptions, cooperative_get, overlap};
pub use worker::{Worker, WorkerError, WorkerResult};

/// Declares the binary's `main`: it serves `$function` (under its own name)
/// when an invoker starts it, and explains itself when a person does.
#[macro_export]
macro_rules! main {
    ($function:path) => {
        fn main() -> ::std::process::ExitCode {
            let mut functions = $crate::Functions::new();
            functions.add(stringify!($function), "", $function);
            $crate::serve(functions)
        }
    };
}
