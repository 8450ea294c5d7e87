//! A worker's communicator: the same operations as the native SDK's `Comm`,
//! carried out by the pack's host over Volley's middleware.
//!
//! Between two workers of one pack a message is not copied by the host: its
//! buffer in the pack's shared memory is handed to the receiver
//! ([`Comm::send_vec`]: no copy at all; [`Comm::send`]: the one copy of the
//! borrowed bytes into the buffer handed over). To a worker of another pack
//! the bytes are copied out once and travel like any other message.

use std::mem::ManuallyDrop;
use std::ops::Range;

use crate::Error;
use crate::sys;

/// A reduction's operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Element-wise sum (wrapping for integers).
    Sum,
    /// Element-wise minimum.
    Min,
    /// Element-wise maximum.
    Max,
}

impl Op {
    fn code(self) -> i32 {
        match self {
            Op::Sum => 0,
            Op::Min => 1,
            Op::Max => 2,
        }
    }
}

/// Numbers the built-in reductions work on.
pub trait Element: Copy + Default + 'static {
    /// The host's code for this type.
    #[doc(hidden)]
    const CODE: i32;
}

impl Element for f64 {
    const CODE: i32 = 0;
}
impl Element for f32 {
    const CODE: i32 = 1;
}
impl Element for i64 {
    const CODE: i32 = 2;
}
impl Element for u64 {
    const CODE: i32 = 3;
}

/// The bytes of `values` (little-endian in wasm memory, as the host reads them).
fn bytes_of<T: Element>(values: &[T]) -> (*const u8, usize) {
    (values.as_ptr().cast(), std::mem::size_of_val(values))
}

/// Pending reply 0 read as elements of `T`.
fn take_elements<T: Element>() -> Vec<T> {
    let bytes = sys::take(0);
    let n = bytes.len() / std::mem::size_of::<T>();
    let mut out = vec![T::default(); n];
    // SAFETY: `out` has room for n elements, `bytes` holds n whole ones; any bit pattern is a number.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.as_mut_ptr().cast::<u8>(), n * std::mem::size_of::<T>())
    };
    out
}

/// A received message from its header (kind, source, address, length,
/// capacity): a buffer handed over, or the pending reply.
fn received([kind, from, ptr, len, cap]: [u32; 5]) -> (usize, Vec<u8>) {
    let data = if kind == 1 {
        // SAFETY: a buffer of this pack's memory that a worker of this pack
        // gave away (a Vec<u8> of this allocator, with this length and
        // capacity); it is ours now.
        unsafe { Vec::from_raw_parts(ptr as usize as *mut u8, len as usize, cap as usize) }
    } else {
        sys::take(0)
    };
    (from as usize, data)
}

/// A request the host keeps: its number, or why it could not be posted.
#[derive(Debug)]
struct Request(Result<i32, Error>);

impl Request {
    fn post(id: i32) -> Request {
        Request(sys::status(id))
    }

    fn test(&self) -> bool {
        match &self.0 {
            // SAFETY: no memory passed.
            Ok(id) => (unsafe { sys::request_test(*id) }) != 0,
            Err(_) => true,
        }
    }

    /// Waits once; the host forgets the request.
    fn wait(mut self) -> Result<[u32; 5], Error> {
        let id = std::mem::replace(&mut self.0, Err(Error::new("waited for")))?;
        let mut header = [0u32; 5];
        // SAFETY: the host writes five words into `header` for a receive.
        sys::status(unsafe { sys::request_wait(id, header.as_mut_ptr()) })?;
        Ok(header)
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Ok(id) = self.0 {
            // SAFETY: no memory passed.
            unsafe { sys::request_forget(id) }
        }
    }
}

/// A send in progress, from [`Comm::isend`].
#[derive(Debug)]
pub struct SendRequest(Request);

impl SendRequest {
    /// Whether the send has finished (successfully or not); never blocks.
    pub fn test(&self) -> bool {
        self.0.test()
    }

    /// Waits until the send is done (within the operation timeout).
    pub fn wait(self) -> Result<(), Error> {
        self.0.wait().map(drop)
    }
}

/// A posted receive, from [`Comm::irecv`] or [`Comm::irecv_any`].
#[derive(Debug)]
pub struct RecvRequest(Request);

