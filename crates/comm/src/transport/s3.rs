//! Packs talk through an S3-compatible object store, for when they can reach
//! nothing else. Each packet is one object under the receiving pack's inbox
//! prefix (`{prefix}{burst}/to-{pack}/`); the receiver lists its inbox, fetches
//! new objects concurrently and deletes them once taken. Listing backs off
//! while the inbox is idle and comes back to full speed as soon as it is not.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::{SinkRef, Tasks};
use crate::error::{Error, Result};
use crate::options::{PackOptions, S3Options};
use crate::wire::{OutPacket, split_packet};

fn err(e: impl std::fmt::Display) -> Error {
    Error::transport("s3", e)
}

pub(crate) fn build_store(o: &S3Options) -> Result<Arc<dyn ObjectStore>> {
    let mut b = AmazonS3Builder::from_env().with_bucket_name(&o.bucket).with_region(&o.region);
    if let Some(endpoint) = &o.endpoint {
        b = b.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
    }
    if let (Some(k), Some(s)) = (&o.access_key, &o.secret_key) {
        b = b.with_access_key_id(k).with_secret_access_key(s);
    }
    Ok(Arc::new(b.build().map_err(|e| Error::invalid(format!("bad S3 settings: {e}")))?))
}

fn burst_prefix(o: &S3Options, burst: &str) -> String {
    format!("{}{burst}", o.prefix)
}

fn inbox(o: &S3Options, burst: &str, pack: usize) -> String {
    format!("{}/to-{pack}", burst_prefix(o, burst))
}

pub(crate) struct S3Transport {
    store: Arc<dyn ObjectStore>,
    inboxes: Vec<String>,
    me: usize,
    concurrency: usize,
    turn: AtomicUsize,
    tasks: Tasks,
}

impl S3Transport {
    pub async fn connect(opts: &PackOptions, s3: &S3Options, sink: SinkRef) -> Result<Self> {
        let store = build_store(s3)?;
        let inboxes: Vec<String> = (0..opts.layout.packs()).map(|p| inbox(s3, &opts.burst, p)).collect();
        // Fail now, with the reason, if the store cannot be listed.
        let probe = Path::from(inboxes[opts.pack].as_str());
        tokio::time::timeout(opts.connect_timeout, store.list(Some(&probe)).try_next())
            .await
            .map_err(|_| Error::timeout(opts.connect_timeout, format!("listing bucket {}", s3.bucket)))?
            .map_err(|e| {
                err(format!("cannot list bucket {}: {e}; does it exist and are the credentials right?", s3.bucket))
            })?;
        let tasks = Tasks::default();
        tasks.spawn(poll_inbox(store.clone(), probe, s3.concurrency.max(1), s3.max_poll, sink));
        Ok(S3Transport {
            store,
            inboxes,
            me: opts.pack,
            concurrency: s3.concurrency.max(1),
            turn: AtomicUsize::new(0),
            tasks,
        })
    }

    pub async fn send(&self, dst: usize, packets: Vec<OutPacket>) -> Result<()> {
        let inbox = self.inboxes.get(dst).ok_or_else(|| Error::invalid(format!("no pack {dst}")))?;
        let nonce = self.turn.fetch_add(1, Ordering::Relaxed);
        let puts: Vec<_> = packets
            .into_iter()
            .map(|p| {
                let h = p.header;
                // Unique per packet: sender, kind, sequence and offset (aborts carry a nonce too).
                let key = format!("{inbox}/{:05}-{}-{:020}-{:020}-{nonce}", h.src_pack, h.kind as u8, h.seq, h.offset);
                let body = p.to_contiguous();
                let store = self.store.clone();
                async move {
                    store
                        .put(&Path::from(key.as_str()), PutPayload::from(body))
                        .await
                        .map(drop)
                        .map_err(|e| err(format!("writing {key}: {e}")))
                }
            })
            .collect();
        futures::stream::iter(puts).buffer_unordered(self.concurrency).try_collect::<()>().await
    }

    pub async fn shutdown(&self) -> Result<()> {
        self.tasks.abort_all();
        delete_prefix(&self.store, &self.inboxes[self.me]).await
    }
}

/// Pause between listings while packets are flowing.
const FAST_POLL: Duration = Duration::from_millis(1);
/// How long after the last packet listings stay fast.
const STAY_FAST: Duration = Duration::from_secs(2);

/// Lists the inbox again and again; fetches, delivers and deletes what is new.
async fn poll_inbox(store: Arc<dyn ObjectStore>, inbox: Path, concurrency: usize, max_poll: Duration, sink: SinkRef) {
    let mut taken: HashSet<Path> = HashSet::new();
    let mut last_packet = std::time::Instant::now();
    let mut pause = FAST_POLL;
    loop {
        let listed: std::result::Result<Vec<_>, _> = store.list(Some(&inbox)).try_collect().await;
        let Some(target) = sink.upgrade() else { return };
        let fresh: Vec<Path> = match listed {
            Ok(objects) => {
                let present: HashSet<Path> = objects.iter().map(|o| o.location.clone()).collect();
                taken.retain(|p| present.contains(p)); // forget what is gone for good
                objects.into_iter().map(|o| o.location).filter(|p| !taken.contains(p)).collect()
            }
            Err(e) => {
                target.broken(format!("listing {inbox} failed: {e}"));
                tokio::time::sleep(max_poll).await;
                continue;
            }
        };
        drop(target);
        if fresh.is_empty() {
            tokio::time::sleep(pause).await;
            // Stay fast while the burst is talking; back off only once it has been quiet.
            if last_packet.elapsed() > STAY_FAST {
                pause = (pause * 2).min(max_poll);
            }
            continue;
        }
        last_packet = std::time::Instant::now();
        pause = FAST_POLL;
        let fetched: Vec<_> = futures::stream::iter(fresh.into_iter().map(|path| {
            let store = store.clone();
            async move {
                let got = match store.get(&path).await {
                    Ok(r) => r.bytes().await,
                    Err(e) => Err(e),
                };
                (path, got)
            }
        }))
        .buffered(concurrency)
        .collect()
        .await;
        let Some(target) = sink.upgrade() else { return };
        for (path, got) in fetched {
            match got.map_err(err).and_then(|b| split_packet(b, target.limits())) {
                Ok((header, body)) => target.packet(header, body),
                Err(e) => target.broken(format!("reading {path}: {e}")),
            }
            let store = store.clone();
            let p = path.clone();
            tokio::spawn(async move {
                let _ = store.delete(&p).await;
            });
            taken.insert(path);
        }
    }
}

async fn delete_prefix(store: &Arc<dyn ObjectStore>, prefix: &str) -> Result<()> {
    let prefix = Path::from(prefix);
    let objects: Vec<_> = store.list(Some(&prefix)).try_collect().await.map_err(err)?;
    for o in objects {
        store.delete(&o.location).await.map_err(err)?;
    }
    Ok(())
}

/// Deletes every object a burst may have left behind.
pub async fn purge(s3: &S3Options, burst: &str) -> Result<()> {
    let store = build_store(s3)?;
    delete_prefix(&store, &burst_prefix(s3, burst)).await
}
