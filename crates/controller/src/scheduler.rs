//! Which queued bursts start now: first come first served, with backfilling.
//!
//! A strict FIFO queue lets one burst that cannot fit yet hold back every
//! burst behind it, even small ones that would fit in the free slots. Batch
//! schedulers solve this with EASY backfilling, and so do we: the first burst
//! that does not fit (the head) gets a *reservation*, the earliest moment at
//! which it will fit if every running burst holds its capacity until its
//! deadline (bursts are stopped at their deadline, so this is a bound, not a
//! guess). A later burst may start ahead of it only if it fits now and either
//! ends by that moment or leaves enough room for the head at that moment. The
//! head therefore never waits longer because of the bursts that pass it: large
//! bursts are not starved, small ones do not wait for nothing.
//!
//! Everything here is pure (no clock, no locks), so the rules have unit tests.

use std::time::{Duration, Instant};

use volley_proto::api::Granularity;

use crate::placement::{Free, Placed, fits, place};

/// A queued burst, as the scheduler sees it.
#[derive(Debug, Clone)]
pub(crate) struct Waiting {
    pub(crate) workers: usize,
    pub(crate) granularity: Granularity,
    /// Memory per worker, MiB.
    pub(crate) memory_mb: u64,
    /// The longest it may hold its capacity once started (its timeout).
    pub(crate) runtime: Duration,
}

/// Capacity a running pack gives back, at the latest when its burst's deadline passes.
#[derive(Debug, Clone)]
pub(crate) struct Release {
    pub(crate) at: Instant,
    pub(crate) invoker: String,
    pub(crate) slots: usize,
    pub(crate) memory_mb: u64,
}

/// The head's reservation: when it will fit, and the capacity free at that moment
/// (less what backfilled bursts still hold then). `None`: it cannot fit on the
/// invokers there are, however long it waits; it holds nobody back.
struct Reservation {
    at: Instant,
    free_then: Vec<Free>,
    head: Waiting,
}

/// The queued bursts (by index into `queue`) that start now, with their placements.
pub(crate) fn plan(queue: &[Waiting], free: &[Free], releases: &[Release], now: Instant) -> Vec<(usize, Vec<Placed>)> {
    let mut free = free.to_vec();
    let mut reservation: Option<Option<Reservation>> = None;
    let mut started = Vec::new();
    for (index, burst) in queue.iter().enumerate() {
        let placement = match fits(burst.workers, burst.granularity, burst.memory_mb, &free) {
            true => place(burst.workers, burst.granularity, burst.memory_mb, &free),
            false => None,
        };
        let Some(placement) = placement else {
            // Only the first burst that does not fit gets a reservation (EASY backfilling).
            if reservation.is_none() {
                reservation = Some(reserve(burst, &free, releases));
            }
            continue;
        };
        let allowed = match &mut reservation {
            None | Some(None) => true,
            Some(Some(r)) => backfills(r, burst, &placement, now),
        };
        if allowed {
            take(&mut free, &placement, burst.memory_mb);
            started.push((index, placement));
        }
    }
    started
}

/// When `head` fits if running packs give their capacity back at their deadlines.
fn reserve(head: &Waiting, free: &[Free], releases: &[Release]) -> Option<Reservation> {
    let mut releases: Vec<&Release> = releases.iter().collect();
    releases.sort_by_key(|r| r.at);
    let mut then = free.to_vec();
    // Releases at the same moment are given back together before asking.
    let mut i = 0;
    while i < releases.len() {
        let at = releases[i].at;
        while i < releases.len() && releases[i].at == at {
            give_back(&mut then, releases[i]);
            i += 1;
        }
        if fits(head.workers, head.granularity, head.memory_mb, &then) {
            return Some(Reservation { at, free_then: then, head: head.clone() });
        }
    }
    None
}

/// Whether `burst`, which fits now as `placement`, may start ahead of the
/// reserved head; if it may and it still runs at the reservation, what it holds
/// then is taken out of the head's future room.
fn backfills(r: &mut Reservation, burst: &Waiting, placement: &[Placed], now: Instant) -> bool {
    if now + burst.runtime <= r.at {
        return true;
    }
    let mut then = r.free_then.clone();
    take(&mut then, placement, burst.memory_mb);
    if !fits(r.head.workers, r.head.granularity, r.head.memory_mb, &then) {
        return false;
    }
    r.free_then = then;
    true
}

