//! A cgroup per pack. On cgroup v1 (this project's test machine: memory,
//! pids and cpu are separate hierarchies) a pack's cgroup is one directory
//! per controller; on cgroup v2 it is one directory of the unified tree.
//! Either way it lives under `volley/` below the cgroup of the process that
//! makes it (the invoker), so that an invoker's packs stay inside whatever
//! the invoker itself was given.
//!
//! The limits are the kernel's, so what a pack did is read back from the
//! kernel's counters too: a pack killed while its cgroup's `oom_kill` count
//! rose was killed for memory, not guessed to be.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long removing a cgroup waits for its processes to be gone.
const EMPTY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This machine offers no cgroups a pack can be confined with.
    #[error("no usable cgroups: {0}")]
    Unavailable(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// Processes stayed in the cgroup although they were killed.
    #[error("the cgroup {path} still holds processes {pids:?} after {EMPTY_TIMEOUT:?}")]
    NotEmpty { path: PathBuf, pids: Vec<u32> },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// Where this process's cgroups are: the directory of its own cgroup in each
/// controller a pack's cgroup needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    V1 { memory: PathBuf, pids: PathBuf, cpu: PathBuf },
    V2 { own: PathBuf },
}

impl Layout {
    /// This process's layout, from `/proc/self/mountinfo` and `/proc/self/cgroup`.
    pub fn detect() -> Result<Layout, Error> {
        let read = |p: &str| fs::read_to_string(p).map_err(io_error(Path::new(p)));
        Layout::parse(&read("/proc/self/mountinfo")?, &read("/proc/self/cgroup")?)
    }

    /// The layout `mountinfo` and `cgroup` (the texts of those `/proc/self` files) describe.
    /// v1 wins when memory, pids and cpu are all v1 hierarchies; otherwise a
    /// v2 tree whose root offers them is used.
    pub fn parse(mountinfo: &str, cgroup: &str) -> Result<Layout, Error> {
        Layout::parse_with(mountinfo, cgroup, |root| {
            fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default()
        })
    }

    /// `parse`, with the controllers a v2 tree's root offers read by `controllers`.
    fn parse_with(mountinfo: &str, cgroup: &str, controllers: impl Fn(&Path) -> String) -> Result<Layout, Error> {
        let mounts: Vec<Mount> = mountinfo.lines().filter_map(Mount::parse).collect();
        let own = |controller: &str| {
            cgroup.lines().find_map(|line| {
                let mut fields = line.splitn(3, ':');
                let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
                controllers.split(',').any(|c| c == controller).then(|| path.to_string())
            })
        };
        let v1 = |controller: &str| -> Option<PathBuf> {
            let mount =
                mounts.iter().find(|m| m.fstype == "cgroup" && m.options.split(',').any(|o| o == controller))?;
            Some(mount.beneath(&own(controller)?))
        };
        if let (Some(memory), Some(pids), Some(cpu)) = (v1("memory"), v1("pids"), v1("cpu")) {
            return Ok(Layout::V1 { memory, pids, cpu });
        }
        let unified = cgroup.lines().find_map(|l| l.strip_prefix("0::")).map(str::to_string);
        let tree = mounts.iter().find(|m| m.fstype == "cgroup2");
        match (tree, unified) {
            (Some(tree), Some(path)) => {
                let own = tree.beneath(&path);
                let offered = controllers(&tree.point);
                let missing: Vec<_> = ["memory", "pids", "cpu"]
                    .into_iter()
                    .filter(|c| !offered.split_whitespace().any(|o| o == *c))
                    .collect();
                if missing.is_empty() {
                    Ok(Layout::V2 { own })
                } else {
                    Err(Error::Unavailable(format!(
                        "the cgroup v2 tree at {} offers no {} controller (and they are not cgroup v1 hierarchies either)",
                        tree.point.display(),
                        missing.join(", ")
                    )))
                }
            }
            _ => Err(Error::Unavailable(
                "neither cgroup v1 memory, pids and cpu hierarchies nor a cgroup v2 tree is mounted".into(),
            )),
        }
    }
}

