//! Data sets on object storage: fixed-size items (records, edges) in objects
//! `part-00000`, `part-00001`, ...; generated in parallel, each part committed
//! atomically; read back as any worker's share of the items.

use volley_sdk::Storage;

/// The object a job writes last, once every part of its output is complete.
pub const SUCCESS: &str = "_SUCCESS";

/// Items generated (and uploaded) at a time per part.
const CHUNK_ITEMS: u64 = 80_000;

/// What went wrong with a data set.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Storage(#[from] volley_sdk::StorageError),
    #[error("{0}")]
    Invalid(String),
}

/// A fast, well-mixed hash of `x`: every generator draws item `i` from it, so
/// any range of items can be made anywhere, in any order.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The name of part `i` of a data set.
pub fn part_name(i: usize) -> String {
    format!("part-{i:05}")
}

/// Writes `items` items of `size` bytes as `parts` objects; `fill(i, buf)`
/// writes item `i` (a pure function of `i`, so parts are made in parallel).
pub async fn generate<F>(storage: &Storage, items: u64, parts: usize, size: usize, fill: F) -> Result<u64, DataError>
where
    F: Fn(u64, &mut [u8]) + Send + Sync + Copy + 'static,
{
    if parts == 0 || size == 0 {
        return Err(DataError::Invalid("parts and item size must be at least 1".into()));
    }
    // New parts among old ones would make a data set of neither: refuse, and
    // let the caller clear the old one on purpose.
    let old = part_objects(storage).await?;
    if !old.is_empty() {
        return Err(DataError::Invalid(format!(
            "{} already holds {} part-* objects (a data set); choose an empty prefix, or replace them \
             (`volley data gen ... --overwrite` removes the old parts first)",
            storage.name(""),
            old.len()
        )));
    }
    let tasks = (0..parts).map(|p| {
        let storage = storage.clone();
        let (first, end) = (items * p as u64 / parts as u64, items * (p as u64 + 1) / parts as u64);
        tokio::spawn(async move { generate_part(&storage, &part_name(p), first, end, size, fill).await })
    });
    for t in futures::future::join_all(tasks).await {
        t.map_err(|e| DataError::Invalid(format!("a generator task failed: {e}")))??;
    }
    Ok(items)
}

/// Writes items `first..end` as object `key` (committed atomically).
pub async fn generate_part<F>(
    storage: &Storage,
    key: &str,
    first: u64,
    end: u64,
    size: usize,
    fill: F,
) -> Result<(), DataError>
where
    F: Fn(u64, &mut [u8]) + Send + Sync + Copy + 'static,
{
    let mut writer = storage.writer(key).await?;
    let mut at = first;
    while at < end {
        let stop = (at + CHUNK_ITEMS).min(end);
        // Generating is CPU work: off the async threads.
        let buf = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; ((stop - at) as usize) * size];
            for (i, item) in buf.chunks_exact_mut(size).enumerate() {
                fill(at + i as u64, item);
            }
            buf
        })
        .await
        .map_err(|e| DataError::Invalid(format!("a generator thread failed: {e}")))?;
        writer.write(&buf).await?;
        at = stop;
    }
    writer.finish().await?;
    Ok(())
}

/// Refuses an output location that is, contains or lies inside the input:
/// a job clears its output's old parts first, which would destroy the input.
/// Every job that writes output calls this before touching anything.
pub fn check_output_apart(input: &str, output: &str) -> Result<(), DataError> {
    use volley_sdk::Overlap;
    let how = match volley_sdk::overlap(output, input) {
        Overlap::Apart => return Ok(()),
        Overlap::Same => "is the input",
        Overlap::Inside => "lies inside the input",
        Overlap::Contains => "contains the input",
    };
    Err(DataError::Invalid(format!(
        "the output {output} {how} {input}: writing it would delete or mix with the input; choose an output apart from the input"
    )))
}

/// The `part-*` objects at the top of `storage`, in order, with sizes.
async fn part_objects(storage: &Storage) -> Result<Vec<(String, u64)>, DataError> {
    Ok(storage.list("").await?.into_iter().filter(|(k, _)| k.starts_with("part-") && !k.contains('/')).collect())
}

/// Removes a data set or a job's output: its `part-*` objects, its success
/// marker and what unfinished writes left; returns how many parts went.
pub async fn clear(storage: &Storage) -> Result<usize, DataError> {
    storage.delete(SUCCESS).await?;
    storage.remove_incomplete().await?;
    let old = part_objects(storage).await?;
    for (key, _) in &old {
        storage.delete(key).await?;
    }
    Ok(old.len())
}

/// The parts of a data set, in order, with sizes; each must hold whole items of `size` bytes.
pub async fn parts(storage: &Storage, size: usize, what: &str) -> Result<Vec<(String, u64)>, DataError> {
    let list = part_objects(storage).await?;
    if list.is_empty() {
        return Err(DataError::Invalid(format!(
            "{} holds no part-* objects; generate the input with `volley data gen`",
            storage.name("")
        )));
    }
    for (key, bytes) in &list {
        if bytes % size as u64 != 0 {
            return Err(DataError::Invalid(format!(
                "{} is not a {what}: its {bytes} bytes are not a whole number of {size}-byte items",
                storage.name(key)
            )));
        }
    }
    Ok(list)
}

/// Share `rank` of `n` of the items of `parts` (contiguous, possibly spanning
/// parts), and the total number of items.
pub async fn read_share(
    storage: &Storage,
    parts: &[(String, u64)],
    size: usize,
    rank: u64,
    n: u64,
) -> Result<(Vec<u8>, u64), DataError> {
    let total: u64 = parts.iter().map(|(_, bytes)| bytes / size as u64).sum();
    let items = read_items(storage, parts, size, total * rank / n, total * (rank + 1) / n).await?;
    Ok((items, total))
}

/// Items `first..end` of the data set (clamped to what exists).
pub async fn read_items(
    storage: &Storage,
    parts: &[(String, u64)],
    size: usize,
    first: u64,
    end: u64,
) -> Result<Vec<u8>, DataError> {
    let mut out = Vec::with_capacity((end.saturating_sub(first) as usize) * size);
    let mut at = 0u64;
    for (key, bytes) in parts {
        let items = bytes / size as u64;
        let (lo, hi) = (first.max(at), end.min(at + items));
        if lo < hi {
            out.extend_from_slice(&storage.get_range(key, (lo - at) * size as u64..(hi - at) * size as u64).await?);
        }
        at += items;
    }
    Ok(out)
}
