//! The invokers the controller knows: their capacity, their command queues
//! and when they were last heard from.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;
use volley_proto::Micros;
use volley_proto::cluster::{Command, InvokerInfo, Registration};

use crate::placement::Free;

pub(crate) struct Invoker {
    pub(crate) id: String,
    pub(crate) registration: Registration,
    pub(crate) free_slots: usize,
    pub(crate) free_memory_mb: u64,
    pub(crate) last_seen: Instant,
    pub(crate) last_seen_micros: Micros,
    /// Commands waiting for the invoker's next poll.
    pub(crate) commands: Vec<Command>,
    /// Wakes the invoker's pending poll.
    pub(crate) wake: Arc<Notify>,
    /// Warm processes, as of the last poll.
    pub(crate) warm: usize,
}

impl Invoker {
    pub(crate) fn new(id: String, registration: Registration) -> Self {
        Invoker {
            id,
            free_slots: registration.slots,
            free_memory_mb: registration.memory_mb,
            registration,
            last_seen: Instant::now(),
            last_seen_micros: volley_proto::now_micros(),
            commands: Vec::new(),
            wake: Arc::new(Notify::new()),
            warm: 0,
        }
    }

    pub(crate) fn send(&mut self, command: Command) {
        self.commands.push(command);
        self.wake.notify_one();
    }

    pub(crate) fn seen(&mut self) {
        self.last_seen = Instant::now();
        self.last_seen_micros = volley_proto::now_micros();
    }

    pub(crate) fn free(&self) -> Free {
        Free { invoker: self.id.clone(), slots: self.free_slots, memory_mb: self.free_memory_mb }
    }

    pub(crate) fn reserve(&mut self, workers: usize, memory_mb: u64) {
        self.free_slots = self.free_slots.saturating_sub(workers);
        self.free_memory_mb = self.free_memory_mb.saturating_sub(memory_mb);
    }

    pub(crate) fn release(&mut self, workers: usize, memory_mb: u64) {
        self.free_slots = self.free_slots.saturating_add(workers).min(self.registration.slots);
        self.free_memory_mb = self.free_memory_mb.saturating_add(memory_mb).min(self.registration.memory_mb);
    }

    pub(crate) fn info(&self) -> InvokerInfo {
        InvokerInfo {
            id: self.id.clone(),
            registration: self.registration.clone(),
            free_slots: self.free_slots,
            free_memory_mb: self.free_memory_mb,
            warm: self.warm,
            status: "ready".into(),
            last_seen: self.last_seen_micros,
        }
    }
}
