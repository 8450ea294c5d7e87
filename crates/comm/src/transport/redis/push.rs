//! Sending to Redis from the task that sends.
//!
//! The redis crate's async connections hand every command to a driver task,
//! so a worker thread's send would first wake a runtime thread that then
//! writes to the socket. Here whoever awaits the push writes the command
//! itself: the packet is on its way to Redis before the worker waits for
//! anything. Nor does a push wait for its reply: the socket is not registered
//! for reading at all, so Redis's answer wakes no thread when it comes (on two
//! cores, that wake-up competed with the receiver's for ~7 µs a message).
//! Replies are collected without waiting before each push, and waited for
//! when too many are owed or the pack closes; a refusal fails the push that
//! finds it. The redis crate still parses the URL and packs setup commands.

use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::BufMut;
use redis::{Client, ConnectionAddr};
use socket2::Socket;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::Mutex;

use super::err;
use crate::error::{Error, Result};
use crate::transport::sock_io::{SockWriter, readable};
use crate::wire::OutPacket;

/// Commands up to this size are gathered into one buffer and written at once.
const COALESCE: usize = 64 << 10;

/// The longest reply line or bulk reply we accept (replies here are an
/// integer, OK or a stream entry id).
const MAX_REPLY: usize = 4096;

/// Replies a connection may owe before a push waits for some of them.
const MAX_OWED: usize = 4096;

enum Addr {
    Tcp(String, u16),
    Unix(PathBuf),
}

/// Who pushes: every connection is named for the burst's pack (so a purge can
/// close it) and refused if the burst was purged (so nothing recreates its keys).
pub(super) struct Admission {
    pub name: String,
    pub fence: String,
}

/// One connection for pushing packets. A push takes the connection out of
/// its slot while it runs, so a push abandoned half-way (timed out,
/// cancelled) drops the connection with it and the next push dials anew:
/// half a command is never followed by another.
pub(super) struct Pusher {
    addr: Addr,
    /// AUTH, SELECT and CLIENT SETNAME, packed, sent on every new connection.
    hello: Vec<Vec<u8>>,
    /// `EXISTS` of the burst's purge fence, sent after the hello.
    fenced: Vec<u8>,
    connect_timeout: Duration,
    /// How long Redis may take to answer what was sent.
    reply_timeout: Duration,
    link: Mutex<Option<Link>>,
}

