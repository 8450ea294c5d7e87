//! Durable state: deployed functions, bursts (with their results) and their
//! logs survive a controller restart. Two backends with the same behaviour
//! (one conformance test runs against both): an embedded redb file, the
//! default, and PostgreSQL.

mod embedded;
mod postgres;

use std::path::Path;

use volley_proto::api::{Burst, BurstLogs, FunctionInfo};

use crate::error::Result;

/// Where the controller keeps its state.
#[derive(Clone)]
pub enum Store {
    /// One redb file in the data directory (the default).
    Embedded(embedded::Embedded),
    /// Tables in a PostgreSQL database.
    Postgres(postgres::Postgres),
}

macro_rules! each {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Embedded($s) => $call,
            Store::Postgres($s) => $call,
        }
    };
}

impl Store {
    /// Opens (or creates) the embedded store at `path`.
    pub fn open_embedded(path: &Path) -> Result<Store> {
        embedded::Embedded::open(path).map(Store::Embedded)
    }

    /// Connects to PostgreSQL at `url` (`postgres://user@host:port/db`) and
    /// creates the tables if they are missing.
    pub async fn open_postgres(url: &str) -> Result<Store> {
        postgres::Postgres::open(url).await.map(Store::Postgres)
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
        each!(self, s => s.put_burst(burst).await)
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
}
