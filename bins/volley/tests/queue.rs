//! The queue is fair and live: what can never fit is refused at once, a burst
//! that fits does not wait behind one that cannot fit yet (backfilling, with a
//! reservation that keeps large bursts from starving), every change of the
//! queue runs placement again, and one namespace cannot fill the queue.

use volley_testkit as support;

use serde_json::{Value, json};
use support::{Platform, TempDir, http_as};

fn submit(p: &Platform, body: Value) -> String {
    let (status, burst) = p.post("/v1/bursts", &body.to_string());
    assert_eq!(status, 201, "{burst}");
    burst["id"].as_str().unwrap().to_string()
}

fn state(p: &Platform, id: &str) -> String {
    p.get(&format!("/v1/bursts/{id}")).1["state"].as_str().unwrap().to_string()
}

/// 8 slots and 1 GiB: small enough to fill with a test.
fn small_platform(extra: &[&str]) -> Platform {
    let mut args = vec!["--slots", "8", "--memory-mb", "1024", "--warm-pool", "0"];
    args.extend_from_slice(extra);
    Platform::up(&args)
}

/// Keeps 6 of the 8 slots busy for up to 60 s (its deadline); returns the burst.
fn occupy_six_of_eight(p: &Platform) -> String {
    let busy =
        json!({"function": "sleep", "workers": 6, "granularity": 6, "params": {"seconds": 60}, "timeout_secs": 60});
    let id = submit(p, busy);
    p.wait_state(&id, "running", 20);
    id
}

#[test]
fn a_burst_that_can_never_fit_is_refused_at_submit_with_the_numbers() {
    let p = small_platform(&[]);
    // More memory per worker than any invoker has: it used to be accepted and
    // then block the queue for everyone until its queue timeout.
    let (status, answer) =
        p.post("/v1/bursts", &json!({"function": "hello", "workers": 2, "memory_mb": 4096}).to_string());
    assert_eq!((status, answer["error"]["code"].as_str()), (422, Some("insufficient_capacity")), "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("2 workers × 4096 MiB") && message.contains("1024 MiB"), "{message}");
    // Within an invoker's memory per pack, beyond it in total.
    let body = json!({"function": "hello", "workers": 8, "granularity": 1, "memory_mb": 200});
    let (status, answer) = p.post("/v1/bursts", &body.to_string());
    assert_eq!(status, 422, "8 × 200 MiB of 1024: {answer}");
    // And the queue still serves everyone else.
    let id = submit(&p, json!({"function": "hello", "workers": 2}));
    assert_eq!(p.wait(&id, 20)["state"], "succeeded");
}

#[test]
fn a_small_burst_passes_a_head_that_cannot_fit_yet() {
    let p = small_platform(&[]);
    let busy = occupy_six_of_eight(&p);
    // The head needs all 8 slots: its reservation is when `busy` must end.
    let head = submit(&p, json!({"function": "hello", "workers": 8, "granularity": 8, "queue_timeout_secs": 120}));
    // A short burst that ends long before the reservation runs in the 2 free slots.
    let small = submit(&p, json!({"function": "hello", "workers": 2, "timeout_secs": 10}));
    let done = p.wait(&small, 20);
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(state(&p, &head), "queued", "the head is still waiting for its room");
    // When the room comes back, the head starts (nothing else needs to happen).
    p.post(&format!("/v1/bursts/{busy}/cancel"), "");
    assert_eq!(p.wait(&head, 20)["state"], "succeeded");
}

#[test]
fn a_long_burst_does_not_pass_the_reserved_head_and_starts_when_the_head_is_cancelled() {
    let p = small_platform(&[]);
    let busy = occupy_six_of_eight(&p);
    let head = submit(&p, json!({"function": "hello", "workers": 8, "granularity": 8, "queue_timeout_secs": 120}));
    // It fits now, but would still hold 2 slots when the head's room comes: it waits.
    let long = submit(&p, json!({"function": "hello", "workers": 2, "timeout_secs": 600, "queue_timeout_secs": 120}));
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(state(&p, &long), "queued", "passing would delay the head");
    // Cancelling the head must run placement again at once: nothing else happens here.
    let (status, _) = p.post(&format!("/v1/bursts/{head}/cancel"), "");
    assert_eq!(status, 200);
    assert_eq!(p.wait(&long, 10)["state"], "succeeded");
    assert_eq!(state(&p, &busy), "running");
    p.post(&format!("/v1/bursts/{busy}/cancel"), "");
}

#[test]
fn one_namespace_cannot_fill_the_queue() {
    let dir = TempDir::new("queue-keys");
    let (key_a, key_b) = ("tenant-a-key-000000000000000000000000", "tenant-b-key-000000000000000000000000");
    let keys = dir.0.join("keys");
    std::fs::write(&keys, format!("a {key_a}\nb {key_b}\n")).unwrap();
    let p = small_platform(&["--api-keys", keys.to_str().unwrap(), "--max-queued-per-namespace", "2"]);
    let post = |key: &str, body: Value| http_as(Some(key), &p.url, "POST", "/v1/bursts", &body.to_string());
    let (status, busy) =
        post(key_a, json!({"function": "sleep", "workers": 8, "granularity": 8, "params": {"seconds": 30}}));
    assert_eq!(status, 201, "{busy}");
    let waiting = json!({"function": "hello", "workers": 8, "granularity": 8});
    assert_eq!(post(key_a, waiting.clone()).0, 201);
    assert_eq!(post(key_a, waiting.clone()).0, 201);
    let (status, answer) = post(key_a, waiting.clone());
    assert_eq!((status, answer["error"]["code"].as_str()), (429, Some("queue_full")), "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("already has 2 bursts waiting"), "{answer}");
    // Another tenant still gets in.
    let (status, answer) = post(key_b, waiting);
    assert_eq!(status, 201, "{answer}");
    let id = busy["id"].as_str().unwrap();
    http_as(Some(key_a), &p.url, "POST", &format!("/v1/bursts/{id}/cancel"), "");
}

#[test]
fn the_queue_timeout_is_capped() {
    let p = small_platform(&["--max-queue-timeout", "600"]);
    let (status, answer) =
        p.post("/v1/bursts", &json!({"function": "hello", "workers": 1, "queue_timeout_secs": 3600}).to_string());
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("limit of 600"), "{answer}");
}

#[test]
fn a_head_that_times_out_lets_the_burst_behind_it_start_at_once() {
    let p = small_platform(&[]);
    let busy = occupy_six_of_eight(&p);
    // The head gives up after a second; the long burst behind it may not pass it before.
    let head = submit(&p, json!({"function": "hello", "workers": 8, "granularity": 8, "queue_timeout_secs": 1}));
    let long = submit(&p, json!({"function": "hello", "workers": 2, "timeout_secs": 600, "queue_timeout_secs": 120}));
    let ended = p.wait(&head, 10);
    assert_eq!(ended["state"], "failed", "{ended}");
    assert!(ended["error"].as_str().unwrap().contains("free when it gave up"), "{ended}");
    assert_eq!(p.wait(&long, 10)["state"], "succeeded");
    p.post(&format!("/v1/bursts/{busy}/cancel"), "");
}
