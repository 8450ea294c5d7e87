//! The embedded store: one redb file in the data directory. Records are JSON
//! documents keyed by id; burst ids sort by submission time.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use volley_proto::api::{Burst, BurstLogs, FunctionInfo};

use crate::error::{Error, Result};

const BURSTS: TableDefinition<&str, &[u8]> = TableDefinition::new("bursts");
const LOGS: TableDefinition<&str, &[u8]> = TableDefinition::new("logs");
const FUNCTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("functions");

/// One redb file.
#[derive(Clone)]
pub struct Embedded(Arc<Database>);

fn store_err(e: impl std::fmt::Display) -> Error {
    Error::Store(e.to_string())
}

impl Embedded {
    /// Opens (or creates) the embedded store at `path`.
    pub fn open(path: &Path) -> Result<Embedded> {
        let db = Database::create(path).map_err(|e| {
            Error::Store(format!("cannot open {}: {e}; is another controller using it?", path.display()))
        })?;
        let txn = db.begin_write().map_err(store_err)?;
        txn.open_table(BURSTS).map_err(store_err)?;
        txn.open_table(LOGS).map_err(store_err)?;
        txn.open_table(FUNCTIONS).map_err(store_err)?;
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
        self.scan(move |b: &Burst| b.namespace == namespace, limit).await
    }

    /// Every burst that had not ended when it was last saved.
    pub async fn unfinished(&self) -> Result<Vec<Burst>> {
        let mut list = self.scan(|b: &Burst| !b.state.is_final(), usize::MAX).await?;
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

    async fn scan(&self, keep: impl Fn(&Burst) -> bool + Send + 'static, limit: usize) -> Result<Vec<Burst>> {
        let db = &self.0;
        let db = db.clone();
        blocking(move || {
            let txn = db.begin_read().map_err(store_err)?;
            let table = txn.open_table(BURSTS).map_err(store_err)?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(store_err)?.rev() {
                let (_, v) = entry.map_err(store_err)?;
                let burst: Burst = serde_json::from_slice(v.value()).map_err(store_err)?;
                if keep(&burst) {
                    out.push(burst);
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
