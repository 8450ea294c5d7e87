//! Runs every pack of a burst inside this process: one [`Pack`] per pack, one
//! thread per worker, connected through a real transport. Tests, benchmarks
//! and single-machine users start bursts this way; the platform starts each
//! pack in its own process instead.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use crate::blocking::Comm;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::options::{PackOptions, TransportOptions};
use crate::pack::Pack;
use crate::rendezvous::LocalRendezvous;
use crate::wire::Limits;

/// A burst whose packs all live in this process.
#[derive(Debug, Clone)]
pub struct LocalBurst {
    layout: Layout,
    transport: TransportOptions,
    op_timeout: Duration,
    spin: Option<Duration>,
    limits: Limits,
    tree_above_packs: usize,
    burst: String,
}

impl LocalBurst {
    /// A burst of the given layout over TCP with default timeouts.
    pub fn new(layout: Layout) -> Self {
        LocalBurst {
            layout,
            transport: TransportOptions::Tcp(Default::default()),
            op_timeout: Duration::from_secs(60),
            spin: None,
            limits: Limits::default(),
            tree_above_packs: crate::options::TREE_ABOVE_PACKS,
            burst: format!("local-{:016x}", rand::random::<u64>()),
        }
    }

    /// Chooses the transport between packs (default: TCP).
    pub fn transport(mut self, transport: TransportOptions) -> Self {
        self.transport = transport;
        self
    }

    /// Longest any operation may block (default: 60 s).
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// How long a blocked worker polls before parking (default: 50 µs).
    pub fn spin(mut self, spin: Duration) -> Self {
        self.spin = Some(spin);
        self
    }

    /// Size limits for received messages.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Above this many packs reductions combine partials along a tree of
    /// packs (see [`PackOptions::tree_above_packs`]; default 64).
    pub fn tree_above_packs(mut self, packs: usize) -> Self {
        self.tree_above_packs = packs;
        self
    }

    /// The burst's id (random unless set), which names its broker objects.
    pub fn id(&self) -> &str {
        &self.burst
    }

    /// Names the burst (1 to 64 characters from `[A-Za-z0-9_-]`).
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.burst = id.into();
        self
    }

    /// Runs `worker` on every rank; returns the results in rank order, or the
    /// burst's first failure.
    pub fn run<T, F>(&self, worker: F) -> Result<Vec<T>>
    where
        T: Send + 'static,
        F: Fn(&Comm) -> Result<T> + Send + Sync + 'static,
    {
        let (results, failure) = self.run_each(worker)?;
        if let Some(err) = failure {
            return Err(err);
        }
        results.into_iter().collect()
    }

    /// Runs `worker` on every rank; returns each rank's own result and the
    /// first failure any pack recorded. A worker that returns an error or
    /// panics aborts the burst, so the others fail fast instead of waiting.
    pub fn run_each<T, F>(&self, worker: F) -> Result<(Vec<Result<T>>, Option<Error>)>
    where
        T: Send + 'static,
        F: Fn(&Comm) -> Result<T> + Send + Sync + 'static,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::transport("runtime", e))?;
        let secret: [u8; 32] = rand::random();
        let rendezvous = Arc::new(LocalRendezvous::new());
        let connects = (0..self.layout.packs()).map(|pack| {
            let mut opts = PackOptions::new(self.burst.clone(), secret.to_vec(), self.layout.clone(), pack)
                .with_transport(self.transport.clone());
            opts.op_timeout = self.op_timeout;
            opts.limits = self.limits;
            opts.tree_above_packs = self.tree_above_packs;
            if let Some(spin) = self.spin {
                opts.spin = spin;
            }
            let rendezvous = rendezvous.clone();
            runtime.spawn(async move { Pack::connect(opts, rendezvous).await })
        });
        let connects: Vec<_> = connects.collect();
        let packs: Vec<Pack> = runtime.block_on(async {
            let mut packs = Vec::new();
            let mut first_err = None;
            for c in connects {
                match c.await {
                    Ok(Ok(p)) => packs.push(p),
                    Ok(Err(e)) => first_err = first_err.or(Some(e)),
                    Err(e) => first_err = first_err.or(Some(Error::transport("runtime", e))),
                }
            }
            match first_err {
                None => Ok(packs),
                Some(e) => {
                    for p in packs {
                        let _ = p.close().await;
                    }
                    Err(e)
                }
            }
        })?;

        let worker = Arc::new(worker);
        let mut handles = Vec::new();
        for pack in &packs {
            for comm in pack.comms() {
                let worker = worker.clone();
                let handle = std::thread::Builder::new()
                    .name(format!("rank-{}", comm.rank()))
                    .spawn(move || {
                        let rank = comm.rank();
                        let result = match catch_unwind(AssertUnwindSafe(|| worker(&comm))) {
                            Ok(r) => r,
                            Err(panic) => Err(Error::invalid(format!("worker panicked: {}", panic_message(&panic)))),
                        };
                        if let Err(err) = &result
                            && !matches!(err, Error::PeerFailed { .. } | Error::Disconnected { .. })
                        {
                            comm.abort(&err.to_string());
                        }
                        (rank, result)
                    })
                    .map_err(|e| Error::transport("thread", e))?;
                handles.push(handle);
            }
        }
        let mut results: Vec<Option<Result<T>>> = (0..self.layout.workers()).map(|_| None).collect();
        for h in handles {
            if let Ok((rank, r)) = h.join() {
                results[rank] = Some(r);
            }
        }
        let failure = packs.iter().find_map(Pack::failure);
        runtime.block_on(async {
            futures::future::join_all(packs.into_iter().map(Pack::close)).await;
        });
        let results =
            results.into_iter().map(|r| r.unwrap_or_else(|| Err(Error::invalid("worker thread vanished")))).collect();
        Ok((results, failure))
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
