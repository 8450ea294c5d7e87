//! Socket halves registered with the reactor only for what they wait on.
//!
//! tokio registers a socket for reading and writing at once, and every event
//! on it wakes the runtime's I/O thread. On a Unix socket, every read by the
//! peer tells the writer's side it has room again (EPOLLOUT), so each message
//! received woke the sending process's idle I/O thread for nothing: across
//! processes a 64-byte ping-pong paid ~6 context switches per message instead
//! of ~2. Here a read half waits for readability only, and a write half
//! registers (a duplicate of the descriptor) only while a write is blocked,
//! which for small messages is never. The Redis transport's sending
//! connections use the write half alone: the replies they collect later wake
//! nobody.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::UnixStream;

/// Splits a connected Unix socket into its read and write halves.
pub(crate) fn split_uds(stream: UnixStream) -> io::Result<(SockReader, SockWriter)> {
    // Leaves tokio's reactor; the descriptor stays non-blocking.
    let sock = Socket::from(stream.into_std()?);
    let write = sock.try_clone()?;
    Ok((SockReader(register(sock, Interest::READABLE)?), SockWriter::new(write)))
}

/// Waits until `sock` (non-blocking) has something to read, registering a
/// duplicate of it with the reactor for just this wait.
pub(crate) async fn readable(sock: &Socket) -> io::Result<()> {
    let fd = register(sock.try_clone()?, Interest::READABLE)?;
    drop(fd.readable().await?);
    Ok(())
}

/// Registers `sock` with the current runtime's reactor for `interest` alone.
fn register(sock: Socket, interest: Interest) -> io::Result<AsyncFd<Socket>> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other("a Unix socket half was used outside a tokio runtime"));
    }
    // SAFETY: the `AsyncFd` owns `sock`, so its descriptor stays open and
    // refers to the same socket until the `AsyncFd` is dropped.
    Ok(unsafe { AsyncFd::register_with_interest(sock, interest) }?)
}

pub(crate) struct SockReader(AsyncFd<Socket>);

impl AsyncRead for SockReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            // SAFETY: `recv` only writes into the slice (never reads it) and
            // returns how many bytes it wrote; exactly those are marked
            // initialized below.
            let unfilled: &mut [MaybeUninit<u8>] = unsafe { buf.unfilled_mut() };
            match guard.try_io(|fd| fd.get_ref().recv(unfilled)) {
                Ok(Ok(n)) => {
                    // SAFETY: `recv` initialized the first `n` bytes of the unfilled part.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => {}
            }
        }
    }
}

/// The write half of a non-blocking socket.
pub(crate) struct SockWriter {
    sock: Socket,
    /// A registration for writability, held only while a write waits for room.
    waiting: Option<AsyncFd<Socket>>,
}

impl SockWriter {
    pub fn new(sock: Socket) -> Self {
        SockWriter { sock, waiting: None }
    }
}

impl AsyncWrite for SockWriter {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            // `send` with MSG_NOSIGNAL: a vanished peer is an error, not SIGPIPE.
            match this.sock.send(buf) {
                Ok(n) => {
                    if n == buf.len() {
                        this.waiting = None;
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if this.waiting.is_none() {
                        this.waiting = Some(register(this.sock.try_clone()?, Interest::WRITABLE)?);
                    }
                    let Some(fd) = this.waiting.as_ref() else { continue };
                    // Ready means room may have appeared since the failed send: clear
                    // the mark and try again (a stale mark costs one more try).
                    let mut guard = ready!(fd.poll_write_ready(cx))?;
                    guard.clear_ready();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.sock.shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bytes_cross_both_ways_including_more_than_the_socket_buffer() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut a_read, mut a_write) = split_uds(a).unwrap();
        let (mut b_read, mut b_write) = split_uds(b).unwrap();
        // 8 MiB is far beyond the socket buffer: the writer must wait for room.
        let big: Vec<u8> = (0..8 << 20).map(|i| (i % 251) as u8).collect();
        let sent = big.clone();
        let writer = tokio::spawn(async move {
            a_write.write_all(&sent).await.unwrap();
            a_write.shutdown().await.unwrap();
            a_write
        });
        let mut got = Vec::new();
        b_read.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, big);
        drop(writer.await.unwrap());
        b_write.write_all(b"pong").await.unwrap();
        let mut small = [0u8; 4];
        a_read.read_exact(&mut small).await.unwrap();
        assert_eq!(&small, b"pong");
        // The peer gone: writing is an error, not a signal or a hang.
        drop(a_read);
        let mut failed = false;
        for _ in 0..100 {
            if b_write.write_all(&[0u8; 1 << 16]).await.is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "writing to a closed peer fails");
    }
}