impl RecvRequest {
    /// Whether the message has arrived; never blocks.
    pub fn test(&self) -> bool {
        self.0.test()
    }

    /// Waits for the message (within the operation timeout): its sender and bytes.
    pub fn wait(self) -> Result<(usize, Vec<u8>), Error> {
        self.0.wait().map(received)
    }
}

/// `values` combined by `f`, first to last.
fn fold<F: Fn(&[u8], &[u8]) -> Vec<u8>>(values: Vec<Vec<u8>>, f: F) -> Result<Vec<u8>, Error> {
    let mut values = values.into_iter();
    let first = values.next().ok_or_else(|| Error::new("a reduction over no workers"))?;
    Ok(values.fold(first, |acc, v| f(&acc, &v)))
}

/// What a worker's communicator has moved (the native SDK's `CommStats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommStats {
    /// Messages to workers of the same pack.
    pub local_messages: u64,
    /// Their bytes.
    pub local_bytes: u64,
    /// Messages to other packs.
    pub remote_messages: u64,
    /// Their bytes.
    pub remote_bytes: u64,
    /// Transfers to other packs (a collective makes one per pack, whatever its messages).
    pub remote_transfers: u64,
}

/// A worker's communicator.
#[derive(Debug)]
pub struct Comm {
    rank: usize,
    size: usize,
    pack: usize,
    pack_ranks: Range<usize>,
}

impl Comm {
    pub(crate) fn new(rank: usize, size: usize, pack: usize, pack_ranks: Range<usize>) -> Self {
        Comm { rank, size, pack, pack_ranks }
    }

    /// This worker's rank, 0..size.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of workers in the burst.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The index of this worker's pack.
    pub fn pack(&self) -> usize {
        self.pack
    }

    /// The ranks of this pack's workers (they share this module's memory).
    pub fn pack_ranks(&self) -> Range<usize> {
        self.pack_ranks.clone()
    }

    /// What this worker's communicator has moved so far.
    pub fn stats(&self) -> Result<CommStats, Error> {
        let mut v = [0u64; 5];
        // SAFETY: the host writes five u64 into `v`.
        sys::status(unsafe { sys::stats(v.as_mut_ptr()) })?;
        let [local_messages, local_bytes, remote_messages, remote_bytes, remote_transfers] = v;
        Ok(CommStats { local_messages, local_bytes, remote_messages, remote_bytes, remote_transfers })
    }

    /// How long a blocking call waits before it fails.
    pub fn op_timeout(&self) -> std::time::Duration {
        // SAFETY: no memory passed.
        std::time::Duration::from_millis(unsafe { sys::op_timeout_ms() }.max(0) as u64)
    }

    /// Sends `data` to `dst` with `tag`.
    pub fn send(&self, dst: usize, tag: u64, data: &[u8]) -> Result<(), Error> {
        if self.pack_ranks.contains(&dst) && !data.is_empty() {
            return self.send_vec(dst, tag, data.to_vec());
        }
        // SAFETY: the host reads `data` during the call.
        sys::status(unsafe { sys::send(dst as i32, tag as i64, data.as_ptr(), data.len()) }).map(drop)
    }

    /// Sends `data`, giving it away: to a worker of this pack the buffer
    /// itself is handed over (no copy, whatever its size).
    pub fn send_vec(&self, dst: usize, tag: u64, data: Vec<u8>) -> Result<(), Error> {
        if data.capacity() == 0 {
            return self.send(dst, tag, &[]);
        }
        let mut data = ManuallyDrop::new(data);
        // SAFETY: the host either hands the buffer to the receiver, which
        // rebuilds the Vec (1), or copies it and leaves it to us (0, or an error).
        let status = unsafe { sys::send_owned(dst as i32, tag as i64, data.as_mut_ptr(), data.len(), data.capacity()) };
        if status != 1 {
            drop(ManuallyDrop::into_inner(data));
        }
        sys::status(status).map(drop)
    }

    /// The next message from `src` with `tag`.
    pub fn recv(&self, src: usize, tag: u64) -> Result<Vec<u8>, Error> {
        self.receive(src as i32, tag).map(|(_, data)| data)
    }

    /// The next message with `tag` from any worker, with its sender.
    pub fn recv_any(&self, tag: u64) -> Result<(usize, Vec<u8>), Error> {
        self.receive(-1, tag)
    }

