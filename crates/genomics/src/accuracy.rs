//! Precision and recall of called variants against a truth set. Both sides
//! are normalised against the reference first (`bcftools norm -f`: the same
//! indel can be written at different positions), then matched by chromosome,
//! position, reference and alternate alleles (`bcftools isec`); genotypes are
//! not compared.

use std::path::Path;
use std::time::Duration;

use crate::Error;
use crate::tools::Tool;

const TIMEOUT: Duration = Duration::from_secs(600);

/// How a call set compares to the truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accuracy {
    pub true_positives: u64,
    pub false_positives: u64,
    pub false_negatives: u64,
}

impl Accuracy {
    /// Share of the calls that are true (1 when nothing was called).
    pub fn precision(&self) -> f64 {
        ratio(self.true_positives, self.true_positives + self.false_positives)
    }

    /// Share of the truth that was called (1 when the truth is empty).
    pub fn recall(&self) -> f64 {
        ratio(self.true_positives, self.true_positives + self.false_negatives)
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 { 1.0 } else { part as f64 / whole as f64 }
}

/// Compares `calls` to `truth` (bgzipped, indexed VCFs) over `reference`;
/// the normalised copies are written into `dir`.
pub fn compare(dir: &Path, reference: &Path, calls: &Path, truth: &Path) -> Result<Accuracy, Error> {
    Tool::check(&[Tool::Bcftools])?;
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let fa = std::path::absolute(reference).map_err(Error::io(reference))?.display().to_string();
    let normalised = |input: &Path, name: &str| -> Result<String, Error> {
        let input = std::path::absolute(input).map_err(Error::io(input))?.display().to_string();
        Tool::Bcftools.run(&["norm", "-f", &fa, "-Oz", "-o", name, &input], dir, TIMEOUT)?;
        Tool::Bcftools.run(&["index", "-t", "-f", name], dir, TIMEOUT)?;
        Ok(name.to_string())
    };
    let calls = normalised(calls, "calls.norm.vcf.gz")?;
    let truth = normalised(truth, "truth.norm.vcf.gz")?;
    // isec prints one line per site: in both (-n=2), or only in the first (-C).
    let sites = |args: &[&str]| -> Result<u64, Error> {
        let out = Tool::Bcftools.run(args, dir, TIMEOUT)?;
        Ok(out.split(|&b| b == b'\n').filter(|l| !l.is_empty() && l[0] != b'#').count() as u64)
    };
    Ok(Accuracy {
        true_positives: sites(&["isec", "-n=2", "-c", "none", &calls, &truth])?,
        false_positives: sites(&["isec", "-C", "-c", "none", &calls, &truth])?,
        false_negatives: sites(&["isec", "-C", "-c", "none", &truth, &calls])?,
    })
}
