//! The PageRank burst. Edges are spread evenly over the workers; every worker
//! keeps the rank vector, adds up its edges' contributions, and one
//! `all_reduce` per iteration (combined inside each pack first, so packs, not
//! workers, exchange vectors) gives every worker the sums. Iterations stop at
//! the tolerance or the iteration limit; rank 0 writes the ranks.

use std::time::Instant;

use bytes::Bytes;
use serde::Deserialize;
use volley_sdk::serde_json::json;
use volley_sdk::{Op, Worker, WorkerResult};

use super::graph::{EDGE, Settings, edges, next_ranks};
use crate::dataset::{SUCCESS, parts, read_share};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Where the edge parts are.
    input: String,
    /// Where `ranks` (little-endian f64 per vertex) and `_SUCCESS` go.
    output: String,
    vertices: usize,
    #[serde(default = "damping")]
    damping: f64,
    #[serde(default = "tolerance")]
    tolerance: f64,
    #[serde(default = "max_iterations")]
    max_iterations: usize,
}

fn damping() -> f64 {
    Settings::default().damping
}
fn tolerance() -> f64 {
    Settings::default().tolerance
}
fn max_iterations() -> usize {
    Settings::default().max_iterations
}

pub fn pagerank(w: &Worker) -> WorkerResult {
    let p: Params = w.params_as()?;
    if p.vertices == 0 || !(0.0..1.0).contains(&p.damping) {
        return Err("vertices must be at least 1 and damping in [0, 1)".into());
    }
    let (rank, n, v) = (w.rank() as u64, w.size() as u64, p.vertices);
    let input = w.storage(&p.input)?;
    let output = w.storage(&p.output)?;
    if rank == 0 {
        w.block_on(output.delete(SUCCESS))?;
    }
    let list = w.block_on(parts(&input, EDGE, "edge file"))?;
    let (mine, _) = w.block_on(read_share(&input, &list, EDGE, rank, n))?;
    let my_edges: Vec<(u32, u32)> = edges(&mine).collect();
    if let Some((s, d)) = my_edges.iter().find(|(s, d)| *s as usize >= v || *d as usize >= v) {
        return Err(format!("edge {s} -> {d} names a vertex beyond the {v} vertices; check `vertices`").into());
    }

    let mut out_degree = vec![0u64; v];
    for &(src, _) in &my_edges {
        out_degree[src as usize] += 1;
    }
    let out_degree = w.comm().all_reduce(&out_degree, Op::Sum)?;

    let started = Instant::now();
    let mut ranks = vec![1.0 / v as f64; v];
    let (mut iterations, mut delta) = (0, f64::INFINITY);
    while iterations < p.max_iterations && delta >= p.tolerance {
        let mut contributions = vec![0.0; v];
        for &(src, dst) in &my_edges {
            contributions[dst as usize] += ranks[src as usize] / out_degree[src as usize] as f64;
        }
        let contributions = w.comm().all_reduce(&contributions, Op::Sum)?;
        let next = next_ranks(&ranks, &contributions, &out_degree, p.damping);
        delta = next.iter().zip(&ranks).map(|(a, b)| (a - b).abs()).sum();
        ranks = next;
        iterations += 1;
    }
    let iterate_ms = started.elapsed().as_secs_f64() * 1e3;

    w.comm().barrier()?;
    if rank == 0 {
        let bytes: Vec<u8> = ranks.iter().flat_map(|r| r.to_le_bytes()).collect();
        w.block_on(output.put("ranks", Bytes::from(bytes)))?;
        w.block_on(output.put(SUCCESS, Bytes::from(json!({"iterations": iterations}).to_string())))?;
    }
    let stats = w.comm().stats();
    Ok(json!({
        "rank": rank,
        "edges": my_edges.len(),
        "iterations": iterations,
        "delta": delta,
        "iterate_ms": iterate_ms,
        "ms_per_iteration": iterate_ms / iterations.max(1) as f64,
        "remote_bytes": stats.remote_bytes,
        "local_bytes": stats.local_bytes,
    }))
}
