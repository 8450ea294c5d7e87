//! The embedded store: one redb file in the data directory. Records are JSON
//! documents keyed by id; burst ids sort by submission time.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use volley_proto::api::{Burst, BurstLogs, FunctionInfo};
use volley_proto::dashboard::BurstSummary;
use volley_proto::flow::LoggedEvent;

use super::{Batch, Docs};
use crate::error::{Error, Result};

const BURSTS: TableDefinition<&str, &[u8]> = TableDefinition::new("bursts");
const LOGS: TableDefinition<&str, &[u8]> = TableDefinition::new("logs");
const FUNCTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("functions");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");

fn docs_table(docs: Docs) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(docs.name())
}

/// One redb file.
#[derive(Clone)]
pub struct Embedded(Arc<Database>);

fn store_err(e: impl std::fmt::Display) -> Error {
    Error::Store(e.to_string())
}

/// How long a controller waits for the store's lock a predecessor still
/// holds (one just killed whose process, or a child it was forking, has not
/// finished exiting).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn open_waiting(path: &Path) -> std::result::Result<Database, redb::DatabaseError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match Database::create(path) {
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

impl Embedded {
    /// Opens (or creates) the embedded store at `path`.
    pub fn open(path: &Path) -> Result<Embedded> {
        let db = open_waiting(path).map_err(|e| {
            Error::Store(format!("cannot open {}: {e}; is another controller using it?", path.display()))
        })?;
        let txn = db.begin_write().map_err(store_err)?;
        txn.open_table(BURSTS).map_err(store_err)?;
        txn.open_table(LOGS).map_err(store_err)?;
        txn.open_table(FUNCTIONS).map_err(store_err)?;
        txn.open_table(EVENTS).map_err(store_err)?;
        for docs in Docs::ALL {
            txn.open_table(docs_table(docs)).map_err(store_err)?;
        }
        txn.commit().map_err(store_err)?;
        Ok(Embedded(Arc::new(db)))
    }

    /// Saves a burst (replacing its earlier record).
    pub async fn put_burst(&self, burst: &Burst) -> Result<()> {
        let json = serde_json::to_vec(burst).map_err(store_err)?;
        self.put(BURSTS, burst.id.clone(), json).await
    }

    /// The burst with this id, if stored.
    pub async fn get_burst(&self, id: &str) -> Result<Option<Burst>> {
        self.get(BURSTS, id.to_string()).await
    }

    /// The newest `limit` bursts of `namespace`, newest first.
    pub async fn list_bursts(&self, namespace: &str, limit: usize) -> Result<Vec<Burst>> {
        let namespace = namespace.to_string();
        self.scan(move |b: Burst| (b.namespace == namespace).then_some(b), limit).await
    }

    /// Every burst's summary, newest first.
    pub async fn summaries(&self) -> Result<Vec<BurstSummary>> {
        self.scan(|b: Burst| Some(BurstSummary::from(&b)), usize::MAX).await
    }

    /// Every burst that had not ended when it was last saved.
    pub async fn unfinished(&self) -> Result<Vec<Burst>> {
        let mut list = self.scan(|b: Burst| (!b.state.is_final()).then_some(b), usize::MAX).await?;
        list.reverse();
        Ok(list)
    }

    /// Saves what a burst's packs printed.
    pub async fn put_logs(&self, id: &str, logs: &BurstLogs) -> Result<()> {
        let json = serde_json::to_vec(logs).map_err(store_err)?;
        self.put(LOGS, id.to_string(), json).await
    }

    /// What a burst's packs printed, if stored.
    pub async fn get_logs(&self, id: &str) -> Result<Option<BurstLogs>> {
        self.get(LOGS, id.to_string()).await
    }

    /// Saves a deployed function's record.
    pub async fn put_function(&self, key: &str, f: &FunctionInfo) -> Result<()> {
        let json = serde_json::to_vec(f).map_err(store_err)?;
        self.put(FUNCTIONS, key.to_string(), json).await
    }

    /// Forgets a deployed function.
    pub async fn delete_function(&self, name: &str) -> Result<()> {
        let db = &self.0;
        let (db, name) = (db.clone(), name.to_string());
        blocking(move || {
            let txn = db.begin_write().map_err(store_err)?;
            txn.open_table(FUNCTIONS).map_err(store_err)?.remove(name.as_str()).map_err(store_err)?;
            txn.commit().map_err(store_err)
        })
        .await
    }

    /// Every deployed function.
    pub async fn list_functions(&self) -> Result<Vec<FunctionInfo>> {
        let db = &self.0;
        let db = db.clone();
        blocking(move || {
            let txn = db.begin_read().map_err(store_err)?;
            let table = txn.open_table(FUNCTIONS).map_err(store_err)?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(store_err)? {
                let (_, v) = entry.map_err(store_err)?;
                out.push(serde_json::from_slice(v.value()).map_err(store_err)?);
            }
            Ok(out)
        })
        .await
    }

