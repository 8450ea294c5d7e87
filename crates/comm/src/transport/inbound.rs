//! Reading packets from a pack-to-pack connection, by whoever gets there first.
//!
//! A packet that arrives while a worker is busy-polling for a message would
//! otherwise wake the runtime's I/O thread, which reads it and then hands it
//! to the worker: two thread hand-offs on a path whose raw cost is one (on
//! these machines ~5 µs each for a 64-byte round trip). So a connection's
//! parser sits behind a lock that two parties can take: a background task
//! that waits for the socket to be readable (for when nobody polls), and any
//! spinning worker of the pack, which reads the socket itself between its
//! polls (as MPI progresses its links from inside the wait). Whoever holds
//! the lock reads until the socket is empty; the other finds nothing to do.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, TryLockError};

use socket2::Socket;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::sock_io::register;
use super::{PacketSink, SinkRef, shm};
use crate::mailbox::lock;
use crate::pool::Buffer;
use crate::wire::{HEADER_LEN, Header, Kind};

/// Bytes read at once when packets are small (several headers and bodies per read).
const STAGE: usize = 64 << 10;

/// The most a spinning worker reads in one go: it has its own message to
/// look at, and a large body is better left to the background task.
const SPIN_BUDGET: usize = 1 << 20;

/// One connection's receiving side.
pub(crate) struct Inbound {
    from: usize,
    /// Registered for readability only; reads go through it too.
    fd: AsyncFd<Socket>,
    parse: Mutex<Parse>,
    /// Raised when a pumping worker reads the end: the socket may never be
    /// readable again (the peer keeps it open a while after its goodbye),
    /// and the background reader must not wait on it.
    ended: tokio::sync::Notify,
}

/// Where the byte stream stands between two reads.
struct Parse {
    stage: Stage,
    /// The packet whose body is being read, and how long that body is on
    /// the wire (a `Shm` packet's is a descriptor, not its data).
    body: Option<(Header, Buffer, usize)>,
    /// The peer's shared memory segments, on the connection that carries them.
    shm: Option<shm::Inbound>,
    /// The connection ended (with a goodbye, or reported lost): read no more.
    ended: bool,
}

enum Pumped {
    /// The socket has nothing more for now.
    Drained,
    /// The budget ran out first.
    Budget,
    /// The peer said goodbye.
    Ended,
}

impl Inbound {
    /// Takes over `sock` (connected, authenticated) as the link from pack
    /// `from`, carrying shared memory segments if `shared` (a Unix socket);
    /// an error outside a Tokio runtime.
    pub fn new(sock: Socket, from: usize, shared: bool) -> io::Result<Self> {
        sock.set_nonblocking(true)?;
        let fd = register(sock, Interest::READABLE)?;
        let stage = Stage { buf: vec![0; STAGE].into_boxed_slice(), start: 0, end: 0 };
        let parse = Parse { stage, body: None, shm: shared.then(shm::Inbound::default), ended: false };
        Ok(Inbound { from, fd, parse: Mutex::new(parse), ended: tokio::sync::Notify::new() })
    }

    /// For a worker busy-polling: reads what has arrived unless someone else is reading.
    pub fn try_pump(&self, sink: &dyn PacketSink) {
        let mut parse = match self.parse.try_lock() {
            Ok(parse) => parse,
            Err(TryLockError::WouldBlock) => return,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
        };
        if !parse.ended {
            self.settle(&mut parse, sink, SPIN_BUDGET);
        }
    }

    /// The background reader: waits for the socket and reads, until the connection ends.
    pub async fn run(self: Arc<Self>, sink: SinkRef) {
        loop {
            let readable = tokio::select! {
                readable = self.fd.readable() => readable,
                _ = self.ended.notified() => return,
            };
            let mut ready = match readable {
                Ok(ready) => ready,
                Err(e) => {
                    if let Some(target) = sink.upgrade() {
                        let mut parse = lock(&self.parse);
                        if !parse.ended {
                            parse.ended = true;
                            drop(parse);
                            target.lost(self.from, format!("connection lost: {e}"));
                        }
                    }
                    return;
                }
            };
            let Some(target) = sink.upgrade() else { return };
            let mut parse = lock(&self.parse);
            if parse.ended {
                return;
            }
            match self.settle(&mut parse, &*target, usize::MAX) {
                // Only readiness seen before this guard is cleared: bytes that
                // came after the socket ran dry raised a newer event.
                Some(Pumped::Drained) => ready.clear_ready(),
                Some(_) => {}
                None => return,
            }
        }
    }

    /// Pumps, and turns the end of the connection into one final report.
    fn settle(&self, parse: &mut Parse, sink: &dyn PacketSink, budget: usize) -> Option<Pumped> {
        let settled = match pump(parse, self.fd.get_ref(), self.from, sink, budget) {
            Ok(Pumped::Ended) => None,
            Ok(pumped) => return Some(pumped),
            Err(reason) => {
                sink.lost(self.from, reason);
                None
            }
        };
        parse.ended = true;
        // A permit kept if the background reader is not waiting yet.
        self.ended.notify_one();
        settled
    }
}

