//! Memory a pack process shares with its Python workers, so that large
//! messages do not travel through their sockets.
//!
//! The arena is one memory file (memfd) the fork server and every worker it
//! forks inherit. A worker sending a large message asks for a slot, writes
//! its message there and names the slot in its call: the message goes to the
//! middleware as a `Bytes` over the slot, without a copy. A large message a
//! worker receives is handed to it as a place in the arena, which it maps: a
//! message another worker of the pack sent is already there (the middleware
//! moved the same `Bytes`), one from another pack is copied in once.
//!
//! The arena is also where the middleware of the pack process receives large
//! messages from other packs (`volley_comm::lend_large_buffers`): they arrive
//! where their worker maps them, and are lent without a copy too.
//!
//! A slot is freed when the last `Bytes` over it is dropped: the middleware's
//! and the relay's for each worker that holds it (until the worker says it has
//! let it go). The arena grows as slots are taken and freed slots are reused;
//! its pages go with the pack process, which serves one pack. (It is never
//! shrunk under a running process: a worker's mapping past the end of the
//! file would fault.)

use std::ops::Range;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use range_alloc::RangeAllocator;
use rustix::fs::{MemfdFlags, ftruncate, memfd_create};
use rustix::mm::{MapFlags, ProtFlags, mmap, munmap};

/// Address space reserved for the arena in the pack process (not memory: the
/// file grows into it as slots are taken).
const RESERVED: u64 = 64 << 30;
/// Most the arena's file may grow to; a slot beyond it is refused (the
/// message then travels through the socket).
const MOST: u64 = 16 << 30;
/// Slots start on page boundaries (a worker maps them at their offset): the
/// machine's page size, 4 KiB or more.
fn page() -> u64 {
    rustix::param::page_size() as u64
}

/// The pack process's shared memory with its Python workers.
pub(crate) struct Arena {
    file: OwnedFd,
    base: *mut u8,
    state: Mutex<State>,
}

struct State {
    free: RangeAllocator<u64>,
    /// The file's length: what the allocator hands out from.
    len: u64,
}

// SAFETY: `base` is a shared mapping that lives as long as the arena; the
// bytes of a slot are written only before it is handed out as `Bytes` (by the
// relay or by the worker that asked for it) and only read afterwards.
unsafe impl Send for Arena {}
unsafe impl Sync for Arena {}

impl Arena {
    pub(crate) fn new() -> std::io::Result<Arc<Arena>> {
        // Close-on-exec: only the fork server is given it (see `inherit`).
        let file = memfd_create("volley-python-arena", MemfdFlags::CLOEXEC)?;
        // SAFETY: a new mapping at an address of the kernel's choosing; the
        // file grows (ftruncate) before any part of it is touched.
        let base = unsafe {
            mmap(
                std::ptr::null_mut(),
                RESERVED as usize,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED | MapFlags::NORESERVE,
                &file,
                0,
            )?
        };
        let state = State { free: RangeAllocator::new(0..0), len: 0 };
        Ok(Arc::new(Arena { file, base: base.cast(), state: Mutex::new(state) }))
    }

    /// The file's descriptor, to be left open across the fork server's exec.
    pub(crate) fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot of at least `len` bytes, or `None` if the arena may not grow so far.
    pub(crate) fn take(self: &Arc<Self>, len: usize) -> Option<Slot> {
        let size = (len as u64).max(1).div_ceil(page()) * page();
        let mut state = self.state();
        let range = match state.free.allocate_range(size) {
            Ok(range) => range,
            Err(_) => {
                let grown = (state.len * 2).max(state.len + size).min(MOST);
                if grown < state.len + size || ftruncate(&self.file, grown).is_err() {
                    return None;
                }
                state.free.grow_to(grown);
                state.len = grown;
                state.free.allocate_range(size).ok()?
            }
        };
        Some(Slot { arena: self.clone(), range, used: len })
    }

    /// A slot holding a copy of `data`.
    pub(crate) fn copy(self: &Arc<Self>, data: &[u8]) -> Option<Slot> {
        let slot = self.take(data.len())?;
        // SAFETY: the slot was just taken: nobody else reads or writes it.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.add(slot.range.start as usize), data.len()) };
        Some(slot)
    }

    /// Where `data` lies in the arena, if it does.
    pub(crate) fn offset_of(&self, data: &[u8]) -> Option<u64> {
        let start = (data.as_ptr() as usize).checked_sub(self.base as usize)? as u64;
        (start + data.len() as u64 <= self.state().len).then_some(start)
    }

    fn give_back(&self, range: Range<u64>) {
        self.state().free.free_range(range);
    }
}

/// Large receive buffers of the pack process come from the arena.
pub(crate) struct Lender(pub(crate) Arc<Arena>);

impl volley_comm::LargeBuffers for Lender {
    fn region(&self, len: usize) -> Option<volley_comm::Region> {
        let slot = self.0.take(len)?;
        let capacity = (slot.range.end - slot.range.start) as usize;
        // SAFETY: the slot's pages are inside the mapping, taken by this
        // buffer alone, and stay taken until the slot (its owner) is dropped.
        let start = unsafe { self.0.base.add(slot.range.start as usize) };
        Some(unsafe { volley_comm::Region::new(start, capacity, Box::new(slot)) })
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; no slot outlives the arena (each holds it).
        unsafe {
            let _ = munmap(self.base.cast(), RESERVED as usize);
        }
    }
}

/// A part of the arena, taken until dropped.
pub(crate) struct Slot {
    arena: Arc<Arena>,
    range: Range<u64>,
    /// The bytes of it that hold a message.
    used: usize,
}

impl Slot {
    /// Where it starts in the arena's file.
    pub(crate) fn offset(&self) -> u64 {
        self.range.start
    }

    /// The message it holds, as the middleware takes it (no copy).
    pub(crate) fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for Slot {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the slot's range is inside the file (the file only shrinks
        // when no slot is live) and inside the reserved mapping.
        unsafe { std::slice::from_raw_parts(self.arena.base.add(self.range.start as usize), self.used) }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.arena.give_back(self.range.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_separate_pages_and_reused_when_freed() {
        let arena = Arena::new().unwrap();
        let a = arena.copy(b"hello").unwrap();
        let b = arena.take(5000).unwrap();
        assert_eq!(a.as_ref(), b"hello");
        assert_eq!(a.offset() % page(), 0);
        assert_eq!(b.offset() % page(), 0);
        assert!(b.offset() >= a.offset() + page() || a.offset() >= b.offset() + 2 * page());
        let bytes = a.into_bytes();
        assert_eq!(arena.offset_of(&bytes[1..]), Some(bytes.as_ptr() as u64 - arena.base as u64 + 1));
        assert_eq!(arena.offset_of(b"elsewhere"), None);
        let freed = arena.offset_of(&bytes).unwrap();
        drop(bytes);
        let c = arena.copy(&[7u8; 100]).unwrap();
        assert_eq!(c.offset(), freed, "a freed slot is taken again");
        assert_eq!(c.as_ref(), &[7u8; 100][..]);
        drop(b);
    }

    #[test]
    fn a_slot_beyond_the_most_the_arena_may_hold_is_refused() {
        let arena = Arena::new().unwrap();
        assert!(arena.take(MOST as usize + 1).is_none());
        assert!(arena.take(1 << 20).is_some());
    }
}
