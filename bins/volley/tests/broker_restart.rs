//! A broker that restarts under a running burst: the burst fails with a clear
//! error instead of hanging. Uses a Redis server of its own (not the shared one).

use volley_testkit as support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Platform, Server, TempDir, eventually, json_ok, volley};

const PORT: &str = "6391";

fn redis() -> Option<Server> {
    let child = Command::new("redis-server")
        .args(["--port", PORT, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = child.map(Server) else {
        support::present("redis-server", false);
        return None;
    };
    eventually(10, "the test's Redis to listen", || std::net::TcpStream::connect(format!("127.0.0.1:{PORT}")).is_ok());
    Some(child)
}

#[test]
fn a_redis_restart_mid_burst_fails_the_burst_with_the_cause() {
    let Some(mut server) = redis() else { return };
    let dir = TempDir::new("broker-restart");
    let graph = format!("file://{}/graph", dir.0.display());
    assert!(
        volley(None, &["data", "gen", "pagerank", "--vertices", "20000", "--edges", "100000", "--to", &graph])
            .status
            .success()
    );
    let p = Platform::up(&["--redis-url", &format!("redis://127.0.0.1:{PORT}/")]);
    // Iterates (one all_reduce over Redis each time) until stopped.
    let params = serde_json::json!({"input": graph, "output": format!("file://{}/out", dir.0.display()),
        "vertices": 20000, "tolerance": 0.0, "max_iterations": 1_000_000});
    let body = serde_json::json!({"function": "pagerank", "workers": 4, "granularity": 2, "transport": "redis",
        "params": params, "timeout_secs": 300});
    let (status, burst) = p.post("/v1/bursts", &body.to_string());
    assert_eq!(status, 201, "{burst}");
    let id = burst["id"].as_str().unwrap().to_string();
    p.wait_state(&id, "running", 30);
    std::thread::sleep(Duration::from_millis(300));

    server.kill();
    let restarted = Instant::now();
    let _server = redis().expect("Redis starts again");
    let burst = p.wait(&id, 120);
    assert_eq!(burst["state"], "failed", "{burst}");
    let error = burst["error"].as_str().unwrap().to_lowercase();
    eprintln!("Redis restarted: the burst failed {:?} after the restart with: {error}", restarted.elapsed());
    assert!(error.contains("redis"), "the error names the broker: {error}");
    // Long before the burst's own timeout (300 s): the loose bound is for a shared machine.
    assert!(restarted.elapsed() < Duration::from_secs(120), "{:?}", restarted.elapsed());
    let listed = json_ok(&p.cli(&["bursts", "list", "--output", "json"]));
    assert_eq!(listed[0]["state"], "failed");
}
