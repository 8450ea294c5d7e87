//! Where the broker transports find their servers, and how a transport is
//! chosen by name (as the CLI, the benchmarks and the platform spell it).

use crate::error::{Error, Result};
#[cfg(feature = "nats")]
use crate::options::NatsOptions;
#[cfg(feature = "rabbitmq")]
use crate::options::RabbitMqOptions;
#[cfg(feature = "s3")]
use crate::options::S3Options;
#[cfg(feature = "redis")]
use crate::options::{RedisMode, RedisOptions};
use crate::options::{StreamOptions, TransportOptions};

/// The transport names [`Brokers::transport`] accepts.
pub const TRANSPORTS: [&str; 8] = ["tcp", "uds", "shm", "redis", "redis-streams", "rabbitmq", "nats", "s3"];

/// Addresses and credentials of the brokers a burst may use between packs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Brokers {
    /// `redis://host:port/db`.
    pub redis_url: String,
    /// `amqp://user:password@host:port/vhost`.
    pub amqp_url: String,
    /// `nats://host:port` (JetStream enabled).
    pub nats_url: String,
    /// `http://host:port` of an S3-compatible service.
    pub s3_endpoint: String,
    /// Bucket for the s3 transport (it must exist).
    pub s3_bucket: String,
    /// S3 access key.
    pub s3_access_key: String,
    /// S3 secret key.
    pub s3_secret_key: String,
    /// Key prefix under which bursts put their packets.
    #[serde(default)]
    pub s3_prefix: String,
    /// Connections each pack opens to Redis for sending, and as many for
    /// receiving (`None`: the transport's default, 4). Thousands of
    /// single-worker packs on one Redis may need fewer: it takes no more
    /// clients than its open-file limit allows.
    #[serde(default)]
    pub redis_connections: Option<usize>,
}

impl Default for Brokers {
    /// The servers of a development machine, on their standard loopback ports.
    fn default() -> Self {
        Brokers {
            redis_url: "redis://127.0.0.1:6379/".into(),
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            nats_url: "nats://127.0.0.1:4222".into(),
            s3_endpoint: "http://127.0.0.1:9900".into(),
            s3_bucket: "volley-test".into(),
            s3_access_key: "volley".into(),
            s3_secret_key: "volley-secret".into(),
            s3_prefix: String::new(),
            redis_connections: None,
        }
    }
}

/// Overrides of a transport's defaults; `None` keeps the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tuning {
    /// Connections per pack pair (tcp/uds), per pack (redis), channels (rabbitmq)
    /// or concurrent requests (s3).
    pub connections: Option<usize>,
    /// Packet size.
    pub chunk_bytes: Option<u32>,
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

impl Brokers {
    /// The options of the transport called `name` (one of [`TRANSPORTS`]).
    pub fn transport(&self, name: &str, tuning: Tuning) -> Result<TransportOptions> {
        let Tuning { connections, chunk_bytes } = tuning;
        Ok(match name {
            "tcp" | "uds" | "shm" => {
                let mut o = StreamOptions { shared_memory: name == "shm", ..StreamOptions::default() };
                set(&mut o.connections, connections);
                set(&mut o.chunk_bytes, chunk_bytes);
                if name == "tcp" { TransportOptions::Tcp(o) } else { TransportOptions::Uds(o) }
            }
            #[cfg(feature = "redis")]
            "redis" | "redis-streams" => {
                let mut o = RedisOptions::new(self.redis_url.clone());
                if name == "redis-streams" {
                    o.mode = RedisMode::Streams;
                }
                set(&mut o.connections, connections.or(self.redis_connections));
                set(&mut o.chunk_bytes, chunk_bytes);
                if o.connections == 0 {
                    return Err(Error::invalid("Redis connections must be at least 1"));
                }
                TransportOptions::Redis(o)
            }
            #[cfg(feature = "rabbitmq")]
            "rabbitmq" => {
                let mut o = RabbitMqOptions::new(self.amqp_url.clone());
                set(&mut o.channels, connections);
                set(&mut o.chunk_bytes, chunk_bytes);
                TransportOptions::RabbitMq(o)
            }
            #[cfg(feature = "nats")]
            "nats" => {
                let mut o = NatsOptions::new(self.nats_url.clone());
                set(&mut o.chunk_bytes, chunk_bytes);
                TransportOptions::Nats(o)
            }
            #[cfg(feature = "s3")]
            "s3" => {
                let mut o = self.s3();
                set(&mut o.concurrency, connections);
                set(&mut o.chunk_bytes, chunk_bytes);
                TransportOptions::S3(o)
            }
            other if TRANSPORTS.contains(&other) => {
                return Err(Error::invalid(format!(
                    "transport {other:?} is not compiled into this build; enable the volley-comm feature of that name"
                )));
            }
            other => {
                return Err(Error::invalid(format!(
                    "unknown transport {other:?}; choose one of {}",
                    TRANSPORTS.join(", ")
                )));
            }
        })
    }

