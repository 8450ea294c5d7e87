//! Workflows of bursts end to end: a DAG deployed and run on the platform
//! (TeraSort as generate → sort → validate), on the embedded store and on
//! PostgreSQL; failures named by step, retries, cancel; definitions refused
//! with where they are wrong; a run that resumes after the controller is
//! killed, without starting any step's burst twice; events applied once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use volley_testkit as support;

use support::{Platform, TempDir, json_ok, service_up, stderr};

fn example(name: &str) -> String {
    format!("{}/../../examples/flows/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Writes `yaml` to a file and deploys it as `name`.
fn deploy(p: &Platform, dir: &TempDir, name: &str, yaml: &str) -> std::process::Output {
    let file = dir.0.join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    p.cli(&["flow", "deploy", name, file.to_str().unwrap()])
}

/// Starts a run of `workflow` and returns its id.
fn start(p: &Platform, workflow: &str, input: Value) -> String {
    let (status, run) = p.post("/v1/runs", &json!({"workflow": workflow, "input": input}).to_string());
    assert_eq!(status, 201, "{run}");
    run["id"].as_str().unwrap().to_string()
}

/// Every burst of the namespace, by idempotency key.
fn bursts_by_key(p: &Platform) -> HashMap<String, Vec<Value>> {
    let (_, bursts) = p.get("/v1/bursts?limit=1000");
    let mut by_key: HashMap<String, Vec<Value>> = HashMap::new();
    for b in bursts.as_array().unwrap() {
        if let Some(key) = b["request"]["idempotency_key"].as_str() {
            by_key.entry(key.to_string()).or_default().push(b.clone());
        }
    }
    by_key
}

fn terasort_pipeline(args: &[&str]) {
    let p = Platform::up(args);
    let data = TempDir::new("flow-data");
    let input = json!({
        "data": format!("file://{}/in", data.0.display()),
        "sorted": format!("file://{}/out", data.0.display()),
        "records": 100_000,
    });
    let out = p.cli(&["flow", "deploy", "terasort", &example("terasort.yaml")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = start(&p, "terasort", input);
    let run = p.wait_run(&id, 120);
    assert_eq!(run["state"], "succeeded", "{run:#}");
    for step in ["generate", "sort", "validate"] {
        assert_eq!(run["steps"][step]["state"], "succeeded", "{step}: {run:#}");
        assert_eq!(run["steps"][step]["attempts"], 1);
    }
    // Generate made 4 parts of 25,000; the validating step read them all back sorted.
    let generated: u64 =
        run["steps"]["generate"]["output"].as_array().unwrap().iter().map(|w| w["records"].as_u64().unwrap()).sum();
    assert_eq!(generated, 100_000);
    assert_eq!(run["steps"]["validate"]["output"][0]["valid"], true);
    assert_eq!(run["steps"]["validate"]["output"][0]["records"], 100_000);
    assert_eq!(run["steps"]["validate"]["output"][0]["output_parts"], 8);
    // The steps ran in their order, each as one burst.
    let at = |s: &str, f: &str| run["steps"][s][f].as_u64().unwrap();
    assert!(at("generate", "finished_at") <= at("sort", "started_at"));
    assert!(at("sort", "finished_at") <= at("validate", "started_at"));
    let keys = bursts_by_key(&p);
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(keys.values().all(|b| b.len() == 1));
    // The platform logged each burst's end and each step's success.
    let (_, events) = p.get("/v1/events?limit=1000");
    let kinds: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["event"]["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "volley.step.succeeded").count(), 3, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "volley.burst.succeeded").count(), 3, "{kinds:?}");
    assert!(!kinds.contains(&"volley.burst.running"), "progress nobody listens to is not logged: {kinds:?}");
    // A finished run leaves no trigger behind.
    let (_, triggers) = p.get("/v1/triggers");
    assert_eq!(triggers, json!([]));
}

#[test]
fn a_dag_runs_terasort_generate_sort_validate_on_the_embedded_store() {
    terasort_pipeline(&[]);
}

#[test]
fn a_dag_runs_terasort_generate_sort_validate_on_postgres() {
    if !service_up("PostgreSQL", "127.0.0.1:5432") {
        return;
    }
    let schema = support::PgSchema::new("volley_flow");
    terasort_pipeline(&["--store", &schema.url()]);
}

/// TeraSort as a state machine: the same three bursts, driven by ASL.
fn terasort_state_machine(args: &[&str]) {
    let p = Platform::up(args);
    let data = TempDir::new("asl-data");
    let input = json!({
        "data": format!("file://{}/in", data.0.display()),
        "sorted": format!("file://{}/out", data.0.display()),
        "records": 50_000,
    });
    let out = p.cli(&["flow", "deploy", "terasort-asl", &example("terasort.asl.json")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = start(&p, "terasort-asl", input);
    let run = p.wait_run(&id, 120);
    assert_eq!(run["state"], "succeeded", "{run:#}");
    assert_eq!(run["output"]["valid"], true, "the Succeed state's OutputPath: {run:#}");
    assert_eq!(run["output"]["records"], 50_000);
    for step in ["Generate", "Sort", "Validate"] {
        assert_eq!(run["steps"][step]["state"], "succeeded", "{step}: {run:#}");
        assert_eq!(run["steps"][step]["bursts"].as_array().unwrap().len(), 1);
    }
    assert_eq!(run["steps"]["Generate"]["output"].as_array().unwrap().len(), 4, "a burst's result: every worker's");
}

#[test]
fn a_state_machine_runs_terasort_on_the_embedded_store() {
    terasort_state_machine(&[]);
}

#[test]
fn a_state_machine_runs_terasort_on_postgres() {
    if !service_up("PostgreSQL", "127.0.0.1:5432") {
        return;
    }
    let schema = support::PgSchema::new("volley_asl");
    terasort_state_machine(&["--store", &schema.url()]);
}

#[test]
fn a_state_machine_maps_waits_runs_branches_and_catches_on_the_platform() {
    let p = Platform::up(&[]);
    let dir = TempDir::new("asl-parts");
    let machine = json!({
        "StartAt": "Each",
        "States": {
            "Each": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2, "ResultPath": "$.ranks",
                     "Iterator": {"StartAt": "Who", "States": {"Who": {"Type": "Task", "Resource": "volley:function:hello",
                                   "ResultSelector": {"size.$": "$.size"}, "End": true}}},
                     "Next": "Pause"},
            "Pause": {"Type": "Wait", "Seconds": 0.3, "Next": "Both"},
            "Both": {"Type": "Parallel", "ResultPath": "$.both", "Next": "Broken", "Branches": [
                {"StartAt": "Sum", "States": {"Sum": {"Type": "Task", "Resource": "volley:burst:sum?workers=4&granularity=2", "End": true}}},
                {"StartAt": "Constant", "States": {"Constant": {"Type": "Pass", "Result": 42, "End": true}}}
            ]},
            "Broken": {"Type": "Task", "Resource": "volley:function:sleep", "Parameters": {"seconds": 0, "fail_rank": 0},
                       "Catch": [{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.caught", "Next": "Done"}], "End": true},
            "Done": {"Type": "Pass", "Parameters": {"ranks.$": "$.ranks", "sums.$": "$.both[0][*].sum", "constant.$": "$.both[1]",
                                                    "error.$": "$.caught.Error",
                                                    "summary.$": "States.Format('{} ranks, constant {}', States.ArrayLength($.ranks), $.both[1])"}, "End": true}
        }
    });
    assert!(deploy(&p, &dir, "tour", &machine.to_string()).status.success());
    let id = start(&p, "tour", json!({"items": [1, 2, 3]}));
    let run = p.wait_run(&id, 60);
    assert_eq!(run["state"], "succeeded", "{run:#}");
    let out = &run["output"];
    assert_eq!(out["ranks"], json!([{"size": 1}, {"size": 1}, {"size": 1}]), "{out}");
    assert_eq!(out["sums"], json!([6.0, 6.0, 6.0, 6.0]), "every worker's all_reduce of the ranks: {out}");
    assert_eq!(out["constant"], 42);
    assert_eq!(out["error"], "States.TaskFailed");
    assert_eq!(out["summary"], "3 ranks, constant 42", "intrinsics: {out}");
    assert_eq!(run["steps"]["Each[2]/Who"]["state"], "succeeded", "{:#}", run["steps"]);
    assert_eq!(run["steps"]["Broken"]["state"], "failed");
    // The Wait held the run: Both started at least 0.3 s after the Map ended.
    let ended = run["steps"]["Each[2]/Who"]["finished_at"]
        .as_u64()
        .unwrap()
        .max(run["steps"]["Each[0]/Who"]["finished_at"].as_u64().unwrap());
    let both = run["steps"]["Both[branch 0]/Sum"]["started_at"].as_u64().unwrap();
    assert!(both >= ended + 300_000, "the Wait of 0.3 s was kept: {} µs", both - ended);
}

#[test]
fn the_cli_runs_a_dag_file_on_an_embedded_platform() {
    let data = TempDir::new("flow-cli");
    let input = json!({
        "data": format!("file://{}/in", data.0.display()),
        "sorted": format!("file://{}/out", data.0.display()),
        "records": 20_000,
    });
    let out = support::volley(
        None,
        &["flow", "run", &example("terasort.yaml"), "--input", &input.to_string(), "--output", "json"],
    );
    let run = json_ok(&out);
    assert_eq!(run["state"], "succeeded");
    assert_eq!(run["steps"]["validate"]["output"][0]["records"], 20_000);
    assert!(stderr(&out).contains("sort: succeeded"), "{}", stderr(&out));
}

#[test]
fn a_failing_step_fails_the_run_naming_it_after_its_retries() {
    let p = Platform::up(&[]);
    let dir = TempDir::new("flow-fail");
    let yaml = r#"
steps:
  first: {function: hello, workers: 2}
  flaky:
    needs: [first]
    function: sleep
    workers: 2
    retries: 2
    backoff_secs: 0.05
    params: {seconds: 0, fail_rank: 1}
  never: {needs: [flaky], kind: task, function: hello}
"#;
    assert!(deploy(&p, &dir, "failing", yaml).status.success());
    let id = start(&p, "failing", json!({}));
    let run = p.wait_run(&id, 60);
    assert_eq!(run["state"], "failed", "{run:#}");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("flaky") && error.contains("failed on purpose"), "{error}");
    assert_eq!(run["steps"]["first"]["state"], "succeeded");
    let key = format!("run/{id}/first/1");
    assert_eq!(
        run["steps"]["first"]["output"][0]["idempotency_key"],
        key.as_str(),
        "the function is handed its step's key"
    );
    assert_eq!(run["steps"]["flaky"]["attempts"], 3, "one run and two retries");
    assert_eq!(run["steps"]["flaky"]["errors"].as_array().unwrap().len(), 3);
    assert_eq!(run["steps"]["flaky"]["bursts"].as_array().unwrap().len(), 3, "each attempt a fresh burst");
    assert_eq!(run["steps"]["never"]["state"], "cancelled", "what needs a failed step never starts");
    assert_eq!(run["steps"]["never"]["attempts"], 0);
    // The CLI says it too, and fails.
    let out = p.cli(&["flow", "status", &id]);
    assert!(support::stdout(&out).contains("flaky"));
    let shown = p.cli(&["flow", "show", &id]);
    assert_eq!(support::stdout(&shown), support::stdout(&out), "show RUN is status RUN");
}

#[test]
fn cancelling_a_run_cancels_its_running_burst_and_starts_nothing_after() {
    let p = Platform::up(&[]);
    let dir = TempDir::new("flow-cancel");
    let yaml = r#"
steps:
  long: {function: sleep, workers: 2, params: {seconds: 60}}
  after: {needs: [long], kind: task, function: hello}
"#;
    assert!(deploy(&p, &dir, "long", yaml).status.success());
    let id = start(&p, "long", json!({}));
    let burst = until_some(20, "the step's burst", || {
        let (_, run) = p.get(&format!("/v1/runs/{id}"));
        run["steps"]["long"]["bursts"][0].as_str().map(String::from)
    });
    p.wait_state(&burst, "running", 20);
    let out = p.cli(&["flow", "cancel", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = p.wait_run(&id, 20);
    assert_eq!(run["state"], "cancelled");
    let b = p.wait(&burst, 20);
    assert_eq!(b["state"], "cancelled");
    assert!(b["error"].as_str().unwrap().contains(&id), "the burst says which run cancelled it: {b}");
    assert_eq!(run["steps"]["after"]["attempts"], 0);
    // Cancelling again is a conflict, said plainly.
    let again = p.cli(&["flow", "cancel", &id]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("not running"), "{}", stderr(&again));
}

#[test]
fn wrong_definitions_are_refused_saying_where() {
    let p = Platform::up(&[]);
    let dir = TempDir::new("flow-bad");
    let cases = [
        (
            "cycle",
            "steps:\n  a: {needs: [b], kind: task, function: hello}\n  b: {needs: [a], kind: task, function: hello}\n",
            "a -> b -> a",
        ),
        ("unknown", "steps:\n  a: {needs: [nope], kind: task, function: hello}\n", "nope"),
        ("reference", "steps:\n  a: {kind: task, function: hello, params: {x: \"${steps.ghost.output}\"}}\n", "ghost"),
        ("field", "steps:\n  a: {function: hello, worker: 3}\n", "worker"),
        ("workers", "steps:\n  a: {function: hello}\n", "needs workers"),
        ("yaml", "steps: [a, \n", "steps"),
    ];
    for (name, yaml, says) in cases {
        let out = deploy(&p, &dir, name, yaml);
        assert!(!out.status.success(), "{name} was accepted");
        assert!(stderr(&out).contains(says), "{name}: {}", stderr(&out));
    }
    let (_, list) = p.get("/v1/workflows");
    assert_eq!(list, json!([]), "nothing wrong was kept");
    // A run of a workflow that is not deployed says how to deploy one.
    let (status, body) = p.post("/v1/runs", r#"{"workflow": "absent"}"#);
    assert_eq!(status, 404);
    assert!(body["error"]["message"].as_str().unwrap().contains("volley flow deploy"), "{body}");
}

#[test]
fn a_run_resumes_after_the_controller_is_killed_and_no_step_starts_twice() {
    let dir = TempDir::new("flow-restart");
    let mut first = Platform::up_in(&dir.0, &[]);
    let yaml = r#"
steps:
  a: {function: hello, workers: 2}
  b: {needs: [a], function: sleep, workers: 2, retries: 2, backoff_secs: 0.1, params: {seconds: 2}}
  c: {needs: [b], kind: task, function: hello}
"#;
    assert!(deploy(&first, &dir, "resume", yaml).status.success());
    let id = start(&first, "resume", json!({}));
    let burst = until_some(20, "the step's burst", || {
        let (_, run) = first.get(&format!("/v1/runs/{id}"));
        run["steps"]["b"]["bursts"][0].as_str().map(String::from)
    });
    first.wait_state(&burst, "running", 20);
    first.role.kill9();
    drop(first);

    let second = Platform::up_in(&dir.0, &[]);
    let run = second.wait_run(&id, 60);
    assert_eq!(run["state"], "succeeded", "{run:#}");
    assert_eq!(run["steps"]["a"]["attempts"], 1, "a finished before the kill and is not run again");
    assert_eq!(
        run["steps"]["b"]["attempts"], 2,
        "b was running when the controller died: its burst failed, the step ran again"
    );
    assert_eq!(run["steps"]["c"]["attempts"], 1);
    // One burst per (step, attempt): the restart started nothing twice.
    for (key, bursts) in bursts_by_key(&second) {
        assert_eq!(bursts.len(), 1, "{key} started {} bursts", bursts.len());
    }
}

#[test]
fn an_event_sent_twice_is_applied_once_and_submits_with_a_key_start_one_burst() {
    let p = Platform::up(&[]);
    let event = json!({"specversion": "1.0", "id": "e-1", "source": "tests", "type": "test.thing", "data": {"n": 1}});
    let (status, first) = p.post("/v1/events", &event.to_string());
    assert_eq!(status, 202, "{first}");
    assert_eq!(first, json!({"accepted": 1, "duplicates": 0}));
    let (_, again) =
        p.post("/v1/events", &json!([event, {"id": "e-2", "source": "tests", "type": "test.thing"}]).to_string());
    assert_eq!(again, json!({"accepted": 1, "duplicates": 1}));
    let (_, logged) = p.get("/v1/events");
    let ids: Vec<&str> = logged.as_array().unwrap().iter().map(|e| e["event"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["e-1", "e-2"]);
    // An event missing what CloudEvents requires is refused, saying what.
    let (status, body) = p.post("/v1/events", r#"{"id": "x", "source": "", "type": "t"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("source"), "{body}");

    let request = json!({"function": "hello", "workers": 2, "idempotency_key": "job-42"}).to_string();
    let (s1, b1) = p.post("/v1/bursts", &request);
    let (s2, b2) = p.post("/v1/bursts", &request);
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(b1["id"], b2["id"], "the same key returns the first burst");
    assert_eq!(p.wait(b1["id"].as_str().unwrap(), 30)["state"], "succeeded");
}

fn events_leave_the_log_after_the_retention(args: &[&str]) {
    let mut all = vec!["--event-retention", "1"];
    all.extend_from_slice(args);
    let p = Platform::up(&all);
    let data = TempDir::new("retention");
    let url = format!("file://{}", data.0.display());
    std::fs::write(data.0.join("old"), "there first").unwrap();
    let out = p.cli(&["sources", "create", "uploads", "--storage", &url, "--every", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    until_some(10, "the first listing", || (p.get("/v1/sources").1[0]["polls"].as_u64() >= Some(1)).then_some(()));
    std::fs::write(data.0.join("new"), "uploaded").unwrap();
    let event = json!({"id": "e-1", "source": "tests", "type": "test.thing"}).to_string();
    assert_eq!(p.post("/v1/events", &event).1["accepted"], 1);
    assert_eq!(p.post("/v1/events", &event).1["duplicates"], 1, "within the retention, a repeat is dropped");
    until_some(10, "the upload reported", || (p.get("/v1/sources").1[0]["reported"] == 1).then_some(()));
    until_some(15, "an empty log", || p.get("/v1/events").1.as_array().unwrap().is_empty().then_some(()));
    let (_, sent) = p.post("/v1/events", &event);
    assert_eq!(sent["accepted"], 1, "past the retention the id is new again: {sent}");
    // A source's ids outlive their events: its objects are not reported again.
    let polls = p.get("/v1/sources").1[0]["polls"].as_u64().unwrap();
    until_some(10, "two more listings", || {
        (p.get("/v1/sources").1[0]["polls"].as_u64() >= Some(polls + 2)).then_some(())
    });
    assert_eq!(p.get("/v1/sources").1[0]["reported"], 1, "{}", p.get("/v1/sources").1);
}

#[test]
fn events_leave_the_log_after_the_retention_on_the_embedded_store() {
    events_leave_the_log_after_the_retention(&[]);
}

#[test]
fn events_leave_the_log_after_the_retention_on_postgres() {
    if !service_up("PostgreSQL", "127.0.0.1:5432") {
        return;
    }
    let schema = support::PgSchema::new("volley_retention");
    events_leave_the_log_after_the_retention(&["--store", &schema.url()]);
}

/// Polls `f` until it gives a value (up to `secs`).
fn until_some<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Accepts one HTTP request on a fresh port, answers 200, and hands back its body.
fn one_webhook() -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").unwrap();
        tx.send(String::from_utf8(body).unwrap()).unwrap();
    });
    (url, rx)
}

#[test]
fn a_trigger_joins_distinct_events_then_starts_a_burst_and_calls_a_webhook() {
    let p = Platform::up(&[]);
    let dir = TempDir::new("flow-trigger");
    let (hook, delivered) = one_webhook();
    let trigger = json!({
        "id": "sum-when-ready", "match": {"type": "part.ready", "subject": "job-7/*"}, "once": true,
        "condition": {"kind": "join", "count": 3, "key": "$.event.subject"},
        "actions": [
            {"kind": "start_burst", "request": {"function": "sum", "workers": 3, "params": {"value": "${event.data.n}"}}},
            {"kind": "webhook", "url": hook},
        ],
    });
    let file = dir.0.join("trigger.json");
    std::fs::write(&file, trigger.to_string()).unwrap();
    let out = p.cli(&["triggers", "create", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let watch = json!({"id": "watch-running", "match": {"type": "volley.burst.running"},
                       "actions": [{"kind": "emit", "event": {"id": "seen-${event.subject}", "source": "watch", "type": "seen.running"}}]});
    assert_eq!(p.post("/v1/triggers", &watch.to_string()).0, 201);
    // Two parts, one of them twice (a repeated subject is not a new arrival), one of another job.
    for (id, subject) in [("a", "job-7/p0"), ("b", "job-7/p1"), ("c", "job-7/p1"), ("d", "job-8/p2")] {
        let out = p.cli(&[
            "events",
            "send",
            "--type",
            "part.ready",
            "--subject",
            subject,
            "--id",
            id,
            "--data",
            r#"{"n": 2}"#,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let (_, triggers) = p.get("/v1/triggers");
    assert_eq!(triggers[0]["context"]["count"], 2, "{triggers}");
    assert_eq!(p.get("/v1/bursts").1, json!([]), "nothing started before the third part");
    let out = p.cli(&[
        "events",
        "send",
        "--type",
        "part.ready",
        "--subject",
        "job-7/p2",
        "--id",
        "e",
        "--data",
        r#"{"n": 2}"#,
    ]);
    assert!(out.status.success());
    let burst = until_some(20, "the trigger's burst", || p.get("/v1/bursts").1[0]["id"].as_str().map(String::from));
    let burst = p.wait(&burst, 30);
    assert_eq!(burst["state"], "succeeded", "{burst}");
    assert_eq!(
        burst["workers"][0]["result"]["sum"].as_f64(),
        Some(6.0),
        "each of 3 workers adds the event's n: {burst}"
    );
    let body: Value = serde_json::from_str(&delivered.recv_timeout(Duration::from_secs(20)).unwrap()).unwrap();
    assert_eq!(body["id"], "e", "the webhook got the event that fired the trigger");
    let (_, triggers) = p.get("/v1/triggers");
    assert_eq!(triggers.as_array().unwrap().len(), 1, "a `once` trigger is gone after it fired: {triggers}");
    let (_, events) = p.get("/v1/events?limit=1000");
    let seen = events.as_array().unwrap().iter().filter(|e| e["event"]["type"] == "seen.running").count();
    assert_eq!(seen, 1, "the burst's running was announced to the trigger listening for it, once");
}

#[test]
fn wrong_triggers_are_refused_and_a_failing_condition_is_recorded() {
    let p = Platform::up(&[]);
    let (status, body) = p.post(
        "/v1/triggers",
        &json!({"id": "t", "match": {"type": "x"}, "actions": [{"kind": "advance", "run": "r", "step": "s"}]})
            .to_string(),
    );
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("actions[0]"), "{body}");
    // A burst that could never be submitted is refused with the trigger, not when it fires.
    for (field, value) in [("retries", json!(121)), ("queue_timeout_secs", json!(-5.0))] {
        let mut request = json!({"function": "hello", "workers": 2});
        request[field] = value;
        let trigger =
            json!({"id": "late", "match": {"type": "x"}, "actions": [{"kind": "start_burst", "request": request}]});
        let (status, body) = p.post("/v1/triggers", &trigger.to_string());
        assert_eq!(status, 422, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(field), "{body}");
    }
    let trigger = json!({"id": "keyed", "match": {"type": "x"}, "condition": {"kind": "join", "count": 2, "key": "$.event.data.k"},
                         "actions": [{"kind": "emit", "event": {"id": "done", "source": "t", "type": "y"}}]});
    assert_eq!(p.post("/v1/triggers", &trigger.to_string()).0, 201);
    assert_eq!(p.post("/v1/triggers", &trigger.to_string()).0, 409, "a second trigger of the same id");
    // An event without the key: recorded in the trigger, the event still logged.
    let (status, _) = p.post("/v1/events", r#"{"id": "1", "source": "s", "type": "x", "data": {}}"#);
    assert_eq!(status, 202);
    let (_, triggers) = p.get("/v1/triggers");
    assert!(triggers[0]["error"].as_str().unwrap().contains("selects nothing"), "{triggers}");
}

/// Objects in a local directory (each execution of a recording step leaves one).
fn executions(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("run-")).count())
        .unwrap_or(0)
}

/// SIGKILLs the platform up to `times` times while run `id` goes, restarting
/// it on `dir` each time; kill points come from a seed printed for replay, 120
/// to 400 ms after each start (a step often finishes between two kills: the
/// run moves on, and no step is likely to exhaust its 10 retries).
fn kill_repeatedly(dir: &TempDir, mut p: Platform, id: &str, times: usize) -> (Platform, usize) {
    let mut seed = std::env::var("VOLLEY_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("kill seed {seed} (VOLLEY_KILL_SEED replays it)");
    let mut kills = 0;
    for _ in 0..times {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(120 + (seed >> 33) % 280));
        let (_, run) = p.get(&format!("/v1/runs/{id}"));
        if run["state"] != "running" {
            break;
        }
        p.role.kill9();
        kills += 1;
        p = Platform::up_in(&dir.0, &[]);
    }
    (p, kills)
}

#[test]
fn a_state_machine_survives_ten_controller_kills_and_runs_every_task_once_unless_it_says_retried() {
    let dir = TempDir::new("asl-kills");
    let data = TempDir::new("asl-kills-data");
    let items: Vec<String> = (0..60).map(|i| format!("file://{}/i{i}", data.0.display())).collect();
    let machine = json!({
        "StartAt": "Each",
        "States": {"Each": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2, "End": true,
            "Iterator": {"StartAt": "Work", "States": {"Work": {
                "Type": "Task", "Resource": "volley:burst:sleep?workers=2",
                "Parameters": {"seconds": 0.1, "record_to.$": "$$.Map.Item.Value"},
                "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 0.01, "MaxAttempts": 10}],
                "End": true}}}}}
    });
    let p = Platform::up_in(&dir.0, &[]);
    assert!(deploy(&p, &dir, "killed-asl", &machine.to_string()).status.success());
    let id = start(&p, "killed-asl", json!({"items": items}));
    let (p, kills) = kill_repeatedly(&dir, p, &id, 10);
    let run = p.wait_run(&id, 120);
    assert_eq!(kills, 10, "the run ended before its 10th kill: give it more items");
    assert_eq!(run["state"], "succeeded", "{run:#}");
    for i in 0..60 {
        let rec = &run["steps"][format!("Each[{i}]/Work")];
        let attempts = rec["attempts"].as_u64().unwrap() as usize;
        let ran = executions(&data.0.join(format!("i{i}")));
        assert!(ran >= 1 && ran <= attempts, "item {i} ran {ran} times in {attempts} attempts: {rec}");
        assert_eq!(rec["errors"].as_array().unwrap().len(), attempts - 1, "every retry says why: {rec}");
    }
    for (key, bursts) in bursts_by_key(&p) {
        assert_eq!(bursts.len(), 1, "{key} started {} bursts", bursts.len());
    }
}

#[test]
fn a_workflow_survives_twenty_controller_kills_and_runs_every_step_once_unless_it_says_retried() {
    let dir = TempDir::new("flow-kills");
    let data = TempDir::new("flow-kills-data");
    // 105 steps: a chain of diamonds (s1 and s2 need s0, s3 needs both, ...).
    let steps: Vec<String> = (0..105).map(|i| format!("s{i}")).collect();
    let mut dag = serde_json::Map::new();
    for i in 0..105usize {
        let needs: Vec<String> = match i % 3 {
            _ if i == 0 => vec![],
            1 | 2 => vec![format!("s{}", i - i % 3)],
            _ => vec![format!("s{}", i - 1), format!("s{}", i - 2)],
        };
        let record = format!("file://{}/s{i}", data.0.display());
        dag.insert(
            format!("s{i}"),
            json!({
                "needs": needs, "function": "sleep", "workers": 2, "retries": 10, "backoff_secs": 0.01,
                "params": {"seconds": 0.1, "record_to": record},
            }),
        );
    }
    let p = Platform::up_in(&dir.0, &[]);
    assert!(deploy(&p, &dir, "killed", &json!({"steps": dag}).to_string()).status.success());
    let id = start(&p, "killed", json!({}));
    let (p, kills) = kill_repeatedly(&dir, p, &id, 20);
    let run = p.wait_run(&id, 120);
    let attempts: Vec<u64> = steps.iter().map(|s| run["steps"][s]["attempts"].as_u64().unwrap_or(0)).collect();
    eprintln!("{kills} kills; attempts {attempts:?}");
    assert_eq!(kills, 20, "the run ended before its 20th kill: give it more steps");
    assert_eq!(run["state"], "succeeded", "{run:#}");
    for step in &steps {
        let rec = &run["steps"][step];
        let attempts = rec["attempts"].as_u64().unwrap() as usize;
        let ran = executions(&data.0.join(step));
        // A step ran once, or as many times as it says it was tried (an attempt
        // killed before it recorded leaves nothing): never a silent second run.
        assert!(ran >= 1 && ran <= attempts, "step {step} ran {ran} times in {attempts} attempts: {rec}");
        assert_eq!(rec["errors"].as_array().unwrap().len(), attempts - 1, "every retry says why: {rec}");
    }
    for (key, bursts) in bursts_by_key(&p) {
        assert_eq!(bursts.len(), 1, "{key} started {} bursts", bursts.len());
    }
}

/// The names of the records under `dir` (one per execution of a recording step).
fn records(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.retain(|n| n.starts_with("run-"));
    names
}

#[test]
fn checkpoint_annotations_decide_what_a_restart_computes_again() {
    let dir = TempDir::new("checkpoints");
    let data = TempDir::new("checkpoints-data");
    let rec = |step: &str| format!("file://{}/{step}", data.0.display());
    // Four producers, one per annotation; `gate` holds `late` until after the
    // kill; `reader` reads the nondeterministic output before the kill and is
    // retried after it.
    let dag = json!({"steps": {
        "sync": {"kind": "task", "function": "sleep", "params": {"seconds": 0, "record_to": rec("sync")}},
        "async": {"kind": "task", "function": "sleep", "checkpoint": "async",
                  "params": {"seconds": 0, "record_to": rec("async")}},
        "off": {"kind": "task", "function": "sleep", "checkpoint": "off",
                "params": {"seconds": 0, "record_to": rec("off")}},
        "chosen": {"kind": "task", "function": "sleep", "checkpoint": "off", "nondeterministic": true,
                   "params": {"seconds": 0, "record_to": rec("chosen")}},
        "gate": {"kind": "task", "function": "sleep", "retries": 3, "backoff_secs": 0.1, "params": {"seconds": 3}},
        "reader": {"needs": ["chosen"], "kind": "task", "function": "sleep", "retries": 3, "backoff_secs": 0.1,
                   "params": {"seconds": 3, "note": {"saw": "${steps.chosen.output[0].recorded}"}}},
        "late": {"needs": ["sync", "async", "off", "gate"], "kind": "task", "function": "sleep",
                 "params": {"seconds": 0, "note": {"sync": "${steps.sync.output[0].recorded}",
                            "async": "${steps.async.output[0].recorded}", "off": "${steps.off.output[0].recorded}"}}},
    }});
    let mut p = Platform::up_in(&dir.0, &[]);
    assert!(deploy(&p, &dir, "checkpoints", &dag.to_string()).status.success());
    let id = start(&p, "checkpoints", json!({}));
    until_some(30, "the producers done, the reader running, the async output saved", || {
        let (_, run) = p.get(&format!("/v1/runs/{id}"));
        let steps = &run["steps"];
        let done = ["sync", "async", "off", "chosen"].iter().all(|s| steps[s]["state"] == "succeeded");
        let read = steps["reader"]["state"] == "running" && steps["reader"]["bursts"].as_array()?.len() == 1;
        let saved = steps["async"]["output"][0]["recorded"].is_string();
        (done && read && saved && steps["gate"]["state"] == "running").then_some(())
    });
    let (_, before) = p.get(&format!("/v1/runs/{id}"));
    assert_eq!(before["steps"]["off"]["output_unsaved"], true, "{before:#}");
    assert_eq!(before["steps"]["chosen"]["output_unsaved"], Value::Null, "saved when the reader read it: {before:#}");
    p.role.kill9();
    let p = Platform::up_in(&dir.0, &[]);
    let run = p.wait_run(&id, 60);
    assert_eq!(run["state"], "succeeded", "{run:#}");
    let steps = &run["steps"];
    let ran = |step: &str| records(&data.0.join(step));
    assert_eq!((ran("sync").len(), ran("async").len(), ran("chosen").len()), (1, 1, 1), "{run:#}");
    assert_eq!(ran("off").len(), 2, "the unsaved output, lost with the kill, was computed again: {run:#}");
    assert_eq!(steps["off"]["recomputed_at"], json!([2]), "{run:#}");
    assert!(steps["reader"]["attempts"].as_u64().unwrap() >= 2, "the kill failed the reader's burst: {run:#}");
    let by_key = bursts_by_key(&p);
    let params = |key: String| by_key[&key][0]["request"]["params"]["note"].clone();
    // The reader's retry read what its first attempt read: the same execution of `chosen`.
    let first = params(format!("run/{id}/reader/1"));
    assert_eq!(first["saw"], json!(ran("chosen")[0]));
    assert_eq!(params(format!("run/{id}/reader/2"))["saw"], first["saw"]);
    // `late` read the saved outputs and the one computed again.
    let late = params(format!("run/{id}/late/1"));
    assert_eq!((&late["sync"], &late["async"]), (&json!(ran("sync")[0]), &json!(ran("async")[0])));
    assert!(ran("off").contains(&late["off"].as_str().unwrap().to_string()), "{late}");
    assert_eq!(steps["off"]["output"], Value::Null, "an output with checkpoint off stays out of the record");
    for (key, bursts) in by_key {
        assert_eq!(bursts.len(), 1, "{key} started {} bursts", bursts.len());
    }
}

#[test]
fn a_timer_fires_its_times_across_a_restart_and_a_trigger_starts_a_run_from_it() {
    let dir = TempDir::new("flow-timer");
    let mut p = Platform::up_in(&dir.0, &[]);
    assert!(deploy(&p, &dir, "on-tick", "steps:\n  hi: {kind: task, function: hello}\n").status.success());
    let trigger = json!({"id": "every-second-tick", "match": {"type": "volley.timer.fired", "subject": "tick"},
                         "condition": {"kind": "join", "count": 2}, "once": true,
                         "actions": [{"kind": "start_run", "workflow": "on-tick", "input": {"fired": "${event.data.fired}"}}]});
    assert_eq!(p.post("/v1/triggers", &trigger.to_string()).0, 201);
    let out = p.cli(&["timers", "create", "tick", "--every", "0.4", "--times", "4", "--data", r#"{"job": 7}"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Killed after the first firing or two; the rest fire after the restart, each once.
    let fired = |p: &Platform| p.get("/v1/timers").1[0]["fired"].as_u64().unwrap_or(0);
    until_some(10, "a first firing", || (fired(&p) >= 1).then_some(()));
    p.role.kill9();
    p = Platform::up_in(&dir.0, &[]);
    until_some(20, "four firings", || (fired(&p) == 4).then_some(()));
    let (_, timers) = p.get("/v1/timers");
    assert_eq!(timers[0]["next_at"], Value::Null, "done after --times 4: {timers}");
    let (_, events) = p.get("/v1/events?limit=1000");
    let ticks: Vec<&Value> =
        events.as_array().unwrap().iter().filter(|e| e["event"]["type"] == "volley.timer.fired").collect();
    assert_eq!(ticks.len(), 4, "each slot once: {ticks:?}");
    assert_eq!(ticks[3]["event"]["data"]["data"], json!({"job": 7}));
    let run = until_some(20, "the run the trigger started", || p.get("/v1/runs").1[0]["id"].as_str().map(String::from));
    let run = p.wait_run(&run, 30);
    assert_eq!(run["state"], "succeeded");
    assert_eq!(run["input"], json!({"fired": 2}), "started by the second tick, filled from it");
    assert_eq!(p.get("/v1/runs").1.as_array().unwrap().len(), 1, "a `once` join starts one run");
}

#[test]
fn uploads_under_a_watched_prefix_start_a_word_count() {
    let p = Platform::up(&[]);
    let data = TempDir::new("wc");
    let (texts, counts) = (data.0.join("in"), data.0.join("out"));
    std::fs::create_dir_all(&texts).unwrap();
    // There before the source: its starting point, not an upload.
    std::fs::write(texts.join("old.txt"), "old old words").unwrap();
    // The map-reduce version: a worker per object under the prefix.
    let out = p.cli(&["flow", "deploy", "wordcount", &example("wordcount-map.yaml")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let url = format!("file://{}", texts.display());
    let out = p.cli(&["sources", "create", "uploads", "--storage", &url, "--every", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let trigger = std::fs::read_to_string(example("wordcount-on-upload.json"))
        .unwrap()
        .replace("file:///tmp/wc/out", &format!("file://{}", counts.display()));
    assert_eq!(p.post("/v1/triggers", &trigger).0, 201);
    until_some(10, "the first listing", || (p.get("/v1/sources").1[0]["polls"].as_u64() >= Some(1)).then_some(()));
    let files = [("a.txt", "The cat sat. The cat ran!"), ("b.txt", "a cat, a hat"), ("c.txt", "The end")];
    for (name, text) in files {
        std::fs::write(texts.join(name), text).unwrap();
    }
    let run = until_some(30, "the run the uploads started", || p.get("/v1/runs").1[0]["id"].as_str().map(String::from));
    let run = p.wait_run(&run, 60);
    assert_eq!(run["state"], "succeeded", "{run:#}");
    let (_, sources) = p.get("/v1/sources");
    assert_eq!(sources[0]["reported"], 3, "three uploads, not the object that was there: {sources}");
    // Every word of every file, counted once, in the output's parts.
    let mut got = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(&counts).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("part-") {
            for line in std::fs::read_to_string(entry.path()).unwrap().lines() {
                let (w, c) = line.split_once('\t').unwrap();
                *got.entry(w.to_string()).or_insert(0u64) += c.parse::<u64>().unwrap();
            }
        }
    }
    assert!(counts.join("_SUCCESS").exists());
    assert_eq!(got["the"], 3);
    assert_eq!(got["cat"], 3);
    assert_eq!(got["old"], 2, "the prefix's old object is counted by the job (it maps the whole prefix)");
    assert_eq!(got.values().sum::<u64>(), 3 + 12, "old.txt's 3 words and the uploads' 12");
    let count = bursts_by_key(&p).into_iter().find(|(k, _)| k.ends_with("/count/1")).unwrap().1;
    assert_eq!(count[0]["request"]["workers"], 4, "a worker per object");
}

/// Sums the `word<TAB>count` lines of the parts under `url`.
fn counted_words(url: &str) -> std::collections::BTreeMap<String, u64> {
    let mut got = std::collections::BTreeMap::new();
    for (key, _) in support::list_objects(url) {
        if key.starts_with("part-") {
            for line in String::from_utf8(support::read_object(url, &key)).unwrap().lines() {
                let (w, c) = line.split_once('\t').unwrap();
                *got.entry(w.to_string()).or_insert(0u64) += c.parse::<u64>().unwrap();
            }
        }
    }
    got
}

fn map_over_objects(base: &str) {
    let p = Platform::up(&[]);
    let (texts, counts) = (format!("{base}/in"), format!("{base}/out"));
    // 9 objects: 9 workers, 3 packs of 4, 4, 1; the marker is not data.
    for i in 0..9 {
        support::write_object(&texts, &format!("t{i}.txt"), format!("Cat {i} and dog, cat").as_bytes());
    }
    support::write_object(&texts, "_SUCCESS", b"");
    let out = p.cli(&["flow", "deploy", "wc-map", &example("wordcount-map.yaml")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = start(&p, "wc-map", json!({"texts": texts, "counts": counts}));
    let run = p.wait_run(&id, 60);
    assert_eq!(run["state"], "succeeded", "{run:#}");
    let burst = &bursts_by_key(&p)[&format!("run/{id}/count/1")][0];
    assert_eq!(burst["request"]["workers"], 9, "a worker per object: {burst}");
    let given = &burst["request"]["worker_params"][3];
    assert_eq!(given["url"], format!("{texts}/t3.txt"), "{given}");
    assert_eq!((given["key"].as_str(), given["size"].as_u64()), (Some("t3.txt"), Some(18)), "{given}");
    let got = counted_words(&counts);
    assert_eq!((got["cat"], got["dog"], got["and"]), (18, 9, 9), "{got:?}");
    assert_eq!(got.values().sum::<u64>(), 9 * 5, "every word of every object, once");
    // An empty prefix fails the step saying so.
    let id = start(&p, "wc-map", json!({"texts": format!("{base}/nothing"), "counts": counts}));
    let run = p.wait_run(&id, 60);
    assert_eq!(run["state"], "failed", "{run:#}");
    assert!(run["error"].as_str().unwrap().contains("no objects under"), "{run:#}");
}

#[test]
fn a_map_step_runs_a_worker_per_object_under_a_local_prefix() {
    support::on_local_dir("wc-map", map_over_objects);
}

#[test]
fn a_map_step_runs_a_worker_per_object_under_an_s3_prefix() {
    support::on_s3("wc-map", map_over_objects);
}

#[test]
fn a_multi_tenant_controller_watches_no_local_directory_and_keeps_tenants_apart() {
    let dir = TempDir::new("flow-tenants");
    let keys = dir.0.join("keys");
    let (a, b) = ("tenant-a-key-0000000000000000000000000", "tenant-b-key-0000000000000000000000000");
    std::fs::write(&keys, format!("a {a}\nb {b}\n")).unwrap();
    std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let p = Platform::up(&["--api-keys", keys.to_str().unwrap()]);
    let source = json!({"id": "mine", "storage": {"url": "file:///etc"}}).to_string();
    let (status, body) = support::http_as(Some(a), &p.url, "POST", "/v1/sources", &source);
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("s3://"), "{body}");
    // A's trigger, timer and run are not B's to see or touch.
    let trigger = json!({"id": "t", "match": {"type": "x"}, "actions": [{"kind": "emit", "event": {"id": "e", "source": "s", "type": "y"}}]});
    assert_eq!(support::http_as(Some(a), &p.url, "POST", "/v1/triggers", &trigger.to_string()).0, 201);
    assert_eq!(support::http_as(Some(b), &p.url, "GET", "/v1/triggers", "").1, json!([]));
    assert_eq!(support::http_as(Some(b), &p.url, "DELETE", "/v1/triggers/t", "").0, 404);
    let (_, sent) =
        support::http_as(Some(b), &p.url, "POST", "/v1/events", r#"{"id": "1", "source": "s", "type": "x"}"#);
    assert_eq!(sent["accepted"], 1);
    let (_, mine) = support::http_as(Some(a), &p.url, "GET", "/v1/triggers", "");
    assert_eq!(mine[0]["fired"], 0, "B's event does not reach A's trigger: {mine}");
    assert_eq!(support::http_as(Some(a), &p.url, "GET", "/v1/events", "").1, json!([]), "nor A's log");
    // Nor does a map step list the controller's files for a tenant.
    let dag = json!({"kind": "dag", "source": "steps: {m: {kind: map, function: hello, objects: \"file:///etc\"}}"});
    let (status, body) = support::http_as(Some(a), &p.url, "PUT", "/v1/workflows/peek", &dag.to_string());
    assert_eq!(status, 200, "{body}");
    let (status, run) = support::http_as(Some(a), &p.url, "POST", "/v1/runs", r#"{"workflow": "peek"}"#);
    assert_eq!(status, 201, "{run}");
    let path = format!("/v1/runs/{}/wait?timeout_ms=20000", run["id"].as_str().unwrap());
    let (_, run) = support::http_as(Some(a), &p.url, "GET", &path, "");
    assert_eq!(run["state"], "failed", "{run}");
    assert!(run["error"].as_str().unwrap().contains("s3:// prefixes only"), "{run}");
}

/// The events of `source` logged so far.
fn events_from(p: &Platform, source: &str) -> Vec<Value> {
    let (_, events) = p.get("/v1/events?limit=1000");
    events.as_array().unwrap().iter().filter(|e| e["event"]["source"] == source).map(|e| e["event"].clone()).collect()
}

#[test]
fn messages_of_a_redis_stream_a_rabbitmq_queue_and_a_nats_subject_become_events() {
    let up = service_up("Redis", "127.0.0.1:6379")
        & service_up("RabbitMQ", "127.0.0.1:5672")
        & service_up("NATS", "127.0.0.1:4222");
    if !up {
        return;
    }
    let p = Platform::up(&[]);
    let tag = format!("{:08x}", support::fs::rand_u32());
    let (stream, queue, subject) = (format!("flows.{tag}"), format!("flows.{tag}"), format!("flows.{tag}"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // The stream and the queue are the user's: made before the sources read them.
    rt.block_on(async {
        let mut redis =
            redis::Client::open("redis://127.0.0.1:6379").unwrap().get_multiplexed_async_connection().await.unwrap();
        let _: String =
            redis::cmd("XADD").arg(&stream).arg("*").arg("data").arg("before").query_async(&mut redis).await.unwrap();
        let conn =
            lapin::Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f", Default::default()).await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.queue_declare(queue.as_str().into(), Default::default(), Default::default()).await.unwrap();
    });
    for (id, flag, name) in
        [("r", "--redis-stream", &stream), ("q", "--rabbitmq-queue", &queue), ("n", "--nats-subject", &subject)]
    {
        let out = p.cli(&["sources", "create", id, flag, name]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    rt.block_on(async {
        // Give the subscriptions a moment to start (NATS delivers only to those listening).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut redis =
            redis::Client::open("redis://127.0.0.1:6379").unwrap().get_multiplexed_async_connection().await.unwrap();
        for n in 0..3 {
            let _: String = redis::cmd("XADD")
                .arg(&stream)
                .arg("*")
                .arg("data")
                .arg(json!({"n": n}).to_string())
                .query_async(&mut redis)
                .await
                .unwrap();
        }
        let conn =
            lapin::Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f", Default::default()).await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        for n in 0..2 {
            let props = lapin::BasicProperties::default().with_message_id(format!("m{n}").as_str().into());
            ch.basic_publish(
                "".into(),
                queue.as_str().into(),
                Default::default(),
                json!({"n": n}).to_string().as_bytes(),
                props,
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
        // The same message again (a producer's retry): one event.
        let props = lapin::BasicProperties::default().with_message_id("m1".into());
        ch.basic_publish("".into(), queue.as_str().into(), Default::default(), b"{\"n\": 1}", props)
            .await
            .unwrap()
            .await
            .unwrap();
        let nats = async_nats::connect("nats://127.0.0.1:4222").await.unwrap();
        nats.publish(subject.clone(), "plain text".into()).await.unwrap();
        nats.flush().await.unwrap();
    });
    let redis_events = until_some(20, "3 stream entries", || {
        let e = events_from(&p, &format!("volley/redis/{stream}"));
        (e.len() == 3).then_some(e)
    });
    assert_eq!(redis_events[2]["data"], json!({"n": 2}));
    assert_eq!(redis_events[0]["type"], "volley.redis.entry");
    let rabbit = until_some(20, "2 queue messages", || {
        let e = events_from(&p, &format!("volley/rabbitmq/{queue}"));
        (e.len() == 2).then_some(e)
    });
    assert_eq!(rabbit.iter().map(|e| e["id"].as_str().unwrap()).collect::<Vec<_>>(), ["m0", "m1"]);
    let nats = until_some(20, "the NATS message", || events_from(&p, &format!("volley/nats/{subject}")).pop());
    assert_eq!(nats["data"], "plain text");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        events_from(&p, &format!("volley/rabbitmq/{queue}")).len(),
        2,
        "the repeated message_id stays one event"
    );
    let (_, sources) = p.get("/v1/sources");
    let reported: Vec<u64> = sources.as_array().unwrap().iter().map(|s| s["reported"].as_u64().unwrap()).collect();
    assert_eq!(reported.iter().sum::<u64>(), 6, "the entry made before the source is not news: {sources}");
    // A deleted stream source takes its consumer group with it.
    assert!(p.cli(&["sources", "delete", "r"]).status.success());
    let groups = until_some(10, "the consumer group to go", || {
        rt.block_on(async {
            let mut redis = redis::Client::open("redis://127.0.0.1:6379")
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let groups: Vec<redis::Value> =
                redis::cmd("XINFO").arg("GROUPS").arg(&stream).query_async(&mut redis).await.unwrap();
            groups.is_empty().then_some(groups)
        })
    });
    assert!(groups.is_empty());
    // Clean up the broker objects this test made.
    rt.block_on(async {
        let mut redis =
            redis::Client::open("redis://127.0.0.1:6379").unwrap().get_multiplexed_async_connection().await.unwrap();
        let _: i64 = redis::cmd("DEL").arg(&stream).query_async(&mut redis).await.unwrap();
        let conn =
            lapin::Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f", Default::default()).await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        let _ = ch.queue_delete(queue.as_str().into(), Default::default()).await;
    });
}

#[test]
fn a_workflow_as_code_loops_until_it_converges_and_waits_for_an_event_without_a_process() {
    code_workflow_converges_and_waits(&[], false);
}

#[test]
fn a_workflow_as_code_on_postgres_waits_for_its_event_across_a_controller_kill() {
    if !service_up("PostgreSQL", "127.0.0.1:5432") {
        return;
    }
    let schema = support::PgSchema::new("volley_code");
    code_workflow_converges_and_waits(&["--store", &schema.url()], true);
}

/// Runs examples/flows/estimate-pi.yaml to its wait for approval, kills the
/// platform there if `kill` (the wait is only rows: a restart keeps it), and
/// sends the approval.
fn code_workflow_converges_and_waits(args: &[&str], kill: bool) {
    let dir = TempDir::new("code-flow");
    let mut p = Platform::up_in(&dir.0, args);
    let out = p.cli(&["flow", "deploy", "pi", &example("estimate-pi.yaml")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = start(&p, "pi", json!({"tolerance": 0.003, "samples": 100_000, "approval": true}));
    // Once the estimate converged, the run waits for its approval: a trigger, no burst.
    until_some(60, "the wait for approval", || {
        let (_, triggers) = p.get("/v1/triggers");
        triggers.as_array().unwrap().iter().any(|t| t["match"]["type"] == "pi.approve").then_some(())
    });
    let (_, bursts) = p.get("/v1/bursts?limit=1000");
    assert!(
        bursts.as_array().unwrap().iter().all(|b| b["state"] != "running" && b["state"] != "queued"),
        "nothing runs while it waits"
    );
    if kill {
        p.role.kill9();
        p = Platform::up_in(&dir.0, args);
    }
    let event = json!({"id": "ok-1", "source": "tests", "type": "pi.approve", "subject": id, "data": {"by": "me"}});
    assert_eq!(p.post("/v1/events", &event.to_string()).0, 202);
    let run = p.wait_run(&id, 60);
    assert_eq!(run["state"], "succeeded", "{run:#}");
    let out = &run["output"];
    assert!((out["pi"].as_f64().unwrap() - std::f64::consts::PI).abs() < 0.05, "{out}");
    let rounds = out["rounds"].as_u64().unwrap();
    assert!(rounds >= 2, "{out}");
    assert_eq!(out["darts"], rounds * 4 * 100_000);
    assert_eq!(out["approved"], json!({"by": "me"}));
    assert_eq!(out["mapped"], rounds, "the map ran one worker per round: {out}");
    // Replayed once per finished command (rounds, the map, the event), plus the first.
    let replays = run["steps"].as_object().unwrap().keys().filter(|k| k.starts_with("replay ")).count() as u64;
    assert_eq!(replays, rounds + 3, "{:#}", run["steps"]);
    // Every command's burst started once.
    for (key, bursts) in bursts_by_key(&p) {
        assert_eq!(bursts.len(), 1, "{key}");
    }
}

#[test]
fn an_orchestrator_that_asks_for_other_things_on_replay_fails_naming_the_line() {
    let p = Platform::up(&[]);
    assert!(p.cli(&["flow", "deploy", "pi", &example("estimate-pi.yaml")]).status.success());
    let id = start(&p, "pi", json!({"drill_nondeterminism": true, "samples": 1000}));
    let run = p.wait_run(&id, 60);
    assert_eq!(run["state"], "failed", "{run:#}");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("not deterministic") && error.contains("orchestrators.rs:"), "{error}");
}
