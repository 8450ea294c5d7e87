//! What the dashboard's views read besides bursts themselves: the overview
//! of a namespace and pages of burst summaries (a list of a thousand bursts
//! must not carry every worker of each).

use serde::{Deserialize, Serialize};

use crate::api::{Burst, BurstState, Granularity};
use crate::cluster::InvokerInfo;

/// `GET /v1/overview`: the cluster and the caller's bursts at a glance.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    /// The controller's clock, in microseconds since the Unix epoch.
    pub now: u64,
    pub invokers: Vec<InvokerInfo>,
    /// How many of the caller's bursts are in each state.
    pub bursts: BurstCounts,
    /// The caller's latest failed bursts, newest first (at most 10).
    pub recent_failures: Vec<BurstSummary>,
    /// Bursts of the caller that ended in each minute of the last hour, oldest first.
    pub throughput: Vec<ThroughputBucket>,
}

/// How many bursts are in each state.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BurstCounts {
    pub queued: u64,
    pub starting: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
}

impl BurstCounts {
    /// Counts one more burst in `state`.
    pub fn add(&mut self, state: BurstState) {
        *match state {
            BurstState::Queued => &mut self.queued,
            BurstState::Starting => &mut self.starting,
            BurstState::Running => &mut self.running,
            BurstState::Succeeded => &mut self.succeeded,
            BurstState::Failed => &mut self.failed,
            BurstState::Cancelled => &mut self.cancelled,
        } += 1;
    }
}

/// Bursts that ended within one minute.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThroughputBucket {
    /// The minute's start, in microseconds since the Unix epoch.
    pub start: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
}

/// `GET /v1/bursts/summaries`: one page of bursts, newest first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BurstPage {
    /// How many bursts match the filters (all pages).
    pub total: u64,
    /// Where this page starts among them.
    pub offset: u64,
    pub bursts: Vec<BurstSummary>,
}

/// A burst without its workers and packs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BurstSummary {
    pub id: String,
    pub namespace: String,
    pub function: String,
    pub workers: usize,
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::api::granularity_schema))]
    pub granularity: Granularity,
    /// The transport its packs use (the request's, or the one chosen for it).
    pub transport: Option<String>,
    pub state: BurstState,
    pub error: Option<String>,
    pub submitted_at: u64,
    pub placed_at: Option<u64>,
    pub running_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub start_spread_us: Option<u64>,
    pub attempt: u32,
    /// The rank whose own failure failed the burst, if a worker caused it.
    pub failed_rank: Option<usize>,
}

impl From<&Burst> for BurstSummary {
    fn from(b: &Burst) -> Self {
        BurstSummary {
            id: b.id.clone(),
            namespace: b.namespace.clone(),
            function: b.request.function.clone(),
            workers: b.request.workers,
            granularity: b.request.granularity,
            transport: b.transport.clone().or_else(|| b.request.transport.clone()),
            state: b.state,
            error: b.error.clone(),
            submitted_at: b.submitted_at,
            placed_at: b.placed_at,
            running_at: b.running_at,
            finished_at: b.finished_at,
            start_spread_us: b.start_spread_us,
            attempt: b.attempt,
            failed_rank: b.failed_rank(),
        }
    }
}
