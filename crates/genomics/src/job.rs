//! The variant-calling burst: each worker indexes the reference, reads its
//! chunk of the reads by byte range (and the mates of those reads), aligns
//! them with minimap2 (streamed through a pipe), sends every alignment to the
//! regions it overlaps with one `all_to_all`, calls its region with `bcftools
//! mpileup | bcftools call`, and rank 0 merges the regions' calls into one
//! sorted, indexed VCF on the output storage.
//!
//! The reference is fetched once per pack (each worker a byte range) and
//! indexed once per invoker: the index is a [`Worker::cached`] entry keyed by
//! the reference's digest and the aligner's version, so a later run on the
//! same reference does not index again (ADR 0013). Regions are balanced by
//! the coverage the reads give (regions.rs).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use volley_sdk::serde_json::json;
use volley_sdk::{Op, Worker, WorkerResult, cooperative_get};

use crate::regions::{BINS, Genome, Interval, overlapping, placement};
use crate::tools::{Tool, pipeline};
use crate::{Error, fastq, gz, stages};

/// The output's marker, written last: without it an output is incomplete.
pub const SUCCESS: &str = "_SUCCESS";
/// The calls, bgzipped VCF, and its index.
pub const CALLS: &str = "calls.vcf.gz";
const STEP: Duration = Duration::from_secs(3600);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    /// The reference FASTA's URL (file:///dir/ref.fa or s3://bucket/key).
    pub(crate) reference: String,
    /// The reads' URLs: one FASTQ, or the two of a pair.
    pub(crate) reads: Vec<String>,
    /// Where the calls go (a prefix).
    pub(crate) output: String,
    /// The sample's name in the VCF.
    #[serde(default = "sample")]
    pub(crate) sample: String,
    /// Which part of the pipeline this burst runs (stages.rs: the FaaS-style
    /// pipeline, regrouped through storage, one burst per stage).
    #[serde(default)]
    pub(crate) stage: Stage,
    /// The merge stage's count of regions (the call stage's workers).
    #[serde(default)]
    pub(crate) regions: Option<usize>,
}

/// A part of the pipeline.
#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Stage {
    /// Everything in one burst, regrouped with one all_to_all.
    #[default]
    All,
    /// Index, split, align; the alignments written to storage by region.
    Align,
    /// Each worker reads its region's alignments from storage and calls it.
    Call,
    /// One worker merges the regions' calls.
    Merge,
}

fn sample() -> String {
    "sample".into()
}

/// A worker's scratch directory, removed when it is done.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn call(w: &Worker) -> WorkerResult {
    let p: Params = w.params_as()?;
    if p.reads.is_empty() || p.reads.len() > 2 {
        return Err(format!("reads: give one FASTQ or the two of a pair, not {}", p.reads.len()).into());
    }
    Tool::check(&[Tool::Minimap2, Tool::Samtools, Tool::Bcftools])?;
    let scratch = Scratch(std::env::temp_dir().join(format!("volley-genomics-{}-{}", w.burst_id(), w.rank())));
    std::fs::create_dir_all(&scratch.0).map_err(Error::io(&scratch.0))?;
    let dir = scratch.0.as_path();
    match p.stage {
        Stage::All => whole(w, &p, dir),
        Stage::Align => stages::align(w, &p, dir),
        Stage::Call => stages::call(w, &p, dir),
        Stage::Merge => stages::merge(w, &p, dir),
    }
}

/// The whole pipeline in one burst: the alignments regrouped by one
/// all_to_all into regions balanced by the coverage all the workers saw.
fn whole(w: &Worker, p: &Params, dir: &Path) -> WorkerResult {
    let aligned = align(w, p, dir, |genome, placed| {
        let mut counts = vec![0u64; BINS];
        for at in placed {
            counts[genome.bin(at)] += 1;
        }
        let counts = w.comm().all_reduce(&counts, Op::Sum)?;
        Ok(genome.balanced(w.size(), &counts))
    })?;
    let (genome, regions) = (&aligned.genome, &aligned.regions);
    // Bytes this worker sends to workers in other packs (over the transport).
    let pack = w.comm().pack_ranks();
    let remote_bytes: usize =
        aligned.parts.iter().enumerate().filter(|(k, _)| !pack.contains(k)).map(|(_, part)| part.len()).sum();

    w.phase("shuffle");
    let received = w.comm().all_to_all(aligned.parts.into_iter().map(Bytes::from).collect())?;

    w.phase("call");
    let region = &regions[w.rank()];
    let calls = call_region(dir, genome, &aligned.header, region, &received)?;

    w.phase("merge");
    let gathered = w.comm().gather(0, Bytes::from(calls))?;
    let mut result = json!({
        "rank": w.rank(),
        "reads": aligned.reads,
        "aligned": aligned.count,
        "region": genome.bed(region).len(),
        "bases": region.iter().map(|i| i.end - i.start).sum::<usize>(),
        "received_bytes": received.iter().map(Bytes::len).sum::<usize>(),
        "remote_bytes": remote_bytes,
        "indexed": aligned.indexed,
    });
    if let Some(parts) = gathered {
        result["vcf"] = json!(write_calls(w, &p.output, dir, &parts)?);
    }
    Ok(result)
}

