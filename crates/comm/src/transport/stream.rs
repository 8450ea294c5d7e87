//! Direct pack-to-pack connections: TCP, or Unix domain sockets on one host.
//!
//! Pack `i` dials every pack below it and accepts from every pack above it,
//! `connections` times per pair; every connection is authenticated with the
//! burst's secret before it carries anything. A large bundle is striped over
//! all connections of its pair; small ones take turns.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{Mutex, mpsc};

use super::auth::{self, Link};
use super::{SinkRef, Tasks};
use crate::error::{Error, Result};
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

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

impl Conn {
    /// The halves that carry packets once the connection is authenticated.
    fn split(self) -> std::io::Result<(Reader, Writer)> {
        Ok(match self {
            Conn::Tcp(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            Conn::Uds(s) => {
                let (r, w) = super::sock_io::split_uds(s)?;
                (Box::new(r), Box::new(w))
            }
        })
    }
}

/// Packets up to this size are copied into one buffer and written with one call.
const COALESCE: usize = 64 << 10;

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
    peers: Vec<Vec<Mutex<Writer>>>,
    turn: AtomicUsize,
    tasks: Tasks,
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

        let mut peers = Vec::with_capacity(packs);
        for (pack, conns) in links.into_iter().enumerate() {
            let mut writers = Vec::new();
            for conn in conns.into_iter().flatten() {
                let (reader, writer) = conn
                    .split()
                    .map_err(|e| Error::transport(family.name(), format!("setting up a connection: {e}")))?;
                tasks.spawn(read_loop(BufReader::with_capacity(COALESCE, reader), pack, sink.clone()));
                writers.push(Mutex::new(writer));
            }
            peers.push(writers);
        }
        Ok(StreamTransport { family, peers, turn: AtomicUsize::new(0), tasks })
    }

    pub async fn send(&self, dst: usize, packets: Vec<OutPacket>) -> Result<()> {
        let writers = self
            .peers
            .get(dst)
            .filter(|w| !w.is_empty())
            .ok_or_else(|| Error::invalid(format!("no connection to pack {dst}")))?;
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

    /// One piece per connection (so they move in parallel), never below 1 MiB.
    pub fn chunk_for(&self, total: u64, configured: u32) -> u32 {
        let conns = self.peers.iter().map(Vec::len).max().unwrap_or(1).max(1) as u64;
        if conns == 1 {
            return configured;
        }
        total.div_ceil(conns).max(1 << 20).min(configured as u64) as u32
    }

    fn io_error(&self, dst: usize, e: std::io::Error) -> Error {
        Error::transport(self.family.name(), format!("writing to pack {dst}: {e}"))
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
                    stream.uds_dir().join(format!("volley-{}-{}-{nonce:08x}.sock", opts.burst, opts.pack))
                }
            };
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path).map_err(|e| err(e, &path.display().to_string()))?;
            let addr = path.display().to_string();
            Ok((Listener::Uds(listener, path), addr))
        }
    }
}

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

