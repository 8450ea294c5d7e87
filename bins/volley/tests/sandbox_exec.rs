//! `volley sandbox-exec`, the launcher of a sandboxed pack (ADR 0008), on
//! real processes as root: what a program started through it sees and may do.

use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const UID: u32 = 200_123;

fn root() -> bool {
    // SAFETY: geteuid(2) reads the caller's effective uid.
    let root = unsafe { libc::geteuid() } == 0;
    volley_testkit::services::present("root (new namespaces and uids)", root)
}

/// A cell owned by the pack's uid and a neighbour's directory with a secret.
struct Cell {
    root: PathBuf,
    cell: PathBuf,
}

impl Cell {
    fn new(what: &str) -> Cell {
        let root = std::env::temp_dir().join(format!("volley-sandbox-exec-{what}-{}", std::process::id()));
        let cell = root.join("cell");
        std::fs::create_dir_all(&cell).unwrap();
        std::fs::create_dir_all(root.join("other")).unwrap();
        std::fs::write(root.join("other/secret"), "s3cret").unwrap();
        chown(&cell, Some(UID), Some(UID)).unwrap();
        std::fs::set_permissions(&cell, std::fs::Permissions::from_mode(0o700)).unwrap();
        Cell { root, cell }
    }

    fn launch(&self, script: &str) -> Command {
        self.launch_program(&["/bin/sh", "-c", script])
    }

    fn launch_program(&self, program: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_volley"));
        let cell = self.cell.to_str().unwrap();
        command.args(["sandbox-exec", "--uid", &UID.to_string(), "--gid", &UID.to_string(), "--dir", cell]);
        for read in ["/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/dev/urandom"] {
            command.args(["--read", read]);
        }
        command.args(["--write", cell, "--write", "/dev/null", "--tmpfs", "/run", "--tmpfs", "/dev/shm"]);
        command.arg("--").args(program);
        command
    }

    fn run(&self, script: &str) -> Output {
        self.launch(script).output().expect("volley runs")
    }
}

impl Drop for Cell {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn a_program_runs_as_the_packs_uid_alone_in_its_namespaces_and_confined() {
    if !root() {
        return;
    }
    let cell = Cell::new("whole");
    let other = cell.root.join("other/secret").display().to_string();
    let script = format!(
        "id -u; id -g; hostname; echo pid $$; echo procs $(ls /proc | grep -c '^[0-9]'); \
         echo mine > f && cat f; pwd; \
         cat {other} || echo secret refused; \
         ls /run/postgresql 2>/dev/null || echo run hidden; \
         unshare --user true 2>/dev/null || echo unshare refused; \
         kill -0 1 && echo can signal itself; \
         echo uid_map $(cat /proc/self/uid_map); grep -E 'CapEff|CapBnd' /proc/self/status"
    );
    let out = cell.run(&script);
    let text = text(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(&lines[..3], &[UID.to_string().as_str(), UID.to_string().as_str(), "pack"], "{text}");
    assert!(text.contains("pid 2\n"), "the shell is PID 2 of its namespace, under its init: {text}");
    let procs: usize = text.split("procs ").nth(1).and_then(|r| r.split_whitespace().next()?.parse().ok()).unwrap();
    // Its init, the shell and the command substitution's subshell, ls and grep.
    assert!(procs <= 5, "it sees its own processes only ({procs}): {text}");
    assert!(text.contains("mine\n") && text.contains(cell.cell.to_str().unwrap()), "{text}");
    assert!(text.contains("Permission denied") && text.contains("secret refused"), "{text}");
    assert!(text.contains("run hidden") && text.contains("unshare refused"), "{text}");
    assert!(text.contains("can signal itself"), "{text}");
    // A user namespace of its own, where only its uid is mapped (to itself), without capabilities.
    assert!(text.contains(&format!("uid_map {UID} {UID} 1\n")), "{text}");
    assert!(text.contains("CapEff:\t0000000000000000") && text.contains("CapBnd:\t0000000000000000"), "{text}");
    assert_eq!(std::fs::metadata(cell.cell.join("f")).map(|m| std::os::unix::fs::MetadataExt::uid(&m)).ok(), Some(UID));
}

#[test]
fn the_launcher_exits_as_its_program_did_and_bad_arguments_say_why() {
    if !root() {
        return;
    }
    let cell = Cell::new("exit");
    assert_eq!(cell.run("exit 7").status.code(), Some(7));
    // A signal the program sends itself works (it is not its namespace's init, which would ignore it).
    let crashed = cell.run("kill -SEGV $$").status;
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&crashed), Some(libc::SIGSEGV), "{crashed:?}");
    // Its program killed from the host: the launcher dies of the same signal.
    let mut launcher = cell.launch("sleep 60").spawn().unwrap();
    let mut started = Vec::new();
    wait_for("the program to start under its init", || {
        started = children(launcher.id()).into_iter().flat_map(children).collect();
        !started.is_empty()
    });
    // SAFETY: kill(2) sends a signal; no memory is involved.
    unsafe {
        libc::kill(started[0] as libc::pid_t, libc::SIGKILL);
    }
    let status = launcher.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL), "{status:?}");
    let bad =
        Command::new(env!("CARGO_BIN_EXE_volley")).args(["sandbox-exec", "--uid", "0", "--gid", "5"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(126));
    assert!(text(&bad).contains("usage: --uid U"), "{}", text(&bad));
    let missing_dir = Command::new(env!("CARGO_BIN_EXE_volley"))
        .args(["sandbox-exec", "--uid", "200124", "--gid", "200124", "--dir", "/nonexistent-cell", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(missing_dir.status.code(), Some(126));
    assert!(text(&missing_dir).contains("entering the pack's directory"), "{}", text(&missing_dir));
}

#[test]
fn a_program_the_packs_uid_could_not_reach_by_its_path_runs() {
    if !root() {
        return;
    }
    // The invoker's own binary may live in a private home (0700): the launcher
    // opens it as root and runs it from the descriptor.
    let cell = Cell::new("private");
    let private = cell.root.join("private");
    std::fs::create_dir_all(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let id = private.join("id");
    std::fs::copy("/usr/bin/id", &id).unwrap();
    let out = cell.launch_program(&[id.to_str().unwrap(), "-u"]).output().unwrap();
    assert_eq!(text(&out).trim(), UID.to_string(), "{}", text(&out));
    // By its path, from inside, it is out of reach.
    let out = cell.run(&format!("{} -u", id.display()));
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
}

/// Host pids of the processes whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(parent)
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])))
        .unwrap_or(false)
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what} within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn killing_the_launcher_ends_everything_it_started() {
    if !root() {
        return;
    }
    let cell = Cell::new("kill");
    let mut launcher = cell.launch("sleep 60 & sleep 60; wait").spawn().unwrap();
    let mut started = Vec::new();
    wait_for("the program to start", || {
        started = children(launcher.id());
        !started.is_empty()
    });
    let init = started[0];
    let mut program = Vec::new();
    wait_for("the program to start under its init", || {
        program = children(init);
        !program.is_empty()
    });
    wait_for("its children to start", || children(program[0]).len() == 2);
    let everything: Vec<u32> = [init, program[0]].into_iter().chain(children(program[0])).collect();
    launcher.kill().unwrap();
    let _ = launcher.wait();
    wait_for("every process of the namespace to end", || everything.iter().all(|p| !alive(*p)));
    assert!(Path::new(&cell.cell).exists());
}
