//! Reductions across many packs along a binary tree of packs, so that a
//! pack makes about log2(packs) transfers per reduction instead of one to
//! every other pack (see [`crate::PackOptions::tree_above_packs`]).
//!
//! The tree is Rabenseifner's: with `packs = 2^k + r`, the first `2r` packs
//! pair up and the odd one of each pair hands its partials to the even one;
//! the `2^k` packs left (the *virtual* packs `0..2^k`, in pack order) then
//! combine in `k` rounds, round `s` between virtual packs `v` and `v ^ 2^s`.
//!
//! - Blocks of numbers (`reduce_scatter`, large `all_reduce` and `reduce`)
//!   go by recursive halving: in round `s` each virtual pack keeps the half
//!   of its blocks whose target (an even share of the blocks per virtual
//!   pack) agrees with it on bit `s` and sends the other half, so each pack
//!   sends about the vector once in all. The all-gather runs the rounds the
//!   other way (recursive doubling).
//! - Whole values (small vectors, user functions) go by a binomial tree to
//!   pack 0: in round `s`, the virtual pack `v + 2^s` sends its fold to `v`.
//!
//! Both combine in the same order: every pack folds its ranks in order, a
//! pair of the first step adds up as `even ⊕ odd`, round `s` as the lower
//! group of `2^s` virtual packs `⊕` the upper one. So a reduction gives the
//! same bits by either path and in every run, and a user function that is
//! associative but not commutative still sees its values in rank order.

use std::ops::Range;

use bytes::Bytes;
use futures::future::try_join_all;

use super::sliced::{LENGTH_BYTES, without_length};
use crate::comm::AsyncComm;
use crate::error::Result;
use crate::reduce::{self, Combine, Element, Op};
use crate::transport::PacketSink;
use crate::wire::{DST_WHOLE_PACK, Entry};

/// The tree's shape for a number of packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tree {
    /// Virtual packs: the largest power of two not above the pack count.
    virtuals: usize,
    /// Packs that fold into their even neighbour first (`packs - virtuals`).
    paired: usize,
}

/// A pack's place in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    /// An odd pack of the first step: hands everything to pack `- 1`.
    FoldsInto(usize),
    /// Virtual pack `v`.
    Virtual(usize),
}

impl Tree {
    pub(super) fn new(packs: usize) -> Tree {
        let virtuals = match packs {
            0 => 1,
            n => 1 << n.ilog2(),
        };
        Tree { virtuals, paired: packs.saturating_sub(virtuals) }
    }

    pub(super) fn rounds(&self) -> u32 {
        self.virtuals.ilog2()
    }

    pub(super) fn place(&self, pack: usize) -> Place {
        match pack < 2 * self.paired {
            true if pack % 2 == 1 => Place::FoldsInto(pack - 1),
            true => Place::Virtual(pack / 2),
            false => Place::Virtual(pack - self.paired),
        }
    }

    /// The pack that plays virtual pack `v`.
    pub(super) fn pack(&self, v: usize) -> usize {
        match v < self.paired {
            true => 2 * v,
            false => v + self.paired,
        }
    }

    /// The pack that folds into virtual pack `v` in the first step, if any.
    fn partner_of(&self, v: usize) -> Option<usize> {
        (v < self.paired).then_some(2 * v + 1)
    }

    /// The virtual pack that ends up holding block `b` of `blocks`: an even
    /// share of the blocks each, in order.
    fn target(&self, b: usize, blocks: usize) -> usize {
        (b as u128 * self.virtuals as u128 / blocks.max(1) as u128) as usize
    }

    /// Whether block `b`'s target agrees with `v` on the bits below `round`:
    /// the blocks virtual pack `v` still holds when round `round` starts.
    fn held(&self, b: usize, blocks: usize, v: usize, round: u32) -> bool {
        let low = (1usize << round) - 1;
        self.target(b, blocks) & low == v & low
    }
}

/// A worker's blocks once the halving is over: `(block, bytes)`, the bytes
/// without their length.
pub(super) type Held = Vec<(usize, Bytes)>;

/// Tags of one tree reduction (deposits and messages of a step share one).
pub(super) struct Tags {
    base: u64,
    rounds: u64,
}

impl Tags {
    /// Tags one reduction takes: every rank takes the same number.
    fn count(rounds: u32) -> u64 {
        2 * rounds as u64 + 4
    }
    /// The halving's first step (odd packs to their even neighbour).
    fn pairs(&self) -> u64 {
        self.base
    }
    fn halving(&self, s: u32) -> u64 {
        self.base + 1 + s as u64
    }
    /// The all-gather's blocks, whatever the round they come in.
    fn gathered(&self) -> u64 {
        self.base + 1 + self.rounds
    }
    /// The all-gather's deposits: one per round, then the odd packs' turn.
    fn doubling(&self, s: u32) -> u64 {
        self.base + 2 + self.rounds + s as u64
    }
    fn to_pairs(&self) -> u64 {
        self.base + 2 + 2 * self.rounds
    }
    /// Blocks handed to the ranks that asked for them (reduce_scatter, reduce).
    pub(super) fn delivered(&self) -> u64 {
        self.base + 3 + 2 * self.rounds
    }
}

