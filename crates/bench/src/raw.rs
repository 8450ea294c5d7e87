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

pub(crate) fn io(e: impl std::fmt::Display) -> Error {
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
    /// operation moves between packs (see [`crate::raw_redis::floor`]).
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
