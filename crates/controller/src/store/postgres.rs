//! The PostgreSQL store: the same JSON documents as the embedded store, in
//! three tables. One connection, re-opened if it drops.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};
use volley_proto::api::{Burst, BurstLogs, FunctionInfo};
use volley_proto::dashboard::BurstSummary;
use volley_proto::flow::LoggedEvent;

use super::{Batch, Docs};
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
CREATE TABLE IF NOT EXISTS volley_docs (tbl TEXT NOT NULL, key TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (tbl, key));
CREATE TABLE IF NOT EXISTS volley_events (seq BIGINT PRIMARY KEY, namespace TEXT NOT NULL, doc TEXT NOT NULL);
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

    /// Applies every change of `batch` in one transaction.
    pub(crate) async fn commit(&self, batch: Batch) -> Result<()> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = Some(connect(&self.url).await?);
        }
        let client = guard.as_mut().ok_or_else(|| Error::Store("no PostgreSQL connection".into()))?;
        let work = async {
            let txn = client.transaction().await?;
            // One statement per kind of change, whatever the batch's size.
            let (mut tables, mut keys, mut docs, mut gone_tables, mut gone_keys) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for ((table, key), doc) in &batch.changes {
                match doc {
                    Some(doc) => {
                        tables.push(table.name());
                        keys.push(key.as_str());
                        docs.push(doc.as_str());
                    }
                    None => {
                        gone_tables.push(table.name());
                        gone_keys.push(key.as_str());
                    }
                }
            }
            if !tables.is_empty() {
                txn.execute(
                    "INSERT INTO volley_docs (tbl, key, doc) SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[])
                     ON CONFLICT (tbl, key) DO UPDATE SET doc = EXCLUDED.doc",
                    &[&tables, &keys, &docs],
                )
                .await?;
            }
            if !gone_tables.is_empty() {
                txn.execute(
                    "DELETE FROM volley_docs WHERE (tbl, key) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))",
                    &[&gone_tables, &gone_keys],
                )
                .await?;
            }
            for b in &batch.bursts {
                let doc = serde_json::to_string(b).unwrap_or_default();
                txn.execute(
                    "INSERT INTO volley_bursts (id, namespace, finished, doc) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (id) DO UPDATE SET finished = EXCLUDED.finished, doc = EXCLUDED.doc",
                    &[&b.id, &b.namespace, &b.state.is_final(), &doc],
                )
                .await?;
            }
            if !batch.events.is_empty() {
                let seqs: Vec<i64> = batch.events.iter().map(|e| e.seq as i64).collect();
                let namespaces: Vec<&str> = batch.events.iter().map(|e| e.namespace.as_str()).collect();
                let docs: Vec<String> =
                    batch.events.iter().map(|e| serde_json::to_string(e).unwrap_or_default()).collect();
                txn.execute(
                    "INSERT INTO volley_events (seq, namespace, doc) SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[])",
                    &[&seqs, &namespaces, &docs],
                )
                .await?;
            }
            txn.commit().await
        };
        match tokio::time::timeout(Duration::from_secs(30), work).await {
            Ok(result) => result.map_err(pg_err),
            Err(_) => {
                *guard = None;
                Err(Error::Store("PostgreSQL did not answer within 30 s".into()))
            }
        }
    }

    pub(crate) async fn doc(&self, docs: Docs, key: &str) -> Result<Option<String>> {
        let row = self
            .with(async |c| {
                c.query_opt("SELECT doc FROM volley_docs WHERE tbl = $1 AND key = $2", &[&docs.name(), &key]).await
            })
            .await?;
        Ok(row.map(|r| r.get::<_, String>(0)))
    }

    pub(crate) async fn docs(&self, docs: Docs, prefix: &str) -> Result<Vec<(String, String)>> {
        // starts_with, without LIKE's wildcards getting in the way.
        let rows = self
            .with(async |c| {
                c.query(
                    "SELECT key, doc FROM volley_docs WHERE tbl = $1 AND left(key, length($2)) = $2 ORDER BY key",
                    &[&docs.name(), &prefix],
                )
                .await
            })
            .await?;
        Ok(rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, String>(1))).collect())
    }

    pub(crate) async fn events(&self, namespace: Option<&str>, after: u64, limit: usize) -> Result<Vec<LoggedEvent>> {
        let (after, limit) = (after.min(i64::MAX as u64) as i64, limit.min(i64::MAX as usize) as i64);
        let rows = self
            .with(async |c| {
                c.query(
                    "SELECT doc FROM volley_events WHERE seq > $1 AND ($2::TEXT IS NULL OR namespace = $2) ORDER BY seq LIMIT $3",
                    &[&after, &namespace, &limit],
                )
                .await
            })
            .await?;
        rows.iter().map(|r| decode(r.get::<_, &str>(0))).collect()
    }

    pub(crate) async fn delete_events_through(&self, seq: u64) -> Result<()> {
        let seq = seq.min(i64::MAX as u64) as i64;
        self.with(async |c| c.execute("DELETE FROM volley_events WHERE seq <= $1", &[&seq]).await).await?;
        Ok(())
    }

    pub(crate) async fn last_event(&self) -> Result<u64> {
        let row =
            self.with(async |c| c.query_one("SELECT COALESCE(MAX(seq), 0) FROM volley_events", &[]).await).await?;
        Ok(row.get::<_, i64>(0) as u64)
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

    pub async fn summaries(&self) -> Result<Vec<BurstSummary>> {
        let rows = self.with(async |c| c.query("SELECT doc FROM volley_bursts ORDER BY id DESC", &[]).await).await?;
        rows.iter().map(|r| decode::<Burst>(r.get::<_, &str>(0)).map(|b| BurstSummary::from(&b))).collect()
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
