//! k-means over points on object storage, as a burst.

mod job;
pub mod points;

pub use job::kmeans;

use volley_sdk::Storage;

use crate::dataset::{self, DataError};

/// Writes `count` points of `dims` coordinates around `clusters` centres.
pub async fn generate(
    storage: &Storage,
    count: u64,
    dims: usize,
    clusters: u64,
    parts: usize,
    seed: u64,
) -> Result<u64, DataError> {
    if dims == 0 || clusters == 0 {
        return Err(DataError::Invalid("dims and clusters must be at least 1".into()));
    }
    dataset::generate(storage, count, parts, dims * 8, move |i, buf| {
        for (d, c) in buf.chunks_exact_mut(8).enumerate() {
            c.copy_from_slice(&points::coordinate(seed, clusters, i, d as u64).to_le_bytes());
        }
    })
    .await
}
