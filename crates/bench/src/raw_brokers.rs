//! Plain NATS and RabbitMQ clients moving a stream, the raw link the NATS
//! and RabbitMQ transports' streams are compared with in the same run. They
//! use what the transports use, with nothing of Volley on top:
//! - NATS: a JetStream memory stream with work-queue retention, publishes
//!   awaited for their acknowledgement, a pull consumer acknowledging each
//!   message (as `transport/nats.rs`);
//! - RabbitMQ: publisher confirms over several channels, a consumer without
//!   acknowledgements (as `transport/rabbitmq.rs`).
//!
//! Sender and receiver have a connection each, as two packs would. Each
//! message of `size` bytes is cut into `chunk`-byte broker messages, and the
//! next message is published once the last one's acknowledgements came back
//! (as a pack's send completes).

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;

use crate::{Error, Result};

fn io(e: impl std::fmt::Display) -> Error {
    Error::Baseline(e.to_string())
}

/// The receiver has this long for everything after the last publish.
const DRAIN: Duration = Duration::from_secs(60);

fn nonce() -> String {
    format!("{}{:08x}", std::process::id(), rand::random::<u32>())
}

fn mib_per_s(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / took.as_secs_f64() / (1 << 20) as f64
}

/// Pieces of `chunk` bytes (the last one shorter) of one message.
fn pieces(message: &Bytes, chunk: usize) -> Vec<Bytes> {
    (0..message.len()).step_by(chunk.max(1)).map(|at| message.slice(at..(at + chunk).min(message.len()))).collect()
}

/// MiB/s of `count` messages of `size` bytes through JetStream.
pub(crate) async fn nats_stream(url: &str, size: usize, chunk: usize, count: usize) -> Result<f64> {
    use async_nats::jetstream::{self, consumer, stream};
    let sender = jetstream::new(async_nats::connect(url).await.map_err(io)?);
    let receiver = jetstream::new(async_nats::connect(url).await.map_err(io)?);
    let tag = nonce();
    let (name, subject) = (format!("VOLLEYRAW_{tag}"), format!("volley.rawbench.{tag}"));
    let config = stream::Config {
        name: name.clone(),
        subjects: vec![subject.clone()],
        storage: stream::StorageType::Memory,
        retention: stream::RetentionPolicy::WorkQueue,
        max_age: Duration::from_secs(300),
        ..Default::default()
    };
    let created = receiver.create_stream(config).await.map_err(io)?;
    let measured = async {
        let consumer = created
            .create_consumer(consumer::pull::Config { ack_policy: consumer::AckPolicy::Explicit, ..Default::default() })
            .await
            .map_err(io)?;
        // The transport's pull window (the client's default lets the server cut it off).
        let mut messages = consumer
            .stream()
            .heartbeat(Duration::from_secs(15))
            .max_bytes_per_batch(volley_comm::NATS_PULL_BYTES)
            .messages()
            .await
            .map_err(io)?;
        let total = size * count;
        let receiving = tokio::spawn(async move {
            let mut got = 0;
            while got < total {
                let m = messages.next().await.ok_or_else(|| io("the consumer ended"))?.map_err(io)?;
                got += m.payload.len();
                m.ack().await.map_err(io)?;
            }
            Ok::<_, Error>(())
        });
        let message = Bytes::from(vec![1u8; size]);
        let start = Instant::now();
        for _ in 0..count {
            let mut acks = Vec::new();
            for piece in pieces(&message, chunk) {
                acks.push(sender.publish(subject.clone(), piece).await.map_err(io)?.into_future());
            }
            for ack in acks {
                ack.await.map_err(io)?;
            }
        }
        tokio::time::timeout(DRAIN, receiving)
            .await
            .map_err(|_| io("JetStream did not deliver in time"))?
            .map_err(io)??;
        Ok(mib_per_s(total, start.elapsed()))
    };
    let result = measured.await;
    let _ = receiver.delete_stream(&name).await;
    result
}

/// MiB/s of `count` messages of `size` bytes through one RabbitMQ queue.
pub(crate) async fn rabbitmq_stream(
    url: &str,
    size: usize,
    chunk: usize,
    channels: usize,
    count: usize,
) -> Result<f64> {
    use lapin::options::{BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    use lapin::{BasicProperties, Connection, ConnectionProperties};
    let sender = Connection::connect(url, ConnectionProperties::default()).await.map_err(io)?;
    let receiver = Connection::connect(url, ConnectionProperties::default()).await.map_err(io)?;
    let queue = format!("rawbench.{}", nonce());
    let consuming = receiver.create_channel().await.map_err(io)?;
    let temp = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
    consuming.queue_declare(queue.as_str().into(), temp, FieldTable::default()).await.map_err(io)?;
    let no_ack = BasicConsumeOptions { no_ack: true, ..Default::default() };
    let mut deliveries = consuming
        .basic_consume(queue.as_str().into(), "raw".into(), no_ack, FieldTable::default())
        .await
        .map_err(io)?;
    let mut publishers = Vec::new();
    for _ in 0..channels.max(1) {
        let ch = sender.create_channel().await.map_err(io)?;
        ch.confirm_select(ConfirmSelectOptions::default()).await.map_err(io)?;
        publishers.push(ch);
    }
    let total = size * count;
    let receiving = tokio::spawn(async move {
        let mut got = 0;
        while got < total {
            got += deliveries.next().await.ok_or_else(|| io("the consumer ended"))?.map_err(io)?.data.len();
        }
        Ok::<_, Error>(())
    });
    let message = Bytes::from(vec![1u8; size]);
    let start = Instant::now();
    for _ in 0..count {
        let publishes = pieces(&message, chunk).into_iter().enumerate().map(|(i, piece)| {
            let (channel, queue) = (&publishers[i % publishers.len()], &queue);
            async move {
                let opts = BasicPublishOptions::default();
                let confirm = channel
                    .basic_publish("".into(), queue.as_str().into(), opts, &piece, BasicProperties::default())
                    .await
                    .map_err(io)?;
                confirm.await.map_err(io).map(drop)
            }
        });
        futures::future::try_join_all(publishes).await?;
    }
    tokio::time::timeout(DRAIN, receiving).await.map_err(|_| io("RabbitMQ did not deliver in time"))?.map_err(io)??;
    let took = start.elapsed();
    let _ = sender.close(200, "bye".into()).await;
    let _ = receiver.close(200, "bye".into()).await;
    Ok(mib_per_s(total, took))
}
