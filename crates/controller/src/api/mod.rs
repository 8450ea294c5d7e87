//! The HTTP API: JSON under `/v1`, plus `/healthz` and `/metrics`. Handlers
//! only translate between HTTP and the control plane; the routes and the
//! OpenAPI document come from the same definitions (`#[utoipa::path]` on each
//! handler), so a route cannot be served without being documented.

mod bursts;
mod dashboard;
mod document;
mod extract;
mod flows;
mod functions;
mod invokers;
mod sessions;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::response::IntoResponse;
use axum::{Extension, Json, Router};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use volley_proto::api::ErrorBody;

use crate::auth::MetricsCaller;
use crate::control_plane::ControlPlane;
use crate::error::Error;

/// Largest function binary accepted.
const MAX_BINARY: usize = 512 << 20;
/// Largest operation on a program session (an item, base64).
const MAX_SESSION_OP: usize = 96 << 20;

/// The API's routes, with the OpenAPI document served at `/v1/openapi.json`,
/// and the web dashboard's page and files (`/`, `/ui/...`).
pub(crate) fn router(plane: Arc<ControlPlane>) -> Router {
    let (router, doc) = routes().split_for_parts();
    let doc = Arc::new(document::finish(doc, &plane.opts));
    router
        .merge(volley_dashboard::router())
        .fallback(|| async {
            Error::NotFound("no such endpoint; the API lives under /v1 (see /v1/openapi.json)".into())
        })
        .method_not_allowed_fallback(|| async {
            Error::MethodNotAllowed("this path does not take that method; see /v1/openapi.json".into())
        })
        .layer(Extension(doc))
        .with_state(plane)
}

/// Every documented route.
fn routes() -> OpenApiRouter<Arc<ControlPlane>> {
    let deploy = OpenApiRouter::new()
        .routes(routes!(functions::get, functions::deploy, functions::delete))
        .layer(DefaultBodyLimit::max(MAX_BINARY));
    let session_ops = OpenApiRouter::new().routes(routes!(sessions::op)).layer(DefaultBodyLimit::max(MAX_SESSION_OP));
    OpenApiRouter::with_openapi(document::base())
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .routes(routes!(openapi))
        .routes(routes!(functions::list))
        .merge(deploy)
        .routes(routes!(functions::blob))
        .routes(routes!(bursts::create, bursts::list))
        .routes(routes!(dashboard::summaries))
        .routes(routes!(dashboard::overview))
        .routes(routes!(bursts::get))
        .routes(routes!(bursts::wait))
        .routes(routes!(bursts::events))
        .routes(routes!(bursts::cancel))
        .routes(routes!(bursts::logs))
        .routes(routes!(invokers::register, invokers::list))
        .routes(routes!(invokers::commands))
        .routes(routes!(invokers::events))
        .routes(routes!(invokers::leave))
        .routes(routes!(invokers::drain))
        .routes(routes!(flows::list))
        .routes(routes!(flows::deploy, flows::get, flows::delete))
        .routes(routes!(flows::start, flows::runs))
        .routes(routes!(flows::run))
        .routes(routes!(flows::wait))
        .routes(routes!(flows::cancel))
        .routes(routes!(flows::send, flows::events))
        .routes(routes!(flows::triggers, flows::create_trigger))
        .routes(routes!(flows::delete_trigger))
        .routes(routes!(flows::timers, flows::create_timer))
        .routes(routes!(flows::delete_timer))
        .routes(routes!(flows::sources, flows::create_source))
        .routes(routes!(flows::delete_source))
        .routes(routes!(sessions::open))
        .routes(routes!(sessions::get, sessions::end))
        .routes(routes!(sessions::renew))
        .merge(session_ops)
}

/// Liveness: `ok`
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "service",
    responses((status = 200, description = "the controller is up", content_type = "text/plain", body = String)))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// Prometheus metrics: bursts, invokers, slots (counts only, never a tenant's names)
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "service", security(("metrics_key" = [])),
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String),
              (status = "default", description = "refused", body = ErrorBody)))]
async fn metrics(State(plane): State<Arc<ControlPlane>>, _: MetricsCaller) -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4")], plane.metrics())
}

/// This document
#[utoipa::path(get, path = "/v1/openapi.json", operation_id = "openapi", tag = "service",
    responses((status = 200, description = "the OpenAPI 3.1 document of this controller", body = Object)))]
async fn openapi(Extension(doc): Extension<Arc<serde_json::Value>>) -> Json<serde_json::Value> {
    Json(doc.as_ref().clone())
}
