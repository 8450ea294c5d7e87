//! The Python side of a pack process: one fork server per process (started
//! when its first Python worker runs), which unpickles each function once and
//! forks a process per worker; each worker connects back to this process's
//! socket, introduced by a token only it was given.
//!
//! The socket is in Linux's abstract namespace (nothing to clean up when the
//! pack ends, however it ends); a connection that does not present a token
//! this process handed out is closed.
//!
//! The fork server's own connection (the one it says it is ready on) stays
//! open: on it the fork server reports how each worker process exited (its
//! exit code, or the signal that killed it), so a worker that ends without a
//! result is named by its cause, and one that dies before connecting back is
//! known at once instead of after the connect timeout.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::arena::Arena;
use crate::frame;

pub use volley_proto::pack::PYTHON_ENV;

/// How long a forked worker may take to connect back.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the exit of a worker that closed its connection may take to be reported.
const EXIT_REPORT_TIMEOUT: Duration = Duration::from_secs(5);

static CURRENT: Mutex<Option<Arc<Supervisor>>> = Mutex::new(None);

pub(crate) struct Supervisor {
    python: String,
    /// Memory shared with the workers for large messages (none if it could not be made).
    arena: Option<Arc<Arena>>,
    requests: Mutex<Requests>,
    waiting: Arc<Mutex<HashMap<String, mpsc::Sender<UnixStream>>>>,
    /// Said once the fork server is ready, until it has been waited for.
    ready: Mutex<Option<mpsc::Receiver<()>>>,
    exits: Arc<Exits>,
}

/// How the workers' processes exited, as the fork server reports it: kept
/// only for the workers still watched (those whose relay has not ended).
#[derive(Default)]
struct Exits {
    codes: Mutex<ExitCodes>,
    reported: Condvar,
}

#[derive(Default)]
struct ExitCodes {
    /// By token: None until reported.
    watched: HashMap<String, Option<i32>>,
    /// The fork server's report connection is gone (it exited).
    closed: bool,
}

/// A function as the fork server loads it: its pickle (`digest` its SHA-256),
/// the client's Python `major.minor` and the versions of the installed
/// packages it refers to.
pub(crate) struct Load<'a> {
    pub(crate) digest: &'a str,
    pub(crate) pickle: &'a [u8],
    pub(crate) python: &'a str,
    pub(crate) packages: &'a serde_json::Value,
}

/// A forked worker, connected back.
pub(crate) struct Forked {
    pub(crate) conn: UnixStream,
    pub(crate) token: String,
}

struct Requests {
    stdin: ChildStdin,
    child: Child,
    /// Digests of the functions the fork server has unpickled.
    loaded: HashSet<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Supervisor {
    /// This process's supervisor, started (again, if its fork server died) as needed.
    pub(crate) fn get() -> Result<Arc<Supervisor>, String> {
        let mut current = lock(&CURRENT);
        if let Some(s) = current.as_ref()
            && s.alive()
        {
            return Ok(s.clone());
        }
        let started = Arc::new(Supervisor::start()?);
        *current = Some(started.clone());
        Ok(started)
    }

    fn start() -> Result<Supervisor, String> {
        let python = std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".into());
        let name = format!("volley-py-{}-{:016x}", std::process::id(), rand::random::<u64>());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).map_err(|e| format!("socket name: {e}"))?;
        let listener = UnixListener::bind_addr(&addr).map_err(|e| format!("cannot listen for Python workers: {e}"))?;
        let arena = Arena::new()
            .inspect_err(|e| eprintln!("volley: no shared memory for Python workers ({e}): large messages use sockets"))
            .ok();
        if let Some(arena) = &arena {
            // Large messages from other packs arrive in the arena: lent to their workers as they are.
            volley_comm::lend_large_buffers(Arc::new(crate::arena::Lender(arena.clone())));
        }
        let arena_fd = arena.as_ref().map(|a| a.fd());
        let ready = format!("{:032x}", rand::random::<u128>());
        let fd_arg = arena_fd.map_or_else(|| "-".to_string(), |fd| fd.to_string());
        let mut command = Command::new(&python);
        command.args(["-m", "volley._forkserver", &name, &ready, &fd_arg]).stdin(Stdio::piped());
        if let Some(fd) = arena_fd {
            // SAFETY: between fork and exec only an fcntl, which is async-signal-safe.
            unsafe {
                command.pre_exec(move || {
                    // The arena is close-on-exec: only the fork server keeps it.
                    let fd = std::os::fd::BorrowedFd::borrow_raw(fd);
                    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
                    Ok(())
                });
            }
        }
        let mut child = command.spawn().map_err(|e| {
            format!("cannot start the Python interpreter {python:?}: {e} (set it with `volley invoker --python PATH`)")
        })?;
        let Some(stdin) = child.stdin.take() else { return Err("the fork server has no standard input".into()) };
        let waiting: Arc<Mutex<HashMap<String, mpsc::Sender<UnixStream>>>> = Arc::default();
        let (tx, reports) = mpsc::channel();
        lock(&waiting).insert(ready, tx);
        let routes = waiting.clone();
        std::thread::Builder::new()
            .name("python-accept".into())
            .spawn(move || accept(listener, routes))
            .map_err(|e| format!("cannot start the thread that accepts Python workers: {e}"))?;
        let exits = Arc::new(Exits::default());
        let (said_ready, ready) = mpsc::channel();
        let recorded = exits.clone();
        std::thread::Builder::new()
            .name("python-exits".into())
            .spawn(move || record_exits(&reports, &said_ready, &recorded))
            .map_err(|e| format!("cannot start the thread that reads the Python workers' exits: {e}"))?;
        Ok(Supervisor {
            python,
            arena,
            requests: Mutex::new(Requests { stdin, child, loaded: HashSet::new() }),
            waiting,
            ready: Mutex::new(Some(ready)),
            exits,
        })
    }

