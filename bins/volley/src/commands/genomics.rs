//! `volley genomics`: variant calling. So far the single-node pipeline (the
//! HPC baseline the burst pipeline will be measured against) and the scoring
//! of a call set against a truth set.

use std::path::PathBuf;

use clap::Subcommand;

use super::output::Output;

#[derive(Subcommand)]
pub enum Genomics {
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
    pub fn run(self, output: Output) -> anyhow::Result<()> {
        match self {
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
