//! Workflows of bursts: `/v1/workflows` (deploy DAGs), `/v1/runs` (start,
//! follow, cancel runs), `/v1/events` (send and read CloudEvents) and
//! `/v1/triggers`. The engine behind them is `crate::flows`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use volley_proto::api::ErrorBody;
use volley_proto::flow::{
    Events, Ingested, LoggedEvent, Run, RunRequest, Source, SourceRequest, Timer, TimerRequest, Trigger,
    TriggerRequest, Workflow, WorkflowDefinition,
};

use super::extract::{Body, Items, Path, Query, check_id};
use crate::auth::Caller;
use crate::control_plane::ControlPlane;
use crate::error::Result;

type Plane = State<Arc<ControlPlane>>;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct WorkflowName {
    /// The workflow's name.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    name: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct RunId {
    /// The run's id.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    id: String,
}

/// Deploy a workflow (or replace it)
///
/// The definition is checked whole (a DAG's dependencies, cycles and
/// references; a state machine's states, transitions and paths) before it is
/// kept; it cannot be replaced while a run of it is going.
#[utoipa::path(put, path = "/v1/workflows/{name}", operation_id = "deploy_workflow", tag = "workflows", security(("api_key" = [])),
    params(WorkflowName), request_body = WorkflowDefinition,
    responses((status = 200, description = "deployed", body = Workflow),
              (status = "default", description = "the definition is wrong (the error says where), or refused", body = ErrorBody)))]
pub(crate) async fn deploy(
    State(plane): Plane,
    Caller(ns): Caller,
    Path(WorkflowName { name }): Path<WorkflowName>,
    Body(definition): Body<WorkflowDefinition>,
) -> Result<Json<Workflow>> {
    check_id("workflow", &name)?;
    Ok(Json(plane.flows()?.deploy(&ns, &name, definition).await?))
}

/// Your deployed workflows
#[utoipa::path(get, path = "/v1/workflows", operation_id = "list_workflows", tag = "workflows", security(("api_key" = [])),
    responses((status = 200, description = "the workflows", body = Vec<Workflow>),
              (status = "default", description = "refused", body = ErrorBody)))]
pub(crate) async fn list(State(plane): Plane, Caller(ns): Caller) -> Result<Json<Vec<Workflow>>> {
    Ok(Json(plane.flows()?.workflows(&ns).await?))
}

/// One deployed workflow, with its definition
#[utoipa::path(get, path = "/v1/workflows/{name}", operation_id = "get_workflow", tag = "workflows", security(("api_key" = [])),
    params(WorkflowName),
    responses((status = 200, description = "the workflow", body = Workflow),
              (status = "default", description = "no such workflow, or refused", body = ErrorBody)))]
pub(crate) async fn get(
    State(plane): Plane,
    Caller(ns): Caller,
    Path(WorkflowName { name }): Path<WorkflowName>,
) -> Result<Json<Workflow>> {
    check_id("workflow", &name)?;
    Ok(Json(plane.flows()?.workflow(&ns, &name).await?))
}

/// Remove a workflow that has no run going
#[utoipa::path(delete, path = "/v1/workflows/{name}", operation_id = "delete_workflow", tag = "workflows", security(("api_key" = [])),
    params(WorkflowName),
    responses((status = 204, description = "removed"),
              (status = "default", description = "no such workflow, a run of it is going, or refused", body = ErrorBody)))]
pub(crate) async fn delete(
    State(plane): Plane,
    Caller(ns): Caller,
    Path(WorkflowName { name }): Path<WorkflowName>,
) -> Result<StatusCode> {
    check_id("workflow", &name)?;
    plane.flows()?.undeploy(&ns, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Start a run of a deployed workflow
///
/// The run is durable before the answer: a controller restart resumes it
/// where it was, and no step's burst starts twice.
#[utoipa::path(post, path = "/v1/runs", operation_id = "start_run", tag = "workflows", security(("api_key" = [])),
    request_body = RunRequest,
    responses((status = 201, description = "started", body = Run,
               links(("get" = (operation_id = "get_run", parameters(("id" = "$response.body#/id")))),
                     ("wait" = (operation_id = "wait_run", parameters(("id" = "$response.body#/id")))),
                     ("cancel" = (operation_id = "cancel_run", parameters(("id" = "$response.body#/id")))))),
              (status = "default", description = "no such workflow, or refused", body = ErrorBody)))]