/// The memory cgroup of the calling process: how many of its processes the
/// kernel killed for memory so far, and its limit in bytes (None: unlimited).
/// None if it is in no memory cgroup this process can read.
pub fn own_memory() -> Option<(u64, Option<u64>)> {
    let (dir, v2) = match Layout::detect().ok()? {
        Layout::V1 { memory, .. } => (memory, false),
        Layout::V2 { own } => (own, true),
    };
    let (events, limit) = if v2 {
        (dir.join("memory.events"), dir.join("memory.max"))
    } else {
        (dir.join("memory.oom_control"), dir.join("memory.limit_in_bytes"))
    };
    if !events.exists() {
        return None;
    }
    // An unlimited cgroup says "max" (v2) or a number near 2^63 (v1).
    let limit = read_u64(&limit).filter(|&bytes| bytes < 1 << 62);
    Some((counter(&events, "oom_kill"), limit))
}

impl Layout {
    /// Removes the cgroups under `volley/` that hold no process and were made
    /// over `older_than` ago: those of pack processes whose invoker died
    /// before it could remove them (a process is moved into its cgroup
    /// moments after the cgroup is made, so an older empty one is abandoned).
    /// Returns how many went.
    pub fn remove_abandoned(&self, older_than: Duration) -> usize {
        let parents = match self {
            Layout::V1 { memory, pids, cpu } => vec![memory.join("volley"), pids.join("volley"), cpu.join("volley")],
            Layout::V2 { own } => vec![own.join("volley")],
        };
        let mut removed = 0;
        for parent in parents {
            let Ok(entries) = fs::read_dir(&parent) else { continue };
            for dir in entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
                let empty = fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|procs| procs.trim().is_empty());
                let age = fs::metadata(&dir).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
                if empty && age.is_some_and(|age| age >= older_than) && fs::remove_dir(&dir).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }
}

/// One line of mountinfo: where a filesystem is mounted, which part of it, its type and options.
struct Mount {
    root: String,
    point: PathBuf,
    fstype: String,
    options: String,
}

impl Mount {
    fn parse(line: &str) -> Option<Mount> {
        let (before, after) = line.split_once(" - ")?;
        let fields: Vec<&str> = before.split(' ').collect();
        let mut after = after.split(' ');
        let fstype = after.next()?.to_string();
        let _source = after.next()?;
        let options = after.next()?.to_string();
        Some(Mount { root: fields.get(3)?.to_string(), point: PathBuf::from(fields.get(4)?), fstype, options })
    }

    /// Where the cgroup at `path` (as /proc/self/cgroup says it) is in this mount.
    fn beneath(&self, path: &str) -> PathBuf {
        let inside = path.strip_prefix(self.root.trim_end_matches('/')).unwrap_or(path);
        self.point.join(inside.trim_start_matches('/'))
    }
}

/// What a pack may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Memory, in bytes, swap included: past it the kernel kills a process of the pack.
    pub memory_bytes: Option<u64>,
    /// Processes and threads at once: a fork past it fails.
    pub pids: Option<u64>,
    /// The pack's share of the CPU when the machine is busy, in slots (1: one slot's share).
    pub cpu_slots: Option<u32>,
}

/// What the kernel counted for a pack.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Processes the kernel killed for the memory limit.
    pub oom_kills: u64,
    /// The most memory the pack held at once, in bytes (where the kernel says).
    pub memory_peak: Option<u64>,
    /// Forks refused for the process limit.
    pub pids_refused: u64,
}

/// A pack's cgroup, removed (its processes killed) when dropped.
#[derive(Debug)]
pub struct Cgroup {
    v2: bool,
    /// memory, pids, cpu on v1; the one directory on v2.
    dirs: Vec<PathBuf>,
    removed: bool,
}

