//! Request extractors whose rejections are the API's JSON errors (axum's own
//! answer in plain text), with the status axum would have chosen.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// A JSON body that is an object (serde would also read a struct from an
/// array of its fields in order: `[]` for one whose fields are all optional).
pub(crate) struct Body<T>(pub(crate) T);

/// A JSON body that may be an array (a list of events).
pub(crate) struct Items<T>(pub(crate) T);

/// The query string.
pub(crate) struct Query<T>(pub(crate) T);

/// The path's parameters.
pub(crate) struct Path<T>(pub(crate) T);

/// A raw body (a function binary).
pub(crate) struct Binary(pub(crate) axum::body::Bytes);

/// The error for a request axum refused, keeping its status.
fn refused(status: StatusCode, what: &str, detail: String) -> Error {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => Error::TooLarge(format!("{what} is too large: {detail}")),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            Error::UnsupportedMediaType(format!("{what}: {detail}; send Content-Type: application/json"))
        }
        _ => Error::BadRequest(format!("malformed {what}: {detail}")),
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let Items(value) = Items::<serde_json::Value>::from_request(req, state).await?;
        if !value.is_object() {
            return Err(Error::BadRequest("malformed request body: a JSON object is expected".into()));
        }
        serde_json::from_value(value).map(Body).map_err(|e| Error::BadRequest(format!("malformed request body: {e}")))
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Items<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|axum::Json(value)| Items(value))
            .map_err(|e: JsonRejection| refused(e.status(), "request body", e.body_text()))
    }
}

impl<S: Send + Sync> FromRequest<S> for Binary {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        axum::body::Bytes::from_request(req, state)
            .await
            .map(Binary)
            .map_err(|e: BytesRejection| refused(e.status(), "request body", e.body_text()))
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|e: QueryRejection| refused(e.status(), "query string", e.body_text()))
    }
}

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|e: PathRejection| refused(e.status(), "path", e.body_text()))
    }
}

/// Burst and invoker ids, as the controller makes them: checked before any lookup.
pub(crate) fn check_id(what: &str, id: &str) -> Result<(), Error> {
    let ok = !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!("{what} id {id:?} must be 1 to 64 characters from A-Z a-z 0-9 - _")))
    }
}
