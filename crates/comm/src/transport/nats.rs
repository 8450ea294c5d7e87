//! Packs talk through NATS JetStream: each pack owns a memory stream
//! (`VOLLEY_{burst}_{pack}`, subject `volley.{burst}.{pack}`) with work-queue
//! retention, so a packet is stored until its pack has taken it, and publish
//! acknowledgements turn a lost packet into an error. Plain core NATS would
//! drop messages under load (slow consumers), which a burst cannot afford.
//!
//! Packets respect the server's maximum payload (1 MiB here). A pack creates
//! its own stream, waits until every other pack's exists, and deletes its own
//! at close; streams also age out as a safety net.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;

use super::{SinkRef, Tasks, wait_for_peers};
use crate::error::{Error, Result};
use crate::options::{NatsOptions, PackOptions};
use crate::wire::{HEADER_LEN, OutPacket, split_packet};

/// Room left in each message for NATS's own headers.
const HEADROOM: usize = 1024;

/// How many bytes a pack's consumer asks the server for at a time (it asks
/// again at half). The server cuts off a client that lets more than its
/// maximum pending (64 MiB by default) pile up unread, a "slow consumer",
/// and the client's default of 200 messages per pull is 200 MiB of 1 MiB
/// packets: a burst then loses packets until they are redelivered, 30 s on.
pub const PULL_BYTES: usize = 16 << 20;

fn err(e: impl std::fmt::Display) -> Error {
    Error::transport("nats", e)
}

pub(crate) fn stream_name(burst: &str, pack: usize) -> String {
    format!("VOLLEY_{burst}_{pack}")
}

fn subject(burst: &str, pack: usize) -> String {
    format!("volley.{burst}.{pack}")
}

pub(crate) struct NatsTransport {
    js: jetstream::Context,
    subjects: Vec<String>,
    own_stream: String,
    max_chunk: u32,
    turn: AtomicUsize,
    tasks: Tasks,
}

impl NatsTransport {
    pub async fn connect(opts: &PackOptions, nats: &NatsOptions, sink: SinkRef) -> Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(opts.connect_timeout)
            // Setup calls (stream creation) get the connect budget; sends are bounded by the op timeout above them.
            .request_timeout(Some(opts.connect_timeout.max(opts.op_timeout)))
            .connect(nats.url.as_str())
            .await
            .map_err(|e| err(format!("cannot connect to {}: {e}; is NATS running there?", nats.url)))?;
        let max_payload = client.server_info().max_payload;
        let max_chunk = max_payload.saturating_sub(HEADER_LEN + HEADROOM).max(1) as u32;
        let js = jetstream::new(client);
        let me = opts.pack;
        let subjects: Vec<String> = (0..opts.layout.packs()).map(|p| subject(&opts.burst, p)).collect();
        let own_stream = stream_name(&opts.burst, me);
        let stream = js
            .create_stream(stream::Config {
                name: own_stream.clone(),
                subjects: vec![subjects[me].clone()],
                storage: stream::StorageType::Memory,
                retention: stream::RetentionPolicy::WorkQueue,
                max_age: opts.op_timeout * 2 + opts.connect_timeout,
                ..Default::default()
            })
            .await
            .map_err(|e| err(format!("creating stream {own_stream}: {e}; is JetStream enabled (-js)?")))?;
        let consumer = stream
            .create_consumer(consumer::pull::Config { ack_policy: consumer::AckPolicy::Explicit, ..Default::default() })
            .await
            .map_err(err)?;
        let mut messages = consumer
            .stream()
            .heartbeat(std::time::Duration::from_secs(15))
            .max_bytes_per_batch(PULL_BYTES)
            .messages()
            .await
            .map_err(err)?;
        let tasks = Tasks::default();
        let name = own_stream.clone();
        tasks.spawn(async move {
            while let Some(message) = messages.next().await {
                let Some(target) = sink.upgrade() else { return };
                match message {
                    Ok(m) => {
                        match split_packet(m.payload.clone(), target.limits()) {
                            Ok((header, body)) => target.packet(header, body),
                            Err(e) => target.broken(format!("a malformed packet in {name}: {e}")),
                        }
                        // Removes the packet from the work queue; a failed ack only keeps it until the stream goes.
                        let _ = m.ack().await;
                    }
                    Err(e) => target.broken(format!("NATS failed while receiving from {name}: {e}")),
                }
            }
        });
        wait_for_peers(opts.layout.packs(), me, opts.connect_timeout, "stream", |pack| {
            let (js, name) = (&js, stream_name(&opts.burst, pack));
            async move { Ok(js.get_stream(&name).await.is_ok()) }
        })
        .await?;
        Ok(NatsTransport { js, subjects, own_stream, max_chunk, turn: AtomicUsize::new(0), tasks })
    }

    /// Packets must fit the server's maximum payload.
    pub fn chunk_for(&self, configured: u32) -> u32 {
        configured.min(self.max_chunk)
    }

    pub async fn send(&self, dst: usize, packets: Vec<OutPacket>) -> Result<()> {
        let subject = self.subjects.get(dst).ok_or_else(|| Error::invalid(format!("no pack {dst}")))?;
        self.turn.fetch_add(1, Ordering::Relaxed);
        let mut acks = Vec::with_capacity(packets.len());
        for p in &packets {
            let ack = self
                .js
                .publish(subject.clone(), p.to_contiguous())
                .await
                .map_err(|e| err(format!("publishing to {subject}: {e}")))?;
            acks.push(ack.into_future());
        }
        for ack in acks {
            ack.await.map_err(|e| err(format!("{subject} did not acknowledge a packet: {e}")))?;
        }
        Ok(())
    }

    pub async fn shutdown(&self) -> Result<()> {
        self.tasks.abort_all();
        self.js.delete_stream(&self.own_stream).await.map(drop).map_err(err)
    }
}

/// Deletes the streams a burst of `packs` packs may have left behind.
pub async fn purge(url: &str, burst: &str, packs: usize) -> Result<()> {
    let client = async_nats::connect(url).await.map_err(err)?;
    let js = jetstream::new(client);
    for pack in 0..packs {
        let _ = js.delete_stream(stream_name(burst, pack)).await;
    }
    Ok(())
}
