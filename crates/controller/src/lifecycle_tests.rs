//! The lifecycle rules without HTTP: how a burst ends whatever order its
//! packs' and workers' reports arrive in.

use tokio::sync::mpsc;
use volley_proto::api::{Burst, BurstRequest, BurstState, Granularity, WorkerRecord};
use volley_proto::cluster::{Event, Registration};
use volley_proto::pack::Outcome;

use super::{Lifecycle, Write};

/// A queued burst of 4 workers in packs of 2.
fn queued() -> Burst {
    let request = BurstRequest {
        function: "hello".into(),
        workers: 4,
        granularity: Granularity::Fixed(2),
        transport: Some("uds".into()),
        params: serde_json::Value::Null,
        worker_params: None,
        timeout_secs: None,
        queue_timeout_secs: None,
        memory_mb: None,
        retries: None,
        idempotency_key: None,
        session: None,
    };
    Burst {
        id: "b1".into(),
        namespace: "default".into(),
        request,
        state: BurstState::Queued,
        error: None,
        transport: None,
        submitted_at: 0,
        placed_at: None,
        running_at: None,
        finished_at: None,
        start_spread_us: None,
        packs: Vec::new(),
        workers: (0..4).map(WorkerRecord::new).collect(),
        attempt: 1,
        attempt_errors: Vec::new(),
        notes: Vec::new(),
    }
}

/// A state with one invoker of 8 slots, and its id.
fn one_invoker() -> (Lifecycle, mpsc::UnboundedReceiver<Write>, String) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut state = Lifecycle::new(crate::Options::default(), tx);
    let invoker =
        state.register(Registration { name: "n".into(), host: "127.0.0.1".into(), slots: 8, memory_mb: 1024 });
    (state, rx, invoker)
}

/// A state with one invoker and a running burst of 4 workers in 2 packs.
fn running() -> (Lifecycle, mpsc::UnboundedReceiver<Write>, String, String) {
    let (mut state, rx, invoker) = one_invoker();
    state.submit(queued(), None);
    assert_eq!(state.live("b1").unwrap().state, BurstState::Starting, "placed at once");
    // Its placement saved: the start commands go out.
    state.release("b1");
    for rank in 0..4 {
        state.apply(&invoker, Event::WorkerStarted { burst: "b1".into(), rank, at: 1 });
    }
    (state, rx, invoker, "b1".into())
}

fn exited(pack: usize, error: Option<&str>, consequence: bool) -> Event {
    Event::PackExited {
        burst: "b1".into(),
        pack,
        at: 2,
        error: error.map(String::from),
        stdout: String::new(),
        stderr: String::new(),
        truncated: false,
        consequence,
        sent_bytes: Vec::new(),
    }
}

fn finished(rank: usize, outcome: Outcome) -> Event {
    Event::WorkerFinished { burst: "b1".into(), rank, at: 2, outcome, report: Default::default() }
}

/// The burst as last saved.
fn last_saved(rx: &mut mpsc::UnboundedReceiver<Write>) -> Burst {
    let mut last = None;
    while let Ok(w) = rx.try_recv() {
        if let Write::Burst(b) = w {
            last = Some(*b);
        }
    }
    last.expect("the burst was saved")
}

#[test]
fn a_burst_cancelled_before_its_start_commands_go_out_never_starts() {
    let (mut state, mut rx, invoker) = one_invoker();
    state.submit(queued(), None);
    assert_eq!(state.live("b1").unwrap().state, BurstState::Starting, "placed, its start commands held");
    state.end("b1", BurstState::Cancelled, "cancelled by a user".into());
    // The placement is saved only now: nothing may start.
    state.release("b1");
    let starts = |c: &volley_proto::cluster::Command| matches!(c, volley_proto::cluster::Command::StartPack(_));
    assert!(!state.fleet().has_pending(&invoker, starts), "a start command went out after the cancel");
    assert!(state.live("b1").is_none(), "the burst ended");
    assert_eq!(last_saved(&mut rx).state, BurstState::Cancelled);
    assert_eq!(state.fleet().infos()[0].free_slots, 8, "its reserved slots came back");
}

