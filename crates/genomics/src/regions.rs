//! The genome cut into regions, one per worker, and the alignments sent to
//! every region they overlap (a read that spans a cut goes to both sides: the
//! pile-up at a position needs every read that covers it, and routing by start
//! alone lost calls near the cuts, docs/notes/genomics.md §2.4).
//!
//! Regions are cut by genome length in this first version; cutting by the
//! coverage the reads give (a histogram summed across the burst) comes later.

use std::io::Write;

use noodles_sam as sam;
use noodles_sam::alignment::Record as _;

use crate::Error;

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

    /// `count` regions of about equal length, in genome order; a region may
    /// span the end of one contig and the start of the next.
    pub fn regions(&self, count: usize) -> Vec<Vec<Interval>> {
        let total: usize = self.lengths.iter().sum();
        let mut regions = vec![Vec::new(); count.max(1)];
        let mut offset = 0; // position along the concatenated genome
        for (contig, &len) in self.lengths.iter().enumerate() {
            let mut start = 0;
            while start < len {
                let region = (offset + start) * count / total.max(1);
                let region_end = ((region + 1) * total).div_ceil(count) - offset;
                let end = region_end.min(len).max(start + 1);
                regions[region.min(count - 1)].push(Interval { contig, start, end });
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
