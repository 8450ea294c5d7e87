//! The HTTP API: JSON under `/v1`, plus `/healthz` and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use serde::Deserialize;
use std::convert::Infallible;
use volley_proto::api::{Burst, BurstLogs, BurstRequest, FunctionInfo};
use volley_proto::cluster::{Command, Event, InvokerInfo, Registered, Registration};

use crate::auth::{Caller, InvokerCaller, MetricsCaller};
use crate::core::Core;
use crate::error::{Error, Result};

/// Largest function binary accepted.
const MAX_BINARY: usize = 512 << 20;
/// Longest a client may ask a long poll to wait.
const MAX_WAIT: Duration = Duration::from_secs(30);

pub(crate) fn router(core: Arc<Core>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/v1/functions", get(functions))
        .route(
            "/v1/functions/{name}",
            get(get_function).put(deploy).delete(delete_function).layer(DefaultBodyLimit::max(MAX_BINARY)),
        )
        .route("/v1/blobs/{digest}", get(blob))
        .route("/v1/bursts", post(create_burst).get(list_bursts))
        .route("/v1/bursts/{id}", get(get_burst))
        .route("/v1/bursts/{id}/wait", get(wait_burst))
        .route("/v1/bursts/{id}/events", get(burst_events))
        .route("/v1/openapi.json", get(|| async { Json(crate::openapi::document()) }))
        .route("/v1/bursts/{id}/cancel", post(cancel_burst))
        .route("/v1/bursts/{id}/logs", get(burst_logs))
        .route("/v1/invokers", post(register).get(list_invokers))
        .route("/v1/invokers/{id}/commands", get(commands))
        .route("/v1/invokers/{id}/events", post(events))
        .fallback(|| async { Error::NotFound("no such endpoint; the API lives under /v1".into()) })
        .with_state(core)
}

/// A JSON body whose rejection is reported in the API's error format.
fn body<T>(parsed: std::result::Result<Json<T>, JsonRejection>) -> Result<T> {
    parsed.map(|Json(v)| v).map_err(|e| Error::BadRequest(format!("malformed request body: {}", e.body_text())))
}

async fn functions(State(core): State<Arc<Core>>, Caller(ns): Caller) -> Json<Vec<FunctionInfo>> {
    Json(core.functions.list(&ns))
}

async fn get_function(
    State(core): State<Arc<Core>>,
    Caller(ns): Caller,
    Path(name): Path<String>,
) -> Result<Json<FunctionInfo>> {
    core.functions.get(&ns, &name).map(Json).ok_or_else(|| Error::NotFound(format!("no function {name:?}")))
}

#[derive(Deserialize)]
struct DeployQuery {
    #[serde(default)]
    description: String,
}

