//! Direct pack-to-pack connections: TCP, or Unix domain sockets on one host.
//!
//! Pack `i` dials every pack below it and accepts from every pack above it,
//! `connections` times per pair; every connection is authenticated with the
//! burst's secret before it carries anything. A large bundle is striped over
//! all connections of its pair; small ones take turns. In `shm` mode (Unix
//! sockets only) large packets cross through shared memory instead, see
//! `shm.rs`.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use socket2::Socket;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{Mutex, mpsc};

use super::auth::{self, Link};
use super::inbound::Inbound;
use super::sock_io::SockWriter;
use super::{PacketSink, SinkRef, Tasks, shm};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::options::{PackOptions, StreamOptions};
use crate::rendezvous::Rendezvous;
use crate::wire::{HEADER_LEN, Header, Kind, OutPacket};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Tcp,
    Uds,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Tcp => "tcp",
            Family::Uds => "uds",
        }
    }
}

/// A connection before it is split: the handshake runs on the whole stream.
enum Conn {
    Tcp(TcpStream),
    Uds(UnixStream),
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Uds(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Uds(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
            Conn::Uds(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Uds(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl Conn {
    /// The halves that carry packets once the connection is authenticated:
    /// the socket to read from and a writer.
    fn split(self) -> std::io::Result<(Socket, SockWriter)> {
        // Both leave tokio's reactor; each half registers only for what it waits on.
        let sock = match self {
            Conn::Tcp(s) => Socket::from(s.into_std()?),
            Conn::Uds(s) => Socket::from(s.into_std()?),
        };
        let write = sock.try_clone()?;
        Ok((sock, SockWriter::new(write)))
    }
}

/// Packets up to this size are copied into one buffer and written with one call.
const COALESCE: usize = 64 << 10;

/// Connections a spinning worker reads per poll: each costs a system call,
/// and with many packs the rest wait for the next poll or the background task.
const PUMPS_PER_CALL: usize = 4;

enum Listener {
    Tcp(TcpListener),
    Uds(UnixListener, PathBuf),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<Conn> {
        Ok(match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                s.set_nodelay(true)?;
                Conn::Tcp(s)
            }
            Listener::Uds(l, _) => {
                let s = l.accept().await?.0;
                tune_uds(&s);
                Conn::Uds(s)
            }
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Uds(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

pub(crate) struct StreamTransport {
    family: Family,
    /// `peers[p][c]`: connection `c` to pack `p` (empty for this pack).
    peers: Vec<Vec<Mutex<SockWriter>>>,
    /// Every connection's receiving side.
    inbound: Vec<Arc<Inbound>>,
    /// Where a spinning worker starts reading (so each connection gets its turn).
    next_pump: AtomicUsize,
    turn: AtomicUsize,
    tasks: Tasks,
    /// Ranks of each pack, to name a peer whose connection broke.
    layout: Layout,
    /// `shm` mode: the segments this pack sends each peer through.
    shared: Option<Vec<shm::Outbound>>,
}

impl StreamTransport {
    pub async fn connect(
        opts: &PackOptions,
        stream: &StreamOptions,
        family: Family,
        rendezvous: &dyn Rendezvous,
        sink: SinkRef,
    ) -> Result<Self> {
        let me = opts.pack;
        let packs = opts.layout.packs();
        let conns = stream.connections.max(1);
        let deadline = Instant::now() + opts.connect_timeout;
        let (listener, addr) = listen(opts, stream, family, rendezvous.assigned(me)).await?;

        // Accept (and authenticate) from the packs above this one from now on,
        // so early callers and strangers are answered while addresses are exchanged.
        let expected = (packs - 1 - me) * conns;
        let (accepted_tx, mut accepted_rx) = mpsc::channel::<(Link, Conn)>(expected.max(1));
        let tasks = Tasks::default();
        if expected > 0 {
            let secret = opts.secret.clone();
            let burst = opts.burst.clone();
            let handshake_timeout = opts.connect_timeout;
            tasks.spawn(async move {
                loop {
                    let Ok(mut conn) = listener.accept().await else {
                        // Out of descriptors or similar: give the system a moment.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let (secret, burst, tx) = (secret.clone(), burst.clone(), accepted_tx.clone());
                    tokio::spawn(async move {
                        match auth::accept(&mut conn, &secret, &burst, me as u32, handshake_timeout).await {
                            Ok(link) => {
                                let _ = tx.send((link, conn)).await;
                            }
                            Err(err) => tracing::warn!(%err, "refused a connection"),
                        }
                    });
                }
            });
        } else {
            drop(listener);
        }
        let addrs = rendezvous.exchange(&opts.burst, me, packs, addr, opts.connect_timeout).await?;

        let mut links: Vec<Vec<Option<Conn>>> = (0..packs).map(|_| (0..conns).map(|_| None).collect()).collect();
        // Dial every lower pack, all connections at once.
        let dials = (0..me).flat_map(|peer| (0..conns).map(move |c| (peer, c))).map(|(peer, c)| {
            let addr = &addrs[peer];
            async move {
                let mut conn = dial(family, addr, deadline).await?;
                let link = Link { from: me as u32, to: peer as u32, conn: c as u32 };
                auth::dial(&mut conn, &opts.secret, &opts.burst, link, remaining(deadline)).await?;
                Ok::<_, Error>((peer, c, conn))
            }
        });
        for (peer, c, conn) in futures::future::try_join_all(dials).await? {
            links[peer][c] = Some(conn);
        }
        for _ in 0..expected {
            let (link, conn) = tokio::time::timeout(remaining(deadline), accepted_rx.recv())
                .await
                .ok()
                .flatten()
                .ok_or_else(|| Error::timeout(opts.connect_timeout, "the packs above this one to connect"))?;
            let (from, c) = (link.from as usize, link.conn as usize);
            if from <= me || from >= packs || c >= conns || links[from][c].is_some() {
                return Err(Error::Auth(format!("unexpected connection claiming pack {from}, connection {c}").into()));
            }
            links[from][c] = Some(conn);
        }
        // The mesh is complete: stop listening (and remove the socket file).
        tasks.abort_all();

        // Segments cross on each pair's first connection, with the packets
        // that announce them (so an announcement always comes first).
        let shared = family == Family::Uds && stream.shared_memory;
        let mut peers = Vec::with_capacity(packs);
        let mut inbound = Vec::new();
        for (pack, conns) in links.into_iter().enumerate() {
            let mut writers = Vec::new();
            for (c, conn) in conns.into_iter().enumerate() {
                let Some(conn) = conn else { continue };
                let setup =
                    |e: std::io::Error| Error::transport(family.name(), format!("setting up a connection: {e}"));
                let (read, writer) = conn.split().map_err(setup)?;
                let reader = Arc::new(Inbound::new(read, pack, shared && c == 0).map_err(setup)?);
                tasks.spawn(reader.clone().run(sink.clone()));
                inbound.push(reader);
                writers.push(Mutex::new(writer));
            }
            peers.push(writers);
        }
        Ok(StreamTransport {
            family,
            peers,
            inbound,
            next_pump: AtomicUsize::new(0),
            turn: AtomicUsize::new(0),
            tasks,
            layout: opts.layout.clone(),
            shared: shared.then(|| (0..packs).map(|_| shm::Outbound::default()).collect()),
        })
    }

    /// Reads what has arrived on up to [`PUMPS_PER_CALL`] connections, for a
    /// worker that busy-polls (see `inbound.rs`).
    pub fn progress(&self, sink: &dyn PacketSink) {
        let n = self.inbound.len();
        if n == 0 {
            return;
        }
        let first = self.next_pump.fetch_add(PUMPS_PER_CALL, Ordering::Relaxed);
        for k in 0..PUMPS_PER_CALL.min(n) {
            self.inbound[(first + k) % n].try_pump(sink);
        }
    }

    pub async fn send(&self, dst: usize, packets: Vec<OutPacket>) -> Result<()> {
        let writers = self
            .peers
            .get(dst)
            .filter(|w| !w.is_empty())
            .ok_or_else(|| Error::invalid(format!("no connection to pack {dst}")))?;
        let packets = match self.shared.as_ref().and_then(|s| s.get(dst)) {
            Some(segments) => self.send_shared(dst, segments, &writers[0], packets).await?,
            None => packets,
        };
        if packets.is_empty() {
            return Ok(());
        }
        let n = writers.len();
        let first = self.turn.fetch_add(1, Ordering::Relaxed) % n;
        if packets.len() == 1 || n == 1 {
            let mut w = writers[first].lock().await;
            for p in &packets {
                write_packet(&mut *w, p).await.map_err(|e| self.io_error(dst, e))?;
            }
            return Ok(());
        }
        let mut lanes: Vec<Vec<&OutPacket>> = vec![Vec::new(); n];
        for (i, p) in packets.iter().enumerate() {
            lanes[(first + i) % n].push(p);
        }
        let sends = lanes.into_iter().enumerate().filter(|(_, l)| !l.is_empty()).map(|(c, lane)| async move {
            let mut w = writers[c].lock().await;
            for p in lane {
                write_packet(&mut *w, p).await?;
            }
            std::io::Result::Ok(())
        });
        futures::future::try_join_all(sends).await.map_err(|e| self.io_error(dst, e))?;
        Ok(())
    }

    /// Sends the large packets through shared memory segments and returns
    /// the rest (small ones, and any for which no segment is free).
    async fn send_shared(
        &self,
        dst: usize,
        segments: &shm::Outbound,
        writer: &Mutex<SockWriter>,
        packets: Vec<OutPacket>,
    ) -> Result<Vec<OutPacket>> {
        let mut rest = Vec::new();
        for p in packets {
            let len = p.header.len as usize;
            let Some(placed) = (len >= shm::SHM_MIN).then(|| segments.place(&p.body, len)).flatten() else {
                rest.push(p);
                continue;
            };
            // Until its descriptor is written, the segment (and any new one
            // announced with it) is the sender's to forget (a failed write,
            // or a send given up at its timeout).
            let spares: Vec<u32> = placed.announce.iter().map(|a| a.id).filter(|&id| id != placed.id).collect();
            let unsent = Unsent { segments, ids: [&[placed.id][..], &spares].concat() };
            let mut w = writer.lock().await;
            write_shared(&mut w, &p.header, placed).await.map_err(|e| self.io_error(dst, e))?;
            unsent.sent();
            // Only now may other senders use the spares.
            segments.announced(&spares);
        }
        Ok(rest)
    }

    /// One piece per connection (so they move in parallel), never below 1
    /// MiB; in `shm` mode one piece, as a segment moves it whole.
    pub fn chunk_for(&self, total: u64, configured: u32) -> u32 {
        if self.shared.is_some() {
            return configured;
        }
        let conns = self.peers.iter().map(Vec::len).max().unwrap_or(1).max(1) as u64;
        if conns == 1 {
            return configured;
        }
        total.div_ceil(conns).max(1 << 20).min(configured as u64) as u32
    }

    /// A direct connection that cannot be written to means the peer pack is
    /// gone: that is a consequence of its end (which its own report names),
    /// not a cause of its own, so it is reported as the peer's disconnect.
    fn io_error(&self, dst: usize, e: std::io::Error) -> Error {
        let ranks = self.layout.ranks_of(dst.min(self.layout.packs().saturating_sub(1)));
        Error::Disconnected {
            pack: dst,
            first: ranks.start,
            last: ranks.end.saturating_sub(1),
            reason: format!("writing to it over {} failed: {e}", self.family.name()).into(),
        }
    }

    /// Ends every connection with a `Fin` mark, so the peer knows the close was meant.
    pub async fn shutdown(&self) -> Result<()> {
        self.tasks.abort_all();
        let fin = Header { kind: Kind::Fin, src_pack: 0, seq: 0, total: 0, offset: 0, len: 0 }.encode();
        for writers in &self.peers {
            for w in writers {
                let mut w = w.lock().await;
                let _ = w.write_all(&fin).await;
                let _ = w.shutdown().await;
            }
        }
        Ok(())
    }
}

async fn listen(
    opts: &PackOptions,
    stream: &StreamOptions,
    family: Family,
    assigned: Option<String>,
) -> Result<(Listener, String)> {
    let err = |e: std::io::Error, what: &str| Error::transport(family.name(), format!("cannot listen on {what}: {e}"));
    match family {
        Family::Tcp => {
            let bind = assigned.clone().or_else(|| stream.bind.clone()).unwrap_or_else(|| "127.0.0.1:0".into());
            let listener = TcpListener::bind(&bind).await.map_err(|e| err(e, &bind))?;
            let local = listener.local_addr().map_err(|e| err(e, &bind))?;
            let addr = match (&assigned, &stream.advertise_host) {
                (Some(a), _) => a.clone(),
                (None, Some(host)) => format!("{host}:{}", local.port()),
                (None, None) if local.ip().is_unspecified() => {
                    return Err(Error::invalid(format!(
                        "listening on {bind} needs an advertise host that other packs can dial"
                    )));
                }
                (None, None) => local.to_string(),
            };
            Ok((Listener::Tcp(listener), addr))
        }
        Family::Uds => {
            let path = match assigned {
                Some(p) => PathBuf::from(p),
                None => {
                    let nonce: u32 = rand::random();
                    let dir = stream.uds_dir();
                    let named = dir.join(format!("volley-{}-{}-{nonce:08x}.sock", opts.burst, opts.pack));
                    // A socket's path must fit in sun_path (108 bytes with its NUL): in a
                    // deep directory (a sandboxed burst's own, below a long data
                    // directory) the name without the burst may still fit.
                    if named.as_os_str().len() <= SUN_PATH_MAX {
                        named
                    } else {
                        dir.join(format!("{}-{nonce:08x}.sock", opts.pack))
                    }
                }
            };
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path).map_err(|e| err(e, &path.display().to_string()))?;
            let addr = path.display().to_string();
            Ok((Listener::Uds(listener, path), addr))
        }
    }
}

/// Longest Unix socket path, NUL excluded (Linux's sun_path is 108 bytes).
const SUN_PATH_MAX: usize = 107;

/// Dials a peer, retrying while it is not listening yet.
async fn dial(family: Family, addr: &str, deadline: Instant) -> Result<Conn> {
    let mut backoff = Duration::from_millis(5);
    loop {
        let attempt: std::io::Result<Conn> = match family {
            Family::Tcp => TcpStream::connect(addr).await.and_then(|s| {
                s.set_nodelay(true)?;
                Ok(Conn::Tcp(s))
            }),
            Family::Uds => UnixStream::connect(addr).await.map(|s| {
                tune_uds(&s);
                Conn::Uds(s)
            }),
        };
        match attempt {
            Ok(conn) => return Ok(conn),
            Err(e) if Instant::now() + backoff >= deadline => {
                return Err(Error::transport(family.name(), format!("cannot connect to {addr}: {e}")));
            }
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(200));
            }
        }
    }
}

/// Unix sockets default to small buffers, which costs a wake-up per ~200 KiB.
fn tune_uds(s: &UnixStream) {
    let sock = socket2::SockRef::from(s);
    let _ = sock.set_send_buffer_size(UDS_BUFFER);
    let _ = sock.set_recv_buffer_size(UDS_BUFFER);
}

const UDS_BUFFER: usize = 4 << 20;

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))
}

/// Segments whose packet or announcement may not have reached the
/// receiver, discarded if dropped before [`Unsent::sent`].
struct Unsent<'a> {
    segments: &'a shm::Outbound,
    ids: Vec<u32>,
}

impl Unsent<'_> {
    fn sent(mut self) {
        self.ids.clear();
    }
}

impl Drop for Unsent<'_> {
    fn drop(&mut self) {
        if !self.ids.is_empty() {
            self.segments.discard(&self.ids);
        }
    }
}

