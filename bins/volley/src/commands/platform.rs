//! Starting the platform's roles in this process: controller, invoker, or
//! both (`volley up`, and the embedded platform of `volley run`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;
use volley_comm::Brokers;
use volley_proto::api::FunctionInfo;

/// Where the broker transports find their servers (shared by every role that starts bursts).
#[derive(Args, Clone)]
pub struct BrokerArgs {
    #[arg(long, env = "VOLLEY_REDIS_URL", default_value = "redis://127.0.0.1:6379/")]
    pub redis_url: String,
    #[arg(long, env = "VOLLEY_AMQP_URL", default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub amqp_url: String,
    #[arg(long, env = "VOLLEY_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// S3-compatible endpoint for the s3 transport.
    #[arg(long, env = "VOLLEY_S3_ENDPOINT", default_value = "http://127.0.0.1:9900")]
    pub s3_endpoint: String,
    #[arg(long, env = "VOLLEY_S3_BUCKET", default_value = "volley-test")]
    pub s3_bucket: String,
    #[arg(long, env = "VOLLEY_S3_ACCESS_KEY", default_value = "volley")]
    pub s3_access_key: String,
    #[arg(long, env = "VOLLEY_S3_SECRET_KEY", default_value = "volley-secret")]
    pub s3_secret_key: String,
}

impl BrokerArgs {
    pub fn brokers(&self, s3_prefix: &str) -> Brokers {
        Brokers {
            redis_url: self.redis_url.clone(),
            amqp_url: self.amqp_url.clone(),
            nats_url: self.nats_url.clone(),
            s3_endpoint: self.s3_endpoint.clone(),
            s3_bucket: self.s3_bucket.clone(),
            s3_access_key: self.s3_access_key.clone(),
            s3_secret_key: self.s3_secret_key.clone(),
            s3_prefix: s3_prefix.into(),
        }
    }
}

/// Options of the invoker role.
#[derive(Args, Clone)]
pub struct InvokerArgs {
    /// Worker threads this invoker offers.
    #[arg(long, default_value_t = 2048)]
    pub slots: usize,
    /// Memory it offers to workers, in MiB (default: the machine's).
    #[arg(long)]
    pub memory_mb: Option<u64>,
    /// The host other packs reach this invoker's packs at.
    #[arg(long, env = "VOLLEY_ADVERTISE_HOST", default_value = "127.0.0.1")]
    pub advertise_host: String,
    /// The invoker's name (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// Seconds a new pack process may take to connect back before it is declared broken.
    #[arg(long, default_value_t = 10.0)]
    pub start_timeout: f64,
    /// Most idle pack processes kept warm per function (0: no warm pool).
    #[arg(long, default_value_t = 64)]
    pub warm_pool: usize,
    /// Seconds an idle warm process lives.
    #[arg(long, default_value_t = 120.0)]
    pub idle_timeout: f64,
}

pub fn default_data_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("VOLLEY_DATA_DIR") {
        return dir.into();
    }
    match std::env::var("HOME") {
        Ok(home) => Path::new(&home).join(".local/share/volley"),
        Err(_) => std::env::temp_dir().join("volley"),
    }
}

pub fn builtin_functions() -> Vec<FunctionInfo> {
    volley_apps::builtins().list().map(|(name, description)| FunctionInfo::builtin(name, description)).collect()
}

/// Options of the controller role.
#[derive(Args, Clone)]
pub struct ControlPlaneArgs {
    /// Seconds without a poll after which an invoker is declared lost and its bursts fail.
    #[arg(long, default_value_t = 10.0)]
    pub heartbeat_timeout: f64,
    /// Where state lives: `embedded` (a file in the data directory) or a postgres:// URL.
    #[arg(long, env = "VOLLEY_STORE", default_value = "embedded")]
    pub store: String,
    /// A file of API keys, one `namespace key` per line; required beyond loopback.
    #[arg(long, env = "VOLLEY_API_KEYS_FILE")]
    pub api_keys: Option<std::path::PathBuf>,
    /// The token invokers must present (at least 32 characters); required beyond
    /// loopback. With API keys and no token, one is generated into the data
    /// directory (file `invoker-token`, mode 0600).
    #[arg(long, env = "VOLLEY_INVOKER_TOKEN", hide_env_values = true)]
    pub invoker_token: Option<String>,
    /// The key `/metrics` requires (at least 32 characters); without it metrics are open.
    #[arg(long, env = "VOLLEY_METRICS_KEY", hide_env_values = true)]
    pub metrics_key: Option<String>,
    /// Most workers one burst may have.
    #[arg(long, default_value_t = 100_000)]
    pub max_workers: usize,
    /// Most bursts one namespace may have waiting for capacity.
    #[arg(long, default_value_t = 1000)]
    pub max_queued_per_namespace: usize,
    /// Longest queue timeout (seconds) a burst may ask for.
    #[arg(long, default_value_t = 3600.0)]
    pub max_queue_timeout: f64,
}

