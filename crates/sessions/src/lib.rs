//! Program sessions: the shared objects of one client program (queues,
//! locks, semaphores, events, conditions, barriers, shared values), which the
//! controller keeps in memory so that the program's processes, Volley
//! workers on any invoker, share them without a Redis of their own
//! (Python's `volley.multiprocessing` is built on them).
//!
//! A session belongs to a namespace and is reached with its token alone (the
//! program hands it to the workers it starts). It lives while its program
//! renews it: when the program ends it, or dies and stops renewing it, the
//! session is deleted with its objects, every waiter is told, and the
//! controller cancels the bursts started in it ([`Ended::bursts`]).
//!
//! Objects live in memory only: a controller restart ends every session.

mod objects;
mod session;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use volley_proto::session::SessionRequest;

pub use objects::{MAX_BYTES, MAX_OBJECTS};
pub use session::{MAX_WAIT, Session};

/// Open sessions one namespace may have.
pub const MAX_SESSIONS: usize = 64;
/// Bursts one session may start (ended ones included).
pub const MAX_BURSTS: usize = 100_000;
const DEFAULT_LEASE: f64 = 15.0;
const LEASE_RANGE: std::ops::RangeInclusive<f64> = 2.0..=300.0;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthorized(String),
    /// A limit of the session or the namespace.
    #[error("{0}")]
    Limit(String),
}

/// A session that ended, for the controller to cancel what it started.
#[derive(Debug)]
pub struct Ended {
    pub id: String,
    pub namespace: String,
    pub bursts: Vec<String>,
}

/// Every open session of a controller.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Arc<Session>>>,
}

impl Sessions {
    fn open_sessions(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a session of `namespace`; its token is in the answer only.
    pub fn open(&self, namespace: &str, request: &SessionRequest) -> Result<volley_proto::session::Session, Error> {
        let lease = request.lease_secs.unwrap_or(DEFAULT_LEASE);
        if !LEASE_RANGE.contains(&lease) {
            return Err(Error::BadRequest(format!(
                "lease_secs must be from {} to {} seconds",
                LEASE_RANGE.start(),
                LEASE_RANGE.end()
            )));
        }
        let mut open = self.open_sessions();
        if open.values().filter(|s| s.namespace == namespace).count() >= MAX_SESSIONS {
            return Err(Error::Limit(format!(
                "the namespace has {MAX_SESSIONS} open sessions, the most it may; end some (their programs' exit ends them)"
            )));
        }
        let id = format!("s{:016x}", rand::random::<u64>());
        let token: String = (0..4).map(|_| format!("{:016x}", rand::random::<u64>())).collect();
        let session = Arc::new(Session::new(namespace, &token, Duration::from_secs_f64(lease)));
        let mut info = session.info(&id);
        info.token = token;
        open.insert(id, session);
        Ok(info)
    }

    /// The session `id`, if `token` is its token.
    pub fn get(&self, id: &str, token: Option<&str>) -> Result<Arc<Session>, Error> {
        let session = self.open_sessions().get(id).cloned().ok_or_else(|| ended(id))?;
        match token {
            Some(token) if session.has_token(token) => Ok(session),
            _ => Err(Error::Unauthorized(format!(
                "session {id} is reached with its token only (Authorization: Bearer TOKEN, as the session was opened)"
            ))),
        }
    }

    /// The session as it is now.
    pub fn info(&self, id: &str, token: Option<&str>) -> Result<volley_proto::session::Session, Error> {
        Ok(self.get(id, token)?.info(id))
    }

    /// Extends the session's life by its lease.
    pub fn renew(&self, id: &str, token: Option<&str>) -> Result<volley_proto::session::Session, Error> {
        let session = self.get(id, token)?;
        session.renew();
        Ok(session.info(id))
    }

    /// Ends the session now.
    pub fn end(&self, id: &str, token: Option<&str>) -> Result<Ended, Error> {
        self.get(id, token)?;
        self.remove(id).ok_or_else(|| ended(id))
    }

    /// Records that `burst` was started in session `id` (by its namespace), so
    /// that it is cancelled when the session ends.
    pub fn adopt(&self, id: &str, namespace: &str, burst: &str) -> Result<(), Error> {
        let session = self.open_sessions().get(id).cloned();
        match session {
            Some(s) if s.namespace == namespace => s.adopt(burst),
            _ => Err(ended(id)),
        }
    }

    /// Checks that bursts can be started in session `id` by `namespace`.
    pub fn check(&self, id: &str, namespace: &str) -> Result<(), Error> {
        match self.open_sessions().get(id) {
            Some(s) if s.namespace == namespace => Ok(()),
            _ => Err(ended(id)),
        }
    }

    /// Ends every session whose lease ran out.
    pub fn sweep(&self, now: Instant) -> Vec<Ended> {
        let expired: Vec<String> =
            self.open_sessions().iter().filter(|(_, s)| s.expired(now)).map(|(id, _)| id.clone()).collect();
        expired.iter().filter_map(|id| self.remove(id)).collect()
    }

    fn remove(&self, id: &str) -> Option<Ended> {
        let session = self.open_sessions().remove(id)?;
        Some(Ended { id: id.to_string(), namespace: session.namespace.clone(), bursts: session.close() })
    }
}

fn ended(id: &str) -> Error {
    Error::NotFound(format!(
        "session {id} has ended (its program ended, or stopped renewing it), or never was: its objects are gone"
    ))
}

#[cfg(test)]
mod tests;
