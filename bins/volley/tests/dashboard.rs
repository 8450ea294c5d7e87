//! What the web dashboard reads: its page and files at `/` (from `volley up`
//! and `volley controller`), pages of burst summaries filtered on the server,
//! the overview, and what workers and packs report (traffic, phases, who
//! failed). The pages themselves are tested in a browser
//! (`crates/dashboard/web/tests`).

use volley_testkit as support;

use serde_json::Value;
use support::{Platform, Role, TempDir, http_as};

const KEY_A: &str = "dash-a-key-0123456789abcdef0123456789";
const KEY_B: &str = "dash-b-key-9876543210fedcba9876543210";

fn keys_file(dir: &TempDir) -> String {
    let keys = dir.0.join("keys");
    std::fs::write(&keys, format!("alpha {KEY_A}\nbeta {KEY_B}\n")).unwrap();
    std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    keys.to_str().unwrap().to_string()
}

fn submit(p: &Platform, key: &str, body: &str) -> String {
    let (status, burst) = http_as(Some(key), &p.url, "POST", "/v1/bursts", body);
    assert_eq!(status, 201, "{burst}");
    burst["id"].as_str().unwrap().to_string()
}

fn wait(p: &Platform, key: &str, id: &str) -> Value {
    for _ in 0..6 {
        let (_, b) = http_as(Some(key), &p.url, "GET", &format!("/v1/bursts/{id}/wait?timeout_ms=20000"), "");
        if ["succeeded", "failed", "cancelled"].contains(&b["state"].as_str().unwrap_or_default()) {
            return b;
        }
    }
    panic!("burst {id} did not end within two minutes");
}

