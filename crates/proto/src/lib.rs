//! The types that cross process boundaries in Volley, and nothing else:
//!
//! - [`api`]: the public HTTP API (bursts, functions, errors);
//! - [`cluster`]: controller ⇄ invoker (registration, commands, events);
//! - [`pack`]: invoker ⇄ pack process (one JSON message per line over a Unix socket);
//! - [`flow`]: workflows: events, triggers, deployed workflows and their runs;
//! - [`session`]: program sessions: the shared objects of a client program.
//!
//! Controller, invoker, SDK and CLI all depend on this crate and on none of
//! each other's internals.

pub mod api;
pub mod cluster;
pub mod dashboard;
pub mod flow;
pub mod pack;
pub mod seconds;
pub mod session;
pub mod whole;

/// Microseconds since the Unix epoch: how every timestamp travels.
pub type Micros = u64;

/// The current time in [`Micros`].
pub fn now_micros() -> Micros {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}