fn take(free: &mut [Free], placement: &[Placed], memory_mb: u64) {
    for pack in placement {
        if let Some(f) = free.iter_mut().find(|f| f.invoker == pack.invoker) {
            f.slots = f.slots.saturating_sub(pack.size);
            f.memory_mb = f.memory_mb.saturating_sub((pack.size as u64).saturating_mul(memory_mb));
        }
    }
}

fn give_back(free: &mut [Free], release: &Release) {
    if let Some(f) = free.iter_mut().find(|f| f.invoker == release.invoker) {
        f.slots = f.slots.saturating_add(release.slots);
        f.memory_mb = f.memory_mb.saturating_add(release.memory_mb);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn burst(workers: usize, g: usize, runtime: Duration) -> Waiting {
        Waiting { workers, granularity: Granularity::Fixed(g), memory_mb: 1, runtime }
    }

    fn free(slots: usize) -> Vec<Free> {
        vec![Free { invoker: "a".into(), slots, memory_mb: 1 << 20 }]
    }

    fn release(now: Instant, after: Duration, slots: usize) -> Release {
        Release { at: now + after, invoker: "a".into(), slots, memory_mb: slots as u64 }
    }

    fn started(plan: Vec<(usize, Vec<Placed>)>) -> Vec<usize> {
        plan.into_iter().map(|(i, _)| i).collect()
    }

    #[test]
    fn bursts_that_fit_start_in_order() {
        let now = Instant::now();
        let queue = [burst(4, 4, MINUTE), burst(2, 2, MINUTE), burst(2, 1, MINUTE)];
        assert_eq!(started(plan(&queue, &free(8), &[], now)), vec![0, 1, 2]);
        assert_eq!(started(plan(&queue, &free(6), &[], now)), vec![0, 1], "the third waits for room");
    }

    #[test]
    fn a_head_that_cannot_fit_on_any_invoker_holds_nobody_back() {
        let now = Instant::now();
        // 100 workers on 8 slots, nothing running: no reservation is possible.
        let queue = [burst(100, 100, MINUTE), burst(2, 2, 10 * MINUTE)];
        assert_eq!(started(plan(&queue, &free(8), &[], now)), vec![1]);
    }

    #[test]
    fn a_short_burst_backfills_before_the_heads_reservation() {
        let now = Instant::now();
        // 6 of 8 slots busy until +10 min; the head needs 8.
        let releases = [release(now, 10 * MINUTE, 6)];
        let queue = [burst(8, 8, MINUTE), burst(2, 2, MINUTE)];
        assert_eq!(
            started(plan(&queue, &free(2), &releases, now)),
            vec![1],
            "ends by +1 min, before the head can start"
        );
    }

    #[test]
    fn a_long_burst_does_not_delay_the_reserved_head() {
        let now = Instant::now();
        let releases = [release(now, 10 * MINUTE, 6)];
        // It would still hold 2 slots at +10 min, when the head needs all 8.
        let queue = [burst(8, 8, MINUTE), burst(2, 2, 60 * MINUTE)];
        assert_eq!(started(plan(&queue, &free(2), &releases, now)), Vec::<usize>::new());
    }

    #[test]
    fn a_long_burst_may_use_room_the_head_will_not_need() {
        let now = Instant::now();
        // 10 slots: 6 busy until +10 min, 4 free; the head needs 7.
        let releases = [release(now, 10 * MINUTE, 6)];
        let queue = [burst(7, 7, MINUTE), burst(2, 2, 60 * MINUTE), burst(2, 2, 60 * MINUTE)];
        // At +10 min there are 10 free: the head's 7 plus room for one long burst of 2, not two.
        assert_eq!(started(plan(&queue, &free(4), &releases, now)), vec![1]);
    }

    #[test]
    fn the_head_starts_first_when_it_fits() {
        let now = Instant::now();
        let queue = [burst(8, 8, MINUTE), burst(2, 2, MINUTE)];
        assert_eq!(started(plan(&queue, &free(8), &[], now)), vec![0]);
    }

    #[test]
    fn memory_counts_like_slots() {
        let now = Instant::now();
        let queue = [
            Waiting { workers: 2, granularity: Granularity::Fixed(2), memory_mb: 512, runtime: MINUTE },
            burst(2, 2, MINUTE),
        ];
        let free = vec![Free { invoker: "a".into(), slots: 100, memory_mb: 600 }];
        // The head needs 1024 MiB of 600 and nothing will be given back: the small one runs.
        assert_eq!(started(plan(&queue, &free, &[], now)), vec![1]);
    }
}
