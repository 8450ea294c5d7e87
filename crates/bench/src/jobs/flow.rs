//! Workflows measured (`volley bench flow`): fork-join of many tasks against
//! the same tasks as one plain burst, trigger throughput against the no-op
//! rate, step-to-step latency along a chain against a client driving the same
//! chain, all in one run on one platform. Every run's output is checked.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};
use volley_client::Client;
use volley_proto::api::{Burst, BurstRequest, Granularity};
use volley_proto::flow::{Action, CloudEvent, Condition, Match, Run, RunState, TriggerRequest, WorkflowKind};

use crate::stats::Percentiles;
use crate::{Error, Result};

/// How long one measured workflow may take.
const RUN_LIMIT: Duration = Duration::from_secs(1800);

/// What is measured.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Tasks of the fork-join packed into bursts (the plain burst, the map step).
    pub tasks: usize,
    /// Tasks of the fork-join as a process each (a burst of g = 1, a step per task).
    pub separate_tasks: usize,
    /// Events joined by one trigger.
    pub events: usize,
    /// Steps of the chain.
    pub chain: usize,
    /// Concurrent clients sending events.
    pub clients: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub fork_join: Vec<ForkJoin>,
    pub triggers: Triggers,
    pub chain: Vec<Chain>,
}

/// One way of running `tasks` one-worker tasks and a join after them.
#[derive(Debug, Clone, Serialize)]
pub struct ForkJoin {
    pub how: String,
    pub tasks: usize,
    pub seconds: f64,
    /// Extra time per task over the plain burst of the same packing.
    pub overhead_per_task_ms: Option<f64>,
    /// From the last task's end to the join's burst submitted / running.
    pub join_submitted_ms: Option<f64>,
    pub join_running_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Triggers {
    pub events: usize,
    pub clients: usize,
    /// Events into one join trigger, until it fired.
    pub joined_per_second: f64,
    /// Events no trigger listens to (logged only).
    pub no_op_per_second: f64,
}

/// A chain of one-worker steps, each starting when the one before ends.
#[derive(Debug, Clone, Serialize)]
pub struct Chain {
    pub how: String,
    pub steps: usize,
    pub seconds: f64,
    /// From a step's burst ending to the next step's burst submitted.
    pub submit_p50_ms: f64,
    pub submit_p99_ms: f64,
    /// From a step's burst ending to the next step's worker running.
    pub running_p50_ms: f64,
    pub running_p99_ms: f64,
}

/// Runs every part of `plan` on the platform of `client`; `volley` is the CLI
/// binary for the shell-script baseline (none: that baseline is left out).
pub async fn run(client: &Client, plan: &Plan, volley: Option<&Path>) -> Result<Report> {
    if plan.tasks == 0 || plan.separate_tasks == 0 || plan.events == 0 || plan.chain < 2 || plan.clients == 0 {
        return Err(Error::Invalid(
            "--tasks, --separate-tasks, --events and --clients must be at least 1, --chain at least 2".into(),
        ));
    }
    let tag = format!("{:08x}", rand::random::<u32>());
    let fork_join = fork_join(client, plan.tasks, plan.separate_tasks, &tag).await?;
    let triggers = triggers(client, plan.events, plan.clients, &tag).await?;
    let chain = chain(client, plan.chain, &tag, volley).await?;
    Ok(Report { fork_join, triggers, chain })
}

fn one_worker(function: &str, workers: usize, granularity: Granularity) -> BurstRequest {
    BurstRequest {
        function: function.into(),
        workers,
        granularity,
        // A pack per worker meets the others through Redis (FaaS mode), not a mesh of sockets.
        transport: (granularity == Granularity::Fixed(1) && workers > 1).then(|| "redis".to_string()),
        params: Value::Null,
        worker_params: None,
        timeout_secs: Some(600.0),
        queue_timeout_secs: Some(600.0),
        memory_mb: None,
        retries: None,
        idempotency_key: None,
        session: None,
    }
}

/// Deploys `dag` (JSON is YAML) as `name`, runs it with no input, checks it succeeded.
async fn run_dag(client: &Client, name: &str, dag: &Value) -> Result<(Run, Duration)> {
    client.deploy_workflow(name, WorkflowKind::Dag, &dag.to_string(), "volley bench flow").await?;
    let started = Instant::now();
    let run = client.start_run(name, Value::Null).await?;
    let run = client.wait_run_until_final(&run.id, RUN_LIMIT).await?;
    let took = started.elapsed();
    if run.state != RunState::Succeeded {
        return Err(Error::Invalid(format!(
            "run {} of {name} {}: {}",
            run.id,
            run.state.name(),
            run.error.unwrap_or_default()
        )));
    }
    Ok((run, took))
}

async fn step_burst(client: &Client, run: &Run, step: &str) -> Result<Burst> {
    let id = run
        .steps
        .get(step)
        .and_then(|s| s.bursts.last())
        .ok_or_else(|| Error::Invalid(format!("step {step} has no burst")))?;
    Ok(client.burst(id).await?)
}

fn between(from: u64, to: Option<u64>) -> Option<f64> {
    to.map(|t| t.saturating_sub(from) as f64 / 1e3)
}

/// `tasks` tasks as one packed burst and as one map step; `separate` tasks
/// as a burst of one process per task and as a step per task; each workflow
/// followed by a join.
async fn fork_join(client: &Client, tasks: usize, separate: usize, tag: &str) -> Result<Vec<ForkJoin>> {
    let mut out = Vec::new();
    let mut plain = std::collections::HashMap::new();
    for (how, g, tasks) in [
        ("plain burst, packed", Granularity::Auto, tasks),
        ("plain burst, a process per task (redis)", Granularity::Fixed(1), separate),
    ] {
        let started = Instant::now();
        let burst = client.run_to_success(&one_worker("hello", tasks, g), RUN_LIMIT).await?;
        let seconds = started.elapsed().as_secs_f64();
        if burst.workers.iter().filter(|w| w.result.is_some()).count() != tasks {
            return Err(Error::Invalid(format!("the plain burst {} returned fewer than {tasks} results", burst.id)));
        }
        plain.insert(g == Granularity::Auto, seconds);
        out.push(ForkJoin {
            how: how.into(),
            tasks,
            seconds,
            overhead_per_task_ms: None,
            join_submitted_ms: None,
            join_running_ms: None,
        });
    }
    // One map step (the tasks packed into one burst by the platform), then the join.
    let items: Vec<Value> = (0..tasks).map(|i| json!({"item": i})).collect();
    let map = json!({"steps": {
        "fan": {"kind": "map", "function": "hello", "items": items},
        "join": {"needs": ["fan"], "kind": "task", "function": "hello"},
    }});
    let (run, took) = run_dag(client, &format!("bench-map-{tag}"), &map).await?;
    let fan = step_burst(client, &run, "fan").await?;
    let join = step_burst(client, &run, "join").await?;
    let outputs = run.steps["fan"].output.as_array().map(Vec::len).unwrap_or(0);
    if outputs != tasks {
        return Err(Error::Invalid(format!("the map step returned {outputs} results for {tasks} items")));
    }
    let last = fan.finished_at.unwrap_or_default();
    out.push(ForkJoin {
        how: "workflow: one map step + join".into(),
        tasks,
        seconds: took.as_secs_f64(),
        overhead_per_task_ms: Some((took.as_secs_f64() - plain[&true]) * 1e3 / tasks as f64),
        join_submitted_ms: between(last, Some(join.submitted_at)),
        join_running_ms: between(last, join.running_at),
    });
    // Every task a step of its own (a burst each), then a join needing them all.
    let tasks = separate;
    let mut steps = serde_json::Map::new();
    for i in 0..tasks {
        steps.insert(format!("t{i}"), json!({"kind": "task", "function": "hello"}));
    }
    let needs: Vec<String> = (0..tasks).map(|i| format!("t{i}")).collect();
    steps.insert("join".into(), json!({"needs": needs, "kind": "task", "function": "hello"}));
    let (run, took) = run_dag(client, &format!("bench-tasks-{tag}"), &json!({"steps": steps})).await?;
    let mut last = 0;
    for i in 0..tasks {
        last = last.max(step_burst(client, &run, &format!("t{i}")).await?.finished_at.unwrap_or_default());
    }
    let join = step_burst(client, &run, "join").await?;
    out.push(ForkJoin {
        how: "workflow: a step per task + join".into(),
        tasks,
        seconds: took.as_secs_f64(),
        overhead_per_task_ms: Some((took.as_secs_f64() - plain[&false]) * 1e3 / tasks as f64),
        join_submitted_ms: between(last, Some(join.submitted_at)),
        join_running_ms: between(last, join.running_at),
    });
    Ok(out)
}

/// `events` events sent by `clients` clients in batches of 1000: joined by
/// one trigger, then of a type nobody listens to.
async fn triggers(client: &Client, events: usize, clients: usize, tag: &str) -> Result<Triggers> {
    let kind = format!("bench.item.{tag}");
    let trigger = TriggerRequest {
        id: format!("bench-join-{tag}"),
        matcher: Match { kind: kind.clone(), source: None, subject: None },
        condition: Condition::Join { count: Some(events as u64), count_from: None, key: None, among: None },
        actions: vec![Action::Emit {
            event: Box::new(CloudEvent::new(
                format!("joined-{tag}"),
                "volley/bench",
                &format!("bench.joined.{tag}"),
                None,
                Value::Null,
            )),
        }],
        context: Value::Null,
        once: false,
    };
    client.create_trigger(&trigger).await?;
    let joined = send_all(client, events, clients, &kind).await?;
    let fired = client.triggers().await?.into_iter().find(|t| t.id == trigger.id).map(|t| (t.fired, t.context));
    client.delete_trigger(&trigger.id).await?;
    match fired {
        Some((1, context)) if context["count"] == json!(events) => {}
        other => {
            return Err(Error::Invalid(format!(
                "the join trigger should have fired once on {events} events: {other:?}"
            )));
        }
    }
    let no_op = send_all(client, events, clients, &format!("bench.nobody.{tag}")).await?;
    Ok(Triggers {
        events,
        clients,
        joined_per_second: events as f64 / joined.as_secs_f64(),
        no_op_per_second: events as f64 / no_op.as_secs_f64(),
    })
}

/// Sends `events` events of `kind`; returns when all are durable.
async fn send_all(client: &Client, events: usize, clients: usize, kind: &str) -> Result<Duration> {
    const BATCH: usize = 1000;
    let batches: Vec<Vec<CloudEvent>> = (0..events)
        .step_by(BATCH)
        .map(|from| {
            (from..(from + BATCH).min(events))
                .map(|i| CloudEvent::new(format!("{kind}-{i}"), "volley/bench", kind, None, json!({"i": i})))
                .collect()
        })
        .collect();
    let started = Instant::now();
    let mut senders = Vec::new();
    for c in 0..clients {
        let mine: Vec<Vec<CloudEvent>> = batches.iter().skip(c).step_by(clients).cloned().collect();
        let client = client.clone();
        senders.push(tokio::spawn(async move {
            let mut accepted = 0;
            for batch in mine {
                accepted += client.send_events(batch).await?.accepted;
            }
            Ok::<usize, Error>(accepted)
        }));
    }
    let mut accepted = 0;
    for s in senders {
        accepted += s.await.map_err(|e| Error::Invalid(format!("a sender failed: {e}")))??;
    }
    let took = started.elapsed();
    if accepted != events {
        return Err(Error::Invalid(format!("{accepted} of {events} events were accepted")));
    }
    Ok(took)
}

/// A chain of `steps` one-worker steps as a workflow, driven by this client,
/// and (with `volley`) by a shell script of `volley run` calls.
async fn chain(client: &Client, steps: usize, tag: &str, volley: Option<&Path>) -> Result<Vec<Chain>> {
    let mut dag = serde_json::Map::new();
    for i in 0..steps {
        let needs: Vec<String> = if i == 0 { Vec::new() } else { vec![format!("s{}", i - 1)] };
        dag.insert(format!("s{i}"), json!({"needs": needs, "kind": "task", "function": "hello"}));
    }
    let (run, took) = run_dag(client, &format!("bench-chain-{tag}"), &json!({"steps": dag})).await?;
    let mut bursts = Vec::new();
    for i in 0..steps {
        bursts.push(step_burst(client, &run, &format!("s{i}")).await?);
    }
    let mut out = vec![latencies("workflow (in the controller)", &bursts, took)];

    let started = Instant::now();
    let mut driven = Vec::new();
    for _ in 0..steps {
        driven.push(client.run_to_success(&one_worker("hello", 1, Granularity::Fixed(1)), RUN_LIMIT).await?);
    }
    out.push(latencies("a client submitting and waiting", &driven, started.elapsed()));

    if let Some(volley) = volley {
        let ids = shell_chain(client, volley, steps).await?;
        let mut scripted = Vec::new();
        for id in &ids.0 {
            scripted.push(client.burst(id).await?);
        }
        out.push(latencies("a shell script of `volley run`", &scripted, ids.1));
    }
    Ok(out)
}

/// Runs `steps` calls of `volley run hello -n 1` one after another from `sh`; their burst ids.
async fn shell_chain(client: &Client, volley: &Path, steps: usize) -> Result<(Vec<String>, Duration)> {
    let url = client.base().to_string();
    let exe = volley.to_path_buf();
    let key = client.secret().map(String::from);
    tokio::task::spawn_blocking(move || {
        let script = format!(
            "for i in $(seq {steps}); do \"$VOLLEY\" run hello -n 1 -g 1 --output json | sed -n 's/^  \"id\": \"\\(.*\\)\",$/\\1/p' || exit 1; done"
        );
        let started = Instant::now();
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", &script]).env("VOLLEY", &exe).env("VOLLEY_CONTROLLER", &url);
        match key {
            Some(k) => cmd.env("VOLLEY_API_KEY", k),
            None => cmd.env_remove("VOLLEY_API_KEY"),
        };
        let out = cmd.output().map_err(|e| Error::Invalid(format!("cannot run sh: {e}")))?;
        let took = started.elapsed();
        if !out.status.success() {
            return Err(Error::Invalid(format!("the shell chain failed: {}", String::from_utf8_lossy(&out.stderr))));
        }
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
        if ids.len() != steps {
            return Err(Error::Invalid(format!("the shell chain ran {} of {steps} bursts", ids.len())));
        }
        Ok((ids, took))
    })
    .await
    .map_err(|e| Error::Invalid(format!("the shell chain's thread failed: {e}")))?
}

/// Step-to-step latencies of bursts that ran one after another.
fn latencies(how: &str, bursts: &[Burst], took: Duration) -> Chain {
    let mut submit = Vec::new();
    let mut running = Vec::new();
    for pair in bursts.windows(2) {
        let end = pair[0].finished_at.unwrap_or_default();
        submit.push(Duration::from_micros(pair[1].submitted_at.saturating_sub(end)));
        running.push(Duration::from_micros(pair[1].running_at.unwrap_or_default().saturating_sub(end)));
    }
    let (s, r) = (Percentiles::of(&submit), Percentiles::of(&running));
    Chain {
        how: how.into(),
        steps: bursts.len(),
        seconds: took.as_secs_f64(),
        submit_p50_ms: s.p50_us / 1e3,
        submit_p99_ms: s.p99_us / 1e3,
        running_p50_ms: r.p50_us / 1e3,
        running_p99_ms: r.p99_us / 1e3,
    }
}

/// A platform the benchmark may restart (the controller on the same store).
pub trait Restartable: Send {
    /// A client of the platform as it is now.
    fn client(&self) -> Result<Client>;
    /// Stops the platform.
    fn stop(&mut self) -> futures::future::BoxFuture<'_, ()>;
    /// Starts it again on the same state.
    fn start(&mut self) -> futures::future::BoxFuture<'_, Result<()>>;
}

/// What a controller restart in the middle of a run costs.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    pub steps: usize,
    /// Stopping the platform (its packs stopped, its store let go).
    pub stop_ms: f64,
    /// From the start to the API answering again (the store read back, the engine recovered).
    pub restart_ms: f64,
    /// From the start to a step's burst running again.
    pub resumed_ms: f64,
    /// Bursts started twice for one step attempt (must be 0).
    pub duplicated: usize,
    pub retried_steps: usize,
}

