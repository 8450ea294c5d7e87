//! The warm pool: pack processes started ahead of demand, connected and
//! waiting for a pack. A process serves one pack and exits (packs of
//! different bursts never share a process), so the pool is refilled after
//! every take, up to the most packs of a program recently running at once
//! (of one burst or of several); processes idle longer than the idle
//! timeout are stopped.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::Shared;
use crate::spawn::{self, Started};

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

    /// Starts processes until each program has its target idle or starting.
    pub(crate) fn refill(shared: &Arc<Shared>) {
        let mut wanted = Vec::new();
        {
            let mut entries = shared.pool.lock();
            for (key, entry) in entries.iter_mut() {
                let have = entry.idle.len() + entry.starting;
                if entry.target > have {
                    entry.starting += entry.target - have;
                    wanted.push((key.clone(), entry.target - have, prepared_per_process(entry.target, entry.threads)));
                }
            }
        }
        for (key, n, threads) in wanted {
            for _ in 0..n {
                let shared = shared.clone();
                let key = key.clone();
                tokio::spawn(async move {
                    let started = spawn::start(&shared, &key.0, &key.1, "a warm pack process", threads).await;
                    let mut entries = shared.pool.lock();
                    let entry = entries.entry(key).or_default();
                    entry.starting = entry.starting.saturating_sub(1);
                    match started {
                        Ok(s) => entry.idle.push_back((Instant::now(), s)),
                        Err(e) => tracing::warn!("a warm pack process failed to start: {e}"),
                    }
                });
            }
        }
    }

    /// Stops processes idle longer than the idle timeout; forgets the demand
    /// of programs unused for that long.
    pub(crate) async fn expire(&self, idle_timeout: std::time::Duration) {
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let mut entries = self.lock();
            for entry in entries.values_mut() {
                if entry.last_used.is_none_or(|t| now.duration_since(t) > idle_timeout) {
                    entry.target = 0;
                    entry.threads = 0;
                }
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
}
