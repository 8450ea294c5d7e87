//! Reductions of numbers split into one block per rank (a reduce-scatter),
//! so that no thread folds the whole vector and no pack sends it whole.
//!
//! 1. Every worker of a pack sees every input of its pack (zero-copy: the
//!    same bytes, shared).
//! 2. Worker `i` of a pack folds, over the pack's inputs in rank order, the
//!    blocks `b` with `b % pack_size == i`: the pack's workers fold in
//!    parallel, each about `1/pack_size` of the vector.
//! 3. The pack sends each block's partial to that block's rank: one transfer
//!    per other pack, holding the partials of that pack's blocks. This is the
//!    pairwise-exchange reduce-scatter: every pack sends the blocks of the
//!    other packs' ranks (`(packs-1)/packs` of the vector with equal packs),
//!    as a ring does, but in one round instead of `packs - 1`.
//! 4. Rank `r` folds the packs' partials of block `r` in pack order.
//!
//! Above [`crate::PackOptions::tree_above_packs`] packs, steps 3 and 4 go
//! along a tree of packs instead (`tree.rs`), so that a pack makes about
//! log2(packs) transfers, not one to every other pack.
//!
//! All-reduce adds an all-gather of the blocks (one transfer per pack pair);
//! reduce adds a gather at the root. Every element is combined in the same
//! order as the whole-vector path (ranks within a pack, then packs, or the
//! tree's order), so both give the same bits, every run.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::try_join_all;

use super::lend::{LendGuard, Loan};
use super::tree::{Held, Tags, Tree};
use crate::comm::AsyncComm;
use crate::error::{Error, Result};
use crate::reduce::{self, Element, Op};
use crate::transport::PacketSink;
use crate::wire::{Entry, Space};

/// Below this many bytes a reduction goes whole to rank 0 and back: three
/// rounds of messages would cost more than folding it on one thread.
const SLICED_MIN_BYTES: usize = 64 * 1024;

/// The elements that block `index` of `parts` holds, out of `len`: blocks
/// as equal as can be, the first `len % parts` one element longer. Rank `r`'s
/// share of [`AsyncComm::reduce_scatter`] is block `r` of `size` blocks.
///
/// ```
/// assert_eq!(volley_comm::block_range(10, 4, 0), 0..3);
/// assert_eq!(volley_comm::block_range(10, 4, 3), 8..10);
/// ```
pub fn block_range(len: usize, parts: usize, index: usize) -> Range<usize> {
    if parts == 0 || index >= parts {
        return len..len;
    }
    let (base, extra) = (len / parts, len % parts);
    let start = index * base + index.min(extra);
    start..start + base + usize::from(index < extra)
}

impl AsyncComm {
    /// Element-wise reduction whose result is split among the ranks: rank
    /// `r` gets the elements [`block_range`]`(data.len(), size, r)` of the
    /// reduced vector. Every rank passes the same number of elements.
    pub async fn reduce_scatter<T: Element>(&self, data: &[T], op: Op) -> Result<Vec<T>> {
        let (share, cross) = (self.next_tag(), self.next_tag());
        let input = self.encode_pooled(data);
        let work = async {
            let block = match self.reduce_in::<T>(share, cross, Mine::Copied(input), op).await? {
                Reduced::Block(block) => block,
                Reduced::Held(tree, tags, held) => {
                    let rank = self.rank();
                    let mut mine = self.deliver_held(tree, tags.delivered(), held, |b| b, rank..rank + 1).await?;
                    mine.pop().unwrap_or_default()
                }
            };
            reduce::decode(&block)
        };
        self.timed(work, || "reduce_scatter".to_string()).await
    }

    /// Whether a reduction of `bytes` goes through blocks.
    pub(super) fn reduces_in_blocks(&self, bytes: usize) -> bool {
        self.size() > 1 && bytes >= SLICED_MIN_BYTES
    }

    /// All-reduce through blocks of `input` (encoded): reduce-scatter, then
    /// all-gather, the result written to `out`.
    pub(super) async fn all_reduce_in_blocks<T: Element>(&self, input: Bytes, op: Op, out: Out<'_, T>) -> Result<()> {
        let (share, cross, gather) = (self.next_tag(), self.next_tag(), self.next_tag());
        let work = async {
            let reduced = self.reduce_in::<T>(share, cross, Mine::Copied(input), op).await?;
            out.fill(&self.all_gather_reduced(gather, reduced).await?)
        };
        self.timed(work, || "all_reduce".to_string()).await
    }