impl AsyncComm {
    /// The tree for this burst's packs, if reductions go along one.
    pub(super) fn tree(&self) -> Option<Tree> {
        let packs = self.layout().packs();
        (packs > self.core.opts.tree_above_packs.max(1)).then(|| Tree::new(packs))
    }

    /// Tags for one tree reduction, taken from this worker's counter.
    pub(super) fn tree_tags(&self, tree: Tree) -> Tags {
        let count = Tags::count(tree.rounds());
        let base = self.core.collectives[self.local].fetch_add(count, std::sync::atomic::Ordering::Relaxed);
        Tags { base, rounds: tree.rounds() as u64 }
    }

    /// This worker's virtual pack, if its pack is one.
    fn virtual_pack(&self, tree: Tree) -> Option<usize> {
        match tree.place(self.pack()) {
            Place::Virtual(v) => Some(v),
            Place::FoldsInto(_) => None,
        }
    }

    /// The blocks worker `worker` of this pack handles out of those `which` picks.
    fn blocks_of(&self, worker: usize, which: impl Fn(usize) -> bool) -> impl Iterator<Item = usize> {
        (worker..self.size()).step_by(self.pack_ranks().len()).filter(move |&b| which(b))
    }

    /// Recursive halving of this worker's pack partials (`(block, partial)`:
    /// the blocks `b` with `b % pack_size == local`, each partial followed by
    /// its inputs' length `len`): the blocks this worker holds at the end,
    /// each reduced over every rank.
    pub(super) async fn halve<T: Element>(
        &self,
        tree: Tree,
        tags: &Tags,
        mut partials: Vec<(usize, Bytes)>,
        len: usize,
        op: Op,
    ) -> Result<Held> {
        let blocks = self.size();
        let v = match tree.place(self.pack()) {
            Place::FoldsInto(into) => {
                self.send_partials(tags.pairs(), into, partials, |_| true).await?;
                return Ok(Vec::new());
            }
            Place::Virtual(v) => v,
        };
        if let Some(odd) = tree.partner_of(v) {
            partials = self.fold_received::<T>(tags.pairs(), odd, partials, len, op, true).await?;
        }
        for s in 0..tree.rounds() {
            let bit = 1usize << s;
            let partner = tree.pack(v ^ bit);
            let kept = |b: usize| tree.held(b, blocks, v, s + 1);
            let (keep, send): (Vec<_>, Vec<_>) = partials.into_iter().partition(|(b, _)| kept(*b));
            let sent = |b: usize| tree.held(b, blocks, v, s) && !kept(b);
            self.send_partials(tags.halving(s), partner, send, sent).await?;
            partials = self.fold_received::<T>(tags.halving(s), partner, keep, len, op, v & bit == 0).await?;
        }
        Ok(partials.into_iter().map(|(b, p)| (b, p.slice(..p.len() - LENGTH_BYTES))).collect())
    }

    /// Sends this worker's partials to the workers of `pack` that handle the
    /// same blocks there, in one transfer for the whole pack. `sent` says
    /// which blocks each worker sends (the last one here sends them all).
    async fn send_partials(
        &self,
        tag: u64,
        pack: usize,
        partials: Vec<(usize, Bytes)>,
        sent: impl Fn(usize) -> bool + Copy,
    ) -> Result<()> {
        for (_, p) in &partials {
            self.count_remote(p.len());
        }
        let parts = partials.into_iter().map(|(_, p)| p).collect();
        let Some(all) = self.core.deposit(tag, self.local, parts) else { return Ok(()) };
        let (first, size) = (self.layout().ranks_of(pack).start, self.layout().pack_size(pack));
        let mut entries = Vec::new();
        for (worker, parts) in all.into_iter().enumerate() {
            let src = self.pack_ranks().start + worker;
            for (b, partial) in self.blocks_of(worker, sent).zip(parts) {
                entries.push(self.entry(src, first + b % size, tag, partial));
            }
        }
        match entries.is_empty() {
            true => Ok(()),
            false => self.remote_send(pack, entries).await,
        }
    }

