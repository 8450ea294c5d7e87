//! `volley genomics`: variant calling as a burst (`call`), and the
//! single-node pipeline it is measured against (`baseline`), with the
//! scoring of a call set against a truth set.

use std::path::PathBuf;

use clap::Subcommand;
use volley_proto::api::{BurstRequest, Granularity};

use super::Target;
use super::output::Output;
use super::platform::PlatformArgs;

#[derive(Subcommand)]
pub enum Genomics {
    /// Calls variants as one burst: each worker aligns its share of the reads
    /// (minimap2), one all_to_all regroups the alignments by genome region,
    /// each worker calls its region (bcftools), and the regions' calls are
    /// merged into OUTPUT/calls.vcf.gz (indexed) with OUTPUT/_SUCCESS last.
    Call {
        /// The reference genome (FASTA): a path, file:///path or s3://bucket/key.
        #[arg(long)]
        reference: String,
        /// The reads (FASTQ, uncompressed or BGZF with its .gzi index beside it; see
        /// prepare-reads): once for single-end, twice for the two files of a pair.
        #[arg(long, num_args = 1, required = true)]
        reads: Vec<String>,
        /// Where the calls go: a directory, file:///dir or s3://bucket/prefix.
        #[arg(long = "to")]
        to: String,
        /// The sample's name in the VCF.
        #[arg(long, default_value = "sample")]
        sample: String,
        /// N: how many workers (and regions).
        #[arg(long, short = 'n', default_value_t = 4)]
        workers: usize,
        /// Workers per pack (1: FaaS style, one process per worker).
        #[arg(long, short = 'g', default_value = "auto")]
        granularity: Granularity,
        /// tcp, uds, shm, redis, rabbitmq, nats, s3 (default: shm on one host, tcp across hosts).
        #[arg(long)]
        transport: Option<String>,
        /// Run it as the FaaS original did instead: three bursts, each started
        /// when the one before has succeeded: align (N workers), call (N workers,
        /// one region each) and merge (one worker), the alignments regrouped
        /// through OUTPUT/_regroup/ in storage rather than sent between workers.
        #[arg(long)]
        stages: bool,
        #[command(flatten)]
        platform: Box<PlatformArgs>,
    },
    /// Rewrites read files (plain gzip or uncompressed FASTQ) once as BGZF with
    /// a .gzi index of its blocks, so that each worker of `call` reads only its
    /// share: reads_1.fq.gz becomes reads_1.fq.bgz and reads_1.fq.bgz.gzi beside it.
    PrepareReads {
        /// The read files (local paths).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// The single-node pipeline on this machine: minimap2 | samtools sort |
    /// bcftools mpileup | bcftools call, into DIR/calls.vcf.gz (indexed).
    Baseline {
        /// The reference genome (FASTA).
        #[arg(long)]
        reference: PathBuf,
        /// The reads (FASTQ): once for single-end, twice for the two files of a pair.
        #[arg(long, num_args = 1, required = true)]
        reads: Vec<PathBuf>,
        /// Where the working files and the calls go.
        #[arg(long)]
        dir: PathBuf,
        /// A truth set (bgzipped, indexed VCF): report precision and recall against it.
        #[arg(long)]
        truth: Option<PathBuf>,
        #[arg(long, default_value_t = std::thread::available_parallelism().map_or(1, |n| n.get()))]
        threads: usize,
    },
}

impl Genomics {
    pub fn run(self, target: &Target, output: Output) -> anyhow::Result<()> {
        match self {
            Genomics::Call { reference, reads, to, sample, workers, granularity, transport, stages, mut platform } => {
                let reference = storage_url(&reference)?;
                let reads = reads.iter().map(|r| storage_url(r)).collect::<anyhow::Result<Vec<_>>>()?;
                let to = storage_url(&to)?;
                if target.controller.is_none() {
                    // An embedded platform's sandboxed packs reach only the local directories granted to them.
                    for url in std::iter::once(&reference).chain(&reads) {
                        if let Some((dir, _)) = url.rsplit_once('/') {
                            platform.grant_local_storage(dir)?;
                        }
                    }
                    platform.grant_local_storage(&to)?;
                }
                let params =
                    serde_json::json!({ "reference": reference, "reads": reads, "output": to, "sample": sample });
                let burst = |workers: usize, params: serde_json::Value| BurstRequest {
                    function: "genomics".into(),
                    workers,
                    granularity,
                    transport: transport.clone(),
                    params,
                    ..Default::default()
                };
                let requests = match stages {
                    true => volley_genomics::stages::plan(&params, workers)
                        .into_iter()
                        .map(|stage| burst(stage.workers, stage.params))
                        .collect(),
                    false => vec![burst(workers, params)],
                };
                super::run::run_in_order(&requests, &platform, target, output)?;
                if output != Output::Json {
                    println!("calls: {}/calls.vcf.gz", to.trim_end_matches('/'));
                }
                Ok(())
            }
            Genomics::PrepareReads { files } => {
                let mut prepared = Vec::new();
                for file in &files {
                    let to = volley_genomics::gz::prepared_name(file);
                    anyhow::ensure!(to != *file, "{} is already named .bgz: give the original", file.display());
                    let done = volley_genomics::gz::prepare(file, &to)?;
                    if output != Output::Json {
                        println!(
                            "{} -> {} ({} bytes of reads in {} blocks; index {})",
                            file.display(),
                            done.file.display(),
                            done.bytes,
                            done.blocks,
                            done.index.display()
                        );
                    }
                    prepared.push(serde_json::json!({
                        "from": file, "file": done.file, "index": done.index, "bytes": done.bytes, "blocks": done.blocks,
                    }));
                }
                if output == Output::Json {
                    println!("{}", serde_json::Value::Array(prepared));
                }
                Ok(())
            }
            Genomics::Baseline { reference, reads, dir, truth, threads } => {
                let run = volley_genomics::baseline::run(&dir, &reference, &reads, threads)?;
                let scored = match &truth {
                    Some(t) => Some(volley_genomics::accuracy::compare(&dir.join("score"), &reference, &run.vcf, t)?),
                    None => None,
                };
                if output == Output::Json {
                    let steps: serde_json::Map<String, serde_json::Value> =
                        run.steps.iter().map(|(n, d)| (n.to_string(), d.as_secs_f64().into())).collect();
                    let accuracy = scored.map(|a| {
                        serde_json::json!({
                            "true_positives": a.true_positives, "false_positives": a.false_positives,
                            "false_negatives": a.false_negatives, "precision": a.precision(), "recall": a.recall(),
                        })
                    });
                    println!("{}", serde_json::json!({ "vcf": run.vcf, "seconds": steps, "accuracy": accuracy }));
                } else {
                    println!("calls: {}", run.vcf.display());
                    for (name, took) in &run.steps {
                        println!("  {name:<12} {:>8.2} s", took.as_secs_f64());
                    }
                    if let Some(a) = scored {
                        println!(
                            "against the truth: {} true, {} false, {} missed: precision {:.3}, recall {:.3}",
                            a.true_positives,
                            a.false_positives,
                            a.false_negatives,
                            a.precision(),
                            a.recall()
                        );
                    }
                }
                Ok(())
            }
        }
    }
}

/// A storage URL as given, or a local path made into a `file://` URL.
fn storage_url(given: &str) -> anyhow::Result<String> {
    if given.contains("://") {
        return Ok(given.to_string());
    }
    Ok(format!("file://{}", std::path::absolute(given)?.display()))
}
