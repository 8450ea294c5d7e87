//! What a pack needs to know to join its burst.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::wire::Limits;

/// Everything a pack needs to connect to the other packs of its burst.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// The burst's id: names every broker object and authenticates connections.
    /// 1 to 64 characters from `[A-Za-z0-9_-]`.
    pub burst: String,
    /// Per-burst secret shared by its packs; strangers without it cannot join.
    pub secret: Vec<u8>,
    /// Ranks and packs of the burst.
    pub layout: Layout,
    /// This pack's index in `layout`.
    pub pack: usize,
    /// How this pack reaches the others.
    pub transport: TransportOptions,
    /// Longest any single operation (a receive, a collective, a send) may block.
    pub op_timeout: Duration,
    /// Longest the pack waits for its peers at connect and at close.
    pub connect_timeout: Duration,
    /// How long a blocked worker busy-polls before it parks. While it polls it
    /// also reads the pack's tcp/uds connections itself, so a message from
    /// another pack reaches it without a thread hand-off. At most one thread
    /// per core of the process polls at a time; zero parks at once.
    pub spin: Duration,
    /// Size limits applied to everything received.
    pub limits: Limits,
    /// Up to this many packs, a reduction sends every pack's partials to
    /// every other pack at once and folds them in pack order; above it, the
    /// partials combine along a binary tree of packs (recursive halving,
    /// about log2(packs) rounds), so no pack makes thousands of transfers.
    /// The choice fixes the order in which floating-point partials add up,
    /// so every pack of a burst must use the same value.
    pub tree_above_packs: usize,
}

/// [`PackOptions::tree_above_packs`]'s default: the pack count up to which
/// one round of transfers between all pack pairs costs less than
/// log2(packs) rounds.
pub const TREE_ABOVE_PACKS: usize = 64;

impl PackOptions {
    /// Options with defaults for everything but the burst's identity and shape.
    pub fn new(burst: impl Into<String>, secret: impl Into<Vec<u8>>, layout: Layout, pack: usize) -> Self {
        PackOptions {
            burst: burst.into(),
            secret: secret.into(),
            layout,
            pack,
            transport: TransportOptions::Tcp(StreamOptions::default()),
            op_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(30),
            spin: Duration::from_micros(50),
            limits: Limits::default(),
            tree_above_packs: TREE_ABOVE_PACKS,
        }
    }

    /// Chooses the transport.
    pub fn with_transport(mut self, transport: TransportOptions) -> Self {
        self.transport = transport;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let ok_chars = self.burst.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if self.burst.is_empty() || self.burst.len() > 64 || !ok_chars {
            return Err(Error::invalid(format!(
                "burst id {:?} must be 1 to 64 characters from A-Z a-z 0-9 - _",
                self.burst
            )));
        }
        if self.secret.len() < 16 {
            return Err(Error::invalid("the burst secret must have at least 16 bytes"));
        }
        if self.pack >= self.layout.packs() {
            return Err(Error::invalid(format!(
                "pack index {} is outside the layout's {} packs",
                self.pack,
                self.layout.packs()
            )));
        }
        if self.op_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(Error::invalid("timeouts must be positive"));
        }
        let chunk = self.transport.chunk_bytes();
        if chunk == 0 || chunk > self.limits.max_chunk_bytes {
            return Err(Error::invalid(format!(
                "chunk size {chunk} must be between 1 and the packet limit {}",
                self.limits.max_chunk_bytes
            )));
        }
        Ok(())
    }
}

/// How bytes move between the packs of a burst. Serializable, so that a
/// platform can resolve it once and hand each pack exactly its transport's
/// settings (and no other broker's credentials).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "name", content = "options", rename_all = "lowercase")]
pub enum TransportOptions {
    /// Direct TCP connections between packs (the default).
    Tcp(StreamOptions),
    /// Direct Unix domain socket connections, for packs on one host (with
    /// `shared_memory`, the `shm` mode: large packets through memfd segments).
    Uds(StreamOptions),
    /// Through Redis lists, for packs that cannot reach each other.
    #[cfg(feature = "redis")]
    Redis(RedisOptions),
    /// Through RabbitMQ queues (AMQP 0-9-1).
    #[cfg(feature = "rabbitmq")]
    RabbitMq(RabbitMqOptions),
    /// Through NATS JetStream.
    #[cfg(feature = "nats")]
    Nats(NatsOptions),
    /// Through objects in an S3-compatible store, for packs that can reach nothing else.
    #[cfg(feature = "s3")]
    S3(S3Options),
}

