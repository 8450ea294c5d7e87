//! Reusable receive buffers.
//!
//! Fresh memory costs a page fault per 4 KiB on first touch (~2-3 GB/s here),
//! slower than the links themselves, and large allocations always get fresh
//! pages. Large receive buffers therefore come from this pool and go back to it
//! when the last `Bytes` pointing into them is dropped by the user.

use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

use crate::mailbox::lock;

/// Buffers below this size come from the allocator as usual.
pub(crate) const POOLED_MIN: usize = 256 << 10;
/// Most bytes the pool keeps idle.
const RETAIN_MAX: usize = 512 << 20;

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
        Buffer { buf, pool: Arc::downgrade(self) }
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

/// A buffer on loan from the pool; filled, then frozen into `Bytes`.
pub(crate) struct Buffer {
    pub buf: Vec<u8>,
    pool: Weak<Pool>,
}

impl Buffer {
    /// Zero-copy view of the filled bytes; the memory returns to the pool
    /// when the last view is dropped.
    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for Buffer {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.give_back(std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_come_back_after_their_bytes_are_dropped() {
        let pool = Pool::new();
        let mut b = pool.take(POOLED_MIN);
        b.buf.extend_from_slice(&vec![3u8; POOLED_MIN]);
        let ptr = b.buf.as_ptr();
        let bytes = b.freeze();
        let slice = bytes.slice(10..20);
        drop(bytes);
        let other = pool.take(POOLED_MIN);
        assert!(other.buf.as_ptr() != ptr, "reused while a view was alive");
        drop(slice);
        assert_eq!(pool.take(POOLED_MIN).buf.as_ptr(), ptr);
        drop(other);
    }
}
