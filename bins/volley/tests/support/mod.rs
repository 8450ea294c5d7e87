//! A platform for end-to-end tests: real `volley` processes (controller and
//! invokers, or `volley up`) on loopback ports, driven through the CLI and the
//! HTTP API, and torn down (with every process they started) when dropped.

#![allow(dead_code)]

pub mod netns;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn volley_exe() -> &'static str {
    env!("CARGO_BIN_EXE_volley")
}

/// A `volley` command with the test's controller.
pub fn volley(controller: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(volley_exe());
    cmd.args(args).env_remove("VOLLEY_CONTROLLER");
    if let Some(url) = controller {
        cmd.env("VOLLEY_CONTROLLER", url);
    }
    cmd.output().expect("volley runs")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Parses JSON output of a command that must have succeeded.
pub fn json_ok(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "volley failed: {}\n{}", stderr(out), stdout(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

/// One long-running `volley` role, its stderr kept for diagnostics.
pub struct Role {
    pub child: Child,
    pub log: Arc<Mutex<String>>,
    pub data_dir: PathBuf,
}

impl Role {
    /// Starts `volley ARGS` and waits for a stderr line containing `ready`; returns
    /// the role and that line.
    pub fn start(args: &[&str], data_dir: &Path, ready: &str) -> (Role, String) {
        Role::start_in(None, args, data_dir, ready)
    }

    /// The same, inside network namespace `netns` (through `ip netns exec`).
    pub fn start_in(netns: Option<&str>, args: &[&str], data_dir: &Path, ready: &str) -> (Role, String) {
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, volley_exe()]);
                c
            }
            None => Command::new(volley_exe()),
        };
        let mut child = command
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("VOLLEY_CONTROLLER")
            .env("VOLLEY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("volley starts");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = BufReader::new(child.stderr.take().expect("stderr"));
        let sink = log.clone();
        let ready = ready.to_string();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in reader.lines().map_while(Result::ok) {
                if line.contains(&ready)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(line.clone());
                }
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let role = Role { child, log, data_dir: data_dir.to_path_buf() };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => (role, line),
            Err(_) => panic!("volley {args:?} did not get ready: {}", role.log.lock().unwrap()),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        // SIGTERM first: the role stops its packs; then make sure.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh, empty directory that is removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("volley-test-{name}-{}-{:x}", std::process::id(), rand_u32()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

/// A server process a test started itself (its own Redis, its own S3 server):
/// killed and reaped when dropped, even when the test fails half-way.
pub struct Server(pub std::process::Child);

impl Server {
    /// Kills the server now (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    t.subsec_nanos() ^ (std::process::id() << 8)
}

/// `volley up` on a free loopback port.
pub struct Platform {
    pub url: String,
    pub role: Role,
    _dir: Option<TempDir>,
}

impl Platform {
    pub fn up(extra: &[&str]) -> Platform {
        let dir = TempDir::new("up");
        let mut p = Platform::up_in(&dir.0, extra);
        p._dir = Some(dir);
        p
    }

    /// `volley up` on a data directory the caller keeps (to restart on the same state).
    pub fn up_in(data_dir: &Path, extra: &[&str]) -> Platform {
        let mut args = vec!["up", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let (role, line) = Role::start(&args, data_dir, "volley is up at ");
        let url = line.split("volley is up at ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().to_string();
        Platform { url, role, _dir: None }
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        volley(Some(&self.url), args)
    }

    /// Submits a burst over HTTP; returns (status, body).
    pub fn post(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        http(&self.url, "POST", path, body)
    }

    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        http(&self.url, "GET", path, "")
    }

    /// Waits for a burst to end (up to `secs`) and returns it.
    pub fn wait(&self, id: &str, secs: u64) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (_, burst) = self.get(&format!("/v1/bursts/{id}/wait?timeout_ms=1000"));
            let state = burst["state"].as_str().unwrap_or("").to_string();
            if ["succeeded", "failed", "cancelled"].contains(&state.as_str()) {
                return burst;
            }
            assert!(Instant::now() < deadline, "burst {id} did not end within {secs}s: {burst}");
        }
    }

    /// Waits until the burst is in `state`.
    pub fn wait_state(&self, id: &str, state: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (_, burst) = self.get(&format!("/v1/bursts/{id}"));
            if burst["state"] == state {
                return;
            }
            assert!(Instant::now() < deadline, "burst {id} never became {state}: {burst}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One HTTP request with a JSON answer (a tiny client: tests need no more).
pub fn http(base: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    http_as(None, base, method, path, body)
}

/// The same, with `Authorization: Bearer KEY`.
pub fn http_as(key: Option<&str>, base: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let url = format!("{base}{path}");
        let mut req = match method {
            "POST" => client.post(url).header("content-type", "application/json").body(body.to_string()),
            "DELETE" => client.delete(url),
            _ => client.get(url),
        };
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        let resp = req.timeout(Duration::from_secs(60)).send().await.expect("controller answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    })
}

/// A process that has exited but not been reaped (where PID 1 does not reap, they linger).
fn is_zombie(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().next() == Some("Z")).unwrap_or(true)
}

/// Processes whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        // The command name may hold spaces: fields start after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let ppid: u32 = rest.split_whitespace().nth(1).and_then(|f| f.parse().ok()).unwrap_or(0);
        if ppid == pid && !is_zombie(p) {
            out.push(p);
        }
    }
    out
}

/// Processes whose environment mentions `needle` (e.g. an invoker's socket path).
pub fn processes_with_env(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(env) = std::fs::read(format!("/proc/{p}/environ")) else { continue };
        if String::from_utf8_lossy(&env).contains(needle) && !is_zombie(p) {
            out.push(p);
        }
    }
    out
}

/// Waits until `f` holds (up to `secs`).
pub fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a service needed by a test is reachable; with CI=true it must be.
pub fn service_up(name: &str, addr: &str) -> bool {
    let up = std::net::TcpStream::connect(addr).is_ok();
    if !up {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI=true needs {name} on {addr}");
        eprintln!("SKIPPED: {name} is not reachable on {addr}");
    }
    up
}

/// A PostgreSQL schema of the test's own in database `test` (made with psql),
/// dropped when the guard goes, so tests never see each other's tables.
pub struct PgSchema {
    name: String,
}

fn psql(sql: &str) {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

impl PgSchema {
    pub fn new(prefix: &str) -> PgSchema {
        let name = format!("{prefix}_{}_{:x}", std::process::id(), rand_u32());
        psql(&format!("CREATE SCHEMA {name}"));
        PgSchema { name }
    }

    /// A store URL whose tables live in this schema.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{}", self.name)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "test",
                "-c",
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
            ])
            .output();
    }
}

