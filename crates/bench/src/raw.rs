//! The raw links Volley's transports are compared with, measured in the same
//! run: plain sockets and plain Redis commands with nothing of Volley on top.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::stats::Percentiles;
use crate::{Error, Result};

fn io(e: impl std::fmt::Display) -> Error {
    Error::Baseline(e.to_string())
}

/// One-way latency of `size`-byte ping-pongs (half the round trip).
fn pingpong<S: Read + Write + Send + 'static>(
    mut client: S,
    mut server: S,
    size: usize,
    iters: usize,
) -> Result<Percentiles> {
    let echo = thread::spawn(move || -> std::io::Result<()> {
        let mut buf = vec![0u8; size.max(1)];
        for _ in 0..iters {
            server.read_exact(&mut buf)?;
            server.write_all(&buf)?;
        }
        Ok(())
    });
    let msg = vec![1u8; size.max(1)];
    let mut back = vec![0u8; size.max(1)];
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        client.write_all(&msg).map_err(io)?;
        client.read_exact(&mut back).map_err(io)?;
        samples.push(start.elapsed() / 2);
    }
    echo.join().map_err(|_| io("echo thread panicked"))?.map_err(io)?;
    Ok(Percentiles::of(&samples))
}

/// Throughput in MiB/s of `count` messages of `size` bytes over one stream.
/// The receiver reads each message whole into one message-sized buffer (reused,
/// so no page faults), as any receiver that delivers messages must.
fn stream<S: Read + Write + Send + 'static>(mut client: S, mut server: S, size: usize, count: usize) -> Result<f64> {
    let sink = thread::spawn(move || -> std::io::Result<()> {
        let mut buf = vec![1u8; size.max(1)];
        for _ in 0..count {
            server.read_exact(&mut buf[..size])?;
        }
        server.write_all(&[1])
    });
    let msg = vec![1u8; size];
    let start = Instant::now();
    for _ in 0..count {
        client.write_all(&msg).map_err(io)?;
    }
    client.read_exact(&mut [0u8]).map_err(io)?;
    let secs = start.elapsed().as_secs_f64();
    sink.join().map_err(|_| io("sink thread panicked"))?.map_err(io)?;
    Ok((size * count) as f64 / secs / (1 << 20) as f64)
}

fn tcp_pair() -> Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io)?;
    let client = TcpStream::connect(listener.local_addr().map_err(io)?).map_err(io)?;
    let (server, _) = listener.accept().map_err(io)?;
    client.set_nodelay(true).map_err(io)?;
    server.set_nodelay(true).map_err(io)?;
    Ok((client, server))
}

/// Raw link figures for a transport: one-way latency and stream throughput.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Raw {
    pub link: String,
    /// Half a round trip; for a floor, the whole operation's time.
    pub one_way: Percentiles,
    pub mib_per_s: Option<f64>,
    /// `one_way` is the least time the raw link takes to move what the
    /// operation moves between packs (see [`redis_floor`]).
    pub floor: bool,
}

pub fn tcp(size: usize, iters: usize) -> Result<Raw> {
    let (c, s) = tcp_pair()?;
    let one_way = pingpong(c, s, size, iters)?;
    let (c, s) = tcp_pair()?;
    let mib_per_s = Some(stream(c, s, size, iters.max(4))?);
    Ok(Raw { link: "raw loopback TCP".into(), one_way, mib_per_s, floor: false })
}

pub fn uds(size: usize, iters: usize) -> Result<Raw> {
    let (c, s) = UnixStream::pair().map_err(io)?;
    let one_way = pingpong(c, s, size, iters)?;
    let (c, s) = UnixStream::pair().map_err(io)?;
    let mib_per_s = Some(stream(c, s, size, iters.max(4))?);
    Ok(Raw { link: "raw Unix socket".into(), one_way, mib_per_s, floor: false })
}

