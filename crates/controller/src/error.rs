//! The controller's errors, each with a stable code and an HTTP status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use volley_proto::api::{ErrorBody, ErrorDetail};

/// Everything the controller can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or asks for something impossible.
    #[error("{0}")]
    BadRequest(String),
    /// The request is well-formed and fits the document's schema, but breaks a
    /// rule the schema cannot say (e.g. a granularity above the worker count).
    #[error("{0}")]
    Unprocessable(String),
    /// No such function, burst or invoker.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (e.g. cancelling a finished burst).
    #[error("{0}")]
    Conflict(String),
    /// The cluster can never run this (e.g. more workers than it has slots).
    #[error("{0}")]
    Capacity(String),
    /// The namespace has as many bursts queued as it may.
    #[error("{0}")]
    QueueFull(String),
    /// The request body is larger than the API accepts.
    #[error("{0}")]
    TooLarge(String),
    /// The request body is not of a type the operation accepts.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The path exists, but not for this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// No valid API key (or invoker token) came with the request.
    #[error("{0}")]
    Unauthorized(String),
    /// The state store failed.
    #[error("state store: {0}")]
    Store(String),
}

impl Error {
    /// Every code [`Error::code`] can return (the document lists them).
    pub const CODES: [&'static str; 11] = [
        "bad_request",
        "unprocessable",
        "not_found",
        "conflict",
        "insufficient_capacity",
        "queue_full",
        "payload_too_large",
        "unsupported_media_type",
        "method_not_allowed",
        "unauthorized",
        "store_unavailable",
    ];

    /// The stable, machine-readable code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest(_) => "bad_request",
            Error::Unprocessable(_) => "unprocessable",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::Capacity(_) => "insufficient_capacity",
            Error::QueueFull(_) => "queue_full",
            Error::TooLarge(_) => "payload_too_large",
            Error::UnsupportedMediaType(_) => "unsupported_media_type",
            Error::MethodNotAllowed(_) => "method_not_allowed",
            Error::Unauthorized(_) => "unauthorized",
            Error::Store(_) => "store_unavailable",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Capacity(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::QueueFull(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code().into(), message: self.to_string() } };
        (self.status(), Json(body)).into_response()
    }
}

/// The controller's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<volley_sessions::Error> for Error {
    fn from(e: volley_sessions::Error) -> Self {
        match e {
            volley_sessions::Error::BadRequest(m) => Error::BadRequest(m),
            volley_sessions::Error::NotFound(m) => Error::NotFound(m),
            volley_sessions::Error::Unauthorized(m) => Error::Unauthorized(m),
            volley_sessions::Error::Limit(m) => Error::Conflict(m),
        }
    }
}
