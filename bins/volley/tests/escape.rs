//! The escape suite (issue 15, ADR 0008): a hostile function deployed by one
//! tenant (`examples/escape`) makes real attempts against another tenant's
//! running burst and the invoker, on a platform whose packs are sandboxed.
//! Every attempt must be refused or contained, the victim and the invoker
//! must be unaffected, and the same attempts made unsandboxed must succeed
//! (which shows the refusals are the sandbox's doing).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use volley_testkit as support;

use support::{Platform, TempDir, http_as};

const VICTIM_KEY: &str = "victim-key-0123456789abcdef01234567";
const ATTACKER_KEY: &str = "attacker-key-0123456789abcdef012345";

fn root() -> bool {
    // SAFETY: geteuid(2) reads the caller's effective uid.
    let root = unsafe { libc::geteuid() } == 0;
    support::services::present("root (sandboxed packs)", root)
}

fn example(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_volley")).parent().unwrap().join(name);
    assert!(path.exists(), "{} is missing: run the workspace's tests, which build examples/{name}", path.display());
    path
}

/// A platform with two tenants; `sandbox` on or off; no warm pool, so that
/// every sandboxed process on the machine belongs to a running burst.
fn platform(dir: &TempDir, sandbox: &str) -> Platform {
    let keys = dir.0.join("keys");
    std::fs::write(&keys, format!("victim {VICTIM_KEY}\nattacker {ATTACKER_KEY}\n")).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Local storage of its own (the flag wins over the tests' VOLLEY_LOCAL_STORAGE, every test's directories).
    let storage = dir.0.join("storage");
    std::fs::create_dir_all(&storage).unwrap();
    let storage = storage.to_str().unwrap();
    Platform::up(&[
        "--api-keys",
        keys.to_str().unwrap(),
        "--sandbox",
        sandbox,
        "--warm-pool",
        "0",
        "--local-storage",
        storage,
    ])
}

fn cli_as(p: &Platform, key: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_volley"))
        .args(["--controller", &p.url, "--api-key", key])
        .args(args)
        .output()
        .unwrap()
}

fn submit(p: &Platform, key: &str, body: Value) -> String {
    let (status, burst) = http_as(Some(key), &p.url, "POST", "/v1/bursts", &body.to_string());
    assert_eq!(status, 201, "{burst}");
    burst["id"].as_str().unwrap().to_string()
}

fn wait(p: &Platform, key: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, burst) = http_as(Some(key), &p.url, "GET", &format!("/v1/bursts/{id}"), "");
        if ["succeeded", "failed", "cancelled"].contains(&burst["state"].as_str().unwrap_or("")) {
            return burst;
        }
        assert!(Instant::now() < deadline, "burst {id} did not end: {burst}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_running(p: &Platform, key: &str, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, burst) = http_as(Some(key), &p.url, "GET", &format!("/v1/bursts/{id}"), "");
        if burst["state"] == "running"
            && burst["workers"].as_array().is_some_and(|w| w.iter().all(|w| w["started_at"].is_number()))
        {
            return;
        }
        assert!(Instant::now() < deadline, "burst {id} is not running: {burst}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Host pids of processes running as a pack uid (200000 and up).
fn pack_processes() -> Vec<(i32, u32)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else { continue };
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next()?.parse::<u32>().ok());
        if let Some(uid) = uid.filter(|u| (200_000..265_536).contains(u)) {
            found.push((pid, uid));
        }
    }
    found
}

