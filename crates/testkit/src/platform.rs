//! `volley up` as a test platform, and a tiny HTTP client for checking the
//! API's answers as they are on the wire.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::fs::TempDir;
use crate::process::{Role, volley};

/// `volley up` on a free loopback port.
pub struct Platform {
    pub url: String,
    pub role: Role,
    _dir: Option<TempDir>,
}

impl Platform {
    pub fn up(extra: &[&str]) -> Platform {
        let dir = TempDir::new("up");
        let mut p = Platform::up_in(&dir.0, extra);
        p._dir = Some(dir);
        p
    }

    /// `volley up` on a data directory the caller keeps (to restart on the same state).
    pub fn up_in(data_dir: &Path, extra: &[&str]) -> Platform {
        let mut args = vec!["up", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let (role, line) = Role::start(&args, data_dir, "volley is up at ");
        let url = line.split("volley is up at ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().to_string();
        Platform { url, role, _dir: None }
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        volley(Some(&self.url), args)
    }

    /// Submits a burst over HTTP; returns (status, body).
    pub fn post(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        http(&self.url, "POST", path, body)
    }

    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        http(&self.url, "GET", path, "")
    }

    /// Waits for a burst to end (up to `secs`) and returns it.
    pub fn wait(&self, id: &str, secs: u64) -> serde_json::Value {
        self.wait_until_final(&format!("/v1/bursts/{id}"), secs)
    }

    /// Waits for a workflow run to end (up to `secs`) and returns it.
    pub fn wait_run(&self, id: &str, secs: u64) -> serde_json::Value {
        self.wait_until_final(&format!("/v1/runs/{id}"), secs)
    }

    /// `path` is a burst's or a run's: its `/wait` until the state is final.
    fn wait_until_final(&self, path: &str, secs: u64) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (_, it) = self.get(&format!("{path}/wait?timeout_ms=1000"));
            let state = it["state"].as_str().unwrap_or("").to_string();
            if ["succeeded", "failed", "cancelled"].contains(&state.as_str()) {
                return it;
            }
            assert!(Instant::now() < deadline, "{path} did not end within {secs}s: {it}");
        }
    }

    /// Waits until the burst is in `state`.
    pub fn wait_state(&self, id: &str, state: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (_, burst) = self.get(&format!("/v1/bursts/{id}"));
            if burst["state"] == state {
                return;
            }
            assert!(Instant::now() < deadline, "burst {id} never became {state}: {burst}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One HTTP request with a JSON answer (a tiny client: tests need no more).
pub fn http(base: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    http_as(None, base, method, path, body)
}

/// The same, with `Authorization: Bearer KEY`.
pub fn http_as(key: Option<&str>, base: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    http_trusting(None, key, base, method, path, body)
}

/// The same, trusting the CA certificate in `ca` (PEM) for an `https://` controller.
pub fn http_trusting(
    ca: Option<&std::path::Path>,
    key: Option<&str>,
    base: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut client = reqwest::Client::builder();
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).expect("the CA file");
            client = client.add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("a PEM certificate"));
        }
        let client = client.build().unwrap();
        let url = format!("{base}{path}");
        let mut req = match method {
            "POST" => client.post(url).header("content-type", "application/json").body(body.to_string()),
            "PUT" => client.put(url).header("content-type", "application/json").body(body.to_string()),
            "DELETE" => client.delete(url),
            _ => client.get(url),
        };
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        let resp = req.timeout(Duration::from_secs(60)).send().await.expect("controller answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    })
}
