//! The invoker's life: register, long-poll for commands (each poll is its
//! heartbeat), start and steer packs, post their events, register again if
//! the controller forgot it, and stop every pack when told to stop.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use volley_client::Client;
use volley_comm::TransportOptions;
use volley_proto::cluster::{Command, Event, Registration};
use volley_proto::pack::ToPack;

use crate::{Shared, process};

/// How long a leaving invoker waits for the controller to hear it.
pub(crate) const LEAVE_TIMEOUT: Duration = Duration::from_secs(3);

/// A call the controller answered "not found": it does not know this invoker
/// (it restarted, or declared it lost): register again.
fn forgotten(e: &volley_client::Error) -> bool {
    matches!(e.status(), Some(404 | 410))
}

/// Runs until `shutdown` fires; every pack it started is stopped before it returns.
/// `registered` says the invoker's id whenever it (re)registers.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    events: mpsc::UnboundedReceiver<Event>,
    registered: watch::Sender<Option<String>>,
    shutdown: CancellationToken,
) {
    let client = shared.client.clone();
    let o = &shared.opts;
    let registration =
        Registration { name: o.name.clone(), host: o.host.clone(), slots: o.slots, memory_mb: o.memory_mb };
    let packs = TaskTracker::new();
    let Some(mut id) = register(&client, &registration, &shutdown).await else { return };
    let _ = registered.send(Some(id.clone()));
    let expiry = tokio::spawn(expire_warm(shared.clone(), shutdown.clone()));
    let (id_tx, id_rx) = watch::channel(id.clone());
    let poster = tokio::spawn(post_events(
        client.clone(),
        id_rx,
        events,
        shared.reports.subscribe(),
        shared.unposted.clone(),
        shutdown.clone(),
    ));
    loop {
        let polled = tokio::select! {
            _ = shutdown.cancelled() => break,
            polled = client.poll_commands(&id, shared.opts.poll_wait, shared.pool.warm()) => polled,
        };
        match polled {
            Ok(commands) => {
                shared.polls.fetch_add(1, Ordering::SeqCst);
                shared.last_poll.store(volley_proto::now_micros(), Ordering::SeqCst);
                // Packs per burst in this batch: the warm pool keeps that many ready for next time.
                let mut per_burst: HashMap<String, usize> = HashMap::new();
                for c in &commands {
                    if let Command::StartPack(spec) = c {
                        *per_burst.entry(spec.burst.clone()).or_default() += 1;
                    }
                }
                for command in commands {
                    handle(&shared, &packs, command, &per_burst);
                }
            }
            Err(e) if forgotten(&e) && shared.draining.load(Ordering::SeqCst) => {
                // A draining invoker the controller forgot would be given new packs if it registered again.
                tracing::warn!("the controller forgot this invoker while it drained; stopping");
                break;
            }
            Err(e) if forgotten(&e) => {
                tracing::warn!("the controller forgot this invoker; stopping its packs and registering again");
                shared.generation.fetch_add(1, Ordering::SeqCst);
                shared.kill_all();
                let Some(new_id) = register(&client, &registration, &shutdown).await else { break };
                id = new_id;
                let _ = id_tx.send(id.clone());
                let _ = registered.send(Some(id.clone()));
            }
            Err(e) => {
                tracing::warn!("polling the controller failed: {e}");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    }
    // The controller hears why before the packs end (their exits would only
    // echo it), and at once, not at the heartbeat timeout.
    let reason = shared.leaving.lock().unwrap_or_else(|p| p.into_inner()).take();
    let reason = reason.unwrap_or_else(|| "the invoker was stopped".into());
    match tokio::time::timeout(LEAVE_TIMEOUT, client.leave(&id, &reason)).await {
        Ok(Ok(())) => tracing::info!("left the controller: {reason}"),
        Ok(Err(e)) => tracing::warn!("could not tell the controller this invoker leaves: {e}"),
        Err(_) => tracing::warn!("the controller did not answer this invoker's leaving within {LEAVE_TIMEOUT:?}"),
    }
    // The controller has heard the cause (or cannot): the packs' reports may follow.
    shared.reports.send_replace(true);
    shared.kill_all();
    shared.pool.drain().await;
    packs.close();
    let _ = tokio::time::timeout(Duration::from_secs(10), packs.wait()).await;
    let _ = expiry.await;
    // The poster ends once it has posted the last PackExited events (or gives up on them).
    drop(shared);
    let _ = tokio::time::timeout(Duration::from_secs(5), poster).await;
}

fn handle(shared: &Arc<Shared>, packs: &TaskTracker, command: Command, per_burst: &HashMap<String, usize>) {
    match command {
        Command::StartPack(mut spec) => {
            place_sockets(shared, &mut spec);
            let demand = per_burst.get(&spec.burst).copied().unwrap_or(1);
            packs.spawn(process::run(shared.clone(), *spec, demand));
        }
        Command::Peers { burst, addresses } => {
            if let Some(sandbox) = &shared.sandbox {
                sandbox.connect_peers(&burst);
            }
            for ((b, _, _), h) in shared.lock_packs().iter() {
                if *b == burst {
                    let _ = h.to_pack.send(ToPack::Peers { addresses: addresses.clone() });
                }
            }
        }
        Command::Cancel { burst, reason } => {
            for ((b, _, _), h) in shared.lock_packs().iter() {
                if *b == burst {
                    let _ = h.to_pack.send(ToPack::Cancel { reason: reason.clone() });
                }
            }
        }
    }
}

/// Stops warm processes nobody used for the idle timeout, and resumes
/// refills that the host's memory held back.
async fn expire_warm(shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        shared.pool.expire(shared.opts.idle_timeout).await;
        if shared.pool.held_back() {
            crate::pool::Pool::refill(&shared);
        }
    }
}

/// Where this host's packs listen: UDS files in the data directory (a
/// directory of the burst's own for sandboxed packs); TCP on loopback for a
/// loopback invoker, on every interface otherwise, advertised under the
/// invoker's host.
fn place_sockets(shared: &Shared, spec: &mut volley_proto::pack::PackSpec) {
    let opts = &shared.opts;
    let comm_id = spec.comm_id();
    match &mut spec.transport {
        TransportOptions::Uds(o) => {
            let dir = match &shared.sandbox {
                Some(sandbox) => sandbox.socket_dir(&comm_id),
                None => opts.data_dir.join("sockets"),
            };
            o.bind = Some(dir.display().to_string());
        }
        TransportOptions::Tcp(o) => {
            let loopback = opts.host.starts_with("127.") || opts.host == "localhost";
            o.bind = Some(if loopback { "127.0.0.1:0".into() } else { "0.0.0.0:0".into() });
            o.advertise_host = Some(opts.host.clone());
        }
        _ => {}
    }
}

async fn register(client: &Client, registration: &Registration, shutdown: &CancellationToken) -> Option<String> {
    loop {
        match client.register(registration).await {
            Ok(r) => {
                tracing::info!(invoker = %r.invoker_id, "registered with the controller");
                return Some(r.invoker_id);
            }
            Err(e @ volley_client::Error::Api { status: 401, .. }) => {
                tracing::warn!("the controller refused the registration: {e}; check the invoker token")
            }
            Err(e) => tracing::warn!("cannot register with the controller yet: {e}"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Events per post, at most.
const BATCH_EVENTS: usize = 512;

/// JSON bytes per post, at most: the controller refuses request bodies over
/// 2 MB, and 512 events can pass that (a worker's end carries its report,
/// whose traffic grows with the burst's packs: a 4,096-worker FaaS burst's
/// endings did, and were retried for ever).
const BATCH_BYTES: usize = 1 << 20;

/// Posts events in order, in batches; a failed post is retried so that no
/// result is dropped while the controller is briefly unreachable.
async fn post_events(
    client: Client,
    id: tokio::sync::watch::Receiver<String>,
    mut events: mpsc::UnboundedReceiver<Event>,
    mut open: watch::Receiver<bool>,
    unposted: Arc<std::sync::atomic::AtomicU64>,
    shutdown: CancellationToken,
) {
    // An event taken that did not fit the last batch: the next one's first.
    let mut carried: Option<Event> = None;
    loop {
        let first = match carried.take() {
            Some(e) => e,
            None => match events.recv().await {
                Some(e) => e,
                None => return,
            },
        };
        // Held while the invoker's leaving goes first; never longer than the leaving may take.
        let _ = tokio::time::timeout(LEAVE_TIMEOUT * 2, open.wait_for(|o| *o)).await;
        let batch;
        (batch, carried) = fill_batch(first, &mut events);
        let mut delay = Duration::from_millis(50);
        loop {
            let current = id.borrow().clone();
            match client.report_events(&current, &batch).await {
                Ok(()) => break,
                Err(e) if forgotten(&e) => break,
                Err(e) => {
                    tracing::warn!("posting {} events failed, retrying: {e}", batch.len());
                    if shutdown.is_cancelled() && delay > Duration::from_secs(1) {
                        break;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
        // Posted, or given up on: either way no longer waited for.
        unposted.fetch_sub(batch.len() as u64, Ordering::SeqCst);
    }
}

/// `first` and the events already waiting behind it, up to a batch's
/// count and bytes; the event that would have passed them comes back, to
/// go first in the next batch.
fn fill_batch(first: Event, events: &mut mpsc::UnboundedReceiver<Event>) -> (Vec<Event>, Option<Event>) {
    let mut bytes = json_len(&first);
    let mut batch = vec![first];
    while batch.len() < BATCH_EVENTS {
        let Ok(e) = events.try_recv() else { break };
        let len = json_len(&e);
        if bytes + len > BATCH_BYTES {
            return (batch, Some(e));
        }
        bytes += len;
        batch.push(e);
    }
    (batch, None)
}

/// An event's size in the post's JSON.
fn json_len(event: &Event) -> usize {
    serde_json::to_vec(event).map_or(0, |v| v.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(pack: usize, address_len: usize) -> Event {
        Event::PackAddress { burst: "b".into(), pack, address: "x".repeat(address_len) }
    }

    fn pack(e: &Event) -> usize {
        match e {
            Event::PackAddress { pack, .. } => *pack,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn batches_keep_to_a_count_and_to_a_size_in_order() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for p in 1..600 {
            tx.send(event(p, 10)).unwrap();
        }
        let (batch, carried) = fill_batch(event(0, 10), &mut rx);
        assert_eq!(batch.len(), BATCH_EVENTS);
        assert!(carried.is_none());
        let (rest, _) = fill_batch(rx.try_recv().unwrap(), &mut rx);
        assert_eq!(rest.len(), 600 - BATCH_EVENTS);
        assert_eq!(pack(&rest[0]), BATCH_EVENTS);

        // Large events: as many as fit the bytes; the next one is carried, not lost.
        for p in 1..5 {
            tx.send(event(p, 400 << 10)).unwrap();
        }
        let (batch, carried) = fill_batch(event(0, 400 << 10), &mut rx);
        assert_eq!(batch.iter().map(pack).collect::<Vec<_>>(), vec![0, 1]);
        assert!(batch.iter().map(json_len).sum::<usize>() <= BATCH_BYTES);
        let (next, _) = fill_batch(carried.expect("the third is carried"), &mut rx);
        assert_eq!(next.iter().map(pack).collect::<Vec<_>>(), vec![2, 3]);
    }
}