fn alive(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// The attempts of one escape burst (by tenant B of `dir`'s platform `p`)
/// against tenant A's running burst `victim` and its processes.
fn attempts(p: &Platform, dir: &TempDir, victim: &str, victims: &[(i32, u32)], program: &Path) -> Value {
    let data_dir = &p.role.data_dir;
    let invoker_dir = &data_dir.join("invoker");
    let (keys, outside) = (dir.0.join("keys"), dir.0.join("outside-written"));
    let cells: Vec<PathBuf> =
        victims.iter().map(|(_, uid)| invoker_dir.join("cells").join(uid.to_string()).join("work")).collect();
    // The victim's burst's socket directory (the only burst running). Its
    // packs drop their listening sockets once connected: one that listens
    // on, open to every user (0777), stands for them. Only the directory
    // (root's, 0700, an ACL entry per victim pack) keeps the attacker out.
    let dirs: Vec<PathBuf> =
        std::fs::read_dir(invoker_dir.join("sockets")).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(dirs.len(), 1, "one burst's socket directory: {dirs:?}");
    let listening = dirs[0].join(format!("volley-{victim}-9-listening.sock"));
    let listener = std::os::unix::net::UnixListener::bind(&listening).unwrap();
    std::fs::set_permissions(&listening, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::mem::forget(listener);
    let sockets = [listening];
    let mut pids: Vec<i32> = victims.iter().map(|(pid, _)| *pid).collect();
    pids.push(p.role.pid() as i32);
    json!({
        "read": [cells[0].join("secret"), keys, program],
        "list": [&cells[0], invoker_dir, invoker_dir.join("programs"), data_dir],
        "write": [cells[0].join("planted"), invoker_dir.join("planted"), outside],
        "exec": [program],
        "kill": &pids,
        "ptrace": &pids,
        "connect": sockets.iter().chain([&PathBuf::from("/run/postgresql/.s.PGSQL.5432")]).collect::<Vec<_>>(),
        "syscalls": true,
    })
}

/// Every answer in `report[kind]`.
fn answers<'a>(report: &'a Value, kind: &str) -> Vec<(&'a String, &'a str)> {
    report[kind].as_object().unwrap().iter().map(|(k, v)| (k, v.as_str().unwrap())).collect()
}

/// Runs the victim, a hostile burst against it, and returns (its report, the victim's pids).
fn attack(p: &Platform, dir: &TempDir) -> (Value, Vec<(i32, u32)>, String) {
    let data_dir = p.role.data_dir.clone();
    let invoker_dir = data_dir.join("invoker");
    // The victim tenant: a deployed binary of its own (run once, so the invoker caches it) and a
    // running burst of two packs talking over Unix sockets.
    assert!(cli_as(p, VICTIM_KEY, &["deploy", "pi", example("pi").to_str().unwrap()]).status.success());
    let pi =
        submit(p, VICTIM_KEY, json!({"function": "pi", "workers": 2, "granularity": 1, "params": {"samples": 10}}));
    let ended = wait(p, VICTIM_KEY, &pi);
    assert_eq!(ended["state"], "succeeded", "{ended}");
    let program =
        std::fs::read_dir(invoker_dir.join("programs")).unwrap().flatten().next().expect("the cached binary").path();
    let before = pack_processes();
    let victim = submit(
        p,
        VICTIM_KEY,
        json!({"function": "sleep", "workers": 4, "granularity": 2, "transport": "uds", "params": {"seconds": 300}}),
    );
    wait_running(p, VICTIM_KEY, &victim);
    let victims: Vec<(i32, u32)> = pack_processes().into_iter().filter(|v| !before.contains(v)).collect();
    // A secret in the victim's cell, as the victim itself would keep it.
    if let Some((_, uid)) = victims.first() {
        let secret = invoker_dir.join("cells").join(uid.to_string()).join("work/secret");
        std::fs::write(&secret, "victim's secret").unwrap();
        std::os::unix::fs::chown(&secret, Some(*uid), Some(*uid)).unwrap();
    }
    assert!(cli_as(p, ATTACKER_KEY, &["deploy", "escape", example("escape").to_str().unwrap()]).status.success());
    let params = attempts(p, dir, &victim, &victims, &program);
    let attack = submit(p, ATTACKER_KEY, json!({"function": "escape", "workers": 1, "params": params}));
    let ended = wait(p, ATTACKER_KEY, &attack);
    assert_eq!(ended["state"], "succeeded", "{ended}");
    // Each refused system call is named in the pack's log (by the init that answered it).
    let logs = cli_as(p, ATTACKER_KEY, &["bursts", "logs", &attack]);
    let logs = String::from_utf8_lossy(&logs.stdout).into_owned() + &String::from_utf8_lossy(&logs.stderr);
    for call in ["ptrace", "unshare", "bpf", "mount", "io_uring_setup", "perf_event_open"] {
        let line = format!("called {call}, which packs may not use: refused (EPERM)");
        assert!(logs.contains(&line), "no {line:?} in the pack's log:\n{logs}");
    }
    (ended["workers"][0]["result"].clone(), victims, victim)
}

#[test]
fn a_hostile_function_cannot_reach_another_tenants_burst_nor_the_invoker() {
    if !root() {
        return;
    }
    let dir = TempDir::new("escape");
    let p = platform(&dir, "on");
    let (report, victims, victim) = attack(&p, &dir);
    // Each pack process and its namespace's init run as the pack's uid: two uids, four processes.
    let uids: std::collections::BTreeSet<u32> = victims.iter().map(|(_, uid)| *uid).collect();
    assert_eq!((uids.len(), victims.len()), (2, 4), "a uid of its own for each victim pack: {victims:?}");
    eprintln!("what the kernel answered the hostile function: {report:#}");
    for kind in ["read", "list", "write", "exec", "kill", "ptrace", "connect", "syscalls"] {
        for (what, said) in answers(&report, kind) {
            assert_ne!(said, "allowed", "{kind} {what} was allowed: {report}");
        }
    }
    // Named refusals: the pid namespace hides the victims, seccomp refuses ptrace and the rest.
    assert!(answers(&report, "kill").iter().all(|(_, s)| *s == "ESRCH"), "{report}");
    assert!(answers(&report, "ptrace").iter().all(|(_, s)| *s == "EPERM"), "{report}");
    assert_eq!(report["syscalls"]["unshare_user"], "EPERM", "{report}");
    assert_eq!(report["syscalls"]["io_uring_setup"], "EPERM", "{report}");
    assert_eq!(report["own_directory"], "allowed", "the pack may write its own directory: {report}");
    assert!(!dir.0.join("outside-written").exists());
    // The victim is unharmed and still running; the invoker too.
    for (pid, _) in &victims {
        assert!(alive(*pid), "victim pack process {pid} survived");
    }
    let (_, burst) = http_as(Some(VICTIM_KEY), &p.url, "GET", &format!("/v1/bursts/{victim}"), "");
    assert_eq!(burst["state"], "running", "{burst}");
    assert!(cli_as(&p, VICTIM_KEY, &["bursts", "cancel", &victim]).status.success());
    assert_eq!(wait(&p, VICTIM_KEY, &victim)["state"], "cancelled");

    // A fork bomb stops at the pack's process limit; the platform goes on.
    let bomb = submit(&p, ATTACKER_KEY, json!({"function": "escape", "workers": 1, "params": {"fork_bomb": true}}));
    let ended = wait(&p, ATTACKER_KEY, &bomb);
    assert_eq!(ended["state"], "succeeded", "{ended}");
    let result = &ended["workers"][0]["result"]["fork_bomb"];
    eprintln!("fork bomb: {result}");
    assert_eq!(result["stopped_by"], "EAGAIN", "{result}");
    assert!(result["forked"].as_u64().unwrap() < 9000, "{result}");

    // Memory past the burst's memory_mb ends the burst, named.
    let hog = submit(
        &p,
        ATTACKER_KEY,
        json!({"function": "escape", "workers": 1, "memory_mb": 32, "params": {"allocate_mb": 512}}),
    );
    let ended = wait(&p, ATTACKER_KEY, &hog);
    assert_eq!(ended["state"], "failed", "{ended}");
    assert!(ended["error"].as_str().unwrap_or("").contains("exceeded its memory limit of 96 MiB"), "{ended}");

    // Nothing of the attacker's cells is left once its bursts ended.
    let pi = submit(&p, VICTIM_KEY, json!({"function": "pi", "workers": 2, "params": {"samples": 10}}));
    assert_eq!(wait(&p, VICTIM_KEY, &pi)["state"], "succeeded", "the platform still runs bursts");
    let cells = p.role.data_dir.join("invoker/cells");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_dir(&cells).map(|d| d.count()).unwrap_or(0) > 0 {
        assert!(
            Instant::now() < deadline,
            "cells left: {:?}",
            std::fs::read_dir(&cells).unwrap().flatten().map(|e| e.path()).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn unsandboxed_the_same_attempts_succeed() {
    if !root() {
        return;
    }
    let dir = TempDir::new("escape-off");
    let p = platform(&dir, "off");
    let data_dir = p.role.data_dir.clone();
    assert!(cli_as(&p, ATTACKER_KEY, &["deploy", "escape", example("escape").to_str().unwrap()]).status.success());
    let outside = dir.0.join("outside-written");
    let params = json!({
        "read": [dir.0.join("keys")],
        "list": [data_dir.join("invoker")],
        "write": [&outside],
    });
    let attack = submit(&p, ATTACKER_KEY, json!({"function": "escape", "workers": 1, "params": params}));
    let ended = wait(&p, ATTACKER_KEY, &attack);
    assert_eq!(ended["state"], "succeeded", "{ended}");
    let report = &ended["workers"][0]["result"];
    for kind in ["read", "list", "write"] {
        assert!(answers(report, kind).iter().all(|(_, s)| *s == "allowed"), "{kind}: {report}");
    }
    assert_eq!(std::fs::metadata(&outside).unwrap().uid(), 0, "written as the invoker's user");
}

#[test]
fn sandboxed_packs_share_only_the_local_storage_they_are_granted() {
    if !root() {
        return;
    }
    let dir = TempDir::new("escape-storage");
    let granted = dir.0.join("granted");
    std::fs::create_dir_all(granted.join("input")).unwrap();
    // Made by root before the invoker starts, and after: the packs' group reaches both.
    std::fs::write(granted.join("input/a.txt"), "to be or not to be").unwrap();
    let keys = dir.0.join("keys");
    std::fs::write(&keys, format!("victim {VICTIM_KEY}\nattacker {ATTACKER_KEY}\n")).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    let p = Platform::up(&[
        "--api-keys",
        keys.to_str().unwrap(),
        "--sandbox",
        "on",
        "--local-storage",
        granted.to_str().unwrap(),
    ]);
    std::fs::write(granted.join("input/b.txt"), "be quick").unwrap();
    let input = format!("file://{}/input", granted.display());
    let output = format!("file://{}/counts", granted.display());
    let count = submit(
        &p,
        VICTIM_KEY,
        json!({"function": "wordcount", "workers": 2, "granularity": 1, "params": {"input": input, "output": output}}),
    );
    let ended = wait(&p, VICTIM_KEY, &count);
    assert_eq!(ended["state"], "succeeded", "{ended}");
    let counted: String = (0..2)
        .map(|r| std::fs::read_to_string(granted.join(format!("counts/part-{r:05}"))).unwrap_or_default())
        .collect();
    assert!(counted.contains("be\t3"), "{counted}");
    // Outside the granted directories, file:// storage is out of reach.
    let elsewhere = dir.0.join("elsewhere");
    std::fs::create_dir_all(elsewhere.join("input")).unwrap();
    std::fs::write(elsewhere.join("input/a.txt"), "hidden").unwrap();
    let input = format!("file://{}/input", elsewhere.display());
    let output = format!("file://{}/counts", elsewhere.display());
    let count = submit(
        &p,
        VICTIM_KEY,
        json!({"function": "wordcount", "workers": 1, "params": {"input": input, "output": output}}),
    );
    let ended = wait(&p, VICTIM_KEY, &count);
    assert_eq!(ended["state"], "failed", "{ended}");
    let error = ended["error"].as_str().unwrap_or("");
    assert!(error.contains("Permission denied") && error.contains("--local-storage"), "{ended}");
}
