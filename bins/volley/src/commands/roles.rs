//! The long-running roles' command-line settings, and how they become each
//! role's `Options` (whose defaults are the flags' defaults).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use volley_comm::Brokers;
use volley_proto::api::FunctionInfo;

fn controller_defaults() -> volley_controller::Options {
    volley_controller::Options::default()
}

fn invoker_defaults() -> volley_invoker::Options {
    volley_invoker::Options::default()
}

/// Where the broker transports find their servers (shared by every role that starts bursts).
#[derive(Args, Clone)]
pub struct BrokerArgs {
    #[arg(long, env = "VOLLEY_REDIS_URL", default_value_t = Brokers::default().redis_url)]
    pub redis_url: String,
    #[arg(long, env = "VOLLEY_AMQP_URL", default_value_t = Brokers::default().amqp_url)]
    pub amqp_url: String,
    #[arg(long, env = "VOLLEY_NATS_URL", default_value_t = Brokers::default().nats_url)]
    pub nats_url: String,
    /// S3-compatible endpoint for the s3 transport (and workers' s3:// storage).
    #[arg(long, env = "VOLLEY_S3_ENDPOINT", default_value_t = Brokers::default().s3_endpoint)]
    pub s3_endpoint: String,
    #[arg(long, env = "VOLLEY_S3_BUCKET", default_value_t = Brokers::default().s3_bucket)]
    pub s3_bucket: String,
    #[arg(long, env = "VOLLEY_S3_ACCESS_KEY", default_value_t = Brokers::default().s3_access_key)]
    pub s3_access_key: String,
    #[arg(long, env = "VOLLEY_S3_SECRET_KEY", default_value_t = Brokers::default().s3_secret_key, hide_env_values = true)]
    pub s3_secret_key: String,
    /// Connections each pack of a redis burst opens for sending, and as many
    /// for receiving (default 4). Thousands of single-worker packs on one
    /// Redis may need fewer: Redis takes no more clients than its open-file
    /// limit allows.
    #[arg(long, env = "VOLLEY_REDIS_CONNECTIONS", value_parser = clap::value_parser!(u16).range(1..))]
    pub redis_connections: Option<u16>,
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
            redis_connections: self.redis_connections.map(usize::from),
        }
    }

    /// Storage options for the same S3 service and credentials.
    pub fn storage(&self) -> volley_storage::StorageOptions {
        volley_storage::StorageOptions {
            endpoint: Some(self.s3_endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key: Some(self.s3_access_key.clone()),
            secret_key: Some(self.s3_secret_key.clone()),
        }
    }
}

/// A number of seconds from the command line as a duration.
/// The longest drain an invoker accepts (a pod's or an allocation's grace is far shorter).
const MAX_DRAIN: Duration = Duration::from_secs(7 * 24 * 3600);

/// `--drain-grace` as a duration, checked when the invoker starts (not when it is stopped).
pub fn drain_grace(secs: f64) -> anyhow::Result<Duration> {
    let grace = seconds("--drain-grace", secs)?;
    if grace > MAX_DRAIN {
        anyhow::bail!("--drain-grace is at most {} s (a week), got {secs}", MAX_DRAIN.as_secs());
    }
    Ok(grace)
}

pub fn seconds(flag: &str, secs: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| anyhow::anyhow!("{flag} must be a number of seconds from 0, got {secs}"))
}

