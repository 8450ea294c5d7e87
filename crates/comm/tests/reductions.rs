//! Property: for any layout, length and values, all_reduce, reduce_scatter
//! and reduce give the bits of one sequential model (ranks within a pack in
//! order, then packs in order), whether the vector is small enough to go
//! whole or large enough to go through blocks.

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

fn model(layout: &Layout, seed: u64, len: usize) -> Vec<u64> {
    let sum_of = |ranks: &mut dyn Iterator<Item = Vec<f64>>| {
        let mut acc = ranks.next().unwrap();
        for v in ranks {
            acc.iter_mut().zip(v).for_each(|(a, b)| *a += b);
        }
        acc
    };
    let mut partials = (0..layout.packs()).map(|p| sum_of(&mut layout.ranks_of(p).map(|r| values(seed, r, len))));
    sum_of(&mut partials).iter().map(|x| x.to_bits()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn reductions_give_the_models_bits_on_every_path(
        sizes in proptest::collection::vec(1usize..4, 1..4),
        len in prop_oneof![0usize..40, 8_000usize..12_000],
        seed in any::<u64>(),
    ) {
        let layout = Layout::new(&sizes).unwrap();
        let n = layout.workers();
        let expected = model(&layout, seed, len);
        let transport = TransportOptions::Uds(StreamOptions::default());
        let burst = LocalBurst::new(layout).transport(transport).op_timeout(Duration::from_secs(30));
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
