//! What a call to the controller can end in.

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The controller could not be reached, or did not answer in time; the
    /// reason holds every cause (a refused certificate is said as such), so
    /// the HTTP error is kept but not chained.
    #[error("cannot reach the controller at {base}: {reason}")]
    Unreachable { base: String, reason: String, error: reqwest::Error },
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
    /// A failed exchange with the controller at `base`, said with every cause
    /// and what to do about the likely ones.
    pub(crate) fn unreachable(base: &str, source: reqwest::Error) -> Error {
        let mut causes = vec![source.to_string()];
        let mut next = std::error::Error::source(&source);
        while let Some(cause) = next {
            let said = cause.to_string();
            if !causes.iter().any(|c| c.contains(&said)) {
                causes.push(said);
            }
            next = cause.source();
        }
        let all = causes.join(": ");
        let hint = if all.contains("certificate") {
            "; the controller's certificate is not trusted here: give the CA that signed it with --ca-file FILE \
             (VOLLEY_CA_FILE), or check the host name in the URL is one the certificate names"
        } else if base.starts_with("http://")
            && (all.contains("invalid HTTP version") || all.contains("connection closed before message completed"))
        {
            "; does the controller serve HTTPS? then use an https:// URL"
        } else {
            "; is it running there (`volley up`)?"
        };
        Error::Unreachable { base: base.to_string(), reason: format!("{all}{hint}"), error: source }
    }

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