/// Ping-pong through two Redis lists (RPUSH then BLPOP), nothing else.
///
/// From 64 KiB up it also measures a stream: `iters` messages of `size`
/// bytes cut into `chunk`-byte values, moved by plain clients over
/// `connections` connections each way.
pub fn redis(url: &str, size: usize, iters: usize, chunk: usize, connections: usize) -> Result<Raw> {
    let client = redis::Client::open(url).map_err(io)?;
    let mib_per_s = match size >= 64 << 10 {
        true => Some(redis_stream(&client, size, chunk.max(1), iters, connections)?),
        false => None,
    };
    let nonce: u64 = std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
    let (ping, pong) = (format!("volley:rawbench{nonce}:ping"), format!("volley:rawbench{nonce}:pong"));
    let mut a = client.get_connection().map_err(io)?;
    let mut b = client.get_connection().map_err(io)?;
    let (ping2, pong2) = (ping.clone(), pong.clone());
    let echo = thread::spawn(move || -> redis::RedisResult<()> {
        for _ in 0..iters {
            let (_, v): (String, Vec<u8>) = redis::cmd("BLPOP").arg(&ping2).arg(5.0).query(&mut b)?;
            redis::cmd("RPUSH").arg(&pong2).arg(v).query::<()>(&mut b)?;
        }
        Ok(())
    });
    let msg = Bytes::from(vec![1u8; size]);
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        redis::cmd("RPUSH").arg(&ping).arg(msg.as_ref()).query::<()>(&mut a).map_err(io)?;
        let _: (String, Vec<u8>) = redis::cmd("BLPOP").arg(&pong).arg(5.0).query(&mut a).map_err(io)?;
        samples.push(start.elapsed() / 2);
    }
    echo.join().map_err(|_| io("echo thread panicked"))?.map_err(io)?;
    let _: () = redis::cmd("DEL").arg(&ping).arg(&pong).query(&mut a).map_err(io)?;
    Ok(Raw { link: "raw Redis RPUSH/BLPOP".into(), one_way: Percentiles::of(&samples), mib_per_s, floor: false })
}

/// Throughput in MiB/s of `count` messages of `size` bytes through one Redis
/// list, as plain clients move them with as many connections as the
/// transport uses (see [`redis_flows`]).
fn redis_stream(client: &redis::Client, size: usize, chunk: usize, count: usize, connections: usize) -> Result<f64> {
    let took = redis_flows(client, 1, size, chunk, count, connections)?;
    Ok((size * count) as f64 / took.as_secs_f64() / (1 << 20) as f64)
}

/// The raw floor of an operation that moves `flows` flows of `bytes` each
/// between packs at once (all-to-all: one per ordered pack pair; broadcast:
/// one per other pack): the time plain clients take to move them through
/// Redis with the transport's chunk and connections, `iters` times.
pub fn redis_floor(
    url: &str,
    flows: usize,
    bytes: usize,
    iters: usize,
    chunk: usize,
    connections: usize,
) -> Result<Raw> {
    let client = redis::Client::open(url).map_err(io)?;
    let samples = (0..iters.clamp(3, 10))
        .map(|_| redis_flows(&client, flows, bytes, chunk.max(1), 1, connections))
        .collect::<Result<Vec<_>>>()?;
    Ok(Raw {
        link: format!("raw Redis floor: {flows} concurrent flow(s) of {bytes} bytes"),
        one_way: Percentiles::of(&samples),
        mib_per_s: None,
        floor: true,
    })
}

