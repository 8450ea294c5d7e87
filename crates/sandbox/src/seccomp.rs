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
use std::os::fd::{FromRawFd, OwnedFd};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

/// Refused outright (with the name a refusal is reported by).
const REFUSED: &[(i64, &str)] = &[
    (libc::SYS_ptrace, "ptrace"),
    (libc::SYS_process_vm_readv, "process_vm_readv"),
    (libc::SYS_process_vm_writev, "process_vm_writev"),
    (libc::SYS_pidfd_getfd, "pidfd_getfd"),
    (libc::SYS_mount, "mount"),
    (libc::SYS_umount2, "umount2"),
    (libc::SYS_pivot_root, "pivot_root"),
    (libc::SYS_chroot, "chroot"),
    (libc::SYS_open_tree, "open_tree"),
    (libc::SYS_move_mount, "move_mount"),
    (libc::SYS_fsopen, "fsopen"),
    (libc::SYS_fsconfig, "fsconfig"),
    (libc::SYS_fsmount, "fsmount"),
    (libc::SYS_fspick, "fspick"),
    (libc::SYS_mount_setattr, "mount_setattr"),
    (libc::SYS_unshare, "unshare"),
    (libc::SYS_setns, "setns"),
    (libc::SYS_kexec_load, "kexec_load"),
    (libc::SYS_kexec_file_load, "kexec_file_load"),
    (libc::SYS_bpf, "bpf"),
    (libc::SYS_perf_event_open, "perf_event_open"),
    (libc::SYS_keyctl, "keyctl"),
    (libc::SYS_add_key, "add_key"),
    (libc::SYS_request_key, "request_key"),
    (libc::SYS_reboot, "reboot"),
    (libc::SYS_init_module, "init_module"),
    (libc::SYS_finit_module, "finit_module"),
    (libc::SYS_delete_module, "delete_module"),
    (libc::SYS_swapon, "swapon"),
    (libc::SYS_swapoff, "swapoff"),
    (libc::SYS_acct, "acct"),
    (libc::SYS_quotactl, "quotactl"),
    (libc::SYS_syslog, "syslog"),
    (libc::SYS_settimeofday, "settimeofday"),
    (libc::SYS_clock_settime, "clock_settime"),
    (libc::SYS_clock_adjtime, "clock_adjtime"),
    (libc::SYS_adjtimex, "adjtimex"),
    (libc::SYS_iopl, "iopl"),
    (libc::SYS_ioperm, "ioperm"),
    (libc::SYS_open_by_handle_at, "open_by_handle_at"),
    (libc::SYS_userfaultfd, "userfaultfd"),
    (libc::SYS_io_uring_setup, "io_uring_setup"),
    (libc::SYS_io_uring_enter, "io_uring_enter"),
    (libc::SYS_io_uring_register, "io_uring_register"),
    (libc::SYS_personality, "personality"),
    (libc::SYS_vhangup, "vhangup"),
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
    /// `refused` with each EPERM answer turned into a notification.
    notifying: BpfProgram,
    clone3: BpfProgram,
}

impl Filter {
    /// The packs' filter for this machine's architecture.
    pub fn for_packs() -> Result<Filter, FilterError> {
        let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| FilterError(e.to_string()))?;
        let error = |e: seccompiler::BackendError| FilterError(e.to_string());
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = REFUSED.iter().map(|&(nr, _)| (nr, Vec::new())).collect();
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
        let refused = BpfProgram::try_from(refused).map_err(error)?;
        Ok(Filter { notifying: notifying(&refused), refused, clone3: BpfProgram::try_from(clone3).map_err(error)? })
    }

    /// Installs the filters like [`Filter::install`], except that a refused
    /// call waits for the returned listener to answer it (with EPERM, after
    /// saying so in the pack's log: `Refusals`). The listener is
    /// close-on-exec.
    pub fn install_notifying(&self) -> io::Result<OwnedFd> {
        // SAFETY: prctl(2) with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let program = SockFprog { len: self.notifying.len() as u16, filter: self.notifying.as_ptr() };
        // SAFETY: seccomp(2) reads `program` (valid, borrowed for the call);
        // it returns a new descriptor this function then owns. seccompiler
        // installs filters without flags; a listener needs this raw call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
                &program as *const SockFprog,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just made this descriptor for this process.
        let listener = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        seccompiler::apply_filter(&self.clone3).map_err(|e| match e {
            seccompiler::Error::Prctl(e) | seccompiler::Error::Seccomp(e) => e,
            _ => io::Error::from_raw_os_error(libc::EINVAL),
        })?;
        Ok(listener)
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

/// The kernel's `struct sock_fprog`.
#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const seccompiler::sock_filter,
}

/// `program` with every `return ERRNO(EPERM)` made `return USER_NOTIF`.
fn notifying(program: &BpfProgram) -> BpfProgram {
    const RETURN_CONSTANT: u16 = 0x06; // BPF_RET | BPF_K
    let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    program
        .iter()
        .map(|i| match (i.code, i.k) {
            (RETURN_CONSTANT, k) if k == eperm => {
                seccompiler::sock_filter { k: libc::SECCOMP_RET_USER_NOTIF, ..i.clone() }
            }
            _ => i.clone(),
        })
        .collect()
}

/// The name of a system call the packs' filter refuses (a number otherwise).
pub fn refused_name(nr: i64) -> String {
    match REFUSED.iter().find(|(n, _)| *n == nr) {
        Some((_, name)) => (*name).to_string(),
        None if nr == libc::SYS_clone => "clone with new namespaces".to_string(),
        None => format!("system call {nr}"),
    }
}
