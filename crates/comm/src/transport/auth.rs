//! The per-burst handshake of direct connections.
//!
//! Both ends prove they hold the burst's secret (HMAC-SHA256 over fresh nonces
//! from both sides), so neither a stranger nor a pack of another burst can
//! join, inject messages, or pose as a pack to receive its data.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Result};

const HELLO_MAGIC: &[u8; 4] = b"VLH1";
const NONCE: usize = 16;
const TAG: usize = 32;

/// Who is dialing whom, as both ends must agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Link {
    pub from: u32,
    pub to: u32,
    pub conn: u32,
}

fn mac(secret: &[u8], role: &[u8], burst: &str, link: Link, first: &[u8], second: &[u8]) -> Result<Hmac<Sha256>> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).map_err(|e| Error::Auth(e.to_string().into()))?;
    m.update(role);
    m.update(&[burst.len() as u8]);
    m.update(burst.as_bytes());
    m.update(&link.from.to_le_bytes());
    m.update(&link.to.to_le_bytes());
    m.update(&link.conn.to_le_bytes());
    m.update(first);
    m.update(second);
    Ok(m)
}

/// The dialing side.
pub(crate) async fn dial<S>(s: &mut S, secret: &[u8], burst: &str, link: Link, timeout: Duration) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let work = async {
        let nonce_d: [u8; NONCE] = rand::random();
        let mut hello = Vec::with_capacity(4 + 1 + burst.len() + 12 + NONCE);
        hello.extend_from_slice(HELLO_MAGIC);
        hello.push(burst.len() as u8);
        hello.extend_from_slice(burst.as_bytes());
        for v in [link.from, link.to, link.conn] {
            hello.extend_from_slice(&v.to_le_bytes());
        }
        hello.extend_from_slice(&nonce_d);
        s.write_all(&hello).await?;
        let mut reply = [0u8; NONCE + TAG];
        s.read_exact(&mut reply).await?;
        let (nonce_a, tag_a) = reply.split_at(NONCE);
        mac(secret, b"A", burst, link, &nonce_d, nonce_a)?
            .verify_slice(tag_a)
            .map_err(|_| Error::Auth(format!("pack {} does not hold this burst's secret", link.to).into()))?;
        let tag_d = mac(secret, b"D", burst, link, nonce_a, &nonce_d)?.finalize().into_bytes();
        s.write_all(&tag_d).await?;
        let mut ok = [0u8; 1];
        s.read_exact(&mut ok).await?;
        if ok[0] != 1 {
            return Err(Error::Auth(format!("pack {} refused this connection", link.to).into()));
        }
        Ok(())
    };
    run(work, timeout).await
}

/// The accepting side: learns and checks who is calling.
pub(crate) async fn accept<S>(s: &mut S, secret: &[u8], burst: &str, me: u32, timeout: Duration) -> Result<Link>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let work = async {
        let mut head = [0u8; 5];
        s.read_exact(&mut head).await?;
        if &head[..4] != HELLO_MAGIC {
            return Err(Error::Auth("the caller does not speak the Volley handshake".into()));
        }
        let mut rest = vec![0u8; head[4] as usize + 12 + NONCE];
        s.read_exact(&mut rest).await?;
        let (their_burst, rest) = rest.split_at(head[4] as usize);
        if their_burst != burst.as_bytes() {
            return Err(Error::Auth("the caller belongs to another burst".into()));
        }
        let word = |i: usize| u32::from_le_bytes(rest[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
        let link = Link { from: word(0), to: word(1), conn: word(2) };
        if link.to != me {
            return Err(Error::Auth(format!("the caller wanted pack {}, this is pack {me}", link.to).into()));
        }
        let nonce_d = &rest[12..];
        let nonce_a: [u8; NONCE] = rand::random();
        let tag_a = mac(secret, b"A", burst, link, nonce_d, &nonce_a)?.finalize().into_bytes();
        let mut reply = Vec::with_capacity(NONCE + TAG);
        reply.extend_from_slice(&nonce_a);
        reply.extend_from_slice(&tag_a);
        s.write_all(&reply).await?;
        let mut tag_d = [0u8; TAG];
        s.read_exact(&mut tag_d).await?;
        mac(secret, b"D", burst, link, &nonce_a, nonce_d)?.verify_slice(&tag_d).map_err(|_| {
            Error::Auth(format!("a caller posing as pack {} does not hold the secret", link.from).into())
        })?;
        s.write_all(&[1]).await?;
        Ok(link)
    };
    run(work, timeout).await
}

async fn run<T>(work: impl Future<Output = Result<T>>, timeout: Duration) -> Result<T> {
    tokio::time::timeout(timeout, work).await.map_err(|_| Error::timeout(timeout, "the connection handshake"))?
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::transport("socket", e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef";

    async fn pair(dial_secret: &'static [u8], dial_burst: &'static str) -> (Result<()>, Result<Link>) {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let t = Duration::from_millis(500);
        let link = Link { from: 2, to: 1, conn: 0 };
        tokio::join!(dial(&mut a, dial_secret, dial_burst, link, t), accept(&mut b, SECRET, "b1", 1, t))
    }

    #[tokio::test]
    async fn holders_of_the_secret_connect() {
        let (d, a) = pair(SECRET, "b1").await;
        d.unwrap();
        assert_eq!(a.unwrap(), Link { from: 2, to: 1, conn: 0 });
    }

    #[tokio::test]
    async fn a_wrong_secret_or_burst_is_refused() {
        let (d, a) = pair(b"fedcba9876543210", "b1").await;
        assert!(matches!(d, Err(Error::Auth(_))));
        assert!(a.is_err());
        let (_, a) = pair(SECRET, "other").await;
        assert!(matches!(a, Err(Error::Auth(_))));
    }
}
