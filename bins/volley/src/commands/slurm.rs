//! `volley slurm up/down/grow/shrink/status`: Volley's invokers in Slurm
//! allocations, one per node, joining a controller that runs where the user
//! runs the command (or inside the allocation). The script, the Slurm calls
//! and the state live in `volley-slurm`; this module starts and stops things.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use volley_slurm::state::ScriptSettings;
use volley_slurm::{Allocation, BatchScript, ControllerPlace, Deployment, Process, Role, Slurm};

use super::Output;
use super::certificates;
use super::roles::{create_file, default_data_dir, random_secret, this_host};

#[derive(Subcommand)]
pub enum SlurmCmd {
    /// Submit an allocation of N nodes, one invoker on each, and start their
    /// controller here (or inside the allocation); returns when they have joined.
    Up(Box<UpArgs>),
    /// Drain and end every allocation of the deployment, then stop its controller.
    Down(Where),
    /// Add nodes, each as an allocation of its own (bursts wait for them).
    Grow(Resize),
    /// Release nodes added by `grow`, newest first (their invokers drain and leave).
    Shrink(Resize),
    /// The deployment: its controller, its allocations and their invokers.
    Status(Where),
}

#[derive(Args, Clone)]
pub struct Where {
    /// The deployment's directory, on a filesystem every node mounts
    /// (default: $VOLLEY_DATA_DIR/slurm or ~/.local/share/volley/slurm).
    #[arg(long, env = "VOLLEY_SLURM_DIR")]
    state_dir: Option<PathBuf>,
    /// Seconds to wait for invokers to join or leave.
    #[arg(long, default_value_t = 300)]
    wait: u64,
}

#[derive(Args)]
pub struct Resize {
    #[command(flatten)]
    place: Where,
    /// How many nodes.
    #[arg(long)]
    nodes: usize,
}

#[derive(Args)]
pub struct UpArgs {
    #[command(flatten)]
    place: Where,
    /// Nodes in the allocation (one invoker each).
    #[arg(long)]
    nodes: usize,
    /// The Slurm partition.
    #[arg(long)]
    partition: Option<String>,
    /// The allocation's time limit, as Slurm takes it (minutes, H:M:S, D-H).
    #[arg(long)]
    time: Option<String>,
    /// Worker slots each invoker offers (default: the node's CPUs... as the invoker decides).
    #[arg(long)]
    slots: Option<usize>,
    /// The host packs on other nodes reach a node's packs at (default: each node's host name).
    #[arg(long)]
    advertise_host: Option<String>,
    /// Seconds invokers drain before they leave when Slurm stops them (0: leave at once).
    #[arg(long, default_value_t = 0)]
    drain_grace: u64,
    /// A further `volley invoker` argument, as it is; repeatable (`--invoker-arg=--local-storage=/scratch`).
    #[arg(long = "invoker-arg", value_name = "ARG", allow_hyphen_values = true)]
    invoker_args: Vec<String>,
    /// Run the controller on the allocation's first node instead of here.
    #[arg(long)]
    controller_in_allocation: bool,
    /// The name or address the nodes reach the controller at (default: this host's name,
    /// or the first node's when the controller runs inside).
    #[arg(long)]
    controller_host: Option<String>,
    /// The controller's port (0: any free one).
    #[arg(long, default_value_t = 7070)]
    port: u16,
    /// A file of API keys (`namespace key` lines); default: one key made for you, namespace `default`.
    #[arg(long)]
    api_keys: Option<PathBuf>,
    /// Print the batch script instead of submitting it (for sites that submit by hand).
    #[arg(long)]
    print: bool,
}

impl SlurmCmd {
    pub fn run(self, output: Output) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let slurm = Slurm::default();
        runtime.block_on(async {
            match self {
                SlurmCmd::Up(args) => up(&slurm, *args).await,
                SlurmCmd::Down(w) => down(&slurm, &w).await,
                SlurmCmd::Grow(r) => grow(&slurm, &r).await,
                SlurmCmd::Shrink(r) => shrink(&slurm, &r).await,
                SlurmCmd::Status(w) => status(&slurm, &w, output).await,
            }
        })
    }
}

impl Where {
    fn dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| default_data_dir().join("slurm"))
    }
}

/// A secret file only its owner reads, in place of an old deployment's.
fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    create_file(path, text, 0o600)
}

