//! Packs talk through Redis lists: one list per receiving pack
//! (`volley:{burst}:inbox:{pack}`), one list element per packet.
//!
//! Senders push packets over several connections at once and receivers pop
//! with several blocking connections, so a large bundle moves as many
//! concurrent chunks; reassembly puts them back in order. Every key carries
//! an expiry as a safety net, and a pack deletes its own list when it closes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};

use super::{SinkRef, Tasks};
use crate::error::{Error, Result};
use crate::options::{PackOptions, RedisOptions};
use crate::wire::{OutPacket, split_packet};

/// How long a blocking pop waits before it checks again that the pack is alive.
const POP_WAIT_SECS: f64 = 1.0;

fn inbox_key(burst: &str, pack: usize) -> String {
    format!("volley:{burst}:inbox:{pack}")
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::transport("redis", e)
}

pub(crate) struct RedisTransport {
    senders: Vec<MultiplexedConnection>,
    turn: AtomicUsize,
    inboxes: Vec<String>,
    me: usize,
    expiry_ms: u64,
    tasks: Tasks,
}

impl RedisTransport {
    pub async fn connect(opts: &PackOptions, redis_opts: &RedisOptions, sink: SinkRef) -> Result<Self> {
        let client = Client::open(redis_opts.url.as_str())
            .map_err(|e| Error::invalid(format!("bad Redis URL {:?}: {e}", redis_opts.url)))?;
        let n = redis_opts.connections.max(1);
        let send_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(opts.connect_timeout))
            .set_response_timeout(Some(opts.op_timeout));
        // Blocking pops hold their connection; they get their own, without a response timeout.
        let recv_config =
            AsyncConnectionConfig::new().set_connection_timeout(Some(opts.connect_timeout)).set_response_timeout(None);
        let mut senders = Vec::with_capacity(n);
        for _ in 0..n {
            let conn = client
                .get_multiplexed_async_connection_with_config(&send_config)
                .await
                .map_err(|e| err(format!("cannot connect to {}: {e}; is Redis running there?", redis_opts.url)))?;
            senders.push(conn);
        }
        let inboxes: Vec<String> = (0..opts.layout.packs()).map(|p| inbox_key(&opts.burst, p)).collect();
        let tasks = Tasks::default();
        for _ in 0..n {
            let conn = client.get_multiplexed_async_connection_with_config(&recv_config).await.map_err(err)?;
            tasks.spawn(pop_loop(conn, inboxes[opts.pack].clone(), sink.clone()));
        }
        let expiry = opts.op_timeout * 2 + opts.connect_timeout;
        Ok(RedisTransport {
            senders,
            turn: AtomicUsize::new(0),
            inboxes,
            me: opts.pack,
            expiry_ms: expiry.as_millis() as u64,
            tasks,
        })
    }

    pub async fn send(&self, dst: usize, packets: Vec<OutPacket>) -> Result<()> {
        let key = self.inboxes.get(dst).ok_or_else(|| Error::invalid(format!("no pack {dst}")))?;
        let first = self.turn.fetch_add(packets.len(), Ordering::Relaxed);
        let pushes = packets.iter().enumerate().map(|(i, p)| {
            let mut conn = self.senders[(first + i) % self.senders.len()].clone();
            async move {
                redis::pipe()
                    .rpush(key, PacketArg(p))
                    .ignore()
                    .pexpire(key, self.expiry_ms as i64)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| err(format!("pushing to {key}: {e}")))
            }
        });
        futures::future::try_join_all(pushes).await?;
        Ok(())
    }

    pub async fn shutdown(&self) -> Result<()> {
        self.tasks.abort_all();
        let mut conn = self.senders[0].clone();
        redis::cmd("DEL").arg(&self.inboxes[self.me]).query_async::<()>(&mut conn).await.map_err(err)
    }
}

/// A packet written straight into the command buffer (header, then each
/// body segment), without first gathering it into one buffer.
struct PacketArg<'a>(&'a OutPacket);

impl redis::ToRedisArgs for PacketArg<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write;
        let mut w = out.writer_for_next_arg();
        // Writing into the command's own Vec cannot fail.
        let _ = w.write_all(&self.0.header.encode());
        for segment in &self.0.body {
            let _ = w.write_all(segment);
        }
    }
}

async fn pop_loop(mut conn: MultiplexedConnection, key: String, sink: SinkRef) {
    loop {
        let popped: redis::RedisResult<Option<(String, Vec<u8>)>> =
            redis::cmd("BLPOP").arg(&key).arg(POP_WAIT_SECS).query_async(&mut conn).await;
        let Some(target) = sink.upgrade() else { return };
        match popped {
            Ok(None) => continue,
            Ok(Some((_, value))) => match split_packet(Bytes::from(value), target.limits()) {
                Ok((header, body)) => target.packet(header, body),
                Err(e) => target.broken(format!("a malformed packet in {key}: {e}")),
            },
            Err(e) => {
                target.broken(format!("Redis failed while receiving from {key}: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Deletes everything a burst may have left in Redis (for a platform cleaning
/// up after packs that died); returns how many keys it deleted.
pub async fn purge(url: &str, burst: &str) -> Result<usize> {
    let client = Client::open(url).map_err(|e| Error::invalid(format!("bad Redis URL {url:?}: {e}")))?;
    let mut conn = client.get_multiplexed_async_connection().await.map_err(err)?;
    let keys = keys_of(&mut conn, burst).await?;
    if !keys.is_empty() {
        redis::cmd("DEL").arg(&keys).query_async::<()>(&mut conn).await.map_err(err)?;
    }
    Ok(keys.len())
}

/// The keys a burst has in Redis right now.
pub async fn keys_of(conn: &mut MultiplexedConnection, burst: &str) -> Result<Vec<String>> {
    let pattern = format!("volley:{burst}:*");
    let mut cursor = 0u64;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .map_err(err)?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}
