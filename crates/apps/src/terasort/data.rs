//! `volley data gen terasort` and `volley data validate terasort`.

use volley_sdk::Storage;

use crate::dataset::{self};
pub use crate::dataset::{DataError, SUCCESS, part_name};

use super::records::{Digest, KEY, RECORD, record};
use crate::dataset::splitmix64;

/// Bytes read at a time while validating.
const READ_CHUNK: u64 = (8 << 20) / RECORD as u64 * RECORD as u64;

/// Writes `records` rows of data set `seed` as `parts` objects `part-00000`...
/// (each committed atomically).
pub async fn generate(storage: &Storage, records: u64, parts: usize, seed: u64) -> Result<u64, DataError> {
    generate_skewed(storage, records, parts, seed, 0.0).await
}

/// The same, with a fraction `duplicates` (0 to 1) of the records sharing one
/// key: skewed data, as real keys often are.
pub async fn generate_skewed(
    storage: &Storage,
    records: u64,
    parts: usize,
    seed: u64,
    duplicates: f64,
) -> Result<u64, DataError> {
    if !(0.0..=1.0).contains(&duplicates) {
        return Err(DataError::Invalid(format!(
            "the fraction of duplicate keys must be within 0 to 1, got {duplicates}"
        )));
    }
    let threshold = (duplicates * u64::MAX as f64) as u64;
    let shared = splitmix64(seed ^ 0x5EED_D0D0).to_be_bytes();
    dataset::generate(storage, records, parts, RECORD, move |row, buf| {
        record(seed, row, buf);
        if duplicates > 0.0 && splitmix64(seed ^ row ^ 0xD0D0_5EED_0000_0000) <= threshold {
            buf[..8].copy_from_slice(&shared);
            buf[8..KEY].fill(0);
        }
    })
    .await
}

/// The parts of a record data set, in order, with sizes.
pub async fn parts(storage: &Storage) -> Result<Vec<(String, u64)>, DataError> {
    dataset::parts(storage, RECORD, "record file").await
}

/// What validation found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Validation {
    pub input: Digest,
    pub output: Digest,
    pub output_parts: usize,
}

/// Checks that `output` holds exactly `input`'s records, in global key order.
pub async fn validate(input: &Storage, output: &Storage) -> Result<Validation, DataError> {
    if matches!(output.size(SUCCESS).await, Err(volley_sdk::StorageError::NotFound { .. })) {
        return Err(DataError::Invalid(format!(
            "{} has no {SUCCESS} marker: the job that wrote it did not finish, so its parts are not a complete output",
            output.name("")
        )));
    }
    let mut in_digest = Digest::default();
    for (key, size) in parts(input).await? {
        scan(input, &key, size, |rec| in_digest.add(rec)).await?;
    }
    let out_parts = parts(output).await?;
    let mut out_digest = Digest::default();
    let mut last: Option<[u8; KEY]> = None;
    let mut disorder: Option<String> = None;
    for (key, size) in &out_parts {
        let mut index = 0u64;
        scan(output, key, *size, |rec| {
            let k: [u8; KEY] = rec[..KEY].try_into().unwrap_or_default();
            if disorder.is_none() && last.is_some_and(|prev| k < prev) {
                disorder = Some(format!("record {index} of {} sorts before the record preceding it", output.name(key)));
            }
            last = Some(k);
            out_digest.add(rec);
            index += 1;
        })
        .await?;
    }
    if let Some(d) = disorder {
        return Err(DataError::Invalid(format!("the output is not sorted: {d}")));
    }
    if in_digest.records != out_digest.records {
        return Err(DataError::Invalid(format!(
            "the output has {} records, the input {}",
            out_digest.records, in_digest.records
        )));
    }
    if in_digest.checksum != out_digest.checksum {
        return Err(DataError::Invalid("the output's records differ from the input's (checksums differ)".into()));
    }
    Ok(Validation { input: in_digest, output: out_digest, output_parts: out_parts.len() })
}

async fn scan(storage: &Storage, key: &str, size: u64, mut each: impl FnMut(&[u8])) -> Result<(), DataError> {
    let mut at = 0;
    while at < size {
        let end = (at + READ_CHUNK).min(size);
        let bytes = storage.get_range(key, at..end).await?;
        bytes.chunks_exact(RECORD).for_each(&mut each);
        at = end;
    }
    Ok(())
}
