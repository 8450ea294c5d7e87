//! `/v1/bursts`: start, list, look at, wait for, follow, cancel bursts, read their logs.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use utoipa::IntoParams;
use volley_proto::api::{Burst, BurstLogs, BurstRequest, ErrorBody};

use super::extract::{Body, Path, Query, check_id};
use crate::auth::Caller;
use crate::control_plane::ControlPlane;
use crate::error::Result;

type Plane = State<Arc<ControlPlane>>;

/// Start a burst
///
/// The burst is saved before the answer (it survives a controller restart)
/// and queued; it starts when the cluster has room for all of it.
#[utoipa::path(post, path = "/v1/bursts", operation_id = "create_burst", tag = "bursts", security(("api_key" = [])),
    request_body = BurstRequest,
    responses((status = 201, description = "accepted and queued", body = Burst,
               links(("get" = (operation_id = "get_burst", parameters(("id" = "$response.body#/id")))),
                     ("wait" = (operation_id = "wait_burst", parameters(("id" = "$response.body#/id")))),
                     ("events" = (operation_id = "burst_events", parameters(("id" = "$response.body#/id")))),
                     ("logs" = (operation_id = "burst_logs", parameters(("id" = "$response.body#/id")))),
                     ("cancel" = (operation_id = "cancel_burst", parameters(("id" = "$response.body#/id")))))),
              (status = "default", description = "refused", body = ErrorBody)))]
pub(crate) async fn create(
    State(plane): Plane,
    Caller(ns): Caller,
    Body(request): Body<BurstRequest>,
) -> Result<(StatusCode, Json<Burst>)> {
    Ok((StatusCode::CREATED, Json(plane.submit(&ns, request).await?)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// How many bursts, newest first.
    #[serde(default = "default_limit")]
    #[param(minimum = 1, maximum = 1000, default = 50)]
    limit: usize,
}

fn default_limit() -> usize {
    50
}

/// Your bursts, newest first
#[utoipa::path(get, path = "/v1/bursts", operation_id = "list_bursts", tag = "bursts", security(("api_key" = [])), params(ListQuery),
    responses((status = 200, description = "the bursts", body = Vec<Burst>),
              (status = "default", description = "refused", body = ErrorBody)))]
pub(crate) async fn list(
    State(plane): Plane,
    Caller(ns): Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Burst>>> {
    Ok(Json(plane.list_bursts(&ns, q.limit).await?))
}

/// One burst, with every worker's times and result
#[utoipa::path(get, path = "/v1/bursts/{id}", operation_id = "get_burst", tag = "bursts", security(("api_key" = [])), params(BurstId),
    responses((status = 200, description = "the burst", body = Burst),
              (status = "default", description = "no such burst, or refused", body = ErrorBody)))]
pub(crate) async fn get(
    State(plane): Plane,
    Caller(ns): Caller,
    Path(BurstId { id }): Path<BurstId>,
) -> Result<Json<Burst>> {
    check_id("burst", &id)?;
    Ok(Json(plane.burst(&ns, &id).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct BurstId {
    /// The burst's id.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    id: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WaitQuery {
    /// How long to wait for the end, in milliseconds.
    #[serde(default)]
    #[param(minimum = 0, maximum = 30000, default = 0)]
    timeout_ms: u64,
}

/// The burst once it has ended, or as it is when the wait runs out
#[utoipa::path(get, path = "/v1/bursts/{id}/wait", operation_id = "wait_burst", tag = "bursts", security(("api_key" = [])), params(BurstId, WaitQuery),
    responses((status = 200, description = "the burst, ended or not", body = Burst),
              (status = "default", description = "no such burst, or refused", body = ErrorBody)))]
pub(crate) async fn wait(
    State(plane): Plane,
    Caller(ns): Caller,
    Path(BurstId { id }): Path<BurstId>,
    Query(q): Query<WaitQuery>,
) -> Result<Json<Burst>> {
    check_id("burst", &id)?;
    Ok(Json(plane.wait(&ns, &id, Duration::from_millis(q.timeout_ms)).await?))
}

/// Server-sent events: the burst whenever its progress changes, until it ends
///
/// Each event is named `burst` and carries the burst as JSON; at most ten a second.
#[utoipa::path(get, path = "/v1/bursts/{id}/events", operation_id = "burst_events", tag = "bursts", security(("api_key" = [])), params(BurstId),
    responses((status = 200, description = "a stream of `burst` events", content_type = "text/event-stream", body = String),
              (status = "default", description = "no such burst, or refused", body = ErrorBody)))]
pub(crate) async fn events(
    State(plane): Plane,
    Caller(ns): Caller,
    Path(BurstId { id }): Path<BurstId>,
) -> Result<Sse<impl Stream<Item = std::result::Result<SseEvent, Infallible>>>> {
    check_id("burst", &id)?;
    plane.burst(&ns, &id).await?;
    let stream = futures::stream::unfold(Some((plane, ns, id, String::new())), |state| async move {
        let (plane, ns, id, last) = state?;
        loop {
            let changed = plane.changed.notified();
            let burst = plane.burst(&ns, &id).await.ok()?;
            let ended = burst.state.is_final() && !plane.is_active(&id);
            let progress = progress_of(&burst);
            if progress != last {
                drop(changed);
                let event = SseEvent::default().event("burst").json_data(&burst).ok()?;
                let next = (!ended).then_some((plane, ns, id, progress));
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Some((Ok(event), next));
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), changed).await;
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// What a progress event is about: the state, how many workers got how far,
/// and how many phases they have marked.
fn progress_of(b: &Burst) -> String {
    let placed = b.workers.iter().filter(|w| w.pack.is_some()).count();
    let started = b.workers.iter().filter(|w| w.started_at.is_some()).count();
    let finished = b.workers.iter().filter(|w| w.finished_at.is_some()).count();
    let phases: usize = b.workers.iter().map(|w| w.phases.len()).sum();
    format!("{}:{placed}:{started}:{finished}:{phases}", b.state.name())
}

/// Cancel a queued or running burst
#[utoipa::path(post, path = "/v1/bursts/{id}/cancel", operation_id = "cancel_burst", tag = "bursts", security(("api_key" = [])), params(BurstId),
    responses((status = 200, description = "the burst, ending", body = Burst),
              (status = "default", description = "no such burst, it has ended, or refused", body = ErrorBody)))]
pub(crate) async fn cancel(
    State(plane): Plane,
    Caller(ns): Caller,
    Path(BurstId { id }): Path<BurstId>,
) -> Result<Json<Burst>> {
    check_id("burst", &id)?;
    Ok(Json(plane.cancel(&ns, &id).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogsQuery {
    /// Only this worker's lines (those it wrote with `Worker::log`, and its panic).
    #[param(minimum = 0, maximum = 4294967295_u64)]
    rank: Option<u32>,
}

/// What each pack process printed
#[utoipa::path(get, path = "/v1/bursts/{id}/logs", operation_id = "burst_logs", tag = "bursts", security(("api_key" = [])), params(BurstId, LogsQuery),
    responses((status = 200, description = "each pack's output", body = BurstLogs),
              (status = "default", description = "no such burst or rank, or refused", body = ErrorBody)))]
pub(crate) async fn logs(
    State(plane): Plane,
    Caller(ns): Caller,
    Path(BurstId { id }): Path<BurstId>,
    Query(q): Query<LogsQuery>,
) -> Result<Json<BurstLogs>> {
    check_id("burst", &id)?;
    Ok(Json(plane.logs(&ns, &id, q.rank.map(|r| r as usize)).await?))
}
