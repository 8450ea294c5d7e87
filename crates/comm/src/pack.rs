//! A pack: the workers of one burst that share a process, their mailboxes,
//! and the one transport endpoint they share to reach the other packs.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::sync::Notify;

use crate::blocking::Comm;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::mailbox::{Key, Mailbox, Recv, Source, lock};
use crate::options::{PackOptions, TransportOptions};
use crate::pool::{Buffer, Pool};
use crate::reassembly::{Arrival, Reassembler};
use crate::rendezvous::Rendezvous;
use crate::stats::StatCounters;
use crate::transport::{PacketSink, Transport};
use crate::wire::{DST_WHOLE_PACK, Entry, Header, Kind, Limits, decode_bundle, encode_abort, encode_bundle, packetize};

/// The state the workers of a pack share.
pub(crate) struct Core {
    pub opts: PackOptions,
    pub runtime: Handle,
    first_rank: usize,
    mailboxes: Vec<Arc<Mailbox>>,
    pub stats: Vec<StatCounters>,
    /// Per local worker: how many collectives it has entered (their tags).
    pub collectives: Vec<AtomicU64>,
    deposits: Mutex<HashMap<u64, Deposit>>,
    /// Reduction inputs lent to the pack's workers (see `collectives/lend.rs`).
    pub loans: crate::collectives::Loans,
    reassembler: Reassembler,
    next_seq: Vec<AtomicU64>,
    /// Payload bytes of the bundles sent to each pack.
    sent_to: Vec<AtomicU64>,
    /// Packs that said goodbye: no more messages will come from them.
    closed: Vec<AtomicBool>,
    byes: AtomicUsize,
    failure: OnceLock<Error>,
    /// Sends started and not yet finished (close waits for them).
    in_flight: AtomicUsize,
    changed: Notify,
    transport: OnceLock<Transport>,
    pool: Arc<Pool>,
}

struct Deposit {
    parts: Vec<Option<Vec<Bytes>>>,
    count: usize,
}

impl Core {
    pub fn layout(&self) -> &Layout {
        &self.opts.layout
    }

    pub fn pack(&self) -> usize {
        self.opts.pack
    }

    pub fn local_index(&self, rank: usize) -> Option<usize> {
        let i = rank.checked_sub(self.first_rank)?;
        (i < self.mailboxes.len()).then_some(i)
    }

    pub fn failure(&self) -> Option<Error> {
        self.failure.get().cloned()
    }

    /// Reads what has arrived on the pack's direct connections, for a worker
    /// that busy-polls (see `transport/inbound.rs`).
    pub fn progress(&self) {
        if let Some(transport) = self.transport.get() {
            transport.progress(self);
        }
    }

    fn is_closed(&self, rank: usize) -> bool {
        rank < self.layout().workers() && self.closed[self.layout().pack_of(rank)].load(Ordering::Acquire)
    }

    /// Delivers a message to a worker of this pack, without copying it.
    pub fn deliver_local(&self, src: usize, dst: usize, key: Key, payload: Bytes) {
        let i = dst - self.first_rank;
        self.mailboxes[i].deliver(key, src, payload);
    }

    /// Posts a receive in a local worker's mailbox.
    pub fn post(&self, local: usize, key: Key, from: Source) -> Recv {
        self.mailboxes[local].post(key, from, |src| self.is_closed(src))
    }

    /// Gathers one value per local worker for a hierarchical collective; the
    /// last worker to arrive gets everyone's, in local rank order.
    pub fn deposit(&self, tag: u64, local: usize, parts: Vec<Bytes>) -> Option<Vec<Vec<Bytes>>> {
        let size = self.mailboxes.len();
        if size == 1 {
            return Some(vec![parts]);
        }
        let mut deposits = lock(&self.deposits);
        let d = deposits.entry(tag).or_insert_with(|| Deposit { parts: vec![None; size], count: 0 });
        d.parts[local] = Some(parts);
        d.count += 1;
        if d.count < size {
            return None;
        }
        let d = deposits.remove(&tag).expect("present");
        Some(d.parts.into_iter().map(|p| p.unwrap_or_default()).collect())
    }

