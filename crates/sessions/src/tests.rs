use std::sync::Arc;
use std::time::{Duration, Instant};

use volley_proto::session::{BarrierState, Kind, Op, OpRequest, Reply, SessionRequest};

use crate::{Error, Session, Sessions};

fn open() -> (Sessions, Arc<Session>, String) {
    let sessions = Sessions::default();
    let info = sessions.open("ns", &SessionRequest::default()).unwrap();
    let session = sessions.get(&info.id, Some(&info.token)).unwrap();
    (sessions, session, info.id)
}

async fn op(s: &Session, object: Option<u64>, op: Op) -> Reply {
    s.op(&OpRequest { object, wait_secs: None, op }).await.unwrap()
}

async fn waiting(s: &Session, object: u64, secs: f64, op: Op) -> Reply {
    s.op(&OpRequest { object: Some(object), wait_secs: Some(secs), op }).await.unwrap()
}

async fn create(s: &Session, kind: Kind) -> u64 {
    match op(s, None, Op::Create { kind }).await {
        Reply::Created { object } => object,
        other => panic!("{other:?}"),
    }
}

fn me(name: &str) -> String {
    name.to_string()
}

#[tokio::test]
async fn a_bounded_queue_is_fifo_says_full_and_empty_and_counts_its_tasks() {
    let (_, s, _) = open();
    let q = create(&s, Kind::Queue { maxsize: 2 }).await;
    assert_eq!(op(&s, Some(q), Op::Get).await, Reply::Empty);
    assert_eq!(op(&s, Some(q), Op::Put { item: "YQ==".into() }).await, Reply::Done);
    assert_eq!(op(&s, Some(q), Op::Put { item: "Yg==".into() }).await, Reply::Done);
    assert_eq!(waiting(&s, q, 0.05, Op::Put { item: "Yw==".into() }).await, Reply::Full);
    assert_eq!(op(&s, Some(q), Op::Size).await, Reply::Count { count: 2 });
    assert_eq!(op(&s, Some(q), Op::Get).await, Reply::Items { items: vec!["YQ==".into()] });
    assert_eq!(op(&s, Some(q), Op::GetMany { max: 10 }).await, Reply::Items { items: vec!["Yg==".into()] });
    assert_eq!(op(&s, Some(q), Op::Join).await, Reply::Flag { flag: false });
    assert_eq!(op(&s, Some(q), Op::TaskDone).await, Reply::Done);
    assert_eq!(op(&s, Some(q), Op::TaskDone).await, Reply::Done);
    assert_eq!(op(&s, Some(q), Op::Join).await, Reply::Flag { flag: true });
    assert!(matches!(op(&s, Some(q), Op::TaskDone).await, Reply::Refused { .. }));
    // EOF once every writer is done (here the creator and one copy).
    op(&s, Some(q), Op::OpenWriting).await;
    op(&s, Some(q), Op::CloseWriting).await;
    assert_eq!(op(&s, Some(q), Op::Get).await, Reply::Empty);
    op(&s, Some(q), Op::CloseWriting).await;
    assert_eq!(op(&s, Some(q), Op::Get).await, Reply::Eof);
    // An operation of another kind is refused by the name requests give it.
    let refused = op(&s, Some(q), Op::IsSet).await;
    assert_eq!(refused, Reply::Refused { reason: "the object does not take the is_set operation".into() });
}

