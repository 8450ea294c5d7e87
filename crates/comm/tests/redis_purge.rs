//! A purge of a burst's Redis state is final: pushes that were still in
//! flight when it ran, or that packs still alive send afterwards, cannot
//! create the burst's lists again (they would live on until their expiry).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use volley_comm::{Layout, LocalBurst, RedisOptions, TransportOptions};

fn keys_of(url: &str, id: &str) -> Vec<String> {
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    redis::cmd("KEYS").arg(format!("volley:{id}:*")).query(&mut conn).unwrap()
}

/// Both cores busy, as on a loaded machine: Redis reads what a client sent in
/// pieces between other work, so pushes stay in flight longer.
struct Load(Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>);

impl Load {
    fn start() -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..4)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                        std::hint::black_box(x);
                    }
                })
            })
            .collect();
        Load(stop, threads)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        for t in self.1.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn pushes_in_flight_from_a_dead_pack_cannot_outlive_the_purge() -> anyhow::Result<()> {
    let Some(url) = volley_testkit::redis_url() else { return Ok(()) };
    let _load = Load::start();
    for round in 0..5 {
        let id = format!("purge-{round}-{:012x}", rand::random::<u64>());
        // What a pack that died mid-stream leaves: a connection, named as the
        // transport names its pushing connections, whose pushes Redis has not
        // read yet (the process is gone; the bytes are in Redis's socket).
        let addr = url.trim_start_matches("redis://").trim_end_matches('/').to_string();
        let mut sock = std::net::TcpStream::connect(&addr)?;
        let mut pipeline = redis::cmd("CLIENT").arg("SETNAME").arg(format!("volley:{id}:pack:0")).get_packed_command();
        let inbox = format!("volley:{id}:inbox:1");
        for _ in 0..20_000 {
            pipeline.extend(redis::cmd("RPUSH").arg(&inbox).arg(&[7u8; 512][..]).get_packed_command());
            pipeline.extend(redis::cmd("PEXPIRE").arg(&inbox).arg(600_000).get_packed_command());
        }
        let writer = std::thread::spawn(move || {
            let _ = sock.write_all(&pipeline);
            sock // kept open, so that Redis reads all of it unless told otherwise
        });
        // The platform purges once the list exists (the pack was seen to die).
        let deadline = Instant::now() + Duration::from_secs(10);
        while keys_of(&url, &id).is_empty() {
            assert!(Instant::now() < deadline, "the pushes never arrived");
            std::thread::sleep(Duration::from_millis(1));
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(volley_comm::purge::redis(&url, &id))?;
        let _sock = writer.join().unwrap();
        // Whatever Redis still had to read from that connection must not bring the list back.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(keys_of(&url, &id), Vec::<String>::new(), "round {round}: the purge was not final");
    }
    Ok(())
}

#[test]
fn packs_still_alive_cannot_push_after_the_purge() -> anyhow::Result<()> {
    let Some(url) = volley_testkit::redis_url() else { return Ok(()) };
    let _load = Load::start();
    let id = format!("purge-live-{:012x}", rand::random::<u64>());
    let burst = LocalBurst::new(Layout::new(&[1, 1])?)
        .with_id(id.clone())
        .transport(TransportOptions::Redis(RedisOptions::new(url.clone())))
        .op_timeout(Duration::from_secs(5));
    // A pack cut off from the platform but not from Redis goes on sending
    // while the platform, which thinks it dead, purges the burst.
    let started = Arc::new(Barrier::new(2));
    let purger = {
        let (url, id, started) = (url.clone(), id.clone(), started.clone());
        std::thread::spawn(move || {
            started.wait();
            std::thread::sleep(Duration::from_millis(100));
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(volley_comm::purge::redis(&url, &id)).unwrap()
        })
    };
    let (results, _) = burst.run_each(move |comm| {
        if comm.rank() != 0 {
            return Ok(None);
        }
        started.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Err(e) = comm.send(1, 0, Bytes::from(vec![1u8; 4096])) {
                return Ok(Some(e.to_string()));
            }
        }
        Ok(None)
    })?;
    purger.join().unwrap();
    let error = results.into_iter().next().unwrap()?.expect("sends went on after the purge");
    assert!(error.contains("redis"), "the send failed in the transport: {error}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(keys_of(&url, &id), Vec::<String>::new(), "a live pack recreated the purged burst's lists");
    // A new connection of the burst is refused outright, and says why.
    let again = LocalBurst::new(Layout::new(&[1, 1])?)
        .with_id(id.clone())
        .transport(TransportOptions::Redis(RedisOptions::new(url.clone())))
        .op_timeout(Duration::from_secs(5));
    let refused = again.run(|_| Ok(())).unwrap_err().to_string();
    assert!(refused.contains("was purged"), "{refused}");
    Ok(())
}