    fn receive(&self, src: i32, tag: u64) -> Result<(usize, Vec<u8>), Error> {
        let mut header = [0u32; 5];
        // SAFETY: the host writes five words into `header`.
        sys::status(unsafe { sys::recv(src, tag as i64, header.as_mut_ptr()) })?;
        Ok(received(header))
    }

    /// Starts sending `data` to `dst` (copied now); [`SendRequest::wait`] says how it went.
    pub fn isend(&self, dst: usize, tag: u64, data: &[u8]) -> SendRequest {
        // SAFETY: the host copies `data` during the call.
        SendRequest(Request::post(unsafe { sys::isend(dst as i32, tag as i64, data.as_ptr(), data.len()) }))
    }

    /// Posts a receive of the next message from `src` with `tag`.
    pub fn irecv(&self, src: usize, tag: u64) -> RecvRequest {
        // SAFETY: no memory passed.
        RecvRequest(Request::post(unsafe { sys::irecv(src as i32, tag as i64) }))
    }

    /// Posts a receive of the next message with `tag` from any worker.
    pub fn irecv_any(&self, tag: u64) -> RecvRequest {
        // SAFETY: no memory passed.
        RecvRequest(Request::post(unsafe { sys::irecv(-1, tag as i64) }))
    }

    /// Waits until every worker of the burst has reached the barrier.
    pub fn barrier(&self) -> Result<(), Error> {
        // SAFETY: no memory passed.
        sys::status(unsafe { sys::barrier() }).map(drop)
    }

    /// Fails the burst with `reason`: every other worker's pending and later
    /// calls return an error.
    pub fn abort(&self, reason: &str) {
        // SAFETY: the host reads `reason` during the call.
        unsafe { sys::abort(reason.as_ptr(), reason.len()) }
    }

    /// `root`'s `data`, on every worker (others pass anything, say `&[]`).
    pub fn broadcast(&self, root: usize, data: &[u8]) -> Result<Vec<u8>, Error> {
        // SAFETY: the host reads `data` during the call.
        sys::status(unsafe { sys::broadcast(root as i32, data.as_ptr(), data.len()) })?;
        Ok(sys::take(0))
    }

    /// Part `i` of `root`'s `parts` to worker `i` (others pass `&[]`).
    pub fn scatter<P: AsRef<[u8]>>(&self, root: usize, parts: &[P]) -> Result<Vec<u8>, Error> {
        let pairs = sys::pairs(parts);
        // SAFETY: the host reads the pairs and the parts they name during the call.
        sys::status(unsafe { sys::scatter(root as i32, pairs.as_ptr(), parts.len()) })?;
        Ok(sys::take(0))
    }

    /// Every worker's `data`, in rank order, at `root` (None elsewhere).
    pub fn gather(&self, root: usize, data: &[u8]) -> Result<Option<Vec<Vec<u8>>>, Error> {
        // SAFETY: the host reads `data` during the call.
        let n = sys::status(unsafe { sys::gather(root as i32, data.as_ptr(), data.len()) })?;
        Ok((self.rank == root).then(|| sys::take_all(n)))
    }

    /// Every worker's `data`, in rank order, on every worker.
    pub fn all_gather(&self, data: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
        // SAFETY: the host reads `data` during the call.
        let n = sys::status(unsafe { sys::all_gather(data.as_ptr(), data.len()) })?;
        Ok(sys::take_all(n))
    }

    /// Part `i` of `parts` to worker `i`; returns what each worker sent this one.
    pub fn all_to_all<P: AsRef<[u8]>>(&self, parts: &[P]) -> Result<Vec<Vec<u8>>, Error> {
        let pairs = sys::pairs(parts);
        // SAFETY: the host reads the pairs and the parts they name during the call.
        let n = sys::status(unsafe { sys::all_to_all(pairs.as_ptr(), parts.len()) })?;
        Ok(sys::take_all(n))
    }