impl Cgroup {
    /// Makes the cgroup `name` (a pack's own: letters, digits, `-`, `_`, `.`) under `volley/`.
    pub fn create(layout: &Layout, name: &str) -> Result<Cgroup, Error> {
        if name.is_empty()
            || name.starts_with('.')
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(Error::Unavailable(format!("{name:?} is not a cgroup name (letters, digits, '-', '_', '.')")));
        }
        let (v2, parents) = match layout {
            Layout::V1 { memory, pids, cpu } => {
                (false, vec![memory.join("volley"), pids.join("volley"), cpu.join("volley")])
            }
            Layout::V2 { own } => {
                let parent = own.join("volley");
                make_dir(&parent)?;
                // Controllers reach a child only when its parent hands them down.
                // (The invoker's own cgroup must allow it: a delegated subtree, or
                // one without processes of its own, as cgroup v2 requires.)
                for dir in [own.as_path(), parent.as_path()] {
                    write(&dir.join("cgroup.subtree_control"), "+memory +pids +cpu")?;
                }
                (true, vec![parent])
            }
        };
        let mut cgroup = Cgroup { v2, dirs: Vec::new(), removed: false };
        for parent in parents {
            let dir = parent.join(name);
            make_dir(&dir)?;
            cgroup.dirs.push(dir);
        }
        Ok(cgroup)
    }

    fn memory(&self) -> &Path {
        &self.dirs[0]
    }

    fn pids_dir(&self) -> &Path {
        if self.v2 { &self.dirs[0] } else { &self.dirs[1] }
    }

    fn cpu(&self) -> &Path {
        if self.v2 { &self.dirs[0] } else { &self.dirs[2] }
    }

    /// The directories the cgroup is (one per controller on v1).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Sets the limits given (those not given are left as they are).
    pub fn limit(&self, limits: &Limits) -> Result<(), Error> {
        if let Some(bytes) = limits.memory_bytes {
            if self.v2 {
                write(&self.memory().join("memory.max"), &bytes.to_string())?;
                // Swap would let a pack go past its memory; absent without swap accounting.
                write_if_present(&self.memory().join("memory.swap.max"), "0")?;
            } else {
                // Memory and swap together may not be below memory alone: lower memory first, raise it last.
                let memsw = self.memory().join("memory.memsw.limit_in_bytes");
                let lowering = read_u64(&self.memory().join("memory.limit_in_bytes")).is_some_and(|now| bytes < now);
                if lowering {
                    write(&self.memory().join("memory.limit_in_bytes"), &bytes.to_string())?;
                    write_if_present(&memsw, &bytes.to_string())?;
                } else {
                    write_if_present(&memsw, &bytes.to_string())?;
                    write(&self.memory().join("memory.limit_in_bytes"), &bytes.to_string())?;
                }
            }
        }
        if let Some(pids) = limits.pids {
            write(&self.pids_dir().join("pids.max"), &pids.to_string())?;
        }
        if let Some(slots) = limits.cpu_slots {
            let slots = u64::from(slots.max(1));
            if self.v2 {
                write(&self.cpu().join("cpu.weight"), &(100 * slots).min(10_000).to_string())?;
            } else {
                write(&self.cpu().join("cpu.shares"), &(1024 * slots).to_string())?;
            }
        }
        Ok(())
    }

    /// Moves process `pid` (and, on v1, nothing else of its process) into the cgroup.
    pub fn add(&self, pid: u32) -> Result<(), Error> {
        for dir in &self.dirs {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Moves process `pid` and then its descendants into the cgroup: those it
    /// forked before it moved stay behind otherwise (one forked after is born
    /// inside). For a process started before it could be moved.
    pub fn add_tree(&self, pid: u32) -> Result<(), Error> {
        self.add(pid)?;
        for child in children(pid) {
            // A child that exited meanwhile is no longer there to move.
            match self.add_tree(child) {
                Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::ESRCH) => {}
                other => other?,
            }
        }
        Ok(())
    }

    /// The processes in the cgroup now.
    pub fn pids(&self) -> Vec<u32> {
        fs::read_to_string(self.memory().join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// What the kernel counted so far.
    pub fn usage(&self) -> Usage {
        let memory = self.memory();
        let (events, peak) = if self.v2 {
            (memory.join("memory.events"), read_u64(&memory.join("memory.peak")))
        } else {
            (memory.join("memory.oom_control"), read_u64(&memory.join("memory.max_usage_in_bytes")))
        };
        Usage {
            oom_kills: counter(&events, "oom_kill"),
            memory_peak: peak,
            pids_refused: counter(&self.pids_dir().join("pids.events"), "max"),
        }
    }

    /// Kills every process in the cgroup and waits until it is empty (at most `EMPTY_TIMEOUT`).
    pub fn kill_all(&self) -> Result<(), Error> {
        let deadline = Instant::now() + EMPTY_TIMEOUT;
        // cgroup v2 kills a whole cgroup at once (Linux 5.14 on); v1 one process at a time.
        if self.v2 {
            write_if_present(&self.memory().join("cgroup.kill"), "1")?;
        }
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::NotEmpty { path: self.memory().to_path_buf(), pids });
            }
            for pid in pids {
                // SAFETY: kill(2) sends a signal; no memory is involved.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills what is left in the cgroup and removes it.
    pub fn remove(mut self) -> Result<(), Error> {
        self.removed = true;
        self.remove_dirs()
    }

    fn remove_dirs(&self) -> Result<(), Error> {
        self.kill_all()?;
        for dir in &self.dirs {
            // An exited process may leave the cgroup a moment after it is reaped.
            let deadline = Instant::now() + EMPTY_TIMEOUT;
            loop {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(Error::Io { path: dir.clone(), source: e }),
                }
            }
        }
        Ok(())
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if !self.removed {
            let _ = self.remove_dirs();
        }
    }
}

/// The children of every thread of process `pid`, now.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| list.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>())
        .collect()
}

