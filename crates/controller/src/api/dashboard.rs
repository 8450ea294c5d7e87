//! What the web dashboard reads besides bursts: `/v1/overview` and pages of
//! burst summaries (`/v1/bursts/summaries`), filtered and paged on the server.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use volley_proto::api::{BurstState, ErrorBody};
use volley_proto::dashboard::{BurstPage, Overview};

use super::extract::Query;
use crate::auth::Caller;
use crate::control_plane::ControlPlane;
use crate::error::{Error, Result};
use crate::store::SummaryFilter;

type Plane = State<Arc<ControlPlane>>;

/// The cluster and your bursts at a glance
///
/// Invokers with their slots and memory, how many of your bursts are in each
/// state, your latest failures, and how many of your bursts ended in each
/// minute of the last hour.
#[utoipa::path(get, path = "/v1/overview", operation_id = "overview", tag = "bursts", security(("api_key" = [])),
    responses((status = 200, description = "the overview", body = Overview),
              (status = "default", description = "refused", body = ErrorBody)))]
pub(crate) async fn overview(State(plane): Plane, Caller(ns): Caller) -> Result<Json<Overview>> {
    Ok(Json(plane.overview(&ns).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Skip this many matching bursts (newest first).
    #[serde(default)]
    #[param(minimum = 0, maximum = 9223372036854775807_i64, default = 0)]
    offset: i64,
    /// How many bursts.
    #[serde(default = "default_limit")]
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: usize,
    /// Only these states, separated by commas (`failed,cancelled`).
    #[param(
        pattern = r"^(queued|starting|running|succeeded|failed|cancelled)(,(queued|starting|running|succeeded|failed|cancelled))*$"
    )]
    state: Option<String>,
    /// Only bursts of this function.
    function: Option<String>,
    /// Only ids that start with this.
    q: Option<String>,
    /// Submitted at or after this time (µs since the Unix epoch).
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    since: Option<i64>,
    /// Submitted before this time (µs since the Unix epoch).
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    until: Option<i64>,
}

fn default_limit() -> usize {
    100
}

/// Your bursts as summaries (no workers), filtered and paged, newest first
#[utoipa::path(get, path = "/v1/bursts/summaries", operation_id = "burst_summaries", tag = "bursts", security(("api_key" = [])),
    params(PageQuery),
    responses((status = 200, description = "one page, and how many bursts match in all", body = BurstPage),
              (status = "default", description = "a filter is wrong, or refused", body = ErrorBody)))]
pub(crate) async fn summaries(
    State(plane): Plane,
    Caller(ns): Caller,
    Query(q): Query<PageQuery>,
) -> Result<Json<BurstPage>> {
    let filter = SummaryFilter {
        states: states(q.state.as_deref())?,
        function: q.function.filter(|f| !f.is_empty()),
        id_prefix: q.q.map(|p| p.trim().to_string()).filter(|p| !p.is_empty()),
        since: q.since.map(|t| whole("since", t)).transpose()?,
        until: q.until.map(|t| whole("until", t)).transpose()?,
        offset: whole("offset", q.offset)? as usize,
        limit: q.limit,
    };
    Ok(Json(plane.burst_page(&ns, filter).await?))
}

/// A query's number that must not be negative.
fn whole(name: &str, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| Error::BadRequest(format!("{name} must be 0 or more, got {value}")))
}

const STATES: [BurstState; 6] = [
    BurstState::Queued,
    BurstState::Starting,
    BurstState::Running,
    BurstState::Succeeded,
    BurstState::Failed,
    BurstState::Cancelled,
];

fn states(list: Option<&str>) -> Result<std::collections::HashSet<BurstState>> {
    let Some(list) = list else { return Ok(Default::default()) };
    list.split(',')
        .map(|name| {
            STATES.into_iter().find(|s| s.name() == name).ok_or_else(|| {
                let known: Vec<&str> = STATES.iter().map(|s| s.name()).collect();
                Error::BadRequest(format!("unknown state {name:?} in `state`; use {}", known.join(", ")))
            })
        })
        .collect()
}
