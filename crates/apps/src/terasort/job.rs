//! The TeraSort burst: read a share of the records, sample keys to choose
//! splitters, partition, shuffle with one `all_to_all`, sort, write one sorted
//! part per worker (committed atomically).

use std::time::Instant;

use bytes::Bytes;
use serde::Deserialize;
use volley_sdk::serde_json::json;
use volley_sdk::{Worker, WorkerResult};

use super::data::{SUCCESS, part_name, parts};
use super::records::{RECORD, sort_records};
use super::splitters::{POSITION, Position, bucket, choose, position};
use crate::dataset::{check_output_apart, clear, read_share};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Where the input parts are (`file:///dir` or `s3://bucket/prefix`).
    input: String,
    /// Where the sorted parts go.
    output: String,
    /// Keys each worker samples to choose the splitters.
    #[serde(default = "default_samples")]
    samples: usize,
    /// Fault injection for retry drills: this rank fails right after writing
    /// its part (the worst moment: the output is partly written), in attempts
    /// up to `attempts`.
    #[serde(default)]
    inject_failure: Option<InjectFailure>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InjectFailure {
    rank: u64,
    #[serde(default = "one")]
    attempts: u32,
}

fn one() -> u32 {
    1
}

fn default_samples() -> usize {
    1000
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

pub fn terasort(w: &Worker) -> WorkerResult {
    let p: Params = w.params_as()?;
    check_output_apart(&p.input, &p.output)?;
    let (rank, n) = (w.rank() as u64, w.size() as u64);
    let input = w.storage(&p.input)?;
    let output = w.storage(&p.output)?;
    // An output without its success marker is incomplete: drop an old marker
    // before any part of this run is written, then the old parts, so that an
    // earlier run or failed attempt (perhaps with more workers) leaves no
    // duplicate records behind. Parts are named by rank, so a retried attempt
    // overwrites, never adds. Files of writes cut short by a killed attempt go too.
    if rank == 0 {
        w.block_on(clear(&output))?;
    }
    w.comm().barrier()?;

    // Read: this worker's share of the records, which may span several parts.
    w.phase("read");
    let t = Instant::now();
    let list = w.block_on(parts(&input))?;
    let (mine, total) = w.block_on(read_share(&input, &list, RECORD, rank, n))?;
    let read_ms = ms(t);

    // Sample: evenly spaced records from every worker, as (key, rank, index)
    // positions; everyone picks the same splitters (ties split by source, so
    // that many equal keys still spread over several workers).
    w.phase("sample");
    let t = Instant::now();
    let count = mine.len() / RECORD;
    let take = p.samples.min(count);
    let mut sample = Vec::with_capacity(take * POSITION);
    for i in 0..take {
        let r = i * count / take.max(1);
        sample.extend_from_slice(&position(&mine[r * RECORD..], rank as u32, r as u64));
    }
    let gathered = w.comm().all_gather(Bytes::from(sample))?;
    let positions: Vec<Position> = gathered
        .iter()
        .flat_map(|part| part.chunks_exact(POSITION))
        .map(|c| c.try_into().expect("chunks of POSITION bytes"))
        .collect();
    let splitters = choose(positions, n as usize);
    let sample_ms = ms(t);

    // Partition: the bucket of every record first, so that each bucket is
    // allocated once at its exact size.
    w.phase("partition");
    let t = Instant::now();
    let bucket_of: Vec<u32> = mine
        .chunks_exact(RECORD)
        .enumerate()
        .map(|(i, rec)| bucket(&splitters, &position(rec, rank as u32, i as u64)) as u32)
        .collect();
    let mut sizes = vec![0usize; n as usize];
    bucket_of.iter().for_each(|&b| sizes[b as usize] += RECORD);
    let mut buckets: Vec<Vec<u8>> = sizes.iter().map(|&size| Vec::with_capacity(size)).collect();
    for (rec, &b) in mine.chunks_exact(RECORD).zip(&bucket_of) {
        buckets[b as usize].extend_from_slice(rec);
    }
    drop(mine);
    let partition_ms = ms(t);

    // Shuffle: one aggregated transfer per pack pair; in-pack parts are handed over.
    w.phase("shuffle");
    let t = Instant::now();
    let received = w.comm().all_to_all(buckets.into_iter().map(Bytes::from).collect())?;
    let shuffle_ms = ms(t);

    // Sort what arrived.
    w.phase("sort");
    let t = Instant::now();
    let sorted = sort_records(received.iter().map(|b| &b[..]));
    drop(received);
    let records_out = sorted.len() / RECORD;
    let sort_ms = ms(t);

    // Write: the part appears whole or not at all.
    w.phase("write");
    let t = Instant::now();
    let name = part_name(rank as usize);
    // One put: the sorted part is in memory already, and a put is as atomic as
    // a multipart upload (and much faster on local files).
    w.block_on(output.put(&name, Bytes::from(sorted)))?;
    if let Some(f) = &p.inject_failure
        && f.rank == rank
        && w.attempt() <= f.attempts
    {
        return Err(format!(
            "rank {rank} failed on purpose after writing {name} (inject_failure, attempt {})",
            w.attempt()
        )
        .into());
    }
    // Every part is written: only now does the output say it is complete.
    w.comm().barrier()?;
    if rank == 0 {
        let marker = json!({ "burst": w.burst_id(), "parts": n, "records": total }).to_string();
        w.block_on(output.put(SUCCESS, Bytes::from(marker)))?;
    }
    let write_ms = ms(t);

    let stats = w.comm().stats();
    Ok(json!({
        "rank": rank,
        "records_in": count,
        "records_out": records_out,
        "ms": { "read": read_ms, "sample": sample_ms, "partition": partition_ms, "shuffle": shuffle_ms, "sort": sort_ms, "write": write_ms },
        "remote_bytes": stats.remote_bytes,
        "local_bytes": stats.local_bytes,
        "pulled_bytes": input.pulled_bytes(),
    }))
}
