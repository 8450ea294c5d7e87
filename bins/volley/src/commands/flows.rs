//! `volley flow ...` (workflows of bursts), `volley events ...`, `volley triggers list`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use volley_client::Client;
use volley_proto::flow::{CloudEvent, Run, RunState, WorkflowKind};

use super::platform::{PlatformArgs, with_platform};
use super::run::json_arg;
use super::{Output, Target};

#[derive(Subcommand)]
pub enum Flow {
    /// Deploy (or replace) a workflow from a file: a DAG (YAML or JSON) or a
    /// state machine in Amazon States Language (told apart by its `StartAt`).
    Deploy {
        name: String,
        file: std::path::PathBuf,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Start a run and follow it to its end. WORKFLOW is a deployed name, or
    /// a DAG file: deployed first under its file name (without a controller,
    /// on an embedded platform for the command).
    Run(Box<RunFlowArgs>),
    /// Your deployed workflows.
    List,
    /// One workflow's definition, or one run (as `status`) given a run id.
    Show { name: String },
    /// Remove a workflow (none of its runs may be going).
    Delete { name: String },
    /// Your runs, newest first.
    Runs {
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One run: every step's state, attempts, seconds, bursts and errors.
    Status { run: String },
    /// Cancel a run: its running bursts are cancelled, no further step starts.
    Cancel { run: String },
}

#[derive(Args)]
pub struct RunFlowArgs {
    workflow: String,
    /// The run's input (`${input...}` in the definition): JSON, or @FILE.
    #[arg(long)]
    input: Option<String>,
    /// Print the run id and return without waiting.
    #[arg(long)]
    detach: bool,
    /// Longest to follow the run, in seconds (it goes on after that).
    #[arg(long, default_value_t = 3600.0)]
    timeout: f64,
    #[command(flatten)]
    platform: PlatformArgs,
}

#[derive(Subcommand)]
pub enum Events {
    /// Send one event (CloudEvents 1.0), or those of a JSON file (one event or a list).
    Send(SendArgs),
    /// The logged events, oldest first.
    List {
        /// Only those after this position.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[derive(Args)]
pub struct SendArgs {
    /// The event's type.
    #[arg(long = "type", required_unless_present = "file")]
    kind: Option<String>,
    #[arg(long, default_value = "cli")]
    source: String,
    #[arg(long)]
    subject: Option<String>,
    /// Its id (default: a fresh one). Sending an id again is applied once.
    #[arg(long)]
    id: Option<String>,
    /// Its data: JSON, or @FILE.
    #[arg(long)]
    data: Option<String>,
    /// Events as JSON (one or a list) instead of the flags.
    #[arg(long, conflicts_with_all = ["kind", "subject", "id", "data"])]
    file: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
pub enum Triggers {
    /// Your triggers and their context.
    List,
    /// Make a trigger from a JSON file (`{"id", "match", "condition", "actions", "context", "once"}`).
    Create { file: std::path::PathBuf },
    /// Remove a trigger you made.
    Delete { id: String },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

impl Flow {
    pub fn run(self, target: &Target, output: Output) -> anyhow::Result<()> {
        if let Flow::Run(args) = self {
            return run_flow(*args, target, output);
        }
        let client = target.client()?;
        runtime()?.block_on(async {
            match self {
                Flow::Run(_) => unreachable!("handled above"),
                Flow::Deploy { name, file, description } => {
                    let source = read(&file)?;
                    let w = client.deploy_workflow(&name, kind_of(&source), &source, &description).await?;
                    if output == Output::Json {
                        return print_json(&w);
                    }
                    println!("deployed {}: {} steps ({})", w.name, w.steps.len(), w.steps.join(", "));
                    Ok(())
                }
                Flow::List => {
                    let list = client.workflows().await?;
                    if output == Output::Json {
                        return print_json(&list);
                    }
                    println!("{:<24} {:>5}  description", "name", "steps");
                    for w in list {
                        println!("{:<24} {:>5}  {}", w.name, w.steps.len(), w.description);
                    }
                    Ok(())
                }
                Flow::Show { name } if is_run_id(&name) => show_run(&client.run(&name).await?, output),
                Flow::Show { name } => {
                    let w = client.workflow(&name).await?;
                    if output == Output::Json {
                        return print_json(&w);
                    }
                    println!("# {} ({} steps: {})\n{}", w.name, w.steps.len(), w.steps.join(", "), w.source);
                    Ok(())
                }
                Flow::Delete { name } => {
                    client.delete_workflow(&name).await?;
                    eprintln!("deleted {name}");
                    Ok(())
                }
                Flow::Runs { workflow, limit } => {
                    let runs = client.runs(workflow.as_deref(), limit).await?;
                    if output == Output::Json {
                        return print_json(&runs);
                    }
                    println!("{:<22} {:<20} {:<10} {:>9}  error", "run", "workflow", "state", "seconds");
                    for r in runs {
                        println!(
                            "{:<22} {:<20} {:<10} {:>9}  {}",
                            r.id,
                            r.workflow,
                            r.state.name(),
                            seconds(r.created_at, r.finished_at),
                            r.error.as_deref().unwrap_or("")
                        );
                    }
                    Ok(())
                }
                Flow::Status { run } => show_run(&client.run(&run).await?, output),
                Flow::Cancel { run } => {
                    let r = client.cancel_run(&run).await?;
                    eprintln!("run {} {}", r.id, r.state.name());
                    Ok(())
                }
            }
        })
    }
}

/// A state machine has `StartAt`, a code workflow `function`; anything else is read as a DAG.
fn kind_of(source: &str) -> WorkflowKind {
    let json = serde_json::from_str::<serde_json::Value>(source).ok();
    let has = |field: &str| {
        json.as_ref().is_some_and(|v| v.get(field).is_some())
            || source.lines().any(|l| l.starts_with(&format!("{field}:")))
    };
    if has("StartAt") {
        WorkflowKind::StateMachine
    } else if has("function") && !has("steps") {
        WorkflowKind::Code
    } else {
        WorkflowKind::Dag
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// A DAG file's name as a workflow name: its stem, with other characters as `-`.
fn name_of(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '-' }).collect();
    name.chars().take(64).collect()
}

fn run_flow(args: RunFlowArgs, target: &Target, output: Output) -> anyhow::Result<()> {
    let input = json_arg(&args.input, "--input")?.unwrap_or_default();
    let file = Path::new(&args.workflow);
    let source = if file.is_file() { Some(read(file)?) } else { None };
    let name = if source.is_some() { name_of(file) } else { args.workflow.clone() };
    let limit = Duration::from_secs_f64(args.timeout.max(0.0));
    let detach = args.detach;
    let is_file = source.is_some();
    let work = |client: Client| async move {
        if let Some(source) = &source {
            let w = client.deploy_workflow(&name, kind_of(source), source, "").await?;
            eprintln!("deployed {} ({} steps)", w.name, w.steps.len());
        }
        let run = client.start_run(&name, input).await?;
        if detach {
            println!("{}", run.id);
            return Ok(());
        }
        eprintln!("run {} of {} started", run.id, run.workflow);
        let run = follow(&client, &run.id, limit).await?;
        show_run(&run, output)?;
        match run.state {
            RunState::Succeeded => Ok(()),
            RunState::Failed | RunState::Cancelled => {
                bail!("run {} {}: {}", run.id, run.state.name(), run.error.as_deref().unwrap_or("no reason given"))
            }
            _ => bail!(
                "run {} still {} after {:?}; `volley flow status {}` follows it",
                run.id,
                run.state.name(),
                limit,
                run.id
            ),
        }
    };
    runtime()?.block_on(async {
        match &target.controller {
            Some(_) => work(target.client()?).await,
            None => {
                if !is_file {
                    bail!(
                        "{} is not a file; a deployed workflow needs a running controller (--controller URL or VOLLEY_CONTROLLER)",
                        args.workflow
                    );
                }
                if detach {
                    bail!("--detach needs a running controller (--controller URL or VOLLEY_CONTROLLER)");
                }
                with_platform(&args.platform, |url| async move { work(target.client_at(&url)?).await }).await
            }
        }
    })
}

/// Waits for the run's end, printing each step's changes on stderr.
async fn follow(client: &Client, id: &str, limit: Duration) -> anyhow::Result<Run> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut seen = std::collections::BTreeMap::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let run = client.wait_run(id, left.min(Duration::from_millis(500))).await?;
        for (step, rec) in &run.steps {
            let now = (rec.state, rec.attempts);
            if seen.insert(step.clone(), now) != Some(now) && rec.state != RunState::Waiting {
                let burst = rec.bursts.last().map(|b| format!(" (burst {b})")).unwrap_or_default();
                eprintln!("  {step}: {} attempt {}{burst}", rec.state.name(), rec.attempts);
            }
        }
        if run.state.is_final() || left.is_zero() {
            return Ok(run);
        }
    }
}

/// A run's id as the engine makes them: `r` and 18 hex digits (time and chance).
fn is_run_id(name: &str) -> bool {
    name.len() == 19 && name.starts_with('r') && name[1..].chars().all(|c| c.is_ascii_hexdigit())
}

fn seconds(from: u64, to: Option<u64>) -> String {
    to.map(|t| format!("{:.2}", t.saturating_sub(from) as f64 / 1e6)).unwrap_or_else(|| "-".into())
}

fn show_run(run: &Run, output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        return print_json(run);
    }
    println!("{:<20} {:<10} {:>8} {:>9}  bursts / error", "step", "state", "attempts", "seconds");
    for (name, s) in &run.steps {
        let mut detail = s.errors.last().cloned().unwrap_or_else(|| s.bursts.join(" "));
        if !s.recomputed_at.is_empty() {
            detail.push_str(&format!(
                " (computed again, its output lost with a restart: attempts {:?})",
                s.recomputed_at
            ));
        }
        let secs = s.started_at.map(|t| seconds(t, s.finished_at)).unwrap_or_else(|| "-".into());
        println!("{:<20} {:<10} {:>8} {:>9}  {detail}", name, s.state.name(), s.attempts, secs);
    }
    println!(
        "run {} of {} {} after {} s",
        run.id,
        run.workflow,
        run.state.name(),
        seconds(run.created_at, run.finished_at)
    );
    if let Some(e) = &run.error {
        println!("  error: {e}");
    }
    if let Some(out) = &run.output {
        println!("  output: {out}");
    }
    Ok(())
}

impl Events {
    pub fn run(self, target: &Target, output: Output) -> anyhow::Result<()> {
        let client = target.client()?;
        runtime()?.block_on(async {
            match self {
                Events::Send(args) => {
                    let events = args.events()?;
                    let n = client.send_events(events).await?;
                    if output == Output::Json {
                        return print_json(&n);
                    }
                    println!("{} accepted, {} duplicates (applied before)", n.accepted, n.duplicates);
                    Ok(())
                }
                Events::List { after, limit } => {
                    let events = client.events(after, limit).await?;
                    if output == Output::Json {
                        return print_json(&events);
                    }
                    println!("{:>6} {:<28} {:<20} {:<28} data", "seq", "type", "source", "subject");
                    for e in events {
                        let data = e.event.data.to_string();
                        let data: String = data.chars().take(80).collect();
                        let subject = e.event.subject.as_deref().unwrap_or("-");
                        println!("{:>6} {:<28} {:<20} {:<28} {data}", e.seq, e.event.kind, e.event.source, subject);
                    }
                    Ok(())
                }
            }
        })
    }
}

impl SendArgs {
    fn events(self) -> anyhow::Result<Vec<CloudEvent>> {
        if let Some(file) = &self.file {
            let text = read(file)?;
            let parsed: volley_proto::flow::Events = serde_json::from_str(&text)
                .with_context(|| format!("{} holds neither a CloudEvent nor a list of them", file.display()))?;
            return Ok(parsed.into_vec());
        }
        let kind = self.kind.context("--type is required (or --file)")?;
        let id = self.id.unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
        let data = json_arg(&self.data, "--data")?.unwrap_or_default();
        Ok(vec![CloudEvent::new(id, &self.source, &kind, self.subject, data)])
    }
}

impl Triggers {
    pub fn run(self, target: &Target, output: Output) -> anyhow::Result<()> {
        let client = target.client()?;
        let rt = runtime()?;
        match self {
            Triggers::List => {}
            Triggers::Create { file } => {
                let request = serde_json::from_str(&read(&file)?)
                    .with_context(|| format!("{} is not a trigger (JSON with id, match, actions)", file.display()))?;
                let t = rt.block_on(client.create_trigger(&request))?;
                eprintln!("trigger {} listens for {}", t.id, t.matcher.kind);
                return Ok(());
            }
            Triggers::Delete { id } => {
                rt.block_on(client.delete_trigger(&id))?;
                eprintln!("deleted trigger {id}");
                return Ok(());
            }
        }
        let list = rt.block_on(client.triggers())?;
        if output == Output::Json {
            return print_json(&list);
        }
        println!("{:<40} {:<24} {:>5}  context", "id", "type", "fired");
        for t in list {
            println!("{:<40} {:<24} {:>5}  {}", t.id, t.matcher.kind, t.fired, t.context);
        }
        Ok(())
    }
}

#[derive(Subcommand)]
pub enum Timers {
    /// Events `volley.timer.fired` (subject: the timer's id) every N seconds or on a cron schedule.
    Create {
        id: String,
        /// Every this many seconds.
        #[arg(long, conflicts_with = "cron", required_unless_present = "cron")]
        every: Option<f64>,
        /// A cron schedule with seconds, UTC: `"0 */5 * * * *"` is every five minutes.
        #[arg(long)]
        cron: Option<String>,
        /// Fire this many times, then stop.
        #[arg(long)]
        times: Option<u64>,
        /// The data of each event: JSON, or @FILE.
        #[arg(long)]
        data: Option<String>,
    },
    /// Your timers.
    List,
    /// Remove a timer.
    Delete { id: String },
}

impl Timers {
    pub fn run(self, target: &Target, output: Output) -> anyhow::Result<()> {
        let client = target.client()?;
        let rt = runtime()?;
        match self {
            Timers::Create { id, every, cron, times, data } => {
                let data = json_arg(&data, "--data")?.unwrap_or_default();
                let request = volley_proto::flow::TimerRequest { id, every_secs: every, cron, times, data };
                let t = rt.block_on(client.create_timer(&request))?;
                eprintln!("timer {} fires next at {}", t.id, t.next_at.map(from_now).unwrap_or_else(|| "-".into()));
                Ok(())
            }
            Timers::Delete { id } => {
                rt.block_on(client.delete_timer(&id))?;
                eprintln!("deleted timer {id}");
                Ok(())
            }
            Timers::List => {
                let list = rt.block_on(client.timers())?;
                if output == Output::Json {
                    return print_json(&list);
                }
                println!("{:<24} {:<24} {:>6}  next", "id", "schedule", "fired");
                for t in list {
                    let schedule = t.cron.clone().unwrap_or_else(|| format!("every {} s", t.every_secs.unwrap_or(0.0)));
                    let next = t.next_at.map(from_now).unwrap_or_else(|| "done".into());
                    println!("{:<24} {:<24} {:>6}  {next}", t.id, schedule, t.fired);
                }
                Ok(())
            }
        }
    }
}

/// µs since the Unix epoch as seconds from now.
fn from_now(at: u64) -> String {
    let now = volley_proto::now_micros();
    format!("in {:.1} s", at.saturating_sub(now) as f64 / 1e6)
}

#[derive(Subcommand)]
pub enum Sources {
    /// Events from outside: objects that appear under a storage prefix
    /// (`volley.storage.object.created`, subject: the key), or the messages of a
    /// Redis stream, a RabbitMQ queue or a NATS subject of the platform's brokers.
    Create(SourceArgs),
    /// Your sources.
    List,
    /// Stop watching.
    Delete { id: String },
}

#[derive(Args)]
#[group(skip)]
#[command(group = clap::ArgGroup::new("kind").required(true).multiple(false))]
pub struct SourceArgs {
    id: String,
    /// `s3://bucket/prefix` (or `file:///dir` on a controller without API keys).
    #[arg(long, group = "kind")]
    storage: Option<String>,
    /// How often a storage prefix is listed.
    #[arg(long, default_value_t = 5.0)]
    every: f64,
    /// A Redis stream (with API keys: named NAMESPACE.something).
    #[arg(long, group = "kind")]
    redis_stream: Option<String>,
    /// A RabbitMQ queue.
    #[arg(long, group = "kind")]
    rabbitmq_queue: Option<String>,
    /// A NATS subject.
    #[arg(long, group = "kind")]
    nats_subject: Option<String>,
}

/// What a source watches, in a few words.
fn watched(s: &volley_proto::flow::Source) -> String {
    match (&s.storage, &s.redis_stream, &s.rabbitmq_queue, &s.nats_subject) {
        (Some(st), ..) => format!("{} every {} s", st.url, st.every_secs),
        (_, Some(stream), ..) => format!("redis stream {stream}"),
        (_, _, Some(queue), _) => format!("rabbitmq queue {queue}"),
        (_, _, _, Some(subject)) => format!("nats subject {subject}"),
        _ => "-".into(),
    }
}

impl Sources {
    pub fn run(self, target: &Target, output: Output) -> anyhow::Result<()> {
        let client = target.client()?;
        let rt = runtime()?;
        match self {
            Sources::Create(a) => {
                let storage = a.storage.map(|url| volley_proto::flow::StorageSource { url, every_secs: a.every });
                let request = volley_proto::flow::SourceRequest {
                    id: a.id,
                    storage,
                    redis_stream: a.redis_stream,
                    rabbitmq_queue: a.rabbitmq_queue,
                    nats_subject: a.nats_subject,
                };
                let s = rt.block_on(client.create_source(&request))?;
                eprintln!("source {} watches {}", s.id, watched(&s));
                Ok(())
            }
            Sources::Delete { id } => {
                rt.block_on(client.delete_source(&id))?;
                eprintln!("deleted source {id}");
                Ok(())
            }
            Sources::List => {
                let list = rt.block_on(client.sources())?;
                if output == Output::Json {
                    return print_json(&list);
                }
                println!("{:<20} {:<44} {:>6} {:>9}  error", "id", "watches", "polls", "reported");
                for s in list {
                    let error = s.error.clone().unwrap_or_default();
                    println!("{:<20} {:<44} {:>6} {:>9}  {error}", s.id, watched(&s), s.polls, s.reported);
                }
                Ok(())
            }
        }
    }
}
