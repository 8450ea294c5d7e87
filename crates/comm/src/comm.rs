//! Point-to-point messaging: the per-worker handles, async and blocking.

use std::future::{Future, IntoFuture};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::mailbox::{Recv, Source};
use crate::pack::Core;
use crate::stats::CommStats;
use crate::wait;
use crate::wire::{Entry, Space};

/// A worker's communicator, async flavour: every operation is a future.
///
/// Use it from async code; [`Comm`](crate::Comm) offers the same operations to plain threads.
#[derive(Clone)]
pub struct AsyncComm {
    pub(crate) core: Arc<Core>,
    rank: usize,
    pub(crate) local: usize,
}

impl AsyncComm {
    /// This worker's rank, 0..size.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of workers in the burst.
    pub fn size(&self) -> usize {
        self.core.layout().workers()
    }

    /// Index of this worker's pack.
    pub fn pack(&self) -> usize {
        self.core.pack()
    }

    /// The ranks that share this worker's pack (and memory).
    pub fn pack_ranks(&self) -> Range<usize> {
        self.core.layout().ranks_of(self.core.pack())
    }

    /// The burst's packs.
    pub fn layout(&self) -> &Layout {
        self.core.layout()
    }

    /// What this worker has sent so far, inside its pack and to other packs.
    pub fn stats(&self) -> CommStats {
        self.core.stats[self.local].snapshot()
    }

    /// The longest any operation waits before it fails with [`Error::Timeout`].
    pub fn op_timeout(&self) -> Duration {
        self.core.opts.op_timeout
    }

    /// Sends `data` to `dst` with `tag`. Inside the pack the bytes are handed
    /// over without copying; the call returns once they are on their way.
    pub async fn send(&self, dst: usize, tag: u64, data: Bytes) -> Result<()> {
        let send = self.send_in(Space::User, dst, tag, data)?;
        self.timed(send, || format!("sending tag {tag} to rank {dst}")).await
    }

    /// Receives the next message from `src` with `tag`.
    pub async fn recv(&self, src: usize, tag: u64) -> Result<Bytes> {
        self.check_rank(src, "source")?;
        let recv = self.post(Space::User, Source::Rank(src), tag);
        Ok(self.timed(recv, || format!("receiving tag {tag} from rank {src}")).await?.1)
    }

    /// Receives the next message with `tag` from any rank; returns `(source, data)`.
    pub async fn recv_any(&self, tag: u64) -> Result<(usize, Bytes)> {
        let recv = self.post(Space::User, Source::Any, tag);
        self.timed(recv, || format!("receiving tag {tag} from any rank")).await
    }

    /// Starts a send and returns at once; wait on the request later.
    pub fn isend(&self, dst: usize, tag: u64, data: Bytes) -> SendRequest {
        let state = match self.send_in(Space::User, dst, tag, data) {
            Err(err) => SendState::Done(Some(Err(err))),
            Ok(SendFuture::Done) => SendState::Done(Some(Ok(()))),
            Ok(SendFuture::Remote(send)) => SendState::Running(self.core.runtime.spawn(send)),
        };
        SendRequest { state, core: self.core.clone() }
    }

    /// Posts a receive now (it is matched in posting order) and returns at once.
    pub fn irecv(&self, src: usize, tag: u64) -> RecvRequest {
        let recv = match self.check_rank(src, "source") {
            Ok(()) => Ok(self.post(Space::User, Source::Rank(src), tag)),
            Err(err) => Err(err),
        };
        RecvRequest { recv, core: self.core.clone(), what: format!("receiving tag {tag} from rank {src}") }
    }

    /// Like [`AsyncComm::irecv`], from any source.
    pub fn irecv_any(&self, tag: u64) -> RecvRequest {
        let recv = Ok(self.post(Space::User, Source::Any, tag));
        RecvRequest { recv, core: self.core.clone(), what: format!("receiving tag {tag} from any rank") }
    }

    /// Fails the whole burst on behalf of this worker: every pending operation
    /// of every worker returns [`Error::PeerFailed`] naming this rank.
    pub fn abort(&self, reason: &str) {
        self.core.abort(self.rank, reason);
    }

    pub(crate) fn new(core: Arc<Core>, rank: usize, local: usize) -> Self {
        AsyncComm { core, rank, local }
    }

    pub(crate) fn check_rank(&self, rank: usize, what: &str) -> Result<()> {
        if rank >= self.size() {
            return Err(Error::invalid(format!("{what} rank {rank} is outside the burst of {} workers", self.size())));
        }
        Ok(())
    }

    fn check_len(&self, data: &Bytes) -> Result<()> {
        let limit = self.core.opts.limits.max_message_bytes;
        if data.len() as u64 > limit {
            return Err(Error::TooLarge { what: "message", size: data.len() as u64, limit });
        }
        Ok(())
    }

    /// Posts a receive in this worker's mailbox.
    pub(crate) fn post(&self, space: Space, from: Source, tag: u64) -> Recv {
        self.core.post(self.local, (space, tag), from)
    }