    /// `mine` folded with the partials of the same blocks from `pack`, in
    /// the tree's order: `mine ⊕ theirs` when this side is the lower.
    async fn fold_received<T: Element>(
        &self,
        tag: u64,
        pack: usize,
        mine: Vec<(usize, Bytes)>,
        len: usize,
        op: Op,
        lower: bool,
    ) -> Result<Vec<(usize, Bytes)>> {
        let mut folded = Vec::with_capacity(mine.len());
        for (b, own) in mine {
            // From the worker there that handles the block: its blocks come
            // in order, as these are taken.
            let theirs = without_length(self.take(holder(self.layout(), pack, b), tag).await?, len, pack, self.rank())?;
            let own = own.slice(..own.len() - LENGTH_BYTES);
            let (first, second) = if lower { (&own, &theirs) } else { (&theirs, &own) };
            let mut acc = self.core.buffer(first.len() + LENGTH_BYTES);
            acc.extend_from_slice(first);
            reduce::combine_into::<T>(op, acc.as_mut(), second)?;
            acc.extend_from_slice(&(len as u64).to_le_bytes());
            folded.push((b, acc.freeze()));
        }
        Ok(folded)
    }

    /// Hands each held block to rank `dst(block)` (one transfer per pack),
    /// then takes the blocks `expect` that come to this rank, in order.
    pub(super) async fn deliver_held(
        &self,
        tree: Tree,
        tag: u64,
        held: Held,
        dst: impl Fn(usize) -> usize + Copy,
        expect: Range<usize>,
    ) -> Result<Vec<Bytes>> {
        let layout = self.layout();
        let mut remote = Vec::new();
        for (b, block) in held {
            match layout.pack_of(dst(b)) == self.pack() {
                true => self.local_send(self.rank(), dst(b), tag, block),
                false => {
                    self.count_remote(block.len());
                    remote.push(block);
                }
            }
        }
        if let Some(all) = self.core.deposit(tag, self.local, remote) {
            let v = self.virtual_pack(tree);
            let elsewhere = |b: usize| v == Some(tree.target(b, self.size())) && layout.pack_of(dst(b)) != self.pack();
            let mut to_pack: Vec<Vec<Entry>> = vec![Vec::new(); layout.packs()];
            for (worker, blocks) in all.into_iter().enumerate() {
                let src = self.pack_ranks().start + worker;
                for (b, block) in self.blocks_of(worker, elsewhere).zip(blocks) {
                    to_pack[layout.pack_of(dst(b))].push(self.entry(src, dst(b), tag, block));
                }
            }
            let sends = to_pack.into_iter().enumerate().filter(|(_, e)| !e.is_empty());
            try_join_all(sends.map(|(pack, entries)| self.remote_send(pack, entries))).await?;
        }
        let mut out = Vec::with_capacity(expect.len());
        for b in expect {
            let at = tree.pack(tree.target(b, self.size()));
            out.push(self.take(holder(layout, at, b), tag).await?);
        }
        Ok(out)
    }

