//! `volley sandbox-exec`: starts a program confined (ADR 0008, decision 2).
//!
//! It runs as a process of its own, single-threaded (nothing else may run in
//! it: new namespaces and forking need that), started by the invoker, which
//! has already put it in the pack's cgroup. It trades the invoker's
//! supplementary groups for the `--group`s given, unshares new PID, IPC,
//! UTS and cgroup namespaces, and forks: the child is PID 1 of the new PID
//! namespace (and makes a mount namespace of its own); this process stays outside as its reaper and exits as the
//! program did (killing it kills the child, and with it the namespace).
//! The child makes its mounts private, mounts a fresh /proc and a tmpfs on
//! each `--tmpfs` directory (hiding what the host keeps there, such as
//! sockets under /run), names its host `pack`, makes the granted paths below
//! directories closed to others reachable (cover.rs), enters its directory,
//! enters a user namespace of its own in which the pack's uid and gid (and
//! its groups) are mapped to themselves, which the reaper maps for it from
//! outside, takes the pack's uid and gid, asks to die with
//! its reaper, restricts itself with Landlock and seccomp, and forks the
//! program as PID 2, staying as the namespace's init: it reaps orphans and
//! tells the reaper how the program ended (an init gets from inside its
//! namespace only the signals it handles, so the program must not be one).
//!
//! Arguments: `--uid U --gid G [--group G]... [--hold-fd N] [--cgroup DIR]... --dir DIR [--read PATH]... [--write PATH]...
//! [--tmpfs DIR]... -- PROGRAM [ARGS]...`.

use std::convert::Infallible;
use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::SigSet;
use nix::sys::signal::Signal;
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{
    ForkResult, Gid, Pid, Uid, chdir, execvp, fexecve, fork, setgroups, sethostname, setresgid, setresuid,
};

use crate::{Confinement, Filter, Paths, Refusals};

/// Exit code when the sandbox itself could not be made (as a shell's "cannot run").
pub const SETUP_FAILED: i32 = 126;

/// What `volley sandbox-exec` was asked to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the group every pack shares local storage through).
    pub groups: Vec<u32>,
    /// A descriptor the reaper keeps open as long as it lives and the pack
    /// does not get (the invoker's lock on the pack's uid).
    pub hold_fd: Option<i32>,
    /// Cgroup directories this process joins first (before it forks: what
    /// it starts is born inside).
    pub cgroups: Vec<PathBuf>,
    pub dir: PathBuf,
    pub paths: Paths,
    pub tmpfs: Vec<PathBuf>,
    pub program: Vec<OsString>,
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "sandbox-exec: {0} (usage: --uid U --gid G [--group G]... [--hold-fd N] [--cgroup DIR]... --dir DIR [--read PATH]... [--write PATH]... [--tmpfs DIR]... -- PROGRAM [ARGS]...)"
    )]
    Usage(String),
    #[error("sandbox-exec: {what}: {source}")]
    Setup { what: &'static str, source: std::io::Error },
}

fn setup(what: &'static str) -> impl FnOnce(nix::Error) -> LaunchError {
    move |e| LaunchError::Setup { what, source: std::io::Error::from(e) }
}

