//! Volley on Slurm (issue 16, ADR 0010): what `volley slurm up/down/grow/
//! shrink/status` need, without the CLI around them.
//!
//! - [`script`]: the batch script of one allocation: one invoker per node
//!   (`srun`), the controller too when it runs inside the allocation;
//! - [`commands`]: `sbatch`, `scancel`, `squeue`, each with a timeout and
//!   an error that says what to do;
//! - [`state`]: the deployment as `volley slurm` remembers it between
//!   commands (its controller, its allocations), in a file of its own.

pub mod commands;
pub mod script;
pub mod state;

pub use commands::{Job, Slurm};
pub use script::{BatchScript, ControllerPlace};
pub use state::{Allocation, Deployment, Process, Role};

/// What can go wrong talking to Slurm or keeping the deployment's state.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Slurm command is not installed here.
    #[error(
        "{0} is not installed here: run `volley slurm` on a login node of the cluster (Debian: apt install slurm-client)"
    )]
    Missing(String),
    /// Slurm refused or failed.
    #[error("`{command}` failed: {said}")]
    Refused { command: String, said: String },
    /// A Slurm command did not answer in time.
    #[error("`{0}` did not answer within {1} s; is slurmctld up (`sinfo`)?")]
    Timeout(String, u64),
    /// Slurm answered something unreadable.
    #[error("cannot read what `{command}` answered: {answer:?}")]
    Unreadable { command: String, answer: String },
    /// The deployment's state file.
    #[error("{0}")]
    State(String),
    /// Settings that cannot work.
    #[error("{0}")]
    Usage(String),
}