/// A packet whose body is in a segment: the announcements of new segments
/// first (each with its descriptor attached), then the packet's header and
/// the descriptor naming the segment.
async fn write_shared(w: &mut SockWriter, header: &Header, placed: shm::Placed) -> std::io::Result<()> {
    let segment = |id: u32, announce: bool| {
        let len = crate::wire::SEGMENT_LEN;
        let h = Header { kind: Kind::Segment, src_pack: header.src_pack, seq: 0, total: len as u64, offset: 0, len };
        let mut buf = BytesMut::with_capacity(HEADER_LEN + len as usize);
        buf.put_slice(&h.encode());
        buf.put_slice(&shm::segment_body(id, announce));
        buf
    };
    for id in placed.retired {
        w.write_all(&segment(id, false)).await?;
    }
    for new in placed.announce {
        w.write_with_fd(&segment(new.id, true), std::os::fd::AsFd::as_fd(&new.fd)).await?;
    }
    let mut buf = BytesMut::with_capacity(HEADER_LEN + shm::DESCRIPTOR_LEN);
    buf.put_slice(&Header { kind: Kind::Shm, ..*header }.encode());
    buf.put_slice(&shm::descriptor(placed.id));
    w.write_all(&buf).await
}

async fn write_packet<W: AsyncWrite + Unpin + ?Sized>(w: &mut W, p: &OutPacket) -> std::io::Result<()> {
    let header = p.header.encode();
    if p.header.len as usize <= COALESCE {
        let mut buf = BytesMut::with_capacity(HEADER_LEN + p.header.len as usize);
        buf.put_slice(&header);
        for seg in &p.body {
            buf.put_slice(seg);
        }
        return w.write_all(&buf).await;
    }
    w.write_all(&header).await?;
    for seg in &p.body {
        w.write_all(seg).await?;
    }
    Ok(())
}
