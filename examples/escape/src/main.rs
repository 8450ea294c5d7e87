//! A hostile function for the escape suite (issue 15): each attempt is a
//! real system call against what a sandboxed pack must not reach, and the
//! result says what the kernel answered: `"allowed"` or the refusal's errno
//! name. The suite (bins/volley/tests/escape.rs) gives it the victims' paths
//! and host pids and checks every answer; run unsandboxed, the same
//! attempts succeed, which is what shows the refusals come from the sandbox.
//!
//! Params (each optional): `read` and `list` (paths to read / list),
//! `write` (paths to create), `exec` (paths to open for execution), `kill` and
//! `ptrace` (host pids), `connect` (Unix socket paths), `fork_bomb` (fork
//! until refused, then end the children), `allocate_mb` (touch that much
//! memory), `syscalls` (try unshare, mount, bpf, io_uring, setuid(0);
//! unsandboxed as root some of these succeed, on this process only).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use serde::Deserialize;
use volley_sdk::serde_json::{Map, Value, json};
use volley_sdk::{Worker, WorkerResult};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Params {
    read: Vec<PathBuf>,
    list: Vec<PathBuf>,
    write: Vec<PathBuf>,
    exec: Vec<PathBuf>,
    kill: Vec<i32>,
    ptrace: Vec<i32>,
    connect: Vec<PathBuf>,
    fork_bomb: bool,
    allocate_mb: u64,
    syscalls: bool,
}

/// What the kernel answered: "allowed" or the errno's name.
fn answer(result: std::io::Result<()>) -> Value {
    match result {
        Ok(()) => json!("allowed"),
        Err(e) => json!(errno_name(e.raw_os_error().unwrap_or(0))),
    }
}

fn errno_name(code: i32) -> String {
    let name = match code {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EACCES => "EACCES",
        libc::EAGAIN => "EAGAIN",
        libc::ENOSYS => "ENOSYS",
        libc::EINVAL => "EINVAL",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EXDEV => "EXDEV",
        libc::EROFS => "EROFS",
        _ => return format!("errno {code}"),
    };
    name.to_string()
}

fn check(ret: libc::c_long) -> std::io::Result<()> {
    if ret < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

fn escape(w: &Worker) -> WorkerResult {
    let p: Params = w.params_as()?;
    let mut report = Map::new();
    let each = |report: &mut Map<String, Value>, kind: &str, items: Vec<(String, Value)>| {
        report.insert(kind.into(), Value::Object(items.into_iter().collect()));
    };
    let path_key = |p: &PathBuf| p.display().to_string();
    each(&mut report, "read", p.read.iter().map(|f| (path_key(f), answer(std::fs::read(f).map(|_| ())))).collect());
    each(&mut report, "list", p.list.iter().map(|d| (path_key(d), answer(std::fs::read_dir(d).map(|_| ())))).collect());
    each(&mut report, "write", p.write.iter().map(|f| (path_key(f), answer(std::fs::write(f, b"escaped")))).collect());
    each(&mut report, "exec", p.exec.iter().map(|f| (path_key(f), answer(open_for_exec(f)))).collect());
    // SAFETY: kill(2) and ptrace(2) with plain integers; no memory is shared.
    each(
        &mut report,
        "kill",
        p.kill
            .iter()
            .map(|&pid| (pid.to_string(), answer(check(unsafe { libc::kill(pid, libc::SIGKILL) } as libc::c_long))))
            .collect(),
    );
    each(&mut report, "ptrace", p.ptrace.iter().map(|&pid| (pid.to_string(), answer(attach(pid)))).collect());
    each(
        &mut report,
        "connect",
        p.connect
            .iter()
            .map(|s| (path_key(s), answer(std::os::unix::net::UnixStream::connect(s).map(|_| ()))))
            .collect(),
    );
    if p.syscalls {
        report.insert("syscalls".into(), syscalls());
    }
    // The pack's own temporary directory (its cell's, sandboxed): writing
    // there must work, or the sandbox is merely broken.
    let mine = std::env::temp_dir().join(format!("escape-{}", std::process::id()));
    report.insert(
        "own_directory".into(),
        answer(std::fs::write(&mine, b"ok").and_then(|()| std::fs::remove_file(&mine))),
    );
    if p.fork_bomb {
        report.insert("fork_bomb".into(), fork_bomb());
    }
    if p.allocate_mb > 0 {
        let mut held: Vec<Vec<u8>> = Vec::new();
        for _ in 0..p.allocate_mb {
            // Touched, not just reserved: the pages count against the cgroup.
            held.push(vec![1u8; 1 << 20]);
        }
        report.insert("allocated_mb".into(), json!(held.len()));
    }
    Ok(Value::Object(report))
}

fn open_for_exec(path: &std::path::Path) -> std::io::Result<()> {
    let name = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: a NUL-terminated path; the descriptor is closed at once.
    let fd = unsafe { libc::open(name.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    check(fd as libc::c_long)?;
    // SAFETY: closing the descriptor just opened.
    unsafe { libc::close(fd) };
    Ok(())
}

fn attach(pid: i32) -> std::io::Result<()> {
    // SAFETY: PTRACE_ATTACH takes no memory argument; detached at once if it worked.
    let ret = unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0) };
    check(ret)?;
    // SAFETY: as above.
    unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0) };
    Ok(())
}