impl Launch {
    /// Parses the arguments that follow `sandbox-exec`.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Launch, LaunchError> {
        let mut args = args.into_iter();
        let (mut uid, mut gid, mut dir) = (None, None, None);
        let (mut paths, mut tmpfs, mut groups, mut hold_fd) = (Paths::default(), Vec::new(), Vec::new(), None);
        let mut cgroups = Vec::new();
        while let Some(arg) = args.next() {
            if arg == "--" {
                let program: Vec<OsString> = args.collect();
                if program.is_empty() {
                    return Err(LaunchError::Usage("no program after --".into()));
                }
                let id = |v: Option<u32>, name: &str| v.ok_or_else(|| LaunchError::Usage(format!("{name} is missing")));
                let (uid, gid) = (id(uid, "--uid")?, id(gid, "--gid")?);
                if uid == 0 || gid == 0 || groups.contains(&0) {
                    return Err(LaunchError::Usage("a pack may not run as root (uid or gid 0)".into()));
                }
                let dir = dir.ok_or_else(|| LaunchError::Usage("--dir is missing".into()))?;
                return Ok(Launch { uid, gid, groups, hold_fd, cgroups, dir, paths, tmpfs, program });
            }
            let flag = arg.to_string_lossy().into_owned();
            if !["--uid", "--gid", "--group", "--hold-fd", "--cgroup", "--dir", "--read", "--write", "--tmpfs"]
                .contains(&flag.as_str())
            {
                return Err(LaunchError::Usage(format!("unknown argument {flag:?} (the program goes after --)")));
            }
            let value = args.next().ok_or_else(|| LaunchError::Usage(format!("{flag} needs a value")))?;
            let number = || {
                value
                    .to_str()
                    .and_then(|v| v.parse::<u32>().ok())
                    .ok_or_else(|| LaunchError::Usage(format!("{flag} takes a number")))
            };
            match flag.as_str() {
                "--uid" => uid = Some(number()?),
                "--gid" => gid = Some(number()?),
                "--group" => groups.push(number()?),
                "--hold-fd" => hold_fd = Some(number()? as i32),
                "--dir" => dir = Some(PathBuf::from(value)),
                "--read" => paths.read.push(PathBuf::from(value)),
                "--write" => paths.write.push(PathBuf::from(value)),
                "--tmpfs" => tmpfs.push(PathBuf::from(value)),
                "--cgroup" => cgroups.push(PathBuf::from(value)),
                other => return Err(LaunchError::Usage(format!("unknown argument {other:?}"))),
            }
        }
        Err(LaunchError::Usage("no -- before the program".into()))
    }

    /// Starts the program confined and waits for it: its exit code, or the
    /// signal that killed it raised on this process. Only in a process that
    /// runs nothing else (no threads).
    pub fn run(&self) -> Result<i32, LaunchError> {
        // Filters compiled before anything changes (the child allocates nothing it need not).
        let filter = Filter::for_packs()
            .map_err(|e| LaunchError::Setup { what: "seccomp", source: std::io::Error::other(e) })?;
        // Nothing the invoker left open by mistake reaches the pack: only
        // stdio, the control socket (3) and the held descriptor.
        let keep_below = self.hold_fd.map_or(4, |fd| fd.max(3) + 1) as u32;
        // SAFETY: close_range(2) closes this process's own descriptors from keep_below up.
        unsafe { libc::close_range(keep_below, u32::MAX, 0) };
        for dir in &self.cgroups {
            std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
                .map_err(|source| LaunchError::Setup { what: "joining the pack's cgroup", source })?;
        }
        let groups: Vec<Gid> = self.groups.iter().map(|&g| Gid::from_raw(g)).collect();
        setgroups(&groups).map_err(setup("taking the supplementary groups"))?;
        // (The mount namespace is the child's alone: its fresh /proc must not
        // hide from this process the host's, where it maps the child's user namespace.)
        let namespaces = CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWCGROUP;
        unshare(namespaces).map_err(setup("new namespaces"))?;
        // How the program ended, told by the namespace's init (whose own
        // exit cannot carry a signal: see `init`).
        let (ended_rx, ended_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(setup("a pipe"))?;
        // The child's user namespace, mapped by this process (root outside it):
        // the child says when it has entered it, this process when it is mapped.
        let (entered_rx, entered_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(setup("a pipe"))?;
        let (mapped_rx, mapped_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(setup("a pipe"))?;
        // SAFETY: this process is single-threaded (the caller's contract): the
        // child may do anything the parent could.
        match unsafe { fork() }.map_err(setup("fork"))? {
            ForkResult::Child => {
                drop((ended_rx, entered_rx, mapped_tx));
                if let Some(fd) = self.hold_fd {
                    // The reaper holds it; the pack does not.
                    let _ = nix::unistd::close(fd);
                }
                let Err(failed) = self.become_program(&filter, ended_tx, (entered_tx, mapped_rx));
                eprintln!("{failed}");
                std::process::exit(SETUP_FAILED);
            }
            ForkResult::Parent { child } => {
                drop((ended_tx, entered_tx, mapped_rx));
                // (If the child failed before it entered its namespace, it
                // closed its end: nothing to map, and reaping says why.)
                let mut byte = [0u8; 1];
                if nix::unistd::read(&entered_rx, &mut byte).unwrap_or(0) == 1 {
                    match self.map_user_namespace(child) {
                        Ok(()) => drop(nix::unistd::write(&mapped_tx, &byte)),
                        Err(e) => eprintln!("sandbox-exec: mapping the pack's user namespace: {e}"),
                    }
                }
                drop(mapped_tx);
                Ok(reap(child, ended_rx))
            }
        }
    }

    /// Maps, in `child`'s user namespace, the pack's uid, gid and groups to
    /// themselves (nothing else: root is no one there).
    fn map_user_namespace(&self, child: Pid) -> std::io::Result<()> {
        let uid_map = format!("{0} {0} 1\n", self.uid);
        let mut gids = vec![self.gid];
        gids.extend(self.groups.iter().filter(|g| **g != self.gid));
        let gid_map: String = gids.iter().map(|g| format!("{g} {g} 1\n")).collect();
        std::fs::write(format!("/proc/{child}/uid_map"), uid_map)?;
        std::fs::write(format!("/proc/{child}/gid_map"), gid_map)
    }

    /// In the child, PID 1 of the new namespace: the steps after the fork,
    /// then the program forked as PID 2 while this process stays its init.
    /// Returns only on failure.
    fn become_program(
        &self,
        filter: &Filter,
        ended: OwnedFd,
        (entered, mapped): (OwnedFd, OwnedFd),
    ) -> Result<Infallible, LaunchError> {
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(setup("dying with the reaper"))?;
        unshare(CloneFlags::CLONE_NEWNS).map_err(setup("a mount namespace"))?;
        let none: Option<&str> = None;
        mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none).map_err(setup("private mounts"))?;
        let hidden = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        mount(Some("proc"), "/proc", Some("proc"), hidden, none).map_err(setup("mounting /proc"))?;
        for dir in &self.tmpfs {
            mount(Some("tmpfs"), dir, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=1777"))
                .map_err(setup("mounting a tmpfs"))?;
        }
        sethostname("pack").map_err(setup("naming the host"))?;
        let mut paths = self.paths.clone();
        let by_path = Path::new(&self.program[0]).is_absolute();
        if by_path {
            paths.read.push(PathBuf::from(&self.program[0]));
        }
        // Granted paths below directories the pack's uid could not search.
        let mut granted: Vec<PathBuf> = paths.read.iter().chain(&paths.write).cloned().collect();
        granted.push(self.dir.clone());
        crate::cover::cover_closed_directories(&granted)
            .map_err(|source| LaunchError::Setup { what: "reaching the granted paths", source })?;
        chdir(&self.dir).map_err(setup("entering the pack's directory"))?;
        // Made while still root, so that it may name paths the pack's uid could
        // not even look up (the program's own file, under a private home), and
        // after the mounts: a rule made on the old /proc would not cover the new one.
        let landlock = |e| LaunchError::Setup { what: "landlock", source: std::io::Error::other(e) };
        let mut confinement = Confinement::new(&paths).map_err(landlock)?;
        // The program is opened now and run from its descriptor: the pack's uid
        // needs the right to execute the file, not to reach it by its path.
        let program_file = match by_path {
            true => Some(open_program(Path::new(&self.program[0]))?),
            false => None,
        };
        // A user namespace of its own, last: the mounts above needed root in
        // the namespace that owns them. Mapped by the reaper, outside.
        unshare(CloneFlags::CLONE_NEWUSER).map_err(setup("a user namespace"))?;
        nix::unistd::write(&entered, &[1]).map_err(setup("a user namespace"))?;
        let mut byte = [0u8; 1];
        if nix::unistd::read(&mapped, &mut byte).unwrap_or(0) != 1 {
            return Err(LaunchError::Setup {
                what: "a user namespace",
                source: std::io::Error::other("the reaper could not map the pack's uid in it"),
            });
        }
        drop((entered, mapped));
        let (uid, gid) = (Uid::from_raw(self.uid), Gid::from_raw(self.gid));
        setresgid(gid, gid, gid).map_err(setup("taking the pack's gid"))?;
        setresuid(uid, uid, uid).map_err(setup("taking the pack's uid"))?;
        // In a user namespace where root is no one, taking a uid does not end
        // the capabilities the namespace gave: they are dropped here.
        drop_capabilities().map_err(setup("dropping capabilities"))?;
        // A change of uid clears the death signal: asked again.
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(setup("dying with the reaper"))?;
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o007));
        confinement.enforce().map_err(|source| LaunchError::Setup { what: "landlock", source })?;
        // This process (the init) answers the program's refused calls, saying so in the log.
        let listener = filter.install_notifying().map_err(|source| LaunchError::Setup { what: "seccomp", source })?;
        let refusals = Refusals::new(listener);
        // The init learns of ended children through a descriptor it can poll beside the listener.
        let chld = SigSet::from(Signal::SIGCHLD);
        chld.thread_block().map_err(setup("blocking SIGCHLD"))?;
        let ended_children =
            SignalFd::with_flags(&chld, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(setup("a signalfd"))?;
        // The program is not PID 1: an init gets from inside its namespace
        // only the signals it handles (a `kill -SEGV $$` or `raise(SIGABRT)`
        // of the program's own would do nothing), and orphans need reaping.
        // SAFETY: single-threaded, as above.
        if let ForkResult::Parent { child } = unsafe { fork() }.map_err(setup("fork"))? {
            // Not dumpable: the program (same uid) cannot reach into the init
            // (/proc/1/mem, pidfd_getfd of the seccomp listener).
            // SAFETY: prctl(2) with integer arguments.
            unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
            init(child, ended, refusals, ended_children);
        }
        drop((ended, refusals, ended_children));
        chld.thread_unblock().map_err(setup("unblocking SIGCHLD"))?;
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(setup("dying with its init"))?;
        let program: Vec<CString> = self
            .program
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|e| LaunchError::Usage(format!("an argument holds a NUL byte: {e}")))?;
        match program_file {
            Some(file) => {
                let env: Vec<CString> = std::env::vars_os()
                    .filter_map(|(k, v)| {
                        let mut pair = k.as_bytes().to_vec();
                        pair.push(b'=');
                        pair.extend_from_slice(v.as_bytes());
                        CString::new(pair).ok()
                    })
                    .collect();
                fexecve(&file, &program, &env).map_err(setup("starting the program"))
            }
            None => execvp(&program[0], &program).map_err(setup("starting the program")),
        }
    }
}

