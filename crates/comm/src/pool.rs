//! Reusable receive buffers.
//!
//! Fresh memory costs a page fault per 4 KiB on first touch (~2-3 GB/s here),
//! slower than the links themselves, and large allocations always get fresh
//! pages. Large receive buffers therefore come from this pool and go back to it
//! when the last `Bytes` pointing into them is dropped by the user.
//!
//! A process may lend the pool other memory for large buffers instead
//! ([`lend_large_buffers`]): a pack of Python workers lends the memory it
//! shares with them, so that a message arriving from another pack is already
//! where its worker reads it.

use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex, RwLock, Weak};

use bytes::Bytes;

use crate::mailbox::lock;

/// Buffers below this size come from the allocator as usual.
pub(crate) const POOLED_MIN: usize = 256 << 10;
/// Most bytes the pool keeps idle.
const RETAIN_MAX: usize = 512 << 20;

/// Memory lent for large receive buffers.
pub trait LargeBuffers: Send + Sync {
    /// A region of at least `len` bytes, or `None` (the pool's own memory is used).
    fn region(&self, len: usize) -> Option<Region>;
}

/// Memory lent for one buffer: `capacity` bytes at `start`, valid until
/// `owner` is dropped (which gives it back to whoever lent it).
pub struct Region {
    start: *mut u8,
    capacity: usize,
    _owner: Box<dyn Send + Sync>,
}

impl Region {
    /// # Safety
    /// `start..start + capacity` must be writable memory that nothing else
    /// reads or writes until the buffer is frozen, and that stays valid until
    /// `owner` is dropped.
    pub unsafe fn new(start: *mut u8, capacity: usize, owner: Box<dyn Send + Sync>) -> Region {
        Region { start, capacity, _owner: owner }
    }
}

// SAFETY: the region is memory its owner keeps valid and gives this buffer
// alone (see `Region::new`); the owner itself is Send + Sync.
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

static LENT: RwLock<Option<Arc<dyn LargeBuffers>>> = RwLock::new(None);

/// From now on, large receive buffers of this process come from `source` where it has room.
pub fn lend_large_buffers(source: Arc<dyn LargeBuffers>) {
    *LENT.write().unwrap_or_else(|p| p.into_inner()) = Some(source);
}

fn lent(len: usize) -> Option<Region> {
    LENT.read().unwrap_or_else(|p| p.into_inner()).as_ref()?.region(len)
}

#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<Idle>,
}

#[derive(Default)]
struct Idle {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

impl Pool {
    pub fn new() -> Arc<Pool> {
        Arc::new(Pool::default())
    }

    /// An empty buffer with room for at least `len` bytes.
    pub fn take(self: &Arc<Self>, len: usize) -> Buffer {
        if len >= POOLED_MIN
            && let Some(region) = lent(len)
        {
            return Buffer { memory: Memory::Lent { region, len: 0 }, pool: Weak::new() };
        }
        let mut buf = None;
        if len >= POOLED_MIN {
            let mut idle = lock(&self.idle);
            // Smallest idle buffer that fits.
            let best = idle
                .buffers
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= len)
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i);
            if let Some(i) = best {
                let b = idle.buffers.swap_remove(i);
                idle.bytes -= b.capacity();
                buf = Some(b);
            }
        }
        let mut buf = buf.unwrap_or_else(|| Vec::with_capacity(len));
        buf.clear();
        Buffer { memory: Memory::Heap(buf), pool: Arc::downgrade(self) }
    }

    fn give_back(&self, buf: Vec<u8>) {
        if buf.capacity() < POOLED_MIN {
            return;
        }
        let mut idle = lock(&self.idle);
        if idle.bytes + buf.capacity() <= RETAIN_MAX {
            idle.bytes += buf.capacity();
            idle.buffers.push(buf);
        }
    }
}

enum Memory {
    Heap(Vec<u8>),
    Lent { region: Region, len: usize },
}

/// A buffer on loan from the pool; filled, then frozen into `Bytes`.
pub(crate) struct Buffer {
    memory: Memory,
    pool: Weak<Pool>,
}

impl Buffer {
    /// Zero-copy view of the filled bytes; the memory returns to the pool
    /// (or to whoever lent it) when the last view is dropped.
    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }

    pub fn len(&self) -> usize {
        match &self.memory {
            Memory::Heap(buf) => buf.len(),
            Memory::Lent { len, .. } => *len,
        }
    }

    /// Appends `data`; a lent buffer holds at most the length it was taken for.
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        match &mut self.memory {
            Memory::Heap(buf) => buf.extend_from_slice(data),
            Memory::Lent { region, len } => {
                let n = data.len().min(region.capacity - *len);
                // SAFETY: within the region, which this buffer alone writes.
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), region.start.add(*len), n) };
                *len += n;
            }
        }
    }

    /// The room after the filled bytes.
    pub fn spare_capacity_mut(&mut self) -> &mut [MaybeUninit<u8>] {
        match &mut self.memory {
            Memory::Heap(buf) => buf.spare_capacity_mut(),
            // SAFETY: the region's unfilled part, which this buffer alone writes.
            Memory::Lent { region, len } => unsafe {
                std::slice::from_raw_parts_mut(region.start.add(*len).cast(), region.capacity - *len)
            },
        }
    }

    /// # Safety
    /// The first `len - self.len()` bytes of the spare capacity must have been written.
    pub unsafe fn set_len(&mut self, new: usize) {
        match &mut self.memory {
            // SAFETY: as the caller promises.
            Memory::Heap(buf) => unsafe { buf.set_len(new) },
            Memory::Lent { region, len } => *len = new.min(region.capacity),
        }
    }
}

impl AsRef<[u8]> for Buffer {
    fn as_ref(&self) -> &[u8] {
        match &self.memory {
            Memory::Heap(buf) => buf,
            // SAFETY: the filled part of the region.
            Memory::Lent { region, len } => unsafe { std::slice::from_raw_parts(region.start, *len) },
        }
    }
}

impl AsMut<[u8]> for Buffer {
    fn as_mut(&mut self) -> &mut [u8] {
        match &mut self.memory {
            Memory::Heap(buf) => buf,
            // SAFETY: the filled part of the region, which this buffer alone writes.
            Memory::Lent { region, len } => unsafe { std::slice::from_raw_parts_mut(region.start, *len) },
        }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if let Memory::Heap(buf) = &mut self.memory
            && let Some(pool) = self.pool.upgrade()
        {
            pool.give_back(std::mem::take(buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Buffer {
        fn heap_ptr(&self) -> *const u8 {
            match &self.memory {
                Memory::Heap(buf) => buf.as_ptr(),
                Memory::Lent { region, .. } => region.start,
            }
        }
    }

    #[test]
    fn large_buffers_come_back_after_their_bytes_are_dropped() {
        let pool = Pool::new();
        let mut b = pool.take(POOLED_MIN);
        b.extend_from_slice(&vec![3u8; POOLED_MIN]);
        let ptr = b.as_ref().as_ptr();
        let bytes = b.freeze();
        let slice = bytes.slice(10..20);
        drop(bytes);
        let other = pool.take(POOLED_MIN);
        assert!(other.heap_ptr() != ptr, "reused while a view was alive");
        drop(slice);
        assert_eq!(pool.take(POOLED_MIN).heap_ptr(), ptr);
        drop(other);
    }
}
