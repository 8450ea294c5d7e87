//! The invoker's Unix socket: pack processes connect here, say hello with the
//! id the invoker gave them, and are handed to the task that started them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::net::UnixListener;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;
use volley_proto::pack::FromPack;

/// A pack process that has said hello.
pub(crate) struct PackConnection {
    pub(crate) protocol: u32,
    pub(crate) functions: Vec<String>,
    pub(crate) lines: Lines<BufReader<OwnedReadHalf>>,
    pub(crate) write: OwnedWriteHalf,
}

pub(crate) struct Router {
    pub(crate) path: PathBuf,
    waiters: Mutex<HashMap<String, oneshot::Sender<PackConnection>>>,
}

impl Router {
    /// Listens at `path` (a stale socket file from an earlier run is replaced).
    pub(crate) fn bind(path: &Path) -> std::io::Result<Arc<Router>> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        let router = Arc::new(Router { path: path.to_path_buf(), waiters: Mutex::new(HashMap::new()) });
        let weak = Arc::downgrade(&router);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let Some(router) = weak.upgrade() else { return };
                tokio::spawn(async move { router.greet(stream).await });
            }
        });
        Ok(router)
    }

    /// The connection of process `id`, once it says hello (it is waited for from now on).
    pub(crate) fn hello_of(&self, id: &str) -> oneshot::Receiver<PackConnection> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiters.lock() {
            w.insert(id.to_string(), tx);
        }
        rx
    }

    pub(crate) fn forget(&self, id: &str) {
        if let Ok(mut w) = self.waiters.lock() {
            w.remove(id);
        }
    }

    async fn greet(&self, stream: tokio::net::UnixStream) {
        // A process that connects and says nothing is dropped, not waited for.
        let Some((process, conn)) = hello(stream, Duration::from_secs(10)).await else { return };
        let waiter = self.waiters.lock().ok().and_then(|mut w| w.remove(&process));
        match waiter {
            Some(tx) => {
                let _ = tx.send(conn);
            }
            None => tracing::warn!(process, "hello from a process this invoker did not start; dropped"),
        }
    }
}

/// Reads a pack process's hello on `stream` (within `wait`): the process id it gives, and its connection.
pub(crate) async fn hello(stream: tokio::net::UnixStream, wait: Duration) -> Option<(String, PackConnection)> {
    let (read, write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let Ok(Ok(Some(first))) = tokio::time::timeout(wait, lines.next_line()).await else {
        return None;
    };
    let Ok(FromPack::Hello { process, protocol, functions, .. }) = serde_json::from_str(&first) else {
        tracing::warn!("a pack process spoke to the invoker without a valid hello; dropped");
        return None;
    };
    Some((process, PackConnection { protocol, functions, lines, write }))
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