    /// Sends a bundle to another pack. Its place in the order of bundles to
    /// that pack is fixed now, at the call; the returned future moves the bytes.
    pub fn send_bundle(
        self: &Arc<Self>,
        dst_pack: usize,
        entries: Vec<Entry>,
    ) -> impl Future<Output = Result<()>> + use<> {
        let seq = self.next_seq[dst_pack].fetch_add(1, Ordering::Relaxed);
        let bytes: usize = entries.iter().map(|e| e.payload.len()).sum();
        self.sent_to[dst_pack].fetch_add(bytes as u64, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let core = self.clone();
        async move {
            let result = core.send_packets(dst_pack, Kind::Data, seq, encode_bundle(&entries)).await;
            if core.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
                core.changed.notify_waiters();
            }
            if let Err(err) = &result
                && core.failure().is_none()
            {
                // A bundle that could not be sent is lost: the burst cannot be correct any more.
                let rank = entries.first().map_or(core.first_rank, |e| e.src as usize);
                core.abort(rank, &format!("sending to pack {dst_pack} failed: {err}"));
            }
            result
        }
    }

    async fn send_packets(&self, dst_pack: usize, kind: Kind, seq: u64, body: Vec<Bytes>) -> Result<()> {
        if let Some(err) = self.failure() {
            return Err(err);
        }
        let transport = self.transport.get().ok_or(Error::Closed)?;
        let total = body.iter().map(|b| b.len() as u64).sum();
        let chunk = transport.chunk_for(total, self.opts.transport.chunk_bytes());
        let packets = packetize(kind, self.pack() as u32, seq, body, chunk);
        let timeout = self.opts.op_timeout;
        tokio::time::timeout(timeout, transport.send(dst_pack, packets))
            .await
            .map_err(|_| Error::timeout(timeout, format!("sending to pack {dst_pack}")))?
    }

    /// Ends the burst for everyone: records the first cause, fails every
    /// waiting operation here and tells the other packs.
    pub fn abort(self: &Arc<Self>, rank: usize, reason: &str) {
        let err = Error::PeerFailed { rank, reason: reason.into() };
        if !self.fail(err) {
            return;
        }
        if self.transport.get().is_none() {
            return;
        }
        let body = encode_abort(rank as u32, reason);
        for dst in (0..self.layout().packs()).filter(|&p| p != self.pack()) {
            let packets = packetize(Kind::Abort, self.pack() as u32, 0, vec![body.clone()], u32::MAX);
            let core = self.clone();
            self.runtime.spawn(async move {
                let Some(transport) = core.transport.get() else {
                    return;
                };
                // Best effort: the peer may be the one that is gone.
                let _ = tokio::time::timeout(Duration::from_secs(2), transport.send(dst, packets)).await;
            });
        }
    }

    /// Records a failure; returns false if an earlier one was already recorded.
    fn fail(&self, err: Error) -> bool {
        if self.failure.set(err.clone()).is_err() {
            return false;
        }
        tracing::debug!(burst = %self.opts.burst, pack = self.pack(), %err, "burst failed");
        for mailbox in &self.mailboxes {
            mailbox.fail(&err);
        }
        self.changed.notify_waiters();
        true
    }

    fn arrived(&self, arrival: Arrival) -> Result<()> {
        match arrival {
            Arrival::Bundle { src_pack, body } => {
                let layout = self.layout();
                let sources = layout.ranks_of(src_pack);
                for e in decode_bundle(body, &self.opts.limits)? {
                    let src = e.src as usize;
                    if !sources.contains(&src) {
                        return Err(Error::protocol(format!(
                            "pack {src_pack} sent a message from rank {src}, not one of its own"
                        )));
                    }
                    let key = (e.space, e.tag);
                    if e.dst == DST_WHOLE_PACK {
                        for mailbox in &self.mailboxes {
                            mailbox.deliver(key, src, e.payload.clone());
                        }
                    } else {
                        let dst = e.dst as usize;
                        let i = self.local_index(dst).ok_or_else(|| {
                            Error::protocol(format!("message for rank {dst}, which is not in this pack"))
                        })?;
                        self.mailboxes[i].deliver(key, src, e.payload);
                    }
                }
            }
            Arrival::Bye { src_pack } => {
                self.closed[src_pack].store(true, Ordering::Release);
                let ranks = self.layout().ranks_of(src_pack);
                for mailbox in &self.mailboxes {
                    mailbox.sources_closed(|r| ranks.contains(&r));
                }
                self.byes.fetch_add(1, Ordering::AcqRel);
                self.changed.notify_waiters();
            }
            Arrival::Abort { src_pack, rank, reason } => {
                if !self.layout().ranks_of(src_pack).contains(&rank) {
                    return Err(Error::protocol(format!(
                        "pack {src_pack} reported the failure of rank {rank}, not one of its own"
                    )));
                }
                self.fail(Error::PeerFailed { rank, reason: reason.into() });
            }
        }
        Ok(())
    }
}

