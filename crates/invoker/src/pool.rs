//! The warm pool: pack processes started ahead of demand, connected and
//! waiting for a pack. A process serves one pack and exits (packs of
//! different bursts never share a process), so the pool is refilled after
//! every take, up to the most packs of a program recently running at once
//! (of one burst or of several); once a program has had no pack running
//! for the idle timeout, its processes idle that long are stopped. Refills start in waves and stop while the host's
//! memory runs low (`host_memory.rs`); the invoker's tick resumes them.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::spawn::{self, Started};
use crate::{Shared, host_memory};

/// Warm processes start this many at a time, with the host's memory checked
/// before each wave: thousands of starts at once would all pass one check
/// (and leave two cores no time for the invoker's heartbeats).
const WAVE: usize = 32;

/// Most worker threads the idle processes of one program prepare in all.
/// Demand is remembered as two maxima (most packs of a burst, largest pack),
/// and their product could ask for more threads than the machine has task
/// ids (a 1000-worker pack, then a burst of 200 packs of one: 200,000);
/// past the budget, a pack makes the rest of its threads when it starts.
const PREPARED_THREADS: usize = 4096;

/// Threads each of `target` idle processes prepares, for packs of up to `largest` workers.
fn prepared_per_process(target: usize, largest: usize) -> usize {
    largest.min(PREPARED_THREADS / target.max(1))
}

/// The program a pool entry runs: its path and arguments.
pub(crate) type ProgramKey = (PathBuf, Vec<String>);

#[derive(Default)]
struct Entry {
    idle: VecDeque<(Instant, Started)>,
    /// Warm starts in flight.
    starting: usize,
    /// How many idle processes to keep.
    target: usize,
    /// Worker threads each prepares: the largest pack recently seen.
    threads: usize,
    /// Packs of the program running now, of whatever bursts.
    running: usize,
    last_used: Option<Instant>,
    /// A refill stopped for want of memory: the tick tries again.
    held_back: bool,
}

/// A pack of a program running: counted until dropped.
pub(crate) struct Running<'a> {
    pool: &'a Pool,
    key: ProgramKey,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Some(entry) = self.pool.lock().get_mut(&self.key) {
            entry.running = entry.running.saturating_sub(1);
            // In use until now: the idle timeout counts from its last pack's end.
            entry.last_used = Some(Instant::now());
        }
    }
}

#[derive(Default)]
pub(crate) struct Pool {
    entries: Mutex<HashMap<ProgramKey, Entry>>,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, HashMap<ProgramKey, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A warm process of `key`, if one is idle and alive.
    pub(crate) fn take(&self, key: &ProgramKey) -> Option<Started> {
        let mut entries = self.lock();
        let entry = entries.get_mut(key)?;
        entry.last_used = Some(Instant::now());
        while let Some((_, mut started)) = entry.idle.pop_front() {
            if matches!(started.child.try_wait(), Ok(None)) {
                return Some(started);
            }
        }
        None
    }

    /// A pack of a burst that wants `packs` processes of `key` at once is
    /// starting: keep as many warm as that, or as the program's packs running
    /// now (concurrent one-pack bursts: a map's calls, a program's processes),
    /// up to the cap. The pack counts as running until the guard is dropped.
    pub(crate) fn note_demand<'a>(
        &'a self,
        key: &ProgramKey,
        packs: usize,
        pack_size: usize,
        cap: usize,
    ) -> Running<'a> {
        let mut entries = self.lock();
        let entry = entries.entry(key.clone()).or_default();
        entry.running += 1;
        entry.target = entry.target.max(packs).max(entry.running).min(cap);
        entry.threads = entry.threads.max(pack_size);
        entry.last_used = Some(Instant::now());
        Running { pool: self, key: key.clone() }
    }

    /// Idle processes, in all.
    pub(crate) fn warm(&self) -> usize {
        self.lock().values().map(|e| e.idle.len()).sum()
    }

    /// Whether a refill stopped for want of memory (and should be tried again).
    pub(crate) fn held_back(&self) -> bool {
        self.lock().values().any(|e| e.held_back)
    }

    /// Starts processes until each program has its target idle or starting,
    /// in waves, while the host has memory to spare.
    pub(crate) fn refill(shared: &Arc<Shared>) {
        let mut wanted = Vec::new();
        {
            let mut entries = shared.pool.lock();
            for (key, entry) in entries.iter_mut() {
                entry.held_back = false;
                let have = entry.idle.len() + entry.starting;
                if entry.target > have {
                    entry.starting += entry.target - have;
                    wanted.push((key.clone(), entry.target - have, prepared_per_process(entry.target, entry.threads)));
                }
            }
        }
        for (key, n, threads) in wanted {
            let shared = shared.clone();
            tokio::spawn(async move {
                // Reserved in `starting` and not yet settled by `start_warm`.
                let mut left = n;
                // Starts that panicked: they settled nothing and are not tried again.
                let mut lost = 0;
                let mut low_memory = false;
                while left > 0 {
                    // Drained or forgotten meanwhile (shutdown, idle timeout): no more.
                    if shared.pool.lock().get(&key).is_none_or(|e| e.target == 0) {
                        break;
                    }
                    if !host_memory::room_for_warm() {
                        low_memory = true;
                        break;
                    }
                    let wave = left.min(WAVE);
                    left -= wave;
                    let mut starts = tokio::task::JoinSet::new();
                    for _ in 0..wave {
                        starts.spawn(start_warm(shared.clone(), key.clone(), threads));
                    }
                    while let Some(joined) = starts.join_next().await {
                        lost += usize::from(joined.is_err());
                    }
                }
                if left + lost > 0 {
                    if low_memory {
                        // Retried every second while memory stays low: not worth a line each time.
                        tracing::debug!(left, "the host's memory runs low: warm pack processes wait");
                    }
                    let mut entries = shared.pool.lock();
                    let entry = entries.entry(key).or_default();
                    entry.starting = entry.starting.saturating_sub(left + lost);
                    entry.held_back |= low_memory;
                }
            });
        }
    }

    /// Forgets the demand of programs with no pack running and none ended
    /// for the idle timeout, and stops their processes idle that long.
    pub(crate) async fn expire(&self, idle_timeout: std::time::Duration) {
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let mut entries = self.lock();
            for entry in entries.values_mut() {
                // A program with packs running is in use, however long they run:
                // its demand stays, and so do its idle processes (nothing else
                // would start them again before its next burst; a refill held
                // back for memory waits for the running packs to end).
                let unused = entry.last_used.is_none_or(|t| now.duration_since(t) > idle_timeout);
                if entry.running > 0 || !unused {
                    continue;
                }
                entry.target = 0;
                entry.threads = 0;
                while entry.idle.front().is_some_and(|(since, _)| now.duration_since(*since) > idle_timeout) {
                    if let Some((_, s)) = entry.idle.pop_front() {
                        expired.push(s);
                    }
                }
            }
        }
        for mut s in expired {
            spawn::stop(&mut s.child).await;
        }
    }

    /// Stops every idle process (the invoker is shutting down).
    pub(crate) async fn drain(&self) {
        let all: Vec<Started> = {
            let mut entries = self.lock();
            entries
                .values_mut()
                .flat_map(|e| {
                    e.target = 0;
                    e.idle.drain(..).map(|(_, s)| s).collect::<Vec<_>>()
                })
                .collect()
        };
        for mut s in all {
            spawn::stop(&mut s.child).await;
        }
    }
}

