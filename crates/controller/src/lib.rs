//! The controller: Volley's API server.
//!
//! It accepts bursts over HTTP, keeps them in a durable store, places their
//! packs on the invokers (whole burst or nothing), relays the packs'
//! rendezvous, follows every worker to its end and fails bursts whose
//! invokers stop heartbeating or whose time runs out.
//!
//! Recipe (every long-running role follows it): [`Options`] (serde, with
//! `Default`) → [`Options::build`] (checks, store, recovery, bound address) →
//! [`Controller::run`] with a cancellation token → a cheap [`Handle`]
//! (`url()`, `ready()`, `stop()`).

mod api;
mod auth;
mod control_plane;
mod error;
mod fleet;
mod flows;
mod functions;
mod lifecycle;
mod options;
mod placement;
mod scheduler;
mod store;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use auth::{MIN_SECRET_LEN, parse_keys};
pub use error::{Error, Result};
pub use options::Options;
pub use store::{Batch, Docs, Store, SummaryFilter};
pub use tls::TlsFiles;

/// A controller that has opened its store, recovered what a previous run left
/// unfinished and bound its address: [`Controller::run`] serves it.
pub struct Controller {
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    plane: Arc<control_plane::ControlPlane>,
    flows: flows::Recovered,
}

impl Options {
    /// Checks the settings, opens the store, recovers unfinished bursts and
    /// binds the listener.
    pub async fn build(self) -> Result<Controller> {
        self.validate()?;
        let tls = self.tls.as_ref().map(tls::server_config).transpose()?;
        std::fs::create_dir_all(&self.data_dir)
            .map_err(|e| Error::Store(format!("cannot create the data directory {}: {e}", self.data_dir.display())))?;
        let store = Store::open(&self.store, &self.data_dir).await?;
        let listener = tokio::net::TcpListener::bind(&self.listen)
            .await
            .map_err(|e| Error::BadRequest(format!("cannot listen on {}: {e}", self.listen)))?;
        let addr =
            listener.local_addr().map_err(|e| Error::BadRequest(format!("cannot listen on {}: {e}", self.listen)))?;
        auth::check_exposure(&addr, &self)?;
        let (plane, ended) = control_plane::ControlPlane::start(self, store).await?;
        let flows = flows::Engine::recover(plane.clone(), ended).await?;
        Ok(Controller { listener, tls, plane, flows })
    }
}

impl Controller {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serves the API until `cancel` fires (or [`Handle::stop`]); returns at once.
    pub fn run(self, cancel: CancellationToken) -> Handle {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        // Listening on every interface: clients on this host use loopback
        // (a certificate names 127.0.0.1, never 0.0.0.0).
        let mut addr = self.local_addr();
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let url = format!("{scheme}://{addr}");
        let (done_tx, done) = tokio::sync::watch::channel(None);
        let plane = self.plane.clone();
        let stop = cancel.clone();
        let ticker = tokio::spawn(control_plane::ticker(self.plane.clone(), cancel.clone()));
        self.flows.run(cancel.clone());
        tokio::spawn(async move {
            let app = api::router(self.plane);
            let until = async move { stop.cancelled().await };
            let served = match self.tls {
                Some(config) => match tls::TlsListener::new(self.listener, config) {
                    Ok(listener) => axum::serve(listener, app).with_graceful_shutdown(until).await,
                    Err(e) => Err(e),
                },
                None => axum::serve(self.listener, app).with_graceful_shutdown(until).await,
            }
            .map_err(|e| format!("the HTTP server stopped: {e}"));
            ticker.abort();
            let _ = done_tx.send(Some(served));
        });
        Handle { url, cancel, done, plane }
    }
}

/// A running controller. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    url: String,
    cancel: CancellationToken,
    done: tokio::sync::watch::Receiver<Option<std::result::Result<(), String>>>,
    plane: Arc<control_plane::ControlPlane>,
}

impl Handle {
    /// The API's base URL, `http://host:port` (`https://` when it serves TLS).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Returns when the API serves (it does from the start: the address is
    /// bound before [`Controller::run`]); an error if it stopped instead.
    pub async fn ready(&self) -> Result<()> {
        match self.done.borrow().as_ref() {
            Some(Err(e)) => Err(Error::Store(e.clone())),
            Some(Ok(())) => Err(Error::Store("the controller has stopped".into())),
            None => Ok(()),
        }
    }

    /// How many invokers are registered and ready.
    pub fn ready_invokers(&self) -> usize {
        self.plane.invokers().iter().filter(|i| i.status == "ready").count()
    }

    /// Waits up to `timeout` for `n` invokers to be ready.
    pub async fn wait_for_invokers(&self, n: usize, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.ready_invokers() < n {
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Capacity(format!(
                    "{} of {n} invokers registered within {timeout:?}",
                    self.ready_invokers()
                )));
            }
            let changed = self.plane.changed.notified();
            let _ = tokio::time::timeout(Duration::from_millis(20), changed).await;
        }
        Ok(())
    }

    /// Stops serving and waits until the server has stopped; its result.
    pub async fn stop(&self) -> Result<()> {
        self.cancel.cancel();
        let mut done = self.done.clone();
        let ended = done.wait_for(Option::is_some).await.map(|d| d.clone()).ok().flatten();
        match ended {
            Some(Err(e)) => Err(Error::Store(e)),
            _ => Ok(()),
        }
    }
}
