//! Packs talk through Redis: one list (or, in streams mode, one stream read
//! through a consumer group) per receiving pack (`volley:{burst}:inbox:{pack}`),
//! one element per packet.
//!
//! Senders push packets over several connections at once and receivers pop
//! with several blocking connections, so a large bundle moves as many
//! concurrent chunks; reassembly puts them back in order. Every key carries
//! an expiry as a safety net, and a pack deletes its own list when it closes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use redis::{AsyncConnectionConfig, Client};

use super::{SinkRef, Tasks};
use crate::error::{Error, Result};
use crate::options::{PackOptions, RedisMode, RedisOptions};
use crate::wire::{OutPacket, split_packet};

/// The consumer group of a pack's stream, and the field that holds a packet.
const GROUP: &str = "volley";
const FIELD: &str = "p";

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
    mode: RedisMode,
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
            // Sends are bounded by the operation timeout above them; setup calls need the connect budget.
            .set_response_timeout(Some(opts.connect_timeout.max(opts.op_timeout)));
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
        let own = inboxes[opts.pack].clone();
        if redis_opts.mode == RedisMode::Streams {
            // Reading from id 0 means packets added before the group existed are not missed.
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&own)
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut senders[0].clone())
                .await;
            if let Err(e) = created
                && e.code() != Some("BUSYGROUP")
            {
                return Err(err(format!("creating the consumer group of {own}: {e}")));
            }
        }
        for i in 0..n {
            let conn = client.get_multiplexed_async_connection_with_config(&recv_config).await.map_err(err)?;
            match redis_opts.mode {
                RedisMode::Lists => tasks.spawn(pop_loop(conn, own.clone(), sink.clone())),
                RedisMode::Streams => tasks.spawn(read_group_loop(conn, own.clone(), i, sink.clone())),
            }
        }
        let expiry = opts.op_timeout * 2 + opts.connect_timeout;
        Ok(RedisTransport {
            senders,
            mode: redis_opts.mode,
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
            let mut pipe = redis::pipe();
            match self.mode {
                RedisMode::Lists => pipe.rpush(key, PacketArg(p)),
                RedisMode::Streams => pipe.cmd("XADD").arg(key).arg("*").arg(FIELD).arg(PacketArg(p)),
            };
            async move {
                pipe.ignore()
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

/// Reads packets from stream `key` through the pack's consumer group and
/// deletes them once delivered (NOACK: no pending list to keep).
async fn read_group_loop(mut conn: MultiplexedConnection, key: String, consumer: usize, sink: SinkRef) {
    loop {
        let read: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(format!("c{consumer}"))
            .arg("COUNT")
            .arg(64)
            .arg("BLOCK")
            .arg((POP_WAIT_SECS * 1000.0) as u64)
            .arg("NOACK")
            .arg("STREAMS")
            .arg(&key)
            .arg(">")
            .query_async(&mut conn)
            .await;
        let Some(target) = sink.upgrade() else { return };
        let entries = match read {
            Ok(reply) => reply.map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect::<Vec<_>>()).unwrap_or_default(),
            Err(e) => {
                target.broken(format!("Redis failed while reading stream {key}: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut ids = Vec::with_capacity(entries.len());
        for mut entry in entries {
            match entry.map.remove(FIELD) {
                Some(redis::Value::BulkString(value)) => match split_packet(Bytes::from(value), target.limits()) {
                    Ok((header, body)) => target.packet(header, body),
                    Err(e) => target.broken(format!("a malformed packet in {key}: {e}")),
                },
                _ => target.broken(format!("entry {} of {key} carries no packet", entry.id)),
            }
            ids.push(entry.id);
        }
        if !ids.is_empty() {
            let _ = redis::cmd("XDEL").arg(&key).arg(&ids).query_async::<()>(&mut conn).await;
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
