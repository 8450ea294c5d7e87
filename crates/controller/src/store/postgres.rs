//! The PostgreSQL store: the same JSON documents as the embedded store, in
//! three tables. One connection, re-opened if it drops.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};
use volley_proto::api::{Burst, BurstLogs, FunctionInfo};

use crate::error::{Error, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS volley_bursts (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    finished BOOLEAN NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS volley_bursts_unfinished ON volley_bursts (finished) WHERE NOT finished;
CREATE TABLE IF NOT EXISTS volley_logs (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS volley_functions (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
";

#[derive(Clone)]
pub struct Postgres {
    url: String,
    client: std::sync::Arc<Mutex<Option<Client>>>,
}

fn pg_err(e: impl std::fmt::Display) -> Error {
    Error::Store(format!("PostgreSQL: {e}"))
}

async fn connect(url: &str) -> Result<Client> {
    let (client, connection) = tokio::time::timeout(Duration::from_secs(10), tokio_postgres::connect(url, NoTls))
        .await
        .map_err(|_| Error::Store(format!("PostgreSQL at {url} did not answer within 10 s")))?
        .map_err(|e| Error::Store(format!("cannot connect to PostgreSQL at {url}: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("the PostgreSQL connection ended: {e}");
        }
    });
    Ok(client)
}

fn decode<T: serde::de::DeserializeOwned>(doc: &str) -> Result<T> {
    serde_json::from_str(doc).map_err(pg_err)
}

impl Postgres {
    pub async fn open(url: &str) -> Result<Postgres> {
        let client = connect(url).await?;
        client.batch_execute(SCHEMA).await.map_err(pg_err)?;
        Ok(Postgres { url: url.to_string(), client: std::sync::Arc::new(Mutex::new(Some(client))) })
    }

    /// Runs `f` with a live connection (reconnecting once if the last one dropped).
    async fn with<T>(&self, f: impl AsyncFnOnce(&Client) -> Result<T, tokio_postgres::Error>) -> Result<T> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = Some(connect(&self.url).await?);
        }
        let client = guard.as_ref().ok_or_else(|| Error::Store("no PostgreSQL connection".into()))?;
        match tokio::time::timeout(Duration::from_secs(30), f(client)).await {
            Ok(result) => result.map_err(pg_err),
            Err(_) => {
                *guard = None;
                Err(Error::Store("PostgreSQL did not answer within 30 s".into()))
            }
        }
    }

    pub async fn put_burst(&self, burst: &Burst) -> Result<()> {
        let doc = serde_json::to_string(burst).map_err(pg_err)?;
        let finished = burst.state.is_final();
        self.with(async |c| {
            c.execute(
                "INSERT INTO volley_bursts (id, namespace, finished, doc) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET finished = EXCLUDED.finished, doc = EXCLUDED.doc",
                &[&burst.id, &burst.namespace, &finished, &doc],
            )
            .await
            .map(drop)
        })
        .await
    }

    pub async fn get_burst(&self, id: &str) -> Result<Option<Burst>> {
        let row = self.with(async |c| c.query_opt("SELECT doc FROM volley_bursts WHERE id = $1", &[&id]).await).await?;
        row.map(|r| decode(r.get::<_, &str>(0))).transpose()
    }

    pub async fn list_bursts(&self, namespace: &str, limit: usize) -> Result<Vec<Burst>> {
        let limit = limit.min(i64::MAX as usize) as i64;
        let rows = self
            .with(async |c| {
                c.query(
                    "SELECT doc FROM volley_bursts WHERE namespace = $1 ORDER BY id DESC LIMIT $2",
                    &[&namespace, &limit],
                )
                .await
            })
            .await?;
        rows.iter().map(|r| decode(r.get::<_, &str>(0))).collect()
    }

    pub async fn unfinished(&self) -> Result<Vec<Burst>> {
        let rows = self
            .with(async |c| c.query("SELECT doc FROM volley_bursts WHERE NOT finished ORDER BY id", &[]).await)
            .await?;
        rows.iter().map(|r| decode(r.get::<_, &str>(0))).collect()
    }

    pub async fn put_logs(&self, id: &str, logs: &BurstLogs) -> Result<()> {
        let doc = serde_json::to_string(logs).map_err(pg_err)?;
        self.with(async |c| {
            c.execute(
                "INSERT INTO volley_logs (id, doc) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc",
                &[&id, &doc],
            )
            .await
            .map(drop)
        })
        .await
    }

    pub async fn get_logs(&self, id: &str) -> Result<Option<BurstLogs>> {
        let row = self.with(async |c| c.query_opt("SELECT doc FROM volley_logs WHERE id = $1", &[&id]).await).await?;
        row.map(|r| decode(r.get::<_, &str>(0))).transpose()
    }

    pub async fn put_function(&self, key: &str, f: &FunctionInfo) -> Result<()> {
        let doc = serde_json::to_string(f).map_err(pg_err)?;
        self.with(async |c| {
            c.execute(
                "INSERT INTO volley_functions (name, doc) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET doc = EXCLUDED.doc",
                &[&key, &doc],
            )
            .await
            .map(drop)
        })
        .await
    }

    pub async fn delete_function(&self, name: &str) -> Result<()> {
        self.with(async |c| c.execute("DELETE FROM volley_functions WHERE name = $1", &[&name]).await.map(drop)).await
    }

    pub async fn list_functions(&self) -> Result<Vec<FunctionInfo>> {
        let rows = self.with(async |c| c.query("SELECT doc FROM volley_functions ORDER BY name", &[]).await).await?;
        rows.iter().map(|r| decode(r.get::<_, &str>(0))).collect()
    }
}
