//! The single-node pipeline, as a bioinformatician runs it on one machine
//! (the HPC baseline): index the reference, align every read pair, sort, pile
//! up and call, index the VCF. The burst's calls are compared to these.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::Error;
use crate::tools::Tool;

/// Longest any one step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(3600);

/// What the baseline made and how long each step took.
#[derive(Debug, Clone)]
pub struct Baseline {
    /// The calls: bgzipped VCF with its `.tbi`.
    pub vcf: PathBuf,
    pub steps: Vec<(&'static str, Duration)>,
}

/// Runs the pipeline in `dir` (its working files stay there) on `reference`
/// and the read files (one, or the two of a pair), with `threads` threads.
pub fn run(dir: &Path, reference: &Path, reads: &[PathBuf], threads: usize) -> Result<Baseline, Error> {
    Tool::check(&[Tool::Minimap2, Tool::Samtools, Tool::Bcftools])?;
    if reads.is_empty() || reads.len() > 2 {
        return Err(Error::Invalid(format!("give one read file or the two of a pair, not {}", reads.len())));
    }
    for input in std::iter::once(reference).chain(reads.iter().map(PathBuf::as_path)) {
        if !input.is_file() {
            return Err(Error::Invalid(format!("{} is not a file", input.display())));
        }
    }
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    // Linked into the working directory, where its `.fai` is made: bcftools
    // looks for the index beside the file it is given, and the reference may
    // live where this run cannot write.
    // A gzipped reference is inflated there instead (faidx needs plain text or BGZF).
    let linked = dir.join("reference.fa");
    let _ = std::fs::remove_file(&linked);
    let mut head = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::fs::File::open(reference).map_err(Error::io(reference))?, 2),
        &mut head,
    )
    .map_err(Error::io(reference))?;
    if crate::gz::compression(&head) == crate::gz::Compression::None {
        std::os::unix::fs::symlink(absolute(reference)?, &linked).map_err(Error::io(&linked))?;
    } else {
        let file = std::fs::File::open(reference).map_err(Error::io(reference))?;
        let mut out = std::fs::File::create(&linked).map_err(Error::io(&linked))?;
        std::io::copy(&mut flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file)), &mut out)
            .map_err(Error::io(reference))?;
    }
    let reference = linked;
    let reads: Vec<String> =
        reads.iter().map(|r| absolute(r).map(|p| p.display().to_string())).collect::<Result<_, _>>()?;
    let fa = reference.display().to_string();
    let t = threads.max(1).to_string();
    let mut steps = Vec::new();
    let mut step = |name: &'static str, tool: Tool, args: &[&str]| -> Result<(), Error> {
        let started = Instant::now();
        tool.run(args, dir, STEP_TIMEOUT)?;
        steps.push((name, started.elapsed()));
        Ok(())
    };
    step("index", Tool::Minimap2, &["-x", "sr", "-d", "reference.mmi", &fa])?;
    step("faidx", Tool::Samtools, &["faidx", "reference.fa"])?;
    // The read group names the sample: without it bcftools calls the sample "-".
    let mut align =
        vec!["-ax", "sr", "-t", &t, "-R", "@RG\\tID:volley\\tSM:sample", "-o", "aligned.sam", "reference.mmi"];
    align.extend(reads.iter().map(String::as_str));
    step("align", Tool::Minimap2, &align)?;
    step("sort", Tool::Samtools, &["sort", "-@", &t, "-o", "aligned.bam", "aligned.sam"])?;
    step("pileup", Tool::Bcftools, &["mpileup", "--threads", &t, "-f", &fa, "-Ou", "-o", "pileup.bcf", "aligned.bam"])?;
    step("call", Tool::Bcftools, &["call", "--threads", &t, "-mv", "-Oz", "-o", "calls.vcf.gz", "pileup.bcf"])?;
    step("index calls", Tool::Bcftools, &["index", "-t", "-f", "calls.vcf.gz"])?;
    Ok(Baseline { vcf: dir.join("calls.vcf.gz"), steps })
}

fn absolute(p: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(p).map_err(Error::io(p))
}
