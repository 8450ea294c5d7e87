//! The Python side of a pack process: one fork server per process (started
//! when its first Python worker runs), which unpickles each function once and
//! forks a process per worker; each worker connects back to this process's
//! socket, introduced by a token only it was given.
//!
//! The socket is in Linux's abstract namespace (nothing to clean up when the
//! pack ends, however it ends); a connection that does not present a token
//! this process handed out is closed.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::json;

use crate::frame;

pub use volley_proto::pack::PYTHON_ENV;

/// How long a forked worker may take to connect back.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

static CURRENT: Mutex<Option<Arc<Supervisor>>> = Mutex::new(None);

pub(crate) struct Supervisor {
    python: String,
    requests: Mutex<Requests>,
    waiting: Arc<Mutex<HashMap<String, mpsc::Sender<UnixStream>>>>,
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
        let mut child = Command::new(&python)
            .args(["-m", "volley._forkserver", &name])
            .stdin(Stdio::piped())
            .spawn()
            .map_err(|e| {
            format!("cannot start the Python interpreter {python:?}: {e} (set it with `volley invoker --python PATH`)")
        })?;
        let Some(stdin) = child.stdin.take() else { return Err("the fork server has no standard input".into()) };
        let waiting: Arc<Mutex<HashMap<String, mpsc::Sender<UnixStream>>>> = Arc::default();
        let routes = waiting.clone();
        std::thread::Builder::new()
            .name("python-accept".into())
            .spawn(move || accept(listener, routes))
            .map_err(|e| format!("cannot start the thread that accepts Python workers: {e}"))?;
        Ok(Supervisor { python, requests: Mutex::new(Requests { stdin, child, loaded: HashSet::new() }), waiting })
    }

    fn alive(&self) -> bool {
        matches!(lock(&self.requests).child.try_wait(), Ok(None))
    }

    /// Forks a worker of `function` (a pickle, `digest` its SHA-256) for `rank`
    /// and returns its connection once it has connected back.
    pub(crate) fn spawn(&self, digest: &str, function: &[u8], python: &str, rank: usize) -> Result<UnixStream, String> {
        let token = format!("{:032x}", rand::random::<u128>());
        let (tx, rx) = mpsc::channel();
        lock(&self.waiting).insert(token.clone(), tx);
        let asked = self.ask(digest, function, python, rank, &token);
        let connected = asked.and_then(|_| {
            rx.recv_timeout(CONNECT_TIMEOUT).map_err(|_| {
                let mut requests = lock(&self.requests);
                let state = match requests.child.try_wait() {
                    Ok(Some(status)) => format!(
                        "the fork server exited ({status}); is the volley package installed for {}?",
                        self.python
                    ),
                    _ => "see the burst's logs".into(),
                };
                format!("the Python worker of rank {rank} did not connect within {CONNECT_TIMEOUT:?}: {state}")
            })
        });
        lock(&self.waiting).remove(&token);
        connected
    }

    fn ask(&self, digest: &str, function: &[u8], python: &str, rank: usize, token: &str) -> Result<(), String> {
        let mut requests = lock(&self.requests);
        let gone = |e: std::io::Error| format!("the Python fork server is gone ({e}); see the burst's logs");
        if !requests.loaded.contains(digest) {
            let header = json!({"load": digest, "size": function.len(), "python": python});
            request(&mut requests.stdin, &header, function).map_err(gone)?;
            requests.loaded.insert(digest.to_string());
        }
        let header = json!({"spawn": digest, "rank": rank, "token": token});
        request(&mut requests.stdin, &header, &[]).map_err(gone)
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