/// How long `flows` concurrent flows take, each `count` messages of `size`
/// bytes through its own Redis list: per flow, `connections` pushers RPUSH
/// their share of each message's `chunk`-byte values in one pipeline each,
/// and `connections` poppers BLPOP their share one by one. No framing, no
/// reassembly, no order.
fn redis_flows(
    client: &redis::Client,
    flows: usize,
    size: usize,
    chunk: usize,
    count: usize,
    connections: usize,
) -> Result<Duration> {
    let nonce: u64 = std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
    let connections = connections.max(1);
    let values = size.div_ceil(chunk) * count;
    let ready = std::sync::Arc::new(std::sync::Barrier::new(2 * connections * flows + 1));
    let share = |i: usize, total: usize| total / connections + usize::from(i < total % connections);
    let data = std::sync::Arc::new(vec![1u8; size]);
    let keys: Vec<String> = (0..flows).map(|f| format!("volley:rawbench{nonce}:flow{f}")).collect();
    let (mut poppers, mut pushers) = (Vec::new(), Vec::new());
    for key in &keys {
        for i in 0..connections {
            let (pop_key, pop_ready, mut pop) = (key.clone(), ready.clone(), client.get_connection().map_err(io)?);
            let mine = share(i, values);
            poppers.push(thread::spawn(move || -> redis::RedisResult<Instant> {
                pop_ready.wait();
                for _ in 0..mine {
                    let _: (String, Vec<u8>) = redis::cmd("BLPOP").arg(&pop_key).arg(10.0).query(&mut pop)?;
                }
                Ok(Instant::now())
            }));
            let (key, ready, data) = (key.clone(), ready.clone(), data.clone());
            let mut push = client.get_connection().map_err(io)?;
            pushers.push(thread::spawn(move || -> redis::RedisResult<()> {
                ready.wait();
                let parts: Vec<&[u8]> = data.chunks(chunk).skip(i).step_by(connections).collect();
                if parts.is_empty() {
                    return Ok(()); // fewer values than connections
                }
                for _ in 0..count {
                    let mut pipe = redis::pipe();
                    for part in &parts {
                        pipe.cmd("RPUSH").arg(&key).arg(*part).ignore();
                    }
                    pipe.query::<()>(&mut push)?;
                }
                Ok(())
            }));
        }
    }
    ready.wait();
    let start = Instant::now();
    for p in pushers {
        p.join().map_err(|_| io("push thread panicked"))?.map_err(io)?;
    }
    let mut end = start;
    for p in poppers {
        end = end.max(p.join().map_err(|_| io("pop thread panicked"))?.map_err(io)?);
    }
    let mut conn = client.get_connection().map_err(io)?;
    let _: () = redis::cmd("DEL").arg(&keys).query(&mut conn).map_err(io)?;
    Ok(end - start)
}

/// Two threads handing `Bytes` back and forth over std channels.
pub fn threads(size: usize, iters: usize) -> Result<Raw> {
    let (to_b, from_a) = std::sync::mpsc::channel::<Bytes>();
    let (to_a, from_b) = std::sync::mpsc::channel::<Bytes>();
    let echo = thread::spawn(move || {
        for _ in 0..iters {
            let Ok(m) = from_a.recv_timeout(Duration::from_secs(5)) else { return };
            let _ = to_a.send(m);
        }
    });
    let msg = Bytes::from(vec![1u8; size]);
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        to_b.send(msg.clone()).map_err(io)?;
        from_b.recv_timeout(Duration::from_secs(5)).map_err(io)?;
        samples.push(start.elapsed() / 2);
    }
    echo.join().map_err(|_| io("echo thread panicked"))?;
    Ok(Raw {
        link: "std channel between two threads".into(),
        one_way: Percentiles::of(&samples),
        mib_per_s: None,
        floor: false,
    })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(io)
}