fn make_dir(dir: &Path) -> Result<(), Error> {
    match fs::create_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) => Err(Error::Io { path: dir.to_path_buf(), source: e }),
    }
}

fn write(path: &Path, value: &str) -> Result<(), Error> {
    // One write(2): a cgroup file takes a value per write.
    let mut file = fs::OpenOptions::new().write(true).open(path).map_err(io_error(path))?;
    file.write_all(value.as_bytes()).map_err(io_error(path))
}

fn write_if_present(path: &Path, value: &str) -> Result<(), Error> {
    if path.exists() { write(path, value) } else { Ok(()) }
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed cgroup file (`key value` lines); 0 if absent.
fn counter(path: &Path, key: &str) -> u64 {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            let (k, v) = line.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_MOUNTS: &str = "\
31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,pids
33 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,cpu,cpuacct
34 25 0:30 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:17 - cgroup2 cgroup2 rw
";
    const V1_OWN: &str = "9:pids:/\n4:memory:/jobs/a1\n1:cpu,cpuacct:/\n0::/\n";

    #[test]
    fn v1_hierarchies_are_found_with_this_processs_own_cgroup_in_each() {
        assert_eq!(
            Layout::parse(V1_MOUNTS, V1_OWN).unwrap(),
            Layout::V1 {
                memory: "/sys/fs/cgroup/memory/jobs/a1".into(),
                pids: "/sys/fs/cgroup/pids".into(),
                cpu: "/sys/fs/cgroup/cpu,cpuacct".into(),
            }
        );
    }

    #[test]
    fn a_v2_tree_is_used_when_it_offers_the_controllers_and_a_mount_of_a_subtree_is_followed() {
        let mounts = "40 25 0:31 /system.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let own = "0::/system.slice/volley.service\n";
        let offered = |_: &Path| "cpuset cpu io memory pids\n".to_string();
        assert_eq!(
            Layout::parse_with(mounts, own, offered).unwrap(),
            Layout::V2 { own: "/sys/fs/cgroup/volley.service".into() }
        );
        let hugetlb_only = Layout::parse_with(mounts, own, |_: &Path| "hugetlb\n".to_string()).unwrap_err();
        assert!(hugetlb_only.to_string().contains("offers no memory, pids, cpu controller"), "{hugetlb_only}");
        let none = Layout::parse_with("", "0::/\n", offered).unwrap_err();
        assert!(none.to_string().contains("neither cgroup v1"), "{none}");
    }

    #[test]
    fn counters_are_read_by_key() {
        let dir = std::env::temp_dir().join(format!("volley-cgroup-counter-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("memory.oom_control");
        fs::write(&file, "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n").unwrap();
        assert_eq!(counter(&file, "oom_kill"), 3);
        assert_eq!(counter(&file, "missing"), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_name_that_could_leave_volley_is_refused() {
        let layout = Layout::V2 { own: "/nonexistent".into() };
        for bad in ["", "..", "a/b", ".hidden"] {
            assert!(matches!(Cgroup::create(&layout, bad), Err(Error::Unavailable(_))), "{bad:?}");
        }
    }
}