/// The file in a data directory that holds a generated invoker token.
pub const TOKEN_FILE: &str = "invoker-token";

/// Reads a secret from a file (trailing whitespace dropped), warning when
/// other users can read it.
pub fn read_secret_file(path: &Path, what: &str) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| anyhow::anyhow!("cannot read the {what} file {}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o044 != 0 {
        eprintln!(
            "volley: warning: the {what} file {} is readable by other users (mode {mode:o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the {what} file {}: {e}", path.display()))?;
    Ok(text.trim_end().to_string())
}

/// The invoker token of a controller: the one given, or, when API keys are
/// set and none is given, the one kept in `data_dir` (generated on first use,
/// readable only by its owner), so that invoker registration is never open
/// on a controller with tenants.
pub fn invoker_token(data_dir: &Path, given: Option<&str>, keys: bool) -> anyhow::Result<Option<String>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(token) = given {
        return Ok(Some(token.to_string()));
    }
    if !keys {
        return Ok(None);
    }
    let path = data_dir.join(TOKEN_FILE);
    if path.exists() {
        return read_secret_file(&path, "invoker token").map(Some);
    }
    std::fs::create_dir_all(data_dir)?;
    let token: String = rand::random::<[u8; 32]>().iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot create the invoker token file {}: {e}", path.display()))?;
    writeln!(file, "{token}")?;
    eprintln!("volley: generated an invoker token in {} (mode 0600); invokers join with --token-file", path.display());
    Ok(Some(token))
}