/// Reads from `sock` without waiting and hands every whole packet to `sink`,
/// reading at most about `budget` bytes.
fn pump(parse: &mut Parse, sock: &Socket, from: usize, sink: &dyn PacketSink, budget: usize) -> Result<Pumped, String> {
    let mut read = 0usize;
    let stage = &mut parse.stage;
    loop {
        if let Some((_, body, wire_len)) = &mut parse.body {
            let want = *wire_len - body.len();
            if want == 0 {
                if let Some((header, body, _)) = parse.body.take() {
                    hand_over(parse.shm.as_mut(), header, body, sink)?;
                }
                continue;
            }
            if stage.unread() > 0 {
                body.extend_from_slice(stage.take(want));
                continue;
            }
            if read >= budget {
                return Ok(Pumped::Budget);
            }
            let got = if want >= STAGE {
                // A large rest goes straight into the body.
                let spare = &mut body.spare_capacity_mut()[..want];
                let got = recv(sock, spare)?;
                if let Some(n) = got {
                    // SAFETY: `recv` initialized the first `n` bytes of the spare capacity.
                    unsafe { body.set_len(body.len() + n) };
                }
                got
            } else {
                stage.refill(sock, parse.shm.as_mut())?
            };
            match got {
                Some(n) => read += n,
                None => return Ok(Pumped::Drained),
            }
            continue;
        }
        if stage.unread() < HEADER_LEN {
            if read >= budget {
                return Ok(Pumped::Budget);
            }
            match stage.refill(sock, parse.shm.as_mut())? {
                Some(n) => read += n,
                None => return Ok(Pumped::Drained),
            }
            continue;
        }
        let header = match Header::decode(stage.take(HEADER_LEN), sink.limits()) {
            Ok(h) if h.kind == Kind::Fin => return Ok(Pumped::Ended),
            Ok(h) if h.src_pack as usize == from => h,
            Ok(h) => return Err(format!("packet claims to come from pack {}", h.src_pack)),
            Err(e) => return Err(e.to_string()),
        };
        let wire_len = match header.kind {
            Kind::Shm | Kind::Segment if parse.shm.is_none() => {
                return Err("a shared memory packet on a connection without shared memory".to_string());
            }
            Kind::Shm => shm::DESCRIPTOR_LEN,
            _ => header.len as usize,
        };
        parse.body = Some((header, sink.buffer(wire_len), wire_len));
    }
}

/// Hands a whole packet on; the shared memory ones are resolved first.
fn hand_over(
    shm: Option<&mut shm::Inbound>,
    header: Header,
    body: Buffer,
    sink: &dyn PacketSink,
) -> Result<(), String> {
    match (header.kind, shm) {
        (Kind::Segment, Some(shm)) => shm.segment(body.as_ref()),
        (Kind::Shm, Some(shm)) => {
            let (header, body) = shm.open(header, body.as_ref())?;
            sink.packet(header, body);
            Ok(())
        }
        _ => {
            sink.packet(header, body.freeze());
            Ok(())
        }
    }
}

/// Bytes read from the socket ahead of the parser.
struct Stage {
    buf: Box<[u8]>,
    /// The unread part of `buf` is `start..end`.
    start: usize,
    end: usize,
}

impl Stage {
    fn unread(&self) -> usize {
        self.end - self.start
    }

    /// Up to `n` unread bytes, now read.
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.unread());
        self.start += n;
        &self.buf[self.start - n..self.start]
    }

    /// Moves the unread bytes to the front and reads more behind them
    /// (with the descriptors that come along, for `shm`); `None` if the
    /// socket has nothing now.
    fn refill(&mut self, sock: &Socket, shm: Option<&mut shm::Inbound>) -> Result<Option<usize>, String> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let free = &mut self.buf[self.end..];
        let got = match shm {
            Some(shm) => recv_with_fds(sock, free, shm)?,
            None => {
                // SAFETY: a `[u8]` is a valid `[MaybeUninit<u8>]`, and `recv` only writes into it.
                let free: &mut [MaybeUninit<u8>] = unsafe { &mut *(free as *mut [u8] as *mut [MaybeUninit<u8>]) };
                recv(sock, free)?
            }
        };
        if let Some(n) = got {
            self.end += n;
        }
        Ok(got)
    }
}

/// One non-blocking read: `Some(n)` bytes, `None` if nothing is there now;
/// the end of the stream is an error (a goodbye comes as a packet).
fn recv(sock: &Socket, into: &mut [MaybeUninit<u8>]) -> Result<Option<usize>, String> {
    loop {
        return match sock.recv(into) {
            Ok(0) if into.is_empty() => Ok(Some(0)),
            Ok(0) => Err("connection lost: the peer closed it without a goodbye".to_string()),
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(format!("connection lost: {e}")),
        };
    }
}

