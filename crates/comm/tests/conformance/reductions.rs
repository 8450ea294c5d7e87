//! Reductions large enough to go through blocks (reduce-scatter, then
//! all-gather or gather), against a sequential model of the combination
//! order: ranks within a pack, then packs, so floating-point sums must match
//! to the bit.

use volley_comm::{Error, Layout, Op, TransportOptions, block_range};

use super::cases::burst;

/// Above the 64 KiB where reductions go through blocks, and a multiple of
/// no pack size, so blocks differ in length.
const LEN: usize = 10_007;

/// Numbers whose sum depends on the order they are added in.
fn floats(rank: usize, len: usize) -> Vec<f64> {
    (0..len).map(|i| ((rank * 7919 + i * 104_729) % 1000) as f64 * 0.1 + 1e-7 * (rank + 1) as f64).collect()
}

fn ints(rank: usize, len: usize) -> Vec<i64> {
    (0..len).map(|i| (i as i64 * 31 + rank as i64 * 1009) % 2001 - 1000).collect()
}

fn big(rank: usize, len: usize) -> Vec<u64> {
    (0..len).map(|i| (u64::MAX - i as u64).wrapping_add(rank as u64)).collect()
}

/// The float sum along a tree of packs (`tree_above_packs` below the pack
/// count): each pack's ranks in order; then the first `packs - 2^k` packs
/// in pairs (even + odd); then the `2^k` values as a balanced tree, lower
/// half + upper half.
fn model_tree_sum(layout: &Layout, len: usize) -> Vec<f64> {
    let add = |a: Vec<f64>, b: Vec<f64>| a.into_iter().zip(b).map(|(x, y)| x + y).collect::<Vec<f64>>();
    let packs: Vec<Vec<f64>> =
        (0..layout.packs()).map(|p| layout.ranks_of(p).map(|r| floats(r, len)).reduce(add).unwrap()).collect();
    let virtuals = 1 << layout.packs().ilog2();
    let paired = layout.packs() - virtuals;
    let mut values: Vec<Vec<f64>> = Vec::new();
    let mut packs = packs.into_iter();
    for v in 0..virtuals {
        let first = packs.next().unwrap();
        values.push(if v < paired { add(first, packs.next().unwrap()) } else { first });
    }
    while values.len() > 1 {
        let mut next = Vec::new();
        let mut pairs = values.into_iter();
        while let (Some(a), Some(b)) = (pairs.next(), pairs.next()) {
            next.push(add(a, b));
        }
        values = next;
    }
    values.pop().unwrap()
}

