//! `volley bench flow`: workflows measured against their baselines in one run
//! (fork-join vs the plain burst, trigger throughput vs the no-op rate, a
//! chain of steps vs a client and a shell script driving the same chain).

use std::path::PathBuf;

use clap::Args;
use volley_bench::jobs::flow::{self, Plan, Recovery, Report, Restartable};

use super::platform::{Embedded, PlatformArgs, with_platform};
use super::{Output, Target};

#[derive(Args)]
pub struct FlowArgs {
    /// One-worker tasks of the fork-join packed into bursts (plain burst, map step).
    #[arg(long, default_value_t = 1000)]
    tasks: usize,
    /// One-worker tasks of the fork-join as a process each (plain burst of g = 1, a step per task).
    #[arg(long, default_value_t = 200)]
    separate_tasks: usize,
    /// Events joined by one trigger (and sent again to nobody, for the no-op rate).
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Steps of the chain.
    #[arg(long, default_value_t = 100)]
    chain: usize,
    /// Concurrent clients sending events.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Steps of the chain a controller restart cuts (embedded platform only; 0: not measured).
    #[arg(long, default_value_t = 10)]
    recovery_steps: usize,
    #[command(flatten)]
    platform: PlatformArgs,
}

pub fn run(args: FlowArgs, target: &Target, output: Output) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let plan = Plan {
        tasks: args.tasks,
        separate_tasks: args.separate_tasks,
        events: args.events,
        chain: args.chain,
        clients: args.clients,
    };
    let volley = std::env::current_exe().ok();
    let (plan, volley) = (&plan, volley.as_deref());
    let report = match &target.controller {
        Some(_) => {
            runtime.block_on(async { Ok::<_, anyhow::Error>(flow::run(&target.client()?, plan, volley).await?) })?
        }
        None => runtime.block_on(with_platform(&args.platform, |url| async move {
            Ok(flow::run(&target.client_at(&url)?, plan, volley).await?)
        }))?,
    };
    // A restart needs a platform of the benchmark's own.
    let recovery = match (&target.controller, args.recovery_steps) {
        (None, steps) if steps >= 4 => Some(runtime.block_on(measure_recovery(&args.platform, target, steps))?),
        _ => None,
    };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"report": report, "recovery": recovery}))?);
    } else {
        print(&report);
        if let Some(r) = recovery {
            println!(
                "platform stopped while step 3 of {} ran ({:.0} ms to stop), then started: API back after {:.0} ms, a step running again after {:.0} ms; {} step(s) retried, {} burst(s) started twice",
                r.steps, r.stop_ms, r.restart_ms, r.resumed_ms, r.retried_steps, r.duplicated
            );
        }
    }
    Ok(())
}

/// An embedded platform on a directory of its own, restarted on the same state.
struct Restarting<'a> {
    args: &'a PlatformArgs,
    target: &'a Target,
    dir: PathBuf,
    platform: Option<Embedded>,
}

impl Restartable for Restarting<'_> {
    fn client(&self) -> volley_bench::Result<volley_client::Client> {
        let url = self.platform.as_ref().map(|p| p.url().to_string()).unwrap_or_default();
        self.target.client_at(&url).map_err(|e| volley_bench::Error::Invalid(e.to_string()))
    }

    fn stop(&mut self) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(p) = self.platform.take() {
                p.stop().await;
            }
            // Stopped once its tasks have let go of the store (they end just after
            // the server; an embedded store is locked until then).
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            let store = self.dir.join("controller").join("state.redb");
            while store.exists() && tokio::time::Instant::now() < deadline && redb::Database::open(&store).is_err() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
    }

    fn start(&mut self) -> futures::future::BoxFuture<'_, volley_bench::Result<()>> {
        Box::pin(async move {
            let started = Embedded::start("127.0.0.1:0", &self.dir, self.args).await;
            self.platform = Some(started.map_err(|e| volley_bench::Error::Invalid(e.to_string()))?);
            Ok(())
        })
    }
}

async fn measure_recovery(args: &PlatformArgs, target: &Target, steps: usize) -> anyhow::Result<Recovery> {
    let dir = std::env::temp_dir().join(format!("volley-recovery-{:08x}", rand::random::<u32>()));
    let platform = Embedded::start("127.0.0.1:0", &dir, args).await?;
    let mut r = Restarting { args, target, dir: dir.clone(), platform: Some(platform) };
    let measured = flow::recovery(&mut r, steps).await;
    if let Some(p) = r.platform.take() {
        p.stop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(measured?)
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into())
}

fn print(r: &Report) {
    println!("fork-join of one-worker tasks (overhead: over the plain burst of the same packing)");
    println!(
        "  {:<42} {:>6} {:>8} {:>14} {:>16} {:>14}",
        "how", "tasks", "seconds", "overhead/task", "join submitted", "join running"
    );
    for f in &r.fork_join {
        println!(
            "  {:<42} {:>6} {:>8.2} {:>11} ms {:>13} ms {:>11} ms",
            f.how,
            f.tasks,
            f.seconds,
            opt(f.overhead_per_task_ms),
            opt(f.join_submitted_ms),
            opt(f.join_running_ms)
        );
    }
    let t = &r.triggers;
    println!(
        "trigger throughput, {} events from {} clients: joined by one trigger {:.0} events/s; no trigger (logged only) {:.0} events/s",
        t.events, t.clients, t.joined_per_second, t.no_op_per_second
    );
    println!(
        "chain of {} one-worker steps (ms from a step's end to the next step)",
        r.chain.first().map(|c| c.steps).unwrap_or(0)
    );
    println!(
        "  {:<42} {:>8} {:>12} {:>12} {:>12} {:>12}",
        "driven by", "seconds", "submit p50", "submit p99", "running p50", "running p99"
    );
    for c in &r.chain {
        println!(
            "  {:<42} {:>8.2} {:>12.2} {:>12.2} {:>12.2} {:>12.2}",
            c.how, c.seconds, c.submit_p50_ms, c.submit_p99_ms, c.running_p50_ms, c.running_p99_ms
        );
    }
}
