//! `volley bench genomics`: variant calling on one case three ways: the
//! single-node pipeline with every core, the burst (packs of g, one
//! all_to_all), and the FaaS-style stages (g = 1, regrouped through storage);
//! the burst runs twice, indexing and then with the index cached. Every call
//! set must hold the single node's records.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use volley_bench::jobs::genomics::{self, BURST, BURST_CACHED, Place, Report};

use super::platform::{PlatformArgs, with_platform};
use super::{Output, Target};

#[derive(Args)]
pub struct GenomicsArgs {
    /// A case made by `volley data gen genomics` (reference.fa, reads_1.fq,
    /// reads_2.fq, truth.vcf.gz); without it one is generated.
    #[arg(long)]
    case: Option<PathBuf>,
    /// Bases of the generated reference.
    #[arg(long, default_value_t = 2_000_000)]
    length: usize,
    /// Contigs of the generated reference.
    #[arg(long, default_value_t = 2)]
    contigs: usize,
    /// Read depth of the generated reads.
    #[arg(long, default_value_t = 20.0)]
    coverage: f64,
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Workers per pack in burst mode.
    #[arg(long, default_value_t = 2)]
    granularity: usize,
    /// Threads of the single-node pipeline (default: every core).
    #[arg(long, default_value_t = std::thread::available_parallelism().map_or(1, |n| n.get()))]
    threads: usize,
    /// Where the working files go (a fresh directory under it, removed afterwards).
    #[arg(long, default_value = "/tmp/volley-bench-genomics")]
    dir: PathBuf,
    /// Skip the FaaS-style stages.
    #[arg(long)]
    no_faas: bool,
    #[command(flatten)]
    platform: PlatformArgs,
}

pub fn run(mut args: GenomicsArgs, target: &Target, output: Output) -> anyhow::Result<()> {
    if args.granularity == 0 || args.granularity > args.workers {
        bail!("--granularity must be between 1 and --workers");
    }
    let run_dir = std::path::absolute(&args.dir)?.join(format!("run-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&run_dir).with_context(|| format!("cannot make {}", run_dir.display()))?;
    let result = measure(&mut args, &run_dir, target);
    if let Err(e) = std::fs::remove_dir_all(&run_dir) {
        eprintln!("warning: could not remove the benchmark's files under {}: {e}", run_dir.display());
    }
    print(&result?, output)
}

fn measure(args: &mut GenomicsArgs, run_dir: &std::path::Path, target: &Target) -> anyhow::Result<Report> {
    let case = match &args.case {
        Some(dir) => volley_genomics::data::Case::in_dir(dir),
        None => {
            anyhow::ensure!(args.contigs >= 1, "--contigs must be at least 1");
            let spec = volley_genomics::data::Spec {
                contigs: (1..=args.contigs).map(|i| (format!("chr{i}"), args.length / args.contigs)).collect(),
                coverage: args.coverage,
                ..Default::default()
            };
            let started = std::time::Instant::now();
            let case = volley_genomics::data::generate(&run_dir.join("case"), &spec)?;
            eprintln!("generated the case in {:.1} s", started.elapsed().as_secs_f64());
            case
        }
    };
    let case_dir = case.reference.parent().map(PathBuf::from).unwrap_or_default();
    args.platform.grant_local_storage(&format!("file://{}", case_dir.display()))?;
    args.platform.grant_local_storage(&format!("file://{}", run_dir.display()))?;
    // A cache of this run's own: the first burst indexes, as the single node does.
    args.platform.invoker.cache_dir = Some(run_dir.join("cache"));

    let (single, single_vcf) = genomics::single_node(&case, &run_dir.join("single"), args.threads)?;
    eprintln!("single node: {:.1} s", single.total_ms / 1e3);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (args, case, single_vcf) = (&*args, &case, &single_vcf);
    let rows = runtime.block_on(with_platform(&args.platform, |url| async move {
        let client = target.client_at(&url)?;
        let shape = (args.workers, args.granularity);
        let mut rows = Vec::new();
        // (Each mode's time is told as it ends: a long run that fails later keeps them.)
        let done = |row: genomics::Row, rows: &mut Vec<genomics::Row>| {
            eprintln!("{}: {:.1} s", row.mode, row.total_ms / 1e3);
            rows.push(row);
        };
        let at = |name: &str| Place::local(case, &run_dir.join(name));
        let burst = genomics::burst(&client, BURST, shape, (case, &at("burst")), single_vcf).await;
        done(burst.context("burst mode")?, &mut rows);
        if !args.no_faas {
            let faas = genomics::faas_style(&client, args.workers, (case, &at("faas")), single_vcf).await;
            done(faas.context("FaaS-style stages")?, &mut rows);
        }
        let cached = genomics::burst(&client, BURST_CACHED, shape, (case, &at("cached")), single_vcf).await;
        done(cached.context("burst mode, cached index")?, &mut rows);
        Ok(rows)
    }))?;
    let mut all = vec![single];
    all.extend(rows);
    Ok(Report::new(case, all))
}

fn print(report: &Report, output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "variant calling: {:.2} Mbp reference, {:.0} MiB of reads (stage times: slowest worker, s)",
        report.reference_bases as f64 / 1e6,
        mib(report.read_bytes)
    );
    println!(
        "{:<20} {:>3} {:>3} {:>8} {:>10} {:>10} {:>7} {:>8} {:>9} {:>7}  stages",
        "mode", "N", "g", "total", "storage MiB", "packs MiB", "indexed", "records", "precision", "recall"
    );
    for r in &report.rows {
        let stages: Vec<String> = r.stages.iter().map(|(n, t)| format!("{n} {:.2}", t / 1e3)).collect();
        println!(
            "{:<20} {:>3} {:>3} {:>8.2} {:>10.1} {:>10.1} {:>7} {:>8} {:>9.4} {:>7.4}  {}",
            r.mode,
            r.workers,
            r.g,
            r.total_ms / 1e3,
            mib(r.regroup_storage_bytes),
            mib(r.between_packs_bytes),
            r.indexed_by,
            r.accuracy.records,
            r.accuracy.precision,
            r.accuracy.recall,
            stages.join(", ")
        );
    }
    if let Some(x) = report.burst_over_single_node {
        println!("burst / single node: {x:.2}x");
    }
    if let Some(x) = report.faas_over_burst {
        println!("FaaS-style stages / burst (both with the index cached): {x:.2}x");
    }
    Ok(())
}
