//! TeraSort's other stages as bursts, so that a workflow can run the whole
//! job (generate, sort, validate) on the platform: `teragen` writes a data
//! set with one part per worker, `teravalidate` checks a sorted output.

use serde::Deserialize;
use volley_sdk::serde_json::json;
use volley_sdk::{Worker, WorkerResult};

use super::data::{SUCCESS, generate_rows, part_name, validate};
use crate::dataset::clear;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenParams {
    /// Where the parts go (`file:///dir` or `s3://bucket/prefix`); old parts there are replaced.
    output: String,
    /// Records (100 bytes each) in all.
    records: u64,
    #[serde(default)]
    seed: u64,
}

/// Each worker writes part RANK, its share of the records; rank 0 replaces
/// what the prefix held before and marks the data set complete at the end.
/// The same records as `volley data gen terasort` with the same seed.
pub fn teragen(w: &Worker) -> WorkerResult {
    let p: GenParams = w.params_as()?;
    let (rank, n) = (w.rank() as u64, w.size() as u64);
    let output = w.storage(&p.output)?;
    if rank == 0 {
        w.block_on(clear(&output))?;
    }
    w.comm().barrier()?;
    let (first, end) = (p.records * rank / n, p.records * (rank + 1) / n);
    let part = part_name(rank as usize);
    w.block_on(generate_rows(&output, &part, first, end, p.seed))?;
    w.comm().barrier()?;
    if rank == 0 {
        w.block_on(output.put(SUCCESS, bytes::Bytes::new()))?;
    }
    Ok(json!({ "part": output.name(&part), "records": end - first }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidateParams {
    input: String,
    output: String,
}

/// Checks that `output` holds exactly `input`'s records in global order (one worker).
pub fn teravalidate(w: &Worker) -> WorkerResult {
    let p: ValidateParams = w.params_as()?;
    if w.rank() != 0 {
        return Ok(json!(null));
    }
    let (input, output) = (w.storage(&p.input)?, w.storage(&p.output)?);
    let v = w.block_on(validate(&input, &output))?;
    Ok(json!({ "valid": true, "records": v.output.records, "checksum": format!("{:016x}", v.output.checksum),
               "output_parts": v.output_parts }))
}
