//! Controller ⇄ invoker, over the controller's HTTP API (`/v1/invokers/...`).
//!
//! An invoker registers, then long-polls for [`Command`]s (each poll is also
//! its heartbeat) and posts [`Event`]s as they happen.

use serde::{Deserialize, Serialize};

use crate::pack::{Outcome, PackSpec};

/// `POST /v1/invokers`: an invoker introduces itself.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// Human-readable name (unique per cluster by convention, e.g. the host name).
    #[cfg_attr(feature = "openapi", schema(min_length = 1))]
    pub name: String,
    /// The host other packs reach this invoker's packs at.
    #[cfg_attr(feature = "openapi", schema(min_length = 1))]
    pub host: String,
    /// Worker threads it can run at once.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub slots: usize,
    /// Memory it offers to workers, in MiB.
    #[serde(deserialize_with = "crate::whole::deserialize")]
    pub memory_mb: u64,
}

/// The controller's answer to a registration.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registered {
    pub invoker_id: String,
    /// The invoker must poll at least this often or be declared lost.
    pub heartbeat_ms: u64,
}

/// What the controller asks an invoker to do.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The pack listens at `address` (for the rendezvous).
    PackAddress {
        burst: String,
        #[serde(deserialize_with = "crate::whole::deserialize")]
        pack: usize,
        address: String,
    },
    /// The pack is connected to every other pack.
    PackConnected {
        burst: String,
        #[serde(deserialize_with = "crate::whole::deserialize")]
        pack: usize,
        #[serde(deserialize_with = "crate::whole::deserialize")]
        at: u64,
    },
    WorkerStarted {
        burst: String,
        #[serde(deserialize_with = "crate::whole::deserialize")]
        rank: usize,
        #[serde(deserialize_with = "crate::whole::deserialize")]
        at: u64,
    },
    /// A worker's function marked the start of a phase (`Worker::phase`).
    WorkerPhase {
        burst: String,
        #[serde(deserialize_with = "crate::whole::deserialize")]
        rank: usize,
        phase: crate::api::Phase,
    },
    WorkerFinished {
        burst: String,
        #[serde(deserialize_with = "crate::whole::deserialize")]
        rank: usize,
        #[serde(deserialize_with = "crate::whole::deserialize")]
        at: u64,
        outcome: Outcome,
        /// Its traffic and phases.
        #[serde(default)]
        report: crate::api::WorkerReport,
    },
    /// The pack process is gone; `error` says why if it did not end cleanly.
    PackExited {
        burst: String,
        #[serde(deserialize_with = "crate::whole::deserialize")]
        pack: usize,
        #[serde(deserialize_with = "crate::whole::deserialize")]
        at: u64,
        error: Option<String>,
        stdout: String,
        stderr: String,
        truncated: bool,
        /// Whether `error` is a consequence (the pack saw a peer vanish, or was
        /// stopped because the burst was ending) rather than a cause of its own.
        #[serde(default)]
        consequence: bool,
        /// Bytes it sent to each pack, by pack index.
        #[serde(default, deserialize_with = "crate::whole::list")]
        sent_bytes: Vec<u64>,
    },
}

impl Event {
    /// The burst the event belongs to.
    pub fn burst(&self) -> &str {
        match self {
            Event::PackAddress { burst, .. }
            | Event::PackConnected { burst, .. }
            | Event::WorkerStarted { burst, .. }
            | Event::WorkerPhase { burst, .. }
            | Event::WorkerFinished { burst, .. }
            | Event::PackExited { burst, .. } => burst,
        }
    }
}

/// An invoker leaving on purpose: it was stopped, or the allocation or pod it
/// ran in ended. Its bursts fail (or are retried) at once, with this reason.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leaving {
    /// Why, in words (`Slurm allocation 42 ended (SIGTERM)`).
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 1024))]
    pub reason: String,
}

/// A registered invoker as `GET /v1/invokers` reports it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvokerInfo {
    pub id: String,
    pub registration: Registration,
    pub free_slots: usize,
    pub free_memory_mb: u64,
    /// Warm pack processes waiting for a pack.
    #[serde(default)]
    pub warm: usize,
    /// `ready`, `lost` (it stopped sending heartbeats) or `left` (it said it was leaving).
    pub status: String,
    pub last_seen: u64,
}