/// A chain of `steps` sleeping steps; the platform restarted while the third runs.
pub async fn recovery(platform: &mut dyn Restartable, steps: usize) -> Result<Recovery> {
    let client = platform.client()?;
    let mut dag = serde_json::Map::new();
    for i in 0..steps {
        let needs: Vec<String> = if i == 0 { Vec::new() } else { vec![format!("s{i}", i = i - 1)] };
        dag.insert(
            format!("s{i}"),
            json!({"needs": needs, "function": "sleep", "workers": 2, "retries": 2, "backoff_secs": 0.01,
                   "params": {"seconds": 0.3}}),
        );
    }
    let name = format!("bench-recovery-{:08x}", rand::random::<u32>());
    client.deploy_workflow(&name, WorkflowKind::Dag, &json!({"steps": dag}).to_string(), "volley bench flow").await?;
    let run = client.start_run(&name, Value::Null).await?;
    let third = loop {
        let r = client.run(&run.id).await?;
        if let Some(b) = r.steps.get("s2").and_then(|s| s.bursts.last())
            && client.burst(b).await?.running_at.is_some()
        {
            break b.clone();
        }
        if r.state.is_final() {
            return Err(Error::Invalid(format!("the run ended before the restart: {:?}", r.error)));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let stopping = Instant::now();
    platform.stop().await;
    let stop_ms = stopping.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    platform.start().await?;
    let restart_ms = started.elapsed().as_secs_f64() * 1e3;
    let client = platform.client()?;
    // Running again: a burst of the run (other than the one cut off) is running.
    let resumed_ms = loop {
        let r = client.run(&run.id).await?;
        let mut running = false;
        for s in r.steps.values() {
            if let Some(b) = s.bursts.last()
                && *b != third
                && client.burst(b).await?.state == volley_proto::api::BurstState::Running
            {
                running = true;
            }
        }
        if running || r.state.is_final() {
            break started.elapsed().as_secs_f64() * 1e3;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let done = client.wait_run_until_final(&run.id, RUN_LIMIT).await?;
    if done.state != RunState::Succeeded {
        return Err(Error::Invalid(format!("the run did not survive the restart: {:?}", done.error)));
    }
    let mut keys = std::collections::HashMap::new();
    for b in client.list(1000).await? {
        if let Some(k) = b.request.idempotency_key.filter(|k| k.starts_with(&format!("run/{}/", run.id))) {
            *keys.entry(k).or_insert(0usize) += 1;
        }
    }
    let duplicated = keys.values().map(|n| n - 1).sum();
    let retried_steps = done.steps.values().filter(|s| s.attempts > 1).count();
    Ok(Recovery { steps, stop_ms, restart_ms, resumed_ms, duplicated, retried_steps })
}
