//! How the packs of a burst learn each other's addresses before they connect.
//!
//! The caller supplies the rendezvous: the platform uses its controller;
//! standalone users pick a static list, an in-process board (several packs in
//! one process, as tests and benchmarks do) or a Redis hash.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::Notify;

use crate::error::{Error, Result};
use crate::mailbox::lock;

/// Publishes this pack's address and returns every pack's, in pack order.
pub trait Rendezvous: Send + Sync {
    /// The address `pack` should listen on, if the rendezvous fixes it in advance.
    fn assigned(&self, _pack: usize) -> Option<String> {
        None
    }

    /// Publishes `addr` for `pack` and waits until all `packs` addresses are known.
    fn exchange<'a>(
        &'a self,
        burst: &'a str,
        pack: usize,
        packs: usize,
        addr: String,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<String>>>;

    /// Forgets what the burst published (called once per pack when it closes).
    fn forget<'a>(&'a self, _burst: &'a str, _pack: usize) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// Every pack's address fixed in advance, in pack order.
#[derive(Debug, Clone)]
pub struct StaticRendezvous(pub Vec<String>);

impl Rendezvous for StaticRendezvous {
    fn assigned(&self, pack: usize) -> Option<String> {
        self.0.get(pack).cloned()
    }

    fn exchange<'a>(
        &'a self,
        _burst: &'a str,
        _pack: usize,
        packs: usize,
        _addr: String,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            if self.0.len() != packs {
                return Err(Error::invalid(format!(
                    "the static address list has {} entries but the burst has {packs} packs",
                    self.0.len()
                )));
            }
            Ok(self.0.clone())
        })
    }
}

/// A board shared by packs that live in one process.
#[derive(Default, Clone)]
pub struct LocalRendezvous {
    inner: Arc<LocalBoard>,
}

#[derive(Default)]
struct LocalBoard {
    bursts: Mutex<HashMap<String, Vec<Option<String>>>>,
    changed: Notify,
}

impl LocalRendezvous {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Rendezvous for LocalRendezvous {
    fn exchange<'a>(
        &'a self,
        burst: &'a str,
        pack: usize,
        packs: usize,
        addr: String,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let board = &self.inner;
            {
                let mut bursts = lock(&board.bursts);
                let slots = bursts.entry(burst.to_string()).or_insert_with(|| vec![None; packs]);
                if slots.len() != packs || pack >= packs {
                    return Err(Error::invalid(format!("pack {pack} of {packs} does not fit burst {burst}")));
                }
                slots[pack] = Some(addr);
            }
            board.changed.notify_waiters();
            let wait_all = async {
                loop {
                    let notified = board.changed.notified();
                    if let Some(all) = lock(&board.bursts).get(burst).and_then(|s| s.iter().cloned().collect()) {
                        return all;
                    }
                    notified.await;
                }
            };
            tokio::time::timeout(timeout, wait_all).await.map_err(|_| {
                Error::timeout(timeout, format!("the other packs of burst {burst} to publish their addresses"))
            })
        })
    }

    fn forget<'a>(&'a self, burst: &'a str, pack: usize) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut bursts = lock(&self.inner.bursts);
            if let Some(slots) = bursts.get_mut(burst) {
                if let Some(slot) = slots.get_mut(pack) {
                    *slot = None;
                }
                if slots.iter().all(Option::is_none) {
                    bursts.remove(burst);
                }
            }
            Ok(())
        })
    }
}

/// Addresses exchanged through one Redis hash per burst (`volley:{burst}:addrs`),
/// for packs in separate processes or on separate hosts that can all reach Redis.
#[cfg(feature = "redis")]
#[derive(Debug, Clone)]
pub struct RedisRendezvous {
    url: String,
}

#[cfg(feature = "redis")]
impl RedisRendezvous {
    /// Uses the Redis server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisRendezvous { url: url.into() }
    }

    fn key(burst: &str) -> String {
        format!("volley:{burst}:addrs")
    }

    async fn connection(&self) -> Result<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| Error::invalid(format!("bad Redis URL {:?}: {e}", self.url)))?;
        client.get_multiplexed_async_connection().await.map_err(|e| Error::transport("redis", e))
    }
}

#[cfg(feature = "redis")]
impl Rendezvous for RedisRendezvous {
    fn exchange<'a>(
        &'a self,
        burst: &'a str,
        pack: usize,
        packs: usize,
        addr: String,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let redis_err = |e: redis::RedisError| Error::transport("redis", format!("rendezvous: {e}"));
            let key = Self::key(burst);
            let mut conn = self.connection().await?;
            redis::pipe()
                .hset(&key, pack, &addr)
                .ignore()
                .expire(&key, (timeout.as_secs() as i64).max(1) * 4)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
                .map_err(redis_err)?;
            let deadline = tokio::time::Instant::now() + timeout;
            let mut backoff = Duration::from_millis(1);
            loop {
                let all: HashMap<usize, String> =
                    redis::cmd("HGETALL").arg(&key).query_async(&mut conn).await.map_err(redis_err)?;
                if (0..packs).all(|p| all.contains_key(&p)) {
                    return Ok((0..packs).map(|p| all[&p].clone()).collect());
                }
                if tokio::time::Instant::now() + backoff > deadline {
                    return Err(Error::timeout(
                        timeout,
                        format!("the other packs of burst {burst} to publish their addresses"),
                    ));
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
        })
    }

    fn forget<'a>(&'a self, burst: &'a str, pack: usize) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            // Redis deletes the hash with its last field.
            redis::cmd("HDEL")
                .arg(Self::key(burst))
                .arg(pack)
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| Error::transport("redis", e))
        })
    }
}
