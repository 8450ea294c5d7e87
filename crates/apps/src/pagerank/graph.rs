//! Power-law graphs as edge lists, and the sequential PageRank the burst is checked against.
//!
//! An edge is 8 bytes: source and destination vertex as little-endian u32.
//! Destinations are drawn as `V · u³` for a uniform `u`, so low-numbered
//! vertices collect most edges (in-degrees follow a power law); sources are
//! uniform. Edge `e` depends on (seed, e) alone.

use crate::dataset::splitmix64;

/// Bytes per edge.
pub const EDGE: usize = 8;

/// Edge `e` of the graph with `vertices` vertices and `seed`.
pub fn edge(seed: u64, vertices: u32, e: u64) -> (u32, u32) {
    let a = splitmix64(seed ^ e.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    let b = splitmix64(a);
    let src = (((a >> 32) * vertices as u64) >> 32) as u32;
    let u = (b >> 11) as f64 / (1u64 << 53) as f64;
    let dst = ((vertices as f64 * u * u * u) as u32).min(vertices - 1);
    (src, dst)
}

/// Decodes edge records.
pub fn edges(bytes: &[u8]) -> impl Iterator<Item = (u32, u32)> + '_ {
    bytes.chunks_exact(EDGE).map(|e| {
        let src = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
        let dst = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        (src, dst)
    })
}

/// PageRank settings.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    pub damping: f64,
    /// Stop when the L1 change of the ranks falls below this.
    pub tolerance: f64,
    pub max_iterations: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { damping: 0.85, tolerance: 1e-12, max_iterations: 100 }
    }
}

/// One iteration: the new ranks from the contributions summed over all edges.
/// Dangling vertices (no out-edges) spread their rank evenly.
pub fn next_ranks(ranks: &[f64], contributions: &[f64], out_degree: &[u64], damping: f64) -> Vec<f64> {
    let n = ranks.len() as f64;
    let dangling: f64 = ranks.iter().zip(out_degree).filter(|(_, d)| **d == 0).map(|(r, _)| r).sum();
    contributions.iter().map(|c| (1.0 - damping) / n + damping * (c + dangling / n)).collect()
}

/// Straightforward sequential PageRank; returns the ranks and the iterations run.
pub fn reference(edge_list: &[(u32, u32)], vertices: usize, s: Settings) -> (Vec<f64>, usize) {
    let mut out_degree = vec![0u64; vertices];
    for &(src, _) in edge_list {
        out_degree[src as usize] += 1;
    }
    let mut ranks = vec![1.0 / vertices as f64; vertices];
    for iteration in 1..=s.max_iterations {
        let mut contributions = vec![0.0; vertices];
        for &(src, dst) in edge_list {
            contributions[dst as usize] += ranks[src as usize] / out_degree[src as usize] as f64;
        }
        let next = next_ranks(&ranks, &contributions, &out_degree, s.damping);
        let delta: f64 = next.iter().zip(&ranks).map(|(a, b)| (a - b).abs()).sum();
        ranks = next;
        if delta < s.tolerance {
            return (ranks, iteration);
        }
    }
    (ranks, s.max_iterations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_degrees_are_skewed_and_ranks_sum_to_one() {
        let v = 1000;
        let list: Vec<(u32, u32)> = (0..20_000).map(|e| edge(5, v, e)).collect();
        let low = list.iter().filter(|(_, d)| *d < v / 10).count();
        assert!(low > list.len() / 3, "a tenth of the vertices gets over a third of the edges: {low}");
        let (ranks, iterations) = reference(&list, v as usize, Settings::default());
        assert!((ranks.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(iterations > 1 && iterations < 100);
    }
}
