//! The pipeline as the FaaS original ran it (WoSC '23): one burst per stage,
//! the alignments regrouped by region through object storage instead of an
//! all_to_all. It exists to be measured against the one-burst pipeline
//! (`volley bench genomics`) and to run as a workflow of bursts
//! (`examples/flows/genomics.yaml`); both give the same calls.
//!
//! Under the output prefix, until the merge removes them:
//! `_regroup/header.sam` (rank 0 of the align stage), `_regroup/to-DST/from-SRC.sam`
//! (the alignments worker SRC found for region DST, written even when empty)
//! and `_regroup/calls/part-K.vcf.gz` (region K's calls). The align and call
//! stages have the same number of workers, and every stage reads exactly the
//! objects it expects (never a listing), so what a failed earlier run left
//! there is overwritten or ignored, never mixed in.

use std::path::Path;

use bytes::Bytes;
use volley_sdk::serde_json::json;
use volley_sdk::{Worker, WorkerResult};

use crate::job::{Params, SUCCESS, align as align_reads, call_region, index, write_calls};
use crate::regions::Genome;

const REGROUP: &str = "_regroup";

/// One burst of the FaaS-style pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct StageBurst {
    /// `align`, `call` or `merge`.
    pub stage: &'static str,
    pub workers: usize,
    /// The pipeline's params with this stage's (`stage`, and the merge's `regions`).
    pub params: volley_sdk::serde_json::Value,
}

/// The FaaS-style pipeline's bursts, in the order they must run, from the
/// params of the one-burst pipeline (`reference`, `reads`, `output`,
/// `sample`): align and call with `workers` workers each, then one worker
/// merging their `workers` regions.
pub fn plan(params: &volley_sdk::serde_json::Value, workers: usize) -> Vec<StageBurst> {
    let stage = |stage: &'static str, workers: usize| {
        let mut params = params.clone();
        params["stage"] = json!(stage);
        StageBurst { stage, workers, params }
    };
    let mut merge = stage("merge", 1);
    merge.params["regions"] = json!(workers);
    vec![stage("align", workers), stage("call", workers), merge]
}

/// Index, split and align; each region's alignments put in storage.
pub(crate) fn align(w: &Worker, p: &Params, dir: &Path) -> WorkerResult {
    // (By length: the stages share no histogram before the parts are written.)
    let aligned = align_reads(w, p, dir, |genome, _| Ok(genome.regions(w.size())))?;
    w.phase("regroup");
    let output = w.storage(&p.output)?;
    if w.rank() == 0 {
        // An earlier run's marker goes first: the output is incomplete from now on.
        w.block_on(output.delete(SUCCESS))?;
        w.block_on(output.put(&format!("{REGROUP}/header.sam"), Bytes::from(aligned.header.clone())))?;
    }
    let mut stored = 0usize;
    for (region, part) in aligned.parts.into_iter().enumerate() {
        stored += part.len();
        w.block_on(output.put(&part_key(region, w.rank()), Bytes::from(part)))?;
    }
    Ok(json!({
        "rank": w.rank(),
        "reads": aligned.reads,
        "aligned": aligned.count,
        "stored_bytes": stored,
        "indexed": aligned.indexed,
    }))
}

/// This worker's region: its alignments read from storage, called, the calls put back.
pub(crate) fn call(w: &Worker, p: &Params, dir: &Path) -> WorkerResult {
    w.phase("index");
    let indexed = index(w, &p.reference, dir)?;
    w.phase("regroup");
    let output = w.storage(&p.output)?;
    let header = w.block_on(output.get(&format!("{REGROUP}/header.sam"))).map_err(|e| {
        format!("{e}: the align stage's header is missing; run the align stage first, into the same output")
    })?;
    let header = String::from_utf8(header.to_vec()).map_err(|_| "the align stage's header is not text")?;
    let genome = Genome::from_header(&header)?;
    let regions = genome.regions(w.size());
    let mut received = Vec::with_capacity(w.size());
    for from in 0..w.size() {
        let part = w.block_on(output.get(&part_key(w.rank(), from))).map_err(|e| {
            format!("{e}: the align stage's worker {from} left nothing for region {}; did it run with {} workers into this output?", w.rank(), w.size())
        })?;
        received.push(part);
    }

    w.phase("call");
    let region = &regions[w.rank()];
    let calls = call_region(dir, &genome, &header, region, &received)?;
    let stored = calls.len();
    w.block_on(output.put(&calls_key(w.rank()), Bytes::from(calls)))?;
    Ok(json!({
        "rank": w.rank(),
        "region": genome.bed(region).len(),
        "fetched_bytes": received.iter().map(Bytes::len).sum::<usize>(),
        "stored_bytes": stored,
        "indexed": indexed,
    }))
}

/// One worker: every region's calls merged into the output, the regrouped files removed.
pub(crate) fn merge(w: &Worker, p: &Params, dir: &Path) -> WorkerResult {
    if w.size() != 1 {
        return Err(format!("the merge stage runs as one worker, not {}", w.size()).into());
    }
    let Some(regions) = p.regions.filter(|&n| n > 0) else {
        return Err("the merge stage needs \"regions\": how many workers the call stage had".into());
    };
    w.phase("merge");
    let output = w.storage(&p.output)?;
    let mut parts = Vec::with_capacity(regions);
    for k in 0..regions {
        let part = w.block_on(output.get(&calls_key(k))).map_err(|e| {
            format!(
                "{e}: region {k}'s calls are missing; did the call stage run with {regions} workers into this output?"
            )
        })?;
        parts.push(part);
    }
    let fetched: usize = parts.iter().map(Bytes::len).sum();
    let vcf = write_calls(w, &p.output, dir, &parts)?;
    for (key, _) in w.block_on(output.list(&format!("{REGROUP}/")))? {
        w.block_on(output.delete(&key))?;
    }
    Ok(json!({ "rank": 0, "fetched_bytes": fetched, "vcf": vcf }))
}

/// Where worker `from` puts its alignments for region `to`.
fn part_key(to: usize, from: usize) -> String {
    format!("{REGROUP}/to-{to:05}/from-{from:05}.sam")
}

fn calls_key(region: usize) -> String {
    format!("{REGROUP}/calls/part-{region:05}.vcf.gz")
}

#[cfg(test)]
mod tests {
    use volley_sdk::serde_json::json;

    #[test]
    fn the_plan_aligns_and_calls_with_every_worker_and_merges_their_regions_with_one() {
        let base = json!({ "reference": "s3://b/ref.fa", "reads": ["s3://b/r.fq"], "output": "s3://b/out" });
        let plan = super::plan(&base, 5);
        let shape: Vec<_> = plan.iter().map(|s| (s.stage, s.workers, s.params["stage"].clone())).collect();
        assert_eq!(shape, [("align", 5, json!("align")), ("call", 5, json!("call")), ("merge", 1, json!("merge"))]);
        assert_eq!(plan[2].params["regions"], json!(5));
        assert!(plan[..2].iter().all(|s| s.params.get("regions").is_none() && s.params["output"] == base["output"]));
    }
}