    /// [`AsyncComm::all_reduce_in_blocks`] of the `len` encoded bytes at
    /// `start`, lent to the pack's workers instead of copied (see `lend.rs`).
    ///
    /// # Safety
    /// The bytes must stay valid and unwritten (except through `out`) until
    /// the future ends, and the future must run to its end or be dropped,
    /// never leaked.
    pub(super) async unsafe fn all_reduce_lent<T: Element>(
        &self,
        start: *const u8,
        len: usize,
        op: Op,
        out: Out<'_, T>,
    ) -> Result<()> {
        let (share, cross, gather) = (self.next_tag(), self.next_tag(), self.next_tag());
        let loans = &self.core.loans;
        // SAFETY: as this function's caller promises; the guard lives in this
        // future, which is dropped, not leaked.
        let guard = unsafe { LendGuard::new(loans, share, self.local, self.pack_ranks().len(), start, len) };
        let work = async {
            let reduced = async {
                let reduced = self.reduce_in::<T>(share, cross, Mine::Lent(len), op).await?;
                self.all_gather_reduced(gather, reduced).await
            };
            let blocks = match reduced.await {
                Ok(blocks) => blocks,
                Err(e) => {
                    // Workers still folding this input read why it is gone.
                    guard.fail(&e);
                    return Err(e);
                }
            };
            // Every worker of the pack has folded this input by now (their
            // blocks came back); the drop waits for any reader all the same.
            drop(guard);
            out.fill(&blocks)
        };
        self.timed(work, || "all_reduce".to_string()).await
    }

    /// Reduce at root through blocks: reduce-scatter, then gather.
    pub(super) async fn reduce_in_blocks<T: Element>(&self, root: usize, data: &[T], op: Op) -> Result<Option<Vec<T>>> {
        self.check_rank(root, "root")?;
        let (share, cross, gather) = (self.next_tag(), self.next_tag(), self.next_tag());
        let input = self.encode_pooled(data);
        let work = async {
            let blocks = match self.reduce_in::<T>(share, cross, Mine::Copied(input), op).await? {
                Reduced::Block(block) => self.gather_in(gather, root, block).await?,
                Reduced::Held(tree, tags, held) => {
                    let expect = if self.rank() == root { 0..self.size() } else { 0..0 };
                    let blocks = self.deliver_held(tree, tags.delivered(), held, |_| root, expect).await?;
                    (self.rank() == root).then_some(blocks)
                }
            };
            match blocks {
                Some(blocks) => reduce::decode_concat(&blocks).map(Some),
                None => Ok(None),
            }
        };
        self.timed(work, || format!("reduce to rank {root}")).await
    }

    /// The numbers' encoding in a buffer of the pack's pool: reused memory,
    /// so no page faults at every call (8 MiB of fresh memory costs about
    /// as much as a copy of it to touch).
    pub(super) fn encode_pooled<T: Element>(&self, data: &[T]) -> Bytes {
        match reduce::memory_of(data) {
            Some(bytes) => {
                let mut buffer = self.core.buffer(bytes.len());
                buffer.extend_from_slice(bytes);
                buffer.freeze()
            }
            None => reduce::encode(data),
        }
    }

    /// `range` of every input, folded in order into a new pooled buffer,
    /// followed by the inputs' length in elements (see [`without_length`]).
    fn fold_inputs<T: Element>(
        &self,
        op: Op,
        inputs: &[(usize, Shared)],
        range: Range<usize>,
        len: usize,
    ) -> Result<Bytes> {
        let mut acc = self.core.buffer(range.len() + LENGTH_BYTES);
        if let Some(((rank, first), rest)) = inputs.split_first() {
            first.read(|b| acc.extend_from_slice(&b[range.clone()])).map_err(|why| left(*rank, &why))?;
            for (rank, value) in rest {
                let folded = value.read(|b| reduce::combine_into::<T>(op, acc.as_mut(), &b[range.clone()]));
                folded.map_err(|why| left(*rank, &why))??;
            }
        }
        acc.extend_from_slice(&(len as u64).to_le_bytes());
        Ok(acc.freeze())
    }

    /// Partials folded in order into a new pooled buffer.
    fn fold_pooled<T: Element>(&self, op: Op, values: &[Bytes]) -> Result<Bytes> {
        let Some((first, rest)) = values.split_first() else { return Ok(Bytes::new()) };
        let mut acc = self.core.buffer(first.len());
        acc.extend_from_slice(first);
        for value in rest {
            reduce::combine_into::<T>(op, acc.as_mut(), value)?;
        }
        Ok(acc.freeze())
    }

    /// Every block of an all-reduce at every rank: the reduced blocks gathered.
    async fn all_gather_reduced(&self, gather: u64, reduced: Reduced) -> Result<Vec<Bytes>> {
        match reduced {
            Reduced::Block(block) => self.all_gather_in(gather, block).await,
            Reduced::Held(tree, tags, held) => self.all_gather_held(tree, &tags, held).await,
        }
    }

