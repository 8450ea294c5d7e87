//! `/v1/functions`: the functions bursts can run; deploying your own.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use volley_proto::api::{ErrorBody, FunctionInfo};

use super::extract::{Binary, Path, Query};
use crate::auth::{Caller, InvokerCaller};
use crate::control_plane::ControlPlane;
use crate::error::{Error, Result};
use crate::functions::check_name;

type Plane = State<Arc<ControlPlane>>;

/// Built-in functions and those deployed in your namespace
#[utoipa::path(get, path = "/v1/functions", operation_id = "list_functions", tag = "functions", security(("api_key" = [])),
    responses((status = 200, description = "the functions", body = Vec<FunctionInfo>),
              (status = "default", description = "refused", body = ErrorBody)))]
pub(crate) async fn list(State(plane): Plane, Caller(ns): Caller) -> Json<Vec<FunctionInfo>> {
    Json(plane.functions.list(&ns))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct FunctionName {
    /// The function's name.
    #[param(pattern = "^[a-z0-9_-]{1,64}$")]
    name: String,
}

/// One function
#[utoipa::path(get, path = "/v1/functions/{name}", operation_id = "get_function", tag = "functions", security(("api_key" = [])), params(FunctionName),
    responses((status = 200, description = "the function", body = FunctionInfo),
              (status = "default", description = "no such function, or refused", body = ErrorBody)))]
pub(crate) async fn get(
    State(plane): Plane,
    Caller(ns): Caller,
    Path(FunctionName { name }): Path<FunctionName>,
) -> Result<Json<FunctionInfo>> {
    check_name(&name)?;
    plane.functions.get(&ns, &name).map(Json).ok_or_else(|| Error::NotFound(format!("no function {name:?}")))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeployQuery {
    /// What the function does, for `volley functions list`.
    #[serde(default)]
    description: String,
}

/// Deploy a function (or replace it): the binary, built with the Volley SDK, is the body
#[utoipa::path(put, path = "/v1/functions/{name}", operation_id = "deploy_function", tag = "functions", security(("api_key" = [])), params(FunctionName, DeployQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
                 description = "an executable: an ELF binary built with the Volley SDK (or a #! script)"),
    responses((status = 201, description = "deployed", body = FunctionInfo,
               links(("get" = (operation_id = "get_function", parameters(("name" = "$response.body#/name")))),
                     ("delete" = (operation_id = "delete_function", parameters(("name" = "$response.body#/name")))))),
              (status = "default", description = "refused", body = ErrorBody)))]
pub(crate) async fn deploy(
    State(plane): Plane,
    Caller(ns): Caller,
    Path(FunctionName { name }): Path<FunctionName>,
    Query(q): Query<DeployQuery>,
    Binary(binary): Binary,
) -> Result<(StatusCode, Json<FunctionInfo>)> {
    let info = plane.functions.deploy(&plane.store, &ns, &name, &q.description, &binary).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// Delete a deployed function
#[utoipa::path(delete, path = "/v1/functions/{name}", operation_id = "delete_function", tag = "functions", security(("api_key" = [])), params(FunctionName),
    responses((status = 204, description = "deleted"),
              (status = "default", description = "no such deployed function, a built-in, or refused", body = ErrorBody)))]
pub(crate) async fn delete(
    State(plane): Plane,
    Caller(ns): Caller,
    Path(FunctionName { name }): Path<FunctionName>,
) -> Result<StatusCode> {
    check_name(&name)?;
    plane.functions.delete(&plane.store, &ns, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct BlobDigest {
    /// SHA-256 of the binary, lowercase hex.
    #[param(pattern = "^[0-9a-f]{64}$")]
    digest: String,
}

/// Invoker: a deployed binary by its SHA-256
#[utoipa::path(get, path = "/v1/blobs/{digest}", operation_id = "get_blob", tag = "invokers", security(("invoker_token" = [])), params(BlobDigest),
    responses((status = 200, description = "the binary", content_type = "application/octet-stream", body = Vec<u8>),
              (status = "default", description = "no such blob, or refused", body = ErrorBody)))]
pub(crate) async fn blob(
    State(plane): Plane,
    _: InvokerCaller,
    Path(BlobDigest { digest }): Path<BlobDigest>,
) -> Result<Vec<u8>> {
    let path = plane.functions.blob_path(&digest)?;
    tokio::fs::read(&path).await.map_err(|_| Error::NotFound(format!("no blob {digest}")))
}