    /// Sends one message. The order among this worker's messages is fixed at the call.
    pub(crate) fn send_in(&self, space: Space, dst: usize, tag: u64, data: Bytes) -> Result<SendFuture> {
        self.check_rank(dst, "destination")?;
        self.check_len(&data)?;
        if let Some(err) = self.core.failure() {
            return Err(err);
        }
        let stats = &self.core.stats[self.local];
        let dst_pack = self.core.layout().pack_of(dst);
        if dst_pack == self.core.pack() {
            stats.local(data.len());
            self.core.deliver_local(self.rank, dst, (space, tag), data);
            return Ok(SendFuture::Done);
        }
        stats.remote(data.len());
        stats.transfer();
        let entry = Entry { src: self.rank as u32, dst: dst as u32, space, tag, payload: data };
        Ok(SendFuture::Remote(self.core.send_bundle(dst_pack, vec![entry]).boxed()))
    }

    /// Runs `fut` under the operation timeout.
    pub(crate) async fn timed<T>(
        &self,
        fut: impl Future<Output = Result<T>>,
        what: impl FnOnce() -> String,
    ) -> Result<T> {
        let timeout = self.core.opts.op_timeout;
        match tokio::time::timeout(timeout, fut).await {
            Ok(result) => result,
            Err(_) => Err(self.core.failure().unwrap_or_else(|| Error::timeout(timeout, what()))),
        }
    }
}

/// A send that either already happened (in-pack) or still moves bytes.
pub(crate) enum SendFuture {
    Done,
    Remote(BoxFuture<'static, Result<()>>),
}

impl Future for SendFuture {
    type Output = Result<()>;
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<()>> {
        match self.get_mut() {
            SendFuture::Done => std::task::Poll::Ready(Ok(())),
            SendFuture::Remote(f) => f.as_mut().poll(cx),
        }
    }
}

/// A send in progress, from [`AsyncComm::isend`] or [`Comm::isend`](crate::Comm::isend).
pub struct SendRequest {
    state: SendState,
    core: Arc<Core>,
}

enum SendState {
    Done(Option<Result<()>>),
    Running(JoinHandle<Result<()>>),
}

impl SendRequest {
    /// Whether the send has finished (successfully or not).
    pub fn test(&self) -> bool {
        match &self.state {
            SendState::Done(_) => true,
            SendState::Running(h) => h.is_finished(),
        }
    }

    /// Blocks this thread until the send is done (within the operation timeout).
    pub fn wait(self) -> Result<()> {
        let core = self.core.clone();
        blocking(&core, self.into_future())
    }
}

impl IntoFuture for SendRequest {
    type Output = Result<()>;
    type IntoFuture = BoxFuture<'static, Result<()>>;
    fn into_future(self) -> Self::IntoFuture {
        let timeout = self.core.opts.op_timeout;
        let core = self.core;
        match self.state {
            SendState::Done(mut r) => {
                let r = r.take().unwrap_or(Ok(()));
                async move { r }.boxed()
            }
            SendState::Running(handle) => async move {
                match tokio::time::timeout(timeout, handle).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(join)) => Err(Error::transport("runtime", format!("send task ended: {join}"))),
                    Err(_) => Err(core.failure().unwrap_or_else(|| Error::timeout(timeout, "a non-blocking send"))),
                }
            }
            .boxed(),
        }
    }
}

/// A posted receive, from `irecv`: yields `(source rank, data)`.
pub struct RecvRequest {
    recv: Result<Recv>,
    core: Arc<Core>,
    what: String,
}

impl RecvRequest {
    /// The message, if it has arrived; never blocks.
    pub fn test(&mut self) -> Option<Result<(usize, Bytes)>> {
        match &mut self.recv {
            Ok(recv) => recv.try_take(),
            Err(err) => Some(Err(err.clone())),
        }
    }

    /// Blocks this thread until the message arrives (within the operation timeout).
    pub fn wait(self) -> Result<(usize, Bytes)> {
        let core = self.core.clone();
        blocking(&core, self.into_future())
    }
}

impl IntoFuture for RecvRequest {
    type Output = Result<(usize, Bytes)>;
    type IntoFuture = BoxFuture<'static, Result<(usize, Bytes)>>;
    fn into_future(self) -> Self::IntoFuture {
        let timeout = self.core.opts.op_timeout;
        async move {
            let recv = self.recv?;
            match tokio::time::timeout(timeout, recv).await {
                Ok(r) => r,
                Err(_) => Err(self.core.failure().unwrap_or_else(|| Error::timeout(timeout, self.what))),
            }
        }
        .boxed()
    }
}

/// Runs a future to completion on this (non-async) thread; while it
/// busy-polls, the thread also reads the pack's connections.
pub(crate) fn blocking<T>(core: &Core, fut: impl Future<Output = Result<T>>) -> Result<T> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::invalid("a blocking Comm operation was called from async code; use comm.as_async() there"));
    }
    let _context = core.runtime.enter();
    wait::block_on(fut, core.opts.spin, || core.progress())
}
