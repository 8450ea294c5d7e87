//! `volley data gen|validate terasort`: input data sets and their checks.

use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use volley_apps::terasort::data;
use volley_storage::Storage;

use super::Output;
use super::roles::BrokerArgs;

#[derive(Subcommand)]
pub enum Data {
    /// Generate a data set.
    #[command(subcommand)]
    Gen(Gen),
    /// Check a job's output against its input.
    #[command(subcommand)]
    Validate(Validate),
}

#[derive(Subcommand)]
pub enum Gen {
    /// gensort records (100 bytes: 10-byte key, 90-byte payload), deterministic for a seed.
    Terasort {
        /// How many records (or use --size).
        #[arg(long, conflicts_with = "size")]
        records: Option<u64>,
        /// How many bytes (a multiple of 100 is used), e.g. 1GiB.
        #[arg(long, value_parser = super::output::parse_size)]
        size: Option<usize>,
        /// This fraction of the records (0 to 1) share one key: skewed data.
        #[arg(long, default_value_t = 0.0)]
        duplicate_keys: f64,
        #[arg(long, default_value_t = 8)]
        parts: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[command(flatten)]
        to: Target,
    },
    /// Points around `clusters` centres (`dims` little-endian f64 each), for k-means.
    Kmeans {
        #[arg(long)]
        points: u64,
        #[arg(long, default_value_t = 2)]
        dims: usize,
        #[arg(long, default_value_t = 4)]
        clusters: u64,
        #[arg(long, default_value_t = 4)]
        parts: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[command(flatten)]
        to: Target,
    },
    /// A variant-calling test case in a local directory: a reference with a
    /// repeated segment (reference.fa), paired reads simulated by dwgsim with
    /// planted variants (reads_1.fq, reads_2.fq) and those variants (truth.vcf.gz).
    Genomics {
        /// Bases in the reference, split evenly over the contigs.
        #[arg(long, default_value_t = 200_000)]
        length: usize,
        #[arg(long, default_value_t = 2)]
        contigs: usize,
        /// Mean read depth.
        #[arg(long, default_value_t = 20.0)]
        coverage: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// The directory (or file:///dir) to write into.
        #[arg(long)]
        to: String,
    },
    /// A power-law graph as an edge list (8 bytes per edge: source, destination as u32).
    Pagerank {
        #[arg(long)]
        vertices: u32,
        #[arg(long)]
        edges: u64,
        #[arg(long, default_value_t = 4)]
        parts: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[command(flatten)]
        to: Target,
    },
}

/// Where a generated data set goes.
#[derive(clap::Args)]
pub struct Target {
    /// Where: file:///dir or s3://bucket/prefix (objects part-00000 ...).
    #[arg(long = "to")]
    url: String,
    /// Replace a data set already there (its part-* objects are removed first);
    /// without it, a prefix that holds one is refused.
    #[arg(long)]
    overwrite: bool,
    #[command(flatten)]
    s3: BrokerArgs,
}

impl Target {
    /// The storage to generate into, emptied of an old data set if told to.
    fn open(&self, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Storage> {
        let storage = Storage::open(&self.url, &self.s3.storage())?;
        if self.overwrite {
            let removed = runtime.block_on(volley_apps::dataset::clear(&storage))?;
            if removed > 0 {
                eprintln!("removed the {removed} parts of the data set that was at {}", self.url);
            }
        }
        Ok(storage)
    }
}

fn report(output: Output, what: &str, count: u64, bytes: u64, parts: usize, url: &str, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    if output == Output::Json {
        println!("{}", serde_json::json!({ what: count, "bytes": bytes, "parts": parts, "seconds": secs }));
    } else {
        let mib = bytes as f64 / (1 << 20) as f64;
        println!("generated {count} {what} ({mib:.1} MiB) in {parts} parts at {url} in {secs:.2} s");
    }
}

#[derive(Subcommand)]
pub enum Validate {
    /// Global order, record count and checksum of a sort's output against its input (like valsort).
    Terasort {
        /// The data set that was sorted.
        #[arg(long)]
        input: String,
        /// The sort's output (its part-* objects, in name order).
        #[arg(long)]
        sorted: String,
        #[command(flatten)]
        s3: BrokerArgs,
    },
}

impl Data {
    pub fn run(self, output: Output) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        match self {
            Data::Gen(Gen::Terasort { records, size, duplicate_keys, parts, seed, to }) => {
                let records = match (records, size) {
                    (Some(r), _) => r,
                    (None, Some(bytes)) => (bytes / volley_apps::terasort::records::RECORD) as u64,
                    (None, None) => anyhow::bail!("say how much: --records N or --size 1GiB"),
                };
                let storage = to.open(&runtime)?;
                let url = to.url;
                let started = Instant::now();
                let records =
                    runtime.block_on(data::generate_skewed(&storage, records, parts, seed, duplicate_keys))?;
                let bytes = records * volley_apps::terasort::records::RECORD as u64;
                report(output, "records", records, bytes, parts, &url, started);
                Ok(())
            }
            Data::Gen(Gen::Genomics { length, contigs, coverage, seed, to }) => {
                let dir = std::path::PathBuf::from(to.strip_prefix("file://").unwrap_or(&to));
                anyhow::ensure!(contigs >= 1, "--contigs must be at least 1");
                let spec = volley_genomics::data::Spec {
                    contigs: (1..=contigs).map(|i| (format!("chr{i}"), length / contigs)).collect(),
                    coverage,
                    seed,
                    ..Default::default()
                };
                let started = Instant::now();
                let case = volley_genomics::data::generate(&dir, &spec)?;
                let secs = started.elapsed().as_secs_f64();
                let files = [&case.reference, &case.reads[0], &case.reads[1], &case.truth];
                if output == Output::Json {
                    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
                    println!("{}", serde_json::json!({ "files": names, "seconds": secs }));
                } else {
                    println!(
                        "generated a {length}-base reference with reads at {coverage}x in {} in {secs:.2} s:",
                        dir.display()
                    );
                    files.iter().for_each(|f| println!("  {}", f.display()));
                }
                Ok(())
            }
            Data::Gen(Gen::Kmeans { points, dims, clusters, parts, seed, to }) => {
                let storage = to.open(&runtime)?;
                let url = to.url;
                let started = Instant::now();
                let n =
                    runtime.block_on(volley_apps::kmeans::generate(&storage, points, dims, clusters, parts, seed))?;
                report(output, "points", n, n * dims as u64 * 8, parts, &url, started);
                Ok(())
            }
            Data::Gen(Gen::Pagerank { vertices, edges, parts, seed, to }) => {
                let storage = to.open(&runtime)?;
                let url = to.url;
                let started = Instant::now();
                let edges =
                    runtime.block_on(volley_apps::pagerank::generate(&storage, vertices, edges, parts, seed))?;
                let bytes = edges * volley_apps::pagerank::graph::EDGE as u64;
                report(output, "edges", edges, bytes, parts, &url, started);
                Ok(())
            }
            Data::Validate(Validate::Terasort { input, sorted: out_url, s3 }) => {
                let opts = s3.storage();
                let (inp, out) = (Storage::open(&input, &opts)?, Storage::open(&out_url, &opts)?);
                let v = runtime.block_on(data::validate(&inp, &out)).context("validation failed")?;
                if output == Output::Json {
                    println!("{}", serde_json::to_string(&v)?);
                } else {
                    println!(
                        "valid: {} records in {} parts, globally sorted; checksum {:016x} matches the input",
                        v.output.records, v.output_parts, v.output.checksum
                    );
                }
                Ok(())
            }
        }
    }
}
