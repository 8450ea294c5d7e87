//! What `volley bench comm` checks it moved (issue 17): every part carries a
//! pattern derived from (sender, receiver, iteration), and each rank checks
//! every byte it receives in the first and last measured iterations. The
//! parts are made before the timer starts and checked after it stops; a
//! mismatch names the part and the first byte that differs.

use bytes::Bytes;

/// The receiver of a part meant for every rank (broadcast, all-gather).
pub(crate) const EVERY: usize = usize::MAX;

/// Most bytes of distinct parts one rank makes for an iteration; beyond it a
/// sender's parts share one pattern for every receiver (what was sent by
/// whom is still checked, not which receiver it was meant for).
pub(crate) const DISTINCT_PARTS_LIMIT: usize = 256 << 20;

fn mix(mut z: u64) -> u64 {
    // splitmix64's finaliser: every input bit reaches every output bit.
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The part `sender` sends `receiver` in `iteration`, `size` bytes long.
pub(crate) fn part(sender: usize, receiver: usize, iteration: usize, size: usize) -> Bytes {
    let seed = mix(mix(mix(sender as u64) ^ receiver as u64) ^ iteration as u64);
    let mut out = Vec::with_capacity(size + 8);
    let mut word = 0u64;
    while out.len() < size {
        word = word.wrapping_add(1);
        out.extend_from_slice(&mix(seed ^ word).to_le_bytes());
    }
    out.truncate(size);
    Bytes::from(out)
}

/// Where `got` differs from the part (sender, receiver, iteration), said for
/// the run's failure; None when every byte is as sent.
pub(crate) fn check(
    op: &str,
    sender: usize,
    receiver: usize,
    iteration: usize,
    size: usize,
    got: &[u8],
) -> Option<String> {
    let to = if receiver == EVERY { "every rank".to_string() } else { format!("rank {receiver}") };
    let what = format!("{op}: the part rank {sender} sent {to} in iteration {iteration}");
    let want = part(sender, receiver, iteration, size);
    if got.len() != want.len() {
        return Some(format!("{what} arrived with {} bytes, not {}", got.len(), want.len()));
    }
    let first = got.iter().zip(want.iter()).position(|(a, b)| a != b)?;
    let differing = got.iter().zip(want.iter()).filter(|(a, b)| a != b).count();
    Some(format!("{what} differs from byte {first} on ({differing} of {} bytes differ)", want.len()))
}

/// A rank's all-reduce input in `iteration`: integers, so that any order of
/// summation gives the exact same sum.
pub(crate) fn elements(rank: usize, iteration: usize, len: usize) -> Vec<f64> {
    (0..len).map(|k| ((rank + 1) * (k % 1024 + 1) + iteration % 7) as f64).collect()
}

/// Where an all-reduce (sum) of every rank's [`elements`] went wrong, if it did.
pub(crate) fn check_sum(ranks: usize, iteration: usize, got: &[f64], len: usize) -> Option<String> {
    if got.len() != len {
        return Some(format!("all-reduce in iteration {iteration}: {} elements, not {len}", got.len()));
    }
    let weights = (ranks * (ranks + 1) / 2) as f64;
    let offset = (ranks * (iteration % 7)) as f64;
    let bad = got.iter().enumerate().position(|(k, v)| *v != (k % 1024 + 1) as f64 * weights + offset)?;
    let want = (bad % 1024 + 1) as f64 * weights + offset;
    Some(format!(
        "all-reduce in iteration {iteration}: element {bad} is {}, the sum of every rank's is {want}",
        got[bad]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_differ_by_sender_receiver_and_iteration_and_are_checked_whole() {
        let p = part(1, 2, 3, 1000);
        assert_eq!(p.len(), 1000);
        assert_eq!(check("x", 1, 2, 3, 1000, &p), None);
        for other in [part(2, 1, 3, 1000), part(1, 3, 3, 1000), part(1, 2, 4, 1000)] {
            assert!(check("x", 1, 2, 3, 1000, &other).is_some());
        }
        let mut flipped = p.to_vec();
        flipped[777] ^= 1;
        let said = check("all-to-all", 1, 2, 3, 1000, &flipped).unwrap();
        assert!(said.contains("rank 1 sent rank 2 in iteration 3 differs from byte 777 on (1 of 1000"), "{said}");
        assert!(check("x", 1, 2, 3, 1000, &p[..999]).unwrap().contains("999 bytes, not 1000"));
        assert_eq!(part(0, EVERY, 0, 0).len(), 0);
    }

    #[test]
    fn a_wrong_sum_is_named_by_its_element() {
        let (ranks, len) = (4, 3000);
        let mut sum = vec![0.0; len];
        for r in 0..ranks {
            for (s, e) in sum.iter_mut().zip(elements(r, 5, len)) {
                *s += e;
            }
        }
        assert_eq!(check_sum(ranks, 5, &sum, len), None);
        sum[2049] += 1.0;
        assert!(check_sum(ranks, 5, &sum, len).unwrap().contains("element 2049"));
    }
}
