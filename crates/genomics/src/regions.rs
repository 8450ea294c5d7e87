//! The genome cut into regions, one per worker, and the alignments sent to
//! every region they overlap (a read that spans a cut goes to both sides: the
//! pile-up at a position needs every read that covers it, and routing by start
//! alone lost calls near the cuts, docs/notes/genomics.md §2.4).
//!
//! The one-burst pipeline cuts regions by the coverage its reads give: each
//! worker counts where its alignments start in [`BINS`] bins along the
//! genome, one all_reduce sums the counts, and the cuts fall where the
//! cumulative count reaches each worker's share ([`Genome::balanced`]), so a
//! region of deep coverage is short and an uncovered stretch joins a
//! neighbour. The staged pipeline, which cannot agree on a histogram before it
//! writes its parts, cuts by length ([`Genome::regions`]).

use std::io::Write;

use noodles_sam as sam;
use noodles_sam::alignment::Record as _;

use crate::Error;

/// Bins of the coverage histogram the regions are balanced by (32 KiB of counts).
pub const BINS: usize = 4096;

/// A stretch of one contig, 0-based and end-exclusive (as BED writes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    pub contig: usize,
    pub start: usize,
    pub end: usize,
}

/// The contigs of the reference, from the aligner's SAM header.
#[derive(Debug, Clone)]
pub struct Genome {
    pub header: sam::Header,
    pub names: Vec<String>,
    pub lengths: Vec<usize>,
}

impl Genome {
    /// Reads the `@`-lines of a SAM stream.
    pub fn from_header(text: &str) -> Result<Genome, Error> {
        let header: sam::Header = text.parse().map_err(|e| Error::Invalid(format!("the aligner's SAM header: {e}")))?;
        let names = header.reference_sequences().keys().map(|n| n.to_string()).collect();
        let lengths = header.reference_sequences().values().map(|r| usize::from(r.length())).collect();
        Ok(Genome { header, names, lengths })
    }

    /// Bases of the whole genome.
    pub fn total(&self) -> usize {
        self.lengths.iter().sum()
    }

    /// `count` regions of about equal length, in genome order; a region may
    /// span the end of one contig and the start of the next.
    pub fn regions(&self, count: usize) -> Vec<Vec<Interval>> {
        let (total, count) = (self.total(), count.max(1));
        self.cut_at(&(0..=count).map(|k| (k * total).div_ceil(count)).collect::<Vec<_>>())
    }

    /// The bin (of [`BINS`] along the concatenated genome) where `at` starts.
    pub fn bin(&self, at: &Interval) -> usize {
        let offset: usize = self.lengths[..at.contig.min(self.lengths.len())].iter().sum();
        ((offset + at.start) as u128 * BINS as u128 / self.total().max(1) as u128).min(BINS as u128 - 1) as usize
    }

    /// `count` regions holding about equal shares of `counts` (alignments per
    /// bin, summed over the burst), cut at bin edges; each region at least one
    /// base. By length when nothing aligned.
    pub fn balanced(&self, count: usize, counts: &[u64]) -> Vec<Vec<Interval>> {
        let (total, count) = (self.total(), count.max(1));
        let all: u64 = counts.iter().sum();
        if all == 0 || counts.len() != BINS || total < count {
            return self.regions(count);
        }
        let edge = |bin: usize| (bin as u128 * total as u128).div_ceil(BINS as u128) as usize;
        let mut cuts = vec![0];
        let (mut bin, mut sum) = (0, 0u64);
        for k in 1..count {
            let share = (all as u128 * k as u128 / count as u128) as u64;
            while bin < BINS && sum + counts[bin] <= share {
                sum += counts[bin];
                bin += 1;
            }
            // At least one base per region, before and after this cut.
            let last = *cuts.last().unwrap_or(&0);
            cuts.push(edge(bin).clamp(last + 1, total - (count - k)));
        }
        cuts.push(total);
        self.cut_at(&cuts)
    }

    /// The regions between consecutive `cuts` (positions along the
    /// concatenated genome, from 0 to its length), split at contig ends.
    fn cut_at(&self, cuts: &[usize]) -> Vec<Vec<Interval>> {
        let mut regions = vec![Vec::new(); cuts.len().saturating_sub(1).max(1)];
        let mut offset = 0;
        for (contig, &len) in self.lengths.iter().enumerate() {
            let mut start = 0;
            while start < len {
                let at = offset + start;
                let region = cuts.partition_point(|&c| c <= at).saturating_sub(1).min(regions.len() - 1);
                let end = cuts.get(region + 1).map_or(len, |&c| c.saturating_sub(offset)).min(len).max(start + 1);
                regions[region].push(Interval { contig, start, end });
                start = end;
            }
            offset += len;
        }
        regions
    }

    /// A region as BED text (for `bcftools mpileup -T`).
    pub fn bed(&self, region: &[Interval]) -> Vec<u8> {
        let mut out = Vec::new();
        for i in region {
            let _ = writeln!(out, "{}\t{}\t{}", self.names[i.contig], i.start, i.end);
        }
        out
    }
}