impl Pusher {
    pub async fn connect(
        client: &Client,
        admission: &Admission,
        connect_timeout: Duration,
        reply_timeout: Duration,
    ) -> Result<Self> {
        let info = client.get_connection_info();
        let addr = match info.addr() {
            ConnectionAddr::Tcp(host, port) => Addr::Tcp(host.clone(), *port),
            ConnectionAddr::Unix(path) => Addr::Unix(path.clone()),
            other => {
                return Err(Error::invalid(format!(
                    "the redis transport cannot reach {other}: use a redis:// or redis+unix:// URL"
                )));
            }
        };
        let settings = info.redis_settings();
        let mut hello = Vec::new();
        if let Some(password) = settings.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            hello.push(auth.arg(password).get_packed_command());
        }
        if settings.db() != 0 {
            hello.push(redis::cmd("SELECT").arg(settings.db()).get_packed_command());
        }
        hello.push(redis::cmd("CLIENT").arg("SETNAME").arg(&admission.name).get_packed_command());
        let fenced = redis::cmd("EXISTS").arg(&admission.fence).get_packed_command();
        let pusher = Pusher { addr, hello, fenced, connect_timeout, reply_timeout, link: Mutex::new(None) };
        // Fail now, with the reason, rather than at the first send.
        let link = pusher.open().await?;
        *pusher.link.lock().await = Some(link);
        Ok(pusher)
    }

    /// True if no push holds this connection right now.
    pub fn is_free(&self) -> bool {
        self.link.try_lock().is_ok()
    }

    /// Writes `head`, the packet, then `tail`, for which Redis owes `replies` replies.
    pub async fn push(&self, head: &[u8], packet: &OutPacket, tail: &[u8], replies: usize) -> Result<()> {
        let mut slot = self.link.lock().await;
        let mut link = match slot.take() {
            Some(link) => link,
            None => self.open().await?,
        };
        if link.replies.owed > MAX_OWED {
            link.replies.settle(self.reply_timeout).await?;
        }
        let header = packet.header.encode();
        let len = head.len() + header.len() + packet.header.len as usize + tail.len();
        let written = if len <= COALESCE {
            let mut buf = Vec::with_capacity(len);
            buf.put_slice(head);
            buf.put_slice(&header);
            for segment in &packet.body {
                buf.put_slice(segment);
            }
            buf.put_slice(tail);
            link.writer.write_all(&buf).await
        } else {
            link.write_parts(&[head, &header], packet, tail).await
        };
        written.map_err(|e| err(format!("writing: {e}")))?;
        link.replies.owed += replies;
        // The replies that have come, taken in after the packet left (not
        // before: that read would delay every packet by a system call).
        link.replies.collect()?;
        *slot = Some(link);
        Ok(())
    }

    /// Waits for every reply owed so far: an error if Redis refused anything.
    pub async fn settle(&self) -> Result<()> {
        let mut slot = self.link.lock().await;
        let Some(mut link) = slot.take() else { return Ok(()) };
        link.replies.settle(self.reply_timeout).await?;
        *slot = Some(link);
        Ok(())
    }

    async fn open(&self) -> Result<Link> {
        let dial = async {
            std::io::Result::Ok(match &self.addr {
                Addr::Tcp(host, port) => {
                    let stream = TcpStream::connect((host.as_str(), *port)).await?;
                    stream.set_nodelay(true)?;
                    Socket::from(stream.into_std()?)
                }
                Addr::Unix(path) => Socket::from(UnixStream::connect(path).await?.into_std()?),
            })
        };
        let sock = tokio::time::timeout(self.connect_timeout, dial)
            .await
            .map_err(|_| Error::timeout(self.connect_timeout, "connecting to Redis"))?
            .map_err(|e| err(format!("cannot connect: {e}; is Redis running there?")))?;
        let replies = Replies { sock: sock.try_clone().map_err(err)?, buf: Vec::new(), owed: 0 };
        let mut link = Link { writer: SockWriter::new(sock), replies };
        for command in &self.hello {
            link.writer.write_all(command).await.map_err(|e| err(format!("writing: {e}")))?;
            link.replies.owed += 1;
        }
        link.replies.settle(self.connect_timeout).await?;
        // Named first, then checked: a purge that starts after this check
        // finds the connection by its name and closes it.
        link.writer.write_all(&self.fenced).await.map_err(|e| err(format!("writing: {e}")))?;
        if link.replies.integer(self.connect_timeout).await? != 0 {
            return Err(Error::Transport {
                transport: "redis",
                message: "this burst was purged (it ended); its packs may not push any more".into(),
            });
        }
        Ok(link)
    }
}

struct Link {
    writer: SockWriter,
    replies: Replies,
}

impl Link {
    async fn write_parts(&mut self, heads: &[&[u8]], packet: &OutPacket, tail: &[u8]) -> std::io::Result<()> {
        for part in heads.iter().copied().chain(packet.body.iter().map(|b| &b[..])).chain([tail]) {
            self.writer.write_all(part).await?;
        }
        Ok(())
    }
}

/// The replies Redis owes a connection, read from its socket when convenient.
struct Replies {
    sock: Socket,
    /// Bytes read but not yet a whole reply.
    buf: Vec<u8>,
    owed: usize,
}

impl Replies {
    /// Takes in the replies that have arrived, without waiting.
    fn collect(&mut self) -> Result<()> {
        loop {
            while self.owed > 0 {
                let Some(used) = parse_reply(&self.buf)? else { break };
                self.buf.drain(..used);
                self.owed -= 1;
            }
            if self.owed == 0 || !self.read_some()? {
                return Ok(());
            }
        }
    }

