//! `GET /healthz` for an orchestrator's probes (a Kubernetes readiness or
//! liveness probe): `ok` once the invoker is registered with its controller,
//! 503 before that and while it drains, so that nothing routes to an invoker
//! that is going away.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// Binds `listen` now, so that a wrong address stops the invoker at start.
pub(crate) fn bind(listen: &str) -> Result<std::net::TcpListener, Error> {
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| Error::Options(format!("cannot serve health checks on {listen}: {e}")))?;
    listener.set_nonblocking(true).map_err(|e| Error::Options(format!("health listener on {listen}: {e}")))?;
    Ok(listener)
}

/// Serves `/healthz` until `shutdown`.
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    registered: watch::Receiver<Option<String>>,
    draining: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("health checks are not served: {e}");
            return;
        }
    };
    let health = move || {
        let (registered, draining) = (registered.clone(), draining.clone());
        async move {
            if draining.load(Ordering::SeqCst) {
                (StatusCode::SERVICE_UNAVAILABLE, "draining")
            } else if registered.borrow().is_none() {
                (StatusCode::SERVICE_UNAVAILABLE, "not registered with the controller yet")
            } else {
                (StatusCode::OK, "ok")
            }
        }
    };
    let app = axum::Router::new().route("/healthz", get(health));
    let served = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
    if let Err(e) = served {
        tracing::warn!("health checks stopped: {e}");
    }
}
