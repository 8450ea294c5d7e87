//! `volley run FUNCTION --workers N --granularity G`: one burst, its results printed.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use volley_proto::api::{Burst, BurstRequest, BurstState, Granularity};

use super::platform::{PlatformArgs, with_platform};
use super::{Output, Target, show};
use volley_client::Client;

#[derive(Args)]
pub struct RunArgs {
    /// The function to run (`volley functions list`).
    function: String,
    /// N: how many workers.
    #[arg(long, short = 'n')]
    workers: usize,
    /// Workers per pack, or `auto` (the largest packs that fit).
    #[arg(long, short = 'g', default_value = "auto")]
    granularity: Granularity,
    /// tcp, uds, shm, redis, redis-streams, rabbitmq, nats, s3 (default: shm on one host, tcp across hosts).
    #[arg(long)]
    transport: Option<String>,
    /// Parameters for every worker: JSON, or @FILE to read it from a file.
    #[arg(long)]
    params: Option<String>,
    /// One JSON array with a value per worker, or @FILE.
    #[arg(long)]
    worker_params: Option<String>,
    /// Longest the burst may run, in seconds.
    #[arg(long)]
    timeout: Option<f64>,
    /// Longest the burst may wait for capacity, in seconds.
    #[arg(long)]
    queue_timeout: Option<f64>,
    /// Run a failed burst again, whole, up to this many times.
    #[arg(long)]
    retries: Option<u32>,
    /// Print the burst id and return without waiting.
    #[arg(long)]
    detach: bool,
    #[command(flatten)]
    platform: PlatformArgs,
}

pub(super) fn json_arg(value: &Option<String>, what: &str) -> anyhow::Result<Option<serde_json::Value>> {
    let Some(v) = value else { return Ok(None) };
    let text = match v.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read {what} from {path}"))?,
        None => v.clone(),
    };
    serde_json::from_str(&text).map(Some).with_context(|| format!("{what} is not valid JSON: {text}"))
}

pub fn run(args: RunArgs, target: &Target, output: Output) -> anyhow::Result<()> {
    let worker_params = match json_arg(&args.worker_params, "--worker-params")? {
        None => None,
        Some(serde_json::Value::Array(list)) => Some(list),
        Some(_) => bail!("--worker-params must be a JSON array with one value per worker"),
    };
    let request = BurstRequest {
        function: args.function.clone(),
        workers: args.workers,
        granularity: args.granularity,
        transport: args.transport.clone(),
        params: json_arg(&args.params, "--params")?.unwrap_or_default(),
        worker_params,
        timeout_secs: args.timeout,
        queue_timeout_secs: args.queue_timeout,
        memory_mb: None,
        retries: args.retries,
        idempotency_key: None,
        session: None,
    };
    run_request(&request, &args.platform, target, args.detach, output)
}

/// Runs `request` on the target's controller, or on an embedded platform made
/// with `platform` when there is none, and follows it to its end.
pub(super) fn run_request(
    request: &BurstRequest,
    platform: &PlatformArgs,
    target: &Target,
    detach: bool,
    output: Output,
) -> anyhow::Result<()> {
    if detach {
        if target.controller.is_none() {
            bail!("--detach needs a running controller (--controller URL or VOLLEY_CONTROLLER)");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let client = target.client()?;
        let burst = runtime.block_on(client.submit(request))?;
        println!("{}", burst.id);
        return Ok(());
    }
    run_in_order(std::slice::from_ref(request), platform, target, output)
}

/// Runs `requests` one after another on one platform (the target's
/// controller, or one embedded platform for all of them), each submitted
/// when the one before has succeeded; the first that does not succeed ends
/// the run with its error. Text output shows each burst as it ends; JSON
/// output is the burst, or an array of them when there are several.
pub(super) fn run_in_order(
    requests: &[BurstRequest],
    platform: &PlatformArgs,
    target: &Target,
    output: Output,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let follow_all = |client: Client| async move {
        let mut ended = Vec::new();
        let mut failed = None;
        for request in requests {
            let burst = client.submit(request).await?;
            let burst = follow(&client, &burst.id).await?;
            if output != Output::Json {
                show::burst(&burst, output)?;
            }
            if burst.state != BurstState::Succeeded {
                let why = burst.error.as_deref().unwrap_or("no reason given");
                failed = Some(anyhow::anyhow!("burst {} {}: {why}", burst.id, burst.state.name()));
            }
            ended.push(burst);
            if failed.is_some() {
                break;
            }
        }
        if output == Output::Json {
            match ended.as_slice() {
                [one] => show::burst(one, output)?,
                all => println!("{}", serde_json::to_string_pretty(all)?),
            }
        }
        failed.map_or(Ok(()), Err)
    };
    runtime.block_on(async {
        match &target.controller {
            Some(_) => follow_all(target.client()?).await,
            None => with_platform(platform, |url| async move { follow_all(target.client_at(&url)?).await }).await,
        }
    })
}

/// Waits for the burst to end, with a progress bar on a terminal; Ctrl-C cancels it.
async fn follow(client: &Client, id: &str) -> anyhow::Result<Burst> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} finished")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut interrupted = false;
    loop {
        let wait = if bar.is_some() { Duration::from_millis(100) } else { Duration::from_secs(5) };
        let burst = tokio::select! {
            b = client.wait(id, wait) => b?,
            _ = tokio::signal::ctrl_c(), if !interrupted => {
                interrupted = true;
                eprintln!("cancelling burst {id} ...");
                let _ = client.cancel(id).await;
                continue;
            }
        };
        if let Some(bar) = &bar {
            let placed = burst.workers.iter().filter(|w| w.pack.is_some()).count();
            let started = burst.workers.iter().filter(|w| w.started_at.is_some()).count();
            let finished = burst.workers.iter().filter(|w| w.finished_at.is_some()).count();
            bar.set_length(burst.workers.len() as u64);
            bar.set_position(finished as u64);
            bar.set_message(format!("{} {}: {placed} placed, {started} started", burst.id, burst.state.name()));
            bar.tick();
        }
        if burst.state.is_final() {
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            return Ok(burst);
        }
    }
}
