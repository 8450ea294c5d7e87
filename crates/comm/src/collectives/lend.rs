//! A worker lends its reduction input to the workers of its pack instead of
//! copying it: the copy was a third of the memory traffic of an all-reduce
//! (16 ranks x 8 MiB through memory at every call).
//!
//! The memory is the caller's slice, so the loan must end before the slice
//! may be used again, whatever happens: the guard's drop revokes the loan and
//! waits (a write lock) until no pack worker is reading it. Readers hold the
//! read lock only while folding, a bounded loop with no waiting inside, so
//! the revocation waits at most one fold. A revoked loan reads as the
//! lender's reason: a lender leaves early only when its reduction failed,
//! and the readers then report that cause, not just its absence.
//!
//! Safe Rust may leak a future (and so skip the guard's drop), so only a call
//! that runs its future to completion on its own stack lends: the blocking
//! `Comm` does (see `wait::block_on`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::mailbox::lock;

/// Loans of one pack, by collective tag, one slot per local worker.
#[derive(Default)]
pub(crate) struct Loans(Mutex<HashMap<u64, Vec<Option<Arc<Loan>>>>>);

/// The bytes one worker lent.
pub(crate) struct Loan {
    start: *const u8,
    len: usize,
    /// Why the lender left; `None` while the loan stands.
    revoked: RwLock<Option<String>>,
}

// SAFETY: the loan is only read, under the read lock, while not revoked; the
// lender keeps the memory valid and unwritten until it revokes (see LendGuard).
unsafe impl Send for Loan {}
unsafe impl Sync for Loan {}

impl Loan {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Runs `f` over the lent bytes; once the lender has left, why it left.
    pub fn read<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, String> {
        let revoked = self.revoked.read().unwrap_or_else(|p| p.into_inner());
        if let Some(why) = revoked.as_ref() {
            return Err(why.clone());
        }
        // SAFETY: not revoked, and the lender cannot revoke (take the write
        // lock) while this read lock is held: the memory is valid and unwritten.
        Ok(f(unsafe { std::slice::from_raw_parts(self.start, self.len) }))
    }
}

impl Loans {
    /// Another worker's loan under `tag`, if it made one and has not left.
    pub fn get(&self, tag: u64, local: usize) -> Option<Arc<Loan>> {
        lock(&self.0).get(&tag)?.get(local)?.clone()
    }

    fn put(&self, tag: u64, local: usize, size: usize, loan: Option<Arc<Loan>>) {
        let mut loans = lock(&self.0);
        let slots = loans.entry(tag).or_insert_with(|| vec![None; size]);
        if let Some(slot) = slots.get_mut(local) {
            *slot = loan;
        }
        if slots.iter().all(Option::is_none) {
            loans.remove(&tag);
        }
    }
}

/// The lender's side of a loan: dropping it ends the loan.
pub(crate) struct LendGuard<'a> {
    loans: &'a Loans,
    loan: Arc<Loan>,
    tag: u64,
    local: usize,
    size: usize,
    /// Why the loan ends early, if the lender's reduction failed.
    failure: Option<String>,
}

impl<'a> LendGuard<'a> {
    /// Lends the `len` bytes at `start` under `tag` as local worker `local`
    /// of a pack of `size`.
    ///
    /// # Safety
    /// The memory must be readable, and stay valid and unwritten until the
    /// guard is dropped; the guard must be dropped, not leaked.
    pub unsafe fn new(loans: &'a Loans, tag: u64, local: usize, size: usize, start: *const u8, len: usize) -> Self {
        let loan = Arc::new(Loan { start, len, revoked: RwLock::new(None) });
        loans.put(tag, local, size, Some(loan.clone()));
        LendGuard { loans, loan, tag, local, size, failure: None }
    }

    /// Ends the loan because the lender's reduction failed with `why`.
    pub fn fail(mut self, why: &impl std::fmt::Display) {
        self.failure = Some(why.to_string());
    }
}

impl Drop for LendGuard<'_> {
    fn drop(&mut self) {
        let why = self.failure.take().unwrap_or_else(|| "it gave up (its timeout, or its caller)".into());
        *self.loan.revoked.write().unwrap_or_else(|p| p.into_inner()) = Some(why);
        self.loans.put(self.tag, self.local, self.size, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoked_loan_reads_as_none_and_is_forgotten() {
        let loans = Loans::default();
        let data = [7u8; 16];
        // SAFETY: data outlives the guard, which is dropped below.
        let guard = unsafe { LendGuard::new(&loans, 3, 1, 2, data.as_ptr(), data.len()) };
        let loan = loans.get(3, 1).expect("lent");
        assert_eq!(loan.read(|b| b.iter().map(|&x| x as usize).sum::<usize>()), Ok(7 * 16));
        assert!(loans.get(3, 0).is_none());
        guard.fail(&"its inputs differ in length");
        assert_eq!(loan.read(|b| b.len()), Err("its inputs differ in length".into()), "read after the lender left");
        assert!(loans.get(3, 1).is_none());
        assert!(lock(&loans.0).is_empty(), "the tag's slots are removed");
    }

    #[test]
    fn revoking_waits_for_a_reader() {
        let loans = Loans::default();
        let data = vec![1u8; 1 << 20];
        // SAFETY: data outlives the guard, dropped inside the scope.
        let guard = unsafe { LendGuard::new(&loans, 0, 0, 2, data.as_ptr(), data.len()) };
        let loan = loans.get(0, 0).unwrap();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let finished = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                loan.read(|b| {
                    started_tx.send(()).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    let sum = b.iter().map(|&x| x as usize).sum::<usize>();
                    finished.store(true, std::sync::atomic::Ordering::SeqCst);
                    sum
                })
            });
            started_rx.recv().unwrap();
            drop(guard); // must wait for the reader's fold to end
            assert!(finished.load(std::sync::atomic::Ordering::SeqCst), "revoked while being read");
            assert_eq!(reader.join().unwrap(), Ok(1 << 20));
        });
    }
}
