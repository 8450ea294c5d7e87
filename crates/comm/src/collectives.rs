//! Collectives, written once over the pack core, hierarchical by design:
//! combine inside the pack, make ONE transfer per pack pair, fan out inside
//! the receiving pack.
//!
//! Every collective call takes the next number from a per-worker counter as
//! its tag (in the collective tag space), so repeated collectives never mix;
//! as in MPI, all workers must call the same collectives in the same order.
//! The worker that arrives last at a pack-level step (see `Core::deposit`)
//! does that step's remote send for the whole pack, so nobody waits for a leader.

use std::future::Future;

use bytes::Bytes;
use futures::future::try_join_all;

use crate::comm::AsyncComm;
use crate::error::{Error, Result};
use crate::mailbox::Source;
use crate::reduce::{self, Combine, Element, Op};
use crate::wire::{DST_WHOLE_PACK, Entry, Space};

mod lend;
mod sliced;
mod tree;

pub(crate) use lend::Loans;
use sliced::Out;

pub use sliced::block_range;

impl AsyncComm {
    /// Returns once every worker of the burst has entered the barrier.
    pub async fn barrier(&self) -> Result<()> {
        let nothing = |_: &mut Vec<u8>, _: &[u8]| Ok(());
        self.all_reduce_bytes(Bytes::new(), &nothing).await.map(drop)
    }

    /// Root's `data` to every worker (the others' `data` is ignored).
    pub async fn broadcast(&self, root: usize, data: Bytes) -> Result<Bytes> {
        let tag = self.next_tag();
        self.timed(self.broadcast_in(tag, root, data), || format!("broadcast from rank {root}")).await
    }

    /// Root's `parts[i]` to rank `i` (the others pass an empty vector).
    pub async fn scatter(&self, root: usize, parts: Vec<Bytes>) -> Result<Bytes> {
        let tag = self.next_tag();
        let work = async {
            self.check_rank(root, "root")?;
            if self.rank() == root {
                self.check_parts(&parts, "scatter")?;
                let mut sends = Vec::new();
                for pack in 0..self.layout().packs() {
                    let ranks = self.layout().ranks_of(pack);
                    let entries = ranks.map(|dst| self.entry(root, dst, tag, parts[dst].clone())).collect();
                    sends.extend(self.route(pack, tag, entries));
                }
                try_join_all(sends).await?;
            }
            self.take(root, tag).await
        };
        self.timed(work, || format!("scatter from rank {root}")).await
    }

    /// Every worker's `data` to root, in rank order (`None` elsewhere).
    pub async fn gather(&self, root: usize, data: Bytes) -> Result<Option<Vec<Bytes>>> {
        let tag = self.next_tag();
        self.timed(self.gather_in(tag, root, data), || format!("gather to rank {root}")).await
    }

    /// Every worker's `data` to every worker, in rank order.
    pub async fn all_gather(&self, data: Bytes) -> Result<Vec<Bytes>> {
        let tag = self.next_tag();
        self.timed(self.all_gather_in(tag, data), || "all_gather".to_string()).await
    }

    /// `parts[j]` to rank `j`; returns what every rank sent to this one, in rank order.
    /// Between two packs all their workers' parts travel as one transfer.
    pub async fn all_to_all(&self, parts: Vec<Bytes>) -> Result<Vec<Bytes>> {
        let tag = self.next_tag();
        let work = async {
            self.check_parts(&parts, "all_to_all")?;
            let mine = self.pack_ranks();
            for (dst, part) in parts.iter().enumerate() {
                if mine.contains(&dst) {
                    self.local_send(self.rank(), dst, tag, part.clone());
                } else {
                    self.count_remote(part.len());
                }
            }
            if let Some(all) = self.core.deposit(tag, self.local, parts) {
                let sends = self.other_packs().map(|pack| {
                    let mut entries = Vec::new();
                    for (src, parts) in self.pack_ranks().zip(&all) {
                        for dst in self.layout().ranks_of(pack) {
                            let part = parts.get(dst).cloned().unwrap_or_default();
                            entries.push(self.entry(src, dst, tag, part));
                        }
                    }
                    self.remote_send(pack, entries)
                });
                try_join_all(sends).await?;
            }
            self.take_all(tag).await
        };
        self.timed(work, || "all_to_all".to_string()).await
    }

