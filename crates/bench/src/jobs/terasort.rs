//! TeraSort three ways on one generated input: one process sorting in memory
//! (the baseline), burst mode and FaaS mode; every output validated.

use std::time::Instant;

use serde::Serialize;
use serde_json::json;
use volley_apps::terasort::{data, records};
use volley_client::Client;
use volley_storage::{Storage, StorageOptions};

use super::{Mode, Results, job_request, ms, run_job};
use crate::Result;

/// Phase times of one run, ms (the slowest worker's, as they all wait for it).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Phases {
    pub read: f64,
    pub sample: f64,
    pub partition: f64,
    pub shuffle: f64,
    pub sort: f64,
    pub write: f64,
}

/// One way of sorting.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub mode: String,
    pub workers: usize,
    pub g: usize,
    pub transport: String,
    pub ms: Phases,
    pub total_ms: f64,
    pub remote_bytes: u64,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub bytes: usize,
    pub rows: Vec<Row>,
    pub faas_over_burst: Option<f64>,
    pub burst_over_one_process: Option<f64>,
}

impl Report {
    pub fn new(bytes: usize, rows: Vec<Row>) -> Report {
        let total = |mode: &str| rows.iter().find(|r| r.mode == mode).map(|r| r.total_ms);
        let (single, burst, faas) = (total("1 process"), total("burst"), total("faas"));
        Report {
            bytes,
            faas_over_burst: faas.zip(burst).map(|(f, b)| f / b),
            burst_over_one_process: burst.zip(single).map(|(b, s)| b / s),
            rows,
        }
    }
}

/// Generates `bytes` of records (8 parts) at `input`; returns how many.
pub async fn generate(input: &Storage, bytes: usize) -> Result<u64> {
    Ok(data::generate(input, (bytes / records::RECORD) as u64, 8, 1).await?)
}

/// One process: read every record, sort in memory, write one output.
pub async fn one_process(input: &Storage, out_url: &str, opts: &StorageOptions) -> Result<Row> {
    let t = Instant::now();
    let mut pieces = Vec::new();
    for (key, _) in data::parts(input).await? {
        pieces.push(input.get(&key).await?);
    }
    let read = t.elapsed();
    let t = Instant::now();
    let sorted = tokio::task::spawn_blocking(move || records::sort_records(pieces.iter().map(|p| &p[..])))
        .await
        .map_err(|e| crate::Error::Invalid(format!("the in-memory sort failed: {e}")))?;
    let sort = t.elapsed();
    let t = Instant::now();
    Storage::open(out_url, opts)?.put(&data::part_name(0), bytes::Bytes::from(sorted)).await?;
    let write = t.elapsed();
    Ok(Row {
        mode: "1 process".into(),
        workers: 1,
        g: 1,
        transport: "-".into(),
        ms: Phases { read: ms(read), sort: ms(sort), write: ms(write), ..Phases::default() },
        total_ms: ms(read + sort + write),
        remote_bytes: 0,
    })
}

/// The sort as one burst in `mode`, its output validated against the input.
pub async fn on_platform(
    client: &Client,
    workers: usize,
    mode: &Mode,
    input: (&str, &Storage),
    output: (&str, &Storage),
) -> Result<Row> {
    let params = json!({"input": input.0, "output": output.0});
    let b = run_job(client, &job_request("terasort", workers, mode, params)).await?;
    data::validate(input.1, output.1).await?;
    let r = Results::of(&b);
    let phase = |p: &str| r.slowest(&format!("/ms/{p}"));
    Ok(Row {
        mode: mode.name.into(),
        workers,
        g: mode.granularity,
        transport: b.transport.clone().unwrap_or_default(),
        ms: Phases {
            read: phase("read"),
            sample: phase("sample"),
            partition: phase("partition"),
            shuffle: phase("shuffle"),
            sort: phase("sort"),
            write: phase("write"),
        },
        total_ms: b.finished_at.unwrap_or(0).saturating_sub(b.running_at.unwrap_or(0)) as f64 / 1e3,
        remote_bytes: r.sum("remote_bytes"),
    })
}