/// Where an alignment lies: contig and 0-based, end-exclusive span; None for
/// an unmapped, secondary or supplementary record (they do not pile up).
pub fn placement(genome: &Genome, line: &[u8]) -> Result<Option<Interval>, Error> {
    let record = sam::Record::try_from(line).map_err(|e| bad_record(line, e))?;
    let flags = record.flags().map_err(|e| bad_record(line, e))?;
    if flags.is_unmapped() || flags.is_secondary() || flags.is_supplementary() {
        return Ok(None);
    }
    let contig = match record.reference_sequence_id(&genome.header) {
        Some(id) => id.map_err(|e| bad_record(line, e))?,
        None => return Ok(None),
    };
    let (Some(start), Some(end)) = (record.alignment_start(), record.alignment_end()) else { return Ok(None) };
    let start = usize::from(start.map_err(|e| bad_record(line, e))?) - 1;
    let end = usize::from(end.map_err(|e| bad_record(line, e))?);
    Ok(Some(Interval { contig, start, end }))
}

/// The regions an alignment overlaps.
pub fn overlapping<'a>(regions: &'a [Vec<Interval>], at: &'a Interval) -> impl Iterator<Item = usize> + 'a {
    regions
        .iter()
        .enumerate()
        .filter(move |(_, r)| r.iter().any(|i| i.contig == at.contig && i.start < at.end && at.start < i.end))
        .map(|(k, _)| k)
}

fn bad_record(line: &[u8], e: impl std::fmt::Display) -> Error {
    let shown = String::from_utf8_lossy(&line[..line.len().min(120)]).into_owned();
    Error::Invalid(format!("the aligner wrote a record noodles cannot read ({e}): {shown}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn genome() -> Genome {
        Genome::from_header("@HD\tVN:1.6\tSO:unsorted\n@SQ\tSN:chr1\tLN:1000\n@SQ\tSN:chr2\tLN:500\n").unwrap()
    }

    #[test]
    fn regions_cover_the_genome_once_in_order() {
        let g = genome();
        for count in [1, 2, 3, 7, 1500, 2000] {
            let regions = g.regions(count);
            assert_eq!(regions.len(), count);
            let flat: Vec<&Interval> = regions.iter().flatten().collect();
            let covered: usize = flat.iter().map(|i| i.end - i.start).sum();
            assert_eq!(covered, 1500, "{count}");
            for pair in flat.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                assert!(a.contig < b.contig || (a.contig == b.contig && a.end == b.start), "{count}: {a:?} {b:?}");
            }
        }
        let three = g.regions(3);
        assert_eq!(three[1], vec![Interval { contig: 0, start: 500, end: 1000 }]);
        assert_eq!(g.bed(&three[2]), b"chr2\t0\t500\n");
    }

    fn check_cover(regions: &[Vec<Interval>]) {
        let flat: Vec<&Interval> = regions.iter().flatten().collect();
        assert_eq!(flat.iter().map(|i| i.end - i.start).sum::<usize>(), 1500);
        assert!(flat.windows(2).all(|p| p[0].contig < p[1].contig || p[0].end == p[1].start), "{regions:?}");
    }

    #[test]
    fn balanced_regions_hold_equal_shares_of_the_coverage() {
        let g = genome();
        // Every alignment in the first third of chr1 (bases 0..500).
        let mut counts = vec![0u64; BINS];
        counts[..BINS / 3].iter_mut().for_each(|c| *c = 10);
        let regions = g.balanced(3, &counts);
        check_cover(&regions);
        assert_eq!(regions[0], vec![Interval { contig: 0, start: 0, end: 167 }]);
        assert_eq!(regions[1], vec![Interval { contig: 0, start: 167, end: 334 }]);
        // The uncovered rest joins the last region, across the contig end.
        assert_eq!(g.bed(&regions[2]), b"chr1\t334\t1000\nchr2\t0\t500\n");
        assert_eq!(g.bin(&regions[2][1]), 2730, "chr2 starts 1000/1500 along the genome");
        // Nothing aligned: by length.
        assert_eq!(g.balanced(3, &vec![0; BINS]), g.regions(3));
        // All in one bin: every region still holds a base.
        let mut one = vec![0u64; BINS];
        one[0] = 100;
        let five = g.balanced(5, &one);
        check_cover(&five);
        assert!(five.iter().all(|r| !r.is_empty()), "{five:?}");
    }

    #[test]
    fn a_read_across_a_cut_goes_to_both_sides() {
        let g = genome();
        let regions = g.regions(3);
        let line = b"r1\t0\tchr1\t491\t60\t20M\t*\t0\t0\tACGTACGTACGTACGTACGT\tIIIIIIIIIIIIIIIIIIII";
        let at = placement(&g, line).unwrap().unwrap();
        assert_eq!(at, Interval { contig: 0, start: 490, end: 510 });
        assert_eq!(overlapping(&regions, &at).collect::<Vec<_>>(), vec![0, 1]);
        let unmapped = b"r2\t4\t*\t0\t0\t*\t*\t0\t0\tACGT\tIIII";
        assert_eq!(placement(&g, unmapped).unwrap(), None);
        assert!(placement(&g, b"not a record").is_err());
    }
}
