//! The pack process's line to its invoker: JSON messages, one per line, over
//! the Unix socket named in `VOLLEY_INVOKER_SOCKET`, or over the connected
//! socket the invoker left at descriptor N when that says `fd:N` (a
//! sandboxed pack, whose uid cannot reach the invoker's socket file).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use volley_comm::Rendezvous;
use volley_proto::pack::{CacheAnswer, FromPack, ToPack};

/// How `VOLLEY_INVOKER_SOCKET` names an inherited descriptor.
const INHERITED: &str = "fd:";

/// The inherited control socket, taken once (a second take would own it twice).
fn inherited(fd: &str) -> std::io::Result<UnixStream> {
    use std::os::fd::FromRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};
    static TAKEN: AtomicBool = AtomicBool::new(false);
    let fd: i32 = fd.parse().map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{INHERITED}{fd} names no descriptor"))
    })?;
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err(std::io::Error::other("the inherited control socket was taken already"));
    }
    // SAFETY: the invoker left this descriptor open for this process, and
    // TAKEN makes this the only owner; if it is not a socket, the calls below fail.
    let socket = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
    // Not passed on: the Python fork server and anything else this process starts must not hold it.
    rustix::io::fcntl_setfd(&socket, rustix::io::FdFlags::CLOEXEC)?;
    socket.set_nonblocking(true)?;
    UnixStream::from_std(socket)
}

enum Outgoing {
    Message(FromPack),
    Flush(oneshot::Sender<()>),
}

/// Requests waiting for the invoker's answer, by number.
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<CacheAnswer>>>>;

/// Sends messages to the invoker; cheap to clone, usable from any thread.
#[derive(Clone)]
pub(crate) struct Control {
    tx: mpsc::UnboundedSender<Outgoing>,
    pending: Pending,
    next: Arc<AtomicU64>,
}

impl Control {
    /// Connects to the invoker; returns the sender and the stream of its messages
    /// (which ends when the invoker goes away).
    pub(crate) async fn connect(path: &str) -> std::io::Result<(Control, mpsc::UnboundedReceiver<ToPack>)> {
        let stream = match path.strip_prefix(INHERITED) {
            Some(fd) => inherited(fd)?,
            None => {
                tokio::time::timeout(Duration::from_secs(10), UnixStream::connect(path)).await.map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "the invoker's socket did not answer")
                })??
            }
        };
        let (read, mut write) = stream.into_split();
        let (tx, mut outgoing) = mpsc::unbounded_channel::<Outgoing>();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut flushed = Vec::new();
            while let Some(first) = outgoing.recv().await {
                // Everything queued goes out in one write: hundreds of workers
                // report their start at once, and each syscall costs the burst.
                let mut item = Some(first);
                while let Some(next) = item.take().or_else(|| outgoing.try_recv().ok()) {
                    match next {
                        Outgoing::Message(msg) => {
                            if serde_json::to_writer(&mut buf, &msg).is_ok() {
                                buf.push(b'\n');
                            }
                        }
                        Outgoing::Flush(done) => flushed.push(done),
                    }
                    if buf.len() > 1 << 20 {
                        break;
                    }
                }
                if write.write_all(&buf).await.is_err() {
                    return;
                }
                buf.clear();
                for done in flushed.drain(..) {
                    let _ = done.send(());
                }
            }
        });
        let (incoming_tx, incoming) = mpsc::unbounded_channel();
        let pending = Pending::default();
        let answered = pending.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<ToPack>(&line) {
                    Ok(ToPack::Cache(answer)) => {
                        let waiting = answered.lock().unwrap_or_else(|p| p.into_inner()).remove(&answer.request);
                        if let Some(waiting) = waiting {
                            let _ = waiting.send(answer);
                        }
                    }
                    Ok(msg) => {
                        if incoming_tx.send(msg).is_err() {
                            return;
                        }
                    }
                    Err(e) => note!("volley: ignoring a message from the invoker that does not parse: {e}"),
                }
            }
        });
        Ok((Control { tx, pending, next: Arc::default() }, incoming))
    }

    /// Sends the request `make(number)` and waits up to `limit` for its answer.
    pub(crate) async fn ask(
        &self,
        make: impl FnOnce(u64) -> FromPack,
        limit: Duration,
    ) -> Result<CacheAnswer, &'static str> {
        let request = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(request, tx);
        self.send(make(request));
        let answer = tokio::time::timeout(limit, rx).await;
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&request);
        match answer {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err("the invoker went away"),
            Err(_) => Err("the invoker did not answer in time (an older invoker without a cache?)"),
        }
    }

    pub(crate) fn send(&self, msg: FromPack) {
        let _ = self.tx.send(Outgoing::Message(msg));
    }

    /// Waits (briefly) until everything sent so far is written.
    pub(crate) async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.tx.send(Outgoing::Flush(done)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), flushed).await;
        }
    }
}

/// The platform's rendezvous: the pack tells the invoker its address, the
/// controller collects every pack's and sends them back through the invoker.
pub(crate) struct ControlRendezvous {
    pub(crate) control: Control,
    pub(crate) peers: Mutex<Option<oneshot::Receiver<Vec<String>>>>,
}

impl Rendezvous for ControlRendezvous {
    fn exchange<'a>(
        &'a self,
        burst: &'a str,
        _pack: usize,
        packs: usize,
        addr: String,
        timeout: Duration,
    ) -> BoxFuture<'a, volley_comm::Result<Vec<String>>> {
        Box::pin(async move {
            let peers = self.peers.lock().ok().and_then(|mut p| p.take());
            let Some(peers) = peers else {
                return Err(volley_comm::Error::invalid("the pack asked for its peers twice"));
            };
            self.control.send(FromPack::Address { address: addr });
            crate::runtime::trace("address published");
            let addresses = tokio::time::timeout(timeout, peers)
                .await
                .map_err(|_| {
                    volley_comm::Error::timeout(timeout, format!("the other packs of burst {burst} to start"))
                })?
                .map_err(|_| volley_comm::Error::invalid("the invoker went away before the packs met"))?;
            crate::runtime::trace("peers known");
            if addresses.len() != packs {
                return Err(volley_comm::Error::invalid(format!(
                    "the platform sent {} addresses for {packs} packs",
                    addresses.len()
                )));
            }
            Ok(addresses)
        })
    }
}