/// What a worker holds once its reads are aligned: the alignments cut by region.
pub(crate) struct Aligned {
    pub(crate) header: String,
    pub(crate) genome: Genome,
    pub(crate) regions: Vec<Vec<Interval>>,
    /// The SAM record lines (newline-terminated) for each region.
    pub(crate) parts: Vec<Vec<u8>>,
    pub(crate) reads: usize,
    pub(crate) count: u64,
    pub(crate) indexed: bool,
}

/// Index, split and align: the phases every variant of the pipeline starts
/// with; `cut` makes the regions from the genome and where this worker's
/// alignments lie.
pub(crate) fn align(
    w: &Worker,
    p: &Params,
    dir: &Path,
    cut: impl FnOnce(&Genome, &[Interval]) -> Result<Vec<Vec<Interval>>, volley_sdk::WorkerError>,
) -> Result<Aligned, volley_sdk::WorkerError> {
    w.phase("index");
    let indexed = index(w, &p.reference, dir)?;

    w.phase("split");
    let reads = my_reads(w, &p.reads)?;

    w.phase("align");
    let read_group = format!("@RG\\tID:volley\\tSM:{}", p.sample);
    let sam = Tool::Minimap2.run_with_input(
        &["-ax", "sr", "-t", "1", "-R", &read_group, "reference.mmi", "-"],
        reads.interleaved,
        dir,
        STEP,
    )?;
    let (header, records) = split_sam(&sam);
    let genome = Genome::from_header(&header)?;
    let mut placed = Vec::with_capacity(records.len());
    let mut lines = Vec::with_capacity(records.len());
    for line in records {
        if let Some(at) = placement(&genome, line)? {
            placed.push(at);
            lines.push(line);
        }
    }
    let count = placed.len() as u64;
    let regions = cut(&genome, &placed)?;
    let mut parts = vec![Vec::new(); w.size()];
    for (at, line) in placed.iter().zip(lines) {
        for k in overlapping(&regions, at) {
            parts[k].extend_from_slice(line);
            parts[k].push(b'\n');
        }
    }
    if reads.records > 0 && count == 0 {
        return Err(format!(
            "none of this worker's {} reads aligned to the reference: do the reads come from it?",
            reads.records
        )
        .into());
    }
    Ok(Aligned { header, genome, regions, parts, reads: reads.records, count, indexed })
}

/// Merges the regions' calls (in region order) into `output`'s calls.vcf.gz
/// and its index, `_SUCCESS` last; the VCF's URL.
pub(crate) fn write_calls(
    w: &Worker,
    output: &str,
    dir: &Path,
    parts: &[Bytes],
) -> Result<String, volley_sdk::WorkerError> {
    let merged = merge(dir, parts)?;
    let storage = w.storage(output)?;
    w.block_on(storage.delete(SUCCESS))?;
    w.block_on(storage.put(CALLS, Bytes::from(merged.vcf)))?;
    w.block_on(storage.put(&format!("{CALLS}.tbi"), Bytes::from(merged.index)))?;
    w.block_on(storage.put(SUCCESS, Bytes::new()))?;
    Ok(format!("{}/{CALLS}", output.trim_end_matches('/')))
}

