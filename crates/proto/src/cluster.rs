//! Controller ⇄ invoker, over the controller's HTTP API (`/v1/invokers/...`).
//!
//! An invoker registers, then long-polls for [`Command`]s (each poll is also
//! its heartbeat) and posts [`Event`]s as they happen.

use serde::{Deserialize, Serialize};

use crate::Micros;
use crate::pack::{Outcome, PackSpec};

/// `POST /v1/invokers`: an invoker introduces itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// Human-readable name (unique per cluster by convention, e.g. the host name).
    pub name: String,
    /// The host other packs reach this invoker's packs at.
    pub host: String,
    /// Worker threads it can run at once.
    pub slots: usize,
    /// Memory it offers to workers, in MiB.
    pub memory_mb: u64,
}

/// The controller's answer to a registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registered {
    pub invoker_id: String,
    /// The invoker must poll at least this often or be declared lost.
    pub heartbeat_ms: u64,
}

/// What the controller asks an invoker to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Start (or take from the warm pool) a process for this pack.
    StartPack(Box<PackSpec>),
    /// Every pack's address: the burst's packs on this invoker may now connect.
    Peers { burst: String, addresses: Vec<String> },
    /// Stop every pack of the burst on this invoker.
    Cancel { burst: String, reason: String },
}

/// What an invoker reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The pack listens at `address` (for the rendezvous).
    PackAddress {
        burst: String,
        pack: usize,
        address: String,
    },
    /// The pack is connected to every other pack.
    PackConnected {
        burst: String,
        pack: usize,
        at: Micros,
    },
    WorkerStarted {
        burst: String,
        rank: usize,
        at: Micros,
    },
    WorkerFinished {
        burst: String,
        rank: usize,
        at: Micros,
        outcome: Outcome,
    },
    /// The pack process is gone; `error` says why if it did not end cleanly.
    PackExited {
        burst: String,
        pack: usize,
        at: Micros,
        error: Option<String>,
        stdout: String,
        stderr: String,
        truncated: bool,
        /// Whether `error` is a consequence (the pack saw a peer vanish, or was
        /// stopped because the burst was ending) rather than a cause of its own.
        #[serde(default)]
        consequence: bool,
    },
}

impl Event {
    /// The burst the event belongs to.
    pub fn burst(&self) -> &str {
        match self {
            Event::PackAddress { burst, .. }
            | Event::PackConnected { burst, .. }
            | Event::WorkerStarted { burst, .. }
            | Event::WorkerFinished { burst, .. }
            | Event::PackExited { burst, .. } => burst,
        }
    }
}

/// A registered invoker as `GET /v1/invokers` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvokerInfo {
    pub id: String,
    pub registration: Registration,
    pub free_slots: usize,
    pub free_memory_mb: u64,
    /// Warm pack processes waiting for a pack.
    #[serde(default)]
    pub warm: usize,
    /// `ready` or `lost`.
    pub status: String,
    pub last_seen: Micros,
}
