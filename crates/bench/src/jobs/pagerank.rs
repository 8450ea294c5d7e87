//! PageRank as a burst and as classic FaaS on one graph: bytes between
//! processes and time per iteration.

use serde::Serialize;
use serde_json::json;
use volley_client::Client;

use super::{Mode, Results, job_request, run_job};
use crate::Result;

/// One mode's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub mode: String,
    pub workers: usize,
    pub g: usize,
    pub packs: usize,
    pub transport: Option<String>,
    pub ms_per_iteration: f64,
    pub steady_ms_per_iteration: f64,
    pub first_iteration_ms: f64,
    pub remote_bytes: u64,
    pub local_bytes: u64,
}

/// Burst mode against FaaS mode.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub vertices: u32,
    pub edges: u64,
    pub iterations: usize,
    pub rows: Vec<Row>,
    /// The share of FaaS mode's bytes between processes that burst mode does not send.
    pub remote_bytes_saved: f64,
    /// FaaS over burst time per steady iteration.
    pub speedup: f64,
    pub speedup_with_first_iteration: f64,
}

impl Report {
    /// `rows` holds burst mode, then FaaS mode.
    pub fn new(vertices: u32, edges: u64, iterations: usize, rows: Vec<Row>) -> Report {
        let (burst, faas) = (&rows[0], &rows[rows.len() - 1]);
        Report {
            vertices,
            edges,
            iterations,
            remote_bytes_saved: 1.0 - burst.remote_bytes as f64 / (faas.remote_bytes as f64).max(1.0),
            speedup: faas.steady_ms_per_iteration / burst.steady_ms_per_iteration.max(1e-9),
            speedup_with_first_iteration: faas.ms_per_iteration / burst.ms_per_iteration.max(1e-9),
            rows,
        }
    }
}

/// Runs `iterations` iterations of PageRank over the graph at `graph`, writing to `output`.
pub async fn on_platform(
    client: &Client,
    workers: usize,
    mode: &Mode,
    (graph, vertices, iterations): (&str, u32, usize),
    output: &str,
) -> Result<Row> {
    // Tolerance 0: every iteration runs, so the modes do the same work.
    let params = json!({"input": graph, "output": output, "vertices": vertices,
                        "tolerance": 0.0, "max_iterations": iterations});
    let b = run_job(client, &job_request("pagerank", workers, mode, params)).await?;
    let r = Results::of(&b);
    Ok(Row {
        mode: mode.name.into(),
        workers,
        g: mode.granularity,
        packs: b.packs.len(),
        transport: b.transport.clone(),
        ms_per_iteration: r.slowest("/ms_per_iteration"),
        steady_ms_per_iteration: r.slowest("/steady_ms_per_iteration"),
        first_iteration_ms: r.slowest("/first_iteration_ms"),
        remote_bytes: r.sum("remote_bytes"),
        local_bytes: r.sum("local_bytes"),
    })
}
