//! The invokers the controller knows: registration, heartbeats, capacity,
//! and the commands waiting for each one's next poll. Burst lifecycle lives
//! in `lifecycle.rs` and reaches invokers only through [`Fleet`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use volley_proto::cluster::{Command, InvokerInfo, Registration};

use crate::placement::Free;

/// One registered invoker.
pub(crate) struct Invoker {
    id: String,
    registration: Registration,
    free_slots: usize,
    free_memory_mb: u64,
    last_seen: Instant,
    last_seen_micros: u64,
    /// Commands waiting for the invoker's next poll.
    commands: Vec<Command>,
    /// Wakes the invoker's pending poll.
    wake: Arc<Notify>,
    /// Warm processes, as of the last poll.
    warm: usize,
    /// Why it drains, if it does: it takes no more packs and leaves soon.
    draining: Option<String>,
}

impl Invoker {
    fn new(id: String, registration: Registration) -> Self {
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
            draining: None,
        }
    }

    fn seen(&mut self) {
        self.last_seen = Instant::now();
        self.last_seen_micros = volley_proto::now_micros();
    }

    fn info(&self) -> InvokerInfo {
        InvokerInfo {
            id: self.id.clone(),
            registration: self.registration.clone(),
            free_slots: self.free_slots,
            free_memory_mb: self.free_memory_mb,
            warm: self.warm,
            status: if self.draining.is_some() { "draining" } else { "ready" }.into(),
            last_seen: self.last_seen_micros,
        }
    }

    /// Its human name, for messages.
    pub(crate) fn name(&self) -> &str {
        &self.registration.name
    }
}

/// What a poll finds: commands at once, or a notice to wait on.
pub(crate) enum Poll {
    Commands(Vec<Command>),
    Wait(Arc<Notify>),
}

/// Every live invoker, and the last word on those declared lost.
#[derive(Default)]
pub(crate) struct Fleet {
    invokers: BTreeMap<String, Invoker>,
    lost: Vec<InvokerInfo>,
    registered: u64,
}

impl Fleet {
    /// Registers an invoker; returns its id.
    pub(crate) fn register(&mut self, registration: Registration) -> String {
        self.registered += 1;
        let id = format!("inv-{}-{:06x}", self.registered, rand::random::<u32>() & 0xff_ffff);
        tracing::info!(invoker = %id, name = %registration.name, slots = registration.slots, "invoker registered");
        // A lost invoker that comes back is ready again, not listed twice.
        self.lost.retain(|l| l.registration.name != registration.name);
        self.invokers.insert(id.clone(), Invoker::new(id.clone(), registration));
        id
    }

    /// An invoker's human name (its id if it is gone).
    pub(crate) fn name_of(&self, id: &str) -> String {
        self.invokers.get(id).map(|i| i.name().to_string()).unwrap_or_else(|| id.to_string())
    }

    /// Every invoker, ready or lost.
    pub(crate) fn infos(&self) -> Vec<InvokerInfo> {
        let mut list: Vec<_> = self.invokers.values().map(Invoker::info).collect();
        list.extend(self.lost.iter().cloned());
        list
    }

    /// Every live invoker's whole capacity (as if nothing ran); a draining
    /// one has none: it is about to go.
    pub(crate) fn capacity(&self) -> Vec<Free> {
        let whole = |i: &Invoker| Free {
            invoker: i.id.clone(),
            slots: i.registration.slots,
            memory_mb: i.registration.memory_mb,
        };
        self.taking_packs().map(whole).collect()
    }

    /// Every live invoker's free capacity now (none on a draining one).
    pub(crate) fn free(&self) -> Vec<Free> {
        let free = |i: &Invoker| Free { invoker: i.id.clone(), slots: i.free_slots, memory_mb: i.free_memory_mb };
        self.taking_packs().map(free).collect()
    }

    fn taking_packs(&self) -> impl Iterator<Item = &Invoker> {
        self.invokers.values().filter(|i| i.draining.is_none())
    }

    /// The invoker `id` drains (`why`): nothing more is placed on it. False if it is not known.
    pub(crate) fn drain(&mut self, id: &str, why: &str) -> bool {
        let Some(invoker) = self.invokers.get_mut(id) else { return false };
        tracing::info!(invoker = %id, "invoker drains: {why}");
        invoker.draining = Some(why.to_string());
        true
    }

