//! Packs driven directly through `Pack::connect`: authentication of direct
//! connections and what happens when a peer vanishes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use volley_comm::{Error, Layout, LocalRendezvous, Pack, PackOptions, Rendezvous, StreamOptions, TransportOptions};

const SECRET: &[u8] = b"the-burst-secret-0123456789";

/// A rendezvous that also tells the test every address published.
#[derive(Default, Clone)]
struct Spy {
    inner: LocalRendezvous,
    seen: Arc<Mutex<Vec<(usize, String)>>>,
}

impl Rendezvous for Spy {
    fn exchange<'a>(
        &'a self,
        burst: &'a str,
        pack: usize,
        packs: usize,
        addr: String,
        timeout: Duration,
    ) -> BoxFuture<'a, volley_comm::Result<Vec<String>>> {
        self.seen.lock().unwrap().push((pack, addr.clone()));
        self.inner.exchange(burst, pack, packs, addr, timeout)
    }
}

fn options(burst: &str, secret: &[u8], pack: usize) -> PackOptions {
    let mut o = PackOptions::new(burst, secret.to_vec(), Layout::new(&[1, 1]).unwrap(), pack)
        .with_transport(TransportOptions::Tcp(StreamOptions::default()));
    o.connect_timeout = Duration::from_secs(10);
    o.op_timeout = Duration::from_secs(20);
    o
}

async fn wait_for_address(spy: &Spy, pack: usize) -> String {
    for _ in 0..500 {
        if let Some((_, a)) = spy.seen.lock().unwrap().iter().find(|(p, _)| *p == pack) {
            return a.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("pack {pack} never published its address");
}

/// Dials `addr` and speaks the handshake as pack 1 of `burst`, knowing `secret`
/// (or not); returns whether the listener accepted.
async fn impostor(addr: &str, burst: &str) -> bool {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut hello = b"VLH1".to_vec();
    hello.push(burst.len() as u8);
    hello.extend_from_slice(burst.as_bytes());
    for v in [1u32, 0, 0] {
        hello.extend_from_slice(&v.to_le_bytes());
    }
    hello.extend_from_slice(&[7u8; 16]);
    s.write_all(&hello).await.unwrap();
    let mut reply = [0u8; 48];
    if s.read_exact(&mut reply).await.is_err() {
        return false;
    }
    // Without the secret the best an impostor can do is guess the proof.
    s.write_all(&[0u8; 32]).await.unwrap();
    let mut ok = [0u8; 1];
    s.read_exact(&mut ok).await.is_ok() && ok[0] == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_cannot_join_and_the_real_peer_still_can() {
    let spy = Spy::default();
    let burst = "auth-test";
    // Pack 0 listens for pack 1; before pack 1 comes, strangers knock.
    let listener = {
        let spy = spy.clone();
        tokio::spawn(async move { Pack::connect(options(burst, SECRET, 0), Arc::new(spy)).await })
    };
    let addr = wait_for_address(&spy, 0).await;
    assert!(!impostor(&addr, burst).await, "a caller without the secret was let in");
    assert!(!impostor(&addr, "another-burst").await, "a caller from another burst was let in");
    // Garbage is refused too.
    let mut junk = tokio::net::TcpStream::connect(&addr).await.unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();

    let real = Pack::connect(options(burst, SECRET, 1), Arc::new(spy.clone())).await.unwrap();
    let first = listener.await.unwrap().unwrap();
    let (c0, c1) = (first.comms().remove(0).into_async(), real.comms().remove(0).into_async());
    c1.send(0, 1, Bytes::from_static(b"genuine")).await.unwrap();
    assert_eq!(c0.recv(1, 1).await.unwrap(), "genuine");
    drop((c0, c1));
    let (a, b) = tokio::join!(first.close(), real.close());
    a.unwrap();
    b.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_with_the_wrong_secret_cannot_connect() {
    let spy = Spy::default();
    let good = tokio::spawn({
        let spy = spy.clone();
        async move { Pack::connect(options("secret-test", SECRET, 0), Arc::new(spy)).await }
    });
    wait_for_address(&spy, 0).await;
    let mut bad_opts = options("secret-test", b"not-the-secret-at-all!!", 1);
    bad_opts.connect_timeout = Duration::from_secs(2);
    let bad = Pack::connect(bad_opts, Arc::new(spy.clone())).await;
    assert!(matches!(bad, Err(Error::Auth(_))), "got {:?}", bad.err());
    good.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_vanishes_is_an_error_not_a_hang() {
    let rendezvous = Arc::new(LocalRendezvous::new());
    let (p0, p1) = tokio::join!(
        Pack::connect(options("vanish-test", SECRET, 0), rendezvous.clone()),
        Pack::connect(options("vanish-test", SECRET, 1), rendezvous.clone()),
    );
    let (p0, p1) = (p0.unwrap(), p1.unwrap());
    let c0 = p0.comms().remove(0).into_async();
    // Pack 1 disappears without a goodbye, as a killed process would.
    drop(p1);
    let got = tokio::time::timeout(Duration::from_secs(10), c0.recv(1, 0)).await.expect("recv hung");
    assert!(matches!(got, Err(Error::Disconnected { pack: 1, .. })), "got {got:?}");
    drop(c0);
    assert!(p0.close().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_to_a_vanished_peer_reports_its_disconnect() {
    let rendezvous = Arc::new(LocalRendezvous::new());
    let (p0, p1) = tokio::join!(
        Pack::connect(options("vanish-send", SECRET, 0), rendezvous.clone()),
        Pack::connect(options("vanish-send", SECRET, 1), rendezvous.clone()),
    );
    let (p0, p1) = (p0.unwrap(), p1.unwrap());
    let c0 = p0.comms().remove(0).into_async();
    drop(p1);
    // Whether the reader or a write sees it first, the error names the peer
    // that went away (an echo of its end), never a bare socket error.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let err = loop {
        assert!(tokio::time::Instant::now() < deadline, "sends to a vanished peer kept succeeding");
        if let Err(e) = c0.send(1, 0, Bytes::from(vec![0u8; 1 << 20])).await {
            break e;
        }
    };
    assert!(matches!(err, Error::Disconnected { pack: 1, .. }), "got {err:?}");
    drop(c0);
    let _ = p0.close().await;
}
