//! Sandboxed pack processes (ADR 0008): each one started through `volley
//! sandbox-exec` in a cell of its own (a uid no other pack process on the
//! machine has, its own directories), in new namespaces, confined by
//! Landlock to the system's read-only files, the Python the invoker runs
//! workers with, its cell, the same-host socket directory of the burst it
//! takes and the local storage directories the invoker grants; under the
//! packs' seccomp filter. Its line to the invoker is a socket pair left at
//! descriptor 3: its uid could not open the invoker's socket file.
//!
//! The burst is granted at assignment: the burst's socket directory
//! (`sockets/<n>`, root's, 0700) gets an ACL entry for each of its
//! local packs' uids, and once every pack listens (the controller's `Peers`)
//! so do their socket files. Another burst's packs cannot look into the
//! directory nor connect to what is in it.

use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use volley_sandbox::{Cell, Confinement, PACKS_GID, Paths, acl};

use crate::{Error, Options};

/// Read-only system paths every pack may read (those missing are left out).
const SYSTEM: &[&str] = &[
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/etc",
    "/opt",
    "/proc",
    "/sys/fs/cgroup",
    "/sys/devices/system/cpu",
];
/// Devices a pack may read and write.
const DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"];
/// Host directories replaced by an empty tmpfs in a pack's mount namespace
/// (their sockets and files are the host's, not the pack's).
const HIDDEN: &[&str] = &["/run", "/dev/shm"];

/// The descriptor a sandboxed pack finds its control socket at.
pub(crate) const CONTROL_FD: i32 = 3;
/// The descriptor the launcher's reaper holds its cell's uid lock at.
pub(crate) const LOCK_FD: i32 = 4;

/// What sandboxed packs are started with; made once when the invoker starts.
pub(crate) struct Sandbox {
    launcher: PathBuf,
    cells: PathBuf,
    sockets: PathBuf,
    /// Read and write grants every pack gets (its cell's are added per cell).
    paths: Paths,
    /// Each burst attempt's socket directory, by its comm id.
    bursts: Mutex<HashMap<String, BurstSockets>>,
    /// Names the next socket directory.
    named: AtomicU64,
}

impl Sandbox {
    /// Why this invoker cannot sandbox its packs here, if it cannot.
    pub(crate) fn unavailable(opts: &Options) -> Option<String> {
        // SAFETY: geteuid(2) reads the caller's effective uid.
        if unsafe { libc::geteuid() } != 0 {
            return Some(
                "sandboxed packs need an invoker running as root (it gives each pack a uid of its own)".into(),
            );
        }
        if let Err(e) = Confinement::new(&Paths::default()) {
            return Some(e.to_string());
        }
        if !opts.launcher.is_file() {
            return Some(format!(
                "the sandbox launcher {} is not a file (it is the volley binary)",
                opts.launcher.display()
            ));
        }
        None
    }

    /// The sandbox for this invoker (where [`Sandbox::unavailable`] found nothing missing).
    pub(crate) fn prepare(opts: &Options) -> Result<Sandbox, Error> {
        let mut read: Vec<PathBuf> = SYSTEM.iter().map(PathBuf::from).collect();
        read.extend(python_paths(&opts.python));
        read.extend(opts.pack_read.iter().cloned());
        read.extend(opts.ca_file.iter().cloned());
        let sockets = opts.data_dir.join("sockets");
        let mut write: Vec<PathBuf> = DEVICES.iter().map(PathBuf::from).collect();
        write.extend(HIDDEN.iter().map(PathBuf::from));
        write.push(sockets.clone());
        write.extend(opts.local_storage.iter().cloned());
        // The invoker's files are root's alone; packs reach their cells and
        // the sockets directory (search only: burst names are not listed)
        // through the launcher's covering mounts.
        // Compiled WebAssembly modules: a pack may read one it is started
        // with, by name (a module's digest), not list what others run.
        let wasm = opts.data_dir.join(crate::wasm::WASM_DIR);
        std::fs::create_dir_all(&wasm).map_err(|source| Error::DataDir { path: wasm.clone(), source })?;
        read.push(wasm.clone());
        let closed = [(&opts.data_dir, 0o700), (&sockets, 0o711), (&wasm, 0o711)];
        for (dir, mode) in closed {
            // (A data directory made inside shared local storage inherited
            // its sharing: the mode's mask shuts the group out, and nothing
            // made here later inherits it.)
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
                .and_then(|()| acl::clear_default(dir))
                .map_err(|source| Error::DataDir { path: dir.clone(), source })?;
        }
        // Local storage: every pack reads and writes it through their shared
        // group, what is there now and what anyone makes there later.
        for dir in &opts.local_storage {
            std::fs::create_dir_all(dir)
                .and_then(|()| acl::share_tree_with_group(dir, PACKS_GID, &[&opts.data_dir]))
                .map_err(|source| Error::DataDir { path: dir.clone(), source })?;
        }
        let cells = opts.data_dir.join("cells");
        // Cells of an earlier run of this invoker whose packs are gone too.
        Cell::remove_abandoned(&cells);
        Ok(Sandbox {
            launcher: opts.launcher.clone(),
            cells,
            sockets,
            paths: Paths { read, write },
            bursts: Mutex::new(HashMap::new()),
            named: AtomicU64::new(0),
        })
    }