pub fn controller_options(
    listen: &str,
    data_dir: &Path,
    brokers: Brokers,
    args: &ControlPlaneArgs,
) -> anyhow::Result<volley_controller::Options> {
    let mut opts = volley_controller::Options::new(listen, data_dir.join("controller"));
    if !(args.heartbeat_timeout.is_finite() && args.heartbeat_timeout >= 1.0) {
        anyhow::bail!("--heartbeat-timeout must be at least 1 second");
    }
    opts.heartbeat_timeout = Duration::from_secs_f64(args.heartbeat_timeout);
    opts.store = args.store.clone();
    if let Some(path) = &args.api_keys {
        let text = read_secret_file(path, "API key")?;
        let keys = volley_controller::parse_keys(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if keys.is_empty() {
            anyhow::bail!("the API key file {} holds no keys", path.display());
        }
        opts.api_keys = keys.into_iter().collect();
    }
    opts.invoker_token = invoker_token(data_dir, args.invoker_token.as_deref(), !opts.api_keys.is_empty())?;
    opts.metrics_key = args.metrics_key.clone();
    opts.max_queued_per_namespace = args.max_queued_per_namespace;
    if args.max_workers == 0 {
        anyhow::bail!("--max-workers must be at least 1");
    }
    opts.max_workers = args.max_workers;
    if !(args.max_queue_timeout.is_finite() && args.max_queue_timeout > 0.0) {
        anyhow::bail!("--max-queue-timeout must be a positive number of seconds");
    }
    opts.max_queue_timeout = Duration::from_secs_f64(args.max_queue_timeout);
    opts.functions = builtin_functions();
    // Workers' s3:// storage uses the same service and credentials as the s3 transport.
    opts.storage = volley_storage::StorageOptions {
        endpoint: Some(brokers.s3_endpoint.clone()),
        region: Some("us-east-1".into()),
        access_key: Some(brokers.s3_access_key.clone()),
        secret_key: Some(brokers.s3_secret_key.clone()),
    };
    opts.brokers = brokers;
    Ok(opts)
}

pub fn invoker_options(
    controller: &str,
    data_dir: &Path,
    args: &InvokerArgs,
) -> anyhow::Result<volley_invoker::Options> {
    let program = std::env::current_exe()?;
    let mut opts = volley_invoker::Options::new(controller, data_dir.join("invoker"), program);
    opts.slots = args.slots;
    if let Some(m) = args.memory_mb {
        opts.memory_mb = m;
    }
    opts.host = args.advertise_host.clone();
    if !(args.start_timeout.is_finite() && args.start_timeout > 0.0) {
        anyhow::bail!("--start-timeout must be a positive number of seconds");
    }
    opts.start_timeout = Duration::from_secs_f64(args.start_timeout);
    if !(args.idle_timeout.is_finite() && args.idle_timeout > 0.0) {
        anyhow::bail!("--idle-timeout must be a positive number of seconds");
    }
    opts.idle_timeout = Duration::from_secs_f64(args.idle_timeout);
    opts.warm_pool = args.warm_pool;
    if let Some(n) = &args.name {
        opts.name = n.clone();
    }
    Ok(opts)
}

/// Everything an embedded platform needs: brokers, controller and invoker settings.
#[derive(Args, Clone)]
pub struct PlatformArgs {
    #[command(flatten)]
    pub brokers: BrokerArgs,
    #[command(flatten)]
    pub controller: ControlPlaneArgs,
    #[command(flatten)]
    pub invoker: InvokerArgs,
}

/// Runs `work` (given the controller's URL) against a fresh embedded platform
/// whose data lives in a temporary directory; the platform is stopped and the
/// directory removed afterwards, whatever `work` returned.
pub async fn with_platform<T, F, Fut>(args: &PlatformArgs, work: F) -> anyhow::Result<T>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let dir = std::env::temp_dir().join(format!("volley-embedded-{:08x}", rand::random::<u32>()));
    let result = match Embedded::start("127.0.0.1:0", &dir, args).await {
        Ok(platform) => {
            let result = work(platform.url.clone()).await;
            platform.stop().await;
            result
        }
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// A controller and one invoker running in this process.
pub struct Embedded {
    pub url: String,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Embedded {
    /// Starts both roles; returns once the invoker has registered.
    pub async fn start(listen: &str, data_dir: &Path, args: &PlatformArgs) -> anyhow::Result<Embedded> {
        let (controller_args, invoker) = (&args.controller, &args.invoker);
        let shutdown = CancellationToken::new();
        let opts = controller_options(listen, data_dir, args.brokers.brokers("bursts/"), controller_args)?;
        let (token, metrics_key) = (opts.invoker_token.clone(), opts.metrics_key.clone());
        let controller = volley_controller::Controller::bind(opts, shutdown.clone()).await?;
        let url = format!("http://{}", controller.local_addr());
        let mut tasks = vec![tokio::spawn(async move {
            if let Err(e) = controller.run().await {
                eprintln!("volley: controller stopped: {e}");
            }
        })];
        let mut inv = invoker_options(&url, data_dir, invoker)?;
        inv.api_key = token;
        let token = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = volley_invoker::run(inv, token).await {
                eprintln!("volley: invoker stopped: {e}");
            }
        }));
        let embedded = Embedded { url, shutdown, tasks };
        embedded.wait_for_invoker(metrics_key.as_deref()).await?;
        Ok(embedded)
    }

    async fn wait_for_invoker(&self, metrics_key: Option<&str>) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        for _ in 0..500 {
            // The metrics say whether an invoker is ready.
            let mut request = http.get(format!("{}/metrics", self.url));
            if let Some(key) = metrics_key {
                request = request.bearer_auth(key);
            }
            let text = request.send().await?.text().await.unwrap_or_default();
            let ready = text
                .lines()
                .filter_map(|l| l.strip_prefix("volley_invokers{status=\"ready\"} "))
                .any(|n| n.trim() != "0");
            if ready {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::bail!("the embedded invoker did not register within 5 s")
    }

    /// Stops both roles (the invoker stops its packs first).
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
    }
}