    /// Combines every worker's `data` with `combine` (in rank order) at root.
    /// With many packs, the packs' folds combine along a tree (see
    /// `collectives/tree.rs`).
    pub async fn reduce_bytes(&self, root: usize, data: Bytes, combine: Combine<'_>) -> Result<Option<Bytes>> {
        if let Some(tree) = self.tree() {
            self.check_rank(root, "root")?;
            let work = self.reduce_along_tree(tree, root, data, combine);
            return self.timed(work, || format!("reduce to rank {root}")).await;
        }
        let tag = self.next_tag();
        let work = async {
            self.check_rank(root, "root")?;
            let layout = self.layout();
            if let Some(parts) = self.core.deposit(tag, self.local, vec![data]) {
                let partial = fold(parts.into_iter().map(first), combine)?;
                let leader = layout.leader(self.pack());
                let root_pack = layout.pack_of(root);
                if root_pack == self.pack() {
                    self.local_send(leader, root, tag, partial);
                } else {
                    self.count_remote(partial.len());
                    self.remote_send(root_pack, vec![self.entry(leader, root, tag, partial)]).await?;
                }
            }
            if self.rank() != root {
                return Ok(None);
            }
            let mut partials = Vec::with_capacity(layout.packs());
            for pack in 0..layout.packs() {
                partials.push(self.take(layout.leader(pack), tag).await?);
            }
            fold(partials.into_iter(), combine).map(Some)
        };
        self.timed(work, || format!("reduce to rank {root}")).await
    }

    /// [`AsyncComm::reduce_bytes`] whose result every worker gets.
    ///
    /// With one or two packs, the packs swap their partials at once (one
    /// transfer each way, as the reduction and the broadcast make) and each
    /// pack's leader folds them: no pack waits for a reduction at rank 0 and
    /// then for its broadcast. Every pack folds its own partial in rank order
    /// and the partials in pack order, so every worker gets the same bits as
    /// before. With more packs, to rank 0 (along a tree above
    /// `tree_above_packs`) and back (the partials' exchange would grow as packs²).
    pub async fn all_reduce_bytes(&self, data: Bytes, combine: Combine<'_>) -> Result<Bytes> {
        if self.layout().packs() > 2 {
            let reduced = self.reduce_bytes(0, data, combine).await?;
            return self.broadcast(0, reduced.unwrap_or_default()).await;
        }
        let (tag, result_tag) = (self.next_tag(), self.next_tag());
        let work = async {
            let layout = self.layout();
            let leader = layout.leader(self.pack());
            if let Some(parts) = self.core.deposit(tag, self.local, vec![data]) {
                let partial = fold(parts.into_iter().map(first), combine)?;
                let sends: Vec<_> = self
                    .other_packs()
                    .map(|pack| {
                        self.count_remote(partial.len());
                        self.remote_send(pack, vec![self.entry(leader, layout.leader(pack), tag, partial.clone())])
                    })
                    .collect();
                self.local_send(leader, leader, tag, partial);
                try_join_all(sends).await?;
            }
            if self.rank() != leader {
                return self.take(leader, result_tag).await;
            }
            let mut partials = Vec::with_capacity(layout.packs());
            for pack in 0..layout.packs() {
                partials.push(self.take(layout.leader(pack), tag).await?);
            }
            let total = fold(partials.into_iter(), combine)?;
            for dst in self.pack_ranks().filter(|&r| r != leader) {
                self.local_send(leader, dst, result_tag, total.clone());
            }
            Ok(total)
        };
        self.timed(work, || "all_reduce".to_string()).await
    }