pub(crate) async fn start(
    State(plane): Plane,
    Caller(ns): Caller,
    Body(request): Body<RunRequest>,
) -> Result<(StatusCode, Json<Run>)> {
    check_id("workflow", &request.workflow)?;
    Ok((StatusCode::CREATED, Json(plane.flows()?.start_run(&ns, request).await?)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RunsQuery {
    /// Only the runs of this workflow.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    workflow: Option<String>,
    /// How many runs, newest first.
    #[serde(default = "default_limit")]
    #[param(minimum = 1, maximum = 1000, default = 50)]
    limit: usize,
}

fn default_limit() -> usize {
    50
}

fn check_limit(limit: usize) -> Result<usize> {
    if (1..=1000).contains(&limit) {
        Ok(limit)
    } else {
        Err(crate::error::Error::BadRequest(format!("limit must be 1 to 1000, got {limit}")))
    }
}

/// Your runs, newest first
#[utoipa::path(get, path = "/v1/runs", operation_id = "list_runs", tag = "workflows", security(("api_key" = [])), params(RunsQuery),
    responses((status = 200, description = "the runs", body = Vec<Run>),
              (status = "default", description = "refused", body = ErrorBody)))]
pub(crate) async fn runs(
    State(plane): Plane,
    Caller(ns): Caller,
    Query(q): Query<RunsQuery>,
) -> Result<Json<Vec<Run>>> {
    if let Some(w) = &q.workflow {
        check_id("workflow", w)?;
    }
    Ok(Json(plane.flows()?.runs(&ns, q.workflow.as_deref(), check_limit(q.limit)?).await?))
}

/// One run, with every step's state, bursts, output and errors
#[utoipa::path(get, path = "/v1/runs/{id}", operation_id = "get_run", tag = "workflows", security(("api_key" = [])), params(RunId),
    responses((status = 200, description = "the run", body = Run),
              (status = "default", description = "no such run, or refused", body = ErrorBody)))]
pub(crate) async fn run(State(plane): Plane, Caller(ns): Caller, Path(RunId { id }): Path<RunId>) -> Result<Json<Run>> {
    check_id("run", &id)?;
    Ok(Json(plane.flows()?.run(&ns, &id).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WaitQuery {
    /// How long to wait for the end, in milliseconds.
    #[serde(default)]
    #[param(minimum = 0, maximum = 30000, default = 0)]
    timeout_ms: u64,
}

/// The run once it has ended, or as it is when the wait runs out
#[utoipa::path(get, path = "/v1/runs/{id}/wait", operation_id = "wait_run", tag = "workflows", security(("api_key" = [])),
    params(RunId, WaitQuery),
    responses((status = 200, description = "the run, ended or not", body = Run),
              (status = "default", description = "no such run, or refused", body = ErrorBody)))]
pub(crate) async fn wait(
    State(plane): Plane,
    Caller(ns): Caller,
    Path(RunId { id }): Path<RunId>,
    Query(q): Query<WaitQuery>,
) -> Result<Json<Run>> {
    check_id("run", &id)?;
    if q.timeout_ms > 30_000 {
        return Err(crate::error::Error::BadRequest(format!("timeout_ms must be 0 to 30000, got {}", q.timeout_ms)));
    }
    let timeout = Duration::from_millis(q.timeout_ms);
    Ok(Json(plane.flows()?.wait_run(&ns, &id, timeout).await?))
}

/// Cancel a run: its running bursts are cancelled, no further step starts
#[utoipa::path(post, path = "/v1/runs/{id}/cancel", operation_id = "cancel_run", tag = "workflows", security(("api_key" = [])),
    params(RunId),
    responses((status = 200, description = "the run, cancelled", body = Run),
              (status = "default", description = "no such run, it has ended, or refused", body = ErrorBody)))]
pub(crate) async fn cancel(
    State(plane): Plane,
    Caller(ns): Caller,
    Path(RunId { id }): Path<RunId>,
) -> Result<Json<Run>> {
    check_id("run", &id)?;
    Ok(Json(plane.flows()?.cancel_run(&ns, &id).await?))
}