/// Clears every capability of this process: the bounding set (nothing can
/// be gained back by an exec), then the sets themselves (capset(2), version 3).
fn drop_capabilities() -> nix::Result<()> {
    for cap in 0..64 {
        // SAFETY: prctl(2) with integer arguments (EINVAL past the last capability).
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
    }
    const VERSION_3: u32 = 0x2008_0522;
    let header = [VERSION_3, 0u32];
    let none = [0u32; 6];
    // SAFETY: capset(2) reads a v3 header and two sets of three words.
    let done = unsafe { libc::syscall(libc::SYS_capset, header.as_ptr(), none.as_ptr()) };
    if done == 0 { Ok(()) } else { Err(nix::Error::last()) }
}

/// The program's file, opened as root, left open across exec: a script's
/// interpreter reads it by `/dev/fd/N`.
fn open_program(path: &Path) -> Result<std::fs::File, LaunchError> {
    let file =
        std::fs::File::open(path).map_err(|source| LaunchError::Setup { what: "opening the program", source })?;
    nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()))
        .map_err(setup("opening the program"))?;
    Ok(file)
}

/// PID 1 of the pack's namespace: reaps every process that ends there and
/// answers refused system calls until `program` ends, then writes how it
/// ended to `ended` and exits (the kernel then kills whatever is left in the
/// namespace).
fn init(program: Pid, ended: OwnedFd, mut refusals: Refusals, ended_children: SignalFd) -> ! {
    loop {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(status) if status.pid() == Some(program) => {
                    let (kind, value): (u32, i32) = match status {
                        WaitStatus::Exited(_, code) => (0, code),
                        WaitStatus::Signaled(_, signal, _) => (1, signal as i32),
                        _ => continue,
                    };
                    let mut word = kind.to_le_bytes().to_vec();
                    word.extend_from_slice(&value.to_le_bytes());
                    let _ = nix::unistd::write(&ended, &word);
                    std::process::exit(0);
                }
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(_) => std::process::exit(SETUP_FAILED),
            }
        }
        let mut ready =
            [PollFd::new(ended_children.as_fd(), PollFlags::POLLIN), PollFd::new(refusals.fd(), PollFlags::POLLIN)];
        match poll(&mut ready, PollTimeout::NONE) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(_) => std::process::exit(SETUP_FAILED),
        }
        let refused = ready[1].any().unwrap_or(false);
        if ready[0].any().unwrap_or(false) {
            // Drained (it does not block); waitpid above collects every child that ended.
            while let Ok(Some(_)) = ended_children.read_signal() {}
        }
        if refused {
            refusals.answer(&mut std::io::stderr());
        }
    }
}

