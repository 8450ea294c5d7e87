//! `volley bench flow`: workflows measured against their baselines in one run
//! (fork-join vs the plain burst, trigger throughput vs the no-op rate, a
//! chain of steps vs a client and a shell script driving the same chain).

use clap::Args;
use volley_bench::jobs::flow::{self, Plan, Report};

use super::platform::{PlatformArgs, with_platform};
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
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    Ok(())
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
