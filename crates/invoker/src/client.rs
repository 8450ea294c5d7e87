//! The invoker's side of the controller's HTTP API.

use std::time::Duration;

use volley_proto::cluster::{Command, Event, Registered, Registration};

use crate::Error;

#[derive(Clone)]
pub(crate) struct ControllerClient {
    http: reqwest::Client,
    base: String,
    api_key: Option<String>,
}

/// What a failed call to the controller means for the invoker.
pub(crate) enum CallError {
    /// The controller does not know this invoker (restarted, or declared it lost): register again.
    Forgotten,
    /// The controller could not be reached or answered with an error: try again later.
    Other(String),
}

impl ControllerClient {
    pub(crate) fn new(base: &str, api_key: Option<String>) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| Error::Controller(e.to_string()))?;
        Ok(ControllerClient { http, base: base.trim_end_matches('/').to_string(), api_key })
    }

    fn request(&self, method: reqwest::Method, path: &str, timeout: Duration) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).timeout(timeout);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        req
    }

    pub(crate) async fn register(&self, registration: &Registration) -> Result<Registered, CallError> {
        let req = self.request(reqwest::Method::POST, "/v1/invokers", Duration::from_secs(10)).json(registration);
        send(req).await
    }

    /// Long-polls for commands; the call itself is the invoker's heartbeat.
    pub(crate) async fn commands(&self, id: &str, wait: Duration, warm: usize) -> Result<Vec<Command>, CallError> {
        let path = format!("/v1/invokers/{id}/commands?wait_ms={}&warm={warm}", wait.as_millis());
        send(self.request(reqwest::Method::GET, &path, wait + Duration::from_secs(10))).await
    }

    /// A deployed function's binary.
    pub(crate) async fn blob(&self, digest: &str) -> Result<Vec<u8>, CallError> {
        let req = self.request(reqwest::Method::GET, &format!("/v1/blobs/{digest}"), Duration::from_secs(300));
        let resp = req.send().await.map_err(|e| CallError::Other(e.to_string()))?;
        match resp.status() {
            s if s.is_success() => resp.bytes().await.map(|b| b.to_vec()).map_err(|e| CallError::Other(e.to_string())),
            reqwest::StatusCode::NOT_FOUND => Err(CallError::Forgotten),
            s => Err(CallError::Other(format!("controller answered {s}"))),
        }
    }

    pub(crate) async fn events(&self, id: &str, events: &[Event]) -> Result<(), CallError> {
        let req = self
            .request(reqwest::Method::POST, &format!("/v1/invokers/{id}/events"), Duration::from_secs(10))
            .json(events);
        send::<serde_json::Value>(req).await.map(drop)
    }
}

async fn send<T: serde::de::DeserializeOwned>(req: reqwest::RequestBuilder) -> Result<T, CallError> {
    let resp = req.send().await.map_err(|e| CallError::Other(e.to_string()))?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
        return Err(CallError::Forgotten);
    }
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(CallError::Other(format!("controller answered {status}: {body}")));
    }
    resp.json().await.map_err(|e| CallError::Other(format!("unreadable answer from the controller: {e}")))
}
