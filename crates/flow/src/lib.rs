//! The workflow engine's logic, apart from where it is stored and how it is
//! served: which triggers an event matches ([`matching`]), whether a trigger
//! fires ([`condition`]), how `${...}` references are filled ([`template`]),
//! and the DAG front-end ([`dag`]) with the rules a run follows ([`run`]).
//! Everything here is pure: the controller persists and performs what it
//! decides (see `docs/adr/0004-workflows.md`).

pub mod asl;
pub mod code;
pub mod condition;
pub mod dag;
pub mod matching;
pub mod run;
pub mod template;
pub mod timer;
pub mod trigger;

/// Why a definition, a trigger or a reference cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The definition is wrong at `place`; the message says what to change.
    #[error("{place}: {message}")]
    Invalid { place: String, message: String },
    /// A trigger's condition could not be evaluated.
    #[error("trigger {trigger}: {message}")]
    Condition { trigger: String, message: String },
    /// Well-formed, but names what cannot be (a date that does not exist).
    #[error("{place}: {message}")]
    Unreal { place: String, message: String },
    /// A `${...}` reference names nothing.
    #[error("{0}")]
    Reference(String),
}

impl Error {
    pub(crate) fn invalid(place: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid { place: place.into(), message: message.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Largest event accepted, in bytes of its JSON.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// `at` (µs since the Unix epoch) as an RFC 3339 time, as CloudEvents writes it.
pub fn rfc3339(at: u64) -> String {
    let time = chrono::DateTime::from_timestamp_micros(at as i64).unwrap_or_default();
    time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Checks an event before it is logged: the fields CloudEvents requires, and its size.
pub fn check_event(event: &volley_proto::flow::CloudEvent) -> Result<()> {
    check_fields(event)?;
    if let Some(time) = &event.time
        && let Err(e) = chrono::DateTime::parse_from_rfc3339(time)
    {
        return Err(Error::Unreal {
            place: "time".into(),
            message: format!("{time:?} is not an RFC 3339 time ({e}), e.g. 2026-12-01T10:00:00Z"),
        });
    }
    let size = serde_json::to_vec(event).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_EVENT_BYTES {
        return Err(Error::invalid(
            "event",
            format!(
                "{size} bytes is above the limit of {MAX_EVENT_BYTES}; put large data in object storage and send its URL"
            ),
        ));
    }
    Ok(())
}

/// The fields every event needs, as the document states them (lengths in
/// characters): also checked in a trigger's `emit` before its templates expand.
pub fn check_fields(event: &volley_proto::flow::CloudEvent) -> Result<()> {
    if event.specversion != "1.0" {
        return Err(Error::invalid(
            "specversion",
            format!("{:?} is not a CloudEvents version this engine reads; use \"1.0\"", event.specversion),
        ));
    }
    for (field, value) in [("id", &event.id), ("source", &event.source), ("type", &event.kind)] {
        if value.is_empty() || value.chars().count() > 512 {
            return Err(Error::invalid(field, "must have 1 to 512 characters"));
        }
    }
    if let Some(subject) = &event.subject
        && subject.chars().count() > 512
    {
        return Err(Error::invalid("subject", "must have at most 512 characters"));
    }
    Ok(())
}
