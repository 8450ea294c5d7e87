//! `volley bench python`: the Python package measured beside its baselines
//! (`python/volley/bench.py` does the measuring; this starts the platform it
//! runs on, whose invoker runs Python workers with `--python`).

use clap::Args;

use super::platform::{PlatformArgs, with_platform};
use super::{Output, Target};

#[derive(Args)]
pub struct PythonArgs {
    /// Trivial calls of the map (compared with multiprocessing.Pool).
    #[arg(long, default_value_t = 1000)]
    calls: usize,
    /// Workers per pack of the map.
    #[arg(long, default_value_t = 50)]
    map_granularity: usize,
    /// Workers of the start measurement, and their packs' size.
    #[arg(long, default_value_t = 64)]
    start_workers: usize,
    #[arg(long, default_value_t = 16)]
    start_granularity: usize,
    #[arg(long, default_value_t = 10)]
    start_runs: usize,
    /// Workers of the all_to_all, their packs' size, and the bytes per pair.
    #[arg(long, default_value_t = 16)]
    a2a_workers: usize,
    #[arg(long, default_value_t = 8)]
    a2a_granularity: usize,
    #[arg(long, default_value_t = 1 << 20)]
    a2a_bytes: usize,
    /// A Python with Lithops installed: the map's calls also run on its localhost executor.
    #[arg(long)]
    lithops: Option<String>,
    #[command(flatten)]
    platform: PlatformArgs,
}

pub fn run(args: PythonArgs, target: &Target, output: Output) -> anyhow::Result<()> {
    let python = args.platform.invoker.python.clone();
    let measure = |url: String| {
        let mut cmd = std::process::Command::new(&python);
        cmd.args(["-m", "volley.bench", "--controller", &url]);
        for (flag, value) in [
            ("--calls", args.calls),
            ("--map-granularity", args.map_granularity),
            ("--start-workers", args.start_workers),
            ("--start-granularity", args.start_granularity),
            ("--start-runs", args.start_runs),
            ("--a2a-workers", args.a2a_workers),
            ("--a2a-granularity", args.a2a_granularity),
            ("--a2a-bytes", args.a2a_bytes),
        ] {
            cmd.args([flag.to_string(), value.to_string()]);
        }
        if let Some(lithops) = &args.lithops {
            cmd.args(["--lithops", lithops]);
        }
        if let Some(key) = &target.api_key {
            cmd.args(["--api-key", key]);
        }
        if output == Output::Json {
            cmd.arg("--json");
        }
        let status = cmd
            .status()
            .map_err(|e| anyhow::anyhow!("cannot run {python} -m volley.bench: {e} (give the Python the volley package is installed for with --python)"))?;
        anyhow::ensure!(status.success(), "{python} -m volley.bench failed ({status})");
        Ok(())
    };
    match &target.controller {
        Some(url) => measure(url.clone()),
        None => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            // The measuring process blocks this thread; the platform runs on the others.
            runtime.block_on(with_platform(&args.platform, |url| async move {
                tokio::task::block_in_place(|| measure(url))
            }))
        }
    }
}