fn ids(page: &Value) -> Vec<String> {
    page["bursts"].as_array().unwrap().iter().map(|b| b["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn summaries_are_paged_and_filtered_on_the_server_within_a_namespace() {
    let dir = TempDir::new("dash-summaries");
    let p = Platform::up_in(&dir.0, &["--api-keys", &keys_file(&dir)]);
    let mut hellos: Vec<String> = (0..7).map(|_| submit(&p, KEY_A, r#"{"function":"hello","workers":1}"#)).collect();
    let failed = submit(&p, KEY_A, r#"{"function":"sleep","workers":4,"params":{"seconds":0.1,"fail_rank":2}}"#);
    let theirs = submit(&p, KEY_B, r#"{"function":"hello","workers":1}"#);
    for id in hellos.iter().chain([&failed]) {
        wait(&p, KEY_A, id);
    }
    wait(&p, KEY_B, &theirs);
    hellos.reverse(); // newest first

    let page = |key: &str, query: &str| {
        let (status, page) = http_as(Some(key), &p.url, "GET", &format!("/v1/bursts/summaries?{query}"), "");
        assert_eq!(status, 200, "{query}: {page}");
        page
    };
    let all = page(KEY_A, "");
    assert_eq!(all["total"], 8, "{all}");
    assert_eq!(ids(&all)[0], failed, "newest first");
    assert!(!ids(&all).contains(&theirs), "another namespace's burst is not listed");
    assert_eq!(ids(&page(KEY_B, "")), vec![theirs.clone()]);

    let second = page(KEY_A, "offset=3&limit=2");
    assert_eq!((second["total"].as_u64(), second["offset"].as_u64()), (Some(8), Some(3)));
    assert_eq!(ids(&second), hellos[2..4].to_vec(), "the page after the newest three");

    let failures = page(KEY_A, "state=failed,cancelled");
    assert_eq!(ids(&failures), vec![failed.clone()]);
    assert_eq!(failures["bursts"][0]["failed_rank"], 2, "{failures}");
    assert_eq!(page(KEY_A, "function=hello")["total"], 7);
    assert_eq!(ids(&page(KEY_A, &format!("q={}", &hellos[3]))), vec![hellos[3].clone()], "search by id");
    let first_submit = all["bursts"][7]["submitted_at"].as_u64().unwrap();
    assert_eq!(page(KEY_A, &format!("until={first_submit}"))["total"], 0);
    assert_eq!(page(KEY_A, &format!("since={first_submit}"))["total"], 8);

    for (query, says) in [("state=lost", "unknown state \"lost\""), ("limit=0", "limit must be between 1 and 1000")] {
        let (status, answer) = http_as(Some(KEY_A), &p.url, "GET", &format!("/v1/bursts/summaries?{query}"), "");
        assert_eq!(status, 400, "{query}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(says), "{answer}");
    }
    let (status, _) = http_as(None, &p.url, "GET", "/v1/bursts/summaries", "");
    assert_eq!(status, 401, "the same keys as the rest of the API");

    // The overview: the invoker, this namespace's counts, its failures, its throughput.
    let (_, overview) = http_as(Some(KEY_A), &p.url, "GET", "/v1/overview", "");
    assert_eq!(overview["invokers"].as_array().unwrap().len(), 1, "{overview}");
    assert_eq!(overview["bursts"]["succeeded"], 7, "{overview}");
    assert_eq!(overview["bursts"]["failed"], 1, "{overview}");
    assert_eq!(overview["recent_failures"][0]["id"], failed.as_str());
    let buckets = overview["throughput"].as_array().unwrap();
    assert_eq!(buckets.len(), 60);
    let ended: u64 = buckets.iter().map(|b| b["succeeded"].as_u64().unwrap() + b["failed"].as_u64().unwrap()).sum();
    assert_eq!(ended, 8, "every burst of this namespace ended within the hour: {overview}");
    let (_, theirs_overview) = http_as(Some(KEY_B), &p.url, "GET", "/v1/overview", "");
    assert_eq!(theirs_overview["bursts"]["succeeded"], 1);
    assert_eq!(theirs_overview["bursts"]["failed"], 0);

    // The index is rebuilt from the store after a restart.
    drop(p);
    let p = Platform::up_in(&dir.0, &["--api-keys", &keys_file(&dir)]);
    let (_, again) = http_as(Some(KEY_A), &p.url, "GET", "/v1/bursts/summaries?state=failed", "");
    assert_eq!(ids(&again), vec![failed], "{again}");
}

#[test]
fn workers_report_what_they_sent_and_the_failing_rank_is_told_from_its_echoes() {
    let p = Platform::up(&[]);
    let (_, burst) = p.post("/v1/bursts", r#"{"function":"sum","workers":6,"granularity":2}"#);
    let burst = p.wait(burst["id"].as_str().unwrap(), 60);
    assert_eq!(burst["state"], "succeeded", "{burst}");
    let mut messages = 0;
    for w in burst["workers"].as_array().unwrap() {
        let t = &w["traffic"];
        assert!(t.is_object(), "every worker reports its traffic: {w}");
        messages += t["local_messages"].as_u64().unwrap() + t["remote_messages"].as_u64().unwrap();
        assert_eq!(w["aborted"], false);
    }
    assert!(messages > 0, "{burst}");
    let packs = burst["packs"].as_array().unwrap();
    assert_eq!(packs.len(), 3);
    for (i, pack) in packs.iter().enumerate() {
        let sent: Vec<u64> = pack["sent_bytes"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap()).collect();
        assert_eq!(sent.len(), 3, "one entry per pack: {pack}");
        assert_eq!(sent[i], 0, "what stays in a pack is in its workers' local bytes: {pack}");
        assert!(sent.iter().sum::<u64>() > 0, "an all_reduce crosses packs: {pack}");
    }

    let (_, burst) = p.post(
        "/v1/bursts",
        r#"{"function":"sleep","workers":4,"granularity":2,"params":{"seconds":0.3,"fail_rank":1}}"#,
    );
    let burst = p.wait(burst["id"].as_str().unwrap(), 60);
    assert_eq!(burst["state"], "failed", "{burst}");
    let failing: Vec<u64> = burst["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["error"].is_string() && w["aborted"] == false)
        .map(|w| w["rank"].as_u64().unwrap())
        .collect();
    assert_eq!(failing, vec![1], "only rank 1 failed on its own: {burst}");
}

#[test]
fn the_page_is_served_by_up_and_by_a_controller_without_a_key() {
    let dir = TempDir::new("dash-page");
    let p = Platform::up(&["--api-keys", &keys_file(&dir)]);
    let (controller, line) =
        Role::start(&["controller", "--listen", "127.0.0.1:0"], &dir.0.join("ctl"), "listening on ");
    let controller_url = line.split("listening on ").nth(1).unwrap().trim().to_string();
    for base in [&p.url, &controller_url] {
        let (status, page) = http_as(None, base, "GET", "/", "");
        assert_eq!(status, 200, "{base}");
        let html = page.as_str().unwrap();
        assert!(html.contains("/ui/vendor/echarts.min.js"), "{html}");
        let script = html.split("src=\"").filter_map(|s| s.split('"').next()).find(|s| s.ends_with(".js")).unwrap();
        let (status, _) = http_as(None, base, "GET", script, "");
        assert_eq!(status, 200, "{script} from {base}");
        // The page holds no data: what it shows comes from the API, with a key.
        let (status, _) = http_as(None, base, "GET", "/v1/overview", "");
        assert_eq!(status, if base == &p.url { 401 } else { 200 });
    }
    drop(controller);
}

#[test]
fn a_workflow_says_which_step_leads_to_which() {
    let p = Platform::up(&[]);
    let edges = |w: &Value| -> Vec<(String, String)> {
        let mut e: Vec<(String, String)> = w["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["from"].as_str().unwrap().into(), e["to"].as_str().unwrap().into()))
            .collect();
        e.sort();
        e
    };
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    let dag = "steps:\n  a: {function: hello, workers: 1}\n  b: {needs: [a], function: hello, workers: 1}\n  \
               c: {needs: [a, b], function: hello, workers: 1}\n";
    let body = serde_json::json!({"kind": "dag", "source": dag}).to_string();
    let (status, w) = support::http(&p.url, "PUT", "/v1/workflows/diamond", &body);
    assert_eq!(status, 200, "{w}");
    assert_eq!(edges(&w), vec![pair("a", "b"), pair("a", "c"), pair("b", "c")]);

    let machine = serde_json::json!({
        "StartAt": "Pick",
        "States": {
            "Pick": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "One"}], "Default": "Other"},
            "One": {"Type": "Task", "Resource": "volley:function:hello", "Next": "Done",
                    "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Other"}]},
            "Other": {"Type": "Pass", "Next": "Done"},
            "Done": {"Type": "Succeed"}
        }
    });
    let body = serde_json::json!({"kind": "state_machine", "source": machine.to_string()}).to_string();
    let (status, w) = support::http(&p.url, "PUT", "/v1/workflows/branches", &body);
    assert_eq!(status, 200, "{w}");
    assert_eq!(
        edges(&w),
        vec![
            pair("One", "Done"),
            pair("One", "Other"),
            pair("Other", "Done"),
            pair("Pick", "One"),
            pair("Pick", "Other")
        ]
    );
    let (_, listed) = p.get("/v1/workflows/branches");
    assert_eq!(edges(&listed), edges(&w), "kept with the workflow");
}

#[test]
fn phases_reach_the_record_while_the_burst_runs() {
    let p = Platform::up(&[]);
    let (_, burst) = p.post("/v1/bursts", r#"{"function":"sleep","workers":4,"granularity":2,"params":{"seconds":4}}"#);
    let id = burst["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let live = loop {
        let (_, b) = p.get(&format!("/v1/bursts/{id}"));
        let marked =
            b["workers"].as_array().unwrap().iter().all(|w| w["phases"].as_array().is_some_and(|ps| !ps.is_empty()));
        if marked {
            break b;
        }
        assert!(std::time::Instant::now() < deadline, "no phase arrived while the burst ran: {b}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    for w in live["workers"].as_array().unwrap() {
        assert!(w["finished_at"].is_null(), "the phase came before the result: {w}");
        assert_eq!(w["phases"][0]["name"], "sleep", "{w}");
    }
    let done = p.wait(&id, 60);
    for w in done["workers"].as_array().unwrap() {
        let names: Vec<&str> = w["phases"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["sleep", "barriers"], "the result's list replaces the live one: {w}");
    }
}
