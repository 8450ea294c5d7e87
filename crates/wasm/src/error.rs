//! A worker's error: its text, and whether it only echoes another worker's failure.

/// An error a function returns, or a call of the communicator failed with.
#[derive(Debug, Clone)]
pub struct Error {
    message: String,
    echo: bool,
}

impl Error {
    /// An error with this text.
    pub fn new(message: impl Into<String>) -> Self {
        Error { message: message.into(), echo: false }
    }

    pub(crate) fn echo(message: String) -> Self {
        Error { message, echo: true }
    }

    /// Whether this error only echoes a failure of another worker (the burst
    /// names the cause, not this).
    pub fn is_echo(&self) -> bool {
        self.echo
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::new(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::new(message)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::new(e.to_string())
    }
}