/// Send events (CloudEvents 1.0 JSON, one or a list of up to 1000)
///
/// Each is logged and applied to the triggers it matches once: an event
/// whose source and id were seen before is counted as a duplicate and not
/// applied again. The answer comes once they are durable.
#[utoipa::path(post, path = "/v1/events", operation_id = "send_events", tag = "events", security(("api_key" = [])),
    request_body = Events,
    responses((status = 202, description = "logged", body = Ingested),
              (status = "default", description = "a malformed event (the error names it), or refused", body = ErrorBody)))]
pub(crate) async fn send(
    State(plane): Plane,
    Caller(ns): Caller,
    Items(events): Items<Events>,
) -> Result<(StatusCode, Json<Ingested>)> {
    Ok((StatusCode::ACCEPTED, Json(plane.flows()?.send(&ns, events.into_vec()).await?)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// Only events logged after this position (`seq`).
    #[serde(default)]
    #[param(minimum = 0, maximum = 9223372036854775807_i64, default = 0)]
    after: i64,
    /// How many, oldest first.
    #[serde(default = "default_limit")]
    #[param(minimum = 1, maximum = 1000, default = 50)]
    limit: usize,
}

/// Your logged events, oldest first (the platform's own and those sent)
#[utoipa::path(get, path = "/v1/events", operation_id = "list_events", tag = "events", security(("api_key" = [])), params(EventsQuery),
    responses((status = 200, description = "the events", body = Vec<LoggedEvent>),
              (status = "default", description = "refused", body = ErrorBody)))]
pub(crate) async fn events(
    State(plane): Plane,
    Caller(ns): Caller,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Vec<LoggedEvent>>> {
    let after = u64::try_from(q.after)
        .map_err(|_| crate::error::Error::BadRequest(format!("after must be 0 or more, got {}", q.after)))?;
    Ok(Json(plane.flows()?.events(&ns, after, check_limit(q.limit)?).await?))
}

/// Your triggers, with their context (a join's arrivals so far)
#[utoipa::path(get, path = "/v1/triggers", operation_id = "list_triggers", tag = "events", security(("api_key" = [])),
    responses((status = 200, description = "the triggers", body = Vec<Trigger>),
              (status = "default", description = "refused", body = ErrorBody)))]
pub(crate) async fn triggers(State(plane): Plane, Caller(ns): Caller) -> Result<Json<Vec<Trigger>>> {
    Ok(Json(plane.flows()?.triggers(&ns).await?))
}

/// Make a trigger: when events matching it come and its condition holds, it acts
///
/// Checked whole first (the condition's JSONPaths, each action and the
/// `${event...}` / `${context...}` references in it); it listens from the next event on.
#[utoipa::path(post, path = "/v1/triggers", operation_id = "create_trigger", tag = "events", security(("api_key" = [])),
    request_body = TriggerRequest,
    responses((status = 201, description = "listening", body = Trigger,
               links(("delete" = (operation_id = "delete_trigger", parameters(("id" = "$response.body#/id")))))),
              (status = "default", description = "wrong (the error says where), it exists, or refused", body = ErrorBody)))]
pub(crate) async fn create_trigger(
    State(plane): Plane,
    Caller(ns): Caller,
    Body(request): Body<TriggerRequest>,
) -> Result<(StatusCode, Json<Trigger>)> {
    check_id("trigger", &request.id)?;
    Ok((StatusCode::CREATED, Json(plane.flows()?.create_trigger(&ns, request).await?)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct TriggerId {
    /// The trigger's id (yours, or a run's own: `run/RUN/STEP`).
    #[param(pattern = "^[A-Za-z0-9_/-]{1,200}$")]
    id: String,
}

/// Remove a trigger you made (a workflow run's own go with the run)
#[utoipa::path(delete, path = "/v1/triggers/{id}", operation_id = "delete_trigger", tag = "events", security(("api_key" = [])),
    params(TriggerId),
    responses((status = 204, description = "removed"),
              (status = "default", description = "no such trigger, it is a run's, or refused", body = ErrorBody)))]
pub(crate) async fn delete_trigger(
    State(plane): Plane,
    Caller(ns): Caller,
    Path(TriggerId { id }): Path<TriggerId>,
) -> Result<StatusCode> {
    let ok = !id.is_empty() && id.len() <= 200 && id.chars().all(|c| c.is_ascii_alphanumeric() || "_/-".contains(c));
    if !ok {
        return Err(crate::error::Error::BadRequest(format!(
            "trigger id {id:?} must be 1 to 200 characters from A-Z a-z 0-9 _ / -"
        )));
    }
    plane.flows()?.delete_trigger(&ns, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Make a timer: an event `volley.timer.fired` every N seconds or on a cron schedule
///
/// Its firings are durable: a controller that was down fires the slot it
/// missed once on restart (not every slot it missed), and a slot never fires twice.
#[utoipa::path(post, path = "/v1/timers", operation_id = "create_timer", tag = "events", security(("api_key" = [])),
    request_body = TimerRequest,
    responses((status = 201, description = "scheduled", body = Timer,
               links(("delete" = (operation_id = "delete_timer", parameters(("id" = "$response.body#/id")))))),
              (status = "default", description = "wrong (the error says what), it exists, or refused", body = ErrorBody)))]
pub(crate) async fn create_timer(
    State(plane): Plane,
    Caller(ns): Caller,
    Body(request): Body<TimerRequest>,
) -> Result<(StatusCode, Json<Timer>)> {
    check_id("timer", &request.id)?;
    Ok((StatusCode::CREATED, Json(plane.flows()?.create_timer(&ns, request).await?)))
}

/// Your timers, with how often each fired and when it fires next
#[utoipa::path(get, path = "/v1/timers", operation_id = "list_timers", tag = "events", security(("api_key" = [])),
    responses((status = 200, description = "the timers", body = Vec<Timer>),
              (status = "default", description = "refused", body = ErrorBody)))]
