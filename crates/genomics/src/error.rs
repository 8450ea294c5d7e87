use std::path::PathBuf;

/// What can go wrong, said with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{tool} is not on PATH; install the Debian package {package} (apt-get install {package})")]
    MissingTool { tool: &'static str, package: &'static str },
    #[error("{tool} failed ({status}): {stderr}")]
    ToolFailed { tool: &'static str, status: String, stderr: String },
    #[error("{tool} did not finish within {secs} s; it was stopped")]
    ToolTimedOut { tool: &'static str, secs: u64 },
    #[error("{file}: {problem}")]
    BadInput { file: String, problem: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
