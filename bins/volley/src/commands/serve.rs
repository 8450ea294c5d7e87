//! `volley up`, `volley controller`, `volley invoker`: the long-running roles.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::platform::{Embedded, PlatformArgs};
use super::roles::{self, BrokerArgs, ControlPlaneArgs, InvokerArgs, default_data_dir};

/// Where a long-running role listens and keeps its data.
#[derive(Args)]
pub struct Place {
    /// Where the API listens.
    #[arg(long, default_value_t = volley_controller::Options::default().listen)]
    listen: String,
    /// State, sockets and logs live here (default: $VOLLEY_DATA_DIR or ~/.local/share/volley).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct UpArgs {
    #[command(flatten)]
    place: Place,
    #[command(flatten)]
    pub platform: PlatformArgs,
}

#[derive(Args)]
pub struct ControllerArgs {
    #[command(flatten)]
    place: Place,
    #[command(flatten)]
    brokers: BrokerArgs,
    #[command(flatten)]
    controller: ControlPlaneArgs,
}

#[derive(Args)]
pub struct InvokerCmdArgs {
    /// The controller to join.
    #[arg(long, env = "VOLLEY_CONTROLLER")]
    controller: String,
    /// The token the controller expects from invokers (its --invoker-token).
    #[arg(long, env = "VOLLEY_INVOKER_TOKEN", hide_env_values = true, conflicts_with = "token_file")]
    token: Option<String>,
    /// A file holding that token (e.g. the `invoker-token` file a controller generated).
    #[arg(long, env = "VOLLEY_INVOKER_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub invoker: InvokerArgs,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VOLLEY_LOG").unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Waits for SIGINT or SIGTERM; returns its name.
async fn until_signal() -> &'static str {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = async { match &mut term { Some(t) => { t.recv().await; } None => std::future::pending().await } } => "SIGTERM",
    }
}

/// The same, and SIGUSR1 (an invoker's "drain, then leave").
async fn until_invoker_signal() -> &'static str {
    let mut usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()).ok();
    tokio::select! {
        name = until_signal() => name,
        _ = async { match &mut usr1 { Some(u) => { u.recv().await; } None => std::future::pending().await } } => "SIGUSR1",
    }
}

/// Whether an invoker stopped by `signal` drains first (ADR 0010): on
/// SIGUSR1 always (Slurm's early signal, `volley slurm down/shrink`); on
/// SIGTERM unless Slurm sent it (Kubernetes stops a pod with SIGTERM to its
/// first process only; Slurm's SIGTERM reaches every process of the step and
/// SIGKILL follows after its KillWait: no time to drain); never on SIGINT.
fn drains_on(signal: &str) -> bool {
    match signal {
        "SIGUSR1" => true,
        "SIGTERM" => std::env::var_os("SLURM_JOB_ID").is_none(),
        _ => false,
    }
}

/// Why an invoker stopped by `signal` leaves, as the engine that started it
/// would say: a Slurm allocation's end, a Kubernetes pod's stop, or plainly.
async fn leaving_because(signal: &str, drain: Duration) -> String {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(job) = var("SLURM_JOB_ID") {
        // Slurm says why (cancelled, time limit, preempted), if it answers in
        // time; a drain asked Slurm for its signal that long (and a margin) early.
        let early = match drain.as_secs() {
            0 => 0,
            secs => secs.saturating_add(volley_slurm::script::DRAIN_MARGIN_SECS),
        };
        let why = tokio::time::timeout(Duration::from_secs(2), volley_slurm::commands::why_ending(&job, early));
        return match why.await {
            Ok(Some(why)) => format!("Slurm allocation {job} {why} ({signal})"),
            _ => format!("Slurm allocation {job} ended ({signal})"),
        };
    }
    if var("KUBERNETES_SERVICE_HOST").is_some() {
        let pod = var("POD_NAME").or_else(|| var("HOSTNAME")).unwrap_or_else(|| "its pod".into());
        return format!("pod {pod} was stopped ({signal})");
    }
    format!("the invoker was stopped ({signal})")
}

pub fn up(args: UpArgs) -> anyhow::Result<()> {
    init_logging();
    let dir = args.place.data_dir.unwrap_or_else(default_data_dir);
    runtime()?.block_on(async {
        let platform = Embedded::start(&args.place.listen, &dir, &args.platform).await?;
        eprintln!(
            "volley is up at {} (data in {}); try: volley --controller {} run hello --workers 8",
            platform.url(),
            dir.display(),
            platform.url()
        );
        eprintln!("the dashboard: {}/", platform.url());
        until_signal().await;
        platform.stop().await;
        Ok(())
    })
}

pub fn controller(args: ControllerArgs) -> anyhow::Result<()> {
    init_logging();
    let dir = args.place.data_dir.unwrap_or_else(default_data_dir);
    runtime()?.block_on(async {
        let opts = args.controller.options(&args.place.listen, &dir, &args.brokers)?;
        let controller = opts.build().await?.run(CancellationToken::new());
        controller.ready().await?;
        eprintln!("volley controller listening on {}", controller.url());
        eprintln!("the dashboard: {}/", controller.url());
        until_signal().await;
        controller.stop().await?;
        Ok(())
    })
}

pub fn invoker(args: InvokerCmdArgs) -> anyhow::Result<()> {
    init_logging();
    let dir = args.data_dir.unwrap_or_else(default_data_dir);
    runtime()?.block_on(async {
        let token = match (&args.token, &args.token_file) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(path)) => Some(roles::read_secret_file(path, "invoker token")?),
            (None, None) => None,
        };
        let grace = roles::drain_grace(args.invoker.drain_grace)?;
        let invoker = args.invoker.options(&args.controller, &dir, token)?.build()?.run(CancellationToken::new());
        tokio::select! {
            registered = invoker.ready() => { registered?; }
            _ = until_invoker_signal() => { invoker.stop().await; return Ok(()); }
        }
        let signal = until_invoker_signal().await;
        if !drains_on(signal) {
            // Its packs are being stopped too: their exits wait until the
            // controller has heard the cause (they would only echo it).
            invoker.hold_reports();
            invoker.leave(&leaving_because(signal, grace).await).await;
            return Ok(());
        }
        let reason = leaving_because(signal, grace).await;
        // A second signal cuts the drain short.
        tokio::select! {
            _ = invoker.drain(&reason, grace) => {}
            second = until_invoker_signal() => {
                invoker.hold_reports();
                invoker.leave(&format!("{reason}; drain cut short ({second})")).await;
            }
        }
        Ok(())
    })
}