    /// A new cell for a pack process.
    pub(crate) fn cell(&self) -> Result<Cell, String> {
        Cell::take(&self.cells).map_err(|e| e.to_string())
    }

    /// The command that starts `program args` confined to `cell`.
    /// The launcher joins `cgroups` (the pack's cgroup directories) before it starts anything.
    pub(crate) fn command(
        &self,
        cell: &Cell,
        cgroups: &[PathBuf],
        program: &Path,
        args: &[String],
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.launcher);
        // Not the invoker's environment: it may hold the cluster's secrets
        // (the invoker token, API and storage keys, the store's URL).
        cmd.env_clear();
        for (name, value) in std::env::vars_os() {
            if passed_on(&name.to_string_lossy()) {
                cmd.env(name, value);
            }
        }
        cmd.arg("sandbox-exec");
        cmd.args(["--uid", &cell.uid.to_string(), "--gid", &cell.gid.to_string()]);
        cmd.args(["--group", &PACKS_GID.to_string()]);
        cmd.args(["--hold-fd", &LOCK_FD.to_string()]);
        for dir in cgroups {
            cmd.arg("--cgroup").arg(dir);
        }
        cmd.arg("--dir").arg(&cell.work);
        for p in self.paths.read.iter().filter(|p| p.exists()) {
            cmd.arg("--read").arg(p);
        }
        for p in self.paths.write.iter().chain([&cell.dir]).filter(|p| p.exists()) {
            cmd.arg("--write").arg(p);
        }
        for dir in HIDDEN.iter().filter(|d| Path::new(d).is_dir()) {
            cmd.arg("--tmpfs").arg(dir);
        }
        cmd.arg("--").arg(program).args(args);
        cmd.env("HOME", &cell.work).env("TMPDIR", &cell.tmp).env(volley_storage::SANDBOXED_ENV, "1");
        cmd
    }

    /// Where the packs of the burst attempt `comm_id` bind their Unix
    /// sockets; called once per pack started. A short name (a socket's path
    /// must fit in 108 bytes, and the file's own name repeats the burst's).
    pub(crate) fn socket_dir(&self, comm_id: &str) -> PathBuf {
        let mut bursts = self.lock();
        let next = self.named.fetch_add(1, Ordering::Relaxed);
        let entry = bursts.entry(comm_id.to_string()).or_insert_with(|| BurstSockets {
            dir: self.sockets.join(format!("{next:x}")),
            packs: 0,
            uids: Vec::new(),
        });
        entry.packs += 1;
        entry.dir.clone()
    }

    /// Lets the pack process of `uid` into the socket directory of
    /// `comm_id` (made here, root's and closed to everyone else).
    pub(crate) fn admit(&self, comm_id: &str, uid: u32) -> Result<(), String> {
        let mut bursts = self.lock();
        let Some(burst) = bursts.get_mut(comm_id) else { return Ok(()) };
        burst.uids.push(uid);
        let made = std::fs::DirBuilder::new().mode(0o700).create(&burst.dir);
        if let Err(e) = made
            && e.kind() != std::io::ErrorKind::AlreadyExists
        {
            return Err(format!("cannot make the burst's socket directory {}: {e}", burst.dir.display()));
        }
        acl::grant_users(&burst.dir, &burst.uids, acl::READ | acl::WRITE | acl::EXECUTE)
            .map_err(|e| format!("cannot let the pack into {}: {e}", burst.dir.display()))
    }

    /// Once every pack of `burst` listens: lets each of its local packs
    /// connect to the others' sockets.
    pub(crate) fn connect_peers(&self, burst: &str) {
        // Keyed by attempt (`BURST` or `BURST-aN`); the controller names the burst.
        let attempts: Vec<(PathBuf, Vec<u32>)> = {
            let retry = format!("{burst}-a");
            let bursts = self.lock();
            bursts
                .iter()
                .filter(|(k, _)| *k == burst || k.starts_with(&retry))
                .map(|(_, b)| (b.dir.clone(), b.uids.clone()))
                .collect()
        };
        for (dir, uids) in attempts {
            grant_sockets(&dir, &uids);
        }
    }

    /// The pack process of `uid` is done with the burst `comm_id`.
    /// Its entries go from the directory and the sockets there at once: its
    /// uid may be given to another pack process as soon as this one ends.
    pub(crate) fn withdraw(&self, comm_id: &str, uid: u32) {
        let mut bursts = self.lock();
        let Some(burst) = bursts.get_mut(comm_id) else { return };
        burst.uids.retain(|&u| u != uid);
        let _ = acl::grant_users(&burst.dir, &burst.uids, acl::READ | acl::WRITE | acl::EXECUTE);
        grant_sockets(&burst.dir, &burst.uids);
    }

    /// A pack of `comm_id` ended: its burst's directory goes with the last one.
    pub(crate) fn pack_ended(&self, comm_id: &str) {
        let mut bursts = self.lock();
        let Some(burst) = bursts.get_mut(comm_id) else { return };
        burst.packs = burst.packs.saturating_sub(1);
        if burst.packs == 0 {
            let _ = std::fs::remove_dir_all(&burst.dir);
            bursts.remove(comm_id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, BurstSockets>> {
        self.bursts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Sets the sockets in `dir` to be reached by `uids` (and no other uid).
/// Sockets only: a pack could have put a link there (which grant_users
/// would not follow anyway).
fn grant_sockets(dir: &Path, uids: &[u32]) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_socket())) {
        if let Err(e) = acl::grant_users(&entry.path(), uids, acl::READ | acl::WRITE) {
            tracing::warn!("cannot set who reaches {}: {e}", entry.path().display());
        }
    }
}

/// A burst attempt's socket directory on this invoker.
struct BurstSockets {
    dir: PathBuf,
    /// Its packs started here and not yet ended.
    packs: usize,
    /// The uids of those that took their pack, for the ACL grants.
    uids: Vec<u32>,
}

/// Whether an environment variable of the invoker's reaches its sandboxed
/// packs: locale, time zone, search paths and logging only (the invoker
/// adds what a pack needs of its own).
fn passed_on(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "PATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TERM",
        "PYTHONPATH",
        "RUST_BACKTRACE",
        "RUST_LOG",
        "VOLLEY_LOG",
        "VOLLEY_PYTHON_SPARES",
    ];
    NAMES.contains(&name) || name.starts_with("LC_")
}

