//! Packs talk through Redis: one list (or, in streams mode, one stream read
//! through a consumer group) per receiving pack (`volley:{burst}:inbox:{pack}`),
//! one element per packet.
//!
//! Senders push packets over several connections at once and receivers pop
//! with several blocking connections, so a large bundle moves as many
//! concurrent chunks; reassembly puts them back in order. Every key carries
//! an expiry as a safety net, and a pack deletes its own list when it closes.

use std::sync::atomic::{AtomicUsize, Ordering};

use redis::Client;
use redis::aio::MultiplexedConnection;

use super::SinkRef;
use crate::error::{Error, Result};
use crate::options::{PackOptions, RedisMode, RedisOptions};
use crate::wire::OutPacket;

mod push;
mod receive;

use push::{Pusher, command_head};
use receive::Receivers;

/// The consumer group of a pack's stream, and the field that holds a packet.
const GROUP: &str = "volley";
const FIELD: &str = "p";

fn inbox_key(burst: &str, pack: usize) -> String {
    format!("volley:{burst}:inbox:{pack}")
}

/// Set by [`purge`]: while it exists, no pack of the burst may connect to push.
/// Outside the burst's own key space, so that deleting that does not lift it.
fn fence_key(burst: &str) -> String {
    format!("volley-purged:{burst}")
}

/// How long a purged burst stays fenced: far longer than any pack of it can live.
const FENCE_SECS: u64 = 24 * 3600;

/// The name of every connection a pack of `burst` pushes on (`CLIENT SETNAME`),
/// so that a purge can find and close them.
fn client_name(burst: &str, pack: usize) -> String {
    format!("volley:{burst}:pack:{pack}") // `purge` matches this prefix
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::transport("redis", e)
}

pub(crate) struct RedisTransport {
    pushers: Vec<Pusher>,
    /// For setup and clean-up calls.
    control: MultiplexedConnection,
    mode: RedisMode,
    turn: AtomicUsize,
    inboxes: Vec<String>,
    me: usize,
    expiry_ms: u64,
    receivers: Receivers,
}