/// The shared S3 test server (scripts/services), or None (skipped) when it is down.
pub fn s3_base(name: &str) -> Option<String> {
    if !service_up("the S3 test server", "127.0.0.1:9900") {
        return None;
    }
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    Some(format!("s3://volley-test/{name}-{:x}{:x}", t.subsec_nanos(), std::process::id()))
}

/// Runs `test` on a fresh prefix of the S3 test server (a `s3://` base URL)
/// and removes everything under it afterwards; skipped without the server
/// (outside CI).
pub fn on_s3(name: &str, test: impl FnOnce(&str)) {
    let Some(base) = s3_base(name) else { return };
    test(&base);
    remove_all(&base);
}

/// Runs `test` on a fresh local directory, given as a `file://` base URL.
pub fn on_local_dir(name: &str, test: impl FnOnce(&str)) {
    let dir = TempDir::new(name);
    test(&format!("file://{}", dir.0.display()));
}

/// Storage at `url` (file:// or the S3 test server), with the test server's credentials.
pub fn storage(url: &str) -> volley_storage::Storage {
    let opts = volley_storage::StorageOptions {
        endpoint: Some("http://127.0.0.1:9900".into()),
        region: Some("us-east-1".into()),
        access_key: Some("volley".into()),
        secret_key: Some("volley-secret".into()),
    };
    volley_storage::Storage::open(url, &opts).unwrap()
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// The whole object `key` under `url`.
pub fn read_object(url: &str, key: &str) -> Vec<u8> {
    block_on(storage(url).get(key)).unwrap_or_else(|e| panic!("reading {url}/{key}: {e}")).to_vec()
}

/// Deletes every object under `url` (a test leaves the shared bucket as it found it).
pub fn remove_all(url: &str) {
    let s = storage(url);
    block_on(async {
        for (key, _) in s.list("").await.unwrap() {
            s.delete(&key).await.unwrap();
        }
        assert!(s.list("").await.unwrap().is_empty());
    });
}
