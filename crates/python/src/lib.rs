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
use tokio_util::sync::CancellationToken;
use volley_proto::api::{BurstRequest, FunctionInfo};

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
    #[pyo3(signature = (url, api_key=None))]
    fn new(url: &str, api_key: Option<&str>) -> PyResult<Self> {
        Ok(Client { inner: volley_client::Client::new(url, api_key).map_err(failed)? })
    }

    /// Submits a burst (the request as JSON); returns the burst as JSON.
    fn submit(&self, py: Python<'_>, request: &str) -> PyResult<String> {
        let request: BurstRequest =
            serde_json::from_str(request).map_err(|e| PyValueError::new_err(format!("a burst request: {e}")))?;
        let burst = block(py, self.inner.submit(&request))?.map_err(failed)?;
        serde_json::to_string(&burst).map_err(failed)
    }

    /// The burst as JSON once it has ended, or as it is after `timeout` seconds.
    fn wait(&self, py: Python<'_>, id: &str, timeout: f64) -> PyResult<String> {
        let limit = Duration::try_from_secs_f64(timeout).map_err(|_| PyValueError::new_err("timeout must be >= 0"))?;
        let burst = block(py, self.inner.wait_until_final(id, limit))?.map_err(failed)?;
        serde_json::to_string(&burst).map_err(failed)
    }

    /// The burst as JSON, now.
    fn burst(&self, py: Python<'_>, id: &str) -> PyResult<String> {
        let burst = block(py, self.inner.burst(id))?.map_err(failed)?;
        serde_json::to_string(&burst).map_err(failed)
    }

    fn cancel(&self, py: Python<'_>, id: &str) -> PyResult<()> {
        block(py, self.inner.cancel(id))?.map_err(failed)?;
        Ok(())
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
            let opts = volley_controller::Options {
                listen: "127.0.0.1:0".into(),
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

/// Serves one pack for the invoker that started this process (`python -m
/// volley._pack`); exits the process when the pack is over.
#[pyfunction]
fn serve_pack(py: Python<'_>) -> PyResult<()> {
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
    m.add_function(wrap_pyfunction!(serve_pack, m)?)?;
    Ok(())
}