    /// The reduction of every rank's input (encoded), in blocks: with few
    /// packs, this rank's block (pairwise exchange); with many, the blocks
    /// this worker holds at the end of the tree's halving (see `tree.rs`).
    async fn reduce_in<T: Element>(&self, share: u64, cross: u64, mine: Mine, op: Op) -> Result<Reduced> {
        let (len, partials) = self.fold_pack_blocks::<T>(share, mine, op).await?;
        match self.tree() {
            None => self.exchange_pairs::<T>(cross, partials, len, op).await.map(Reduced::Block),
            Some(tree) => {
                let tags = self.tree_tags(tree);
                let held = self.halve::<T>(tree, &tags, partials, len, op).await?;
                Ok(Reduced::Held(tree, tags, held))
            }
        }
    }

    /// Steps 1 and 2: this worker's blocks (`b % pack_size == local`) as
    /// `(b, partial)`, each folded over the pack's inputs and followed by
    /// their length; and that length in elements.
    async fn fold_pack_blocks<T: Element>(
        &self,
        share: u64,
        mine: Mine,
        op: Op,
    ) -> Result<(usize, Vec<(usize, Bytes)>)> {
        let size = self.size();
        let my_len = mine.len();
        if !my_len.is_multiple_of(T::SIZE) {
            return Err(Error::invalid("reduction input is not a whole number of elements"));
        }
        let len = my_len / T::SIZE;
        let block_bytes = |b: usize| {
            let r = block_range(len, size, b);
            r.start * T::SIZE..r.end * T::SIZE
        };

        // 1. The pack's inputs, shared: as bytes, or lent (announced by an
        //    empty message once the loan is made).
        let announce = match mine {
            Mine::Copied(bytes) => bytes,
            Mine::Lent(_) => Bytes::new(),
        };
        for dst in self.pack_ranks() {
            // Counted as the input it stands for, lent or copied alike.
            self.core.stats[self.local].local(my_len);
            self.core.deliver_local(self.rank(), dst, (Space::Collective, share), announce.clone());
        }
        drop(announce);
        let mut inputs = Vec::with_capacity(self.pack_ranks().len());
        for (i, src) in self.pack_ranks().enumerate() {
            let bytes = self.take(src, share).await?;
            let other = match self.core.loans.get(share, i) {
                Some(loan) => Shared::Lent(loan),
                None => Shared::Bytes(bytes),
            };
            if other.len() != my_len {
                let theirs = match other.len() {
                    // A lender that already left announced with nothing.
                    0 => "no elements (or left the reduction)".to_string(),
                    n => format!("{} elements", n / T::SIZE),
                };
                return Err(Error::invalid(format!(
                    "reduction inputs differ in length: rank {src} passed {theirs} and rank {} {len}; \
                     every rank must pass the same number",
                    self.rank()
                )));
            }
            inputs.push((src, other));
        }

        // 2. This worker's blocks, folded over the pack's inputs.
        let pack_size = inputs.len();
        let mut partials = Vec::new();
        for b in (self.local..size).step_by(pack_size) {
            partials.push((b, self.fold_inputs::<T>(op, &inputs, block_bytes(b), len)?));
        }
        Ok((len, partials))
    }

    /// Steps 3 and 4 with few packs: each pack's partials to the blocks'
    /// ranks at once, and this rank's block folded in pack order.
    async fn exchange_pairs<T: Element>(
        &self,
        cross: u64,
        partials: Vec<(usize, Bytes)>,
        len: usize,
        op: Op,
    ) -> Result<Bytes> {
        let layout = self.layout();
        let (size, packs, pack_size) = (self.size(), layout.packs(), self.pack_ranks().len());
        for (b, partial) in &partials {
            match layout.pack_of(*b) == self.pack() {
                true => self.core.stats[self.local].local(partial.len()),
                false => self.count_remote(partial.len()),
            }
        }
        let partials = partials.into_iter().map(|(_, p)| p).collect();

        // 3. Each block's partial to its rank: one transfer per other pack.
        if let Some(all) = self.core.deposit(cross, self.local, partials) {
            let first = self.pack_ranks().start;
            let mut to_pack: Vec<Vec<Entry>> = vec![Vec::new(); packs];
            for (i, blocks) in all.into_iter().enumerate() {
                for (b, partial) in (i..size).step_by(pack_size).zip(blocks) {
                    let pack = layout.pack_of(b);
                    if pack == self.pack() {
                        // Counted by the worker that folded it (above).
                        self.core.deliver_local(first + i, b, (Space::Collective, cross), partial);
                    } else {
                        to_pack[pack].push(self.entry(first + i, b, cross, partial));
                    }
                }
            }
            let sends = to_pack.into_iter().enumerate().filter(|(_, e)| !e.is_empty());
            try_join_all(sends.map(|(pack, entries)| self.remote_send(pack, entries))).await?;
        }

        // 4. This rank's block: the packs' partials, folded in pack order,
        //    each checked to come from inputs of this rank's length.
        let owner = |pack: usize| layout.ranks_of(pack).start + self.rank() % layout.pack_size(pack);
        let mut partials = Vec::with_capacity(packs);
        for pack in 0..packs {
            let partial = self.take(owner(pack), cross).await?;
            partials.push(without_length(partial, len, pack, self.rank())?);
        }
        if packs == 1 {
            return Ok(partials.pop().unwrap_or_default());
        }
        self.fold_pooled::<T>(op, &partials)
    }
}

