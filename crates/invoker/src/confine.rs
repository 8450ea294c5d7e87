//! Each pack process in a cgroup of its own (ADR 0008), where the machine
//! lets the invoker make them (root, cgroup v1 or v2): a process limit from
//! its start (a fork bomb stops there), and once it takes a pack, the
//! burst's memory as a hard limit (when the burst gave `memory_mb`) and a CPU
//! share by its workers. Afterwards the kernel's counters say whether the
//! pack was killed for memory, and the cgroup is removed with whatever the
//! pack left running in it.

use volley_sandbox::{Cgroup, Layout, Limits};

/// Processes and threads a pack process may have before it takes a pack.
const STARTING_PIDS: u64 = 8192;
/// An empty pack cgroup older than this was left by an invoker that died.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(60);
/// Memory the pack's runtime itself may use beyond its workers' `memory_mb`.
const RUNTIME_ALLOWANCE_MB: u64 = 64;

/// Where this invoker makes its packs' cgroups (None: it cannot here).
pub(crate) fn detect() -> Option<Layout> {
    // SAFETY: geteuid(2) reads the caller's effective uid.
    if unsafe { libc::geteuid() } != 0 {
        tracing::info!("pack processes run without cgroups: the invoker is not root");
        return None;
    }
    match Layout::detect() {
        Ok(layout) => {
            // Cgroups of packs whose invoker was killed before it removed them.
            let removed = layout.remove_abandoned(ABANDONED_AFTER);
            if removed > 0 {
                tracing::info!("removed {removed} abandoned pack cgroups");
            }
            Some(layout)
        }
        Err(e) => {
            tracing::warn!("pack processes run without cgroups: {e}");
            None
        }
    }
}

/// A pack process's cgroup, made before it starts.
pub(crate) struct Confined {
    cgroup: Cgroup,
    /// The memory limit set when it took its pack, in MiB.
    memory_mb: Option<u64>,
}

impl Confined {
    /// A cgroup for the process `name` names.
    pub(crate) fn new(layout: &Layout, name: &str) -> Option<Confined> {
        let made = Cgroup::create(layout, name).and_then(|cgroup| {
            cgroup.limit(&Limits { pids: Some(STARTING_PIDS), ..Limits::default() })?;
            Ok(cgroup)
        });
        match made {
            Ok(cgroup) => Some(Confined { cgroup, memory_mb: None }),
            Err(e) => {
                tracing::warn!("a pack process runs without its cgroup: {e}");
                None
            }
        }
    }

    /// Moves the started process `pid` in, with what it started already (a
    /// Python pack's fork server). From here, not by the child between fork
    /// and exec: moving a process between cgroups can take milliseconds, and
    /// until its exec the child holds every descriptor of the invoker, the
    /// store's lock among them (a controller restarted at once found it
    /// held). A pack process runs only Volley's runtime until it takes a pack.
    pub(crate) fn admit(&self, pid: u32) {
        if let Err(e) = self.cgroup.add_tree(pid) {
            tracing::warn!("a pack process runs outside its cgroup: {e}");
        }
    }

    /// The cgroup's directories (one per controller on cgroup v1).
    pub(crate) fn dirs(&self) -> &[std::path::PathBuf] {
        self.cgroup.dirs()
    }

    /// Holds the process to its pack: `workers` workers of `memory_mb` MiB each (if the burst said).
    pub(crate) fn take_pack(&mut self, workers: usize, memory_mb: Option<u64>) {
        let workers = workers.max(1) as u64;
        let memory_mb = memory_mb.map(|mb| mb.saturating_mul(workers).saturating_add(RUNTIME_ALLOWANCE_MB));
        let limits = Limits {
            memory_bytes: memory_mb.map(|mb| mb.saturating_mul(1 << 20)),
            pids: Some(STARTING_PIDS.max(4 * workers + 512)),
            cpu_slots: Some(u32::try_from(workers).unwrap_or(u32::MAX)),
        };
        match self.cgroup.limit(&limits) {
            Ok(()) => self.memory_mb = memory_mb,
            // (A limit below what the process holds already can be refused.)
            Err(e) => tracing::warn!("a pack runs without its limits: {e}"),
        }
    }

    /// Why the pack failed if the kernel killed it for memory.
    pub(crate) fn memory_verdict(&self, pack: usize) -> Option<String> {
        let usage = self.cgroup.usage();
        if usage.oom_kills == 0 {
            return None;
        }
        let limit =
            self.memory_mb.map_or_else(|| "its memory limit".to_string(), |mb| format!("its memory limit of {mb} MiB"));
        Some(format!(
            "pack {pack} exceeded {limit} (the kernel killed {} of its processes; give the burst more memory_mb)",
            usage.oom_kills
        ))
    }

    /// Removes the cgroup, killing what is left in it (off the async threads: it may wait).
    pub(crate) async fn remove(self) {
        let cgroup = self.cgroup;
        let removed = tokio::task::spawn_blocking(move || cgroup.remove());
        if let Ok(Err(e)) = removed.await {
            tracing::warn!("removing a pack's cgroup: {e}");
        }
    }
}
