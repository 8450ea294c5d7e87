//! The invoker itself, in this process, against a real controller (also in
//! this process, started through its recipe) and real pack processes (the
//! `volley` binary's `pack` role): registration, warm processes taken and
//! expired, a pack that dies, a pack that is cancelled.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use volley_client::Client;
use volley_proto::api::{Burst, BurstRequest, BurstState, FunctionInfo};
use volley_testkit::{TempDir, children_of, volley_exe};

struct Cluster {
    controller: volley_controller::Handle,
    invoker: volley_invoker::Handle,
    client: Client,
    _dir: TempDir,
}

impl Cluster {
    async fn start(name: &str, warm_pool: usize, idle: Duration) -> Cluster {
        let dir = TempDir::new(name);
        let functions = ["hello", "sleep"].iter().map(|f| FunctionInfo::builtin(f, "")).collect();
        let controller = volley_controller::Options {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.0.join("controller"),
            functions,
            ..Default::default()
        }
        .build()
        .await
        .unwrap()
        .run(CancellationToken::new());
        let invoker = volley_invoker::Options {
            controller: controller.url().into(),
            name: "test-invoker".into(),
            slots: 16,
            memory_mb: 4096,
            data_dir: dir.0.join("invoker"),
            program: volley_exe(),
            program_args: vec!["pack".into()],
            warm_pool,
            idle_timeout: idle,
            ..Default::default()
        }
        .build()
        .unwrap()
        .run(CancellationToken::new());
        let client = Client::new(controller.url(), None).unwrap();
        Cluster { controller, invoker, client, _dir: dir }
    }

    async fn run(&self, function: &str, workers: usize, params: serde_json::Value) -> Burst {
        let request: BurstRequest = serde_json::from_value(
            serde_json::json!({"function": function, "workers": workers, "granularity": 1, "params": params}),
        )
        .unwrap();
        let burst = self.client.submit(&request).await.unwrap();
        self.client.wait_until_final(&burst.id, Duration::from_secs(60)).await.unwrap()
    }

    /// Submits a burst of `workers` one-worker packs sleeping `seconds`; returns it once it runs.
    async fn start_sleep(&self, workers: usize, seconds: u64) -> Burst {
        let body = serde_json::json!({"function": "sleep", "workers": workers, "granularity": 1, "params": {"seconds": seconds}});
        let burst = self.client.submit(&serde_json::from_value(body).unwrap()).await.unwrap();
        eventually("the burst to run", 20, async || {
            self.client.burst(&burst.id).await.unwrap().state == BurstState::Running
        })
        .await;
        burst
    }

    async fn warm(&self) -> usize {
        self.client.invokers().await.unwrap().iter().map(|i| i.warm).sum()
    }

    async fn stop(self) {
        self.invoker.stop().await;
        self.controller.stop().await.unwrap();
    }
}

/// The pack processes (and warm ones) this test's invoker has running.
fn packs() -> BTreeSet<u32> {
    children_of(std::process::id()).into_iter().collect()
}

async fn eventually(what: &str, secs: u64, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_registers_and_runs_bursts_in_pack_processes() {
    let c = Cluster::start("inv-register", 0, Duration::from_secs(60)).await;
    let id = tokio::time::timeout(Duration::from_secs(10), c.invoker.ready()).await.unwrap().unwrap();
    assert_eq!(c.invoker.id().as_deref(), Some(id.as_str()));
    let listed = c.client.invokers().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id.as_str(), listed[0].registration.slots, listed[0].status.as_str()),
        (id.as_str(), 16, "ready")
    );
    let burst = c.run("hello", 3, serde_json::Value::Null).await;
    assert_eq!(burst.state, BurstState::Succeeded, "{burst:?}");
    assert!(burst.packs.iter().all(|p| p.invoker == id));
    eventually("the packs to exit", 10, async || packs().is_empty()).await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_processes_are_taken_by_the_next_burst_and_expire_when_idle() {
    let c = Cluster::start("inv-warm", 4, Duration::from_secs(3)).await;
    c.invoker.ready().await.unwrap();
    // A first burst of 2 one-worker packs: the pool learns the demand and refills.
    assert_eq!(c.run("hello", 2, serde_json::Value::Null).await.state, BurstState::Succeeded);
    eventually("two warm processes", 20, async || c.warm().await >= 2).await;
    let warm = packs();
    assert!(warm.len() >= 2, "{warm:?}");
    // The next burst's packs are those processes, not new ones.
    let burst = c.start_sleep(2, 1).await;
    assert!(c.warm().await < 2, "the warm processes were taken");
    let done = c.client.wait_until_final(&burst.id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(done.state, BurstState::Succeeded);
    // Nobody uses the refilled pool: after the idle timeout it empties, and its processes are gone.
    eventually("the warm pool to expire", 30, async || c.warm().await == 0 && packs().is_empty()).await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_that_dies_is_reported_with_its_signal() {
    let c = Cluster::start("inv-dies", 0, Duration::from_secs(60)).await;
    c.invoker.ready().await.unwrap();
    let burst = c.start_sleep(2, 60).await;
    let victim = *packs().iter().next().expect("a pack process");
    unsafe {
        libc::kill(victim as i32, libc::SIGKILL);
    }
    let done = c.client.wait_until_final(&burst.id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(done.state, BurstState::Failed);
    let error = done.error.unwrap();
    assert!(error.contains("signal: 9"), "{error}");
    assert!(done.packs.iter().all(|p| p.exited_at.is_some()), "every pack's end is reported");
    eventually("the other pack to be stopped", 10, async || packs().is_empty()).await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_pack_is_stopped_and_its_processes_go() {
    let c = Cluster::start("inv-cancel", 0, Duration::from_secs(60)).await;
    c.invoker.ready().await.unwrap();
    let burst = c.start_sleep(3, 60).await;
    assert_eq!(packs().len(), 3);
    c.client.cancel(&burst.id).await.unwrap();
    let done = c.client.wait_until_final(&burst.id, Duration::from_secs(30)).await.unwrap();
    assert_eq!((done.state, done.error.as_deref()), (BurstState::Cancelled, Some("cancelled by a user")));
    eventually("the pack processes to go", 10, async || packs().is_empty()).await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_invoker_takes_its_packs_with_it() {
    let c = Cluster::start("inv-stop", 2, Duration::from_secs(60)).await;
    c.invoker.ready().await.unwrap();
    c.start_sleep(2, 60).await;
    c.invoker.stop().await;
    assert!(packs().is_empty(), "stop returns when every pack and warm process is gone: {:?}", packs());
    c.controller.stop().await.unwrap();
}