/// A reduction through blocks, before its blocks go where they are asked for.
enum Reduced {
    /// This rank's block (the pairwise exchange).
    Block(Bytes),
    /// The blocks this worker holds after the tree's halving.
    Held(Tree, Tags, Held),
}

/// This worker's input to a reduction through blocks.
enum Mine {
    /// Copied into the pack's buffers, shared as bytes.
    Copied(Bytes),
    /// Lent (see `lend.rs`): its length.
    Lent(usize),
}

impl Mine {
    fn len(&self) -> usize {
        match self {
            Mine::Copied(bytes) => bytes.len(),
            Mine::Lent(len) => *len,
        }
    }
}

/// Another pack worker's input, as this worker reads it.
enum Shared {
    Bytes(Bytes),
    Lent(Arc<Loan>),
}

impl Shared {
    fn len(&self) -> usize {
        match self {
            Shared::Bytes(bytes) => bytes.len(),
            Shared::Lent(loan) => loan.len(),
        }
    }

    /// `f` over the bytes; if a lender has left, why.
    fn read<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, String> {
        match self {
            Shared::Bytes(bytes) => Ok(f(bytes)),
            Shared::Lent(loan) => loan.read(f),
        }
    }
}

/// A partial carries the length of the inputs it was folded from: packs
/// whose ranks passed different lengths could otherwise fold blocks of equal
/// size that hold different elements, and return a wrong result without an error.
pub(super) const LENGTH_BYTES: usize = 8;

/// The partial without its length, once the length is checked to be `len`.
pub(super) fn without_length(partial: Bytes, len: usize, pack: usize, rank: usize) -> Result<Bytes> {
    let Some(at) = partial.len().checked_sub(LENGTH_BYTES) else {
        return Err(Error::protocol(format!("a reduction partial from pack {pack} has no length")));
    };
    let theirs = u64::from_le_bytes(partial[at..].try_into().unwrap_or_default());
    if theirs != len as u64 {
        return Err(Error::invalid(format!(
            "reduction inputs differ in length: the ranks of pack {pack} passed {theirs} elements and rank \
             {rank} {len}; every rank must pass the same number"
        )));
    }
    Ok(partial.slice(..at))
}

fn left(rank: usize, why: &str) -> Error {
    Error::invalid(format!("rank {rank} left the reduction before its input was read: {why}"))
}

/// Where an all-reduce's result goes.
pub(super) enum Out<'a, T> {
    /// A new vector.
    Vec(&'a mut Vec<T>),
    /// Over the caller's slice.
    Slice(&'a mut [T]),
    /// Over `len` elements at a pointer that was lent while the reduction
    /// ran (the slice is made only once the loan has ended).
    Raw(*mut T, usize, std::marker::PhantomData<&'a mut [T]>),
}

impl<T: Element> Out<'_, T> {
    fn fill(self, blocks: &[Bytes]) -> Result<()> {
        match self {
            Out::Vec(v) => *v = reduce::decode_concat(blocks)?,
            Out::Slice(s) => reduce::decode_over(blocks, s)?,
            // SAFETY: made from a `&'a mut [T]` of `len` elements (see
            // `all_reduce_in_place_lending`), and filled after the loan ended.
            Out::Raw(start, len, _) => {
                reduce::decode_over(blocks, unsafe { std::slice::from_raw_parts_mut(start, len) })?
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::block_range;

    #[test]
    fn blocks_cover_the_vector_in_order_and_differ_by_at_most_one() {
        for len in [0, 1, 7, 16, 17, 1000] {
            for parts in 1..20 {
                let blocks: Vec<_> = (0..parts).map(|i| block_range(len, parts, i)).collect();
                assert_eq!(blocks[0].start, 0);
                assert_eq!(blocks[parts - 1].end, len);
                assert!(blocks.windows(2).all(|w| w[0].end == w[1].start));
                let sizes: Vec<_> = blocks.iter().map(|b| b.len()).collect();
                assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
            }
        }
        assert_eq!(block_range(5, 0, 0), 5..5);
        assert_eq!(block_range(5, 2, 2), 5..5);
    }
}