    /// Reads what has arrived into `buf`; false if nothing had.
    fn read_some(&mut self) -> Result<bool> {
        let mut chunk = [MaybeUninit::<u8>::uninit(); 4096];
        loop {
            match self.sock.recv(&mut chunk) {
                Ok(0) => return Err(err("Redis closed the connection")),
                Ok(n) => {
                    // SAFETY: `recv` initialized the first `n` bytes.
                    self.buf.extend(chunk[..n].iter().map(|b| unsafe { b.assume_init() }));
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(err(format!("reading replies: {e}"))),
            }
        }
    }

    /// Waits, at most `timeout`, for the next reply, an integer, when no other
    /// reply is owed; returns it.
    async fn integer(&mut self, timeout: Duration) -> Result<i64> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return match line.strip_prefix(':').and_then(|n| n.parse().ok()) {
                    Some(n) => Ok(n),
                    None => Err(err(format!("expected an integer reply, got {line:?}"))),
                };
            }
            if !self.read_some()? {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, readable(&self.sock)).await {
                    Ok(ready) => ready.map_err(|e| err(format!("reading replies: {e}")))?,
                    Err(_) => return Err(Error::timeout(timeout, "Redis to answer")),
                }
            }
        }
    }

    /// Waits, at most `timeout`, until every reply owed has come.
    async fn settle(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.collect()?;
            if self.owed == 0 {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, readable(&self.sock)).await {
                Ok(ready) => ready.map_err(|e| err(format!("reading replies: {e}")))?,
                Err(_) => return Err(Error::timeout(timeout, "Redis to answer")),
            }
        }
    }
}

/// The length of the first reply in `buf` if it is complete; a status, an
/// integer or a short bulk string is success, an error reply is the server's
/// refusal.
fn parse_reply(buf: &[u8]) -> Result<Option<usize>> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() > MAX_REPLY { Err(err("a malformed reply")) } else { Ok(None) };
    };
    let (kind, body) = match buf[..end].split_first() {
        Some((&kind, body)) => (kind, body),
        None => return Err(err("an empty reply")),
    };
    match kind {
        b'+' | b':' => Ok(Some(end + 2)),
        b'-' => Err(err(format!("Redis refused: {}", String::from_utf8_lossy(body)))),
        b'$' => {
            let len: i64 =
                std::str::from_utf8(body).ok().and_then(|s| s.parse().ok()).ok_or_else(|| err("a malformed reply"))?;
            if len > MAX_REPLY as i64 {
                return Err(err(format!("an unexpected {len}-byte reply")));
            }
            if len < 0 {
                return Ok(Some(end + 2));
            }
            let whole = end + 2 + len as usize + 2;
            Ok((buf.len() >= whole).then_some(whole))
        }
        other => Err(err(format!("an unexpected reply starting with {:?}", other as char))),
    }
}

/// The RESP encoding of a command up to the bytes of its last argument,
/// which is `last_len` bytes long and written separately (followed by CRLF).
pub(super) fn command_head(args: &[&[u8]], last_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(format!("*{}\r\n", args.len() + 1).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("${last_len}\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_whole_or_waited_for() {
        assert_eq!(parse_reply(b":12\r\n+OK\r\n").unwrap(), Some(5));
        assert_eq!(parse_reply(b":12\r").unwrap(), None);
        assert_eq!(parse_reply(b"$15\r\n1700000000000-0\r\n").unwrap(), Some(22));
        assert_eq!(parse_reply(b"$15\r\n1700000000").unwrap(), None);
        assert_eq!(parse_reply(b"$-1\r\n").unwrap(), Some(5));
        let refused = parse_reply(b"-OOM command not allowed\r\n").unwrap_err().to_string();
        assert!(refused.contains("OOM command not allowed"), "{refused}");
        assert!(parse_reply(b"\r\n").is_err());
        assert!(parse_reply(b"*2\r\n").is_err());
        assert!(parse_reply(&[b'x'; MAX_REPLY + 1]).is_err());
        assert!(parse_reply(b"$99999999\r\n").is_err());
    }

    #[test]
    fn a_command_head_and_its_last_argument_make_the_crate_s_own_encoding() {
        let packet = b"some packet bytes";
        let mut ours = command_head(&[b"RPUSH", b"volley:b:inbox:1"], packet.len());
        ours.extend_from_slice(packet);
        ours.extend_from_slice(b"\r\n");
        let theirs = redis::cmd("RPUSH").arg("volley:b:inbox:1").arg(&packet[..]).get_packed_command();
        assert_eq!(ours, theirs);
    }
}
