//! `volley._native`: what the Python package needs from Rust. The API client
//! (every call releases the GIL while it waits), an embedded platform (a
//! controller and an invoker in the Python process, as `volley run` starts
//! without a controller), and the pack runtime a Python pack process serves
//! (`python -m volley._pack`). The Python side (`python/volley/`) is thin
//! over these.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tokio_util::sync::CancellationToken;
use volley_proto::api::{BurstRequest, FunctionInfo};
use volley_proto::session::{OpRequest, SessionRequest};

/// One runtime for the process's client calls and embedded platform.
fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start Volley's runtime: {e}")))
}

/// Runs `work` on the runtime with the GIL released.
fn block<T: Send>(py: Python<'_>, work: impl Future<Output = T> + Send) -> PyResult<T> {
    let rt = runtime()?;
    Ok(py.detach(|| rt.block_on(work)))
}

fn failed(e: impl std::fmt::Display) -> PyErr {
    PyRuntimeError::new_err(e.to_string())
}

/// A client of a controller's API.
#[pyclass(module = "volley._native", frozen)]
struct Client {
    inner: volley_client::Client,
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (url, api_key=None, ca_file=None))]
    fn new(url: &str, api_key: Option<&str>, ca_file: Option<std::path::PathBuf>) -> PyResult<Self> {
        Ok(Client { inner: volley_client::Client::with_ca(url, api_key, ca_file.as_deref()).map_err(failed)? })
    }

    /// Submits a burst (the request as JSON); returns the burst as JSON.
    fn submit(&self, py: Python<'_>, request: &str) -> PyResult<String> {
        let request: BurstRequest =
            serde_json::from_str(request).map_err(|e| PyValueError::new_err(format!("a burst request: {e}")))?;
        let burst = block(py, self.inner.submit(&request))?.map_err(failed)?;
        serde_json::to_string(&burst).map_err(failed)
    }

    /// The burst as JSON once it has ended, or as it is after `timeout`
    /// seconds (at most 25 per call: callers ask again).
    fn wait(&self, py: Python<'_>, id: &str, timeout: f64) -> PyResult<String> {
        let limit = Duration::try_from_secs_f64(timeout).map_err(|_| PyValueError::new_err("timeout must be >= 0"))?;
        let burst = block(py, self.inner.wait(id, limit))?.map_err(failed)?;
        serde_json::to_string(&burst).map_err(failed)
    }

    /// The burst as JSON, now.
    fn burst(&self, py: Python<'_>, id: &str) -> PyResult<String> {
        let burst = block(py, self.inner.burst(id))?.map_err(failed)?;
        serde_json::to_string(&burst).map_err(failed)
    }

    /// The invokers, as JSON (their slots, and `warm`: idle pack processes).
    fn invokers(&self, py: Python<'_>) -> PyResult<String> {
        let invokers = block(py, self.inner.invokers())?.map_err(failed)?;
        serde_json::to_string(&invokers).map_err(failed)
    }

    fn cancel(&self, py: Python<'_>, id: &str) -> PyResult<()> {
        block(py, self.inner.cancel(id))?.map_err(failed)?;
        Ok(())
    }

    /// Opens a program session living `lease` seconds between renewals; returns it as JSON (with its token).
    fn open_session(&self, py: Python<'_>, lease: f64) -> PyResult<String> {
        let request = SessionRequest { lease_secs: Some(lease) };
        let session = block(py, self.inner.open_session(&request))?.map_err(failed)?;
        serde_json::to_string(&session).map_err(failed)
    }
}

pyo3::create_exception!(
    _native,
    SessionEnded,
    pyo3::exceptions::PyRuntimeError,
    "The program session is gone: its program ended (or stopped renewing it), and its objects with it."
);

/// A program session's objects, reached with its token (from any process of the program).
#[pyclass(module = "volley._native", frozen)]
struct Session {
    client: volley_client::Client,
    id: String,
}

fn session_failed(e: volley_client::Error) -> PyErr {
    match e.status() {
        Some(404) => SessionEnded::new_err(e.to_string()),
        _ => failed(e),
    }
}

