//! The blocking communicator, for workers that are plain threads.

use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;

use crate::comm::{AsyncComm, RecvRequest, SendRequest, blocking};
use crate::error::Result;
use crate::layout::Layout;
use crate::reduce::{Element, Op};
use crate::stats::CommStats;

/// A worker's communicator: the same operations as [`AsyncComm`], each
/// blocking the calling thread until done (and never longer than the
/// operation timeout). Call it from plain threads, not from async code.
pub struct Comm {
    inner: AsyncComm,
}

impl Comm {
    pub(crate) fn new(core: std::sync::Arc<crate::pack::Core>, rank: usize, local: usize) -> Self {
        Comm { inner: AsyncComm::new(core, rank, local) }
    }

    /// The async flavour of this communicator (same worker, same state).
    pub fn as_async(&self) -> &AsyncComm {
        &self.inner
    }

    /// Converts into the async flavour.
    pub fn into_async(self) -> AsyncComm {
        self.inner
    }

    fn block<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        blocking(&self.inner.core, fut)
    }

    /// This worker's rank, 0..size.
    pub fn rank(&self) -> usize {
        self.inner.rank()
    }
    /// Number of workers in the burst.
    pub fn size(&self) -> usize {
        self.inner.size()
    }
    /// Index of this worker's pack.
    pub fn pack(&self) -> usize {
        self.inner.pack()
    }
    /// The ranks that share this worker's pack (and memory).
    pub fn pack_ranks(&self) -> Range<usize> {
        self.inner.pack_ranks()
    }
    /// The burst's packs.
    pub fn layout(&self) -> &Layout {
        self.inner.layout()
    }
    /// What this worker has sent so far, inside its pack and to other packs.
    pub fn stats(&self) -> CommStats {
        self.inner.stats()
    }
    /// The longest any operation waits before it fails with `Error::Timeout`.
    pub fn op_timeout(&self) -> Duration {
        self.inner.op_timeout()
    }

    /// See [`AsyncComm::send`].
    pub fn send(&self, dst: usize, tag: u64, data: Bytes) -> Result<()> {
        self.block(self.inner.send(dst, tag, data))
    }
    /// See [`AsyncComm::recv`].
    pub fn recv(&self, src: usize, tag: u64) -> Result<Bytes> {
        self.block(self.inner.recv(src, tag))
    }
    /// See [`AsyncComm::recv_any`].
    pub fn recv_any(&self, tag: u64) -> Result<(usize, Bytes)> {
        self.block(self.inner.recv_any(tag))
    }
    /// See [`AsyncComm::isend`]; finish with [`SendRequest::wait`].
    pub fn isend(&self, dst: usize, tag: u64, data: Bytes) -> SendRequest {
        self.inner.isend(dst, tag, data)
    }
    /// See [`AsyncComm::irecv`]; finish with [`RecvRequest::wait`].
    pub fn irecv(&self, src: usize, tag: u64) -> RecvRequest {
        self.inner.irecv(src, tag)
    }
    /// See [`AsyncComm::irecv_any`].
    pub fn irecv_any(&self, tag: u64) -> RecvRequest {
        self.inner.irecv_any(tag)
    }
    /// See [`AsyncComm::abort`].
    pub fn abort(&self, reason: &str) {
        self.inner.abort(reason)
    }

    /// See [`AsyncComm::barrier`].
    pub fn barrier(&self) -> Result<()> {
        self.block(self.inner.barrier())
    }
    /// See [`AsyncComm::broadcast`].
    pub fn broadcast(&self, root: usize, data: Bytes) -> Result<Bytes> {
        self.block(self.inner.broadcast(root, data))
    }
    /// See [`AsyncComm::scatter`].
    pub fn scatter(&self, root: usize, parts: Vec<Bytes>) -> Result<Bytes> {
        self.block(self.inner.scatter(root, parts))
    }
    /// See [`AsyncComm::gather`].
    pub fn gather(&self, root: usize, data: Bytes) -> Result<Option<Vec<Bytes>>> {
        self.block(self.inner.gather(root, data))
    }
    /// See [`AsyncComm::all_gather`].
    pub fn all_gather(&self, data: Bytes) -> Result<Vec<Bytes>> {
        self.block(self.inner.all_gather(data))
    }
    /// See [`AsyncComm::all_to_all`].
    pub fn all_to_all(&self, parts: Vec<Bytes>) -> Result<Vec<Bytes>> {
        self.block(self.inner.all_to_all(parts))
    }
    /// See [`AsyncComm::reduce`].
    pub fn reduce<T: Element>(&self, root: usize, data: &[T], op: Op) -> Result<Option<Vec<T>>> {
        self.block(self.inner.reduce(root, data, op))
    }
    /// See [`AsyncComm::all_reduce`].
    ///
    /// A large input is lent to the workers of the pack, not copied: this
    /// call runs the operation to its end on this thread, so the loan ends
    /// before `data` can be used again.
    pub fn all_reduce<T: Element>(&self, data: &[T], op: Op) -> Result<Vec<T>> {
        // SAFETY: `block` runs the future to its end, or drops it, on this
        // thread's stack before it returns: the future is never leaked.
        self.block(unsafe { self.inner.all_reduce_lending(data, op) })
    }
    /// See [`AsyncComm::all_reduce_in_place`].
    /// Lends a large input as [`Comm::all_reduce`] does.
    pub fn all_reduce_in_place<T: Element>(&self, data: &mut [T], op: Op) -> Result<()> {
        // SAFETY: as in `all_reduce`.
        self.block(unsafe { self.inner.all_reduce_in_place_lending(data, op) })
    }
    /// See [`AsyncComm::reduce_scatter`].
    pub fn reduce_scatter<T: Element>(&self, data: &[T], op: Op) -> Result<Vec<T>> {
        self.block(self.inner.reduce_scatter(data, op))
    }
    /// See [`AsyncComm::all_reduce_with`].
    pub fn all_reduce_with<F>(&self, data: Bytes, f: F) -> Result<Bytes>
    where
        F: Fn(&[u8], &[u8]) -> Vec<u8> + Send + Sync,
    {
        self.block(self.inner.all_reduce_with(data, f))
    }
    /// See [`AsyncComm::reduce_in_place`].
    pub fn reduce_in_place<F>(&self, root: usize, data: Bytes, f: F) -> Result<Option<Bytes>>
    where
        F: Fn(&mut Vec<u8>, &[u8]) + Send + Sync,
    {
        self.block(self.inner.reduce_in_place(root, data, f))
    }
    /// Reduction with a user function at root (`None` elsewhere).
    pub fn reduce_with<F>(&self, root: usize, data: Bytes, f: F) -> Result<Option<Bytes>>
    where
        F: Fn(&[u8], &[u8]) -> Vec<u8> + Send + Sync,
    {
        let combine = crate::reduce::user(f);
        self.block(self.inner.reduce_bytes(root, data, &combine))
    }
}