/// Reads packets from one connection to pack `from` until it ends.
async fn read_loop<R: AsyncRead + Unpin>(mut r: R, from: usize, sink: SinkRef) {
    let reason = loop {
        let mut head = [0u8; HEADER_LEN];
        if let Err(e) = r.read_exact(&mut head).await {
            break format!("connection lost: {e}");
        }
        let Some(target) = sink.upgrade() else { return };
        let header = match Header::decode(&head, target.limits()) {
            Ok(h) if h.kind == Kind::Fin => return,
            Ok(h) if h.src_pack as usize == from => h,
            Ok(h) => break format!("packet claims to come from pack {}", h.src_pack),
            Err(e) => break e.to_string(),
        };
        let len = header.len as usize;
        let mut body = target.buffer(len);
        drop(target); // do not keep the pack alive while waiting for bytes
        while body.buf.len() < len {
            let want = (len - body.buf.len()) as u64;
            match (&mut r).take(want).read_buf(&mut body.buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if body.buf.len() < len {
            break "connection lost in the middle of a packet".to_string();
        }
        let Some(target) = sink.upgrade() else { return };
        target.packet(header, body.freeze());
    };
    if let Some(target) = sink.upgrade() {
        target.lost(from, reason);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;
    use crate::pool::{Buffer, Pool};
    use crate::transport::PacketSink;
    use crate::wire::{Kind, Limits, packetize};

    #[derive(Default)]
    struct Recorder {
        packets: Mutex<Vec<(Header, Bytes)>>,
        lost: Mutex<Vec<String>>,
        pool: Arc<Pool>,
    }

    impl PacketSink for Recorder {
        fn limits(&self) -> &Limits {
            static LIMITS: Limits =
                Limits { max_message_bytes: 1 << 20, max_bundle_bytes: 1 << 20, max_chunk_bytes: 1 << 16 };
            &LIMITS
        }
        fn packet(&self, header: Header, body: Bytes) {
            self.packets.lock().unwrap().push((header, body));
        }
        fn lost(&self, _pack: usize, reason: String) {
            self.lost.lock().unwrap().push(reason);
        }
        fn broken(&self, reason: String) {
            self.lost.lock().unwrap().push(reason);
        }
        fn buffer(&self, len: usize) -> Buffer {
            self.pool.take(len)
        }
    }

    /// Feeds `bytes` to a connection reader as pack 1 and reports what it saw.
    fn read_all(bytes: Vec<u8>) -> Arc<Recorder> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let recorder = Arc::new(Recorder::default());
        let sink: Arc<dyn PacketSink> = recorder.clone();
        rt.block_on(async {
            let (mut tx, rx) = tokio::io::duplex(1 << 16);
            let writer = async move {
                let _ = tx.write_all(&bytes).await;
                drop(tx);
            };
            tokio::join!(writer, read_loop(rx, 1, Arc::downgrade(&sink)));
        });
        recorder
    }

    #[test]
    fn well_formed_packets_are_delivered_then_the_end_is_reported() {
        let mut wire = Vec::new();
        for p in packetize(Kind::Data, 1, 0, vec![Bytes::from(vec![9u8; 300])], 128) {
            wire.extend_from_slice(&p.to_contiguous());
        }
        let seen = read_all(wire);
        assert_eq!(seen.packets.lock().unwrap().len(), 3);
        assert_eq!(seen.lost.lock().unwrap().len(), 1, "an end without Fin is a lost peer");
    }

    #[test]
    fn a_fin_mark_ends_quietly() {
        let fin = Header { kind: Kind::Fin, src_pack: 1, seq: 0, total: 0, offset: 0, len: 0 }.encode();
        let seen = read_all(fin.to_vec());
        assert!(seen.lost.lock().unwrap().is_empty());
    }

    proptest! {
        #[test]
        fn any_byte_stream_ends_in_one_report_never_a_panic(
            prefix_valid in any::<bool>(),
            mut bytes in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            if prefix_valid && bytes.len() >= HEADER_LEN {
                // A plausible header start, to get past the magic check into the length checks.
                bytes[..2].copy_from_slice(b"VL");
                bytes[2] = 1;
                bytes[3] %= 4;
            }
            let seen = read_all(bytes);
            prop_assert!(seen.lost.lock().unwrap().len() <= 1);
        }

        #[test]
        fn a_truncated_packet_is_reported_as_lost(cut in 1usize..200) {
            let packet = packetize(Kind::Data, 1, 0, vec![Bytes::from(vec![1u8; 200])], 1024).remove(0).to_contiguous();
            let cut = cut.min(packet.len() - 1);
            let seen = read_all(packet[..cut].to_vec());
            prop_assert!(seen.packets.lock().unwrap().is_empty());
            prop_assert_eq!(seen.lost.lock().unwrap().len(), 1);
        }
    }
}
