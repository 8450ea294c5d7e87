//! One session: its lease, its objects, and the waiting of blocking operations.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use volley_proto::session::{OpRequest, Reply};

use crate::objects::{Objects, Step};
use crate::{Error, MAX_BURSTS};

/// The longest one operation waits (a caller waiting longer asks again).
pub const MAX_WAIT: Duration = Duration::from_secs(25);

pub struct Session {
    pub(crate) namespace: String,
    token: String,
    lease: Duration,
    expires: Mutex<Instant>,
    objects: Mutex<Objects>,
    bursts: Mutex<Vec<String>>,
    /// Fired whenever an object changes: blocked operations look again.
    changed: Notify,
    /// Cancelled when the session ends: blocked operations give up.
    ended: CancellationToken,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Session {
    pub(crate) fn new(namespace: &str, token: &str, lease: Duration) -> Session {
        Session {
            namespace: namespace.into(),
            token: token.into(),
            lease,
            expires: Mutex::new(Instant::now() + lease),
            objects: Mutex::default(),
            bursts: Mutex::default(),
            changed: Notify::new(),
            ended: CancellationToken::new(),
        }
    }

    pub(crate) fn has_token(&self, token: &str) -> bool {
        // Compared in constant time: the token is the session's only credential.
        token.len() == self.token.len()
            && token.bytes().zip(self.token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    pub(crate) fn info(&self, id: &str) -> volley_proto::session::Session {
        let objects = locked(&self.objects);
        volley_proto::session::Session {
            id: id.into(),
            token: String::new(),
            lease_secs: self.lease.as_secs_f64(),
            objects: objects.len(),
            bytes: objects.bytes,
        }
    }

    pub(crate) fn renew(&self) {
        *locked(&self.expires) = Instant::now() + self.lease;
    }

    pub(crate) fn expired(&self, now: Instant) -> bool {
        now >= *locked(&self.expires)
    }

    pub(crate) fn adopt(&self, burst: &str) -> Result<(), Error> {
        let mut bursts = locked(&self.bursts);
        if bursts.len() >= MAX_BURSTS {
            return Err(Error::Limit(format!("a session starts at most {MAX_BURSTS} bursts")));
        }
        bursts.push(burst.into());
        Ok(())
    }

    /// Ends the session: waiters give up; the bursts it started are returned.
    pub(crate) fn close(&self) -> Vec<String> {
        self.ended.cancel();
        *locked(&self.objects) = Objects::default();
        std::mem::take(&mut *locked(&self.bursts))
    }

    /// Carries out one operation, waiting up to its `wait_secs` (at most
    /// [`MAX_WAIT`]) when it cannot complete yet.
    pub async fn op(&self, request: &OpRequest) -> Result<Reply, Error> {
        let wait = match request.wait_secs {
            None => Duration::ZERO,
            Some(s) => Duration::try_from_secs_f64(s)
                .map_err(|_| Error::BadRequest("wait_secs must be a number of seconds from 0".into()))?
                .min(MAX_WAIT),
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so that a change made meanwhile is not missed.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.ended.is_cancelled() {
                return Err(Error::NotFound("the session has ended: its objects are gone".into()));
            }
            let step = locked(&self.objects).apply(request.object, &request.op)?;
            match step {
                Step::Ready(reply, changed) => {
                    if changed {
                        self.changed.notify_waiters();
                    }
                    return Ok(reply);
                }
                Step::Blocked(timed_out) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(deadline) => return Ok(timed_out),
                        _ = self.ended.cancelled() => {}
                    }
                }
            }
        }
    }
}
