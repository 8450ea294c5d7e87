//! Bounded capture of a pack process's stdout and stderr: the last `limit`
//! bytes of each are kept (crash messages come last).

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt};

#[derive(Clone, Default)]
pub(crate) struct Captured {
    inner: Arc<Mutex<Tail>>,
}

#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Captured {
    /// Reads `from` to its end, keeping the last `limit` bytes.
    pub(crate) fn collect(
        &self,
        mut from: impl AsyncRead + Unpin + Send + 'static,
        limit: usize,
    ) -> tokio::task::JoinHandle<()> {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = from.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let Ok(mut tail) = inner.lock() else { return };
                tail.bytes.extend_from_slice(&buf[..n]);
                if tail.bytes.len() > limit {
                    let excess = tail.bytes.len() - limit;
                    tail.bytes.drain(..excess);
                    tail.truncated = true;
                }
            }
        })
    }

    /// The text kept so far, and whether bytes were dropped.
    pub(crate) fn text(&self) -> (String, bool) {
        match self.inner.lock() {
            Ok(t) => (String::from_utf8_lossy(&t.bytes).into_owned(), t.truncated),
            Err(_) => (String::new(), true),
        }
    }

    /// The last few lines, for an error message.
    pub(crate) fn last_lines(&self, n: usize) -> String {
        let (text, _) = self.text();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(n)..].join(" | ")
    }
}

/// A pack process's stdout and stderr.
#[derive(Clone, Default)]
pub(crate) struct Logs {
    pub(crate) stdout: Captured,
    pub(crate) stderr: Captured,
}

impl Logs {
    /// The last lines the process printed, for an error message ("" if none).
    pub(crate) fn tail(&self) -> String {
        let err = self.stderr.last_lines(5);
        let text = if err.is_empty() { self.stdout.last_lines(5) } else { err };
        if text.is_empty() { String::new() } else { format!("; it printed: {text}") }
    }
}