impl PacketSink for Core {
    fn limits(&self) -> &Limits {
        &self.opts.limits
    }

    fn packet(&self, header: Header, body: Bytes) {
        let src_pack = header.src_pack as usize;
        let result = self.reassembler.push(header, body, |arrival| self.arrived(arrival));
        if let Err(err) = result {
            self.lost(src_pack, format!("it sent a bad packet: {err}"));
        }
    }

    fn lost(&self, pack: usize, reason: String) {
        if pack < self.layout().packs() && self.closed[pack].load(Ordering::Acquire) {
            return; // it said goodbye first: a normal end
        }
        let ranks = self.layout().ranks_of(pack.min(self.layout().packs() - 1));
        self.fail(Error::Disconnected { pack, first: ranks.start, last: ranks.end - 1, reason: reason.into() });
    }

    fn buffer(&self, len: usize) -> Buffer {
        self.pool.take(len)
    }

    fn broken(&self, reason: String) {
        self.fail(Error::Transport { transport: self.opts.transport.name(), message: reason.into() });
    }
}

/// One pack of a burst, connected to the others.
///
/// ```no_run
/// # async fn demo() -> volley_comm::Result<()> {
/// use std::sync::Arc;
/// use volley_comm::{Layout, Pack, PackOptions, StaticRendezvous};
/// let layout = Layout::uniform(8, 4)?;
/// let opts = PackOptions::new("burst-1", b"0123456789abcdef".to_vec(), layout, 0);
/// let rendezvous = Arc::new(StaticRendezvous(vec!["10.0.0.1:7000".into(), "10.0.0.2:7000".into()]));
/// let pack = Pack::connect(opts, rendezvous).await?;
/// let comms = pack.comms(); // one per worker thread of this pack
/// # drop(comms);
/// pack.close().await
/// # }
/// ```
pub struct Pack {
    core: Arc<Core>,
    rendezvous: Arc<dyn Rendezvous>,
}

impl Pack {
    /// Joins the burst: connects to every other pack through the transport.
    /// Must be called inside a Tokio runtime; the pack keeps using it.
    pub async fn connect(opts: PackOptions, rendezvous: Arc<dyn Rendezvous>) -> Result<Pack> {
        opts.validate()?;
        let runtime =
            Handle::try_current().map_err(|_| Error::invalid("Pack::connect must run inside a Tokio runtime"))?;
        let layout = opts.layout.clone();
        let ranks = layout.ranks_of(opts.pack);
        let packs = layout.packs();
        let pool = Pool::new();
        let core = Arc::new(Core {
            runtime,
            first_rank: ranks.start,
            mailboxes: ranks.clone().map(|_| Arc::new(Mailbox::default())).collect(),
            stats: ranks.clone().map(|_| StatCounters::default()).collect(),
            collectives: ranks.map(|_| AtomicU64::new(0)).collect(),
            deposits: Mutex::new(HashMap::new()),
            loans: Default::default(),
            reassembler: Reassembler::new(packs, pool.clone()),
            pool,
            next_seq: (0..packs).map(|_| AtomicU64::new(0)).collect(),
            sent_to: (0..packs).map(|_| AtomicU64::new(0)).collect(),
            closed: (0..packs).map(|_| AtomicBool::new(false)).collect(),
            byes: AtomicUsize::new(0),
            failure: OnceLock::new(),
            in_flight: AtomicUsize::new(0),
            changed: Notify::new(),
            transport: OnceLock::new(),
            opts,
        });
        let sink: Arc<dyn PacketSink> = core.clone();
        let transport = Transport::connect(&core.opts, rendezvous.as_ref(), sink).await?;
        let _ = core.transport.set(transport);
        Ok(Pack { core, rendezvous })
    }

