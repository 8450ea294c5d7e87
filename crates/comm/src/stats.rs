//! What each worker sent, split by locality.

use std::sync::atomic::{AtomicU64, Ordering};

/// Messages and bytes one worker sent, inside its pack and to other packs.
///
/// A message that a collective aggregates into one transfer between packs is
/// still counted once for the rank that contributed it; a broadcast fanned out
/// inside the receiving pack counts once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommStats {
    /// Messages handed to workers of the same pack.
    pub local_messages: u64,
    /// Their bytes.
    pub local_bytes: u64,
    /// Messages sent to other packs.
    pub remote_messages: u64,
    /// Their bytes.
    pub remote_bytes: u64,
    /// Transfers this worker made to other packs: a collective sends one per
    /// destination pack and round for the whole pack, whatever the number of
    /// messages (a reduction through blocks has two rounds).
    pub remote_transfers: u64,
}

impl std::ops::Add for CommStats {
    type Output = CommStats;
    fn add(self, o: CommStats) -> CommStats {
        CommStats {
            local_messages: self.local_messages + o.local_messages,
            local_bytes: self.local_bytes + o.local_bytes,
            remote_messages: self.remote_messages + o.remote_messages,
            remote_bytes: self.remote_bytes + o.remote_bytes,
            remote_transfers: self.remote_transfers + o.remote_transfers,
        }
    }
}

#[derive(Default)]
pub(crate) struct StatCounters {
    local_messages: AtomicU64,
    local_bytes: AtomicU64,
    remote_messages: AtomicU64,
    remote_bytes: AtomicU64,
    remote_transfers: AtomicU64,
}

impl StatCounters {
    pub fn local(&self, bytes: usize) {
        self.local_messages.fetch_add(1, Ordering::Relaxed);
        self.local_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn remote(&self, bytes: usize) {
        self.remote_messages.fetch_add(1, Ordering::Relaxed);
        self.remote_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn transfer(&self) {
        self.remote_transfers.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CommStats {
        CommStats {
            local_messages: self.local_messages.load(Ordering::Relaxed),
            local_bytes: self.local_bytes.load(Ordering::Relaxed),
            remote_messages: self.remote_messages.load(Ordering::Relaxed),
            remote_bytes: self.remote_bytes.load(Ordering::Relaxed),
            remote_transfers: self.remote_transfers.load(Ordering::Relaxed),
        }
    }
}
