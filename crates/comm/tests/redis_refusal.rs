//! A packet Redis refuses is reported to its sender, although a send does not
//! wait for Redis's reply (the transport collects replies later).

use std::time::{Duration, Instant};

use bytes::Bytes;
use volley_comm::{Layout, LocalBurst, RedisOptions, TransportOptions};

#[test]
fn a_refused_packet_fails_a_later_send_of_its_sender() -> anyhow::Result<()> {
    let Some(url) = volley_testkit::redis_url() else { return Ok(()) };
    let id = format!("refusal-{:016x}", rand::random::<u64>());
    // Pack 1's inbox already holds a string: every push to it is refused (WRONGTYPE).
    let mut conn = redis::Client::open(url.as_str())?.get_connection()?;
    let inbox = format!("volley:{id}:inbox:1");
    redis::cmd("SET").arg(&inbox).arg("in the way").arg("EX").arg(60).query::<()>(&mut conn)?;

    let burst = LocalBurst::new(Layout::new(&[1, 1])?)
        .with_id(id)
        .transport(TransportOptions::Redis(RedisOptions::new(url)))
        .op_timeout(Duration::from_secs(5));
    let (results, _) = burst.run_each(|comm| {
        if comm.rank() != 0 {
            return Ok(None);
        }
        // The first sends complete once written; a later one finds the refusal.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Err(e) = comm.send(1, 0, Bytes::from_static(b"refused")) {
                return Ok(Some(e.to_string()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(None)
    })?;
    let reported = results.into_iter().next().unwrap()?;
    let reported = reported.expect("no send reported the refusal within 5 s");
    assert!(reported.contains("WRONGTYPE"), "the error names Redis's reason: {reported}");
    let _: () = redis::cmd("DEL").arg(&inbox).query(&mut conn)?;
    Ok(())
}
