//! Variant calling three ways on one generated case (issue 19): the
//! single-node pipeline with every core (the HPC baseline), the one-burst
//! pipeline (packs of g, alignments regrouped by one all_to_all) and the
//! FaaS-style pipeline (g = 1, one burst per stage, regrouped through object
//! storage like the original). Every call set is compared record by record
//! with the single node's and scored against the planted truth; a mode whose
//! records differ fails the run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use volley_client::Client;
use volley_genomics::data::Case;
use volley_genomics::tools::Tool;
use volley_proto::api::Burst;

use super::{Mode, Results, job_request, ms, run_job};
use crate::{Error, Result};

/// One way of calling.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub mode: String,
    pub workers: usize,
    pub g: usize,
    /// Stage times, ms (for bursts the slowest worker's, as the others wait for it).
    pub stages: Vec<(String, f64)>,
    /// From submitting the first burst (or starting the first tool) to the calls on storage.
    pub total_ms: f64,
    /// Bytes of alignments and calls that went through storage between stages.
    pub regroup_storage_bytes: u64,
    /// Bytes sent between packs (through the transport).
    pub between_packs_bytes: u64,
    /// Workers that built the reference's index (0: found in the invoker's cache).
    pub indexed_by: usize,
    pub accuracy: Accuracy,
}

/// The calls scored against the truth, and whether they are the single node's.
#[derive(Debug, Clone, Serialize)]
pub struct Accuracy {
    pub records: usize,
    pub same_as_single_node: bool,
    pub precision: f64,
    pub recall: f64,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub reference_bases: u64,
    pub read_bytes: u64,
    pub rows: Vec<Row>,
    /// The burst (indexing, as the single node does) over the single node.
    pub burst_over_single_node: Option<f64>,
    /// FaaS style over burst, both with the index cached.
    pub faas_over_burst: Option<f64>,
}

impl Report {
    pub fn new(case: &Case, rows: Vec<Row>) -> Report {
        let total = |mode: &str| rows.iter().find(|r| r.mode == mode).map(|r| r.total_ms);
        let (single, burst, cached, faas) = (total(SINGLE), total(BURST), total(BURST_CACHED), total(FAAS));
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        Report {
            reference_bases: bases(&case.reference),
            read_bytes: case.reads.iter().map(|r| size(r)).sum(),
            burst_over_single_node: burst.zip(single).map(|(b, s)| b / s),
            faas_over_burst: faas.zip(cached).map(|(f, b)| f / b),
            rows,
        }
    }
}

/// Where a run's workers find the case and put their calls (storage URLs),
/// and the local directory those calls land in, to score them here.
#[derive(Debug, Clone)]
pub struct Place {
    pub reference: String,
    pub reads: [String; 2],
    pub output: String,
    pub local_output: PathBuf,
}

impl Place {
    /// The case's files and the directory `out`, as `file://` URLs.
    pub fn local(case: &Case, out: &Path) -> Place {
        let url = |p: &Path| format!("file://{}", p.display());
        Place {
            reference: url(&case.reference),
            reads: [url(&case.reads[0]), url(&case.reads[1])],
            output: url(out),
            local_output: out.to_path_buf(),
        }
    }

    fn calls(&self) -> PathBuf {
        self.local_output.join(volley_genomics::job::CALLS)
    }

    /// The one-burst pipeline's params (`volley_genomics::stages::plan`
    /// makes the stages' from them).
    fn params(&self) -> serde_json::Value {
        json!({ "reference": self.reference, "reads": self.reads, "output": self.output })
    }
}

pub const SINGLE: &str = "single node";
pub const BURST: &str = "burst";
pub const BURST_CACHED: &str = "burst, cached index";
pub const FAAS: &str = "faas style";

/// The single-node pipeline in `dir` with `threads` threads.
pub fn single_node(case: &Case, dir: &Path, threads: usize) -> Result<(Row, PathBuf)> {
    let started = Instant::now();
    let run = volley_genomics::baseline::run(dir, &case.reference, &case.reads, threads)?;
    let total = started.elapsed();
    let stages = run.steps.iter().map(|(name, took)| (name.to_string(), ms(*took))).collect();
    let accuracy = score(case, &run.vcf, &run.vcf, &dir.join("score"))?;
    let row = Row {
        mode: SINGLE.into(),
        workers: 1,
        g: threads,
        stages,
        total_ms: ms(total),
        regroup_storage_bytes: 0,
        between_packs_bytes: 0,
        indexed_by: 1,
        accuracy,
    };
    Ok((row, run.vcf))
}

