//! Errors that name the object and say what to do.

/// What can go wrong with storage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is not one this crate understands.
    #[error("storage URL {url:?}: {why}")]
    Url { url: String, why: String },
    /// The object does not exist.
    #[error("{object} does not exist; check the path (and that the input was generated)")]
    NotFound { object: String },
    /// The storage service failed or could not be reached.
    #[error("{object}: {message}")]
    Storage { object: String, message: String },
    /// A worker of the pack could not share its piece of a cooperative download.
    #[error("cooperative download of {object}: {source}")]
    Comm { object: String, source: volley_comm::Error },
}

impl Error {
    pub(crate) fn from_store(object: &str, e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => Error::NotFound { object: object.into() },
            other => Error::Storage { object: object.into(), message: with_sandbox_hint(other.to_string()) },
        }
    }
}

/// The storage result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Set (by the invoker) in the environment of a sandboxed pack.
pub const SANDBOXED_ENV: &str = "VOLLEY_SANDBOXED";

/// A refused local path in a sandboxed pack says where local storage may be.
pub(crate) fn with_sandbox_hint(message: String) -> String {
    if message.contains("Permission denied") && std::env::var_os(SANDBOXED_ENV).is_some() {
        format!(
            "{message} (this pack is sandboxed: file:// storage is reachable only under the invoker's \
             --local-storage directories; use one of those, or s3://)"
        )
    } else {
        message
    }
}