impl TransportOptions {
    /// The transport's short name, as the CLI spells it.
    pub fn name(&self) -> &'static str {
        match self {
            TransportOptions::Tcp(_) => "tcp",
            TransportOptions::Uds(o) if o.shared_memory => "shm",
            TransportOptions::Uds(_) => "uds",
            #[cfg(feature = "redis")]
            TransportOptions::Redis(_) => "redis",
            #[cfg(feature = "rabbitmq")]
            TransportOptions::RabbitMq(_) => "rabbitmq",
            #[cfg(feature = "nats")]
            TransportOptions::Nats(_) => "nats",
            #[cfg(feature = "s3")]
            TransportOptions::S3(_) => "s3",
        }
    }

    /// Largest packet body the transport sends; bundles are cut to this.
    pub fn chunk_bytes(&self) -> u32 {
        match self {
            TransportOptions::Tcp(o) | TransportOptions::Uds(o) => o.chunk_bytes,
            #[cfg(feature = "redis")]
            TransportOptions::Redis(o) => o.chunk_bytes,
            #[cfg(feature = "rabbitmq")]
            TransportOptions::RabbitMq(o) => o.chunk_bytes,
            #[cfg(feature = "nats")]
            TransportOptions::Nats(o) => o.chunk_bytes,
            #[cfg(feature = "s3")]
            TransportOptions::S3(o) => o.chunk_bytes,
        }
    }
}

/// Options of the direct transports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamOptions {
    /// Where to listen: `host:port` for TCP (port 0 picks one), a directory for UDS.
    pub bind: Option<String>,
    /// The host other packs should dial, when it differs from the bound address.
    pub advertise_host: Option<String>,
    /// Connections per pack pair; large bundles are striped across them.
    pub connections: usize,
    /// Largest packet; a bundle is cut into one piece per connection, at most this big.
    pub chunk_bytes: u32,
    /// Unix sockets only (`shm` mode): packets from 64 KiB up cross through
    /// shared memory segments, one copy instead of two through the kernel.
    #[serde(default)]
    pub shared_memory: bool,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions { bind: None, advertise_host: None, connections: 1, chunk_bytes: 256 << 20, shared_memory: false }
    }
}

impl StreamOptions {
    pub(crate) fn uds_dir(&self) -> PathBuf {
        self.bind.as_ref().map(PathBuf::from).unwrap_or_else(std::env::temp_dir)
    }
}

/// Options of the Redis transport.
#[cfg(feature = "redis")]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RedisOptions {
    /// `redis://host:port/db`.
    pub url: String,
    /// Connections for sending and, separately, for receiving.
    pub connections: usize,
    /// Packet size; large bundles move as many packets at once.
    pub chunk_bytes: u32,
    /// Lists (RPUSH/BLPOP, the default) or streams (XADD/XREADGROUP).
    pub mode: RedisMode,
}

/// Which Redis data structure carries the packets.
#[cfg(feature = "redis")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// One list per pack: RPUSH to send, BLPOP to receive.
    #[default]
    Lists,
    /// One stream per pack, read through a consumer group.
    Streams,
}

#[cfg(feature = "redis")]
impl RedisOptions {
    /// Defaults for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisOptions { url: url.into(), connections: 4, chunk_bytes: 1 << 20, mode: RedisMode::Lists }
    }
}

/// Options of the RabbitMQ transport.
#[cfg(feature = "rabbitmq")]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RabbitMqOptions {
    /// `amqp://user:password@host:port/vhost` (`%2f` is the default vhost).
    pub url: String,
    /// Publishing channels; packets of a bundle are published concurrently over them.
    pub channels: usize,
    /// Packet size.
    pub chunk_bytes: u32,
}

#[cfg(feature = "rabbitmq")]
impl RabbitMqOptions {
    /// Defaults for the broker at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        RabbitMqOptions { url: url.into(), channels: 4, chunk_bytes: 4 << 20 }
    }
}

/// Options of the NATS transport (JetStream must be enabled on the server).
#[cfg(feature = "nats")]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NatsOptions {
    /// `nats://host:port`.
    pub url: String,
    /// Packet size; never above what the server's maximum payload allows.
    pub chunk_bytes: u32,
}

#[cfg(feature = "nats")]
impl NatsOptions {
    /// Defaults for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        NatsOptions { url: url.into(), chunk_bytes: 1 << 20 }
    }
}

/// Options of the S3 transport.
#[cfg(feature = "s3")]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct S3Options {
    /// The bucket (it must exist).
    pub bucket: String,
    /// Key prefix under which bursts put their packets (may be empty).
    pub prefix: String,
    /// `http://host:port` of an S3-compatible service; None means AWS.
    pub endpoint: Option<String>,
    /// Region (any value for most S3-compatible services).
    pub region: String,
    /// Access key; None takes credentials from the usual AWS environment variables.
    pub access_key: Option<String>,
    /// Secret key, with `access_key`.
    pub secret_key: Option<String>,
    /// Packet size: one object per packet.
    pub chunk_bytes: u32,
    /// Concurrent requests per pack.
    pub concurrency: usize,
    /// Longest pause between two listings of an idle inbox.
    pub max_poll: Duration,
}

#[cfg(feature = "s3")]
impl S3Options {
    /// Defaults for `bucket` on AWS; set `endpoint` for another service.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Options {
            bucket: bucket.into(),
            prefix: String::new(),
            endpoint: None,
            region: "us-east-1".into(),
            access_key: None,
            secret_key: None,
            chunk_bytes: 8 << 20,
            concurrency: 8,
            max_poll: Duration::from_millis(20),
        }
    }
}
