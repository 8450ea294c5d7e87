//! What the dashboard reads besides bursts: pages of burst summaries and the
//! overview of a namespace. Both come from the store's summary index, never
//! from decoding whole bursts.

use volley_proto::api::BurstState;
use volley_proto::dashboard::{BurstCounts, BurstPage, Overview, ThroughputBucket};
use volley_proto::now_micros;

use super::ControlPlane;
use crate::error::{Error, Result};
use crate::store::SummaryFilter;

/// Most summaries one page holds.
pub(crate) const MAX_PAGE: usize = 1000;
/// Failed bursts the overview lists.
const RECENT_FAILURES: usize = 10;
/// The overview's throughput: one bucket per minute of the last hour.
const BUCKET_US: u64 = 60_000_000;
const BUCKETS: u64 = 60;

impl ControlPlane {
    /// A page of the namespace's bursts that pass `filter`, newest first.
    pub(crate) async fn burst_page(&self, namespace: &str, filter: SummaryFilter) -> Result<BurstPage> {
        if !(1..=MAX_PAGE).contains(&filter.limit) {
            return Err(Error::BadRequest(format!("limit must be between 1 and {MAX_PAGE}, got {}", filter.limit)));
        }
        let (total, bursts) = self.store.summaries(namespace, &filter).await?;
        Ok(BurstPage { total, offset: filter.offset as u64, bursts })
    }

    /// The cluster's invokers and the namespace's bursts at a glance.
    pub(crate) async fn overview(&self, namespace: &str) -> Result<Overview> {
        let now = now_micros();
        let first = (now / BUCKET_US).saturating_sub(BUCKETS - 1) * BUCKET_US;
        let mut throughput: Vec<ThroughputBucket> =
            (0..BUCKETS).map(|i| ThroughputBucket { start: first + i * BUCKET_US, ..Default::default() }).collect();
        let mut counts = BurstCounts::default();
        let mut recent_failures = Vec::new();
        self.store
            .visit_summaries(namespace, |s| {
                counts.add(s.state);
                if s.state == BurstState::Failed && recent_failures.len() < RECENT_FAILURES {
                    recent_failures.push(s.clone());
                }
                let Some(bucket) = s.finished_at.filter(|&t| t >= first).map(|t| ((t - first) / BUCKET_US) as usize)
                else {
                    return;
                };
                if let Some(b) = throughput.get_mut(bucket) {
                    match s.state {
                        BurstState::Succeeded => b.succeeded += 1,
                        BurstState::Failed => b.failed += 1,
                        BurstState::Cancelled => b.cancelled += 1,
                        _ => {}
                    }
                }
            })
            .await?;
        Ok(Overview { now, invokers: self.invokers(), bursts: counts, recent_failures, throughput })
    }
}