    /// Recursive doubling of the held blocks: every rank gets every block,
    /// in order.
    pub(super) async fn all_gather_held(&self, tree: Tree, tags: &Tags, held: Held) -> Result<Vec<Bytes>> {
        let blocks = self.size();
        let tag = tags.gathered();
        let layout = self.layout();
        let mut have: Vec<Option<Bytes>> = vec![None; blocks];
        let Some(v) = self.virtual_pack(tree) else {
            let from = layout.leader(self.pack() - 1);
            self.take_blocks(tag, &mut have, |_| Some(from)).await?;
            return Ok(have.into_iter().map(Option::unwrap_or_default).collect());
        };
        // The pack's blocks to all its workers; then, round by round, the
        // partner's, each transfer to all the workers of a pack at once.
        for (_, block) in held {
            for dst in self.pack_ranks() {
                self.local_send(self.rank(), dst, tag, block.clone());
            }
        }
        let here = self.pack();
        self.take_blocks(tag, &mut have, |b| (tree.target(b, blocks) == v).then(|| holder(layout, here, b))).await?;
        for s in 0..tree.rounds() {
            let partner = v ^ (1 << s);
            let (at, from) = (tree.pack(partner), layout.leader(tree.pack(partner)));
            self.send_blocks(tags.doubling(s), tag, at, &have).await?;
            self.take_blocks(tag, &mut have, |b| (tree.target(b, blocks) >> s == partner >> s).then_some(from)).await?;
        }
        if let Some(odd) = tree.partner_of(v) {
            self.send_blocks(tags.to_pairs(), tag, odd, &have).await?;
        }
        Ok(have.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// Every block in `have` to every worker of `pack`, in one transfer sent
    /// by the last of this pack's workers to get here (each holds them all).
    async fn send_blocks(&self, step: u64, tag: u64, pack: usize, have: &[Option<Bytes>]) -> Result<()> {
        if self.core.deposit(step, self.local, Vec::new()).is_none() {
            return Ok(());
        }
        // All from the pack's leader, in block order, as they are taken.
        let src = self.layout().leader(self.pack());
        let entries: Vec<Entry> = (have.iter())
            .filter_map(|block| Some(self.entry(src, DST_WHOLE_PACK as usize, tag, block.clone()?)))
            .collect();
        for e in &entries {
            self.count_remote(e.payload.len());
        }
        self.remote_send(pack, entries).await
    }

    /// The blocks `from` picks, each from the rank it names, in block order.
    async fn take_blocks(
        &self,
        tag: u64,
        have: &mut [Option<Bytes>],
        from: impl Fn(usize) -> Option<usize>,
    ) -> Result<()> {
        for (b, slot) in have.iter_mut().enumerate() {
            if let Some(src) = from(b) {
                *slot = Some(self.take(src, tag).await?);
            }
        }
        Ok(())
    }

    /// Whole values reduced at `root` along the binomial tree.
    pub(super) async fn reduce_along_tree(
        &self,
        tree: Tree,
        root: usize,
        data: Bytes,
        combine: Combine<'_>,
    ) -> Result<Option<Bytes>> {
        let tag = self.next_tag();
        let layout = self.layout();
        let leader = layout.leader(self.pack());
        if let Some(parts) = self.core.deposit(tag, self.local, vec![data]) {
            let partial = super::fold(parts.into_iter().map(super::first), combine)?;
            self.local_send(leader, leader, tag, partial);
        }
        if self.rank() == leader
            && let Some(total) = self.combine_along_tree(tree, tag, combine).await?
        {
            if root == leader {
                return Ok(Some(total));
            }
            if let Some(send) = self.route(layout.pack_of(root), tag, vec![self.entry(leader, root, tag, total)]) {
                send.await?;
            }
        }
        if self.rank() != root {
            return Ok(None);
        }
        self.take(layout.leader(0), tag).await.map(Some)
    }

    /// A leader's part of [`AsyncComm::reduce_along_tree`]: its pack's fold
    /// combined up the tree; the total at pack 0's leader, `None` elsewhere.
    async fn combine_along_tree(&self, tree: Tree, tag: u64, combine: Combine<'_>) -> Result<Option<Bytes>> {
        let layout = self.layout();
        let mut acc = self.take(layout.leader(self.pack()), tag).await?;
        let v = match tree.place(self.pack()) {
            Place::FoldsInto(into) => {
                self.send_up(tag, into, acc).await?;
                return Ok(None);
            }
            Place::Virtual(v) => v,
        };
        if let Some(odd) = tree.partner_of(v) {
            let theirs = self.take(layout.leader(odd), tag).await?;
            acc = super::fold([acc, theirs].into_iter(), combine)?;
        }
        for s in 0..tree.rounds() {
            let bit = 1usize << s;
            if v & bit != 0 {
                self.send_up(tag, tree.pack(v - bit), acc).await?;
                return Ok(None);
            }
            let theirs = self.take(layout.leader(tree.pack(v + bit)), tag).await?;
            acc = super::fold([acc, theirs].into_iter(), combine)?;
        }
        Ok(Some(acc))
    }

    /// This pack's fold to the leader of `pack`.
    async fn send_up(&self, tag: u64, pack: usize, value: Bytes) -> Result<()> {
        let (from, to) = (self.layout().leader(self.pack()), self.layout().leader(pack));
        self.count_remote(value.len());
        self.remote_send(pack, vec![self.entry(from, to, tag, value)]).await
    }
}

/// The worker of `pack` that handles block `b` there.
fn holder(layout: &crate::Layout, pack: usize, b: usize) -> usize {
    layout.ranks_of(pack).start + b % layout.pack_size(pack)
}

#[cfg(test)]
mod tests {
    use super::{Place, Tree};

    #[test]
    fn every_pack_has_one_place_and_the_virtual_packs_are_a_power_of_two() {
        for packs in 1..40 {
            let tree = Tree::new(packs);
            assert!(tree.virtuals.is_power_of_two() && tree.virtuals <= packs && packs < 2 * tree.virtuals);
            let mut seen = vec![0; tree.virtuals];
            for p in 0..packs {
                match tree.place(p) {
                    Place::Virtual(v) => {
                        assert_eq!(tree.pack(v), p);
                        seen[v] += 1;
                    }
                    Place::FoldsInto(q) => assert_eq!((q, tree.partner_of(q / 2)), (p - 1, Some(p))),
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "{packs} packs: {seen:?}");
        }
    }

    #[test]
    fn targets_share_the_blocks_evenly_in_order() {
        let tree = Tree::new(5);
        let targets: Vec<_> = (0..10).map(|b| tree.target(b, 10)).collect();
        assert_eq!(targets, [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]);
        assert!((0..10).all(|b| tree.held(b, 10, 3, 0)));
        assert!(tree.held(8, 10, 3, 2) && !tree.held(8, 10, 1, 2) && tree.held(8, 10, 1, 1));
    }
}
