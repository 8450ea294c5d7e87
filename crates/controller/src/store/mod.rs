//! Durable state: deployed functions, bursts (with their results) and their
//! logs survive a controller restart. Two backends with the same behaviour
//! (one conformance test runs against both): an embedded redb file, the
//! default, and PostgreSQL.

use std::collections::BTreeMap;

mod embedded;
mod postgres;
mod summaries;

pub use summaries::SummaryFilter;

use std::path::Path;
use std::sync::Arc;

use volley_proto::api::{Burst, BurstLogs, FunctionInfo};
use volley_proto::dashboard::BurstSummary;
use volley_proto::flow::LoggedEvent;

use crate::error::Result;

/// The document tables of the workflow engine and of idempotent submits
/// (JSON documents by key; see `docs/adr/0004-workflows.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Docs {
    /// Deployed workflows, by `namespace/name`.
    Workflows,
    /// Workflow runs, by id.
    Runs,
    /// Triggers, by id.
    Triggers,
    /// Effects committed but not yet performed, by a sortable id.
    Outbox,
    /// The sequence of each logged event, by `namespace/source/id` (drops repeats).
    EventIds,
    /// The burst each idempotency key started, by `namespace/key`.
    Idempotency,
    /// Timers, by `namespace/id`.
    Timers,
    /// Event sources, by `namespace/id`.
    Sources,
}

impl Docs {
    pub const ALL: [Docs; 8] = [
        Docs::Workflows,
        Docs::Runs,
        Docs::Triggers,
        Docs::Outbox,
        Docs::EventIds,
        Docs::Idempotency,
        Docs::Timers,
        Docs::Sources,
    ];

    /// The table's name in either backend.
    pub fn name(self) -> &'static str {
        match self {
            Docs::Workflows => "workflows",
            Docs::Runs => "runs",
            Docs::Triggers => "triggers",
            Docs::Outbox => "outbox",
            Docs::EventIds => "event_ids",
            Docs::Idempotency => "idempotency",
            Docs::Timers => "timers",
            Docs::Sources => "sources",
        }
    }
}

/// Changes committed together, or not at all. A key changed twice in one
/// batch keeps its last change (so the order of the changes never matters).
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// The new document of each changed key; `None`: deleted.
    pub changes: BTreeMap<(Docs, String), Option<String>>,
    pub events: Vec<LoggedEvent>,
    /// Bursts saved with the rest (a new burst and its idempotency key, say).
    pub bursts: Vec<Burst>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.events.is_empty() && self.bursts.is_empty()
    }

    /// Saves `value` as JSON under `key` in `docs`.
    pub fn put(&mut self, docs: Docs, key: impl Into<String>, value: &impl serde::Serialize) {
        match serde_json::to_string(value) {
            Ok(doc) => drop(self.changes.insert((docs, key.into()), Some(doc))),
            Err(e) => tracing::error!("cannot encode a {} document: {e}", docs.name()),
        }
    }

    pub fn delete(&mut self, docs: Docs, key: impl Into<String>) {
        self.changes.insert((docs, key.into()), None);
    }
}

/// Where the controller keeps its state, with an index of burst summaries
/// in memory (lists and overviews must not decode every worker of every burst).
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    summaries: Arc<summaries::Index>,
}

#[derive(Clone)]
enum Backend {
    /// One redb file in the data directory (the default).
    Embedded(embedded::Embedded),
    /// Tables in a PostgreSQL database.
    Postgres(postgres::Postgres),
}

macro_rules! each {
    ($self:ident, $s:ident => $call:expr) => {
        match &$self.backend {
            Backend::Embedded($s) => $call,
            Backend::Postgres($s) => $call,
        }
    };
}

impl Store {
    /// Opens (or creates) the embedded store at `path`.
    pub fn open_embedded(path: &Path) -> Result<Store> {
        embedded::Embedded::open(path).map(|b| Store::with(Backend::Embedded(b)))
    }

    /// Connects to PostgreSQL at `url` (`postgres://user@host:port/db`) and
    /// creates the tables if they are missing.
    pub async fn open_postgres(url: &str) -> Result<Store> {
        postgres::Postgres::open(url).await.map(|b| Store::with(Backend::Postgres(b)))
    }

    fn with(backend: Backend) -> Store {
        Store { backend, summaries: Arc::default() }
    }