/// The files of the reference's index, linked into `dir` (reference.fa and
/// its .fai for bcftools, reference.mmi for minimap2); whether this pack made
/// them (the invoker had no entry for this reference and aligner).
pub(crate) fn index(w: &Worker, url: &str, dir: &Path) -> Result<bool, volley_sdk::WorkerError> {
    /// Tag of the reference's cooperative download (no other message is under way then).
    const REFERENCE_TAG: u64 = 0x6765_6e6f_6d65;
    let (prefix, key) = split_url(url)?;
    let storage = w.storage(prefix)?;
    let reference = cooperative_get(&storage, key, w.comm(), REFERENCE_TAG, w.runtime())?;
    let mut digest = Sha256::new();
    for piece in &reference.0 {
        digest.update(piece);
    }
    let version = String::from_utf8_lossy(&Tool::Minimap2.run(&["--version"], dir, STEP)?).trim().to_string();
    let version: String =
        version.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' }).take(32).collect();
    let hex: String = digest.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let cache_key = format!("genomics-mm2sr-{hex}-{version}");
    let cached = w.cached(&cache_key, |into: &Path| -> Result<(), Error> {
        let fasta = into.join("reference.fa");
        match gz::compression(reference.0.first().map_or(&[][..], |b| &b[..])) {
            gz::Compression::None => std::fs::write(&fasta, reference.concat()).map_err(Error::io(into))?,
            // (bcftools needs a FASTA it can index with samtools faidx: plain text.)
            _ => {
                let mut out = std::fs::File::create(&fasta).map_err(Error::io(&fasta))?;
                let all = reference.concat();
                std::io::copy(&mut flate2::read::MultiGzDecoder::new(&all[..]), &mut out).map_err(|e| {
                    Error::BadInput { file: url.to_string(), problem: format!("cannot be decompressed: {e}") }
                })?;
            }
        }
        Tool::Minimap2.run(&["-x", "sr", "-d", "reference.mmi", "reference.fa"], into, STEP)?;
        Tool::Samtools.run(&["faidx", "reference.fa"], into, STEP)?;
        Ok(())
    })?;
    for name in ["reference.fa", "reference.fa.fai", "reference.mmi"] {
        std::os::unix::fs::symlink(cached.dir.join(name), dir.join(name)).map_err(Error::io(dir.join(name)))?;
    }
    Ok(cached.made)
}

pub(crate) fn split_url(url: &str) -> Result<(&str, &str), Error> {
    url.rsplit_once('/').filter(|(prefix, key)| !key.is_empty() && prefix.contains("://")).ok_or_else(|| {
        Error::Invalid(format!("{url:?} is not the URL of a file (file:///dir/name or s3://bucket/key)"))
    })
}

/// This worker's reads, interleaved with their mates for minimap2's stdin
/// (adjacent records of the same name are a pair).
struct MyReads {
    interleaved: Vec<u8>,
    records: usize,
}

fn my_reads(w: &Worker, urls: &[String]) -> Result<MyReads, volley_sdk::WorkerError> {
    let first = ReadFile::open(w, &urls[0])?;
    let chunk = fastq::read_chunk(&urls[0], first.size, w.rank(), w.size(), |r| first.read(r))?;
    let Some(second_url) = urls.get(1) else {
        return Ok(MyReads { records: chunk.records, interleaved: chunk.bytes });
    };
    let second = ReadFile::open(w, second_url)?;
    let mates = match fastq::first_name(&chunk.bytes) {
        Some(name) => {
            let estimate = (chunk.offset as u128 * second.size as u128 / first.size.max(1) as u128) as u64;
            fastq::read_mates(second_url, second.size, &name, chunk.records, estimate, |r| second.read(r))?
        }
        None => fastq::Chunk { bytes: Vec::new(), offset: 0, records: 0 },
    };
    Ok(MyReads { records: chunk.records, interleaved: fastq::interleave(&chunk.bytes, &mates.bytes)? })
}

/// One file of reads on storage, read by ranges of its uncompressed bytes
/// (a BGZF file through its `.gzi` index: gz.rs).
struct ReadFile<'w> {
    w: &'w Worker,
    url: String,
    storage: volley_sdk::Storage,
    key: String,
    blocks: Option<gz::Blocks>,
    /// Uncompressed bytes.
    size: u64,
}

