//! Event sources outside the platform: a storage prefix listed on a period,
//! and subscriptions to a Redis stream, a RabbitMQ queue or a NATS subject
//! (`super::super::subscriptions`, tasks that send what they receive as events).
//! Each listing is an outbox entry (so it survives a restart); its objects
//! become events whose ids are `KEY@SIZE`, so an object is reported once (and
//! again only if its size changes). The objects a source finds at its first
//! listing are its starting point, not news: they are remembered, not reported.

use volley_proto::flow::{CloudEvent, Source, SourceRequest};
use volley_proto::now_micros;

use super::super::outbox::Pending;
use super::events::trigger_key;
use super::{State, Tx};
use crate::error::{Error, Result};
use crate::store::Docs;

/// The type of a storage source's events.
pub(crate) const OBJECT_CREATED: &str = "volley.storage.object.created";

/// Most sources one namespace may have.
const MAX_PER_NAMESPACE: usize = 50;

impl State {
    pub(super) fn create_source(&mut self, namespace: &str, request: SourceRequest, tx: &mut Tx) -> Result<Source> {
        let SourceRequest { id, storage, redis_stream, rabbitmq_queue, nats_subject } = request;
        let given = [storage.is_some(), redis_stream.is_some(), rabbitmq_queue.is_some(), nats_subject.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(Error::Unprocessable(
                "give exactly one of storage, redis_stream, rabbitmq_queue, nats_subject".into(),
            ));
        }
        let tenants = !self.plane.opts.api_keys.is_empty();
        for name in [&redis_stream, &rabbitmq_queue, &nats_subject].into_iter().flatten() {
            check_name(name, namespace, tenants)?;
        }
        let storage = match storage {
            Some(storage) => {
                let url = storage.url.trim_end_matches('/').to_string();
                if !(1.0..=86_400.0).contains(&storage.every_secs) {
                    return Err(Error::Unprocessable(format!("every_secs {} is not 1 to 86400", storage.every_secs)));
                }
                if url.starts_with("file://") && tenants {
                    return Err(Error::Unprocessable(
                        "a controller with API keys watches s3:// prefixes only: tenants do not list its host's files"
                            .into(),
                    ));
                }
                volley_storage::Storage::open(&url, &self.plane.opts.storage)
                    .map_err(|e| Error::Unprocessable(format!("storage.url: {e}")))?;
                Some(volley_proto::flow::StorageSource { url, every_secs: storage.every_secs })
            }
            None => None,
        };
        let key = trigger_key(namespace, &id);
        if self.sources.contains_key(&key) {
            return Err(Error::Conflict(format!("source {id} exists; delete it first (`volley sources delete {id}`)")));
        }
        if self.sources.values().filter(|s| s.namespace == namespace).count() >= MAX_PER_NAMESPACE {
            return Err(Error::QueueFull(format!("namespace {namespace} has {MAX_PER_NAMESPACE} sources, its limit")));
        }
        let source = Source {
            id,
            namespace: namespace.into(),
            storage,
            redis_stream,
            rabbitmq_queue,
            nats_subject,
            polls: 0,
            reported: 0,
            error: None,
        };
        match &source.storage {
            Some(storage) => {
                let poll = Pending::Poll { source: key.clone(), url: storage.url.clone(), at: now_micros() };
                self.owe(namespace, poll, tx);
            }
            None => tx.subscribe.push((key.clone(), source.clone())),
        }
        tx.batch.put(Docs::Sources, key.clone(), &source);
        self.sources.insert(key, source.clone());
        Ok(source)
    }

    pub(super) fn delete_source(&mut self, namespace: &str, id: &str, tx: &mut Tx) -> Result<()> {
        let key = trigger_key(namespace, id);
        // Its owed listing finds it gone and does nothing; a subscription stops.
        match self.sources.remove(&key) {
            Some(source) => {
                if let Some(stop) = self.subscriptions.remove(&key) {
                    stop.cancel();
                    super::super::subscriptions::forget(source, self.plane.opts.brokers.clone());
                }
                tx.batch.delete(Docs::Sources, key);
                Ok(())
            }
            None => Err(Error::NotFound(format!("no source {id}; `volley sources list` shows yours"))),
        }
    }

    /// A listing came back: its new objects are events; the next listing is owed.
    pub(super) fn polled(&mut self, key: &str, listing: std::result::Result<Vec<(String, u64)>, String>, tx: &mut Tx) {
        let Some(source) = self.sources.get(key).cloned() else { return };
        let Some(storage) = source.storage.clone() else { return };
        let namespace = source.namespace.clone();
        let origin = format!("volley/storage/{}", source.id);
        let first = source.polls == 0;
        let mut reported = 0;
        let error = match listing {
            Ok(objects) => {
                for (object, size) in objects {
                    let event = CloudEvent::new(
                        format!("{object}@{size}"),
                        &origin,
                        OBJECT_CREATED,
                        Some(object.clone()),
                        serde_json::json!({"url": storage.url, "key": object, "size": size}),
                    );
                    if first {
                        self.remember(&namespace, &event, tx);
                    } else if self.ingest(&namespace, event, tx) {
                        reported += 1;
                    }
                }
                None
            }
            Err(e) => Some(e),
        };
        if let Some(s) = self.sources.get_mut(key) {
            s.polls += 1;
            s.reported += reported;
            s.error = error;
            tx.batch.put(Docs::Sources, key.to_string(), &*s);
        }
        let at = now_micros() + (storage.every_secs * 1e6) as u64;
        self.owe(&namespace, Pending::Poll { source: key.into(), url: storage.url, at }, tx);
    }

    /// A subscription's news: how many it reported, and its last error.
    pub(super) fn source_note(&mut self, key: &str, reported: u64, error: Option<String>, tx: &mut Tx) {
        if let Some(s) = self.sources.get_mut(key) {
            s.reported += reported;
            s.error = error;
            tx.batch.put(Docs::Sources, key.to_string(), &*s);
        }
    }

    /// Starts the subscriptions of sources committed in this batch (or recovered).
    pub(super) fn subscribe(&mut self, sources: Vec<(String, Source)>) {
        for (key, source) in sources {
            let Ok(engine) = self.plane.flows().cloned() else { return };
            let stop = self.stop.child_token();
            super::super::subscriptions::start(
                engine,
                key.clone(),
                source,
                self.plane.opts.brokers.clone(),
                stop.clone(),
            );
            if let Some(old) = self.subscriptions.insert(key, stop) {
                old.cancel();
            }
        }
    }

    /// Marks an event as seen without logging or applying it.
    fn remember(&mut self, namespace: &str, event: &CloudEvent, tx: &mut Tx) {
        let seen = format!("{namespace}/{}/{}", event.source, event.id);
        if self.seen.insert(seen.clone()) {
            tx.batch.put(Docs::EventIds, seen, &0u64);
        }
    }
}

/// With tenants, a stream, queue or subject name starts with the tenant's
/// namespace and a separator: one tenant cannot read another's messages.
fn check_name(name: &str, namespace: &str, tenants: bool) -> Result<()> {
    let ok =
        !name.is_empty() && name.len() <= 200 && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c));
    if !ok {
        return Err(Error::Unprocessable(format!("{name:?} must be 1 to 200 characters from A-Z a-z 0-9 _ . : -")));
    }
    let owned = [".", ":", "-"].iter().any(|sep| name.starts_with(&format!("{namespace}{sep}")));
    if tenants && !owned {
        return Err(Error::Unprocessable(format!(
            "{name:?} must start with your namespace and a separator ({namespace}. {namespace}: or {namespace}-)"
        )));
    }
    Ok(())
}