    /// As [`Comm::all_to_all`], giving the parts away: the parts for workers
    /// of this pack are handed over (no copy), and so are the parts this
    /// worker receives from them; parts to and from other packs travel as
    /// copies.
    pub fn all_to_all_vec(&self, parts: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, Error> {
        let n = parts.len();
        let mut parts: Vec<ManuallyDrop<Vec<u8>>> = parts.into_iter().map(ManuallyDrop::new).collect();
        let triples: Vec<u32> =
            parts.iter_mut().flat_map(|p| [p.as_mut_ptr() as u32, p.len() as u32, p.capacity() as u32]).collect();
        let mut out = vec![0u32; n * 4];
        // SAFETY: the host reads the triples and the parts they name, hands the
        // parts for this pack to their workers, and writes n × 4 words at `out`.
        let status = unsafe { sys::all_to_all_vec(triples.as_ptr(), n, out.as_mut_ptr()) };
        for (dst, part) in parts.into_iter().enumerate() {
            // Parts for this pack belong to their receivers now (after a
            // failure some may not have left: they are leaked, never freed twice).
            if !self.pack_ranks.contains(&dst) {
                drop(ManuallyDrop::into_inner(part));
            }
        }
        let received = sys::status(status)? as usize;
        Ok((0..received)
            .map(|i| match out[i * 4..i * 4 + 4] {
                // SAFETY: a buffer of this pack's memory a worker of this pack
                // gave away (a Vec<u8> of this allocator, this length and capacity).
                [1, ptr, len, cap] => unsafe {
                    Vec::from_raw_parts(ptr as usize as *mut u8, len as usize, cap as usize)
                },
                _ => sys::take(i as i32),
            })
            .collect())
    }

    /// Every worker's `data` combined by `f` in rank order, on every worker.
    /// (The module's own function cannot run in the host: the values are
    /// gathered to every worker and folded here.)
    pub fn all_reduce_with<F>(&self, data: &[u8], f: F) -> Result<Vec<u8>, Error>
    where
        F: Fn(&[u8], &[u8]) -> Vec<u8>,
    {
        fold(self.all_gather(data)?, f)
    }

    /// Every worker's `data` combined by `f` in rank order, at `root` (None elsewhere).
    pub fn reduce_with<F>(&self, root: usize, data: &[u8], f: F) -> Result<Option<Vec<u8>>, Error>
    where
        F: Fn(&[u8], &[u8]) -> Vec<u8>,
    {
        self.gather(root, data)?.map(|values| fold(values, f)).transpose()
    }

    /// As [`Comm::reduce_with`], `f` updating the running value in place.
    pub fn reduce_in_place<F>(&self, root: usize, data: &[u8], f: F) -> Result<Option<Vec<u8>>, Error>
    where
        F: Fn(&mut Vec<u8>, &[u8]),
    {
        let Some(values) = self.gather(root, data)? else { return Ok(None) };
        let mut values = values.into_iter();
        let mut acc = values.next().unwrap_or_default();
        values.for_each(|v| f(&mut acc, &v));
        Ok(Some(acc))
    }

    /// Element-wise `op` over every worker's `data`, at `root` (None elsewhere).
    pub fn reduce<T: Element>(&self, root: usize, data: &[T], op: Op) -> Result<Option<Vec<T>>, Error> {
        let (ptr, len) = bytes_of(data);
        // SAFETY: the host reads `data` during the call.
        let n = sys::status(unsafe { sys::reduce(root as i32, ptr, len, T::CODE, op.code()) })?;
        Ok((n > 0).then(take_elements))
    }

    /// Element-wise `op` over every worker's `data`, on every worker.
    pub fn all_reduce<T: Element>(&self, data: &[T], op: Op) -> Result<Vec<T>, Error> {
        let (ptr, len) = bytes_of(data);
        // SAFETY: the host reads `data` during the call.
        sys::status(unsafe { sys::all_reduce(ptr, len, T::CODE, op.code()) })?;
        Ok(take_elements())
    }

    /// Element-wise `op` over every worker's `data` (all of one length), cut
    /// into one block per rank: this worker gets block `rank`. The blocks
    /// are as equal as can be, the first `len % size` one element longer.
    pub fn reduce_scatter<T: Element>(&self, data: &[T], op: Op) -> Result<Vec<T>, Error> {
        let (ptr, len) = bytes_of(data);
        // SAFETY: the host reads `data` during the call.
        sys::status(unsafe { sys::reduce_scatter(ptr, len, T::CODE, op.code()) })?;
        Ok(take_elements())
    }
}
