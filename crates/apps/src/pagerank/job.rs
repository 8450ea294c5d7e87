//! The PageRank burst. Edges are spread evenly over the workers. Each
//! iteration, every worker adds up its edges' contributions (a sparse list:
//! only the vertices its edges reach), one `reduce` sums them at rank 0
//! (inside each pack first, so packs, not workers, exchange vectors), rank 0
//! computes the next ranks, and one `broadcast` hands them to every worker
//! (shared, not copied, inside a pack). Per iteration a worker does work in
//! proportion to its edges, not to the whole graph. Iterations stop at the
//! tolerance or the iteration limit; rank 0 writes the ranks.

use std::time::Instant;

use bytes::Bytes;
use serde::Deserialize;
use volley_sdk::serde_json::json;
use volley_sdk::{Op, Worker, WorkerResult};

use super::contributions::{Contributions, Ranks, add_into, dense};
use super::graph::{EDGE, Settings, edges, next_ranks};
use crate::dataset::{SUCCESS, check_output_apart, parts, read_share};

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
    check_output_apart(&p.input, &p.output)?;
    let (rank, n, v) = (w.rank() as u64, w.size() as u64, p.vertices);
    let input = w.storage(&p.input)?;
    let output = w.storage(&p.output)?;
    if rank == 0 {
        w.block_on(output.delete(SUCCESS))?;
    }
    w.phase("read");
    let list = w.block_on(parts(&input, EDGE, "edge file"))?;
    let (mine, _) = w.block_on(read_share(&input, &list, EDGE, rank, n))?;
    let my_edges: Vec<(u32, u32)> = edges(&mine).collect();
    if let Some((s, d)) = my_edges.iter().find(|(s, d)| *s as usize >= v || *d as usize >= v) {
        return Err(format!("edge {s} -> {d} names a vertex beyond the {v} vertices; check `vertices`").into());
    }

    w.phase("index");
    let mut out_degree = vec![0u64; v];
    for &(src, _) in &my_edges {
        out_degree[src as usize] += 1;
    }
    let out_degree = w.comm().all_reduce(&out_degree, Op::Sum)?;
    let mut contributions = Contributions::new(&my_edges, &out_degree);
    // Iterations are timed from the moment every worker has its index built.
    w.comm().barrier()?;

    w.phase("iterate");
    let started = Instant::now();
    // Every worker reads the ranks from the broadcast buffer itself: inside a
    // pack that buffer is shared, never copied.
    let mut ranks = Ranks(Ranks::encode(f64::INFINITY, &vec![1.0 / v as f64; v]));
    let (mut iterations, mut delta) = (0, f64::INFINITY);
    // The first iteration also pays for warming up (allocator arenas, buffers,
    // links); it is reported apart so that steady iterations can be compared.
    let mut first_ms = 0.0;
    while iterations < p.max_iterations && delta >= p.tolerance {
        let mine = contributions.encode(&ranks);
        let summed = w.comm().reduce_in_place(0, mine, |acc, b| add_into(acc, b, v))?;
        let next = match summed {
            Some(sums) => {
                let sums = dense(&sums, v);
                let old = ranks.to_vec(v);
                let next = next_ranks(&old, &sums, &out_degree, p.damping);
                let delta: f64 = next.iter().zip(&old).map(|(a, b)| (a - b).abs()).sum();
                Ranks::encode(delta, &next)
            }
            None => Bytes::new(),
        };
        ranks = Ranks(w.comm().broadcast(0, next)?);
        delta = ranks.delta();
        iterations += 1;
        if iterations == 1 {
            first_ms = started.elapsed().as_secs_f64() * 1e3;
        }
    }
    let ranks = ranks.to_vec(v);
    let iterate_ms = started.elapsed().as_secs_f64() * 1e3;

    w.phase("write");
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
        "first_iteration_ms": first_ms,
        "steady_ms_per_iteration": if iterations > 1 { (iterate_ms - first_ms) / (iterations - 1) as f64 } else { iterate_ms },
        "remote_bytes": stats.remote_bytes,
        "local_bytes": stats.local_bytes,
    }))
}
