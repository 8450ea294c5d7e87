//! Program sessions: a program's shared objects, reached with the session's token.

use std::time::Duration;

use volley_proto::session::{OpRequest, Reply, Session, SessionRequest};

use crate::{CALL_TIMEOUT, Client, Error, paths};

impl Client {
    /// Opens a session of the caller's namespace (the answer holds its token).
    pub async fn open_session(&self, request: &SessionRequest) -> Result<Session, Error> {
        self.json(self.post(paths::SESSIONS).json(request)).await
    }

    /// A client that reaches session objects with `token` (a worker has no API key).
    pub fn for_session(&self, token: &str) -> Client {
        self.with_secret(Some(token))
    }

    /// The session as it is now (call on [`Client::for_session`]).
    pub async fn session(&self, id: &str) -> Result<Session, Error> {
        self.json(self.get(&paths::session(id))).await
    }

    /// Extends the session's lease (call on [`Client::for_session`]).
    pub async fn renew_session(&self, id: &str) -> Result<Session, Error> {
        self.json(self.post(&paths::session_renew(id))).await
    }

    /// Ends the session: its objects are deleted, its bursts cancelled (call on [`Client::for_session`]).
    pub async fn end_session(&self, id: &str) -> Result<(), Error> {
        self.send(self.request(reqwest::Method::DELETE, &paths::session(id), CALL_TIMEOUT)).await.map(|_| ())
    }

    /// One operation on an object of the session (call on [`Client::for_session`]); the
    /// request may wait as long as the operation's `wait_secs`.
    pub async fn session_op(&self, id: &str, op: &OpRequest) -> Result<Reply, Error> {
        let wait = op.wait_secs.and_then(|s| Duration::try_from_secs_f64(s).ok()).unwrap_or_default();
        let timeout = CALL_TIMEOUT + wait.min(Duration::from_secs(30));
        self.json(self.request(reqwest::Method::POST, &paths::session_ops(id), timeout).json(op)).await
    }
}
