//! A test case for the pipeline: a reference genome (random, with a segment
//! repeated so that some reads map ambiguously, as in real genomes), paired
//! reads simulated from it with planted variants (`dwgsim`), and the truth set
//! of those variants, indexed for comparison. The pairs are written in a
//! random order, as a sequencer's are.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use noodles_fasta as fasta;
use noodles_fastq as fastq;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::Error;
use crate::tools::Tool;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// Contig names and lengths.
    pub contigs: Vec<(String, usize)>,
    /// A segment of this many bases copied `copies` times across the genome.
    pub repeat: usize,
    pub copies: usize,
    /// Mean read depth.
    pub coverage: f64,
    /// Length of each read of a pair.
    pub read_length: usize,
    pub seed: u64,
}

impl Default for Spec {
    /// 200 kbp in two contigs at 20x: a few seconds of tool time.
    fn default() -> Self {
        Spec {
            contigs: vec![("chr1".into(), 120_000), ("chr2".into(), 80_000)],
            repeat: 2_000,
            copies: 3,
            coverage: 20.0,
            read_length: 150,
            seed: 42,
        }
    }
}

/// The files of a generated case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub reference: PathBuf,
    /// First and second reads of each pair (uncompressed FASTQ, same order).
    pub reads: [PathBuf; 2],
    /// The planted variants: bgzipped VCF with its `.tbi`.
    pub truth: PathBuf,
}

impl Case {
    /// The files of the case `generate` wrote into `dir`.
    pub fn in_dir(dir: &Path) -> Case {
        Case {
            reference: dir.join("reference.fa"),
            reads: [dir.join("reads_1.fq"), dir.join("reads_2.fq")],
            truth: dir.join("truth.vcf.gz"),
        }
    }
}

/// Writes a case into `dir` (created if missing).
pub fn generate(dir: &Path, spec: &Spec) -> Result<Case, Error> {
    check(spec)?;
    Tool::check(&[Tool::Dwgsim, Tool::Bcftools])?;
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let case = Case::in_dir(dir);
    write_reference(&case.reference, spec)?;
    let timeout = Duration::from_secs(600);
    let (len, coverage, seed) = (spec.read_length.to_string(), spec.coverage.to_string(), spec.seed.to_string());
    // -y 0: no random (unmappable) reads; -r/-R: mutation rate and indel share; -z: seed (byte-identical reruns).
    let args = [
        "-C",
        &coverage,
        "-1",
        &len,
        "-2",
        &len,
        "-r",
        "0.001",
        "-R",
        "0.1",
        "-y",
        "0",
        "-z",
        &seed,
        "reference.fa",
        "sim",
    ];
    Tool::Dwgsim.run(&args, dir, timeout)?;
    let simulated = [dir.join("sim.bwa.read1.fastq.gz"), dir.join("sim.bwa.read2.fastq.gz")];
    shuffle_pairs(&simulated, &case.reads, spec.seed)?;
    Tool::Bcftools.run(&["sort", "-Oz", "-o", "truth.vcf.gz", "sim.mutations.vcf"], dir, timeout)?;
    Tool::Bcftools.run(&["index", "-t", "-f", "truth.vcf.gz"], dir, timeout)?;
    let leftovers = [
        "sim.bwa.read1.fastq.gz",
        "sim.bwa.read2.fastq.gz",
        "sim.bfast.fastq.gz",
        "sim.mutations.txt",
        "sim.mutations.vcf",
    ];
    for leftover in leftovers {
        let _ = std::fs::remove_file(dir.join(leftover));
    }
    Ok(case)
}

fn check(spec: &Spec) -> Result<(), Error> {
    let shortest = spec.contigs.iter().map(|(_, l)| *l).min().unwrap_or(0);
    if spec.contigs.is_empty() || shortest < 4 * spec.read_length.max(1) {
        return Err(Error::Invalid(format!(
            "every contig must be at least 4 read lengths ({} bases) long",
            4 * spec.read_length
        )));
    }
    if spec.repeat > 0 && spec.repeat * 2 > shortest {
        return Err(Error::Invalid(format!(
            "a repeat of {} bases does not fit twice in a {shortest}-base contig",
            spec.repeat
        )));
    }
    if !(0.5..=500.0).contains(&spec.coverage) {
        return Err(Error::Invalid(format!("coverage {} is outside 0.5 to 500", spec.coverage)));
    }
    Ok(())
}

/// Random bases, then one segment of the first contig copied into each contig
/// in turn (the copies spread evenly, never overlapping the source).
fn write_reference(path: &Path, spec: &Spec) -> Result<(), Error> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed);
    let mut contigs: Vec<Vec<u8>> =
        spec.contigs.iter().map(|(_, len)| (0..*len).map(|_| b"ACGT"[rng.random_range(0..4)]).collect()).collect();
    if spec.repeat > 0 && spec.copies > 1 {
        let source = contigs[0][spec.repeat..2 * spec.repeat].to_vec();
        let n = contigs.len();
        for copy in 1..spec.copies {
            let target = &mut contigs[copy % n];
            let slot = target.len() / 2 + (copy / n) * spec.repeat;
            if slot + spec.repeat <= target.len() {
                target[slot..slot + spec.repeat].copy_from_slice(&source);
            }
        }
    }
    let file = std::fs::File::create(path).map_err(Error::io(path))?;
    let mut writer = fasta::io::Writer::new(std::io::BufWriter::new(file));
    for ((name, _), bases) in spec.contigs.iter().zip(contigs) {
        let record = fasta::Record::new(
            fasta::record::Definition::new(name.as_str(), None),
            fasta::record::Sequence::from(bases),
        );
        writer.write_record(&record).map_err(Error::io(path))?;
    }
    writer.get_mut().flush().map_err(Error::io(path))
}

/// The pairs of the two gzipped files `from`, written uncompressed to `to` in
/// one seeded random order. dwgsim writes reads in genome order, so a chunk
/// of its file would hold one stretch of the genome; a sequencer's reads come
/// in no order, and so do these (every chunk then covers the whole genome, and
/// the shuffle by region moves what it would move on real data).
fn shuffle_pairs(from: &[PathBuf; 2], to: &[PathBuf; 2], seed: u64) -> Result<(), Error> {
    let read_all = |path: &PathBuf| -> Result<Vec<fastq::Record>, Error> {
        let file = std::fs::File::open(path).map_err(Error::io(path))?;
        let decoder = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
        fastq::io::Reader::new(std::io::BufReader::new(decoder))
            .records()
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::io(path))
    };
    let (first, second) = (read_all(&from[0])?, read_all(&from[1])?);
    if first.len() != second.len() {
        return Err(Error::Invalid(format!("dwgsim wrote {} first and {} second reads", first.len(), second.len())));
    }
    let mut order: Vec<usize> = (0..first.len()).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed));
    for (records, path) in [(&first, &to[0]), (&second, &to[1])] {
        let file = std::fs::File::create(path).map_err(Error::io(path))?;
        let mut writer = fastq::io::Writer::new(std::io::BufWriter::new(file));
        for &i in &order {
            writer.write_record(&records[i]).map_err(Error::io(path))?;
        }
        writer.get_mut().flush().map_err(Error::io(path))?;
    }
    Ok(())
}