const KILLED: &str = "the pack process ended (signal: 9 (SIGKILL)) before it finished";
const ECHO: &str = "pack 0 (ranks 0..=1) disconnected: writing to it over uds failed: Broken pipe";

#[test]
fn a_killed_pack_is_the_cause_even_when_its_echo_arrives_first() {
    let (mut state, mut rx, inv, id) = running();
    state.apply(&inv, finished(2, Outcome::Aborted(ECHO.into())));
    state.apply(&inv, exited(1, Some(ECHO), true));
    assert!(state.live(&id).is_some(), "pack 0 has not been reported yet");
    state.apply(&inv, exited(0, Some(KILLED), false));
    let burst = last_saved(&mut rx);
    assert_eq!(burst.state, BurstState::Failed);
    let error = burst.error.unwrap();
    assert!(error.starts_with("pack 0 on invoker n failed: ") && error.contains("SIGKILL"), "{error}");
}

#[test]
fn a_killed_pack_stays_the_cause_when_its_echo_arrives_later() {
    let (mut state, mut rx, inv, _) = running();
    state.apply(&inv, exited(0, Some(KILLED), false));
    state.apply(&inv, exited(1, Some(ECHO), true));
    let error = last_saved(&mut rx).error.unwrap();
    assert!(error.starts_with("pack 0 "), "{error}");
}

#[test]
fn a_workers_own_error_is_a_cause_and_an_echo_does_not_replace_it() {
    let (mut state, mut rx, inv, _) = running();
    state.apply(&inv, finished(2, Outcome::Error("boom".into())));
    state.apply(&inv, exited(1, Some("stopped: rank 2 failed: boom"), true));
    state.apply(&inv, exited(0, Some("stopped: rank 2 failed: boom"), true));
    assert_eq!(last_saved(&mut rx).error.unwrap(), "rank 2 failed: boom");
}

#[test]
fn a_pack_that_dies_after_reporting_its_results_is_a_note() {
    let (mut state, mut rx, inv, _) = running();
    for rank in 0..2 {
        state.apply(&inv, finished(rank, Outcome::Ok(serde_json::json!(rank))));
    }
    state.apply(&inv, exited(0, Some("the pack process ended (exit status: 17) before it finished"), false));
    for rank in 2..4 {
        state.apply(&inv, finished(rank, Outcome::Ok(serde_json::json!(rank))));
    }
    state.apply(&inv, exited(1, Some(ECHO), true));
    let burst = last_saved(&mut rx);
    assert_eq!(burst.state, BurstState::Succeeded, "{burst:?}");
    assert!(burst.notes.iter().any(|n| n.contains("pack 0") && n.contains("17")), "{:?}", burst.notes);
}

#[test]
fn workers_that_fail_after_such_a_pack_died_name_it() {
    let (mut state, mut rx, inv, _) = running();
    for rank in 0..2 {
        state.apply(&inv, finished(rank, Outcome::Ok(serde_json::json!(rank))));
    }
    state.apply(&inv, exited(0, Some("the pack process ended (exit status: 17) before it finished"), false));
    for rank in 2..4 {
        state.apply(&inv, finished(rank, Outcome::Aborted(ECHO.into())));
    }
    state.apply(&inv, exited(1, None, false));
    let burst = last_saved(&mut rx);
    assert_eq!(burst.state, BurstState::Failed);
    assert!(burst.error.unwrap().starts_with("pack 0 "), "{:?}", burst.notes);
}

#[test]
fn a_burst_that_ended_is_read_as_ended_before_its_final_record_is_stored() {
    // No invoker: the burst stays queued, then is cancelled.
    let (tx, _rx) = mpsc::unbounded_channel();
    let mut state = Lifecycle::new(crate::Options::default(), tx);
    state.submit(queued(), None);
    assert_eq!(state.current("b1").unwrap().state, BurstState::Queued);
    state.end("b1", BurstState::Cancelled, "cancelled by a user".into());
    assert!(state.live("b1").is_none(), "it is no longer active");
    // The write of its final record is still on its way: a read must not find the store's "queued".
    let now = state.current("b1").expect("its final record is kept for reads");
    assert_eq!((now.state, now.error.as_deref()), (BurstState::Cancelled, Some("cancelled by a user")));
    assert!(state.current("b2").is_none());
}
