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
//! same reference does not index again (ADR 0013). Regions are cut by genome
//! length, not coverage.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use volley_sdk::serde_json::json;
use sha2::{Digest, Sha256};
use volley_sdk::{Worker, WorkerResult, cooperative_get};

use crate::regions::{Genome, Interval, overlapping, placement};
use crate::tools::{Tool, pipeline};
use crate::{Error, fastq};

/// The output's marker, written last: without it an output is incomplete.
pub const SUCCESS: &str = "_SUCCESS";
/// The calls, bgzipped VCF, and its index.
pub const CALLS: &str = "calls.vcf.gz";
const STEP: Duration = Duration::from_secs(3600);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// The reference FASTA's URL (file:///dir/ref.fa or s3://bucket/key).
    reference: String,
    /// The reads' URLs: one FASTQ, or the two of a pair.
    reads: Vec<String>,
    /// Where the calls go (a prefix).
    output: String,
    /// The sample's name in the VCF.
    #[serde(default = "sample")]
    sample: String,
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
    let regions = genome.regions(w.size());
    let mut parts = vec![Vec::new(); w.size()];
    let mut aligned = 0u64;
    for line in records {
        let Some(at) = placement(&genome, line)? else { continue };
        aligned += 1;
        for k in overlapping(&regions, &at) {
            parts[k].extend_from_slice(line);
            parts[k].push(b'\n');
        }
    }
    if reads.records > 0 && aligned == 0 {
        return Err(format!(
            "none of this worker's {} reads aligned to the reference: do the reads come from it?",
            reads.records
        )
        .into());
    }

    w.phase("shuffle");
    let received = w.comm().all_to_all(parts.into_iter().map(Bytes::from).collect())?;

    w.phase("call");
    let region = &regions[w.rank()];
    let calls = call_region(dir, &genome, &header, region, &received)?;

    w.phase("merge");
    let gathered = w.comm().gather(0, Bytes::from(calls))?;
    let mut result = json!({
        "rank": w.rank(),
        "reads": reads.records,
        "aligned": aligned,
        "region": genome.bed(region).len(),
        "received_bytes": received.iter().map(Bytes::len).sum::<usize>(),
        "indexed": indexed,
    });
    if let Some(parts) = gathered {
        let merged = merge(dir, &parts)?;
        let output = w.storage(&p.output)?;
        w.block_on(output.delete(SUCCESS))?;
        w.block_on(output.put(CALLS, Bytes::from(merged.vcf)))?;
        w.block_on(output.put(&format!("{CALLS}.tbi"), Bytes::from(merged.index)))?;
        w.block_on(output.put(SUCCESS, Bytes::new()))?;
        result["vcf"] = json!(format!("{}/{CALLS}", p.output.trim_end_matches('/')));
    }
    Ok(result)
}

/// The files of the reference's index, linked into `dir` (reference.fa and
/// its .fai for bcftools, reference.mmi for minimap2); whether this pack made
/// them (the invoker had no entry for this reference and aligner).
fn index(w: &Worker, url: &str, dir: &Path) -> Result<bool, volley_sdk::WorkerError> {
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
        std::fs::write(into.join("reference.fa"), reference.concat()).map_err(Error::io(into))?;
        Tool::Minimap2.run(&["-x", "sr", "-d", "reference.mmi", "reference.fa"], into, STEP)?;
        Tool::Samtools.run(&["faidx", "reference.fa"], into, STEP)?;
        Ok(())
    })?;
    for name in ["reference.fa", "reference.fa.fai", "reference.mmi"] {
        std::os::unix::fs::symlink(cached.dir.join(name), dir.join(name)).map_err(Error::io(dir.join(name)))?;
    }
    Ok(cached.made)
}

fn split_url(url: &str) -> Result<(&str, &str), Error> {
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
    let open = |url: &str| -> Result<_, volley_sdk::WorkerError> {
        let (prefix, key) = split_url(url)?;
        let storage = w.storage(prefix)?;
        let size = w.block_on(storage.size(key))?;
        Ok((storage, key.to_string(), size))
    };
    let (first, key, size) = open(&urls[0])?;
    let read = |storage: &volley_sdk::Storage, key: &str| {
        let (storage, key) = (storage.clone(), key.to_string());
        move |range: std::ops::Range<u64>| -> Result<Vec<u8>, Error> {
            w.block_on(storage.get_range(&key, range)).map(|b| b.to_vec()).map_err(|e| Error::Invalid(e.to_string()))
        }
    };
    let chunk = fastq::read_chunk(&urls[0], size, w.rank(), w.size(), read(&first, &key))?;
    let Some(second_url) = urls.get(1) else {
        return Ok(MyReads { records: chunk.records, interleaved: chunk.bytes });
    };
    let (second, key2, size2) = open(second_url)?;
    let mates = match fastq::first_name(&chunk.bytes) {
        Some(name) => {
            let estimate = (chunk.offset as u128 * size2 as u128 / size.max(1) as u128) as u64;
            fastq::read_mates(second_url, size2, &name, chunk.records, estimate, read(&second, &key2))?
        }
        None => fastq::Chunk { bytes: Vec::new(), offset: 0, records: 0 },
    };
    Ok(MyReads { records: chunk.records, interleaved: fastq::interleave(&chunk.bytes, &mates.bytes)? })
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
fn call_region(
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