/// Core NATS request/reply through the server (no JetStream): half the round
/// trip, for messages up to the server's maximum payload (a plain request
/// cannot carry more; the transport splits them). From 64 KiB up also a
/// stream through JetStream in `chunk`-byte messages (`raw_brokers.rs`).
pub fn nats(url: &str, size: usize, iters: usize, chunk: usize) -> Result<Option<Raw>> {
    use futures::StreamExt;
    runtime()?.block_on(async {
        let echo_client = async_nats::connect(url).await.map_err(io)?;
        let client = async_nats::connect(url).await.map_err(io)?;
        // The transport's packet header and headroom come out of the payload.
        let chunk = chunk.min(echo_client.server_info().max_payload.saturating_sub(36 + 1024)).max(1);
        let mib_per_s = match size >= 64 << 10 {
            true => Some(crate::raw_brokers::nats_stream(url, size, chunk, iters.max(4)).await?),
            false => None,
        };
        if size > echo_client.server_info().max_payload {
            let link = "raw JetStream publish/pull".into();
            return Ok(mib_per_s.map(|t| Raw {
                link,
                one_way: Percentiles::default(),
                mib_per_s: Some(t),
                floor: false,
            }));
        }
        let subject = format!("volley.rawbench.{}", std::process::id());
        let mut requests = echo_client.subscribe(subject.clone()).await.map_err(io)?;
        echo_client.flush().await.map_err(io)?;
        let echo = tokio::spawn(async move {
            while let Some(m) = requests.next().await {
                if let Some(reply) = m.reply {
                    let _ = echo_client.publish(reply, m.payload).await;
                }
            }
        });
        let msg = Bytes::from(vec![1u8; size]);
        let mut samples = Vec::with_capacity(iters);
        for _ in 0..iters {
            let start = Instant::now();
            client.request(subject.clone(), msg.clone()).await.map_err(io)?;
            samples.push(start.elapsed() / 2);
        }
        echo.abort();
        Ok(Some(Raw {
            link: "raw core NATS request/reply, JetStream stream".into(),
            one_way: Percentiles::of(&samples),
            mib_per_s,
            floor: false,
        }))
    })
}

/// AMQP publish to a queue and consume from another, without confirms: half
/// the round trip. From 64 KiB up also a stream with publisher confirms over
/// `channels` channels in `chunk`-byte messages (`raw_brokers.rs`).
pub fn rabbitmq(url: &str, size: usize, iters: usize, chunk: usize, channels: usize) -> Result<Raw> {
    use futures::StreamExt;
    use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    use lapin::{BasicProperties, Connection, ConnectionProperties};
    runtime()?.block_on(async {
        let mib_per_s = match size >= 64 << 10 {
            true => Some(crate::raw_brokers::rabbitmq_stream(url, size, chunk, channels, iters.max(4)).await?),
            false => None,
        };
        let conn = Connection::connect(url, ConnectionProperties::default()).await.map_err(io)?;
        let (ping, pong) =
            (format!("rawbench.{}.ping", std::process::id()), format!("rawbench.{}.pong", std::process::id()));
        let temp = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
        let mut consumers = Vec::new();
        for q in [&ping, &pong] {
            let ch = conn.create_channel().await.map_err(io)?;
            ch.queue_declare(q.as_str().into(), temp, FieldTable::default()).await.map_err(io)?;
            let opts = BasicConsumeOptions { no_ack: true, ..Default::default() };
            consumers.push((
                ch.clone(),
                ch.basic_consume(q.as_str().into(), "raw".into(), opts, FieldTable::default()).await.map_err(io)?,
            ));
        }
        let (echo_ch, mut echo_in) = consumers.remove(0);
        let (ch, mut replies) = consumers.remove(0);
        let pong2 = pong.clone();
        let echo = tokio::spawn(async move {
            while let Some(Ok(d)) = echo_in.next().await {
                let _ = echo_ch
                    .basic_publish(
                        "".into(),
                        pong2.as_str().into(),
                        BasicPublishOptions::default(),
                        &d.data,
                        BasicProperties::default(),
                    )
                    .await;
            }
        });
        let msg = vec![1u8; size];
        let mut samples = Vec::with_capacity(iters);
        for _ in 0..iters {
            let start = Instant::now();
            ch.basic_publish(
                "".into(),
                ping.as_str().into(),
                BasicPublishOptions::default(),
                &msg,
                BasicProperties::default(),
            )
            .await
            .map_err(io)?;
            replies.next().await.ok_or_else(|| io("consumer ended"))?.map_err(io)?;
            samples.push(start.elapsed() / 2);
        }
        echo.abort();
        let _ = conn.close(200, "bye".into()).await;
        Ok(Raw { link: "raw AMQP publish/consume".into(), one_way: Percentiles::of(&samples), mib_per_s, floor: false })
    })
}
