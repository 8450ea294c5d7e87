//! Plain Redis clients (the redis crate, nothing of Volley on top), the raw
//! links the Redis transport's two modes are compared with in the same run,
//! each using the commands its mode uses: lists (RPUSH, BLPOP) for `redis`;
//! streams for `redis-streams` (XADD, XREADGROUP in a consumer group without
//! acknowledgements, XDEL of what was read, as `transport/redis` does).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use redis::streams::StreamReadReply;

use crate::Result;
use crate::raw::{Raw, io};
use crate::stats::Percentiles;

/// Which Redis structure carries the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Lists,
    Streams,
}

impl Via {
    /// The transport mode this is the raw link of.
    pub fn of_transport(transport: &str) -> Via {
        if transport == "redis-streams" { Via::Streams } else { Via::Lists }
    }

    fn commands(self) -> &'static str {
        match self {
            Via::Lists => "RPUSH/BLPOP",
            Via::Streams => "XADD/XREADGROUP",
        }
    }
}

/// The stream entries' one field (the transport's is named the same way).
const FIELD: &str = "d";
const GROUP: &str = "raw";
/// How long a reader blocks before it looks again whether it is done.
const READ_BLOCK_MS: u64 = 100;
/// The longest a raw measurement may wait for a value before it fails.
const STALL: Duration = Duration::from_secs(30);

/// Ping-pong of `size`-byte values through Redis, nothing else.
///
/// From 64 KiB up it also measures a stream: `iters` messages of `size`
/// bytes cut into `chunk`-byte values, moved by plain clients over
/// `connections` connections each way.
pub fn link(url: &str, via: Via, size: usize, iters: usize, chunk: usize, connections: usize) -> Result<Raw> {
    let client = redis::Client::open(url).map_err(io)?;
    let mib_per_s = match size >= 64 << 10 {
        true => {
            let took = flows(&client, via, 1, size, chunk.max(1), iters, connections)?;
            Some((size * iters) as f64 / took.as_secs_f64() / (1 << 20) as f64)
        }
        false => None,
    };
    let keys = Keys::new(2);
    let (ping, pong) = (keys.0[0].clone(), keys.0[1].clone());
    let mut a = client.get_connection().map_err(io)?;
    let mut b = client.get_connection().map_err(io)?;
    if via == Via::Streams {
        create_group(&mut a, &ping)?;
        create_group(&mut a, &pong)?;
    }
    let (ping2, pong2) = (ping.clone(), pong.clone());
    let echo = thread::spawn(move || -> Result<()> {
        for _ in 0..iters {
            let v = take_one(&mut b, via, &ping2)?;
            push(&mut b, via, &pong2, &v)?;
        }
        Ok(())
    });
    let msg = vec![1u8; size];
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        push(&mut a, via, &ping, &msg)?;
        take_one(&mut a, via, &pong)?;
        samples.push(start.elapsed() / 2);
    }
    echo.join().map_err(|_| io("echo thread panicked"))??;
    keys.delete(&mut a)?;
    Ok(Raw {
        link: format!("raw Redis {}", via.commands()),
        one_way: Percentiles::of(&samples),
        mib_per_s,
        floor: false,
    })
}

/// The raw floor of an operation that moves `flows` flows of `bytes` each
/// between packs at once (all-to-all: one per ordered pack pair; broadcast:
/// one per other pack): the time plain clients take to move them through
/// Redis with the transport's chunk and connections, `iters` times.
pub fn floor(
    url: &str,
    via: Via,
    (count, bytes): (usize, usize),
    iters: usize,
    chunk: usize,
    connections: usize,
) -> Result<Raw> {
    let client = redis::Client::open(url).map_err(io)?;
    let samples = (0..iters.clamp(3, 10))
        .map(|_| flows(&client, via, count, bytes, chunk.max(1), 1, connections))
        .collect::<Result<Vec<_>>>()?;
    Ok(Raw {
        link: format!("raw Redis {} floor: {count} concurrent flow(s) of {bytes} bytes", via.commands()),
        one_way: Percentiles::of(&samples),
        mib_per_s: None,
        floor: true,
    })
}