/// [`recv`], keeping the file descriptors that arrive with the bytes
/// (a header's bytes are read this way, and a segment's descriptor comes
/// with the first byte of its announcement; the kernel never reads past a
/// message that carries descriptors, so at most one set comes per call).
fn recv_with_fds(sock: &Socket, into: &mut [u8], shm: &mut shm::Inbound) -> Result<Option<usize>, String> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut space = nix::cmsg_space!([RawFd; 4]);
    loop {
        let mut iov = [io::IoSliceMut::new(&mut *into)];
        let flags = MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT;
        let mut fds = Vec::new();
        let (n, truncated) = match recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), flags) {
            Ok(msg) => {
                for cmsg in msg.cmsgs().map_err(|e| format!("connection lost: {e}"))? {
                    if let ControlMessageOwned::ScmRights(received) = cmsg {
                        // SAFETY: the kernel just installed these descriptors for us.
                        fds.extend(received.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                    }
                }
                (msg.bytes, msg.flags.contains(MsgFlags::MSG_CTRUNC))
            }
            Err(nix::Error::EAGAIN) => return Ok(None),
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(format!("connection lost: {e}")),
        };
        if truncated {
            return Err("connection lost: descriptors from the peer were cut short (it passed too many, \
                        or this process has no descriptors left)"
                .into());
        }
        shm.received(fds)?;
        if n == 0 && !into.is_empty() {
            return Err("connection lost: the peer closed it without a goodbye".to_string());
        }
        return Ok(Some(n));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;
    use crate::pool::Pool;
    use crate::wire::{Limits, packetize};

    #[derive(Default)]
    struct Recorder {
        packets: Mutex<Vec<(Header, Bytes)>>,
        lost: Mutex<Vec<String>>,
        pool: Arc<Pool>,
    }

    impl PacketSink for Recorder {
        fn limits(&self) -> &Limits {
            static LIMITS: Limits =
                Limits { max_message_bytes: 1 << 20, max_bundle_bytes: 1 << 20, max_chunk_bytes: 1 << 20 };
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

    #[test]
    fn a_pumping_worker_and_the_background_task_deliver_every_packet_once_in_order() {
        // Small packets (many per read) and large ones (read straight into
        // their body) while a thread pumps as fast as it can, racing the
        // background task for the lock.
        let sizes: Vec<usize> = (0..400).map(|i| if i % 7 == 0 { 200_000 + i } else { i * 13 % 3000 }).collect();
        let mut wire = Vec::new();
        for (seq, &size) in sizes.iter().enumerate() {
            let body = Bytes::from(vec![(seq % 251) as u8; size]);
            for p in packetize(Kind::Data, 1, seq as u64, vec![body], 1 << 20) {
                wire.extend_from_slice(&p.to_contiguous());
            }
        }
        wire.extend_from_slice(&Header { kind: Kind::Fin, src_pack: 1, seq: 0, total: 0, offset: 0, len: 0 }.encode());

        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let recorder = Arc::new(Recorder::default());
        let sink: Arc<dyn PacketSink> = recorder.clone();
        let (tx, rx) = std::os::unix::net::UnixStream::pair().unwrap();
        let inbound = Arc::new(rt.block_on(async { Inbound::new(Socket::from(rx), 1, false) }).unwrap());
        let background = rt.spawn(inbound.clone().run(Arc::downgrade(&sink)));
        let writer = std::thread::spawn(move || {
            let mut tx = tx;
            std::io::Write::write_all(&mut tx, &wire).unwrap();
            tx
        });
        let pumper = {
            let (inbound, recorder, expected) = (inbound.clone(), recorder.clone(), sizes.len());
            std::thread::spawn(move || {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                while recorder.packets.lock().unwrap().len() < expected && std::time::Instant::now() < deadline {
                    inbound.try_pump(&*recorder);
                }
            })
        };
        pumper.join().unwrap();
        let _tx = writer.join().unwrap();
        rt.block_on(async { tokio::time::timeout(std::time::Duration::from_secs(10), background).await })
            .expect("the background task ends at the goodbye")
            .unwrap();

        let packets = recorder.packets.lock().unwrap();
        assert!(recorder.lost.lock().unwrap().is_empty(), "{:?}", recorder.lost.lock().unwrap());
        assert_eq!(packets.len(), sizes.len());
        for (seq, ((header, body), &size)) in packets.iter().zip(&sizes).enumerate() {
            assert_eq!(header.seq, seq as u64, "packets come out in the order they were sent");
            assert_eq!(body.len(), size);
            assert!(body.iter().all(|&b| b == (seq % 251) as u8), "packet {seq} intact");
        }
    }

    /// Feeds `bytes` through a socket to a connection reader as pack 1 and
    /// reports what it saw.
    fn read_all(bytes: Vec<u8>) -> Arc<Recorder> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let recorder = Arc::new(Recorder::default());
        let sink: Arc<dyn PacketSink> = recorder.clone();
        rt.block_on(async {
            let (tx, rx) = std::os::unix::net::UnixStream::pair().unwrap();
            let inbound = Arc::new(Inbound::new(Socket::from(rx), 1, false).unwrap());
            let writer = std::thread::spawn(move || {
                let mut tx = tx;
                let _ = std::io::Write::write_all(&mut tx, &bytes);
            });
            inbound.run(Arc::downgrade(&sink)).await;
            writer.join().unwrap();
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
