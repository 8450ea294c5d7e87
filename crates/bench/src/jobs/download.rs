//! Every worker needs one object: cooperative (one byte range per worker,
//! pieces shared in the pack) against each worker downloading all of it.

use serde::Serialize;
use serde_json::json;
use volley_client::Client;

use super::{Mode, Results, job_request, run_job};
use crate::{Error, Result};

/// One way of reading.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub mode: String,
    pub pulled_bytes: u64,
    pub ms: f64,
}

/// Both ways.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub bytes: usize,
    pub workers: usize,
    pub granularity: usize,
    pub rows: Vec<Row>,
}

/// The object every worker reads: `size` bytes of a known pattern.
pub fn object(size: usize) -> bytes::Bytes {
    (0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into()
}

/// Every worker reads `key` under `storage`, cooperatively or not; all must get the same bytes.
pub async fn on_platform(
    client: &Client,
    workers: usize,
    granularity: usize,
    (storage, key): (&str, &str),
    cooperative: bool,
) -> Result<Row> {
    let params = json!({"storage": storage, "key": key, "cooperative": cooperative});
    let b = run_job(client, &job_request("download", workers, &Mode::burst(granularity), params)).await?;
    let results = Results::of(&b);
    let sums: std::collections::BTreeSet<u64> = results.iter().filter_map(|r| r["checksum"].as_u64()).collect();
    if sums.len() != 1 || results.len() != workers {
        return Err(Error::Invalid("the workers did not all get the same bytes".into()));
    }
    Ok(Row {
        mode: if cooperative { "cooperative" } else { "per-worker" }.into(),
        pulled_bytes: results.sum("pulled_bytes"),
        ms: results.slowest("/ms"),
    })
}