    /// Takes capacity for a pack placed on `id`.
    pub(crate) fn reserve(&mut self, id: &str, slots: usize, memory_mb: u64) {
        if let Some(i) = self.invokers.get_mut(id) {
            i.free_slots = i.free_slots.saturating_sub(slots);
            i.free_memory_mb = i.free_memory_mb.saturating_sub(memory_mb);
        }
    }

    /// Gives back the capacity of a pack that ended on `id`.
    pub(crate) fn release(&mut self, id: &str, slots: usize, memory_mb: u64) {
        if let Some(i) = self.invokers.get_mut(id) {
            i.free_slots = i.free_slots.saturating_add(slots).min(i.registration.slots);
            i.free_memory_mb = i.free_memory_mb.saturating_add(memory_mb).min(i.registration.memory_mb);
        }
    }

    /// Queues `command` for `id`'s next poll and wakes a poll that waits.
    pub(crate) fn send(&mut self, id: &str, command: Command) {
        if let Some(i) = self.invokers.get_mut(id) {
            i.commands.push(command);
            i.wake.notify_one();
        }
    }

    /// Whether a command matching `pred` already waits for `id`.
    pub(crate) fn has_pending(&self, id: &str, pred: impl Fn(&Command) -> bool) -> bool {
        self.invokers.get(id).is_some_and(|i| i.commands.iter().any(pred))
    }

    /// The start of a poll: a heartbeat; the commands waiting, or what to wait on.
    pub(crate) fn poll(&mut self, id: &str, warm: usize) -> Option<Poll> {
        let i = self.invokers.get_mut(id)?;
        i.seen();
        i.warm = warm;
        Some(match i.commands.is_empty() {
            false => Poll::Commands(std::mem::take(&mut i.commands)),
            true => Poll::Wait(i.wake.clone()),
        })
    }

    /// The commands that came while a poll waited.
    pub(crate) fn take_commands(&mut self, id: &str) -> Option<Vec<Command>> {
        self.invokers.get_mut(id).map(|i| std::mem::take(&mut i.commands))
    }

    /// A report from `id`: also a sign of life. False if it is not registered.
    pub(crate) fn heard_from(&mut self, id: &str) -> bool {
        self.invokers.get_mut(id).map(Invoker::seen).is_some()
    }

    /// Removes and returns the invoker `id`, which said it is leaving (kept as `left`).
    pub(crate) fn leave(&mut self, id: &str) -> Option<Invoker> {
        let invoker = self.invokers.remove(id)?;
        tracing::info!(invoker = %id, "invoker left");
        let mut info = invoker.info();
        info.status = "left".into();
        self.lost.retain(|l| l.registration.name != info.registration.name);
        self.lost.push(info);
        Some(invoker)
    }

    /// Moves every invoker's last poll `gap` later (at most to now): a
    /// silence the controller could not have heard through does not count.
    pub(crate) fn forgive(&mut self, now: Instant, gap: Duration) {
        for invoker in self.invokers.values_mut() {
            invoker.last_seen = (invoker.last_seen + gap).min(now);
        }
    }

    /// Removes and returns the invokers silent for longer than `timeout`,
    /// keeping their last info as lost.
    pub(crate) fn silent(&mut self, now: Instant, timeout: Duration) -> Vec<Invoker> {
        let ids: Vec<String> = self
            .invokers
            .values()
            .filter(|i| now.duration_since(i.last_seen) > timeout)
            .map(|i| i.id.clone())
            .collect();
        let mut gone = Vec::new();
        for id in ids {
            let Some(invoker) = self.invokers.remove(&id) else { continue };
            tracing::warn!(invoker = %id, "invoker missed its heartbeats; declared lost");
            let mut info = invoker.info();
            info.status = "lost".into();
            self.lost.retain(|l| l.registration.name != info.registration.name);
            self.lost.push(info);
            gone.push(invoker);
        }
        gone
    }
}

impl Invoker {
    /// Its id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_of_the_controller_is_not_counted_as_an_invokers_silence() {
        let mut fleet = Fleet::default();
        let id = fleet.register(Registration { name: "n".into(), host: "h".into(), slots: 1, memory_mb: 64 });
        let timeout = Duration::from_secs(10);
        let later = Instant::now() + Duration::from_secs(12);
        // Twelve seconds of which the controller slept eleven: one second of silence.
        fleet.forgive(later, Duration::from_secs(11));
        assert!(fleet.silent(later, timeout).is_empty());
        // Without the stall, the same silence is a lost invoker.
        let lost = fleet.silent(later + Duration::from_secs(10), timeout);
        assert_eq!(lost.iter().map(|i| i.id().to_string()).collect::<Vec<_>>(), [id]);
    }
}
