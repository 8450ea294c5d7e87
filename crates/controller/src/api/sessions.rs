//! Program sessions: `/v1/sessions`. A tenant opens one (API key); the
//! program's processes reach it with its token alone. The objects and their
//! operations are `volley_sessions`'.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use volley_proto::api::ErrorBody;
use volley_proto::session::{OpRequest, Reply, Session, SessionRequest};

use super::extract::{Body, Path};
use crate::auth::{Caller, SessionToken};
use crate::control_plane::ControlPlane;
use crate::error::Result;

type Plane = State<Arc<ControlPlane>>;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct SessionId {
    /// The session's id.
    #[param(pattern = "^s[0-9a-f]{16}$")]
    id: String,
}

/// Open a program session
///
/// A program's queues, locks, events, barriers and shared values live in a
/// session, in the controller's memory. Renew it within its lease; when it
/// ends (ended, or not renewed), its objects are deleted and the bursts
/// started in it (`session` in their requests) are cancelled.
#[utoipa::path(post, path = "/v1/sessions", operation_id = "open_session", tag = "sessions", security(("api_key" = [])),
    request_body = SessionRequest,
    responses((status = 201, description = "opened; its token is shown this once", body = Session),
              (status = "default", description = "refused (too many open sessions, a lease out of range)", body = ErrorBody)))]
pub(crate) async fn open(
    State(plane): Plane,
    Caller(ns): Caller,
    Body(request): Body<SessionRequest>,
) -> Result<(StatusCode, Json<Session>)> {
    Ok((StatusCode::CREATED, Json(plane.sessions.open(&ns, &request)?)))
}

/// A session: its lease, objects and bytes
#[utoipa::path(get, path = "/v1/sessions/{id}", operation_id = "get_session", tag = "sessions", security(("session_token" = [])),
    params(SessionId),
    responses((status = 200, description = "the session", body = Session),
              (status = "default", description = "ended, or the wrong token", body = ErrorBody)))]
pub(crate) async fn get(
    State(plane): Plane,
    SessionToken(token): SessionToken,
    Path(SessionId { id }): Path<SessionId>,
) -> Result<Json<Session>> {
    Ok(Json(plane.sessions.info(&id, token.as_deref())?))
}

/// Renew a session's lease
#[utoipa::path(post, path = "/v1/sessions/{id}/renew", operation_id = "renew_session", tag = "sessions", security(("session_token" = [])),
    params(SessionId),
    responses((status = 200, description = "renewed", body = Session),
              (status = "default", description = "ended, or the wrong token", body = ErrorBody)))]
pub(crate) async fn renew(
    State(plane): Plane,
    SessionToken(token): SessionToken,
    Path(SessionId { id }): Path<SessionId>,
) -> Result<Json<Session>> {
    Ok(Json(plane.sessions.renew(&id, token.as_deref())?))
}

/// End a session: its objects are deleted, its bursts cancelled
#[utoipa::path(delete, path = "/v1/sessions/{id}", operation_id = "end_session", tag = "sessions", security(("session_token" = [])),
    params(SessionId),
    responses((status = 204, description = "ended"),
              (status = "default", description = "ended already, or the wrong token", body = ErrorBody)))]
pub(crate) async fn end(
    State(plane): Plane,
    SessionToken(token): SessionToken,
    Path(SessionId { id }): Path<SessionId>,
) -> Result<StatusCode> {
    let ended = plane.sessions.end(&id, token.as_deref())?;
    plane.session_ended(ended).await;
    Ok(StatusCode::NO_CONTENT)
}

/// One operation on an object of the session
///
/// Blocking operations (a get from an empty queue, acquiring a held lock,
/// waiting for an event, a condition or a barrier) wait up to `wait_secs`
/// (at most 25 s) and then answer that they did not complete.
#[utoipa::path(post, path = "/v1/sessions/{id}/ops", operation_id = "session_op", tag = "sessions", security(("session_token" = [])),
    params(SessionId), request_body = OpRequest,
    responses((status = 200, description = "the operation's answer", body = Reply),
              (status = "default", description = "ended, the wrong token, no such object, or a limit", body = ErrorBody)))]
pub(crate) async fn op(
    State(plane): Plane,
    SessionToken(token): SessionToken,
    Path(SessionId { id }): Path<SessionId>,
    Body(request): Body<OpRequest>,
) -> Result<Json<Reply>> {
    let session = plane.sessions.get(&id, token.as_deref())?;
    Ok(Json(session.op(&request).await?))
}