pub(crate) async fn timers(State(plane): Plane, Caller(ns): Caller) -> Result<Json<Vec<Timer>>> {
    Ok(Json(plane.flows()?.timers(&ns).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct TimerId {
    /// The timer's (or source's) id.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    id: String,
}

/// Remove a timer
#[utoipa::path(delete, path = "/v1/timers/{id}", operation_id = "delete_timer", tag = "events", security(("api_key" = [])),
    params(TimerId),
    responses((status = 204, description = "removed"),
              (status = "default", description = "no such timer, or refused", body = ErrorBody)))]
pub(crate) async fn delete_timer(
    State(plane): Plane,
    Caller(ns): Caller,
    Path(TimerId { id }): Path<TimerId>,
) -> Result<StatusCode> {
    check_id("timer", &id)?;
    plane.flows()?.delete_timer(&ns, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Watch a storage prefix: each object that appears there is an event
///
/// `volley.storage.object.created` from `volley/storage/ID`, subject the key,
/// data `{url, key, size}`; what the prefix holds when the source is made is
/// its starting point, not reported.
#[utoipa::path(post, path = "/v1/sources", operation_id = "create_source", tag = "events", security(("api_key" = [])),
    request_body = SourceRequest,
    responses((status = 201, description = "watching", body = Source,
               links(("delete" = (operation_id = "delete_source", parameters(("id" = "$response.body#/id")))))),
              (status = "default", description = "wrong (the error says what), it exists, or refused", body = ErrorBody)))]
pub(crate) async fn create_source(
    State(plane): Plane,
    Caller(ns): Caller,
    Body(request): Body<SourceRequest>,
) -> Result<(StatusCode, Json<Source>)> {
    check_id("source", &request.id)?;
    Ok((StatusCode::CREATED, Json(plane.flows()?.create_source(&ns, request).await?)))
}

/// Your sources, with how many listings and reports each made
#[utoipa::path(get, path = "/v1/sources", operation_id = "list_sources", tag = "events", security(("api_key" = [])),
    responses((status = 200, description = "the sources", body = Vec<Source>),
              (status = "default", description = "refused", body = ErrorBody)))]
pub(crate) async fn sources(State(plane): Plane, Caller(ns): Caller) -> Result<Json<Vec<Source>>> {
    Ok(Json(plane.flows()?.sources(&ns).await?))
}

/// Stop watching
#[utoipa::path(delete, path = "/v1/sources/{id}", operation_id = "delete_source", tag = "events", security(("api_key" = [])),
    params(TimerId),
    responses((status = 204, description = "removed"),
              (status = "default", description = "no such source, or refused", body = ErrorBody)))]
pub(crate) async fn delete_source(
    State(plane): Plane,
    Caller(ns): Caller,
    Path(TimerId { id }): Path<TimerId>,
) -> Result<StatusCode> {
    check_id("source", &id)?;
    plane.flows()?.delete_source(&ns, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
