//! What one PageRank iteration moves between workers: each worker's
//! contributions as a sparse list (only the vertices its edges reach), summed
//! into one dense vector on the way to rank 0, and the ranks rank 0 broadcasts.
//! Everything is little-endian bytes; values are read in place, never decoded
//! into a copy per worker.

use bytes::Bytes;

/// `[SPARSE][count: u32][vertices: u32 × count][values: f64 × count]`
const SPARSE: u8 = 0;
/// `[DENSE][values: f64 × vertices]`
const DENSE: u8 = 1;

fn f64_at(bytes: &[u8], at: usize) -> Option<f64> {
    Some(f64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// A worker's edges, grouped by the vertex they reach.
pub struct Contributions {
    /// The vertices this worker's edges reach, sorted, each once.
    targets: Vec<u32>,
    /// Per edge, in source order (so that the ranks are read front to back, not
    /// at random: this loop is bound by memory latency): its source, the index of
    /// its target in `targets`, and the share of the source's rank it carries.
    edges: Vec<(u32, u32, f64)>,
    values: Vec<f64>,
}

impl Contributions {
    /// `out_degree`: every vertex's out-degree over the whole graph.
    pub fn new(edges: &[(u32, u32)], out_degree: &[u64]) -> Contributions {
        let mut targets: Vec<u32> = edges.iter().map(|&(_, dst)| dst).collect();
        targets.sort_unstable();
        targets.dedup();
        let mut edges: Vec<(u32, u32, f64)> = edges
            .iter()
            .map(|&(src, dst)| {
                let degree = out_degree.get(src as usize).copied().unwrap_or(1).max(1);
                (src, targets.partition_point(|&t| t < dst) as u32, 1.0 / degree as f64)
            })
            .collect();
        edges.sort_unstable_by_key(|&(src, slot, _)| (src, slot));
        let values = vec![0.0; targets.len()];
        Contributions { targets, edges, values }
    }

    /// This iteration's contributions under `ranks`, encoded sparse.
    pub fn encode(&mut self, ranks: &Ranks) -> Bytes {
        self.values.fill(0.0);
        for &(src, slot, share) in &self.edges {
            self.values[slot as usize] += ranks.get(src as usize) * share;
        }
        let mut out = Vec::with_capacity(5 + self.targets.len() * 12);
        out.push(SPARSE);
        out.extend_from_slice(&(self.targets.len() as u32).to_le_bytes());
        self.targets.iter().for_each(|t| out.extend_from_slice(&t.to_le_bytes()));
        self.values.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        Bytes::from(out)
    }
}

/// Calls `each(vertex, value)` for every entry of encoded contributions
/// (entries beyond `vertices` or past the end of the bytes are skipped).
fn for_each_entry(bytes: &[u8], vertices: usize, mut each: impl FnMut(usize, f64)) {
    match bytes.first() {
        Some(&SPARSE) => {
            let count = u32_at(bytes, 1).unwrap_or(0) as usize;
            let values = 5 + count * 4;
            for i in 0..count {
                if let (Some(vertex), Some(value)) = (u32_at(bytes, 5 + i * 4), f64_at(bytes, values + i * 8))
                    && (vertex as usize) < vertices
                {
                    each(vertex as usize, value);
                }
            }
        }
        Some(&DENSE) => {
            for (vertex, chunk) in bytes[1..].chunks_exact(8).take(vertices).enumerate() {
                each(vertex, f64::from_le_bytes(chunk.try_into().unwrap_or_default()));
            }
        }
        _ => {}
    }
}

/// Adds encoded contributions `b` into the accumulator `acc` (made dense on
/// first use): the reduction's combining step, in place.
pub fn add_into(acc: &mut Vec<u8>, b: &[u8], vertices: usize) {
    if acc.first() != Some(&DENSE) || acc.len() != 1 + vertices * 8 {
        let mut sums = vec![0u8; 1 + vertices * 8];
        sums[0] = DENSE;
        std::mem::swap(acc, &mut sums);
        add_into(acc, &sums, vertices);
    }
    let body = &mut acc[1..];
    for_each_entry(b, vertices, |vertex, value| {
        let slot = &mut body[vertex * 8..vertex * 8 + 8];
        let sum = f64::from_le_bytes((&*slot).try_into().unwrap_or_default()) + value;
        slot.copy_from_slice(&sum.to_le_bytes());
    });
}

/// Encoded contributions (sparse or dense) as one value per vertex.
pub fn dense(bytes: &[u8], vertices: usize) -> Vec<f64> {
    let mut out = vec![0.0; vertices];
    for_each_entry(bytes, vertices, |vertex, value| out[vertex] += value);
    out
}

/// The ranks rank 0 broadcasts, with the iteration's change:
/// `[delta: f64][ranks: f64 × vertices]`.
pub struct Ranks(pub Bytes);

impl Ranks {
    pub fn encode(delta: f64, ranks: &[f64]) -> Bytes {
        let mut out = Vec::with_capacity(8 + ranks.len() * 8);
        out.extend_from_slice(&delta.to_le_bytes());
        ranks.iter().for_each(|r| out.extend_from_slice(&r.to_le_bytes()));
        Bytes::from(out)
    }

    /// The rank of `vertex` (0 for a vertex the buffer does not hold).
    pub fn get(&self, vertex: usize) -> f64 {
        f64_at(&self.0, 8 + vertex * 8).unwrap_or(0.0)
    }

    /// The sum of absolute changes of the iteration that produced these ranks.
    pub fn delta(&self) -> f64 {
        f64_at(&self.0, 0).unwrap_or(f64::INFINITY)
    }

    pub fn to_vec(&self, vertices: usize) -> Vec<f64> {
        (0..vertices).map(|v| self.get(v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_contributions_sum_into_one_dense_vector() {
        let ranks = Ranks(Ranks::encode(0.0, &[0.5, 0.25, 0.25]));
        let degree = [2, 1, 1];
        let mut a = Contributions::new(&[(0, 1), (0, 2)], &degree);
        let mut b = Contributions::new(&[(2, 0), (1, 2)], &degree);
        let mut acc = a.encode(&ranks).to_vec();
        add_into(&mut acc, &b.encode(&ranks), 3);
        assert_eq!(dense(&acc, 3), vec![0.25, 0.25, 0.5]);
        // One worker alone: its sparse list is the result.
        assert_eq!(dense(&a.encode(&ranks), 3), vec![0.0, 0.25, 0.25]);
    }

    #[test]
    fn malformed_bytes_are_skipped_not_a_panic() {
        let mut acc = vec![SPARSE, 9, 0, 0, 0, 1];
        add_into(&mut acc, &[DENSE, 1, 2], 4);
        assert_eq!(dense(&acc, 4), vec![0.0; 4]);
        assert_eq!(dense(&[7, 7], 2), vec![0.0; 2]);
        assert_eq!(Ranks(Bytes::from_static(&[1, 2])).delta(), f64::INFINITY);
    }
}