/// `PUT /v1/functions/{name}` with the binary as the body: deploys (or replaces) a function.
async fn deploy(
    State(core): State<Arc<Core>>,
    Caller(ns): Caller,
    Path(name): Path<String>,
    Query(q): Query<DeployQuery>,
    binary: Bytes,
) -> Result<(StatusCode, Json<FunctionInfo>)> {
    let info = core.functions.deploy(&core.store, &ns, &name, &q.description, &binary).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

async fn delete_function(
    State(core): State<Arc<Core>>,
    Caller(ns): Caller,
    Path(name): Path<String>,
) -> Result<StatusCode> {
    core.functions.delete(&core.store, &ns, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A deployed binary, by digest (what invokers fetch and cache).
async fn blob(State(core): State<Arc<Core>>, _: InvokerCaller, Path(digest): Path<String>) -> Result<Vec<u8>> {
    let path = core.functions.blob_path(&digest)?;
    tokio::fs::read(&path).await.map_err(|_| Error::NotFound(format!("no blob {digest}")))
}

async fn create_burst(
    State(core): State<Arc<Core>>,
    Caller(ns): Caller,
    request: std::result::Result<Json<BurstRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Burst>)> {
    let burst = core.submit(&ns, body(request)?).await?;
    Ok((StatusCode::CREATED, Json(burst)))
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    50
}

async fn list_bursts(
    State(core): State<Arc<Core>>,
    Caller(ns): Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Burst>>> {
    let mut list = core.store.list_bursts(&ns, q.limit.clamp(1, 1000)).await?;
    // Active bursts are fresher in memory than in the store.
    {
        let state = core.lock();
        for b in &mut list {
            if let Some(a) = state.active.get(&b.id) {
                *b = a.burst.clone();
            }
        }
    }
    Ok(Json(list))
}

async fn get_burst(State(core): State<Arc<Core>>, Caller(ns): Caller, Path(id): Path<String>) -> Result<Json<Burst>> {
    Ok(Json(core.burst(&ns, &id).await?))
}

#[derive(Deserialize)]
struct WaitQuery {
    #[serde(default)]
    timeout_ms: u64,
}

/// Returns the burst once it has ended, or as it is when the wait runs out.
async fn wait_burst(
    State(core): State<Arc<Core>>,
    Caller(ns): Caller,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Result<Json<Burst>> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(q.timeout_ms).min(MAX_WAIT);
    loop {
        let finished = core.finished.notified();
        let burst = core.burst(&ns, &id).await?;
        let active = core.lock().active.contains_key(&id);
        if burst.state.is_final() && !active {
            return Ok(Json(burst));
        }
        if tokio::time::timeout_at(deadline, finished).await.is_err() {
            return Ok(Json(core.burst(&ns, &id).await?));
        }
    }
}

/// Server-sent events: the burst (as JSON) whenever its progress changes, at
/// most ten times a second, until it has ended.
async fn burst_events(
    State(core): State<Arc<Core>>,
    Caller(ns): Caller,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = std::result::Result<SseEvent, Infallible>>>> {
    core.burst(&ns, &id).await?;
    let stream = futures::stream::unfold(Some((core, ns, id, String::new())), |state| async move {
        let (core, ns, id, last) = state?;
        loop {
            let changed = core.changed.notified();
            let burst = core.burst(&ns, &id).await.ok()?;
            let ended = burst.state.is_final() && !core.lock().active.contains_key(&id);
            let progress = progress_of(&burst);
            if progress != last {
                drop(changed);
                let event = SseEvent::default().event("burst").json_data(&burst).ok()?;
                let next = (!ended).then_some((core, ns, id, progress));
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Some((Ok(event), next));
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), changed).await;
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// What a progress event is about: the state and how many workers got how far.
fn progress_of(b: &Burst) -> String {
    let placed = b.workers.iter().filter(|w| w.pack.is_some()).count();
    let started = b.workers.iter().filter(|w| w.started_at.is_some()).count();
    let finished = b.workers.iter().filter(|w| w.finished_at.is_some()).count();
    format!("{}:{placed}:{started}:{finished}", b.state.name())
}

async fn cancel_burst(
    State(core): State<Arc<Core>>,
    Caller(ns): Caller,
    Path(id): Path<String>,
) -> Result<Json<Burst>> {
    core.burst(&ns, &id).await?;
    core.cancel(&id)?;
    core.changed.notify_waiters();
    Ok(Json(core.burst(&ns, &id).await?))
}

#[derive(Deserialize)]
struct LogsQuery {
    /// Only this worker's lines (those it wrote with `Worker::log`, and its panic).
    rank: Option<usize>,
}

async fn burst_logs(
    State(core): State<Arc<Core>>,
    Caller(ns): Caller,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Json<BurstLogs>> {
    let burst = core.burst(&ns, &id).await?;
    let mut logs = core.store.get_logs(&id).await?.unwrap_or_default();
    if let Some(rank) = q.rank {
        let pack = burst.workers.get(rank).and_then(|w| w.pack);
        let tag = format!("[rank {rank}] ");
        let only = |text: &str| text.lines().filter(|l| l.starts_with(&tag)).map(|l| format!("{l}\n")).collect();
        logs.packs.retain(|p| Some(p.pack) == pack);
        for p in &mut logs.packs {
            p.stdout = only(&p.stdout);
            p.stderr = only(&p.stderr);
        }
    }
    Ok(Json(logs))
}

async fn register(
    State(core): State<Arc<Core>>,
    _: InvokerCaller,
    registration: std::result::Result<Json<Registration>, JsonRejection>,
) -> Result<Json<Registered>> {
    let registration = body(registration)?;
    if registration.slots == 0 {
        return Err(Error::BadRequest("an invoker must offer at least one slot".into()));
    }
    let invoker_id = core.lock().register(registration);
    Ok(Json(Registered { invoker_id, heartbeat_ms: core.opts.heartbeat_timeout.as_millis() as u64 }))
}

async fn list_invokers(State(core): State<Arc<Core>>, _: Caller) -> Json<Vec<InvokerInfo>> {
    Json(core.lock().invokers())
}

#[derive(Deserialize)]
struct CommandsQuery {
    #[serde(default)]
    wait_ms: u64,
    #[serde(default)]
    warm: usize,
}

/// The invoker's long poll; the start of every call counts as a heartbeat (not its
/// end: an invoker cut off mid-poll must not look alive when the poll times out).
async fn commands(
    State(core): State<Arc<Core>>,
    _: InvokerCaller,
    Path(id): Path<String>,
    Query(q): Query<CommandsQuery>,
) -> Result<Json<Vec<Command>>> {
    let wake = {
        let mut state = core.lock();
        let invoker = state.invoker_mut(&id).ok_or_else(|| forgotten(&id))?;
        invoker.seen();
        invoker.warm = q.warm;
        if !invoker.commands.is_empty() {
            return Ok(Json(std::mem::take(&mut invoker.commands)));
        }
        invoker.wake.clone()
    };
    // A poll never outlasts a third of the heartbeat timeout, so a live invoker
    // always calls again in time.
    let wait = Duration::from_millis(q.wait_ms).min(MAX_WAIT).min(core.opts.heartbeat_timeout / 3);
    let _ = tokio::time::timeout(wait, wake.notified()).await;
    let mut state = core.lock();
    let invoker = state.invoker_mut(&id).ok_or_else(|| forgotten(&id))?;
    Ok(Json(std::mem::take(&mut invoker.commands)))
}

fn forgotten(id: &str) -> Error {
    Error::NotFound(format!(
        "invoker {id} is not registered (it was declared lost, or the controller restarted); register again"
    ))
}

async fn events(
    State(core): State<Arc<Core>>,
    _: InvokerCaller,
    Path(id): Path<String>,
    events: std::result::Result<Json<Vec<Event>>, JsonRejection>,
) -> Result<Json<serde_json::Value>> {
    let events = body(events)?;
    let results = events.iter().any(|e| matches!(e, Event::WorkerFinished { .. } | Event::PackExited { .. }));
    {
        let mut state = core.lock();
        state.invoker_mut(&id).ok_or_else(|| forgotten(&id))?.seen();
        for event in events {
            state.apply(&id, event);
        }
    }
    core.changed.notify_waiters();
    // Acknowledged means saved: results the invoker reported are never dropped.
    // (Progress events need no such wait: they are on the start-up path.)
    if results {
        core.flush().await?;
    }
    Ok(Json(serde_json::json!({ "ok": true })))
}

async fn metrics(State(core): State<Arc<Core>>, _: MetricsCaller) -> impl IntoResponse {
    let state = core.lock();
    let invokers = state.invokers();
    let ready = invokers.iter().filter(|i| i.status == "ready").count();
    let free: usize = invokers.iter().filter(|i| i.status == "ready").map(|i| i.free_slots).sum();
    let total: usize = invokers.iter().filter(|i| i.status == "ready").map(|i| i.registration.slots).sum();
    let text = format!(
        "# HELP volley_bursts_submitted_total Bursts accepted since the controller started.\n\
         # TYPE volley_bursts_submitted_total counter\n\
         volley_bursts_submitted_total {}\n\
         # HELP volley_bursts_active Bursts queued or running.\n\
         # TYPE volley_bursts_active gauge\n\
         volley_bursts_active {}\n\
         # HELP volley_bursts_queued Bursts waiting for capacity.\n\
         # TYPE volley_bursts_queued gauge\n\
         volley_bursts_queued {}\n\
         # HELP volley_invokers Invokers by status.\n\
         # TYPE volley_invokers gauge\n\
         volley_invokers{{status=\"ready\"}} {}\n\
         volley_invokers{{status=\"lost\"}} {}\n\
         # HELP volley_slots Worker slots of ready invokers.\n\
         # TYPE volley_slots gauge\n\
         volley_slots{{kind=\"total\"}} {}\n\
         volley_slots{{kind=\"free\"}} {}\n",
        core.submitted.load(Ordering::Relaxed),
        state.active.len(),
        state.queued(),
        ready,
        invokers.len() - ready,
        total,
        free,
    );
    ([("content-type", "text/plain; version=0.0.4")], text)
}
