//! The CLI's HTTP client of the controller API.

use std::time::Duration;

use anyhow::{Context, anyhow};
use serde::de::DeserializeOwned;
use volley_proto::api::{Burst, BurstLogs, BurstRequest, ErrorBody, FunctionInfo};

pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// A client of the controller at `base`; `VOLLEY_API_KEY`, if set, is sent as the bearer token.
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Ok(key) = std::env::var("VOLLEY_API_KEY")
            && !key.is_empty()
        {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
                .context("VOLLEY_API_KEY holds characters a header cannot carry")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http =
            reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).default_headers(headers).build()?;
        Ok(Client { http, base: base.trim_end_matches('/').to_string() })
    }

    async fn call<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the controller at {}; is `volley up` running there?", self.base))?;
        let status = resp.status();
        let text = resp.text().await.context("reading the controller's answer")?;
        if !status.is_success() {
            return Err(match serde_json::from_str::<ErrorBody>(&text) {
                Ok(body) => anyhow!("{} ({})", body.error.message, body.error.code),
                Err(_) => anyhow!("the controller answered {status}: {text}"),
            });
        }
        serde_json::from_str(&text).with_context(|| format!("unreadable answer from the controller: {text}"))
    }

    fn get(&self, path: &str, timeout: Duration) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.base)).timeout(timeout)
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base)).timeout(Duration::from_secs(30))
    }

    pub async fn submit(&self, request: &BurstRequest) -> anyhow::Result<Burst> {
        self.call(self.post("/v1/bursts").json(request)).await
    }

    pub async fn burst(&self, id: &str) -> anyhow::Result<Burst> {
        self.call(self.get(&format!("/v1/bursts/{id}"), Duration::from_secs(30))).await
    }

    /// The burst once it has ended, or as it is after `wait`.
    pub async fn wait(&self, id: &str, wait: Duration) -> anyhow::Result<Burst> {
        let path = format!("/v1/bursts/{id}/wait?timeout_ms={}", wait.as_millis());
        self.call(self.get(&path, wait + Duration::from_secs(30))).await
    }

    /// Submits `request` and waits (up to `limit`) for the burst to succeed;
    /// any other ending is an error with the burst's reason.
    pub async fn run_to_success(&self, request: &BurstRequest, limit: Duration) -> anyhow::Result<Burst> {
        let burst = self.submit(request).await?;
        let deadline = std::time::Instant::now() + limit;
        loop {
            let b = self.wait(&burst.id, Duration::from_secs(5)).await?;
            if b.state.is_final() {
                if b.state != volley_proto::api::BurstState::Succeeded {
                    return Err(anyhow!("burst {} {}: {}", b.id, b.state.name(), b.error.unwrap_or_default()));
                }
                return Ok(b);
            }
            if std::time::Instant::now() > deadline {
                return Err(anyhow!("burst {} did not finish within {limit:?}", b.id));
            }
        }
    }

    pub async fn list(&self, limit: usize) -> anyhow::Result<Vec<Burst>> {
        self.call(self.get(&format!("/v1/bursts?limit={limit}"), Duration::from_secs(30))).await
    }

    pub async fn cancel(&self, id: &str) -> anyhow::Result<Burst> {
        self.call(self.post(&format!("/v1/bursts/{id}/cancel"))).await
    }

    pub async fn logs(&self, id: &str, rank: Option<usize>) -> anyhow::Result<BurstLogs> {
        let query = rank.map(|r| format!("?rank={r}")).unwrap_or_default();
        self.call(self.get(&format!("/v1/bursts/{id}/logs{query}"), Duration::from_secs(30))).await
    }

    pub async fn deploy(&self, name: &str, description: &str, binary: Vec<u8>) -> anyhow::Result<FunctionInfo> {
        let req = self
            .http
            .put(format!("{}/v1/functions/{name}", self.base))
            .query(&[("description", description)])
            .timeout(Duration::from_secs(300))
            .header("content-type", "application/octet-stream")
            .body(binary);
        self.call(req).await
    }

    pub async fn delete_function(&self, name: &str) -> anyhow::Result<()> {
        let req = self.http.delete(format!("{}/v1/functions/{name}", self.base)).timeout(Duration::from_secs(30));
        let resp = req.send().await.with_context(|| format!("cannot reach the controller at {}", self.base))?;
        if resp.status().is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => anyhow!("{} ({})", body.error.message, body.error.code),
            Err(_) => anyhow!("the controller answered: {text}"),
        })
    }

    pub async fn functions(&self) -> anyhow::Result<Vec<FunctionInfo>> {
        self.call(self.get("/v1/functions", Duration::from_secs(30))).await
    }
}

/// A request for a long job (benchmarks, demos): up to an hour of running and a
/// minute of waiting for room.
pub fn job_request(
    function: &str,
    workers: usize,
    granularity: usize,
    transport: Option<String>,
    params: serde_json::Value,
) -> BurstRequest {
    BurstRequest {
        function: function.into(),
        workers,
        granularity: volley_proto::api::Granularity::Fixed(granularity),
        transport,
        params,
        worker_params: None,
        timeout_secs: Some(3600.0),
        queue_timeout_secs: Some(60.0),
        memory_mb: None,
        retries: None,
    }
}

/// The workers' results of a finished burst, for summing and taking maxima.
pub struct Results<'a>(Vec<&'a serde_json::Value>);

impl<'a> Results<'a> {
    pub fn of(burst: &'a Burst) -> Self {
        Results(burst.workers.iter().filter_map(|w| w.result.as_ref()).collect())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &&'a serde_json::Value> {
        self.0.iter()
    }

    /// The largest value at `pointer` (`/ms/read`): the slowest worker, as they all wait for it.
    pub fn slowest(&self, pointer: &str) -> f64 {
        self.0.iter().filter_map(|r| r.pointer(pointer)?.as_f64()).fold(0.0, f64::max)
    }

    /// The smallest and largest value of counter `key` over the workers, and
    /// the largest over the mean (1.0: perfectly balanced).
    pub fn balance(&self, key: &str) -> (u64, u64, f64) {
        let values: Vec<u64> = self.0.iter().filter_map(|r| r[key].as_u64()).collect();
        let (min, max) = (values.iter().copied().min().unwrap_or(0), values.iter().copied().max().unwrap_or(0));
        let mean = values.iter().sum::<u64>() as f64 / values.len().max(1) as f64;
        (min, max, if mean > 0.0 { max as f64 / mean } else { 1.0 })
    }

    /// The sum over the workers of the counter `key`.
    pub fn sum(&self, key: &str) -> u64 {
        self.0.iter().filter_map(|r| r[key].as_u64()).sum()
    }
}