/// One warm process of `key`, into the pool.
async fn start_warm(shared: Arc<Shared>, key: ProgramKey, threads: usize) {
    let started = spawn::start(&shared, &key.0, &key.1, "a warm pack process", threads).await;
    let mut entries = shared.pool.lock();
    let entry = entries.entry(key).or_default();
    entry.starting = entry.starting.saturating_sub(1);
    match started {
        Ok(s) => entry.idle.push_back((Instant::now(), s)),
        Err(e) => tracing::warn!("a warm pack process failed to start: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idle_processes_of_a_program_prepare_a_bounded_number_of_threads() {
        // A burst of 16 packs of 64: all of them prepared, as start-up needs.
        assert_eq!(prepared_per_process(16, 64), 64);
        // A 1000-worker pack remembered while 200 single-worker packs are wanted: bounded.
        assert_eq!(prepared_per_process(200, 1000), 20);
        assert!(200 * prepared_per_process(200, 1000) <= PREPARED_THREADS);
        assert_eq!(prepared_per_process(0, 8), 8);
    }

    #[test]
    fn packs_of_several_bursts_running_at_once_count_as_demand() {
        let pool = Pool::default();
        let key: ProgramKey = (PathBuf::from("volley"), vec!["python-workers".into()]);
        let target = |pool: &Pool| pool.lock()[&key].target;
        // Four one-pack bursts (a program's processes) at once: four warm processes wanted, not one.
        let running: Vec<_> = (0..4).map(|_| pool.note_demand(&key, 1, 1, 16)).collect();
        assert_eq!(target(&pool), 4);
        drop(running);
        assert_eq!(pool.lock()[&key].running, 0);
        // Remembered after they ended, as the most packs of one burst is; and capped.
        let _one = pool.note_demand(&key, 1, 1, 16);
        assert_eq!(target(&pool), 4);
        let _many = pool.note_demand(&key, 40, 1, 16);
        assert_eq!(target(&pool), 16);
    }

    #[tokio::test]
    async fn demand_is_remembered_while_packs_run_longer_than_the_idle_timeout() {
        let pool = Pool::default();
        let key: ProgramKey = (PathBuf::from("volley"), vec!["pack".into()]);
        let long_ago = || Some(Instant::now() - std::time::Duration::from_secs(600));
        let running = pool.note_demand(&key, 8, 1, 16);
        pool.lock().get_mut(&key).unwrap().last_used = long_ago();
        pool.expire(std::time::Duration::from_secs(60)).await;
        assert_eq!(pool.lock()[&key].target, 8, "a burst still running keeps its demand");
        // Its end counts as a use: the timeout starts over from there.
        drop(running);
        pool.expire(std::time::Duration::from_secs(60)).await;
        assert_eq!(pool.lock()[&key].target, 8);
        pool.lock().get_mut(&key).unwrap().last_used = long_ago();
        pool.expire(std::time::Duration::from_secs(60)).await;
        assert_eq!(pool.lock()[&key].target, 0, "forgotten once unused for the timeout");
    }
}
