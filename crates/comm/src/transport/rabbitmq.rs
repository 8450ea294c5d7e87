//! Packs talk through RabbitMQ (AMQP 0-9-1): one queue per receiving pack
//! (`volley.{burst}.{pack}`), one message per packet, published to the default
//! exchange with publisher confirms, so a lost packet is an error, not a hang.
//! The packet's header rides in a message header and its body is the payload.
//!
//! A pack declares its own queue, then waits until every other pack's queue
//! exists, so nothing is published into the void. Queues expire when unused
//! (a safety net for packs that die) and each pack deletes its own at close.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use lapin::Confirmation;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

use super::{SinkRef, Tasks, wait_for_peers};
use crate::error::{Error, Result};
use crate::options::{PackOptions, RabbitMqOptions};
use crate::wire::{Header, Limits, OutPacket, join_packet};

fn err(e: impl std::fmt::Display) -> Error {
    Error::transport("rabbitmq", e)
}

/// The message header that carries a packet's Volley header.
const HEADER_FIELD: &str = "volley-packet";

/// The packet a delivery carries: its header field and its payload.
fn packet_of(d: lapin::message::Delivery, limits: &Limits) -> Result<(Header, Bytes)> {
    let field = d.properties.headers().as_ref().and_then(|h| h.inner().get(HEADER_FIELD));
    let Some(AMQPValue::LongString(header)) = field else {
        return Err(Error::protocol("a message without a Volley packet header"));
    };
    join_packet(header.as_bytes(), Bytes::from(d.data), limits)
}

pub(crate) fn queue_name(burst: &str, pack: usize) -> String {
    format!("volley.{burst}.{pack}")
}

pub(crate) struct RabbitMqTransport {
    connection: Connection,
    publishers: Vec<Channel>,
    turn: AtomicUsize,
    queues: Vec<String>,
    me: usize,
    tasks: Tasks,
}

impl RabbitMqTransport {
    pub async fn connect(opts: &PackOptions, rabbit: &RabbitMqOptions, sink: SinkRef) -> Result<Self> {
        let connect = Connection::connect(&rabbit.url, ConnectionProperties::default());
        let connection = tokio::time::timeout(opts.connect_timeout, connect)
            .await
            .map_err(|_| Error::timeout(opts.connect_timeout, format!("connecting to RabbitMQ at {}", rabbit.url)))?
            .map_err(|e| err(format!("cannot connect to {}: {e}; is RabbitMQ running there?", rabbit.url)))?;
        let queues: Vec<String> = (0..opts.layout.packs()).map(|p| queue_name(&opts.burst, p)).collect();
        let me = opts.pack;

        let consumer_channel = connection.create_channel().await.map_err(err)?;
        let mut args = FieldTable::default();
        let expiry = opts.op_timeout * 2 + opts.connect_timeout;
        args.insert("x-expires".into(), AMQPValue::LongLongInt(expiry.as_millis() as i64));
        consumer_channel
            .queue_declare(queues[me].as_str().into(), QueueDeclareOptions::default(), args)
            .await
            .map_err(|e| err(format!("declaring {}: {e}", queues[me])))?;
        let consumer = consumer_channel
            .basic_consume(
                queues[me].as_str().into(),
                format!("pack-{me}").as_str().into(),
                BasicConsumeOptions { no_ack: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .map_err(err)?;
        let tasks = Tasks::default();
        let queue = queues[me].clone();
        tasks.spawn(async move {
            let _channel = consumer_channel; // keeps the consumer's channel open
            let mut consumer = consumer;
            while let Some(delivery) = consumer.next().await {
                let Some(target) = sink.upgrade() else { return };
                match delivery {
                    Ok(d) => match packet_of(d, target.limits()) {
                        Ok((header, body)) => target.packet(header, body),
                        Err(e) => target.broken(format!("a malformed packet in {queue}: {e}")),
                    },
                    Err(e) => {
                        target.broken(format!("RabbitMQ failed while receiving from {queue}: {e}"));
                        return;
                    }
                }
            }
        });

        let mut publishers = Vec::new();
        for _ in 0..rabbit.channels.max(1) {
            let ch = connection.create_channel().await.map_err(err)?;
            ch.confirm_select(ConfirmSelectOptions::default()).await.map_err(err)?;
            publishers.push(ch);
        }
        // A passive declare fails (and closes its channel) while the queue does not exist.
        wait_for_peers(opts.layout.packs(), me, opts.connect_timeout, "queue", |pack| {
            let (connection, queue) = (&connection, &queues[pack]);
            async move {
                let channel = connection.create_channel().await.map_err(err)?;
                let passive = QueueDeclareOptions { passive: true, ..Default::default() };
                let exists = channel.queue_declare(queue.as_str().into(), passive, FieldTable::default()).await.is_ok();
                if exists {
                    let _ = channel.close(200, "ok".into()).await;
                }
                Ok(exists)
            }
        })
        .await?;
        Ok(RabbitMqTransport { connection, publishers, turn: AtomicUsize::new(0), queues, me, tasks })
    }

    pub async fn send(&self, dst: usize, packets: Vec<OutPacket>) -> Result<()> {
        let queue = self.queues.get(dst).ok_or_else(|| Error::invalid(format!("no pack {dst}")))?;
        let first = self.turn.fetch_add(packets.len(), Ordering::Relaxed);
        let publishes = packets.iter().enumerate().map(|(i, p)| {
            let channel = &self.publishers[(first + i) % self.publishers.len()];
            // The header travels as a message header, so the body is the
            // packet's own slice, not a copy made to put the two together.
            let body = p.body_contiguous();
            let mut headers = FieldTable::default();
            headers.insert(HEADER_FIELD.into(), AMQPValue::LongString(p.header.encode().to_vec().into()));
            let properties = BasicProperties::default().with_headers(headers);
            async move {
                let confirm = channel
                    .basic_publish("".into(), queue.as_str().into(), BasicPublishOptions::default(), &body, properties)
                    .await
                    .map_err(|e| err(format!("publishing to {queue}: {e}")))?;
                match confirm.await.map_err(err)? {
                    Confirmation::Nack(_) => Err(err(format!("RabbitMQ refused a packet for {queue}"))),
                    _ => Ok(()),
                }
            }
        });
        futures::future::try_join_all(publishes).await?;
        Ok(())
    }

    pub async fn shutdown(&self) -> Result<()> {
        self.tasks.abort_all();
        let channel = self.connection.create_channel().await.map_err(err)?;
        let deleted = channel
            .queue_delete(self.queues[self.me].as_str().into(), QueueDeleteOptions::default())
            .await
            .map(drop)
            .map_err(err);
        let _ = self.connection.close(200, "bye".into()).await;
        deleted
    }
}

/// Deletes the queues a burst of `packs` packs may have left behind (for a
/// platform cleaning up after packs that died).
pub async fn purge(url: &str, burst: &str, packs: usize) -> Result<()> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await.map_err(err)?;
    let channel = connection.create_channel().await.map_err(err)?;
    for pack in 0..packs {
        let queue = queue_name(burst, pack);
        channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await.map_err(err)?;
    }
    let _ = connection.close(200, "bye".into()).await;
    Ok(())
}