/// The float sum, added in the middleware's order.
fn model_sum(layout: &Layout, len: usize) -> Vec<f64> {
    let mut total: Option<Vec<f64>> = None;
    for pack in 0..layout.packs() {
        let mut ranks = layout.ranks_of(pack);
        let mut acc = floats(ranks.next().unwrap(), len);
        for r in ranks {
            acc.iter_mut().zip(floats(r, len)).for_each(|(a, b)| *a += b);
        }
        total = Some(match total {
            None => acc,
            Some(mut t) => {
                t.iter_mut().zip(acc).for_each(|(a, b)| *a += b);
                t
            }
        });
    }
    total.unwrap()
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

pub fn reductions_in_blocks(t: TransportOptions) {
    let layouts = [Layout::new(&[3]).unwrap(), Layout::new(&[2, 2]).unwrap(), Layout::new(&[3, 1, 2]).unwrap()];
    for layout in layouts {
        let n = layout.workers();
        let sum = model_sum(&layout, LEN);
        let all_ints: Vec<Vec<i64>> = (0..n).map(|r| ints(r, LEN)).collect();
        let min: Vec<i64> = (0..LEN).map(|i| all_ints.iter().map(|v| v[i]).min().unwrap()).collect();
        let max: Vec<i64> = (0..LEN).map(|i| all_ints.iter().map(|v| v[i]).max().unwrap()).collect();
        let all_big: Vec<Vec<u64>> = (0..n).map(|r| big(r, LEN)).collect();
        let wrapped: Vec<u64> = (0..LEN).map(|i| all_big.iter().fold(0u64, |acc, v| acc.wrapping_add(v[i]))).collect();
        burst(layout, &t)
            .run(move |comm| {
                let r = comm.rank();
                let mine = floats(r, LEN);
                let all = comm.all_reduce(&mine, Op::Sum)?;
                assert_eq!(bits(&all), bits(&sum), "all_reduce at rank {r} combined in another order");
                let mut in_place = mine.clone();
                comm.all_reduce_in_place(&mut in_place, Op::Sum)?;
                assert_eq!(bits(&in_place), bits(&sum), "all_reduce_in_place at rank {r}");
                let block = comm.reduce_scatter(&mine, Op::Sum)?;
                assert_eq!(bits(&block), bits(&sum[block_range(LEN, n, r)]), "reduce_scatter at rank {r}");
                let root = n - 1;
                let at_root = comm.reduce(root, &mine, Op::Sum)?;
                assert_eq!(at_root.map(|v| bits(&v)), (r == root).then(|| bits(&sum)), "reduce at rank {r}");

                assert_eq!(comm.all_reduce(&ints(r, LEN), Op::Min)?, min);
                assert_eq!(comm.reduce_scatter(&ints(r, LEN), Op::Max)?, max[block_range(LEN, n, r)]);
                assert_eq!(comm.all_reduce(&big(r, LEN), Op::Sum)?, wrapped);

                // Fewer elements than ranks: some blocks are empty.
                let tiny = comm.reduce_scatter(&[r as f32, 10.0 - r as f32], Op::Max)?;
                assert_eq!(tiny, [(n - 1) as f32, 10.0][block_range(2, n, r)].to_vec());
                assert_eq!(comm.reduce_scatter::<u64>(&[], Op::Sum)?, Vec::<u64>::new());
                Ok(())
            })
            .unwrap();
    }
}

/// With many packs (here: more than one, forced) reductions go along a tree
/// of packs: every result in the tree's order, to the bit, by both paths
/// (blocks and whole values), and a user function still sees rank order.
pub fn reductions_along_a_tree(t: TransportOptions) {
    let layouts =
        [Layout::new(&[2, 1, 2, 1, 1]).unwrap(), Layout::new(&[1; 6]).unwrap(), Layout::new(&[2, 3]).unwrap()];
    for layout in layouts {
        let (n, packs) = (layout.workers(), layout.packs());
        let sum = model_tree_sum(&layout, LEN);
        let small = model_tree_sum(&layout, 5);
        let all_ints: Vec<Vec<i64>> = (0..n).map(|r| ints(r, LEN)).collect();
        let max: Vec<i64> = (0..LEN).map(|i| all_ints.iter().map(|v| v[i]).max().unwrap()).collect();
        burst(layout, &t)
            .tree_above_packs(1)
            .run(move |comm| {
                let r = comm.rank();
                let mine = floats(r, LEN);
                let all = comm.all_reduce(&mine, Op::Sum)?;
                assert_eq!(bits(&all), bits(&sum), "all_reduce at rank {r} of {packs} packs");
                let mut in_place = mine.clone();
                comm.all_reduce_in_place(&mut in_place, Op::Sum)?;
                assert_eq!(bits(&in_place), bits(&sum), "all_reduce_in_place at rank {r}");
                let block = comm.reduce_scatter(&mine, Op::Sum)?;
                assert_eq!(bits(&block), bits(&sum[block_range(LEN, n, r)]), "reduce_scatter at rank {r}");
                let at_root = comm.reduce(n - 2, &mine, Op::Sum)?;
                assert_eq!(at_root.map(|v| bits(&v)), (r == n - 2).then(|| bits(&sum)), "reduce at rank {r}");
                assert_eq!(comm.reduce_scatter(&ints(r, LEN), Op::Max)?, max[block_range(LEN, n, r)]);

                // Whole values (below the blocks' 64 KiB): the same order.
                assert_eq!(bits(&comm.all_reduce(&floats(r, 5), Op::Sum)?), bits(&small), "small, rank {r}");
                let concat = comm.all_reduce_with(bytes::Bytes::from(vec![r as u8]), |a, b| [a, b].concat())?;
                assert_eq!(&concat[..], (0..n as u8).collect::<Vec<_>>(), "user function at rank {r}");
                let at_root =
                    comm.reduce_in_place(1, bytes::Bytes::from(vec![r as u8]), |acc, b| acc.extend_from_slice(b))?;
                assert_eq!(at_root.map(|b| b.to_vec()), (r == 1).then(|| (0..n as u8).collect()), "rank {r}");
                Ok(())
            })
            .unwrap();
    }
    // Transfers between packs, for 5 packs of 2, 1, 2, 1 and 1 (virtual packs
    // 0-3 played by packs 0, 2, 3, 4; pack 1 pairs with pack 0):
    let transfers = |op: fn(&volley_comm::Comm) -> volley_comm::Result<()>| -> u64 {
        let layout = Layout::new(&[2, 1, 2, 1, 1]).unwrap();
        let stats = burst(layout, &t).tree_above_packs(1).run(move |comm| op(comm).map(|_| comm.stats())).unwrap();
        stats.iter().map(|s| s.remote_transfers).sum()
    };
    // pack 1's partials to pack 0, two halving rounds and two doubling rounds
    // per virtual pack, the result to pack 1: 1 + 4 * 2 + 4 * 2 + 1, where
    // all pairs at once would make 5 * 4 + 5 * 4.
    assert_eq!(transfers(|c| c.all_reduce(&vec![1u64; 10_000], Op::Sum).map(drop)), 18);
    // The halving, then blocks 2 and 4 to their ranks in packs 1 and 2.
    assert_eq!(transfers(|c| c.reduce_scatter(&vec![1u64; 10_000], Op::Sum).map(drop)), 9 + 2);
    // Whole values: 4 up the tree, then the broadcast from rank 0 to 4 packs.
    assert_eq!(transfers(|c| c.all_reduce(&[1u64], Op::Sum).map(drop)), 4 + 4);
}

pub fn mismatched_lengths(t: TransportOptions) {
    // Within a pack (rank 1), and between packs (pack 1 one element longer:
    // blocks of equal size would hold different elements).
    type Case = (&'static [usize], fn(usize) -> usize, bool);
    let cases: [Case; 3] = [
        (&[3], |r| if r == 1 { LEN - 1000 } else { LEN }, false),
        (&[2, 2], |r| if r >= 2 { LEN + 1 } else { LEN }, false),
        (&[2, 2], |r| if r >= 2 { LEN + 1 } else { LEN }, true),
    ];
    for (sizes, len_of, scatter) in cases {
        let (results, _) = burst(Layout::new(sizes).unwrap(), &t)
            .run_each(move |comm| {
                let mine = floats(comm.rank(), len_of(comm.rank()));
                match scatter {
                    true => comm.reduce_scatter(&mine, Op::Sum).map(drop),
                    false => comm.all_reduce(&mine, Op::Sum).map(drop),
                }
            })
            .unwrap();
        for (rank, result) in results.iter().enumerate() {
            match result {
                Err(Error::InvalidArgument(msg)) => assert!(msg.contains("differ in length"), "rank {rank}: {msg}"),
                Err(Error::PeerFailed { reason, .. }) => assert!(reason.contains("differ in length"), "{reason}"),
                other => panic!("{sizes:?}, scatter {scatter}: rank {rank} should fail on the lengths, got {other:?}"),
            }
        }
    }
}

/// Rank 0 reduces through the async API (its input copied) while the others
/// lend theirs through the blocking one: the same bits.
pub fn async_and_blocking_together(t: TransportOptions) {
    let layout = Layout::new(&[3, 2]).unwrap();
    let sum = model_sum(&layout, LEN);
    burst(layout, &t)
        .run(move |comm| {
            let mine = floats(comm.rank(), LEN);
            let all = match comm.rank() {
                0 => {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    runtime.block_on(comm.as_async().all_reduce(&mine, Op::Sum))?
                }
                _ => comm.all_reduce(&mine, Op::Sum)?,
            };
            assert_eq!(bits(&all), bits(&sum), "rank {}", comm.rank());
            Ok(())
        })
        .unwrap();
}
