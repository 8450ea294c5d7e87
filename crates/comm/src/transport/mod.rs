//! How packets move between packs.
//!
//! A transport does three things: connect a pack to the other packs of its
//! burst, move packets to a given pack, and hand every packet that arrives to
//! the pack's [`PacketSink`]. Ordering, reassembly, matching and collectives
//! live above it and are written once. The transports are a closed enum, so
//! the hot path makes no dynamic calls.

use std::sync::{Arc, Weak};

use bytes::Bytes;

use crate::error::Result;
use crate::options::{PackOptions, TransportOptions};
use crate::rendezvous::Rendezvous;
use crate::wire::{Header, Limits, OutPacket};

mod auth;
mod inbound;
#[cfg(feature = "nats")]
pub(crate) mod nats;
#[cfg(feature = "rabbitmq")]
pub(crate) mod rabbitmq;
#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg(feature = "s3")]
pub(crate) mod s3;
mod shm;
mod sock_io;
mod stream;

/// Where a transport hands what arrives.
pub(crate) trait PacketSink: Send + Sync + 'static {
    fn limits(&self) -> &Limits;
    /// A validated packet from another pack.
    fn packet(&self, header: Header, body: Bytes);
    /// The link to `pack` broke (a peer that said goodbye first is not lost).
    fn lost(&self, pack: usize, reason: String);
    /// The transport itself failed (a broker went away): nothing can be trusted to arrive.
    fn broken(&self, reason: String);
    /// A receive buffer for `len` bytes (pooled when large).
    fn buffer(&self, len: usize) -> crate::pool::Buffer;
}

/// Transports hold their sink weakly, so a dropped pack is not kept alive by
/// its own receive loops.
pub(crate) type SinkRef = Weak<dyn PacketSink>;

pub(crate) enum Transport {
    /// A burst with a single pack talks to nobody.
    Alone,
    Stream(stream::StreamTransport),
    #[cfg(feature = "redis")]
    Redis(redis::RedisTransport),
    #[cfg(feature = "rabbitmq")]
    RabbitMq(rabbitmq::RabbitMqTransport),
    #[cfg(feature = "nats")]
    Nats(nats::NatsTransport),
    #[cfg(feature = "s3")]
    S3(s3::S3Transport),
}

impl Transport {
    pub async fn connect(opts: &PackOptions, rendezvous: &dyn Rendezvous, sink: Arc<dyn PacketSink>) -> Result<Self> {
        if opts.layout.packs() == 1 {
            return Ok(Transport::Alone);
        }
        let sink = Arc::downgrade(&sink);
        Ok(match &opts.transport {
            TransportOptions::Tcp(o) => Transport::Stream(
                stream::StreamTransport::connect(opts, o, stream::Family::Tcp, rendezvous, sink).await?,
            ),
            TransportOptions::Uds(o) => Transport::Stream(
                stream::StreamTransport::connect(opts, o, stream::Family::Uds, rendezvous, sink).await?,
            ),
            #[cfg(feature = "redis")]
            TransportOptions::Redis(o) => Transport::Redis(redis::RedisTransport::connect(opts, o, sink).await?),
            #[cfg(feature = "rabbitmq")]
            TransportOptions::RabbitMq(o) => {
                Transport::RabbitMq(rabbitmq::RabbitMqTransport::connect(opts, o, sink).await?)
            }
            #[cfg(feature = "nats")]
            TransportOptions::Nats(o) => Transport::Nats(nats::NatsTransport::connect(opts, o, sink).await?),
            #[cfg(feature = "s3")]
            TransportOptions::S3(o) => Transport::S3(s3::S3Transport::connect(opts, o, sink).await?),
        })
    }

    pub async fn send(&self, dst_pack: usize, packets: Vec<OutPacket>) -> Result<()> {
        match self {
            Transport::Alone => Ok(()),
            Transport::Stream(t) => t.send(dst_pack, packets).await,
            #[cfg(feature = "redis")]
            Transport::Redis(t) => t.send(dst_pack, packets).await,
            #[cfg(feature = "rabbitmq")]
            Transport::RabbitMq(t) => t.send(dst_pack, packets).await,
            #[cfg(feature = "nats")]
            Transport::Nats(t) => t.send(dst_pack, packets).await,
            #[cfg(feature = "s3")]
            Transport::S3(t) => t.send(dst_pack, packets).await,
        }
    }

    /// Lets a worker that busy-polls read what has arrived on the pack's
    /// direct connections itself (brokers' clients read on their own).
    pub fn progress(&self, sink: &dyn PacketSink) {
        if let Transport::Stream(t) = self {
            t.progress(sink);
        }
    }

    /// The packet size a bundle of `total` bytes is cut into.
    pub fn chunk_for(&self, total: u64, configured: u32) -> u32 {
        match self {
            Transport::Alone => u32::MAX,
            Transport::Stream(t) => t.chunk_for(total, configured),
            #[cfg(feature = "nats")]
            Transport::Nats(t) => t.chunk_for(configured),
            #[allow(unreachable_patterns)]
            _ => configured,
        }
    }

    /// Stops receiving and deletes what the transport created.
    pub async fn shutdown(&self) -> Result<()> {
        match self {
            Transport::Alone => Ok(()),
            Transport::Stream(t) => t.shutdown().await,
            #[cfg(feature = "redis")]
            Transport::Redis(t) => t.shutdown().await,
            #[cfg(feature = "rabbitmq")]
            Transport::RabbitMq(t) => t.shutdown().await,
            #[cfg(feature = "nats")]
            Transport::Nats(t) => t.shutdown().await,
            #[cfg(feature = "s3")]
            Transport::S3(t) => t.shutdown().await,
        }
    }
}

/// Background tasks of a transport, stopped when the transport goes away.
#[derive(Default)]
pub(crate) struct Tasks(std::sync::Mutex<Vec<tokio::task::AbortHandle>>);

impl Tasks {
    pub fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(fut).abort_handle();
        crate::mailbox::lock(&self.0).push(handle);
    }

    pub fn abort_all(&self) {
        for handle in crate::mailbox::lock(&self.0).drain(..) {
            handle.abort();
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.abort_all();
    }
}

/// Waits until `ready(pack)` holds for every pack but `me` (a broker transport
/// checking that each receiving pack's queue or stream exists before anyone
/// publishes), polling with a growing pause, for at most `timeout`.
pub(crate) async fn wait_for_peers<F, Fut>(
    packs: usize,
    me: usize,
    timeout: std::time::Duration,
    what: &str,
    mut ready: F,
) -> crate::error::Result<()>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = crate::error::Result<bool>>,
{
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + timeout;
    for pack in (0..packs).filter(|&p| p != me) {
        let mut pause = Duration::from_millis(2);
        while !ready(pack).await? {
            if Instant::now() + pause > deadline {
                return Err(crate::error::Error::timeout(timeout, format!("pack {pack} to create its {what}")));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
    Ok(())
}