#[tokio::test]
async fn a_blocked_get_takes_the_item_put_meanwhile() {
    let (_, s, _) = open();
    let q = create(&s, Kind::Queue { maxsize: 0 }).await;
    let reader = {
        let s = s.clone();
        tokio::spawn(async move { waiting(&s, q, 20.0, Op::Get).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    op(&s, Some(q), Op::Put { item: "eA==".into() }).await;
    let got = tokio::time::timeout(Duration::from_secs(10), reader).await.unwrap().unwrap();
    assert_eq!(got, Reply::Items { items: vec!["eA==".into()] });
}

#[tokio::test]
async fn locks_refuse_what_the_standard_library_refuses() {
    let (_, s, _) = open();
    let lock = create(&s, Kind::Semaphore { value: 1, max: Some(1) }).await;
    assert_eq!(op(&s, Some(lock), Op::Acquire { owner: me("a") }).await, Reply::Flag { flag: true });
    assert_eq!(waiting(&s, lock, 0.05, Op::Acquire { owner: me("b") }).await, Reply::Flag { flag: false });
    // Another process may release a plain lock (it is a semaphore) ...
    assert_eq!(op(&s, Some(lock), Op::Release { owner: me("b") }).await, Reply::Done);
    // ... but not beyond its bound.
    let Reply::Refused { reason } = op(&s, Some(lock), Op::Release { owner: me("a") }).await else { panic!() };
    assert_eq!(reason, "semaphore or lock released too many times");

    let rlock = create(&s, Kind::RecursiveLock).await;
    assert_eq!(op(&s, Some(rlock), Op::Acquire { owner: me("a") }).await, Reply::Flag { flag: true });
    assert_eq!(op(&s, Some(rlock), Op::Acquire { owner: me("a") }).await, Reply::Flag { flag: true });
    assert_eq!(op(&s, Some(rlock), Op::Acquire { owner: me("b") }).await, Reply::Flag { flag: false });
    let Reply::Refused { reason } = op(&s, Some(rlock), Op::Release { owner: me("b") }).await else { panic!() };
    assert_eq!(reason, "attempt to release recursive lock not owned by thread");
    assert_eq!(op(&s, Some(rlock), Op::Value).await, Reply::Count { count: 2 });

    let sem = create(&s, Kind::Semaphore { value: 2, max: None }).await;
    op(&s, Some(sem), Op::Release { owner: me("a") }).await;
    assert_eq!(op(&s, Some(sem), Op::Value).await, Reply::Count { count: 3 });
}

#[tokio::test]
async fn a_condition_gives_its_lock_back_while_waiting_and_wakes_as_many_as_notified() {
    let (_, s, _) = open();
    let lock = create(&s, Kind::RecursiveLock).await;
    let cond = create(&s, Kind::Condition { lock }).await;
    assert!(matches!(op(&s, Some(cond), Op::Wait { owner: me("a") }).await, Reply::Refused { .. }));
    op(&s, Some(lock), Op::Acquire { owner: me("a") }).await;
    op(&s, Some(lock), Op::Acquire { owner: me("a") }).await;
    let Reply::Ticket { ticket: a, levels } = op(&s, Some(cond), Op::Wait { owner: me("a") }).await else { panic!() };
    assert_eq!(levels, 2);
    // The lock is free for b, who waits too.
    assert_eq!(op(&s, Some(lock), Op::Acquire { owner: me("b") }).await, Reply::Flag { flag: true });
    let Reply::Ticket { ticket: b, .. } = op(&s, Some(cond), Op::Wait { owner: me("b") }).await else { panic!() };
    op(&s, Some(lock), Op::Acquire { owner: me("c") }).await;
    let Reply::Refused { reason } = op(&s, Some(cond), Op::Notify { owner: me("a"), n: None }).await else { panic!() };
    assert_eq!(reason, "lock is not owned");
    op(&s, Some(cond), Op::Notify { owner: me("c"), n: Some(1) }).await;
    assert_eq!(op(&s, Some(cond), Op::Notified { ticket: a }).await, Reply::Flag { flag: true });
    assert_eq!(waiting(&s, cond, 0.05, Op::Notified { ticket: b }).await, Reply::Flag { flag: false });
    assert_eq!(op(&s, Some(cond), Op::Forget { ticket: b }).await, Reply::Flag { flag: false });
}

#[tokio::test]
async fn a_barrier_passes_breaks_runs_its_action_and_resets() {
    let (_, s, _) = open();
    let b = create(&s, Kind::Barrier { parties: 2, action: false }).await;
    let Reply::Arrived { index: 0, generation: 0, state: BarrierState::Waiting } = op(&s, Some(b), Op::Arrive).await
    else {
        panic!()
    };
    let Reply::Arrived { index: 1, state: BarrierState::Passed, .. } = op(&s, Some(b), Op::Arrive).await else {
        panic!()
    };
    let Reply::Barrier { state: BarrierState::Passed, .. } = op(&s, Some(b), Op::Passed { generation: 0 }).await else {
        panic!()
    };
    // A waiter of a reset generation is broken; the barrier then works again.
    op(&s, Some(b), Op::Arrive).await;
    op(&s, Some(b), Op::Reset).await;
    let Reply::Barrier { state: BarrierState::Broken, .. } = op(&s, Some(b), Op::Passed { generation: 1 }).await else {
        panic!()
    };
    let Reply::Arrived { generation: 2, .. } = op(&s, Some(b), Op::Arrive).await else { panic!() };
    op(&s, Some(b), Op::Abort).await;
    let Reply::Arrived { state: BarrierState::Broken, .. } = op(&s, Some(b), Op::Arrive).await else { panic!() };

    let acting = create(&s, Kind::Barrier { parties: 1, action: true }).await;
    let Reply::Arrived { state: BarrierState::RunAction, generation, .. } = op(&s, Some(acting), Op::Arrive).await
    else {
        panic!()
    };
    let Reply::Barrier { state: BarrierState::Waiting, .. } =
        waiting(&s, acting, 0.05, Op::Passed { generation }).await
    else {
        panic!()
    };
    op(&s, Some(acting), Op::Pass { generation, ok: true }).await;
    let Reply::Barrier { state: BarrierState::Passed, .. } = op(&s, Some(acting), Op::Passed { generation }).await
    else {
        panic!()
    };
}

#[tokio::test]
async fn values_are_read_and_written_in_place_and_swapped_by_version() {
    let (_, s, _) = open();
    let v = create(&s, Kind::Value { data: "AAAAAA==".into() }).await; // four zero bytes
    assert_eq!(op(&s, Some(v), Op::Write { offset: 2, data: "/w==".into() }).await, Reply::Version { version: 1 });
    assert_eq!(
        op(&s, Some(v), Op::Read { offset: 0, len: None }).await,
        Reply::Data { data: "AAD/AA==".into(), version: 1 }
    );
    let Err(Error::BadRequest(_)) =
        s.op(&OpRequest { object: Some(v), wait_secs: None, op: Op::Write { offset: 4, data: "AA==".into() } }).await
    else {
        panic!()
    };
    let Reply::Conflict { version: 1, .. } = op(&s, Some(v), Op::Swap { version: 0, data: "AQ==".into() }).await else {
        panic!()
    };
    assert_eq!(op(&s, Some(v), Op::Swap { version: 1, data: "AQ==".into() }).await, Reply::Version { version: 2 });
    let event = create(&s, Kind::Event).await;
    assert!(matches!(op(&s, Some(event), Op::Put { item: String::new() }).await, Reply::Refused { .. }));
}

#[tokio::test]
async fn an_ended_session_wakes_its_waiters_refuses_the_wrong_token_and_returns_its_bursts() {
    let (sessions, s, id) = open();
    let e = create(&s, Kind::Event).await;
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move {
            s.op(&OpRequest { object: Some(e), wait_secs: Some(20.0), op: Op::IsSet }).await.map(|_| ())
        })
    };
    assert!(matches!(sessions.get(&id, Some("wrong")), Err(Error::Unauthorized(_))));
    assert!(matches!(sessions.adopt(&id, "another namespace", "b1"), Err(Error::NotFound(_))));
    sessions.adopt(&id, "ns", "b1").unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Not yet expired; then expired.
    assert!(sessions.sweep(Instant::now()).is_empty());
    let ended = sessions.sweep(Instant::now() + Duration::from_secs(60));
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].bursts, vec!["b1".to_string()]);
    let result = tokio::time::timeout(Duration::from_secs(10), waiter).await.unwrap().unwrap();
    assert!(matches!(result, Err(Error::NotFound(_))));
    assert!(matches!(sessions.get(&id, Some("x")), Err(Error::NotFound(_))));
}

#[tokio::test]
async fn a_session_holds_bounded_bytes_and_a_namespace_bounded_sessions() {
    let (_, s, _) = open();
    let q = create(&s, Kind::Queue { maxsize: 0 }).await;
    let big = "A".repeat(crate::MAX_BYTES / 2 + 1);
    op(&s, Some(q), Op::Put { item: big.clone() }).await;
    let refused = s.op(&OpRequest { object: Some(q), wait_secs: None, op: Op::Put { item: big } }).await;
    assert!(matches!(refused, Err(Error::Limit(_))));
    let sessions = Sessions::default();
    for _ in 0..crate::MAX_SESSIONS {
        sessions.open("ns", &SessionRequest::default()).unwrap();
    }
    assert!(matches!(sessions.open("ns", &SessionRequest::default()), Err(Error::Limit(_))));
    sessions.open("other", &SessionRequest::default()).unwrap();
    let bad = SessionRequest { lease_secs: Some(0.5) };
    assert!(matches!(sessions.open("other", &bad), Err(Error::BadRequest(_))));
}
