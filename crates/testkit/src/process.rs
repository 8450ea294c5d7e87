//! Processes the tests start and look at: `volley` commands and roles, servers
//! of their own, and the processes a role left behind.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `volley` binary of this build: `$VOLLEY_EXE`, or the one beside the
/// test binaries (`target/<profile>/volley`, built by any workspace test run).
pub fn volley_exe() -> PathBuf {
    if let Some(exe) = std::env::var_os("VOLLEY_EXE") {
        return exe.into();
    }
    let test = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> → target/<profile>/volley
    let exe = test.parent().and_then(Path::parent).map(|dir| dir.join("volley")).unwrap_or_default();
    assert!(
        exe.exists(),
        "no volley binary at {}: build it first (`cargo build -p volley`) or set VOLLEY_EXE",
        exe.display()
    );
    exe
}

/// A `volley` command with the test's controller.
pub fn volley(controller: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(volley_exe());
    // (A command that runs an embedded platform grants the tests' directories to its packs.)
    cmd.args(args).env_remove("VOLLEY_CONTROLLER").env("VOLLEY_LOCAL_STORAGE", crate::fs::tests_root());
    // (Its cache, the tests' own rather than the user's.)
    cmd.env("VOLLEY_CACHE_DIR", crate::fs::tests_root().join("cache"));
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
                c.args(["netns", "exec", ns]).arg(volley_exe());
                c
            }
            None => Command::new(volley_exe()),
        };
        let mut child = command
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("VOLLEY_CONTROLLER")
            .env("VOLLEY_LOCAL_STORAGE", crate::fs::tests_root())
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

/// A process that has exited but not been reaped (where PID 1 does not reap, they linger).
fn is_zombie(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().next() == Some("Z")).unwrap_or(true)
}

/// Processes whose parent is `pid`.
/// `pid`'s children, their children, and so on (a sandboxed pack process
/// is the invoker's grandchild's child: its launcher, its namespace's init).
pub fn descendants_of(pid: u32) -> Vec<u32> {
    let mut found = children_of(pid);
    let mut i = 0;
    while i < found.len() {
        let more = children_of(found[i]);
        found.extend(more);
        i += 1;
    }
    found
}

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

/// The pack processes among [`processes_with_env`]: one per pack process
/// the invoker started, by its `VOLLEY_PROCESS_ID` (a sandboxed one is a
/// launcher, its namespace's init and the program, all with the same id).
pub fn pack_processes_with_env(needle: &str) -> Vec<String> {
    let mut ids: Vec<String> = processes_with_env(needle)
        .into_iter()
        .filter_map(|p| {
            let env = std::fs::read(format!("/proc/{p}/environ")).ok()?;
            String::from_utf8_lossy(&env)
                .split('\0')
                .find_map(|kv| kv.strip_prefix("VOLLEY_PROCESS_ID=").map(String::from))
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Waits until `f` holds (up to `secs`).
pub fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
