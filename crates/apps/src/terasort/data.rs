//! `volley data gen terasort` and `volley data validate terasort`.

use volley_sdk::Storage;

use super::records::{Digest, KEY, RECORD, record};

/// Bytes generated (and uploaded) at a time per part.
const CHUNK_RECORDS: u64 = 80_000;
/// Bytes read at a time while validating.
const READ_CHUNK: u64 = (8 << 20) / RECORD as u64 * RECORD as u64;

/// What went wrong with a data set.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Storage(#[from] volley_sdk::StorageError),
    #[error("{0}")]
    Invalid(String),
}

/// The object a job writes last, once every part of its output is complete.
pub const SUCCESS: &str = "_SUCCESS";

/// The name of part `i` of a data set.
pub fn part_name(i: usize) -> String {
    format!("part-{i:05}")
}

/// Writes `records` rows of data set `seed` as `parts` objects `part-00000`...
/// (each committed atomically); returns their digest.
pub async fn generate(storage: &Storage, records: u64, parts: usize, seed: u64) -> Result<Digest, DataError> {
    if parts == 0 {
        return Err(DataError::Invalid("parts must be at least 1".into()));
    }
    let tasks = (0..parts).map(|p| {
        let storage = storage.clone();
        let (first, end) = (records * p as u64 / parts as u64, records * (p as u64 + 1) / parts as u64);
        tokio::spawn(async move { generate_part(&storage, &part_name(p), seed, first, end).await })
    });
    let mut digest = Digest::default();
    for t in futures::future::join_all(tasks).await {
        let d = t.map_err(|e| DataError::Invalid(format!("a generator task failed: {e}")))??;
        digest.merge(d);
    }
    Ok(digest)
}

async fn generate_part(storage: &Storage, key: &str, seed: u64, first: u64, end: u64) -> Result<Digest, DataError> {
    let mut writer = storage.writer(key).await?;
    let mut digest = Digest::default();
    let mut row = first;
    while row < end {
        let stop = (row + CHUNK_RECORDS).min(end);
        // Generating is CPU work: off the async threads.
        let (buf, d) = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; ((stop - row) as usize) * RECORD];
            let mut d = Digest::default();
            for (i, rec) in buf.chunks_exact_mut(RECORD).enumerate() {
                record(seed, row + i as u64, rec);
                d.add(rec);
            }
            (buf, d)
        })
        .await
        .map_err(|e| DataError::Invalid(format!("a generator thread failed: {e}")))?;
        writer.write(&buf).await?;
        digest.merge(d);
        row = stop;
    }
    writer.finish().await?;
    Ok(digest)
}

/// The parts of a data set (objects named `part-*`), in order, with sizes.
pub async fn parts(storage: &Storage) -> Result<Vec<(String, u64)>, DataError> {
    let list: Vec<(String, u64)> =
        storage.list("").await?.into_iter().filter(|(k, _)| k.starts_with("part-")).collect();
    if list.is_empty() {
        return Err(DataError::Invalid(format!(
            "{} holds no part-* objects; generate the input with `volley data gen terasort`",
            storage.name("")
        )));
    }
    for (key, size) in &list {
        if size % RECORD as u64 != 0 {
            return Err(DataError::Invalid(format!(
                "{} is not a record file: its {size} bytes are not a whole number of {RECORD}-byte records",
                storage.name(key)
            )));
        }
    }
    Ok(list)
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
