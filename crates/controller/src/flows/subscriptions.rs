//! Subscriptions: a task per Redis stream, RabbitMQ queue or NATS subject
//! source, on the platform's brokers, that sends what arrives to the engine as
//! events. A message is acknowledged (XACK, basic_ack) only once the engine has
//! logged it, so a controller killed in between gets it again, and the event
//! id (the stream entry's id, the message's `message_id` or a digest of its
//! body) makes the second delivery a duplicate the log drops. NATS core
//! subjects deliver at most once. A broker that fails is retried with backoff;
//! the error is kept in the source (`volley sources list`).

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use sha2::Digest;
use tokio_util::sync::CancellationToken;
use volley_comm::Brokers;
use volley_proto::flow::{CloudEvent, Source};

use super::Engine;

/// Longest pause between attempts to reach a broker.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Starts the subscription of `source` (kept under `key`) until `stop`.
pub(crate) fn start(engine: Engine, key: String, source: Source, brokers: Brokers, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(500);
        loop {
            let run = consume(&engine, &key, &source, &brokers);
            let ended = tokio::select! {
                _ = stop.cancelled() => return,
                ended = run => ended,
            };
            let error = ended.err().unwrap_or_else(|| "the broker closed the subscription".into());
            tracing::warn!(source = %key, "subscription failed, retrying in {backoff:?}: {error}");
            engine.note_source(&key, 0, Some(error));
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    });
}

/// The consumer group a Redis stream source reads through.
fn group(source: &Source) -> String {
    format!("volley-{}-{}", source.namespace, source.id)
}

/// A deleted source leaves nothing on the broker: its Redis consumer group goes.
pub(crate) fn forget(source: Source, brokers: Brokers) {
    let Some(stream) = source.redis_stream.clone() else { return };
    tokio::spawn(async move {
        let destroy = async {
            let client = redis::Client::open(brokers.redis_url.as_str())?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("XGROUP").arg("DESTROY").arg(&stream).arg(group(&source)).query_async::<i64>(&mut conn).await
        };
        match tokio::time::timeout(Duration::from_secs(10), destroy).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(stream, "removing the source's consumer group failed: {e}"),
            Err(_) => tracing::warn!(stream, "removing the source's consumer group timed out"),
        }
    });
}

async fn consume(engine: &Engine, key: &str, source: &Source, brokers: &Brokers) -> Result<(), String> {
    if let Some(stream) = &source.redis_stream {
        return redis_stream(engine, key, source, &brokers.redis_url, stream).await;
    }
    if let Some(queue) = &source.rabbitmq_queue {
        return rabbitmq(engine, key, source, &brokers.amqp_url, queue).await;
    }
    if let Some(subject) = &source.nats_subject {
        return nats(engine, key, source, &brokers.nats_url, subject).await;
    }
    Err("the source names no broker".into())
}

/// The event a message carries: a CloudEvent as sent, or one made around its body.
fn event_of(body: &[u8], id: String, origin: &str, kind: &str, subject: &str) -> CloudEvent {
    if let Ok(event) = serde_json::from_slice::<CloudEvent>(body)
        && volley_flow::check_event(&event).is_ok()
    {
        return event;
    }
    let data = serde_json::from_slice::<Value>(body).unwrap_or_else(|_| json!(String::from_utf8_lossy(body)));
    CloudEvent::new(id, origin, kind, Some(subject.to_string()), data)
}

/// Sends events to the engine; Ok once they are durable.
async fn send(engine: &Engine, key: &str, source: &Source, events: Vec<CloudEvent>) -> Result<(), String> {
    let n = engine.send(&source.namespace, events).await.map_err(|e| format!("the engine refused: {e}"))?;
    if n.accepted > 0 {
        engine.note_source(key, n.accepted as u64, None);
    }
    Ok(())
}

