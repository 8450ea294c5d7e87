//! The state store's behaviour, the same on the embedded file and on PostgreSQL,
//! and what a controller restart does with what was stored.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use volley_controller::{Batch, Docs, Options, Store, SummaryFilter};
use volley_proto::api::{
    Burst, BurstLogs, BurstRequest, BurstState, FunctionInfo, Granularity, PackLogs, WorkerRecord,
};
use volley_proto::flow::{CloudEvent, LoggedEvent};

use volley_testkit::{PgSchema, TempDir, postgres_up};

fn burst(id: &str, namespace: &str, state: BurstState) -> Burst {
    Burst {
        id: id.into(),
        namespace: namespace.into(),
        request: BurstRequest {
            function: "hello".into(),
            workers: 2,
            granularity: Granularity::Fixed(1),
            transport: None,
            params: serde_json::json!({"k": "v"}),
            worker_params: None,
            timeout_secs: None,
            queue_timeout_secs: None,
            memory_mb: None,
            retries: None,
            idempotency_key: None,
            session: None,
        },
        state,
        error: None,
        transport: None,
        submitted_at: 1,
        placed_at: None,
        running_at: None,
        finished_at: None,
        start_spread_us: None,
        packs: Vec::new(),
        workers: (0..2).map(WorkerRecord::new).collect(),
        attempt: 1,
        attempt_errors: Vec::new(),
        notes: Vec::new(),
    }
}

