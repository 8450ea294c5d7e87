//! Receiving from Redis on plain threads.
//!
//! Each receiving connection has its own OS thread blocked in BLPOP (or
//! XREADGROUP). When a packet arrives the kernel wakes that thread directly,
//! and it hands the packet to the pack's sink at once. Through an async
//! connection the same packet would wake the runtime's I/O thread, pass
//! through the connection's driver task and then the receive task before
//! reaching the worker: two more thread hand-offs, each tens of microseconds
//! when a core is idle, on a path whose whole budget is ~60 µs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use redis::streams::StreamReadReply;
use redis::{Client, Connection};

use super::{FIELD, GROUP, err};
use crate::error::{Error, Result};
use crate::options::RedisMode;
use crate::transport::SinkRef;
use crate::wire::split_packet;

/// How long a blocking pop waits before the thread checks that it should go on.
const POP_WAIT: Duration = Duration::from_secs(1);

/// The receiving threads of one pack; they stop within [`POP_WAIT`] of
/// [`Receivers::stop`] (or of the pack going away).
pub(super) struct Receivers {
    stop: Arc<AtomicBool>,
}

impl Receivers {
    /// Connects `n` receiving connections to `key` and starts their threads.
    pub async fn start(
        client: &Client,
        key: &str,
        mode: RedisMode,
        n: usize,
        sink: SinkRef,
        connect_timeout: Duration,
    ) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let receivers = Receivers { stop: stop.clone() };
        let mut started = Vec::with_capacity(n);
        for consumer in 0..n {
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<()>>();
            let (client, key, sink, stop) = (client.clone(), key.to_string(), sink.clone(), stop.clone());
            std::thread::Builder::new()
                .name("volley-redis-recv".into())
                .spawn(move || {
                    let conn = match connect(&client, connect_timeout) {
                        Ok(conn) => conn,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    let receiver = Receiver { conn, key, sink, stop };
                    match mode {
                        RedisMode::Lists => receiver.pop_loop(),
                        RedisMode::Streams => receiver.read_group_loop(consumer),
                    }
                })
                .map_err(|e| Error::transport("redis", format!("cannot start a receiving thread: {e}")))?;
            started.push(ready_rx);
        }
        for ready in started {
            // A thread that ended without a word failed to connect in some other way.
            ready.await.unwrap_or_else(|_| Err(err("a receiving thread ended while connecting")))?;
        }
        Ok(receivers)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }
}

impl Drop for Receivers {
    fn drop(&mut self) {
        self.stop();
    }
}

fn connect(client: &Client, timeout: Duration) -> Result<Connection> {
    let conn = client.get_connection_with_timeout(timeout).map_err(err)?;
    // A server that stops answering is noticed: a pop returns within POP_WAIT when it is alive.
    conn.set_read_timeout(Some(POP_WAIT + timeout.max(Duration::from_secs(2)))).map_err(err)?;
    Ok(conn)
}

struct Receiver {
    conn: Connection,
    key: String,
    sink: SinkRef,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    /// Told to stop, or the pack it delivers to is gone.
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire) || self.sink.strong_count() == 0
    }

    fn pop_loop(mut self) {
        while !self.stopped() {
            let popped: redis::RedisResult<Option<(String, Vec<u8>)>> =
                redis::cmd("BLPOP").arg(&self.key).arg(POP_WAIT.as_secs_f64()).query(&mut self.conn);
            match popped {
                Ok(None) => {}
                Ok(Some((_, value))) => self.deliver(value),
                Err(e) => return self.fail(format!("Redis failed while receiving from {}: {e}", self.key)),
            }
        }
    }

    /// Reads packets from the stream through the pack's consumer group and
    /// deletes them once delivered (NOACK: no pending list to keep).
    fn read_group_loop(mut self, consumer: usize) {
        while !self.stopped() {
            let read: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(format!("c{consumer}"))
                .arg("COUNT")
                .arg(64)
                .arg("BLOCK")
                .arg(POP_WAIT.as_millis() as u64)
                .arg("NOACK")
                .arg("STREAMS")
                .arg(&self.key)
                .arg(">")
                .query(&mut self.conn);
            let entries = match read {
                Ok(reply) => {
                    reply.map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect::<Vec<_>>()).unwrap_or_default()
                }
                Err(e) => return self.fail(format!("Redis failed while reading stream {}: {e}", self.key)),
            };
            let mut ids = Vec::with_capacity(entries.len());
            for mut entry in entries {
                match entry.map.remove(FIELD) {
                    Some(redis::Value::BulkString(value)) => self.deliver(value),
                    _ => self.fail(format!("entry {} of {} carries no packet", entry.id, self.key)),
                }
                ids.push(entry.id);
            }
            if !ids.is_empty() {
                let _ = redis::cmd("XDEL").arg(&self.key).arg(&ids).query::<()>(&mut self.conn);
            }
        }
    }

    fn deliver(&self, value: Vec<u8>) {
        let Some(target) = self.sink.upgrade() else { return };
        match split_packet(Bytes::from(value), target.limits()) {
            Ok((header, body)) => target.packet(header, body),
            Err(e) => target.broken(format!("a malformed packet in {}: {e}", self.key)),
        }
    }

    /// The connection is gone: nothing can be trusted to arrive any more.
    fn fail(&self, reason: String) {
        if !self.stopped()
            && let Some(target) = self.sink.upgrade()
        {
            target.broken(reason);
        }
    }
}