#[pymethods]
impl Session {
    #[new]
    #[pyo3(signature = (url, id, token, ca_file=None))]
    fn new(url: &str, id: String, token: &str, ca_file: Option<std::path::PathBuf>) -> PyResult<Self> {
        let client = volley_client::Client::with_ca(url, None, ca_file.as_deref()).map_err(failed)?.for_session(token);
        Ok(Session { client, id })
    }

    /// One operation (an `OpRequest` as JSON); its reply as JSON.
    fn op(&self, py: Python<'_>, request: &str) -> PyResult<String> {
        let request: OpRequest =
            serde_json::from_str(request).map_err(|e| PyValueError::new_err(format!("a session operation: {e}")))?;
        let reply = block(py, self.client.session_op(&self.id, &request))?.map_err(session_failed)?;
        serde_json::to_string(&reply).map_err(failed)
    }

    fn renew(&self, py: Python<'_>) -> PyResult<()> {
        block(py, self.client.renew_session(&self.id))?.map_err(session_failed)?;
        Ok(())
    }

    /// Ends the session: its objects are deleted, the bursts started in it cancelled.
    fn end(&self, py: Python<'_>) -> PyResult<()> {
        block(py, self.client.end_session(&self.id))?.map_err(session_failed)
    }
}

/// Objects under a prefix (`file:///dir` or `s3://bucket/prefix`).
#[pyclass(module = "volley._native", frozen)]
struct Storage {
    inner: volley_storage::Storage,
}

#[pymethods]
impl Storage {
    #[new]
    #[pyo3(signature = (url, endpoint=None, region=None, access_key=None, secret_key=None))]
    fn new(
        url: &str,
        endpoint: Option<String>,
        region: Option<String>,
        access_key: Option<String>,
        secret_key: Option<String>,
    ) -> PyResult<Self> {
        let opts = volley_storage::StorageOptions { endpoint, region, access_key, secret_key };
        let inner = volley_storage::Storage::open(url, &opts).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(Storage { inner })
    }

    fn put(&self, py: Python<'_>, key: &str, data: &[u8]) -> PyResult<()> {
        let data = data.to_vec();
        block(py, self.inner.put(key, data.into()))?.map_err(failed)
    }

    /// The object, or bytes `start..end` of it.
    #[pyo3(signature = (key, start=None, end=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        start: Option<u64>,
        end: Option<u64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let data = match (start, end) {
            (None, None) => block(py, self.inner.get(key))?,
            (start, Some(end)) => block(py, self.inner.get_range(key, start.unwrap_or(0)..end))?,
            (Some(start), None) => {
                let size = block(py, self.inner.size(key))?.map_err(failed)?;
                block(py, self.inner.get_range(key, start.min(size)..size))?
            }
        }
        .map_err(failed)?;
        Ok(PyBytes::new(py, &data))
    }

    /// Every object under `prefix` with its size, by key.
    #[pyo3(signature = (prefix=""))]
    fn list(&self, py: Python<'_>, prefix: &str) -> PyResult<Vec<(String, u64)>> {
        let mut objects = block(py, self.inner.list(prefix))?.map_err(failed)?;
        objects.sort();
        Ok(objects)
    }

    fn delete(&self, py: Python<'_>, key: &str) -> PyResult<()> {
        block(py, self.inner.delete(key))?.map_err(failed)
    }
}

/// A controller and an invoker running in this process; its Python packs run
/// `python -m volley._pack` with `python`.
#[pyclass(module = "volley._native", frozen)]
struct Platform {
    url: String,
    stop: CancellationToken,
    controller: volley_controller::Handle,
    invoker: volley_invoker::Handle,
}