/// Waits for the namespace's init and returns the program's exit code; if
/// a signal killed the program, this process dies of the same signal (so
/// its parent sees what happened). Without word from the init (it failed
/// while setting up), its own exit code.
fn reap(child: Pid, ended: OwnedFd) -> i32 {
    let code = loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => break code,
            Ok(WaitStatus::Signaled(_, signal, _)) => break 128 + signal as i32,
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(_) => return SETUP_FAILED,
        }
    };
    let mut word = [0u8; 8];
    let told = nix::unistd::read(&ended, &mut word).unwrap_or(0) == 8;
    if !told {
        return code;
    }
    let kind = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
    let value = i32::from_le_bytes([word[4], word[5], word[6], word[7]]);
    match (kind, Signal::try_from(value)) {
        (1, Ok(signal)) => {
            // SAFETY: back to the default action, then raise: this process ends as its child did.
            unsafe {
                libc::signal(signal as libc::c_int, libc::SIG_DFL);
            }
            let _ = nix::sys::signal::raise(signal);
            128 + value
        }
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<OsString> {
        text.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn arguments_are_read_and_bad_ones_say_what_is_wrong() {
        let launch = Launch::parse(args(
            "--uid 200001 --gid 200002 --group 199999 --dir /c --read /usr --write /c --tmpfs /run -- sh -c x",
        ))
        .unwrap();
        assert_eq!(launch.uid, 200001);
        assert_eq!(launch.groups, vec![199_999]);
        assert_eq!(launch.paths.read, vec![PathBuf::from("/usr")]);
        assert_eq!(launch.program, args("sh -c x"));
        for (bad, says) in [
            ("--uid 0 --gid 1 --dir /c -- sh", "may not run as root"),
            ("--uid 5 --dir /c -- sh", "--gid is missing"),
            ("--uid 5 --gid 5 --dir /c --", "no program"),
            ("--uid x --gid 5 --dir /c -- sh", "--uid takes a number"),
            ("--uid 5 --gid 5 --dir /c --net on -- sh", "unknown argument"),
            ("--uid 5 --gid 5 --dir /c sh", "the program goes after --"),
            ("--uid 5 --gid 5 --dir /c", "no -- before the program"),
        ] {
            let error = Launch::parse(args(bad)).unwrap_err().to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