impl<'w> ReadFile<'w> {
    fn open(w: &'w Worker, url: &str) -> Result<ReadFile<'w>, volley_sdk::WorkerError> {
        let (prefix, key) = split_url(url)?;
        let storage = w.storage(prefix)?;
        let size = w.block_on(storage.size(key))?;
        let mut file = ReadFile { w, url: url.to_string(), storage, key: key.to_string(), blocks: None, size };
        let head = file.raw(0..size.min(gz::SNIFF))?;
        match gz::compression(&head) {
            gz::Compression::None => {}
            gz::Compression::Bgzf => {
                let gzi = w.block_on(file.storage.get(&format!("{key}.gzi"))).map_err(|e| {
                    format!(
                        "{url} is BGZF but its index {url}.gzi cannot be read ({e}): make it with \
                         `bgzip -r FILE` (htslib) or `volley genomics prepare-reads FILE`"
                    )
                })?;
                let blocks = gz::Blocks::open(url, &gzi, size, &mut |r| file.raw(r))?;
                file.size = blocks.size();
                file.blocks = Some(blocks);
            }
            gz::Compression::Gzip => {
                return Err(format!(
                    "{url} is plain gzip, which cannot be read from the middle, so the workers cannot split it: \
                     rewrite it once as BGZF with its index (`volley genomics prepare-reads FILE` writes \
                     FILE.bgz and FILE.bgz.gzi; or `zcat FILE | bgzip > OUT && bgzip -r OUT`) and give that"
                )
                .into());
            }
        }
        Ok(file)
    }

    /// Bytes of the file as stored.
    fn raw(&self, range: std::ops::Range<u64>) -> Result<Vec<u8>, Error> {
        self.w
            .block_on(self.storage.get_range(&self.key, range))
            .map(|b| b.to_vec())
            .map_err(|e| Error::Invalid(e.to_string()))
    }

    /// Bytes of the reads (uncompressed).
    fn read(&self, range: std::ops::Range<u64>) -> Result<Vec<u8>, Error> {
        match &self.blocks {
            None => self.raw(range),
            Some(blocks) => blocks.read(&self.url, range, &mut |r| self.raw(r)),
        }
    }
}

/// The SAM header's text and the record lines.
fn split_sam(sam: &[u8]) -> (String, Vec<&[u8]>) {
    let mut header = String::new();
    let mut records = Vec::new();
    for line in sam.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if line[0] == b'@' {
            header.push_str(&String::from_utf8_lossy(line));
            header.push('\n');
        } else {
            records.push(line);
        }
    }
    (header, records)
}

/// This worker's region called: its alignments sorted by position into
/// `bcftools mpileup -T region.bed -` and on into `bcftools call`; the calls
/// as BCF (a header only when the region holds no variant).
pub(crate) fn call_region(
    dir: &Path,
    genome: &Genome,
    header: &str,
    region: &[Interval],
    received: &[Bytes],
) -> Result<Vec<u8>, Error> {
    let mut lines: Vec<(Interval, &[u8])> = Vec::new();
    for part in received {
        for line in part.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if let Some(at) = placement(genome, line)? {
                lines.push((at, line));
            }
        }
    }
    lines.sort_by(|(a, x), (b, y)| (a.contig, a.start).cmp(&(b.contig, b.start)).then_with(|| x.cmp(y)));
    let mut sam = header.replace("SO:unsorted", "SO:coordinate").into_bytes();
    for (_, line) in &lines {
        sam.extend_from_slice(line);
        sam.push(b'\n');
    }
    std::fs::write(dir.join("region.bed"), genome.bed(region)).map_err(Error::io(dir))?;
    pipeline(
        &[
            (Tool::Bcftools, &["mpileup", "-f", "reference.fa", "-T", "region.bed", "-Ou", "-"]),
            (Tool::Bcftools, &["call", "-mv", "-Oz"]),
        ],
        Some(sam),
        dir,
        STEP,
    )
}

struct Merged {
    vcf: Vec<u8>,
    index: Vec<u8>,
}

/// The regions' calls, in region order (= genome order), as one bgzipped,
/// indexed VCF.
fn merge(dir: &Path, parts: &[Bytes]) -> Result<Merged, Error> {
    let mut names = Vec::new();
    for (k, part) in parts.iter().enumerate() {
        let name = format!("part-{k:05}.vcf.gz");
        std::fs::write(dir.join(&name), part).map_err(Error::io(dir))?;
        names.push(name);
    }
    let mut args = vec!["concat", "--naive", "-Oz", "-o", CALLS];
    args.extend(names.iter().map(String::as_str));
    Tool::Bcftools.run(&args, dir, STEP)?;
    Tool::Bcftools.run(&["index", "-t", "-f", CALLS], dir, STEP)?;
    let read = |name: String| std::fs::read(dir.join(&name)).map_err(Error::io(dir.join(name)));
    Ok(Merged { vcf: read(CALLS.to_string())?, index: read(format!("{CALLS}.tbi"))? })
}