#[pymethods]
impl Platform {
    #[new]
    #[pyo3(signature = (data_dir, python, slots=None))]
    fn new(py: Python<'_>, data_dir: PathBuf, python: String, slots: Option<usize>) -> PyResult<Self> {
        let stop = CancellationToken::new();
        let token = stop.clone();
        block(py, async move {
            let (brokers, storage) = brokers_from_env();
            let opts = volley_controller::Options {
                listen: "127.0.0.1:0".into(),
                brokers,
                storage,
                data_dir: data_dir.join("controller"),
                functions: vec![FunctionInfo::builtin(
                    volley_pyworkers::FUNCTION,
                    "runs a pickled Python function on every worker",
                )],
                ..Default::default()
            };
            let controller = opts.build().await.map_err(failed)?.run(token.child_token());
            controller.ready().await.map_err(failed)?;
            let defaults = volley_invoker::Options::default();
            let opts = volley_invoker::Options {
                controller: controller.url().to_string(),
                data_dir: data_dir.join("invoker"),
                program: PathBuf::from(&python),
                program_args: vec!["-m".into(), "volley._pack".into()],
                python,
                slots: slots.unwrap_or(defaults.slots),
                ..defaults
            };
            let invoker = opts.build().map_err(failed)?.run(token.child_token());
            match tokio::time::timeout(Duration::from_secs(30), invoker.ready()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(failed(e)),
                Err(_) => return Err(failed("the embedded invoker did not register within 30 s")),
            }
            let url = controller.url().to_string();
            Ok(Platform { url, stop: token, controller, invoker })
        })?
    }

    /// The controller's base URL.
    #[getter]
    fn url(&self) -> String {
        self.url.clone()
    }

    /// Stops both roles (their packs with them).
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        block(py, async {
            self.invoker.stop().await;
            let _ = self.controller.stop().await;
        })?;
        self.stop.cancel();
        Ok(())
    }
}

/// The brokers and the S3 service of an embedded platform: the `volley`
/// command's environment variables, over the same defaults.
fn brokers_from_env() -> (volley_comm::Brokers, volley_storage::StorageOptions) {
    let d = volley_comm::Brokers::default();
    let var = |name: &str, default: String| std::env::var(name).unwrap_or(default);
    let brokers = volley_comm::Brokers {
        redis_url: var("VOLLEY_REDIS_URL", d.redis_url),
        amqp_url: var("VOLLEY_AMQP_URL", d.amqp_url),
        nats_url: var("VOLLEY_NATS_URL", d.nats_url),
        s3_endpoint: var("VOLLEY_S3_ENDPOINT", d.s3_endpoint),
        s3_bucket: var("VOLLEY_S3_BUCKET", d.s3_bucket),
        s3_access_key: var("VOLLEY_S3_ACCESS_KEY", d.s3_access_key),
        s3_secret_key: var("VOLLEY_S3_SECRET_KEY", d.s3_secret_key),
        s3_prefix: "bursts/".into(),
        redis_connections: None,
    };
    let storage = volley_storage::StorageOptions {
        endpoint: Some(brokers.s3_endpoint.clone()),
        region: Some("us-east-1".into()),
        access_key: Some(brokers.s3_access_key.clone()),
        secret_key: Some(brokers.s3_secret_key.clone()),
    };
    (brokers, storage)
}

/// Serves one pack for the invoker that started this process (`python -m
/// volley._pack`); exits the process when the pack is over.
#[pyfunction]
#[pyo3(signature = (prestart=false))]
fn serve_pack(py: Python<'_>, prestart: bool) -> PyResult<()> {
    if prestart {
        volley_pyworkers::prestart();
    }
    let mut functions = volley_sdk::Functions::new();
    volley_pyworkers::register(&mut functions);
    let code = py.detach(|| volley_sdk::serve_status(functions));
    // The pack is over: exit now, as a pack binary does (no interpreter shutdown to wait for).
    std::process::exit(code as i32)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Client>()?;
    m.add_class::<Platform>()?;
    m.add_class::<Storage>()?;
    m.add_class::<Session>()?;
    m.add("SessionEnded", m.py().get_type::<SessionEnded>())?;
    m.add_function(wrap_pyfunction!(serve_pack, m)?)?;
    Ok(())
}
