//! Which worker sorts which records: splitters chosen from a sample, over the
//! order (key, source rank, record index).
//!
//! Splitting on the key alone sends every copy of a key to one worker: with
//! half the records sharing one key, one of 8 workers received 59.5% of all
//! records. Ties are split instead by where a record came from (its source
//! rank, then its index there), so equal keys spread over adjacent buckets
//! while the output stays globally ordered by key: every record of bucket b
//! sorts no later than every record of bucket b+1.

use super::records::KEY;

/// A position in the (key, source rank, index) order; its bytes compare in
/// that order (big-endian numbers after the key).
pub type Position = [u8; POSITION];

/// Bytes of a [`Position`]: key, rank (u32), index (u64).
pub const POSITION: usize = KEY + 4 + 8;

/// The position of record `index` of source `rank` with key `key`.
pub fn position(key: &[u8], rank: u32, index: u64) -> Position {
    let mut p = [0u8; POSITION];
    p[..KEY].copy_from_slice(&key[..KEY]);
    p[KEY..KEY + 4].copy_from_slice(&rank.to_be_bytes());
    p[KEY + 4..].copy_from_slice(&index.to_be_bytes());
    p
}

/// `buckets - 1` splitters from a sample of positions (any order): the
/// sample's quantiles, so each bucket gets about the same number of records.
pub fn choose(mut sample: Vec<Position>, buckets: usize) -> Vec<Position> {
    sample.sort_unstable();
    (1..buckets).filter_map(|i| sample.get(i * sample.len() / buckets).copied()).collect()
}

/// The bucket of a record at `position`: the number of splitters at or before it.
pub fn bucket(splitters: &[Position], position: &Position) -> usize {
    splitters.partition_point(|s| s <= position)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys of `n` records per source over `sources` sources: `dup` of each
    /// thousand share one key, the rest are distinct.
    fn records(sources: u32, n: u64, dup: u64) -> Vec<(Vec<u8>, u32, u64)> {
        let mut out = Vec::new();
        for r in 0..sources {
            for i in 0..n {
                let key = if (i * 7919 + r as u64) % 1000 < dup {
                    vec![0x55; KEY]
                } else {
                    let h = crate::dataset::splitmix64(r as u64 * 1_000_003 + i);
                    h.to_be_bytes().iter().chain(&[1u8, 2]).copied().collect()
                };
                out.push((key, r, i));
            }
        }
        out
    }

    fn loads(records: &[(Vec<u8>, u32, u64)], buckets: usize, per_source_sample: u64, sources: u32) -> Vec<usize> {
        let n = records.len() as u64 / sources as u64;
        let sample: Vec<Position> = records
            .iter()
            .filter(|(_, _, i)| i % (n / per_source_sample) == 0)
            .map(|(k, r, i)| position(k, *r, *i))
            .collect();
        let splitters = choose(sample, buckets);
        let mut loads = vec![0usize; buckets];
        for (k, r, i) in records {
            loads[bucket(&splitters, &position(k, *r, *i))] += 1;
        }
        loads
    }

    #[test]
    fn half_equal_keys_spread_evenly() {
        let recs = records(8, 20_000, 500);
        let loads = loads(&recs, 8, 1000, 8);
        let mean = recs.len() as f64 / 8.0;
        let worst = *loads.iter().max().unwrap() as f64 / mean;
        assert!(worst <= 1.3, "max/mean {worst:.2}: {loads:?}");
    }

    #[test]
    fn buckets_keep_the_global_order_of_keys() {
        let recs = records(4, 5_000, 300);
        let sample: Vec<Position> = recs.iter().step_by(7).map(|(k, r, i)| position(k, *r, *i)).collect();
        let splitters = choose(sample, 6);
        let mut by_bucket: Vec<(usize, &[u8])> =
            recs.iter().map(|(k, r, i)| (bucket(&splitters, &position(k, *r, *i)), &k[..])).collect();
        by_bucket.sort();
        // Sorting each bucket by key and concatenating is sorted by key.
        assert!(by_bucket.windows(2).all(|w| w[0].0 == w[1].0 || w[0].1 <= w[1].1));
    }

    #[test]
    fn one_bucket_takes_everything() {
        assert!(choose(vec![position(&[1; KEY], 0, 0)], 1).is_empty());
        assert_eq!(bucket(&[], &position(&[9; KEY], 3, 3)), 0);
    }
}
