//! HTTPS for a controller reached across hosts (issue 16): its certificate
//! chain and key (PEM files) loaded into a rustls configuration, and a
//! listener for axum that completes each TLS handshake apart from the accept
//! loop, so that a slow or hostile client cannot hold up the others.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::error::{Error, Result};

/// Longest a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most handshakes under way at once; a connection beyond is closed at once
/// (its client retries), never queued behind the others.
const MAX_HANDSHAKES: usize = 256;
/// Most handshakes under way from one address: one host holding connections
/// open cannot take every slot.
const MAX_HANDSHAKES_PER_ADDRESS: usize = 16;

/// The controller's certificate chain and private key, PEM files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate, followed by any intermediate ones.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

fn unreadable(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::BadRequest(format!("cannot use {} as the controller's {what}: {e}", path.display()))
}

/// The server configuration for these files; an error saying which file is wrong and why.
pub(crate) fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| unreadable("TLS certificate", &files.cert, e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| unreadable("TLS certificate", &files.cert, e))?;
    if certs.is_empty() {
        return Err(unreadable("TLS certificate", &files.cert, "it holds no PEM certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| unreadable("TLS key", &files.key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::BadRequest(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            Error::BadRequest(format!(
                "the controller's TLS certificate {} and key {} do not go together: {e}",
                files.cert.display(),
                files.key.display()
            ))
        })?;
    // The API speaks HTTP/1.1 only (axum is built without http2).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepted connections whose TLS handshake has completed, for `axum::serve`.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub(crate) fn new(listener: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), tx));
        Ok(TlsListener { ready, local, acceptor })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let per_address = Arc::new(Mutex::new(HashMap::new()));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = ready.closed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!("accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            tracing::debug!("too many TLS handshakes under way: closing the connection from {peer}");
            continue;
        };
        let Some(from_peer) = Pending::take(&per_address, peer.ip()) else {
            tracing::debug!("too many TLS handshakes under way from {}: closing one", peer.ip());
            continue;
        };
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            let _permits = (permit, from_peer);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!("TLS handshake with {peer} failed: {e}"),
                Err(_) => tracing::debug!("TLS handshake with {peer} timed out"),
            }
        });
    }
}

/// One handshake under way from an address, counted until dropped.
struct Pending {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    address: IpAddr,
}

impl Pending {
    fn take(counts: &Arc<Mutex<HashMap<IpAddr, usize>>>, address: IpAddr) -> Option<Pending> {
        let mut all = counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = all.entry(address).or_insert(0);
        if *n >= MAX_HANDSHAKES_PER_ADDRESS {
            return None;
        }
        *n += 1;
        Some(Pending { counts: counts.clone(), address })
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut all = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = all.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                all.remove(&self.address);
            }
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop is gone only when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
