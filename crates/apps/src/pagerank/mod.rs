//! PageRank over a power-law edge list, as a burst.

mod contributions;
pub mod graph;
mod job;

pub use job::pagerank;

use volley_sdk::Storage;

use crate::dataset::{self, DataError};
use graph::{EDGE, edge};

/// Writes a graph of `edges` edges over `vertices` vertices as `parts` objects.
pub async fn generate(storage: &Storage, vertices: u32, edges: u64, parts: usize, seed: u64) -> Result<u64, DataError> {
    if vertices == 0 {
        return Err(DataError::Invalid("a graph needs at least one vertex".into()));
    }
    dataset::generate(storage, edges, parts, EDGE, move |e, buf| {
        let (src, dst) = edge(seed, vertices, e);
        buf[..4].copy_from_slice(&src.to_le_bytes());
        buf[4..].copy_from_slice(&dst.to_le_bytes());
    })
    .await
}
