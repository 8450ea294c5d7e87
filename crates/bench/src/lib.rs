//! Measurement harnesses behind `volley bench ...`. Each harness measures the
//! system and, in the same run, the raw limit it is compared with.

pub mod comm;
pub mod jobs;
pub mod network;
pub mod processes;
mod raw;
mod raw_brokers;
mod raw_redis;
pub mod startup;
pub mod stats;
mod verify;

/// What can go wrong while benchmarking.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Comm(#[from] volley_comm::Error),
    #[error("baseline measurement failed: {0}")]
    Baseline(String),
    #[error("invalid benchmark: {0}")]
    Invalid(String),
    /// A rank received something other than what was sent.
    #[error("the benchmark moved the wrong bytes: {0}")]
    Verify(String),
    #[error(transparent)]
    Client(#[from] volley_client::Error),
    #[error(transparent)]
    Storage(#[from] volley_storage::Error),
    #[error(transparent)]
    Data(#[from] volley_apps::dataset::DataError),
    #[error(transparent)]
    Genomics(#[from] volley_genomics::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
