//! Property: for any layout, length and values, all_reduce, reduce_scatter
//! and reduce give the bits of one model of the combination order (ranks
//! within a pack in order, then packs in order, or along the tree of packs
//! above `tree_above_packs`), whether the vector is small enough to go whole
//! or large enough to go through blocks.

use std::time::Duration;

use proptest::prelude::*;
use volley_comm::{Layout, LocalBurst, Op, StreamOptions, TransportOptions, block_range};

/// Floats with many fraction bits, so a different order of additions shows.
fn values(seed: u64, rank: usize, len: usize) -> Vec<f64> {
    let mut x = seed ^ (rank as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..len)
        .map(|_| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 20) as f64 - 4096.0
        })
        .collect()
}

fn add(mut a: Vec<f64>, b: Vec<f64>) -> Vec<f64> {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
    a
}

/// The packs' sums combined as a tree: the first `packs - 2^k` in pairs,
/// then halves of the `2^k` values, lower + upper, recursively.
fn tree(mut packs: Vec<Vec<f64>>) -> Vec<f64> {
    let virtuals = 1 << packs.len().ilog2();
    let paired = packs.len() - virtuals;
    let rest = packs.split_off(2 * paired);
    let mut values: Vec<Vec<f64>> = Vec::new();
    let mut pairs = packs.into_iter();
    while let (Some(a), Some(b)) = (pairs.next(), pairs.next()) {
        values.push(add(a, b));
    }
    values.extend(rest);
    fn halves(mut v: Vec<Vec<f64>>) -> Vec<f64> {
        if v.len() == 1 {
            return v.pop().unwrap();
        }
        let upper = v.split_off(v.len() / 2);
        add(halves(v), halves(upper))
    }
    halves(values)
}

fn model(layout: &Layout, seed: u64, len: usize, tree_above: usize) -> Vec<u64> {
    let packs: Vec<Vec<f64>> =
        (0..layout.packs()).map(|p| layout.ranks_of(p).map(|r| values(seed, r, len)).reduce(add).unwrap()).collect();
    let total = match layout.packs() > tree_above {
        true => tree(packs),
        false => packs.into_iter().reduce(add).unwrap(),
    };
    total.iter().map(|x| x.to_bits()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn reductions_give_the_models_bits_on_every_path(
        sizes in proptest::collection::vec(1usize..4, 1..8),
        len in prop_oneof![0usize..40, 8_000usize..12_000],
        seed in any::<u64>(),
        tree_above in prop_oneof![Just(64usize), 1usize..4],
    ) {
        let layout = Layout::new(&sizes).unwrap();
        let n = layout.workers();
        let expected = model(&layout, seed, len, tree_above);
        let transport = TransportOptions::Uds(StreamOptions::default());
        let burst = LocalBurst::new(layout)
            .transport(transport)
            .op_timeout(Duration::from_secs(30))
            .tree_above_packs(tree_above);
        let results = burst
            .run(move |comm| {
                let r = comm.rank();
                let mine = values(seed, r, len);
                let all = comm.all_reduce(&mine, Op::Sum)?;
                let mut in_place = mine.clone();
                comm.all_reduce_in_place(&mut in_place, Op::Sum)?;
                assert_eq!(&in_place, &all);
                let block = comm.reduce_scatter(&mine, Op::Sum)?;
                let at_root = comm.reduce(n / 2, &mine, Op::Sum)?;
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                Ok((bits(&all), bits(&block), at_root.map(|v| bits(&v))))
            })
            .unwrap();
        for (r, (all, block, at_root)) in results.into_iter().enumerate() {
            prop_assert_eq!(&all, &expected, "all_reduce at rank {}", r);
            prop_assert_eq!(&block[..], &expected[block_range(len, n, r)], "reduce_scatter at rank {}", r);
            prop_assert_eq!(at_root, (r == n / 2).then(|| expected.clone()), "reduce at rank {}", r);
        }
    }
}