/// Options of the invoker role.
#[derive(Args, Clone)]
pub struct InvokerArgs {
    /// Worker threads this invoker offers.
    #[arg(long, default_value_t = invoker_defaults().slots)]
    pub slots: usize,
    /// Memory it offers to workers, in MiB (default: the machine's).
    #[arg(long)]
    pub memory_mb: Option<u64>,
    /// The host other packs reach this invoker's packs at.
    #[arg(long, env = "VOLLEY_ADVERTISE_HOST", default_value_t = invoker_defaults().host)]
    pub advertise_host: String,
    /// The invoker's name (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// Seconds a new pack process may take to connect back before it is declared broken.
    #[arg(long, default_value_t = invoker_defaults().start_timeout.as_secs_f64())]
    pub start_timeout: f64,
    /// Most idle pack processes kept warm per function (0: no warm pool).
    #[arg(long, default_value_t = invoker_defaults().warm_pool)]
    pub warm_pool: usize,
    /// Seconds an idle warm process lives.
    #[arg(long, default_value_t = invoker_defaults().idle_timeout.as_secs_f64())]
    pub idle_timeout: f64,
    /// The Python interpreter Python workers run with (the volley package installed for it).
    #[arg(long, env = "VOLLEY_PYTHON", default_value_t = invoker_defaults().python)]
    pub python: String,
    /// Modules (comma-separated) Python pack processes import before they count
    /// as started, so that warm ones have them loaded ("" for none).
    #[arg(long, env = "VOLLEY_PYTHON_PRELOAD", default_value_t = invoker_defaults().python_preload)]
    pub python_preload: String,
    /// Run each pack process sandboxed: a uid of its own, new namespaces,
    /// Landlock and seccomp. auto: where the invoker can (root, Linux 6.12
    /// or later), with a warning elsewhere; on: refuse to start otherwise;
    /// off: development only.
    #[arg(long, env = "VOLLEY_SANDBOX", value_enum, default_value_t = Sandbox::Auto)]
    pub sandbox: Sandbox,
    /// A local directory sandboxed packs may read and write (`file://` storage); repeatable
    /// (the environment variable takes them separated by `:`).
    #[arg(long = "local-storage", value_name = "DIR", env = "VOLLEY_LOCAL_STORAGE", value_delimiter = ':')]
    pub local_storage: Vec<PathBuf>,
    /// Room for the files packs keep for later packs of their namespace (a
    /// reference genome's index): least recently used entries go past it.
    #[arg(long, env = "VOLLEY_CACHE_SIZE", default_value = "8GiB", value_parser = super::output::parse_size)]
    pub cache_size: usize,
    /// Where those files are kept (default: the invoker's data directory; the
    /// one-shot platform of `volley run` and `volley genomics call` keeps
    /// them in `$VOLLEY_DATA_DIR/cache`, so that later runs find them).
    #[arg(long, env = "VOLLEY_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// A further path sandboxed packs may read; repeatable.
    #[arg(long = "pack-read", value_name = "PATH")]
    pub pack_read: Vec<PathBuf>,
    /// Serve `GET /healthz` here for probes (e.g. 0.0.0.0:7071): 200 once
    /// registered with the controller, 503 before and while draining.
    #[arg(long, env = "VOLLEY_HEALTH_LISTEN", value_name = "ADDR")]
    pub health_listen: Option<String>,
    /// Seconds an invoker drains before it leaves, on SIGUSR1, or on SIGTERM
    /// outside Slurm: the controller places nothing more on it and its running
    /// bursts may finish (give less than the pod's grace period).
    #[arg(long, env = "VOLLEY_DRAIN_GRACE", default_value_t = 0.0, value_name = "SECONDS")]
    pub drain_grace: f64,
    /// The CA the controller's certificate is checked against (the global --ca-file).
    #[arg(skip)]
    pub ca_file: Option<PathBuf>,
}

/// Whether pack processes are sandboxed (volley_invoker::SandboxMode on the command line).
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Sandbox {
    Auto,
    On,
    Off,
}

impl From<Sandbox> for volley_invoker::SandboxMode {
    fn from(s: Sandbox) -> Self {
        match s {
            Sandbox::Auto => volley_invoker::SandboxMode::Auto,
            Sandbox::On => volley_invoker::SandboxMode::On,
            Sandbox::Off => volley_invoker::SandboxMode::Off,
        }
    }
}

impl InvokerArgs {
    /// The invoker's options: these flags over the defaults.
    pub fn options(
        &self,
        controller: &str,
        data_dir: &Path,
        token: Option<String>,
    ) -> anyhow::Result<volley_invoker::Options> {
        let defaults = invoker_defaults();
        Ok(volley_invoker::Options {
            controller: controller.into(),
            token,
            name: self.name.clone().unwrap_or(defaults.name),
            host: self.advertise_host.clone(),
            slots: self.slots,
            memory_mb: self.memory_mb.unwrap_or(defaults.memory_mb),
            data_dir: data_dir.join("invoker"),
            program: std::env::current_exe()?,
            start_timeout: seconds("--start-timeout", self.start_timeout)?,
            warm_pool: self.warm_pool,
            idle_timeout: seconds("--idle-timeout", self.idle_timeout)?,
            python: self.python.clone(),
            python_preload: self.python_preload.clone(),
            sandbox: self.sandbox.into(),
            launcher: std::env::current_exe()?,
            local_storage: absolute(&self.local_storage)?,
            pack_read: absolute(&self.pack_read)?,
            cache_bytes: self.cache_size as u64,
            cache_dir: self.cache_dir.as_deref().map(std::path::absolute).transpose()?,
            ca_file: self.ca_file.as_deref().map(std::path::absolute).transpose()?,
            health_listen: self.health_listen.clone(),
            ..defaults
        })
    }
}

