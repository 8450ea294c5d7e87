//! Burst summaries in memory, by namespace and id (ids sort by submit time),
//! so that a page of a long list or an overview reads small records instead of
//! decoding every worker of every stored burst. Loaded from the store once, at
//! the first read; kept current by every save that goes through [`Store`].

use std::collections::{BTreeMap, HashMap, HashSet};

use tokio::sync::Mutex;
use volley_proto::api::BurstState;
use volley_proto::dashboard::BurstSummary;

use super::Store;
use crate::error::Result;

/// Which summaries a page holds.
#[derive(Debug, Clone, Default)]
pub struct SummaryFilter {
    /// Only these states (empty: any).
    pub states: HashSet<BurstState>,
    /// Only this function.
    pub function: Option<String>,
    /// Only ids that start with this.
    pub id_prefix: Option<String>,
    /// Submitted at or after (µs).
    pub since: Option<u64>,
    /// Submitted before (µs).
    pub until: Option<u64>,
    pub offset: usize,
    pub limit: usize,
}

impl SummaryFilter {
    fn keeps(&self, s: &BurstSummary) -> bool {
        (self.states.is_empty() || self.states.contains(&s.state))
            && self.function.as_ref().is_none_or(|f| *f == s.function)
            && self.id_prefix.as_ref().is_none_or(|p| s.id.starts_with(p.as_str()))
            && self.since.is_none_or(|t| s.submitted_at >= t)
            && self.until.is_none_or(|t| s.submitted_at < t)
    }
}

#[derive(Default)]
pub(crate) struct Index {
    /// None until loaded; then every stored burst's summary.
    by_namespace: Mutex<Option<HashMap<String, BTreeMap<String, BurstSummary>>>>,
}

impl Index {
    /// Reads every summary from the store, the first time only. A save that
    /// happens meanwhile waits for the lock and then applies its summary
    /// again, which changes nothing if the scan already saw it.
    pub(super) async fn load(&self, store: &Store) -> Result<()> {
        let mut index = self.by_namespace.lock().await;
        if index.is_none() {
            let mut by_namespace: HashMap<String, BTreeMap<String, BurstSummary>> = HashMap::new();
            for s in store.scan_summaries().await? {
                by_namespace.entry(s.namespace.clone()).or_default().insert(s.id.clone(), s);
            }
            *index = Some(by_namespace);
        }
        Ok(())
    }

    /// Takes in bursts just saved (before loading, the scan will see them).
    pub(super) async fn saved(&self, bursts: &[volley_proto::api::Burst]) {
        let mut index = self.by_namespace.lock().await;
        let Some(by_namespace) = index.as_mut() else { return };
        for b in bursts {
            by_namespace.entry(b.namespace.clone()).or_default().insert(b.id.clone(), BurstSummary::from(b));
        }
    }

    pub(super) async fn page(&self, namespace: &str, filter: &SummaryFilter) -> (u64, Vec<BurstSummary>) {
        let index = self.by_namespace.lock().await;
        let Some(list) = index.as_ref().and_then(|m| m.get(namespace)) else { return (0, Vec::new()) };
        let mut total = 0u64;
        let mut page = Vec::new();
        for s in list.values().rev().filter(|s| filter.keeps(s)) {
            if total as usize >= filter.offset && page.len() < filter.limit {
                page.push(s.clone());
            }
            total += 1;
        }
        (total, page)
    }

    /// Shows `visit` every summary of `namespace`, newest first.
    pub(super) async fn visit(&self, namespace: &str, mut visit: impl FnMut(&BurstSummary)) {
        let index = self.by_namespace.lock().await;
        for s in index.as_ref().and_then(|m| m.get(namespace)).into_iter().flat_map(|l| l.values().rev()) {
            visit(s);
        }
    }
}