/// How long `count` concurrent flows take, each `messages` messages of
/// `size` bytes through its own list or stream: per flow, `connections`
/// pushers add their share of each message's `chunk`-byte values in one
/// pipeline each, and `connections` readers take them (lists: each its
/// share, one BLPOP at a time; streams: as the group hands them out, up to
/// 64 a read). No framing, no reassembly, no order.
fn flows(
    client: &redis::Client,
    via: Via,
    count: usize,
    size: usize,
    chunk: usize,
    messages: usize,
    connections: usize,
) -> Result<Duration> {
    let connections = connections.max(1);
    let values = size.div_ceil(chunk) * messages;
    let ready = Arc::new(std::sync::Barrier::new(2 * connections * count + 1));
    let share = |i: usize, total: usize| total / connections + usize::from(i < total % connections);
    let data = Arc::new(vec![1u8; size]);
    let keys = Keys::new(count);
    let mut control = client.get_connection().map_err(io)?;
    let (mut readers, mut pushers) = (Vec::new(), Vec::new());
    for key in &keys.0 {
        if via == Via::Streams {
            create_group(&mut control, key)?;
        }
        // (Streams: the flow's readers count together what the group gave them.)
        let taken = Arc::new(AtomicUsize::new(0));
        for i in 0..connections {
            let (key_r, ready_r, taken) = (key.clone(), ready.clone(), taken.clone());
            let mut conn = client.get_connection().map_err(io)?;
            let mine = share(i, values);
            readers.push(thread::spawn(move || -> Result<Instant> {
                ready_r.wait();
                let mut last = Instant::now();
                match via {
                    Via::Lists => {
                        for _ in 0..mine {
                            take_one(&mut conn, via, &key_r)?;
                        }
                        last = Instant::now();
                    }
                    Via::Streams => {
                        while taken.load(Ordering::Acquire) < values {
                            let got = read_group(&mut conn, &key_r, i)?;
                            if !got.is_empty() {
                                taken.fetch_add(got.len(), Ordering::AcqRel);
                                last = Instant::now();
                            } else if last.elapsed() > STALL {
                                return Err(io(format!("no value through {key_r} for {STALL:?}")));
                            }
                        }
                    }
                }
                Ok(last)
            }));
            let (key, ready, data) = (key.clone(), ready.clone(), data.clone());
            let mut conn = client.get_connection().map_err(io)?;
            pushers.push(thread::spawn(move || -> Result<()> {
                ready.wait();
                let parts: Vec<&[u8]> = data.chunks(chunk).skip(i).step_by(connections).collect();
                if parts.is_empty() {
                    return Ok(()); // fewer values than connections
                }
                for _ in 0..messages {
                    let mut pipe = redis::pipe();
                    for part in &parts {
                        match via {
                            Via::Lists => pipe.cmd("RPUSH").arg(&key).arg(*part).ignore(),
                            Via::Streams => pipe.cmd("XADD").arg(&key).arg("*").arg(FIELD).arg(*part).ignore(),
                        };
                    }
                    pipe.query::<()>(&mut conn).map_err(io)?;
                }
                Ok(())
            }));
        }
    }
    ready.wait();
    let start = Instant::now();
    for p in pushers {
        p.join().map_err(|_| io("push thread panicked"))??;
    }
    let mut end = start;
    for r in readers {
        end = end.max(r.join().map_err(|_| io("read thread panicked"))??);
    }
    keys.delete(&mut control)?;
    Ok(end - start)
}

/// Keys of this measurement's own, named so that no two runs share one.
struct Keys(Vec<String>);

impl Keys {
    fn new(count: usize) -> Keys {
        let nonce: u64 = rand::random();
        Keys((0..count).map(|k| format!("volley:rawbench{nonce:016x}:{k}")).collect())
    }

    fn delete(&self, conn: &mut redis::Connection) -> Result<()> {
        redis::cmd("DEL").arg(&self.0).query::<()>(conn).map_err(io)
    }
}

fn create_group(conn: &mut redis::Connection, key: &str) -> Result<()> {
    redis::cmd("XGROUP").arg("CREATE").arg(key).arg(GROUP).arg("0").arg("MKSTREAM").query::<()>(conn).map_err(io)
}

fn push(conn: &mut redis::Connection, via: Via, key: &str, value: &[u8]) -> Result<()> {
    match via {
        Via::Lists => redis::cmd("RPUSH").arg(key).arg(value).query::<()>(conn),
        Via::Streams => redis::cmd("XADD").arg(key).arg("*").arg(FIELD).arg(value).query::<()>(conn),
    }
    .map_err(io)
}

/// One value from `key`, waiting at most [`STALL`] for it.
fn take_one(conn: &mut redis::Connection, via: Via, key: &str) -> Result<Vec<u8>> {
    match via {
        Via::Lists => {
            let popped: Option<(String, Vec<u8>)> =
                redis::cmd("BLPOP").arg(key).arg(STALL.as_secs_f64()).query(conn).map_err(io)?;
            popped.map(|(_, v)| v).ok_or_else(|| io(format!("no value through {key} for {STALL:?}")))
        }
        Via::Streams => {
            let waited = Instant::now();
            loop {
                if let Some(v) = read_group(conn, key, 0)?.into_iter().next() {
                    return Ok(v);
                }
                if waited.elapsed() > STALL {
                    return Err(io(format!("no value through {key} for {STALL:?}")));
                }
            }
        }
    }
}

/// What the group hands consumer `consumer` of `key` (up to 64 values, after
/// blocking at most [`READ_BLOCK_MS`]), deleted from the stream once read.
fn read_group(conn: &mut redis::Connection, key: &str, consumer: usize) -> Result<Vec<Vec<u8>>> {
    let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg(format!("c{consumer}"))
        .arg("COUNT")
        .arg(64)
        .arg("BLOCK")
        .arg(READ_BLOCK_MS)
        .arg("NOACK")
        .arg("STREAMS")
        .arg(key)
        .arg(">")
        .query(conn)
        .map_err(io)?;
    let entries: Vec<_> = reply.map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect()).unwrap_or_default();
    let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
    let mut values = Vec::with_capacity(entries.len());
    for mut entry in entries {
        match entry.map.remove(FIELD) {
            Some(redis::Value::BulkString(v)) => values.push(v),
            _ => return Err(io(format!("entry {} of {key} has no field {FIELD}", entry.id))),
        }
    }
    if !ids.is_empty() {
        redis::cmd("XDEL").arg(key).arg(&ids).query::<()>(conn).map_err(io)?;
    }
    Ok(values)
}
