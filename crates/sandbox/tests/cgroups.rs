//! Packs' cgroups on this machine's real cgroup filesystem (root needed):
//! a process past its memory limit is killed and counted, a fork bomb stops
//! at the process limit, and nothing is left once the cgroup is removed.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use volley_sandbox::{Cgroup, Layout, Limits};

fn layout() -> Option<Layout> {
    // SAFETY: geteuid(2) reads the caller's effective uid.
    let root = unsafe { libc::geteuid() } == 0;
    let layout = if root { Layout::detect().ok() } else { None };
    volley_testkit::services::present("cgroups a root process can make (v1 or v2)", layout.is_some()).then_some(())?;
    layout
}

fn name(what: &str) -> String {
    format!("test-{what}-{}", std::process::id())
}

/// Runs `sh -c script` inside `cgroup`.
fn run_inside(cgroup: &Cgroup, script: &str) -> std::process::Output {
    // The shell waits for a line before it runs the script: it is moved in first, as the invoker does.
    let mut child = Command::new("sh")
        .args(["-c", &format!("read go; {script}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh runs");
    cgroup.add_tree(child.id()).expect("the shell moves in");
    child.stdin.take().expect("its stdin").write_all(b"go\n").expect("the shell reads its line");
    child.wait_with_output().expect("sh ends")
}

/// Whether `pid` is a process that has not exited (a zombie waiting for its reaper has).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with(|c| c != 'Z' && c != 'X')))
        .unwrap_or(false)
}

#[test]
fn a_process_past_the_memory_limit_is_killed_and_counted() {
    let Some(layout) = layout() else { return };
    let cgroup = Cgroup::create(&layout, &name("memory")).unwrap();
    cgroup.limit(&Limits { memory_bytes: Some(64 << 20), pids: Some(64), cpu_slots: Some(2) }).unwrap();
    // 256 MiB, written (so really held) by a process of the cgroup.
    let out = run_inside(&cgroup, "head -c 268435456 /dev/zero | tr '\\0' a | { v=$(cat); echo ${#v}; }");
    assert_eq!(out.status.signal(), None, "the shell itself survives");
    let usage = cgroup.usage();
    assert!(usage.oom_kills >= 1, "the kernel killed for memory: {usage:?}, {out:?}");
    assert!(usage.memory_peak.is_some_and(|p| p <= 64 << 20), "{usage:?}");
    let dirs = cgroup.dirs().to_vec();
    cgroup.remove().unwrap();
    assert!(dirs.iter().all(|d| !d.exists()), "removed: {dirs:?}");
}

#[test]
fn a_fork_bomb_stops_at_the_process_limit_and_removal_kills_what_is_left() {
    let Some(layout) = layout() else { return };
    let cgroup = Cgroup::create(&layout, &name("pids")).unwrap();
    cgroup.limit(&Limits { pids: Some(8), ..Limits::default() }).unwrap();
    // Twenty sleepers asked for, eight processes allowed (the shell is one).
    let out = run_inside(&cgroup, "for i in $(seq 20); do sleep 60 >/dev/null 2>&1 & done; echo started");
    let usage = cgroup.usage();
    assert!(usage.pids_refused >= 1, "forks were refused: {usage:?}, {out:?}");
    let left = cgroup.pids();
    assert!(!left.is_empty() && left.len() <= 8, "the sleepers that started outlive the shell: {left:?}");
    let dirs = cgroup.dirs().to_vec();
    cgroup.remove().unwrap();
    for pid in left {
        assert!(!running(pid), "pid {pid} was killed");
    }
    assert!(dirs.iter().all(|d| !d.exists()), "removed: {dirs:?}");
}

#[test]
fn a_cgroup_dropped_unremoved_is_removed_with_its_processes() {
    let Some(layout) = layout() else { return };
    let cgroup = Cgroup::create(&layout, &name("drop")).unwrap();
    let mut child = Command::new("sleep").arg("60").spawn().unwrap();
    cgroup.add(child.id()).unwrap();
    assert_eq!(cgroup.pids(), vec![child.id()]);
    let dirs = cgroup.dirs().to_vec();
    drop(cgroup);
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert!(dirs.iter().all(|d| !d.exists()), "removed: {dirs:?}");
}

#[test]
fn a_process_moved_in_brings_the_children_it_started_before() {
    let Some(layout) = layout() else { return };
    let cgroup = Cgroup::create(&layout, &name("tree")).unwrap();
    // A shell that started two sleepers (one of them through a subshell) before it was moved.
    let mut shell =
        Command::new("sh").args(["-c", "sleep 60 & (sleep 60 & wait) & wait"]).stdout(Stdio::null()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let children = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
            .collect::<Vec<_>>()
    };
    // The shell's two children, and the subshell's sleeper.
    while children(shell.id()).len() < 2 || children(shell.id()).iter().map(|c| children(*c).len()).sum::<usize>() < 1 {
        assert!(std::time::Instant::now() < deadline, "the sleepers start");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    cgroup.add_tree(shell.id()).unwrap();
    let inside = cgroup.pids();
    assert!(inside.len() >= 4, "the shell, its subshell and both sleepers: {inside:?}");
    cgroup.remove().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&shell.wait().unwrap()), Some(libc::SIGKILL));
}

#[test]
fn abandoned_empty_cgroups_are_removed_and_those_with_processes_kept() {
    let Some(machine) = layout() else { return };
    // Under a parent of this test's own: other tests' cgroups, empty for a
    // moment before their process moves in, are not this test's to remove.
    let own = name("abandon-root");
    let layout = match &machine {
        Layout::V1 { memory, pids, cpu } => {
            Layout::V1 { memory: memory.join(&own), pids: pids.join(&own), cpu: cpu.join(&own) }
        }
        Layout::V2 { own: dir } => Layout::V2 { own: dir.join(&own) },
    };
    // One left behind (as by an invoker killed before it removed it), one in use.
    let abandoned = Cgroup::create(&layout, &name("abandoned")).unwrap();
    let left: Vec<_> = abandoned.dirs().to_vec();
    std::mem::forget(abandoned);
    let in_use = Cgroup::create(&layout, &name("in-use")).unwrap();
    let mut child = Command::new("sleep").arg("60").spawn().unwrap();
    in_use.add(child.id()).unwrap();
    // A recent one is left alone (its process may be about to move in).
    layout.remove_abandoned(std::time::Duration::from_secs(3600));
    assert!(left.iter().all(|d| d.exists()), "a recent empty cgroup is kept");
    layout.remove_abandoned(std::time::Duration::ZERO);
    assert!(left.iter().all(|d| !d.exists()), "the abandoned one is gone");
    assert!(in_use.dirs().iter().all(|d| d.exists()), "one with a process stays");
    in_use.remove().unwrap();
    let _ = child.wait();
    let roots: Vec<std::path::PathBuf> = match &layout {
        Layout::V1 { memory, pids, cpu } => vec![memory.clone(), pids.clone(), cpu.clone()],
        Layout::V2 { own } => vec![own.clone()],
    };
    for root in roots {
        std::fs::remove_dir(root.join("volley")).unwrap();
        std::fs::remove_dir(root).unwrap();
    }
}