/// Burst summaries: loaded from what was stored, then kept current by every
/// save (one burst, or a batch), filtered and paged.
async fn summaries(store: &Store) {
    let page = |filter: SummaryFilter| async move {
        let (total, page) = store.summaries("default", &filter).await.unwrap();
        (total, page.into_iter().map(|s| (s.id, s.state.name())).collect::<Vec<_>>())
    };
    let all = SummaryFilter { limit: 10, ..Default::default() };
    assert_eq!(page(all.clone()).await, (2, vec![("b2".into(), "running"), ("b1".into(), "succeeded")]));
    let mut failed = burst("b4", "default", BurstState::Failed);
    failed.workers[1].error = Some("boom".into());
    store.put_burst(&failed).await.unwrap();
    let batch = Batch { bursts: vec![burst("b2", "default", BurstState::Cancelled)], ..Default::default() };
    store.commit(batch).await.unwrap();
    assert_eq!(
        page(all.clone()).await,
        (3, vec![("b4".into(), "failed"), ("b2".into(), "cancelled"), ("b1".into(), "succeeded")])
    );
    let (_, failures) = store.summaries("default", &SummaryFilter { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(failures[0].failed_rank, Some(1));
    let ended = SummaryFilter {
        states: [BurstState::Failed, BurstState::Cancelled].into(),
        offset: 1,
        limit: 5,
        ..Default::default()
    };
    assert_eq!(page(ended).await, (2, vec![("b2".into(), "cancelled")]), "the second of two");
    assert_eq!(page(SummaryFilter { id_prefix: Some("b1".into()), limit: 5, ..Default::default() }).await.0, 1);
    let (total, _) = store.summaries("other", &all).await.unwrap();
    assert_eq!(total, 1, "namespaces apart");
}

/// The cases every store passes.
async fn conformance(store: &Store) {
    assert_eq!(store.get_burst("b1").await.unwrap(), None);
    store.put_burst(&burst("b1", "default", BurstState::Queued)).await.unwrap();
    store.put_burst(&burst("b2", "default", BurstState::Running)).await.unwrap();
    store.put_burst(&burst("b3", "other", BurstState::Queued)).await.unwrap();
    let mut done = burst("b1", "default", BurstState::Succeeded);
    done.workers[1].result = Some(serde_json::json!({"rank": 1}));
    store.put_burst(&done).await.unwrap();
    assert_eq!(store.get_burst("b1").await.unwrap(), Some(done), "a replaced record reads back whole");

    let ids: Vec<String> = store.list_bursts("default", 10).await.unwrap().into_iter().map(|b| b.id).collect();
    assert_eq!(ids, vec!["b2", "b1"], "newest first, one namespace only");
    assert_eq!(store.list_bursts("default", 1).await.unwrap().len(), 1);
    let unfinished: Vec<String> = store.unfinished().await.unwrap().into_iter().map(|b| b.id).collect();
    assert_eq!(unfinished, vec!["b2", "b3"], "oldest first");

    summaries(store).await;

    let logs =
        BurstLogs { packs: vec![PackLogs { pack: 0, stdout: "out".into(), stderr: "err".into(), truncated: true }] };
    store.put_logs("b1", &logs).await.unwrap();
    assert_eq!(store.get_logs("b1").await.unwrap(), Some(logs));
    assert_eq!(store.get_logs("b9").await.unwrap(), None);

    let mut f = FunctionInfo::builtin("pi", "estimates pi");
    f.kind = "deployed".into();
    f.digest = Some("ab".repeat(32));
    store.put_function("default/pi", &f).await.unwrap();
    assert_eq!(store.list_functions().await.unwrap(), vec![f]);
    store.delete_function("default/pi").await.unwrap();
    assert!(store.list_functions().await.unwrap().is_empty());
    documents(store).await;
}

fn logged(seq: u64, namespace: &str) -> LoggedEvent {
    let event = CloudEvent::new(format!("e{seq}"), "tests", "t", None, serde_json::json!({"seq": seq}));
    LoggedEvent { seq, namespace: namespace.into(), received_at: seq, event }
}

/// The workflow engine's documents and event log: a batch lands whole.
async fn documents(store: &Store) {
    let mut batch = Batch::default();
    batch.put(Docs::Runs, "ns/r1", &serde_json::json!({"n": 1}));
    batch.put(Docs::Runs, "ns/r2", &serde_json::json!({"n": 2}));
    batch.put(Docs::Runs, "other/r3", &serde_json::json!({"n": 3}));
    batch.put(Docs::Outbox, "0001", &"start");
    batch.events = vec![logged(1, "ns"), logged(2, "other"), logged(3, "ns")];
    batch.bursts.push(burst("b-with-key", "ns", BurstState::Queued));
    store.commit(batch).await.unwrap();
    assert_eq!(store.get_burst("b-with-key").await.unwrap().map(|b| b.namespace), Some("ns".into()));
    let runs: Vec<(String, serde_json::Value)> = store.docs(Docs::Runs, "ns/").await.unwrap();
    assert_eq!(
        runs,
        vec![("ns/r1".into(), serde_json::json!({"n": 1})), ("ns/r2".into(), serde_json::json!({"n": 2}))]
    );
    assert_eq!(store.doc::<String>(Docs::Outbox, "0001").await.unwrap().as_deref(), Some("start"));
    assert_eq!(store.doc::<String>(Docs::Workflows, "0001").await.unwrap(), None, "tables are apart");
    assert_eq!(store.last_event().await.unwrap(), 3);
    let ns: Vec<u64> = store.events(Some("ns"), 0, 10).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(ns, vec![1, 3]);
    assert_eq!(store.events(None, 1, 1).await.unwrap(), vec![logged(2, "other")]);

    // A put and a delete of the same batch, and an overwrite.
    let mut batch = Batch::default();
    batch.delete(Docs::Outbox, "0001");
    batch.put(Docs::Runs, "ns/r1", &serde_json::json!({"n": 10}));
    store.commit(batch).await.unwrap();
    assert_eq!(store.doc::<String>(Docs::Outbox, "0001").await.unwrap(), None);
    assert_eq!(store.doc::<serde_json::Value>(Docs::Runs, "ns/r1").await.unwrap(), Some(serde_json::json!({"n": 10})));
    // A batch whose event repeats a logged position fails whole: nothing of it lands.
    let mut batch = Batch::default();
    batch.put(Docs::Triggers, "t1", &1);
    batch.events = vec![logged(3, "ns")];
    assert!(store.commit(batch).await.is_err());
    assert_eq!(store.doc::<u64>(Docs::Triggers, "t1").await.unwrap(), None, "the batch landed whole or not at all");
}

#[tokio::test]
async fn the_embedded_store_keeps_what_it_is_given() {
    let dir = TempDir::new("store");
    conformance(&Store::open_embedded(&dir.0.join("state.redb")).unwrap()).await;
}

#[tokio::test]
async fn the_postgres_store_keeps_what_it_is_given() {
    if !postgres_up() {
        return;
    }
    let schema = PgSchema::new("volley_store");
    conformance(&Store::open_postgres(&schema.url()).await.unwrap()).await;
}

/// A controller started on a store that holds a queued and a running burst:
/// the queued one is queued again, the running one ends failed with the reason.
async fn restart(store_location: &str, data_dir: &std::path::Path) {
    let store = Store::open(store_location, data_dir).await.unwrap();
    store.put_burst(&burst("b00000000001", "default", BurstState::Queued)).await.unwrap();
    store.put_burst(&burst("b00000000002", "default", BurstState::Running)).await.unwrap();
    store.put_burst(&burst("b00000000003", "default", BurstState::Succeeded)).await.unwrap();
    drop(store);

    let opts = Options {
        listen: "127.0.0.1:0".into(),
        data_dir: data_dir.into(),
        store: store_location.into(),
        functions: vec![FunctionInfo::builtin("hello", "")],
        ..Options::default()
    };
    let controller = opts.build().await.unwrap().run(CancellationToken::new());
    controller.ready().await.unwrap();
    let url = controller.url().to_string();
    let get = |id: &'static str| {
        let url = url.clone();
        async move {
            let body = reqwest::get(format!("{url}/v1/bursts/{id}")).await.unwrap().text().await.unwrap();
            serde_json::from_str::<Burst>(&body).unwrap()
        }
    };
    assert_eq!(get("b00000000001").await.state, BurstState::Queued, "queued bursts still run");
    let failed = get("b00000000002").await;
    assert_eq!(failed.state, BurstState::Failed);
    assert!(failed.error.unwrap().contains("controller restarted"));
    assert_eq!(get("b00000000003").await.state, BurstState::Succeeded, "finished bursts survive as they were");
    tokio::time::timeout(Duration::from_secs(10), controller.stop()).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_restart_on_the_embedded_store_requeues_and_fails_what_it_must() {
    let dir = TempDir::new("restart");
    restart("embedded", &dir.0).await;
}

#[tokio::test]
async fn a_restart_on_postgres_requeues_and_fails_what_it_must() {
    if !postgres_up() {
        return;
    }
    let schema = PgSchema::new("volley_restart");
    let dir = TempDir::new("restart-pg");
    restart(&schema.url(), &dir.0).await;
}
