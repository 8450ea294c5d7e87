//! `GET /healthz` for an orchestrator's probes (a Kubernetes readiness or
//! liveness probe): `ok` while the invoker is registered with its controller
//! and heard from it lately, 503 before that, when it has not reached it for
//! a minute, and while it drains (nothing should route to an invoker that is
//! going away).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// Longest without an answered poll before the invoker calls itself unhealthy
/// (a poll waits at most 30 s at the controller).
const STALE: Duration = Duration::from_secs(60);

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
    last_poll: Arc<AtomicU64>,
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
        let (registered, draining, last_poll) = (registered.clone(), draining.clone(), last_poll.clone());
        async move {
            let since = volley_proto::now_micros().saturating_sub(last_poll.load(Ordering::SeqCst));
            if draining.load(Ordering::SeqCst) {
                (StatusCode::SERVICE_UNAVAILABLE, "draining".to_string())
            } else if registered.borrow().is_none() {
                (StatusCode::SERVICE_UNAVAILABLE, "not registered with the controller yet".to_string())
            } else if Duration::from_micros(since) > STALE {
                let secs = since / 1_000_000;
                (StatusCode::SERVICE_UNAVAILABLE, format!("the controller has not answered for {secs} s"))
            } else {
                (StatusCode::OK, "ok".to_string())
            }
        }
    };
    let app = axum::Router::new().route("/healthz", get(health));
    let served = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
    if let Err(e) = served {
        tracing::warn!("health checks stopped: {e}");
    }
}
