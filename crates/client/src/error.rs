//! What a call to the controller can end in.

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The controller could not be reached, or did not answer in time.
    #[error("cannot reach the controller at {base}: {source}; is it running there (`volley up`)?")]
    Unreachable {
        base: String,
        #[source]
        source: reqwest::Error,
    },
    /// The controller refused the call: its message says what to do, its code is stable.
    #[error("{message} ({code})")]
    Api { status: u16, code: String, message: String },
    /// The controller answered an error that is not the API's JSON error (a proxy in between?).
    #[error("the controller answered {status}: {body}")]
    Unexpected { status: u16, body: String },
    /// The answer could not be read as the expected type (a different Volley version?).
    #[error("unreadable answer from the controller: {0}")]
    Decode(String),
    /// The client was given something it cannot use.
    #[error("{0}")]
    Usage(String),
    /// A burst ended other than it was expected to.
    #[error("burst {id} {state}: {reason}")]
    Burst { id: String, state: String, reason: String },
}

impl Error {
    /// The API's stable error code, if the controller refused the call.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } | Error::Unexpected { status, .. } => Some(*status),
            _ => None,
        }
    }
}