async fn redis_stream(engine: &Engine, key: &str, source: &Source, url: &str, stream: &str) -> Result<(), String> {
    let err = |e: redis::RedisError| format!("Redis at {url}: {e}");
    let client = redis::Client::open(url).map_err(err)?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(10)));
    let mut conn = client.get_multiplexed_async_connection_with_config(&config).await.map_err(err)?;
    let group = format!("volley-{}-{}", source.namespace, source.id);
    // From now on (`$`); an existing group keeps its place.
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(&group)
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await;
    if let Err(e) = created
        && !e.to_string().contains("BUSYGROUP")
    {
        return Err(err(e));
    }
    let origin = format!("volley/redis/{stream}");
    // First what was delivered before and not acknowledged (a restart), then new entries.
    let mut from = "0";
    loop {
        let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&group)
            .arg("controller")
            .arg("COUNT")
            .arg(500)
            .arg("BLOCK")
            .arg(2000)
            .arg("STREAMS")
            .arg(stream)
            .arg(from)
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        let entries: Vec<redis::streams::StreamId> =
            reply.map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect()).unwrap_or_default();
        if entries.is_empty() {
            from = ">";
            continue;
        }
        let mut events = Vec::new();
        let mut ids = Vec::new();
        for entry in entries {
            let body = match entry.get::<Vec<u8>>("data") {
                Some(data) => data,
                None => {
                    let fields: serde_json::Map<String, Value> = entry
                        .map
                        .keys()
                        .filter_map(|k| entry.get::<String>(k).map(|v| (k.clone(), json!(v))))
                        .collect();
                    serde_json::to_vec(&fields).unwrap_or_default()
                }
            };
            events.push(event_of(&body, entry.id.clone(), &origin, "volley.redis.entry", stream));
            ids.push(entry.id);
        }
        send(engine, key, source, events).await?;
        let _: i64 = redis::cmd("XACK").arg(stream).arg(&group).arg(&ids).query_async(&mut conn).await.map_err(err)?;
    }
}

async fn rabbitmq(engine: &Engine, key: &str, source: &Source, url: &str, queue: &str) -> Result<(), String> {
    use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let err = |e: lapin::Error| format!("RabbitMQ at {url}: {e}");
    let connect = lapin::Connection::connect(url, lapin::ConnectionProperties::default());
    let connection = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| format!("RabbitMQ at {url} did not answer within 10 s"))?
        .map_err(err)?;
    let channel = connection.create_channel().await.map_err(err)?;
    // The queue is the user's: it must exist (a name mistyped would leave one behind).
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    if channel.queue_declare(queue.into(), passive, FieldTable::default()).await.is_err() {
        return Err(format!("there is no queue {queue} in RabbitMQ yet; it is read once it exists"));
    }
    channel.basic_qos(200, BasicQosOptions::default()).await.map_err(err)?;
    let tag = format!("volley-{}-{}", source.namespace, source.id);
    let mut consumer = channel
        .basic_consume(queue.into(), tag.as_str().into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .map_err(err)?;
    let origin = format!("volley/rabbitmq/{queue}");
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery.map_err(err)?;
        // A redelivered message must keep its id: its message_id, else a digest of its body.
        let id = match delivery.properties.message_id() {
            Some(id) => id.to_string(),
            None => format!("{:x}", sha2::Sha256::digest(&delivery.data)),
        };
        let event = event_of(&delivery.data, id, &origin, "volley.rabbitmq.message", queue);
        send(engine, key, source, vec![event]).await?;
        delivery.ack(BasicAckOptions::default()).await.map_err(err)?;
    }
    Err(format!("RabbitMQ closed the consumer of {queue}"))
}

async fn nats(engine: &Engine, key: &str, source: &Source, url: &str, subject: &str) -> Result<(), String> {
    let err = |e: String| format!("NATS at {url}: {e}");
    let connect = async_nats::connect(url);
    let client = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| err("did not answer within 10 s".into()))?
        .map_err(|e| err(e.to_string()))?;
    let mut messages = client.subscribe(subject.to_string()).await.map_err(|e| err(e.to_string()))?;
    let origin = format!("volley/nats/{subject}");
    while let Some(message) = messages.next().await {
        let id = format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>());
        let event = event_of(&message.payload, id, &origin, "volley.nats.message", &message.subject);
        send(engine, key, source, vec![event]).await?;
    }
    Err(format!("NATS closed the subscription to {subject}"))
}