/// System calls a function never needs, each tried once.
fn syscalls() -> Value {
    // A mount point of its own: were the mount allowed (unsandboxed, as
    // root), it would cover nothing of anyone else's, and it is undone.
    let point = std::env::temp_dir().join(format!("escape-mount-{}", std::process::id()));
    let _ = std::fs::create_dir(&point);
    let source = CString::new("none").unwrap_or_default();
    let target = CString::new(point.as_os_str().as_bytes()).unwrap_or_default();
    let fstype = CString::new("tmpfs").unwrap_or_default();
    // SAFETY: each call is given valid NUL-terminated strings or plain
    // integers; a call that succeeds changes only this process.
    let results = unsafe {
        [
            ("unshare_user", check(libc::unshare(libc::CLONE_NEWUSER) as libc::c_long)),
            ("unshare_net", check(libc::unshare(libc::CLONE_NEWNET) as libc::c_long)),
            (
                "mount",
                check(
                    libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) as libc::c_long
                ),
            ),
            ("bpf", check(libc::syscall(libc::SYS_bpf, 0, 0, 0))),
            ("io_uring_setup", check(libc::syscall(libc::SYS_io_uring_setup, 1, 0))),
            ("setuid_root", check(libc::setuid(0) as libc::c_long)),
            ("perf_event_open", check(libc::syscall(libc::SYS_perf_event_open, 0, 0, -1, -1, 0))),
        ]
    };
    if results.iter().any(|(k, r)| *k == "mount" && r.is_ok()) {
        // SAFETY: a NUL-terminated path this function just mounted on.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
    let _ = std::fs::remove_dir(&point);
    Value::Object(results.into_iter().map(|(k, r)| (k.to_string(), answer(r))).collect())
}

/// Forks until the kernel refuses, then ends the children: how many it got and what stopped it.
fn fork_bomb() -> Value {
    let mut children = Vec::new();
    let stopped_by = loop {
        // SAFETY: the child only waits to be killed (pause(2)), touching nothing of the parent's.
        match unsafe { libc::fork() } {
            0 => loop {
                // SAFETY: pause(2) takes nothing.
                unsafe { libc::pause() };
            },
            pid if pid > 0 => children.push(pid),
            _ => break std::io::Error::last_os_error(),
        }
        if children.len() >= 100_000 {
            break std::io::Error::other("not stopped");
        }
    };
    for &pid in &children {
        // SAFETY: signalling and reaping this process's own children.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    json!({ "forked": children.len(), "stopped_by": errno_name(stopped_by.raw_os_error().unwrap_or(0)) })
}

volley_sdk::main!(escape);