/// The one-burst pipeline: `workers` in packs of `g`, from and to `place`.
pub async fn burst(
    client: &Client,
    name: &str,
    (workers, g): (usize, usize),
    (case, place): (&Case, &Place),
    single: &Path,
) -> Result<Row> {
    let started = Instant::now();
    let b = run_job(client, &job_request("genomics", workers, &Mode::burst(g), place.params())).await?;
    let total = started.elapsed();
    let r = Results::of(&b);
    Ok(Row {
        mode: name.into(),
        workers,
        g,
        stages: slowest_phases(&[&b]),
        total_ms: ms(total),
        regroup_storage_bytes: 0,
        between_packs_bytes: r.sum("remote_bytes"),
        indexed_by: indexed(&r),
        accuracy: score(case, &place.calls(), single, &place.local_output.join("score"))?,
    })
}

/// The FaaS-style pipeline: an align burst and a call burst of `workers`
/// single-worker packs, then a merge task, each started when the one before
/// has finished, as the original's client drove its stages.
pub async fn faas_style(client: &Client, workers: usize, (case, place): (&Case, &Place), single: &Path) -> Result<Row> {
    let faas = Mode { name: "faas", granularity: 1, transport: None };
    let started = Instant::now();
    let mut bursts = Vec::new();
    for stage in volley_genomics::stages::plan(&place.params(), workers) {
        bursts.push(run_job(client, &job_request("genomics", stage.workers, &faas, stage.params)).await?);
    }
    let total = started.elapsed();
    let [align, call, merge] = &bursts[..] else {
        return Err(Error::Invalid(format!("the FaaS-style plan has {} stages, not align, call, merge", bursts.len())));
    };
    let (a, c, m) = (Results::of(align), Results::of(call), Results::of(merge));
    Ok(Row {
        mode: FAAS.into(),
        workers,
        g: 1,
        stages: slowest_phases(&[align, call, merge]),
        total_ms: ms(total),
        regroup_storage_bytes: a.sum("stored_bytes")
            + c.sum("fetched_bytes")
            + c.sum("stored_bytes")
            + m.sum("fetched_bytes"),
        between_packs_bytes: 0,
        indexed_by: indexed(&a) + indexed(&c),
        accuracy: score(case, &place.calls(), single, &place.local_output.join("score"))?,
    })
}

fn indexed(r: &Results<'_>) -> usize {
    r.iter().filter(|w| w["indexed"] == true).count()
}

/// Each phase's time in the slowest worker (a phase ends where the worker's
/// next one starts, the last where it finished), summed over `bursts` for
/// phases of the same name, in the order they first appear.
fn slowest_phases(bursts: &[&Burst]) -> Vec<(String, f64)> {
    let mut stages: Vec<(String, f64)> = Vec::new();
    for b in bursts {
        let mut slowest: Vec<(String, u64)> = Vec::new();
        for w in &b.workers {
            let ends = w.phases.iter().skip(1).map(|p| Some(p.at)).chain([w.finished_at]);
            for (phase, end) in w.phases.iter().zip(ends) {
                let took = end.unwrap_or(phase.at).saturating_sub(phase.at);
                match slowest.iter_mut().find(|(n, _)| *n == phase.name) {
                    Some((_, most)) => *most = (*most).max(took),
                    None => slowest.push((phase.name.clone(), took)),
                }
            }
        }
        for (name, micros) in slowest {
            let took = micros as f64 / 1e3;
            match stages.iter_mut().find(|(n, _)| *n == name) {
                Some((_, sum)) => *sum += took,
                None => stages.push((name, took)),
            }
        }
    }
    stages
}

/// `calls` scored against the case's truth and compared record by record with `single`.
fn score(case: &Case, calls: &Path, single: &Path, dir: &Path) -> Result<Accuracy> {
    let records = |vcf: &Path| -> Result<String> {
        let out = Tool::Bcftools.run(&["view", "-H", &vcf.display().to_string()], Path::new("/"), LIMIT)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    };
    let (ours, theirs) = (records(calls)?, records(single)?);
    if ours != theirs {
        return Err(Error::Verify(format!(
            "{} holds other records than the single-node pipeline's {} ({} against {} lines)",
            calls.display(),
            single.display(),
            ours.lines().count(),
            theirs.lines().count()
        )));
    }
    let scored = volley_genomics::accuracy::compare(dir, &case.reference, calls, &case.truth)?;
    Ok(Accuracy {
        records: ours.lines().count(),
        same_as_single_node: true,
        precision: scored.precision(),
        recall: scored.recall(),
    })
}

const LIMIT: Duration = Duration::from_secs(600);

/// Bases of a FASTA (its non-header line lengths).
fn bases(fasta: &Path) -> u64 {
    let text = std::fs::read(fasta).unwrap_or_default();
    text.split(|&b| b == b'\n').filter(|l| !l.starts_with(b">")).map(|l| l.len() as u64).sum()
}
