//! How the ranks of a burst are split into packs.

use std::ops::Range;

use crate::error::{Error, Result};

/// The packs of a burst: pack `p` holds a contiguous run of ranks.
///
/// Packs may have different sizes (a burst placed on free capacity rarely
/// divides evenly); nothing in the middleware assumes powers of two.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Vec<usize>", into = "Vec<usize>")]
pub struct Layout {
    /// `starts[p]` is the first rank of pack `p`; the last entry is the worker count.
    starts: Vec<usize>,
}

impl Layout {
    /// A layout from the size of each pack, in pack order.
    pub fn new(pack_sizes: &[usize]) -> Result<Self> {
        if pack_sizes.is_empty() {
            return Err(Error::invalid("a burst needs at least one pack"));
        }
        if let Some(p) = pack_sizes.iter().position(|&s| s == 0) {
            return Err(Error::invalid(format!("pack {p} has no workers; every pack needs at least one")));
        }
        if pack_sizes.len() > u32::MAX as usize {
            return Err(Error::invalid("too many packs"));
        }
        let mut starts = Vec::with_capacity(pack_sizes.len() + 1);
        let mut next = 0usize;
        for &size in pack_sizes {
            starts.push(next);
            next = next
                .checked_add(size)
                .filter(|&n| n <= u32::MAX as usize)
                .ok_or_else(|| Error::invalid("too many workers (at most 2^32 - 1)"))?;
        }
        starts.push(next);
        Ok(Layout { starts })
    }

    /// `workers` ranks in packs of `granularity`; the last pack holds the remainder.
    pub fn uniform(workers: usize, granularity: usize) -> Result<Self> {
        if workers == 0 {
            return Err(Error::invalid("a burst needs at least one worker"));
        }
        if granularity == 0 || granularity > workers {
            return Err(Error::invalid(format!(
                "granularity must be between 1 and the number of workers ({workers}), got {granularity}"
            )));
        }
        let mut sizes = vec![granularity; workers / granularity];
        if !workers.is_multiple_of(granularity) {
            sizes.push(workers % granularity);
        }
        Layout::new(&sizes)
    }

    /// Number of workers (ranks) in the burst.
    pub fn workers(&self) -> usize {
        *self.starts.last().expect("layout has a sentinel")
    }

    /// Number of packs.
    pub fn packs(&self) -> usize {
        self.starts.len() - 1
    }

    /// The ranks of pack `pack` (empty if there is no such pack).
    pub fn ranks_of(&self, pack: usize) -> Range<usize> {
        match (self.starts.get(pack), self.starts.get(pack + 1)) {
            (Some(&first), Some(&end)) => first..end,
            _ => 0..0,
        }
    }

    /// Size of pack `pack` (0 if there is no such pack).
    pub fn pack_size(&self, pack: usize) -> usize {
        self.ranks_of(pack).len()
    }

    /// The pack that holds `rank`; [`Layout::packs`] if `rank` is not in the burst.
    pub fn pack_of(&self, rank: usize) -> usize {
        if rank >= self.workers() {
            return self.packs();
        }
        // `partition_point` finds the first start greater than rank.
        self.starts.partition_point(|&s| s <= rank) - 1
    }

    /// The lowest rank of a pack; it speaks for the pack in hierarchical
    /// collectives ([`Layout::workers`] if there is no such pack).
    pub fn leader(&self, pack: usize) -> usize {
        self.starts.get(pack).copied().filter(|_| pack < self.packs()).unwrap_or(self.workers())
    }

    /// Pack sizes in pack order.
    pub fn pack_sizes(&self) -> Vec<usize> {
        self.starts.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

impl TryFrom<Vec<usize>> for Layout {
    type Error = Error;
    fn try_from(sizes: Vec<usize>) -> Result<Self> {
        Layout::new(&sizes)
    }
}

impl From<Layout> for Vec<usize> {
    fn from(layout: Layout) -> Self {
        layout.pack_sizes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_layout_keeps_the_remainder_in_the_last_pack() {
        let l = Layout::uniform(10, 4).unwrap();
        assert_eq!(l.pack_sizes(), vec![4, 4, 2]);
        assert_eq!(l.pack_of(0), 0);
        assert_eq!(l.pack_of(3), 0);
        assert_eq!(l.pack_of(4), 1);
        assert_eq!(l.pack_of(9), 2);
        assert_eq!(l.ranks_of(2), 8..10);
        assert_eq!(l.leader(1), 4);
    }

    #[test]
    fn uneven_packs_map_every_rank_to_its_pack() {
        let l = Layout::new(&[1, 5, 2]).unwrap();
        let owners: Vec<usize> = (0..l.workers()).map(|r| l.pack_of(r)).collect();
        assert_eq!(owners, vec![0, 1, 1, 1, 1, 1, 2, 2]);
    }

    #[test]
    fn out_of_range_questions_get_harmless_answers() {
        let l = Layout::new(&[2, 1]).unwrap();
        assert_eq!(l.ranks_of(5), 0..0);
        assert_eq!(l.pack_size(2), 0);
        assert_eq!(l.pack_of(3), 2);
        assert_eq!(l.leader(7), 3);
    }

    #[test]
    fn bad_layouts_are_rejected_with_a_reason() {
        assert!(Layout::new(&[]).is_err());
        assert!(Layout::new(&[2, 0]).unwrap_err().to_string().contains("pack 1"));
        assert!(Layout::uniform(0, 1).is_err());
        assert!(Layout::uniform(4, 0).is_err());
        assert!(Layout::uniform(4, 5).is_err());
    }
}
