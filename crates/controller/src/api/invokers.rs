//! `/v1/invokers`: invokers register, poll for commands and report events;
//! users list them.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use volley_proto::api::ErrorBody;
use volley_proto::cluster::{Command, Event, InvokerInfo, Leaving, Registered, Registration};

use super::extract::{Body, Items, Path, Query, check_id};
use crate::auth::{Caller, InvokerCaller};
use crate::control_plane::ControlPlane;
use crate::error::Result;

type Plane = State<Arc<ControlPlane>>;

/// Invokers, their capacity and status
#[utoipa::path(get, path = "/v1/invokers", operation_id = "list_invokers", tag = "invokers", security(("api_key" = [])),
    responses((status = 200, description = "every invoker, ready or lost", body = Vec<InvokerInfo>),
              (status = "default", description = "refused", body = ErrorBody)))]
pub(crate) async fn list(State(plane): Plane, _: Caller) -> Json<Vec<InvokerInfo>> {
    Json(plane.invokers())
}

/// Invoker: register
#[utoipa::path(post, path = "/v1/invokers", operation_id = "register_invoker", tag = "invokers", security(("invoker_token" = [])),
    request_body = Registration,
    responses((status = 200, description = "registered: poll for commands from now on", body = Registered,
               links(("commands" = (operation_id = "poll_commands", parameters(("id" = "$response.body#/invoker_id")))),
                     ("events" = (operation_id = "report_events", parameters(("id" = "$response.body#/invoker_id")))))),
              (status = "default", description = "refused", body = ErrorBody)))]
pub(crate) async fn register(
    State(plane): Plane,
    _: InvokerCaller,
    Body(r): Body<Registration>,
) -> Result<Json<Registered>> {
    Ok(Json(plane.register(r)?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct InvokerId {
    /// The id the registration returned.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    id: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PollQuery {
    /// How long to wait for a command, in milliseconds.
    #[serde(default)]
    #[param(minimum = 0, maximum = 30000, default = 0)]
    wait_ms: u64,
    /// How many warm pack processes the invoker holds.
    #[serde(default)]
    #[param(minimum = 0, maximum = 4294967295_u64, default = 0)]
    warm: u32,
}

/// Invoker: long poll for commands (each poll is also its heartbeat)
#[utoipa::path(get, path = "/v1/invokers/{id}/commands", operation_id = "poll_commands", tag = "invokers", security(("invoker_token" = [])),
    params(InvokerId, PollQuery),
    responses((status = 200, description = "the commands, oldest first (none if the wait ran out)", body = Vec<Command>),
              (status = "default", description = "not registered (register again), or refused", body = ErrorBody)))]
pub(crate) async fn commands(
    State(plane): Plane,
    _: InvokerCaller,
    Path(InvokerId { id }): Path<InvokerId>,
    Query(q): Query<PollQuery>,
) -> Result<Json<Vec<Command>>> {
    check_id("invoker", &id)?;
    Ok(Json(plane.poll(&id, Duration::from_millis(q.wait_ms), q.warm as usize).await?))
}

/// The answer to a report of events.
#[derive(Serialize, ToSchema)]
pub(crate) struct Reported {
    /// Always true: the events were applied (and results among them saved).
    ok: bool,
}

/// Invoker: leave on purpose (stopped; its allocation or pod ended): its bursts end at once with the reason
#[utoipa::path(post, path = "/v1/invokers/{id}/leave", operation_id = "leave", tag = "invokers", security(("invoker_token" = [])),
    params(InvokerId), request_body = Leaving,
    responses((status = 200, description = "gone: its bursts ended with the reason", body = Reported),
              (status = "default", description = "not registered, or refused", body = ErrorBody)))]
pub(crate) async fn leave(
    State(plane): Plane,
    _: InvokerCaller,
    Path(InvokerId { id }): Path<InvokerId>,
    Body(leaving): Body<Leaving>,
) -> Result<Json<Reported>> {
    check_id("invoker", &id)?;
    plane.leave(&id, &leaving.reason).await?;
    Ok(Json(Reported { ok: true }))
}

/// Invoker: drain (it is being stopped with time to spare): nothing more is placed on it, its bursts go on
#[utoipa::path(post, path = "/v1/invokers/{id}/drain", operation_id = "drain", tag = "invokers", security(("invoker_token" = [])),
    params(InvokerId), request_body = Leaving,
    responses((status = 200, description = "draining: it leaves later", body = Reported),
              (status = "default", description = "not registered, or refused", body = ErrorBody)))]
pub(crate) async fn drain(
    State(plane): Plane,
    _: InvokerCaller,
    Path(InvokerId { id }): Path<InvokerId>,
    Body(leaving): Body<Leaving>,
) -> Result<Json<Reported>> {
    check_id("invoker", &id)?;
    plane.drain(&id, &leaving.reason)?;
    Ok(Json(Reported { ok: true }))
}

/// Invoker: report events (results are saved before the answer)
#[utoipa::path(post, path = "/v1/invokers/{id}/events", operation_id = "report_events", tag = "invokers", security(("invoker_token" = [])),
    params(InvokerId), request_body = Vec<Event>,
    responses((status = 200, description = "applied", body = Reported),
              (status = "default", description = "not registered (register again), or refused", body = ErrorBody)))]
pub(crate) async fn events(
    State(plane): Plane,
    _: InvokerCaller,
    Path(InvokerId { id }): Path<InvokerId>,
    Items(events): Items<Vec<Event>>,
) -> Result<Json<Reported>> {
    check_id("invoker", &id)?;
    plane.report(&id, events).await?;
    Ok(Json(Reported { ok: true }))
}