impl RedisTransport {
    pub async fn connect(opts: &PackOptions, redis_opts: &RedisOptions, sink: SinkRef) -> Result<Self> {
        let client = Client::open(redis_opts.url.as_str())
            .map_err(|e| Error::invalid(format!("bad Redis URL {:?}: {e}", redis_opts.url)))?;
        let n = redis_opts.connections.max(1);
        let control_config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(opts.connect_timeout))
            .set_response_timeout(Some(opts.connect_timeout.max(opts.op_timeout)));
        let mut control = client
            .get_multiplexed_async_connection_with_config(&control_config)
            .await
            .map_err(|e| err(format!("cannot connect to {}: {e}; is Redis running there?", redis_opts.url)))?;
        let reply_timeout = opts.connect_timeout.max(opts.op_timeout);
        let admission = push::Admission { name: client_name(&opts.burst, opts.pack), fence: fence_key(&opts.burst) };
        let pushers = futures::future::try_join_all(
            (0..n).map(|_| Pusher::connect(&client, &admission, opts.connect_timeout, reply_timeout)),
        )
        .await?;
        let inboxes: Vec<String> = (0..opts.layout.packs()).map(|p| inbox_key(&opts.burst, p)).collect();
        let own = &inboxes[opts.pack];
        if redis_opts.mode == RedisMode::Streams {
            // Reading from id 0 means packets added before the group existed are not missed.
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(own)
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut control)
                .await;
            if let Err(e) = created
                && e.code() != Some("BUSYGROUP")
            {
                return Err(err(format!("creating the consumer group of {own}: {e}")));
            }
        }
        let receivers = Receivers::start(&client, own, redis_opts.mode, n, sink, opts.connect_timeout).await?;
        let expiry = opts.op_timeout * 2 + opts.connect_timeout;
        Ok(RedisTransport {
            pushers,
            control,
            mode: redis_opts.mode,
            turn: AtomicUsize::new(0),
            inboxes,
            me: opts.pack,
            expiry_ms: expiry.as_millis() as u64,
            receivers,
        })
    }

    pub async fn send(&self, dst: usize, packets: Vec<OutPacket>) -> Result<()> {
        let key = self.inboxes.get(dst).ok_or_else(|| Error::invalid(format!("no pack {dst}")))?;
        // After each packet, the key's expiry is renewed: a list emptied by a
        // pop is deleted, and the next push creates it without one.
        let mut tail = b"\r\n".to_vec();
        redis::cmd("PEXPIRE").arg(key).arg(self.expiry_ms).write_packed_command(&mut tail);
        let first = self.turn.fetch_add(packets.len(), Ordering::Relaxed);
        let pushes = packets.iter().enumerate().map(|(i, p)| {
            let len = crate::wire::HEADER_LEN + p.header.len as usize;
            let head = match self.mode {
                RedisMode::Lists => command_head(&[b"RPUSH", key.as_bytes()], len),
                RedisMode::Streams => command_head(&[b"XADD", key.as_bytes(), b"*", FIELD.as_bytes()], len),
            };
            let pusher = self.pusher_for(first + i);
            let tail = &tail;
            async move { pusher.push(&head, p, tail, 2).await.map_err(|e| err(format!("pushing to {key}: {e}"))) }
        });
        futures::future::try_join_all(pushes).await?;
        Ok(())
    }

    /// The connection for the `turn`-th packet: its own in turn if that one
    /// is free, else any free one, else its own (and wait).
    fn pusher_for(&self, turn: usize) -> &Pusher {
        let n = self.pushers.len();
        (0..n).map(|k| &self.pushers[(turn + k) % n]).find(|p| p.is_free()).unwrap_or(&self.pushers[turn % n])
    }

    /// Stops receiving, deletes this pack's inbox and reports a packet Redis
    /// refused that no later send reported.
    pub async fn shutdown(&self) -> Result<()> {
        self.receivers.stop();
        let settled = futures::future::join_all(self.pushers.iter().map(Pusher::settle)).await;
        let mut conn = self.control.clone();
        redis::cmd("DEL").arg(&self.inboxes[self.me]).query_async::<()>(&mut conn).await.map_err(err)?;
        settled.into_iter().collect()
    }
}

/// Deletes everything a burst may have left in Redis (for a platform cleaning
/// up after packs that died); returns how many keys it deleted.
///
/// The purge is final: pushes still in flight (written by a pack that died,
/// but not yet read by Redis, which happens under load) or sent later (by a
/// pack cut off from the platform but not from Redis) could otherwise create
/// the burst's lists again after they were deleted. So first the burst is
/// fenced (no pack of it may connect to push any more: see `push.rs`), then
/// every connection its packs pushed on is closed, which drops what Redis had
/// not read from them yet, and only then are the keys deleted.
pub async fn purge(url: &str, burst: &str) -> Result<usize> {
    let client = Client::open(url).map_err(|e| Error::invalid(format!("bad Redis URL {url:?}: {e}")))?;
    let mut conn = client.get_multiplexed_async_connection().await.map_err(err)?;
    redis::cmd("SET")
        .arg(fence_key(burst))
        .arg(1)
        .arg("EX")
        .arg(FENCE_SECS)
        .query_async::<()>(&mut conn)
        .await
        .map_err(err)?;
    let clients: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut conn).await.map_err(err)?;
    let prefix = format!("name=volley:{burst}:pack:");
    for line in clients.lines() {
        let mut fields = line.split(' ');
        let id = fields.clone().find_map(|f| f.strip_prefix("id="));
        if let (Some(id), true) = (id, fields.any(|f| f.starts_with(&prefix))) {
            // Gone already is fine: the kill is what we want either way.
            let _ = redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id).query_async::<()>(&mut conn).await;
        }
    }
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