fn settings(args: &UpArgs) -> anyhow::Result<ScriptSettings> {
    Ok(ScriptSettings {
        partition: args.partition.clone(),
        time: args.time.clone(),
        slots: args.slots,
        advertise_host: args.advertise_host.clone(),
        drain_grace: args.drain_grace,
        invoker_args: args.invoker_args.clone(),
        volley: std::env::current_exe()?,
    })
}

fn script(dir: &Path, d: &Deployment, nodes: usize, controller: ControllerPlace) -> BatchScript {
    let s = &d.script;
    BatchScript {
        job_name: "volley-invokers".into(),
        nodes,
        partition: s.partition.clone(),
        time: s.time.clone(),
        output: dir.join("slurm-%j.out"),
        state_dir: dir.to_path_buf(),
        volley: s.volley.clone(),
        controller,
        token_file: d.token_file.clone(),
        slots: s.slots,
        advertise_host: s.advertise_host.clone(),
        drain_grace: s.drain_grace,
        invoker_args: s.invoker_args.clone(),
    }
}

async fn up(slurm: &Slurm, args: UpArgs) -> anyhow::Result<()> {
    if args.nodes == 0 {
        anyhow::bail!("--nodes must be at least 1");
    }
    let dir = std::path::absolute(args.place.dir())?;
    // The directory is the deployment's alone: never someone's home or project directory.
    let ours = dir.join(volley_slurm::state::STATE_FILE).exists();
    let empty = std::fs::read_dir(&dir).map(|mut d| d.next().is_none()).unwrap_or(true);
    if !ours && !empty {
        anyhow::bail!(
            "{} holds other files and no Volley deployment: give --state-dir a new or empty directory",
            dir.display()
        );
    }
    if let Ok(old) = Deployment::load(&dir) {
        let live = slurm.squeue(&old.jobs()).await?;
        if live.iter().any(|j| matches!(j.state.as_str(), "PENDING" | "RUNNING" | "CONFIGURING" | "COMPLETING")) {
            anyhow::bail!(
                "a deployment is already up in {} (allocations {}); `volley slurm down` first, or give another --state-dir",
                dir.display(),
                old.jobs().join(", ")
            );
        }
        if let Some(p) = &old.controller_process
            && is_ours(p, &dir)
        {
            anyhow::bail!(
                "the previous deployment's controller still runs (pid {}); `volley slurm down` stops it",
                p.pid
            );
        }
    }
    let mut d = Deployment {
        controller_url: None,
        controller_process: None,
        controller_in_allocation: args.controller_in_allocation,
        ca_file: None,
        token_file: dir.join("invoker-token"),
        api_key_file: None,
        script: settings(&args)?,
        allocations: Vec::new(),
    };
    let keys_file = match &args.api_keys {
        Some(f) => std::path::absolute(f)?,
        None => dir.join("api-keys"),
    };
    let host = args.controller_host.clone().unwrap_or_else(this_host);
    if args.print {
        let place = match args.controller_in_allocation {
            true => {
                ControllerPlace::Inside { port: args.port, host: args.controller_host.clone(), api_keys: keys_file }
            }
            false => ControllerPlace::Outside {
                url: format!("https://{host}:{}", args.port),
                ca_file: dir.join("certs").join(certificates::CA_CERT),
            },
        };
        eprintln!("# the token and certificate files it names are made by `volley slurm up` (without --print)");
        print!("{}", script(&dir, &d, args.nodes, place).render()?);
        return Ok(());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot make {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    write_secret(&d.token_file, &random_secret())?;
    if args.api_keys.is_none() {
        let key = random_secret();
        let key_file = dir.join("api-key");
        write_secret(&key_file, &key)?;
        write_secret(&keys_file, &format!("default {key}\n"))?;
        d.api_key_file = Some(key_file);
    }
    let place = if args.controller_in_allocation {
        ControllerPlace::Inside { port: args.port, host: args.controller_host.clone(), api_keys: keys_file }
    } else {
        let certs = dir.join("certs");
        let _ = std::fs::remove_dir_all(&certs);
        let made = certificates::make(&certs, std::slice::from_ref(&host), 365)?;
        // Nothing is signed after this: no key that could make certificates the clients trust.
        std::fs::remove_file(certs.join(certificates::CA_KEY))?;
        let (pid, port) = start_controller(&dir, &made, &keys_file, &d.token_file, args.port)?;
        let started = volley_slurm::state::started(pid).unwrap_or_default();
        d.controller_process = Some(Process { host: this_host(), pid, started });
        d.controller_url = Some(format!("https://{host}:{port}"));
        d.ca_file = Some(made.ca.clone());
        ControllerPlace::Outside { url: format!("https://{host}:{port}"), ca_file: made.ca }
    };
    let job = slurm.sbatch(&script(&dir, &d, args.nodes, place).render()?, &dir.join("up.sbatch")).await?;
    d.allocations.push(Allocation { job: job.clone(), nodes: args.nodes, role: Role::Base });
    d.save(&dir)?;
    eprintln!("submitted allocation {job} ({} nodes); waiting for its invokers", args.nodes);
    let deadline = Instant::now() + Duration::from_secs(args.place.wait);
    if args.controller_in_allocation {
        let job_dir = dir.join(format!("job-{job}"));
        let url = wait_for_file(slurm, &d, &job_dir.join("controller-url"), &dir, deadline).await?;
        d.controller_url = Some(url.trim().to_string());
        d.ca_file = Some(job_dir.join("certs").join(certificates::CA_CERT));
        d.save(&dir)?;
    }
    wait_for_invokers(slurm, &d, &dir, args.nodes, deadline).await?;
    let url = d.controller_url.clone().unwrap_or_default();
    eprintln!("volley is up on Slurm: controller {url}, {} invokers; use it with:", args.nodes);
    let quote = volley_slurm::script::quote;
    println!("export VOLLEY_CONTROLLER={}", quote(&url));
    if let Some(ca) = &d.ca_file {
        println!("export VOLLEY_CA_FILE={}", quote(&ca.to_string_lossy()));
    }
    if let Some(key) = &d.api_key_file {
        println!("export VOLLEY_API_KEY=\"$(cat {})\"", quote(&key.to_string_lossy()));
    }
    Ok(())
}

/// Starts `volley controller` in the background (its own session, its log
/// in the deployment's directory); its pid and port once it listens.
fn start_controller(
    dir: &Path,
    certs: &certificates::Made,
    keys: &Path,
    token_file: &Path,
    port: u16,
) -> anyhow::Result<(u32, u16)> {
    let log_path = dir.join("controller.log");
    let log = std::fs::File::create(&log_path)?;
    let token = std::fs::read_to_string(token_file)?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["controller", "--listen", &format!("0.0.0.0:{port}"), "--elastic", "--data-dir"])
        .arg(dir.join("controller"))
        .arg("--tls-cert")
        .arg(&certs.cert)
        .arg("--tls-key")
        .arg(&certs.key)
        .arg("--api-keys")
        .arg(keys)
        .env("VOLLEY_INVOKER_TOKEN", token.trim())
        .env_remove("VOLLEY_CONTROLLER")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("cannot start the controller")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(url) = text.lines().find_map(|l| l.split("listening on ").nth(1)) {
            let port = url.trim().rsplit(':').next().and_then(|p| p.parse().ok());
            let port = port.ok_or_else(|| anyhow::anyhow!("the controller said an address without a port: {url}"))?;
            return Ok((child.id(), port));
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the controller stopped ({status}): {}", text.trim());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            anyhow::bail!("the controller did not listen within 30 s: {}", text.trim());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `file` exists (written inside the allocation), failing early if the allocation ends.
async fn wait_for_file(
    slurm: &Slurm,
    d: &Deployment,
    file: &Path,
    dir: &Path,
    deadline: Instant,
) -> anyhow::Result<String> {
    loop {
        if let Ok(text) = std::fs::read_to_string(file) {
            return Ok(text);
        }
        check_alive(slurm, d, dir).await?;
        if Instant::now() > deadline {
            anyhow::bail!("the controller inside the allocation did not start in time; see {}", dir.display());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// An error with the allocation's output if any of the deployment's allocations has ended.
async fn check_alive(slurm: &Slurm, d: &Deployment, dir: &Path) -> anyhow::Result<()> {
    for job in slurm.squeue(&d.jobs()).await? {
        if !matches!(job.state.as_str(), "PENDING" | "RUNNING" | "CONFIGURING") {
            let out = std::fs::read_to_string(dir.join(format!("slurm-{}.out", job.id))).unwrap_or_default();
            let tail: Vec<&str> = out.lines().rev().take(20).collect();
            anyhow::bail!(
                "allocation {} is {} ({}); its output ends:\n{}",
                job.id,
                job.state,
                job.nodes,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
    Ok(())
}

fn client(d: &Deployment) -> anyhow::Result<volley_client::Client> {
    let url = d.controller_url.as_deref().ok_or_else(|| anyhow::anyhow!("the controller has not started yet"))?;
    let key = match &d.api_key_file {
        Some(f) => Some(std::fs::read_to_string(f)?.trim().to_string()),
        None => std::env::var("VOLLEY_API_KEY").ok(),
    };
    Ok(volley_client::Client::with_ca(url, key.as_deref(), d.ca_file.as_deref())?)
}

async fn ready_invokers(d: &Deployment) -> anyhow::Result<usize> {
    Ok(client(d)?.invokers().await?.iter().filter(|i| i.status == "ready").count())
}

async fn wait_for_invokers(
    slurm: &Slurm,
    d: &Deployment,
    dir: &Path,
    want: usize,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        let said = match ready_invokers(d).await {
            Ok(n) if n >= want => return Ok(()),
            Ok(n) => format!("{n} of {want} invokers have joined"),
            Err(e) => e.to_string(),
        };
        check_alive(slurm, d, dir).await?;
        if Instant::now() > deadline {
            let pending = slurm.squeue(&d.jobs()).await?;
            let states: Vec<String> = pending.iter().map(|j| format!("{} {} {}", j.id, j.state, j.nodes)).collect();
            anyhow::bail!("{said} in time (allocations: {}); see {}", states.join("; "), dir.display());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Signals `jobs`' invokers to drain and leave, waits until the allocations
/// are gone (they end when their invokers have left), and ends what remains.
async fn release(slurm: &Slurm, jobs: &[String], grace: u64, wait: u64) -> anyhow::Result<()> {
    for job in jobs {
        // A job that already ended is not an error here.
        match slurm.scancel(job, Some("USR1")).await {
            Err(volley_slurm::Error::Refused { said, .. }) if said.contains("Invalid job id") => {}
            Err(e) => eprintln!("volley: signalling allocation {job}: {e}"),
            Ok(()) => {}
        }
    }
    let deadline = Instant::now() + Duration::from_secs(grace.saturating_add(wait.min(60)));
    loop {
        let live: Vec<_> = slurm
            .squeue(jobs)
            .await?
            .into_iter()
            .filter(|j| matches!(j.state.as_str(), "PENDING" | "RUNNING" | "CONFIGURING" | "COMPLETING"))
            .collect();
        if live.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            for job in &live {
                slurm.scancel(&job.id, None).await?;
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn down(slurm: &Slurm, w: &Where) -> anyhow::Result<()> {
    let dir = std::path::absolute(w.dir())?;
    let d = Deployment::load(&dir)?;
    release(slurm, &d.jobs(), d.script.drain_grace, w.wait).await?;
    if let Some(p) = &d.controller_process {
        stop_controller(p, &dir).await?;
    }
    std::fs::remove_file(dir.join(volley_slurm::state::STATE_FILE))?;
    eprintln!("volley on Slurm is down: allocations {} ended", d.jobs().join(", "));
    Ok(())
}

/// Whether `p` is still the controller `up` started for `dir`: on this host,
/// the same start time (not a later process with its pid), the volley binary
/// run as `controller` with this deployment's data directory.
fn is_ours(p: &Process, dir: &Path) -> bool {
    if p.host != this_host() || volley_slurm::state::started(p.pid) != Some(p.started) {
        return false;
    }
    let args: Vec<String> = std::fs::read(format!("/proc/{}/cmdline", p.pid))
        .map(|c| c.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect())
        .unwrap_or_default();
    let data = dir.join("controller").to_string_lossy().into_owned();
    args.get(1).map(String::as_str) == Some("controller")
        && args.windows(2).any(|w| w[0] == "--data-dir" && w[1] == data)
}

/// Stops the controller `up` started, if that process is still it; says so if it cannot.
async fn stop_controller(p: &Process, dir: &Path) -> anyhow::Result<()> {
    if p.host != this_host() {
        eprintln!("volley: the controller runs on {} (pid {}): stop it there", p.host, p.pid);
        return Ok(());
    }
    if !is_ours(p, dir) {
        return Ok(());
    }
    // SAFETY: kill(2) with a pid just checked to be our controller.
    unsafe { libc::kill(p.pid as i32, libc::SIGTERM) };
    for _ in 0..100 {
        if !is_ours(p, dir) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the controller (pid {}) did not stop within 10 s of SIGTERM", p.pid)
}

async fn grow(slurm: &Slurm, r: &Resize) -> anyhow::Result<()> {
    let dir = std::path::absolute(r.place.dir())?;
    let mut d = Deployment::load(&dir)?;
    let (Some(url), Some(ca)) = (d.controller_url.clone(), d.ca_file.clone()) else {
        anyhow::bail!("the deployment's controller has not started yet; wait for `volley slurm up`");
    };
    let before = ready_invokers(&d).await?;
    for _ in 0..r.nodes {
        let place = ControllerPlace::Outside { url: url.clone(), ca_file: ca.clone() };
        let job = slurm.sbatch(&script(&dir, &d, 1, place).render()?, &dir.join("grow.sbatch")).await?;
        eprintln!("submitted allocation {job} (1 node)");
        d.allocations.push(Allocation { job, nodes: 1, role: Role::Grow });
        d.save(&dir)?;
    }
    let deadline = Instant::now() + Duration::from_secs(r.place.wait);
    wait_for_invokers(slurm, &d, &dir, before + r.nodes, deadline).await?;
    eprintln!("grown by {} node(s)", r.nodes);
    Ok(())
}

async fn shrink(slurm: &Slurm, r: &Resize) -> anyhow::Result<()> {
    let dir = std::path::absolute(r.place.dir())?;
    let mut d = Deployment::load(&dir)?;
    let grown: Vec<String> =
        d.allocations.iter().rev().filter(|a| a.role == Role::Grow).map(|a| a.job.clone()).collect();
    if grown.len() < r.nodes {
        anyhow::bail!(
            "only {} node(s) were added by `grow` ({}); the base allocation's nodes stay until `volley slurm down`",
            grown.len(),
            if grown.is_empty() { "none".into() } else { grown.join(", ") }
        );
    }
    let released: Vec<String> = grown.into_iter().take(r.nodes).collect();
    release(slurm, &released, d.script.drain_grace, r.place.wait).await?;
    d.allocations.retain(|a| !released.contains(&a.job));
    d.save(&dir)?;
    eprintln!("released allocation(s) {}", released.join(", "));
    Ok(())
}

async fn status(slurm: &Slurm, w: &Where, output: Output) -> anyhow::Result<()> {
    let dir = std::path::absolute(w.dir())?;
    let d = Deployment::load(&dir)?;
    let jobs = slurm.squeue(&d.jobs()).await?;
    let invokers = match client(&d) {
        Ok(c) => c.invokers().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if output == Output::Json {
        let allocations: Vec<serde_json::Value> = d
            .allocations
            .iter()
            .map(|a| {
                let job = jobs.iter().find(|j| j.id == a.job);
                serde_json::json!({
                    "job": a.job, "role": a.role, "nodes": a.nodes,
                    "state": job.map(|j| j.state.clone()).unwrap_or_else(|| "ENDED".into()),
                    "node_list": job.map(|j| j.nodes.clone()),
                    "time": job.map(|j| j.time.clone()), "limit": job.map(|j| j.limit.clone()),
                })
            })
            .collect();
        let doc = serde_json::json!({
            "controller": d.controller_url, "controller_in_allocation": d.controller_in_allocation,
            "ca_file": d.ca_file, "allocations": allocations,
            "invokers": invokers.as_ref().ok(), "invokers_error": invokers.as_ref().err(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let place = if d.controller_in_allocation { "inside the base allocation" } else { "here" };
    println!("controller {} ({place})", d.controller_url.as_deref().unwrap_or("(not started yet)"));
    println!(
        "{:<10} {:<6} {:<6} {:<12} {:<16} {:>10} {:>10}",
        "job", "role", "nodes", "state", "node list", "time", "limit"
    );
    for a in &d.allocations {
        let job = jobs.iter().find(|j| j.id == a.job);
        let role = if a.role == Role::Base { "base" } else { "grow" };
        let (state, list, time, limit) = match job {
            Some(j) => (j.state.as_str(), j.nodes.as_str(), j.time.as_str(), j.limit.as_str()),
            None => ("ENDED", "", "", ""),
        };
        println!("{:<10} {role:<6} {:<6} {state:<12} {list:<16} {time:>10} {limit:>10}", a.job, a.nodes);
    }
    match invokers {
        Ok(list) => {
            println!("{:<16} {:<10} {:>12}", "invoker", "status", "free slots");
            for i in list {
                println!(
                    "{:<16} {:<10} {:>12}",
                    i.registration.name,
                    i.status,
                    format!("{}/{}", i.free_slots, i.registration.slots)
                );
            }
        }
        Err(e) => println!("invokers: cannot ask the controller: {e}"),
    }
    Ok(())
}