/// The directories the Python interpreter reads its standard library and
/// packages from (the workers' Python must be readable by packs' uids).
fn python_paths(python: &str) -> Vec<PathBuf> {
    let script = "import sys, json; print(json.dumps([sys.executable, sys.prefix, sys.base_prefix, sys.exec_prefix] + sys.path))";
    let mut cmd = std::process::Command::new(python);
    cmd.args(["-c", script]).stdin(std::process::Stdio::null());
    let Some(out) = output_within(cmd, Duration::from_secs(20)) else {
        tracing::warn!(
            "cannot ask {python} for its paths: Python packs will not find their interpreter in the sandbox"
        );
        return Vec::new();
    };
    let paths: Vec<String> = serde_json::from_slice(&out).unwrap_or_default();
    let mut dirs: Vec<PathBuf> = paths.into_iter().filter(|p| !p.is_empty()).map(PathBuf::from).collect();
    // The interpreter's own file may be a link out of the virtual environment.
    if let Some(exe) = dirs.first().and_then(|e| std::fs::canonicalize(e).ok()) {
        dirs.push(exe);
    }
    dirs
}

/// A command's standard output if it succeeds within `limit`.
fn output_within(mut cmd: std::process::Command, limit: Duration) -> Option<Vec<u8>> {
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().ok()?;
    let deadline = std::time::Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => {
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut child.stdout.take()?, &mut out).ok()?;
                return Some(out);
            }
            Ok(Some(_)) | Err(_) => return None,
            Ok(None) if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