    /// Element-wise reduction of numeric slices at root.
    /// A large vector is reduced in blocks by every worker at once (see
    /// `collectives/sliced.rs`); the result's bits do not depend on the path.
    pub async fn reduce<T: Element>(&self, root: usize, data: &[T], op: Op) -> Result<Option<Vec<T>>> {
        if self.reduces_in_blocks(std::mem::size_of_val(data)) {
            return self.reduce_in_blocks(root, data, op).await;
        }
        let combine = reduce::builtin::<T>(op);
        match self.reduce_bytes(root, reduce::encode(data), &combine).await? {
            Some(bytes) => reduce::decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Element-wise reduction of numeric slices; every worker gets the result.
    /// A large vector is reduced in blocks by every worker at once and
    /// gathered back (see `collectives/sliced.rs`); the result's bits do not
    /// depend on the path.
    pub async fn all_reduce<T: Element>(&self, data: &[T], op: Op) -> Result<Vec<T>> {
        if self.reduces_in_blocks(std::mem::size_of_val(data)) {
            let mut out = Vec::new();
            self.all_reduce_in_blocks::<T>(self.encode_pooled(data), op, Out::Vec(&mut out)).await?;
            return Ok(out);
        }
        let combine = reduce::builtin::<T>(op);
        reduce::decode(&self.all_reduce_bytes(reduce::encode(data), &combine).await?)
    }

    /// [`AsyncComm::all_reduce`] whose result replaces `data` (MPI's
    /// `MPI_IN_PLACE`): no new vector per call, so a loop that reduces the
    /// same buffer again and again touches no fresh memory.
    pub async fn all_reduce_in_place<T: Element>(&self, data: &mut [T], op: Op) -> Result<()> {
        if self.reduces_in_blocks(std::mem::size_of_val(data)) {
            // The input is copied into the pack's buffers first, so the
            // result may be written over it.
            let input = self.encode_pooled(data);
            return self.all_reduce_in_blocks::<T>(input, op, Out::Slice(data)).await;
        }
        let reduced = self.all_reduce(data, op).await?;
        data.copy_from_slice(&reduced);
        Ok(())
    }

    /// [`AsyncComm::all_reduce`] for the blocking `Comm`: a large input is
    /// lent to the pack's workers instead of copied (see `collectives/lend.rs`).
    ///
    /// # Safety
    /// The future must run to its end or be dropped, never leaked, before
    /// `data` is used again.
    pub(crate) async unsafe fn all_reduce_lending<T: Element>(&self, data: &[T], op: Op) -> Result<Vec<T>> {
        match reduce::memory_of(data) {
            Some(bytes) if self.reduces_in_blocks(bytes.len()) => {
                let mut out = Vec::new();
                // SAFETY: `data` is borrowed for this whole future, which the
                // caller never leaks.
                unsafe { self.all_reduce_lent(bytes.as_ptr(), bytes.len(), op, Out::Vec(&mut out)) }.await?;
                Ok(out)
            }
            _ => self.all_reduce(data, op).await,
        }
    }

    /// [`AsyncComm::all_reduce_in_place`] for the blocking `Comm`, lending
    /// a large input as [`AsyncComm::all_reduce_lending`] does.
    ///
    /// # Safety
    /// As [`AsyncComm::all_reduce_lending`].
    pub(crate) async unsafe fn all_reduce_in_place_lending<T: Element>(&self, data: &mut [T], op: Op) -> Result<()> {
        let len = std::mem::size_of_val(data);
        if !cfg!(target_endian = "little") || !self.reduces_in_blocks(len) {
            return self.all_reduce_in_place(data, op).await;
        }
        // Raw pointers only, taken once from the `&mut`: the loan reads
        // through one, the result is written through the other once the
        // loan has ended, and no reference to `data` is made in between.
        let elements = data.len();
        let start = data.as_mut_ptr();
        let out = Out::Raw(start, elements, std::marker::PhantomData);
        // SAFETY: `data` is borrowed for this whole future, which the caller
        // never leaks, and is written only through `out` after the loan ends.
        unsafe { self.all_reduce_lent(start.cast_const().cast::<u8>(), len, op, out) }.await
    }

    /// Reduction with a user function over raw bytes (it must be associative).
    pub async fn all_reduce_with<F>(&self, data: Bytes, f: F) -> Result<Bytes>
    where
        F: Fn(&[u8], &[u8]) -> Vec<u8> + Send + Sync,
    {
        let combine = reduce::user(f);
        self.all_reduce_bytes(data, &combine).await
    }

    /// Reduction at root (`None` elsewhere) with a user function that folds a
    /// value into an accumulator in place (it must be associative): the
    /// accumulator starts as the first value in rank order. Cheaper than
    /// [`AsyncComm::all_reduce_with`]'s pairwise form when the accumulator is
    /// large, since nothing is reallocated per value.
    pub async fn reduce_in_place<F>(&self, root: usize, data: Bytes, f: F) -> Result<Option<Bytes>>
    where
        F: Fn(&mut Vec<u8>, &[u8]) + Send + Sync,
    {
        let combine = move |acc: &mut Vec<u8>, b: &[u8]| {
            f(acc, b);
            Ok(())
        };
        self.reduce_bytes(root, data, &combine).await
    }

    async fn gather_in(&self, tag: u64, root: usize, data: Bytes) -> Result<Option<Vec<Bytes>>> {
        self.check_rank(root, "root")?;
        let root_pack = self.layout().pack_of(root);
        if root_pack == self.pack() {
            self.local_send(self.rank(), root, tag, data);
        } else {
            self.count_remote(data.len());
            if let Some(parts) = self.core.deposit(tag, self.local, vec![data]) {
                let entries =
                    self.pack_ranks().zip(parts).map(|(src, p)| self.entry(src, root, tag, first(p))).collect();
                self.remote_send(root_pack, entries).await?;
            }
        }
        if self.rank() != root {
            return Ok(None);
        }
        self.take_all(tag).await.map(Some)
    }

    async fn all_gather_in(&self, tag: u64, data: Bytes) -> Result<Vec<Bytes>> {
        for dst in self.pack_ranks() {
            self.local_send(self.rank(), dst, tag, data.clone());
        }
        for _ in self.other_packs() {
            self.count_remote(data.len());
        }
        if let Some(parts) = self.core.deposit(tag, self.local, vec![data]) {
            let entries: Vec<Entry> = self
                .pack_ranks()
                .zip(parts)
                .map(|(src, p)| self.entry(src, DST_WHOLE_PACK as usize, tag, first(p)))
                .collect();
            let sends = self.other_packs().map(|pack| self.remote_send(pack, entries.clone()));
            try_join_all(sends).await?;
        }
        self.take_all(tag).await
    }

    async fn broadcast_in(&self, tag: u64, root: usize, data: Bytes) -> Result<Bytes> {
        self.check_rank(root, "root")?;
        if self.rank() != root {
            return self.take(root, tag).await;
        }
        // Other packs first: woken local workers would take the cores from the
        // sends and release the other packs late (the start spread of a burst).
        let entry = self.entry(root, DST_WHOLE_PACK as usize, tag, data.clone());
        for _ in self.other_packs() {
            self.count_remote(data.len());
        }
        try_join_all(self.other_packs().map(|pack| self.remote_send(pack, vec![entry.clone()]))).await?;
        for dst in self.pack_ranks().filter(|&r| r != root) {
            self.local_send(root, dst, tag, data.clone());
        }
        Ok(data)
    }

    fn next_tag(&self) -> u64 {
        self.core.collectives[self.local].fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    fn check_parts(&self, parts: &[Bytes], op: &str) -> Result<()> {
        if parts.len() != self.size() {
            return Err(Error::invalid(format!("{op} needs one part per rank ({}), got {}", self.size(), parts.len())));
        }
        Ok(())
    }

    fn other_packs(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.layout().packs()).filter(move |&p| p != self.pack())
    }

    fn entry(&self, src: usize, dst: usize, tag: u64, payload: Bytes) -> Entry {
        Entry { src: src as u32, dst: dst as u32, space: Space::Collective, tag, payload }
    }

    /// Hands `data` (from `src`) to a worker of this pack; counted for this worker.
    ///
    /// Every count goes to the calling worker at the moment it contributes, never
    /// to another rank later: a worker's stats are final when its call returns.
    fn local_send(&self, src: usize, dst: usize, tag: u64, data: Bytes) {
        self.core.stats[self.local].local(data.len());
        self.core.deliver_local(src, dst, (Space::Collective, tag), data);
    }

    /// Counts one message of this worker's that leaves the pack.
    fn count_remote(&self, bytes: usize) {
        self.core.stats[self.local].remote(bytes);
    }

    /// Sends entries to `pack` as one transfer (their messages were counted by
    /// the workers that contributed them).
    fn remote_send(&self, pack: usize, entries: Vec<Entry>) -> impl Future<Output = Result<()>> + use<> {
        self.core.stats[self.local].transfer();
        self.core.send_bundle(pack, entries)
    }

    /// Local entries are delivered now; a remote pack gets one transfer.
    fn route(&self, pack: usize, tag: u64, entries: Vec<Entry>) -> Option<impl Future<Output = Result<()>> + use<>> {
        if pack == self.pack() {
            for e in entries {
                self.local_send(e.src as usize, e.dst as usize, tag, e.payload);
            }
            return None;
        }
        for e in &entries {
            self.count_remote(e.payload.len());
        }
        Some(self.remote_send(pack, entries))
    }

    async fn take(&self, src: usize, tag: u64) -> Result<Bytes> {
        Ok(self.post(Space::Collective, Source::Rank(src), tag).await?.1)
    }

    async fn take_all(&self, tag: u64) -> Result<Vec<Bytes>> {
        let mut out = Vec::with_capacity(self.size());
        for src in 0..self.size() {
            out.push(self.take(src, tag).await?);
        }
        Ok(out)
    }
}

fn first(mut parts: Vec<Bytes>) -> Bytes {
    parts.pop().unwrap_or_default()
}

/// Folds values in order into one accumulator (one allocation per fold).
fn fold(mut values: impl Iterator<Item = Bytes>, combine: Combine<'_>) -> Result<Bytes> {
    let Some(first) = values.next() else { return Ok(Bytes::new()) };
    let mut rest = values.peekable();
    if rest.peek().is_none() {
        return Ok(first);
    }
    let mut acc = first.to_vec();
    for v in rest {
        combine(&mut acc, &v)?;
    }
    Ok(Bytes::from(acc))
}
