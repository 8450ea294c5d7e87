//! Refused system calls, said in the pack's log. The packs' filter, as the
//! launcher installs it, does not answer a refused call itself: the call
//! waits for the listener, held by the pack's init, which writes a line
//! naming the call and the process to its standard error (the pack's log)
//! and answers EPERM, as the plain filter would have.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crate::seccomp::refused_name;

/// Refusals said before the rest are only counted (a loop of refused calls must not flood the log).
const SAID_AT_MOST: usize = 32;

/// The listener of the packs' filter (see `Filter::install_notifying`).
pub struct Refusals {
    listener: OwnedFd,
    said: usize,
}

impl Refusals {
    pub fn new(listener: OwnedFd) -> Refusals {
        Refusals { listener, said: 0 }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// Answers the refused call waiting (if it still is) with EPERM, after
    /// saying what it was to `log`.
    pub fn answer(&mut self, log: &mut impl Write) {
        let fd = self.listener.as_raw_fd();
        // SAFETY: an all-zero seccomp_notif is what the kernel requires to fill.
        let mut call: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: the ioctl writes one seccomp_notif into `call`.
        if unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut call) } != 0 {
            // (ENOENT: the caller was killed while waiting.)
            return;
        }
        if self.said < SAID_AT_MOST {
            let name = refused_name(i64::from(call.data.nr));
            let _ = writeln!(
                log,
                "volley sandbox: process {} of the pack called {name}, which packs may not use: refused (EPERM)",
                call.pid
            );
            self.said += 1;
            if self.said == SAID_AT_MOST {
                let _ = writeln!(log, "volley sandbox: further refused calls are not shown");
            }
        }
        let answer = libc::seccomp_notif_resp { id: call.id, val: 0, error: -libc::EPERM, flags: 0 };
        // SAFETY: the ioctl reads one seccomp_notif_resp.
        unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SEND, &answer) };
    }
}