    /// Opens what `location` names: `embedded` (in `data_dir`) or a `postgres://` URL.
    pub async fn open(location: &str, data_dir: &Path) -> Result<Store> {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            Self::open_postgres(location).await
        } else if location == "embedded" {
            Self::open_embedded(&data_dir.join("state.redb"))
        } else {
            Err(crate::Error::BadRequest(format!("unknown store {location:?}: use `embedded` or a postgres:// URL")))
        }
    }

    /// Saves a burst (replacing its earlier record).
    pub async fn put_burst(&self, burst: &Burst) -> Result<()> {
        each!(self, s => s.put_burst(burst).await)?;
        self.summaries.saved(std::slice::from_ref(burst)).await;
        Ok(())
    }

    /// A page of `namespace`'s burst summaries that pass `filter`, newest
    /// first, and how many pass it in all.
    pub async fn summaries(&self, namespace: &str, filter: &SummaryFilter) -> Result<(u64, Vec<BurstSummary>)> {
        self.summaries.load(self).await?;
        Ok(self.summaries.page(namespace, filter).await)
    }

    /// Shows `visit` every summary of `namespace`, newest first (the overview's counts).
    pub async fn visit_summaries(&self, namespace: &str, visit: impl FnMut(&BurstSummary)) -> Result<()> {
        self.summaries.load(self).await?;
        self.summaries.visit(namespace, visit).await;
        Ok(())
    }

    /// Every stored burst's summary (one pass over the store, a burst at a time).
    async fn scan_summaries(&self) -> Result<Vec<BurstSummary>> {
        each!(self, s => s.summaries().await)
    }

    /// The burst with this id, if stored.
    pub async fn get_burst(&self, id: &str) -> Result<Option<Burst>> {
        each!(self, s => s.get_burst(id).await)
    }

    /// The newest `limit` bursts of `namespace`, newest first.
    pub async fn list_bursts(&self, namespace: &str, limit: usize) -> Result<Vec<Burst>> {
        each!(self, s => s.list_bursts(namespace, limit).await)
    }

    /// Every burst that had not ended when it was last saved, oldest first.
    pub async fn unfinished(&self) -> Result<Vec<Burst>> {
        each!(self, s => s.unfinished().await)
    }

    /// Saves what a burst's packs printed.
    pub async fn put_logs(&self, id: &str, logs: &BurstLogs) -> Result<()> {
        each!(self, s => s.put_logs(id, logs).await)
    }

    /// What a burst's packs printed, if stored.
    pub async fn get_logs(&self, id: &str) -> Result<Option<BurstLogs>> {
        each!(self, s => s.get_logs(id).await)
    }

    /// Saves a deployed function's record under `key`.
    pub async fn put_function(&self, key: &str, f: &FunctionInfo) -> Result<()> {
        each!(self, s => s.put_function(key, f).await)
    }

    /// Forgets the deployed function saved under `key`.
    pub async fn delete_function(&self, key: &str) -> Result<()> {
        each!(self, s => s.delete_function(key).await)
    }

    /// Every deployed function.
    pub async fn list_functions(&self) -> Result<Vec<FunctionInfo>> {
        each!(self, s => s.list_functions().await)
    }

    /// Applies every change of `batch`, or none.
    pub async fn commit(&self, batch: Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let bursts = batch.bursts.clone();
        each!(self, s => s.commit(batch).await)?;
        self.summaries.saved(&bursts).await;
        Ok(())
    }

    /// The document under `key`, decoded.
    pub async fn doc<T: serde::de::DeserializeOwned>(&self, docs: Docs, key: &str) -> Result<Option<T>> {
        let raw = each!(self, s => s.doc(docs, key).await)?;
        raw.map(|d| {
            serde_json::from_str(&d).map_err(|e| crate::Error::Store(format!("a {} document: {e}", docs.name())))
        })
        .transpose()
    }

    /// Every document whose key starts with `prefix`, by key, decoded.
    pub async fn docs<T: serde::de::DeserializeOwned>(&self, docs: Docs, prefix: &str) -> Result<Vec<(String, T)>> {
        let raw = each!(self, s => s.docs(docs, prefix).await)?;
        raw.into_iter()
            .map(|(k, d)| {
                let v = serde_json::from_str(&d)
                    .map_err(|e| crate::Error::Store(format!("a {} document: {e}", docs.name())))?;
                Ok((k, v))
            })
            .collect()
    }

    /// Logged events after `seq`, oldest first, at most `limit` (of `namespace` if given).
    pub async fn events(&self, namespace: Option<&str>, after: u64, limit: usize) -> Result<Vec<LoggedEvent>> {
        each!(self, s => s.events(namespace, after, limit).await)
    }

    /// Removes the oldest events logged before `before` (µs), at most
    /// `limit` of them, and returns them (oldest first).
    pub async fn prune_events(&self, before: u64, limit: usize) -> Result<Vec<LoggedEvent>> {
        // The log is in the order events were received: the old ones come first.
        let old: Vec<LoggedEvent> =
            self.events(None, 0, limit).await?.into_iter().take_while(|e| e.received_at < before).collect();
        if let Some(last) = old.last() {
            each!(self, s => s.delete_events_through(last.seq).await)?;
        }
        Ok(old)
    }

    /// The sequence of the last logged event (0: none).
    pub async fn last_event(&self) -> Result<u64> {
        each!(self, s => s.last_event().await)
    }
}
