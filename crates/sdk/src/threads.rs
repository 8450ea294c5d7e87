//! Worker threads made before they are needed. Creating a thread costs tens
//! of microseconds, hundreds of them tens of milliseconds: a warm pack
//! process makes its workers' threads while it waits for a pack (the invoker
//! says how many in `VOLLEY_PREPARE_WORKERS`), so none are made on the
//! start-up path of a burst.

use std::sync::mpsc;
use std::thread::JoinHandle;

/// Work for one worker thread.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

pub(crate) struct Prepared {
    idle: Vec<(mpsc::Sender<Job>, JoinHandle<()>)>,
}

fn spawn_one() -> std::io::Result<(mpsc::Sender<Job>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel::<Job>();
    // An idle thread whose sender is dropped just ends.
    let handle = std::thread::Builder::new().name("volley-worker".into()).spawn(move || {
        if let Ok(job) = rx.recv() {
            job();
        }
    })?;
    Ok((tx, handle))
}

impl Prepared {
    /// `n` idle threads.
    pub(crate) fn spawn(n: usize) -> Prepared {
        Prepared { idle: (0..n).map_while(|_| spawn_one().ok()).collect() }
    }

    /// Makes sure at least `n` threads exist.
    pub(crate) fn ensure(&mut self, n: usize) -> Result<(), String> {
        while self.idle.len() < n {
            self.idle.push(spawn_one().map_err(|e| format!("cannot start a worker thread: {e}"))?);
        }
        Ok(())
    }

    /// Runs one job per thread; threads left over end. Returns the busy threads.
    pub(crate) fn run(mut self, jobs: Vec<Job>) -> Result<Vec<JoinHandle<()>>, String> {
        self.ensure(jobs.len())?;
        let mut busy = Vec::new();
        for (job, (tx, handle)) in jobs.into_iter().zip(self.idle.drain(..)) {
            tx.send(job).map_err(|_| "a worker thread ended before it got its work".to_string())?;
            busy.push(handle);
        }
        Ok(busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_job_runs_once_on_prepared_or_new_threads() {
        let ran = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<Job> = (0..5)
            .map(|_| {
                let ran = ran.clone();
                Box::new(move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                }) as Job
            })
            .collect();
        let busy = Prepared::spawn(3).run(jobs).unwrap();
        assert_eq!(busy.len(), 5);
        busy.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(ran.load(Ordering::SeqCst), 5);
    }
}
