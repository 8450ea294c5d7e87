//! Socket write halves registered with the reactor only while they wait.
//!
//! tokio registers a socket for reading and writing at once, and every event
//! on it wakes the runtime's I/O thread. On a Unix socket, every read by the
//! peer tells the writer's side it has room again (EPOLLOUT), so each message
//! received woke the sending process's idle I/O thread for nothing: across
//! processes a 64-byte ping-pong paid ~6 context switches per message instead
//! of ~2. Here a write half registers (a duplicate of the descriptor) only
//! while a write is blocked, which for small messages is never; the read side
//! registers for readability alone (`inbound.rs`). The Redis transport's
//! sending connections have no read registration at all: the replies they
//! collect later wake nobody.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncWrite, AsyncWriteExt, Interest};

/// Waits until `sock` (non-blocking) has something to read, registering a
/// duplicate of it with the reactor for just this wait.
pub(crate) async fn readable(sock: &Socket) -> io::Result<()> {
    let fd = register(sock.try_clone()?, Interest::READABLE)?;
    drop(fd.readable().await?);
    Ok(())
}

/// Registers `sock` with the current runtime's reactor for `interest` alone.
pub(crate) fn register(sock: Socket, interest: Interest) -> io::Result<AsyncFd<Socket>> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other("a socket was registered outside a tokio runtime"));
    }
    // SAFETY: the `AsyncFd` owns `sock`, so its descriptor stays open and
    // refers to the same socket until the `AsyncFd` is dropped.
    Ok(unsafe { AsyncFd::register_with_interest(sock, interest) }?)
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

    /// Writes `bytes` with `fd` attached (`SCM_RIGHTS`, Unix sockets only):
    /// the descriptor arrives with the first of these bytes.
    pub async fn write_with_fd(&mut self, bytes: &[u8], fd: BorrowedFd<'_>) -> io::Result<()> {
        use nix::sys::socket::{ControlMessage, MsgFlags, UnixAddr, sendmsg};
        let fds = [fd.as_raw_fd()];
        loop {
            let iov = [io::IoSlice::new(bytes)];
            let cmsg = [ControlMessage::ScmRights(&fds)];
            match sendmsg::<UnixAddr>(self.sock.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None) {
                // The descriptor went with the first byte; the rest is plain bytes.
                Ok(n) => return self.write_all(&bytes[n..]).await,
                Err(nix::Error::EAGAIN) => {
                    let fd = match &self.waiting {
                        Some(fd) => fd,
                        None => self.waiting.insert(register(self.sock.try_clone()?, Interest::WRITABLE)?),
                    };
                    fd.writable().await?.clear_ready();
                }
                Err(nix::Error::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
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
    use tokio::net::UnixStream;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_waits_for_room_beyond_the_socket_buffer_and_fails_once_the_peer_is_gone() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        let mut writer = SockWriter::new(Socket::from(a));
        let mut reader = UnixStream::from_std(b).unwrap();
        // 8 MiB is far beyond the socket buffer: the writer must wait for room.
        let big: Vec<u8> = (0..8 << 20).map(|i| (i % 251) as u8).collect();
        let sent = big.clone();
        let writing = tokio::spawn(async move {
            writer.write_all(&sent).await.unwrap();
            writer
        });
        let mut got = vec![0u8; big.len()];
        reader.read_exact(&mut got).await.unwrap();
        assert_eq!(got, big);
        let mut writer = writing.await.unwrap();
        drop(reader);
        // The peer gone: writing is an error, not a signal or a hang.
        assert!(writer.write_all(b"more").await.is_err());
    }
}
