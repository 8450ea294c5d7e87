//! The k-means burst: every worker assigns its share of the points to the
//! nearest centroid; one `all_reduce` of the per-cluster sums and counts per
//! iteration gives every worker the new centroids.

use bytes::Bytes;
use serde::Deserialize;
use volley_sdk::serde_json::json;
use volley_sdk::{Op, Worker, WorkerResult};

use super::points::{decode, partial, update};
use crate::dataset::{SUCCESS, check_output_apart, parts, read_items, read_share};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    input: String,
    output: String,
    dims: usize,
    k: usize,
    #[serde(default = "tolerance")]
    tolerance: f64,
    #[serde(default = "max_iterations")]
    max_iterations: usize,
}

fn tolerance() -> f64 {
    1e-9
}
fn max_iterations() -> usize {
    100
}

pub fn kmeans(w: &Worker) -> WorkerResult {
    let p: Params = w.params_as()?;
    if p.dims == 0 || p.k == 0 {
        return Err("dims and k must be at least 1".into());
    }
    check_output_apart(&p.input, &p.output)?;
    let size = p.dims * 8;
    let (input, output) = (w.storage(&p.input)?, w.storage(&p.output)?);
    if w.rank() == 0 {
        w.block_on(output.delete(SUCCESS))?;
    }
    let list = w.block_on(parts(&input, size, "point file"))?;
    let (mine, total) = w.block_on(read_share(&input, &list, size, w.rank() as u64, w.size() as u64))?;
    if total < p.k as u64 {
        return Err(format!("{total} points cannot make {} clusters", p.k).into());
    }
    // The first k points of the data set start as centroids, on every worker alike.
    let first = w.block_on(read_items(&input, &list, size, 0, p.k as u64))?;
    let mut centroids = decode(&first);
    let points = decode(&mine);
    let (mut iterations, mut moved) = (0, f64::INFINITY);
    while iterations < p.max_iterations && moved >= p.tolerance {
        let acc = w.comm().all_reduce(&partial(&points, &centroids, p.dims, p.k), Op::Sum)?;
        (centroids, moved) = update(&acc, &centroids, p.dims, p.k);
        iterations += 1;
    }
    w.comm().barrier()?;
    if w.rank() == 0 {
        let doc = json!({ "centroids": centroids, "iterations": iterations });
        w.block_on(output.put("centroids.json", Bytes::from(doc.to_string())))?;
        w.block_on(output.put(SUCCESS, Bytes::from_static(b"{}")))?;
    }
    Ok(json!({ "rank": w.rank(), "points": points.len() / p.dims, "iterations": iterations, "moved": moved }))
}
