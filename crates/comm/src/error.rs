//! The one error type of the middleware.

use std::sync::Arc;
use std::time::Duration;

/// Everything that can go wrong in the middleware.
///
/// Cheap to clone: a failure that ends a burst is handed to every pending
/// operation of every worker, so the same error value is shared many times.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Another worker of the burst failed or aborted; the burst cannot go on.
    #[error("rank {rank} failed: {reason}")]
    PeerFailed {
        /// The rank that failed first.
        rank: usize,
        /// What it reported.
        reason: Arc<str>,
    },

    /// A pack's connection closed or its process vanished before it said goodbye.
    #[error("pack {pack} (ranks {first}..={last}) disconnected: {reason}")]
    Disconnected {
        /// The pack that went away.
        pack: usize,
        /// Its first rank.
        first: usize,
        /// Its last rank.
        last: usize,
        /// What the transport saw.
        reason: Arc<str>,
    },

    /// The peer finished and closed its side; the message asked for can never arrive.
    #[error("rank {rank} has finished and closed its side without sending a message with tag {tag}")]
    PeerClosed {
        /// The rank waited for.
        rank: usize,
        /// The tag waited for.
        tag: u64,
    },

    /// A blocking operation did not complete in time.
    #[error("timed out after {after:?} while {waiting_for}; raise the operation timeout if the peer is just slow")]
    Timeout {
        /// How long it waited.
        after: Duration,
        /// What it was waiting for.
        waiting_for: Arc<str>,
    },

    /// The caller passed something the API cannot accept.
    #[error("invalid argument: {0}")]
    InvalidArgument(Arc<str>),

    /// A message or frame is larger than the configured limit.
    #[error("{what} of {size} bytes exceeds the limit of {limit} bytes; raise `max_message_bytes` or split the data")]
    TooLarge {
        /// What was too large (message, packet, bundle).
        what: &'static str,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },

    /// Bytes on the wire did not form a valid frame: a bug, a version mismatch or a stranger.
    #[error("malformed frame: {0}")]
    Protocol(Arc<str>),

    /// A peer failed the per-burst secret handshake.
    #[error("authentication failed: {0}")]
    Auth(Arc<str>),

    /// The transport (a socket or a broker) reported an error.
    #[error("{transport} transport: {message}")]
    Transport {
        /// The transport's name.
        transport: &'static str,
        /// What it reported.
        message: Arc<str>,
    },

    /// The communicator was shut down; no more operations are possible.
    #[error("communicator is closed")]
    Closed,
}

/// Whether retrying the same operation (or the same burst) can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller must change something first (bad argument, too large, auth).
    Permanent,
    /// Transient: a peer, the network or a broker failed; a new attempt may succeed.
    Retryable,
}

impl Error {
    /// Classifies the error for retry decisions.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument(_) | Error::TooLarge { .. } | Error::Auth(_) | Error::Protocol(_) => {
                ErrorKind::Permanent
            }
            _ => ErrorKind::Retryable,
        }
    }

    /// An [`Error::InvalidArgument`] (for rendezvous and transports written outside this crate).
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into().into())
    }

    pub(crate) fn protocol(msg: impl Into<String>) -> Self {
        Error::Protocol(msg.into().into())
    }

    pub(crate) fn transport(transport: &'static str, err: impl std::fmt::Display) -> Self {
        Error::Transport { transport, message: err.to_string().into() }
    }

    /// An [`Error::Timeout`] after waiting `after` for `waiting_for`.
    pub fn timeout(after: Duration, waiting_for: impl Into<String>) -> Self {
        Error::Timeout { after, waiting_for: waiting_for.into().into() }
    }
}

/// The middleware's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