    /// One communicator per worker of this pack, in rank order.
    pub fn comms(&self) -> Vec<Comm> {
        let ranks = self.core.layout().ranks_of(self.core.pack());
        ranks.enumerate().map(|(local, rank)| Comm::new(self.core.clone(), rank, local)).collect()
    }

    /// Payload bytes this pack's workers have sent to each pack, by pack
    /// index (its own entry stays 0: messages inside the pack are in the
    /// workers' [`CommStats`](crate::CommStats)).
    pub fn sent_bytes(&self) -> Vec<u64> {
        self.core.sent_to.iter().map(|b| b.load(Ordering::Relaxed)).collect()
    }

    /// The first failure of the burst seen by this pack, if any.
    pub fn failure(&self) -> Option<Error> {
        self.core.failure()
    }

    /// Fails the burst on behalf of `rank` (a worker of this pack that failed):
    /// every pending operation of every worker of the burst returns an error.
    pub fn abort(&self, rank: usize, reason: &str) {
        self.core.abort(rank, reason);
    }

    /// Leaves the burst: waits for this pack's sends, says goodbye to every
    /// pack, waits for theirs (so nothing is still on its way here), then
    /// releases the transport and everything it created on brokers.
    pub async fn close(self) -> Result<()> {
        let core = &self.core;
        let timeout = core.opts.connect_timeout;
        let packs = core.layout().packs();
        let mut result = Ok(());
        if core.failure().is_none()
            && packs > 1
            && let Err(err) = self.goodbye(timeout).await
        {
            result = Err(err);
        }
        if let Some(transport) = core.transport.get() {
            // A broker that went away must not hold the pack forever.
            let shutdown = tokio::time::timeout(timeout, transport.shutdown())
                .await
                .unwrap_or_else(|_| Err(Error::timeout(timeout, "the transport to shut down")));
            if let Err(err) = shutdown {
                result = result.and(Err(err));
            }
        }
        self.rendezvous.forget(&core.opts.burst, core.pack()).await?;
        match core.failure() {
            Some(err) => Err(err),
            None => result,
        }
    }

    async fn goodbye(&self, timeout: Duration) -> Result<()> {
        let core = &self.core;
        let packs = core.layout().packs();
        let bye_to = |targets: Vec<usize>| {
            let byes = targets.into_iter().map(|dst| {
                let seq = core.next_seq[dst].fetch_add(1, Ordering::Relaxed);
                core.send_packets(dst, Kind::Bye, seq, Vec::new())
            });
            futures::future::try_join_all(byes)
        };
        let others: Vec<usize> = (0..packs).filter(|&p| p != core.pack()).collect();
        let direct = matches!(core.opts.transport, TransportOptions::Tcp(_) | TransportOptions::Uds(_));
        let work = async {
            wait_until(core, || core.in_flight.load(Ordering::Acquire) == 0).await;
            if direct {
                // Every connection ends with its own goodbye: an end without one is a crash.
                bye_to(others).await?;
                wait_until(core, || core.byes.load(Ordering::Acquire) == packs - 1).await;
            } else if core.pack() == 0 {
                // Brokers: an all-to-all goodbye costs packs² messages (a million for
                // 1,024 one-worker packs). Pack 0 coordinates instead: once every pack
                // has said its sends are done, it tells them all that nothing more
                // will arrive, and each may delete its inbox.
                wait_until(core, || core.byes.load(Ordering::Acquire) == packs - 1).await;
                bye_to(others).await?;
            } else {
                bye_to(vec![0]).await?;
                wait_until(core, || core.byes.load(Ordering::Acquire) >= 1).await;
            }
            Ok(())
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| Error::timeout(timeout, "the other packs to finish and say goodbye"))?
    }
}

/// Waits until `done()` holds or the burst fails.
async fn wait_until(core: &Core, done: impl Fn() -> bool) {
    loop {
        let changed = core.changed.notified();
        if done() || core.failure().is_some() {
            return;
        }
        changed.await;
    }
}

impl Drop for Pack {
    fn drop(&mut self) {
        // A pack dropped without close() still must not leave peers waiting forever.
        if self.core.failure().is_none() && Arc::strong_count(&self.core) > 1 {
            self.core.fail(Error::Closed);
        }
    }
}
