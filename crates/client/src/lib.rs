//! A typed client of the controller's HTTP API (`/v1`), the one every Volley
//! program uses: the CLI, the invokers, the benchmarks and the tests.
//!
//! A [`Client`] holds the controller's URL and, if the controller asks for one,
//! the secret to send (a tenant's API key, the invoker token or the metrics
//! key), given explicitly. Every call has a timeout; an error says whether the
//! controller could not be reached, refused the call (with its stable code),
//! or answered something unreadable.
//!
//! ```no_run
//! # async fn demo() -> Result<(), volley_client::Error> {
//! use volley_client::Client;
//! use volley_proto::api::BurstRequest;
//!
//! let client = Client::new("http://127.0.0.1:7070", None)?;
//! let request: BurstRequest = serde_json::from_str(r#"{"function": "hello", "workers": 4}"#).unwrap();
//! let burst = client.submit(&request).await?;
//! let done = client.wait_until_final(&burst.id, std::time::Duration::from_secs(60)).await?;
//! println!("{} {}", done.id, done.state.name());
//! # Ok(()) }
//! ```

mod error;
mod flows;
mod invoker;
pub mod paths;
mod sessions;
mod tenant;

use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use volley_proto::api::ErrorBody;

pub use error::Error;

/// How long a plain call may take (a long poll or a wait adds its own wait to this).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The certificates of a CA file; an error saying what is wrong with it.
fn trusted(path: &Path) -> Result<Vec<reqwest::Certificate>, Error> {
    let pem =
        std::fs::read(path).map_err(|e| Error::Usage(format!("cannot read the CA file {}: {e}", path.display())))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| Error::Usage(format!("the CA file {} is not PEM certificates: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Usage(format!("the CA file {} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

/// A client of one controller. Cheap to clone (clones share connections).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    secret: Option<String>,
}

impl Client {
    /// A client of the controller at `base` (`http://host:port`), sending
    /// `secret` as `Authorization: Bearer SECRET` when given.
    pub fn new(base: &str, secret: Option<&str>) -> Result<Client, Error> {
        Client::with_ca(base, secret, None)
    }

    /// A client that also trusts the CA certificates in `ca_file` (PEM) for an
    /// `https://` controller; the system's roots are trusted either way.
    pub fn with_ca(base: &str, secret: Option<&str>, ca_file: Option<&Path>) -> Result<Client, Error> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Usage(format!("the controller URL {base:?} must start with http:// or https://")));
        }
        if let Some(s) = secret
            && reqwest::header::HeaderValue::from_str(&format!("Bearer {s}")).is_err()
        {
            return Err(Error::Usage("the API key holds characters an HTTP header cannot carry".into()));
        }
        let mut http = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT);
        if let Some(path) = ca_file {
            for cert in trusted(path)? {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http.build().map_err(|e| Error::Usage(format!("cannot make an HTTP client: {e}")))?;
        Ok(Client { http, base, secret: secret.filter(|s| !s.is_empty()).map(String::from) })
    }

    /// The same controller with another secret (say, the metrics key).
    pub fn with_secret(&self, secret: Option<&str>) -> Client {
        Client { secret: secret.map(String::from), ..self.clone() }
    }

    /// The controller's URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The secret sent with each request, if any.
    pub fn secret(&self) -> Option<&str> {
        self.secret.as_deref()
    }

    fn request(&self, method: reqwest::Method, path: &str, timeout: Duration) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).timeout(timeout);
        if let Some(secret) = &self.secret {
            req = req.bearer_auth(secret);
        }
        req
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path, CALL_TIMEOUT)
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, path, CALL_TIMEOUT)
    }

    /// Sends the request; the answer's body on success, else the controller's error.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, Error> {
        let resp = req.send().await.map_err(|source| Error::unreachable(&self.base, source))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ErrorBody>(&body) {
            Ok(e) => Error::Api { status: status.as_u16(), code: e.error.code, message: e.error.message },
            Err(_) => Error::Unexpected { status: status.as_u16(), body },
        })
    }

    async fn json<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, Error> {
        let resp = self.send(req).await?;
        let text = resp.text().await.map_err(|source| Error::unreachable(&self.base, source))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::Decode(format!("{e}: {}", text.chars().take(200).collect::<String>())))
    }

    async fn text(&self, req: reqwest::RequestBuilder) -> Result<String, Error> {
        let resp = self.send(req).await?;
        resp.text().await.map_err(|source| Error::unreachable(&self.base, source))
    }

    /// `ok` when the controller is up.
    pub async fn healthz(&self) -> Result<String, Error> {
        self.text(self.get(paths::HEALTHZ)).await
    }

    /// The Prometheus text of `/metrics` (send the metrics key as the secret if the controller has one).
    pub async fn metrics(&self) -> Result<String, Error> {
        self.text(self.get(paths::METRICS)).await
    }

    /// The controller's OpenAPI document.
    pub async fn openapi(&self) -> Result<serde_json::Value, Error> {
        self.json(self.get(paths::OPENAPI)).await
    }
}