/// Paths given on the command line, made absolute (the launcher runs elsewhere).
fn absolute(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    paths.iter().map(|p| Ok(std::path::absolute(p)?)).collect()
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
    #[arg(long, default_value_t = controller_defaults().heartbeat_timeout.as_secs_f64())]
    pub heartbeat_timeout: f64,
    /// Where state lives: `embedded` (a file in the data directory) or a postgres:// URL.
    #[arg(long, env = "VOLLEY_STORE", default_value_t = controller_defaults().store)]
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
    #[arg(long, default_value_t = controller_defaults().max_workers)]
    pub max_workers: usize,
    /// Most bursts one namespace may have waiting for capacity.
    #[arg(long, default_value_t = controller_defaults().max_queued_per_namespace)]
    pub max_queued_per_namespace: usize,
    /// Longest queue timeout (seconds) a burst may ask for.
    #[arg(long, default_value_t = controller_defaults().max_queue_timeout.as_secs_f64())]
    pub max_queue_timeout: f64,
    /// How long (seconds) workflow events are kept in the log, and so how long
    /// a repeated event id is dropped; 0 keeps them forever.
    #[arg(long, default_value_t = controller_defaults().event_retention.as_secs_f64())]
    pub event_retention: f64,
    /// Serve HTTPS with this certificate (PEM, with any intermediates);
    /// needed beyond loopback (`volley certificates` makes a CA and one).
    #[arg(long, env = "VOLLEY_TLS_CERT", requires = "tls_key", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "VOLLEY_TLS_KEY", requires = "tls_cert", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP beyond loopback anyway: API keys and the invoker
    /// token then cross the network in clear (a private network you trust only).
    #[arg(long, conflicts_with = "tls_cert")]
    pub insecure_plain_http: bool,
    /// The fleet grows and shrinks (`volley slurm grow`, an autoscaler): a
    /// burst larger than the invokers registered now waits for capacity
    /// instead of being refused.
    #[arg(long, env = "VOLLEY_ELASTIC")]
    pub elastic: bool,
}

impl ControlPlaneArgs {
    /// The controller's options: these flags over the defaults; secrets read
    /// (and an invoker token made if there are keys and none was given).
    pub fn options(
        &self,
        listen: &str,
        data_dir: &Path,
        brokers: &BrokerArgs,
    ) -> anyhow::Result<volley_controller::Options> {
        let mut api_keys = std::collections::HashMap::new();
        if let Some(path) = &self.api_keys {
            let text = read_secret_file(path, "API key")?;
            let keys = volley_controller::parse_keys(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            if keys.is_empty() {
                anyhow::bail!("the API key file {} holds no keys", path.display());
            }
            api_keys = keys.into_iter().collect();
        }
        let invoker_token =
            invoker_token(data_dir, self.invoker_token.as_deref().map(str::trim), !api_keys.is_empty())?;
        Ok(volley_controller::Options {
            listen: listen.into(),
            data_dir: data_dir.join("controller"),
            store: self.store.clone(),
            functions: builtin_functions(),
            // Workers' s3:// storage uses the same service and credentials as the s3 transport.
            storage: brokers.storage(),
            brokers: brokers.brokers("bursts/"),
            heartbeat_timeout: seconds("--heartbeat-timeout", self.heartbeat_timeout)?,
            max_workers: self.max_workers,
            api_keys,
            invoker_token,
            metrics_key: self.metrics_key.clone(),
            max_queued_per_namespace: self.max_queued_per_namespace,
            max_queue_timeout: seconds("--max-queue-timeout", self.max_queue_timeout)?,
            event_retention: seconds("--event-retention", self.event_retention)?,
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(volley_controller::TlsFiles { cert: cert.clone(), key: key.clone() }),
                _ => None,
            },
            insecure_plain_http: self.insecure_plain_http,
            elastic: self.elastic,
            ..controller_defaults()
        })
    }
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
    let token = random_secret();
    create_file(&path, &format!("{token}\n"), 0o600)
        .map_err(|e| anyhow::anyhow!("cannot create the invoker token file: {e:#}"))?;
    eprintln!("volley: generated an invoker token in {} (mode 0600); invokers join with --token-file", path.display());
    Ok(Some(token))
}

/// 32 random bytes in hex: a token or key of 64 characters.
pub fn random_secret() -> String {
    rand::random::<[u8; 32]>().iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates `path` holding `text` with `mode` (never over an existing file).
pub fn create_file(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    file.write_all(text.as_bytes()).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// This machine's host name (`localhost` if it cannot be read).
pub fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
