//! The system calls a pack's function never needs, refused with EPERM by a
//! seccomp filter installed last before the pack's program runs: tracing
//! and reading other processes, mounting, new namespaces, kernel keys and
//! modules, BPF, perf events, io_uring, userfaultfd, rebooting, swap, the
//! clock. The list follows what container runtimes refuse by default.
//!
//! `clone3` passes its flags in memory a filter cannot read, so it fails
//! with ENOSYS instead: the C library then falls back to `clone`, whose
//! flags are checked (threads and forks pass, `CLONE_NEW*` does not).

use std::collections::BTreeMap;
use std::io;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

/// Refused outright.
const REFUSED: &[i64] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_reboot,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_syslog,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_iopl,
    libc::SYS_ioperm,
    libc::SYS_open_by_handle_at,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_personality,
    libc::SYS_vhangup,
];

/// `clone` flags that make new namespaces: refused.
const NEW_NAMESPACES: &[libc::c_int] = &[
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWNS,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWCGROUP,
];

#[derive(Debug, thiserror::Error)]
#[error("cannot build the packs' seccomp filter: {0}")]
pub struct FilterError(String);

/// The filters of a pack, compiled ahead (installing them allocates nothing).
#[derive(Debug, Clone)]
pub struct Filter {
    refused: BpfProgram,
    clone3: BpfProgram,
}

impl Filter {
    /// The packs' filter for this machine's architecture.
    pub fn for_packs() -> Result<Filter, FilterError> {
        let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| FilterError(e.to_string()))?;
        let error = |e: seccompiler::BackendError| FilterError(e.to_string());
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = REFUSED.iter().map(|&nr| (nr, Vec::new())).collect();
        // One rule per flag: rules are alternatives, any flag set refuses the call.
        let clone = NEW_NAMESPACES
            .iter()
            .map(|&flag| {
                let flag = flag as u64;
                let set = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flag), flag)?;
                SeccompRule::new(vec![set])
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(error)?;
        rules.insert(libc::SYS_clone, clone);
        let refuse = SeccompAction::Errno(libc::EPERM as u32);
        let refused = SeccompFilter::new(rules, SeccompAction::Allow, refuse, arch).map_err(error)?;
        let clone3 = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
        let clone3 = SeccompFilter::new(clone3, SeccompAction::Allow, SeccompAction::Errno(libc::ENOSYS as u32), arch)
            .map_err(error)?;
        Ok(Filter {
            refused: BpfProgram::try_from(refused).map_err(error)?,
            clone3: BpfProgram::try_from(clone3).map_err(error)?,
        })
    }

    /// Installs the filters on the calling thread (and what it execs or
    /// forks from then on); sets no-new-privileges, which they require. Only
    /// `prctl` and `seccomp` calls: it may run between fork and exec.
    pub fn install(&self) -> io::Result<()> {
        for program in [&self.refused, &self.clone3] {
            seccompiler::apply_filter(program).map_err(|e| match e {
                seccompiler::Error::Prctl(e) | seccompiler::Error::Seccomp(e) => e,
                _ => io::Error::from_raw_os_error(libc::EINVAL),
            })?;
        }
        Ok(())
    }
}