    /// The s3 transport's options for these credentials.
    #[cfg(feature = "s3")]
    pub fn s3(&self) -> S3Options {
        let mut s3 = S3Options::new(self.s3_bucket.clone());
        s3.endpoint = Some(self.s3_endpoint.clone());
        s3.access_key = Some(self.s3_access_key.clone());
        s3.secret_key = Some(self.s3_secret_key.clone());
        s3.prefix = self.s3_prefix.clone();
        s3
    }
}

impl TransportOptions {
    /// Deletes whatever a burst of `packs` packs may have left on this
    /// transport's broker: what a platform calls after packs that died
    /// without closing. The direct transports leave nothing behind.
    pub async fn purge(&self, burst: &str, packs: usize) -> Result<()> {
        let _ = (burst, packs);
        match self {
            TransportOptions::Tcp(_) | TransportOptions::Uds(_) => Ok(()),
            #[cfg(feature = "redis")]
            TransportOptions::Redis(o) => crate::transport::redis::purge(&o.url, burst).await.map(drop),
            #[cfg(feature = "rabbitmq")]
            TransportOptions::RabbitMq(o) => crate::transport::rabbitmq::purge(&o.url, burst, packs).await,
            #[cfg(feature = "nats")]
            TransportOptions::Nats(o) => crate::transport::nats::purge(&o.url, burst, packs).await,
            #[cfg(feature = "s3")]
            TransportOptions::S3(o) => crate::transport::s3::purge(o, burst).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_is_known() {
        for name in TRANSPORTS {
            let t = Brokers::default().transport(name, Tuning::default()).unwrap();
            assert_eq!(t.name(), name.trim_end_matches("-streams"));
        }
    }

    #[test]
    fn unknown_names_are_refused_with_the_choices() {
        let err = Brokers::default().transport("carrier-pigeon", Tuning::default()).unwrap_err();
        assert!(err.to_string().contains("tcp, uds, shm, redis"), "{err}");
    }

    #[test]
    fn tuning_overrides_the_defaults() {
        let tuning = Tuning { connections: Some(3), chunk_bytes: Some(4096) };
        match Brokers::default().transport("uds", tuning).unwrap() {
            TransportOptions::Uds(o) => assert_eq!((o.connections, o.chunk_bytes), (3, 4096)),
            other => panic!("expected uds, got {}", other.name()),
        }
    }

    #[cfg(feature = "redis")]
    #[test]
    fn the_platforms_redis_connections_apply_unless_a_tuning_says_otherwise() {
        let redis = |brokers: &Brokers, tuning| match brokers.transport("redis", tuning).unwrap() {
            TransportOptions::Redis(o) => o.connections,
            other => panic!("expected redis, got {}", other.name()),
        };
        let mut brokers = Brokers::default();
        assert_eq!(redis(&brokers, Tuning::default()), 4);
        brokers.redis_connections = Some(1);
        assert_eq!(redis(&brokers, Tuning::default()), 1);
        assert_eq!(redis(&brokers, Tuning { connections: Some(3), chunk_bytes: None }), 3);
        brokers.redis_connections = Some(0);
        let err = brokers.transport("redis", Tuning::default()).unwrap_err();
        assert!(err.to_string().contains("at least 1"), "{err}");
    }
}