    /// Returns once the fork server has imported what it preloads (at once if it has said so before).
    pub(crate) fn wait_ready(&self) -> Result<(), String> {
        let mut ready = lock(&self.ready);
        if let Some(rx) = ready.as_ref() {
            self.connected(rx, None, "the Python fork server did not get ready")?;
            *ready = None;
        }
        Ok(())
    }

    /// What `rx` brings, waited for while the fork server lives (at most
    /// `CONNECT_TIMEOUT`) and, if `token` names a worker, while its process has not exited.
    fn connected<T>(&self, rx: &mpsc::Receiver<T>, token: Option<&str>, what: &str) -> Result<T, String> {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(got) => return Ok(got),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(format!("{what}: see the burst's logs")),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if let Some(code) = token.and_then(|t| self.exits.reported(t)) {
                return Err(format!("{what}: its process {} before it connected", exit_text(code)));
            }
            if let Ok(Some(status)) = lock(&self.requests).child.try_wait() {
                return Err(format!(
                    "{what}: the fork server exited ({status}); is the volley package installed for {}? \
                     (the burst's logs say more)",
                    self.python
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!("{what} within {CONNECT_TIMEOUT:?}: see the burst's logs"));
            }
        }
    }

    /// How the process of the worker `token` names exited, once the fork
    /// server has said so (None if it has not within `EXIT_REPORT_TIMEOUT`).
    /// The worker is no longer watched afterwards.
    pub(crate) fn exit_code(&self, token: &str) -> Option<i32> {
        let deadline = Instant::now() + EXIT_REPORT_TIMEOUT;
        let mut codes = lock(&self.exits.codes);
        loop {
            match codes.watched.get(token) {
                Some(Some(code)) => {
                    let code = *code;
                    codes.watched.remove(token);
                    return Some(code);
                }
                Some(None) if !codes.closed => {}
                _ => {
                    codes.watched.remove(token);
                    return None;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                codes.watched.remove(token);
                return None;
            }
            codes = self.exits.reported.wait_timeout(codes, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Stops watching the worker `token` names (its relay ended with its result).
    pub(crate) fn forget(&self, token: &str) {
        lock(&self.exits.codes).watched.remove(token);
    }

    pub(crate) fn arena(&self) -> Option<Arc<Arena>> {
        self.arena.clone()
    }

    fn alive(&self) -> bool {
        matches!(lock(&self.requests).child.try_wait(), Ok(None))
    }

    /// Starts a worker of `function` for `rank` (forked, or a spare handed it)
    /// and returns it once it has connected back. Its exit is watched until
    /// `exit_code` or `forget` is called with its token.
    pub(crate) fn spawn(&self, function: &Load<'_>, rank: usize) -> Result<Forked, String> {
        let token = format!("{:032x}", rand::random::<u128>());
        let (tx, rx) = mpsc::channel();
        lock(&self.waiting).insert(token.clone(), tx);
        lock(&self.exits.codes).watched.insert(token.clone(), None);
        let asked = self.ask(function, rank, &token);
        let what = format!("the Python worker of rank {rank} did not connect");
        let connected = asked.and_then(|_| self.connected(&rx, Some(&token), &what));
        lock(&self.waiting).remove(&token);
        match connected {
            Ok(conn) => Ok(Forked { conn, token }),
            Err(e) => {
                self.forget(&token);
                Err(e)
            }
        }
    }

    fn ask(&self, function: &Load<'_>, rank: usize, token: &str) -> Result<(), String> {
        let mut requests = lock(&self.requests);
        let gone = |e: std::io::Error| format!("the Python fork server is gone ({e}); see the burst's logs");
        if !requests.loaded.contains(function.digest) {
            let header = json!({
                "load": function.digest, "size": function.pickle.len(),
                "python": function.python, "packages": function.packages,
            });
            request(&mut requests.stdin, &header, function.pickle).map_err(gone)?;
            requests.loaded.insert(function.digest.to_string());
        }
        let header = json!({"spawn": function.digest, "rank": rank, "token": token});
        request(&mut requests.stdin, &header, &[]).map_err(gone)
    }
}

impl Exits {
    fn reported(&self, token: &str) -> Option<i32> {
        lock(&self.codes).watched.get(token).copied().flatten()
    }
}

/// Waits for the fork server's connection, says it is ready, then records
/// the exits it reports until it closes.
fn record_exits(reports: &mpsc::Receiver<UnixStream>, said_ready: &mpsc::Sender<()>, exits: &Exits) {
    // A fork server that never connects (it failed to start) is given up on, as `wait_ready` does.
    let conn = reports.recv_timeout(CONNECT_TIMEOUT);
    let _ = said_ready.send(());
    if let Ok(mut conn) = conn {
        // Frames `{"exit": TOKEN, "code": N}`: N is the exit code, or minus the signal that killed it.
        while let Ok(Some((report, _))) = frame::read(&mut conn) {
            let token = report.get("exit").and_then(serde_json::Value::as_str).unwrap_or_default();
            let Some(code) = report.get("code").and_then(serde_json::Value::as_i64) else { continue };
            let mut codes = lock(&exits.codes);
            if let Some(slot) = codes.watched.get_mut(token) {
                *slot = Some(code as i32);
                exits.reported.notify_all();
            }
        }
    }
    lock(&exits.codes).closed = true;
    exits.reported.notify_all();
}

/// How a process that exited with `code` (minus its signal if one killed it) ended, in words.
pub(crate) fn exit_text(code: i32) -> String {
    match code {
        0 => "exited with code 0 (os._exit(0)?)".into(),
        c if c > 0 => format!("exited with code {c}"),
        c => {
            let signal = -c;
            let (name, why) = match signal {
                4 => ("SIGILL", ": it crashed"),
                6 => ("SIGABRT", ": it aborted"),
                7 => ("SIGBUS", ": it crashed"),
                8 => ("SIGFPE", ": it crashed"),
                9 => ("SIGKILL", ": out of memory, or killed by hand"),
                11 => ("SIGSEGV", ": it crashed"),
                13 => ("SIGPIPE", ""),
                15 => ("SIGTERM", ""),
                _ => ("a signal", ""),
            };
            format!("was killed by {name} (signal {signal}{why})")
        }
    }
}

fn request(to: &mut ChildStdin, header: &serde_json::Value, blob: &[u8]) -> std::io::Result<()> {
    let head = serde_json::to_vec(header).map_err(std::io::Error::other)?;
    to.write_all(&(head.len() as u32).to_le_bytes())?;
    to.write_all(&head)?;
    to.write_all(blob)?;
    to.flush()
}

/// Hands each connecting worker to the thread waiting for its token. Each
/// connection's hello is read by a thread of its own: workers starting
/// together on a busy machine must not wait for each other's first words.
fn accept(listener: UnixListener, waiting: Arc<Mutex<HashMap<String, mpsc::Sender<UnixStream>>>>) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let waiting = waiting.clone();
        let introduced =
            std::thread::Builder::new().name("python-hello".into()).spawn(move || introduce(conn, &waiting));
        if let Err(e) = introduced {
            eprintln!("volley: cannot read a Python worker's hello: {e}");
        }
    }
}

fn introduce(mut conn: UnixStream, waiting: &Mutex<HashMap<String, mpsc::Sender<UnixStream>>>) {
    // A connection that says nothing within a while is not one of ours.
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let hello = frame::read(&mut conn);
    let _ = conn.set_read_timeout(None);
    let Ok(Some((hello, _))) = hello else { return };
    let token = hello.get("token").and_then(|t| t.as_str()).unwrap_or_default();
    if let Some(tx) = lock(waiting).remove(token) {
        let _ = tx.send(conn);
    }
}
