//! How an invoker runs: every setting, its default and its check, in one place.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;

/// An invoker's settings; `Default` gives an invoker of the controller at
/// `http://127.0.0.1:7070` that starts this very program (`ARGS pack`) for packs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// The controller's base URL, e.g. `http://127.0.0.1:7070`.
    pub controller: String,
    /// The cluster's invoker token, when the controller requires one.
    pub token: Option<String>,
    /// A CA (PEM) that signed an `https://` controller's certificate, trusted
    /// besides the system's roots; handed to packs too.
    pub ca_file: Option<PathBuf>,
    /// Where to serve `GET /healthz` (for a Kubernetes probe): 200 once
    /// registered, 503 before and while draining. None: nowhere.
    pub health_listen: Option<String>,
    /// The invoker's name (the host name by default).
    pub name: String,
    /// The host other packs reach this invoker's packs at.
    pub host: String,
    /// Worker threads it offers.
    pub slots: usize,
    /// Memory it offers, in MiB.
    pub memory_mb: u64,
    /// Sockets and pack files live here.
    pub data_dir: PathBuf,
    /// The program started for every pack of a built-in function, and its arguments.
    pub program: PathBuf,
    pub program_args: Vec<String>,
    /// The Python interpreter Python workers run with (the `volley` package
    /// installed for it); handed to every pack process.
    pub python: String,
    /// Modules (comma-separated) a Python pack process imports before it
    /// counts as started, so that a warm one has them: a worker's function
    /// that imports them finds them loaded. Those not installed are skipped.
    pub python_preload: String,
    /// How long a new process may take to connect back.
    #[serde(with = "volley_proto::seconds")]
    pub start_timeout: Duration,
    /// Bytes of stdout and of stderr kept per pack.
    pub log_limit: usize,
    /// How long one poll for commands may wait at the controller.
    #[serde(with = "volley_proto::seconds")]
    pub poll_wait: Duration,
    /// Most idle pack processes kept warm per program (0 turns the warm pool off).
    pub warm_pool: usize,
    /// An idle warm process older than this is stopped.
    #[serde(with = "volley_proto::seconds")]
    pub idle_timeout: Duration,
    /// Each pack process in a cgroup of its own (process limit, the burst's
    /// memory as a hard limit, CPU share), where the invoker can make them
    /// (root, cgroup v1 or v2); elsewhere packs run without, with a notice.
    pub pack_cgroups: bool,
    /// Whether each pack process is sandboxed (ADR 0008): a uid and
    /// directory of its own, new namespaces, Landlock, seccomp.
    pub sandbox: SandboxMode,
    /// The program that starts a sandboxed pack (`PROGRAM sandbox-exec ...`): the volley binary.
    pub launcher: PathBuf,
    /// More paths sandboxed packs may read (the system's, the Python's and their program are granted).
    pub pack_read: Vec<PathBuf>,
    /// Local directories sandboxed packs may read and write (`file://` storage), besides their cell.
    pub local_storage: Vec<PathBuf>,
    /// Bytes the cache of files packs keep for later packs (a reference
    /// genome's index) may take; the least recently used entries go first.
    pub cache_bytes: u64,
    /// Where that cache lives (None: `data_dir/cache`); a directory that
    /// outlives the data directory keeps the entries for later invokers.
    pub cache_dir: Option<PathBuf>,
}

/// Whether pack processes are sandboxed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    /// Never (development only: packs run as the invoker's user, in cgroups).
    Off,
    /// Always: the invoker refuses to start where it cannot (not root, no
    /// Landlock ABI 6) rather than run packs unconfined.
    On,
    /// Where the invoker can, with a warning where it cannot.
    Auto,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            controller: "http://127.0.0.1:7070".into(),
            token: None,
            ca_file: None,
            health_listen: None,
            name: hostname(),
            host: "127.0.0.1".into(),
            slots: 2048,
            memory_mb: crate::host_memory::total_mb().unwrap_or(4096),
            data_dir: std::env::temp_dir().join("volley").join("invoker"),
            program: std::env::current_exe().unwrap_or_default(),
            program_args: vec!["pack".into()],
            python: "python3".into(),
            python_preload: "numpy".into(),
            start_timeout: Duration::from_secs(10),
            log_limit: 256 * 1024,
            poll_wait: Duration::from_millis(1000),
            warm_pool: 64,
            idle_timeout: Duration::from_secs(120),
            pack_cgroups: true,
            // Embedders start packs of their own programs, with no launcher beside them.
            sandbox: SandboxMode::Off,
            launcher: std::env::current_exe().unwrap_or_default(),
            pack_read: Vec::new(),
            local_storage: Vec::new(),
            cache_bytes: 8 << 30,
            cache_dir: None,
        }
    }
}

impl Options {
    /// Refuses settings that cannot work, saying what to change.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::Options(m.into()));
        if self.slots == 0 {
            return bad("an invoker must offer at least one slot");
        }
        if self.name.is_empty() || self.host.is_empty() {
            return bad("an invoker needs a name and a host its packs are reached at");
        }
        if self.start_timeout.is_zero() || self.idle_timeout.is_zero() || self.poll_wait.is_zero() {
            return bad("the start timeout, the idle timeout and the poll wait must be positive");
        }
        if self.poll_wait > Duration::from_secs(30) {
            return bad("a poll waits at most 30 s");
        }
        Ok(())
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "invoker".into())
}