    /// Applies every change of `batch` in one write transaction.
    pub(crate) async fn commit(&self, batch: Batch) -> Result<()> {
        let db = self.0.clone();
        blocking(move || {
            let txn = db.begin_write().map_err(store_err)?;
            for ((docs, key), doc) in &batch.changes {
                let mut table = txn.open_table(docs_table(*docs)).map_err(store_err)?;
                match doc {
                    Some(doc) => drop(table.insert(key.as_str(), doc.as_bytes()).map_err(store_err)?),
                    None => drop(table.remove(key.as_str()).map_err(store_err)?),
                }
            }
            if !batch.bursts.is_empty() {
                let mut bursts = txn.open_table(BURSTS).map_err(store_err)?;
                for b in &batch.bursts {
                    let json = serde_json::to_vec(b).map_err(store_err)?;
                    bursts.insert(b.id.as_str(), json.as_slice()).map_err(store_err)?;
                }
            }
            if !batch.events.is_empty() {
                let mut events = txn.open_table(EVENTS).map_err(store_err)?;
                for e in &batch.events {
                    let json = serde_json::to_vec(e).map_err(store_err)?;
                    // A position is logged once: a second writer must fail, not overwrite
                    // (the transaction is dropped, so nothing of the batch lands).
                    if events.insert(e.seq, json.as_slice()).map_err(store_err)?.is_some() {
                        return Err(Error::Store(format!("event position {} is logged already", e.seq)));
                    }
                }
            }
            txn.commit().map_err(store_err)
        })
        .await
    }

    pub(crate) async fn doc(&self, docs: Docs, key: &str) -> Result<Option<String>> {
        let (db, key) = (self.0.clone(), key.to_string());
        blocking(move || {
            let txn = db.begin_read().map_err(store_err)?;
            let table = txn.open_table(docs_table(docs)).map_err(store_err)?;
            let found = table.get(key.as_str()).map_err(store_err)?;
            found.map(|v| String::from_utf8(v.value().to_vec()).map_err(store_err)).transpose()
        })
        .await
    }

    pub(crate) async fn docs(&self, docs: Docs, prefix: &str) -> Result<Vec<(String, String)>> {
        let (db, prefix) = (self.0.clone(), prefix.to_string());
        blocking(move || {
            let txn = db.begin_read().map_err(store_err)?;
            let table = txn.open_table(docs_table(docs)).map_err(store_err)?;
            let mut out = Vec::new();
            for entry in table.range(prefix.as_str()..).map_err(store_err)? {
                let (k, v) = entry.map_err(store_err)?;
                if !k.value().starts_with(prefix.as_str()) {
                    break;
                }
                out.push((k.value().to_string(), String::from_utf8(v.value().to_vec()).map_err(store_err)?));
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn events(&self, namespace: Option<&str>, after: u64, limit: usize) -> Result<Vec<LoggedEvent>> {
        let (db, namespace) = (self.0.clone(), namespace.map(String::from));
        blocking(move || {
            let txn = db.begin_read().map_err(store_err)?;
            let table = txn.open_table(EVENTS).map_err(store_err)?;
            let mut out = Vec::new();
            for entry in table.range(after.saturating_add(1)..).map_err(store_err)? {
                let (_, v) = entry.map_err(store_err)?;
                let e: LoggedEvent = serde_json::from_slice(v.value()).map_err(store_err)?;
                if namespace.as_ref().is_none_or(|n| *n == e.namespace) {
                    out.push(e);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn delete_events_through(&self, seq: u64) -> Result<()> {
        let db = self.0.clone();
        blocking(move || {
            let txn = db.begin_write().map_err(store_err)?;
            {
                let mut table = txn.open_table(EVENTS).map_err(store_err)?;
                table.retain_in(..=seq, |_, _| false).map_err(store_err)?;
            }
            txn.commit().map_err(store_err)
        })
        .await
    }

    pub(crate) async fn last_event(&self) -> Result<u64> {
        let db = self.0.clone();
        blocking(move || {
            let txn = db.begin_read().map_err(store_err)?;
            let table = txn.open_table(EVENTS).map_err(store_err)?;
            Ok(table.last().map_err(store_err)?.map(|(k, _)| k.value()).unwrap_or(0))
        })
        .await
    }

    async fn put(
        &self,
        table: TableDefinition<'static, &'static str, &'static [u8]>,
        key: String,
        value: Vec<u8>,
    ) -> Result<()> {
        let db = &self.0;
        let db = db.clone();
        blocking(move || {
            let txn = db.begin_write().map_err(store_err)?;
            txn.open_table(table).map_err(store_err)?.insert(key.as_str(), value.as_slice()).map_err(store_err)?;
            txn.commit().map_err(store_err)
        })
        .await
    }

    async fn get<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        table: TableDefinition<'static, &'static str, &'static [u8]>,
        key: String,
    ) -> Result<Option<T>> {
        let db = &self.0;
        let db = db.clone();
        blocking(move || {
            let txn = db.begin_read().map_err(store_err)?;
            let table = txn.open_table(table).map_err(store_err)?;
            match table.get(key.as_str()).map_err(store_err)? {
                Some(v) => serde_json::from_slice(v.value()).map(Some).map_err(store_err),
                None => Ok(None),
            }
        })
        .await
    }

    /// What `pick` makes of each burst it keeps, newest first, at most `limit`
    /// (a burst at a time: the whole table is never decoded at once).
    async fn scan<T: Send + 'static>(
        &self,
        pick: impl Fn(Burst) -> Option<T> + Send + 'static,
        limit: usize,
    ) -> Result<Vec<T>> {
        let db = &self.0;
        let db = db.clone();
        blocking(move || {
            let txn = db.begin_read().map_err(store_err)?;
            let table = txn.open_table(BURSTS).map_err(store_err)?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(store_err)?.rev() {
                let (_, v) = entry.map_err(store_err)?;
                let burst: Burst = serde_json::from_slice(v.value()).map_err(store_err)?;
                if let Some(kept) = pick(burst) {
                    out.push(kept);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Store(format!("store task failed: {e}")))?
}
