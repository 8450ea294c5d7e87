//! Points for k-means, and the sequential k-means the burst is checked against.
//!
//! A point is `dims` little-endian f64. Point `i` lies near one of `clusters`
//! centres (chosen by i), offset by noise; all of it a function of (seed, i).

use crate::dataset::splitmix64;

fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Coordinate `d` of point `i`.
pub fn coordinate(seed: u64, clusters: u64, i: u64, d: u64) -> f64 {
    let cluster = splitmix64(seed ^ i.wrapping_mul(0x9E37_79B9)) % clusters.max(1);
    let centre = unit(splitmix64(seed.wrapping_add(cluster * 1_000_003 + d))) * 100.0;
    let noise = unit(splitmix64(seed ^ (i << 8) ^ d ^ 0xABCD)) - 0.5;
    centre + noise * 10.0
}

/// Decodes points (their coordinates, one after another).
pub fn decode(bytes: &[u8]) -> Vec<f64> {
    bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default())).collect()
}

/// Index of the centroid nearest to `p` (ties: the lower index).
pub fn nearest(p: &[f64], centroids: &[f64], dims: usize) -> usize {
    let mut best = (0, f64::INFINITY);
    for (c, centre) in centroids.chunks_exact(dims).enumerate() {
        let d: f64 = p.iter().zip(centre).map(|(a, b)| (a - b) * (a - b)).sum();
        if d < best.1 {
            best = (c, d);
        }
    }
    best.0
}

/// Sums and counts per cluster of `points` (flattened as k·dims sums then k counts).
pub fn partial(points: &[f64], centroids: &[f64], dims: usize, k: usize) -> Vec<f64> {
    let mut acc = vec![0.0; k * dims + k];
    for p in points.chunks_exact(dims) {
        let c = nearest(p, centroids, dims);
        for (d, x) in p.iter().enumerate() {
            acc[c * dims + d] += x;
        }
        acc[k * dims + c] += 1.0;
    }
    acc
}

/// New centroids from summed partials (an empty cluster keeps its centroid);
/// returns them and the largest distance a centroid moved.
pub fn update(acc: &[f64], old: &[f64], dims: usize, k: usize) -> (Vec<f64>, f64) {
    let mut next = old.to_vec();
    for c in 0..k {
        let count = acc[k * dims + c];
        if count > 0.0 {
            for d in 0..dims {
                next[c * dims + d] = acc[c * dims + d] / count;
            }
        }
    }
    let moved = next
        .chunks_exact(dims)
        .zip(old.chunks_exact(dims))
        .map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt())
        .fold(0.0, f64::max);
    (next, moved)
}

/// Sequential k-means from the first `k` points; returns centroids and iterations.
pub fn reference(points: &[f64], dims: usize, k: usize, tolerance: f64, max_iterations: usize) -> (Vec<f64>, usize) {
    let mut centroids = points[..k * dims].to_vec();
    for iteration in 1..=max_iterations {
        let (next, moved) = update(&partial(points, &centroids, dims, k), &centroids, dims, k);
        centroids = next;
        if moved < tolerance {
            return (centroids, iteration);
        }
    }
    (centroids, max_iterations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clustered_points_converge_to_their_centres() {
        let (dims, k) = (2, 3);
        let points: Vec<f64> =
            (0..3000u64).flat_map(|i| (0..dims as u64).map(move |d| coordinate(4, 3, i, d))).collect();
        let (centroids, iterations) = reference(&points, dims, k, 1e-9, 100);
        assert!(iterations < 100, "converged");
        assert_eq!(centroids.len(), k * dims);
    }
}
