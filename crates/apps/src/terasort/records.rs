//! The gensort record layout and what the generator and validator compute.
//!
//! A record is 100 bytes: a 10-byte key, then the payload of gensort's binary
//! format: `00 11`, the row number as 32 hex digits, `88 99 AA BB`, 48 filler
//! bytes (12 runs of one hex digit, 4 each), `CC DD EE FF`. Keys are a
//! function of (seed, row) alone, so any range of rows can be generated anywhere.

use crate::dataset::splitmix64;

/// Bytes per record.
pub const RECORD: usize = 100;
/// Bytes of the key at the start of a record.
pub const KEY: usize = 10;

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Writes row `row` of the data set with `seed` into `out`.
pub fn record(seed: u64, row: u64, out: &mut [u8]) {
    let a = splitmix64(seed ^ row.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    let b = splitmix64(a ^ 0xA076_1D64_78BD_642F);
    out[..8].copy_from_slice(&a.to_be_bytes());
    out[8..10].copy_from_slice(&b.to_be_bytes()[..2]);
    out[10] = 0x00;
    out[11] = 0x11;
    for i in 0..32 {
        // The row as a 128-bit number, most significant digit first.
        let shift = (31 - i) * 4;
        let nibble = if shift >= 64 { 0 } else { (row >> shift) & 0xF };
        out[12 + i] = HEX[nibble as usize];
    }
    out[44..48].copy_from_slice(&[0x88, 0x99, 0xAA, 0xBB]);
    for run in 0..12 {
        let digit = HEX[((b >> (4 * run + 16)) & 0xF) as usize];
        out[48 + run * 4..52 + run * 4].fill(digit);
    }
    out[96..100].copy_from_slice(&[0xCC, 0xDD, 0xEE, 0xFF]);
}

/// A 64-bit FNV-1a hash of one record; the data set's checksum is the
/// wrapping sum over its records, so it does not depend on their order.
pub fn record_hash(rec: &[u8]) -> u64 {
    let mut h = 0xCBF2_9CE4_8422_2325u64;
    for &byte in rec {
        h = (h ^ byte as u64).wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// Count and order-independent checksum of a run of records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Digest {
    pub records: u64,
    pub checksum: u64,
}

impl Digest {
    pub fn add(&mut self, rec: &[u8]) {
        self.records += 1;
        self.checksum = self.checksum.wrapping_add(record_hash(rec));
    }

    pub fn merge(&mut self, other: Digest) {
        self.records += other.records;
        self.checksum = self.checksum.wrapping_add(other.checksum);
    }
}

/// The records of `pieces`, sorted by key, in one new buffer: the sort step of
/// the job and of the one-process baseline alike.
///
/// Sorts 16-byte entries (the 10-byte key and the record's number packed in one
/// `u128`) instead of references to the records: comparing integers in one
/// dense array keeps the sort in cache, where comparing keys through pointers
/// missed it at every step (about 5x slower on 2 GiB). The records are then
/// copied once, in key order.
pub fn sort_records<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let pieces: Vec<&[u8]> = pieces.into_iter().collect();
    // starts[i]: the number of the first record of piece i.
    let mut starts = Vec::with_capacity(pieces.len());
    let mut entries: Vec<u128> = Vec::with_capacity(pieces.iter().map(|p| p.len() / RECORD).sum());
    for piece in &pieces {
        starts.push(entries.len() as u64);
        for rec in piece.chunks_exact(RECORD) {
            let mut key = [0u8; 16];
            key[..KEY].copy_from_slice(&rec[..KEY]);
            let number = entries.len() as u128;
            entries.push(u128::from_be_bytes(key) | number);
        }
    }
    entries.sort_unstable();
    let mut sorted = Vec::with_capacity(entries.len() * RECORD);
    for entry in entries {
        let number = (entry & NUMBER_MASK) as u64;
        let piece = starts.partition_point(|&s| s <= number) - 1;
        let at = (number - starts[piece]) as usize * RECORD;
        sorted.extend_from_slice(&pieces[piece][at..at + RECORD]);
    }
    sorted
}

/// The low 48 bits of a sort entry: the record's number (the key takes the top 80).
const NUMBER_MASK: u128 = (1 << 48) - 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_deterministic_and_follow_the_layout() {
        let (mut a, mut b) = ([0u8; RECORD], [0u8; RECORD]);
        record(7, 255, &mut a);
        record(7, 255, &mut b);
        assert_eq!(a, b);
        assert_eq!(&a[10..12], &[0x00, 0x11]);
        assert_eq!(&a[12..44], b"000000000000000000000000000000FF");
        assert_eq!(&a[44..48], &[0x88, 0x99, 0xAA, 0xBB]);
        assert_eq!(&a[96..], &[0xCC, 0xDD, 0xEE, 0xFF]);
        record(8, 255, &mut b);
        assert_ne!(a[..KEY], b[..KEY], "another seed, other keys");
    }

    #[test]
    fn sorting_orders_by_key_and_keeps_every_record() {
        let mut data = vec![0u8; 50 * RECORD];
        for (i, rec) in data.chunks_exact_mut(RECORD).enumerate() {
            record(3, i as u64, rec);
        }
        let (head, tail) = data.split_at(20 * RECORD);
        let sorted = sort_records([head, tail]);
        assert_eq!(sorted.len(), data.len());
        let keys: Vec<&[u8]> = sorted.chunks_exact(RECORD).map(|r| &r[..KEY]).collect();
        assert!(keys.windows(2).all(|k| k[0] <= k[1]));
        let (mut a, mut b) = (Digest::default(), Digest::default());
        data.chunks_exact(RECORD).for_each(|r| a.add(r));
        sorted.chunks_exact(RECORD).for_each(|r| b.add(r));
        assert_eq!(a, b);
    }

    #[test]
    fn sorting_handles_empty_and_many_pieces() {
        let mut data = vec![0u8; 40 * RECORD];
        for (i, rec) in data.chunks_exact_mut(RECORD).enumerate() {
            record(5, i as u64, rec);
        }
        let pieces: Vec<&[u8]> = vec![&[], &data[..RECORD], &[], &data[RECORD..25 * RECORD], &data[25 * RECORD..], &[]];
        let sorted = sort_records(pieces);
        let mut expected: Vec<&[u8]> = data.chunks_exact(RECORD).collect();
        expected.sort_by(|a, b| a[..KEY].cmp(&b[..KEY]));
        assert_eq!(sorted, expected.concat());
        assert!(sort_records(Vec::<&[u8]>::new()).is_empty());
    }

    #[test]
    fn the_digest_ignores_order() {
        let recs: Vec<[u8; RECORD]> = (0..10)
            .map(|i| {
                let mut r = [0u8; RECORD];
                record(1, i, &mut r);
                r
            })
            .collect();
        let (mut fwd, mut back) = (Digest::default(), Digest::default());
        recs.iter().for_each(|r| fwd.add(r));
        recs.iter().rev().for_each(|r| back.add(r));
        assert_eq!(fwd, back);
        assert_eq!(fwd.records, 10);
    }
}
