//! Object storage that goes away under a running job: the burst fails with the
//! object named, in seconds, and leaves no output that looks complete. Uses an
//! S3-compatible server of its own (not the shared one), which it kills.

use volley_testkit as support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Platform, Server, TempDir, eventually, stderr, volley};

const PORT: &str = "9911";

/// The s3s-fs binary scripts/services installs.
fn s3s_fs() -> Option<PathBuf> {
    let cache = std::env::var("VOLLEY_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/volley"));
    let exe = cache.join("tools/bin/s3s-fs");
    support::present(&format!("s3s-fs at {}", exe.display()), exe.exists()).then_some(exe)
}

fn start_server(exe: &PathBuf, root: &std::path::Path) -> Server {
    let child = Command::new(exe)
        .args(["--host", "127.0.0.1", "--port", PORT, "--access-key", "volley", "--secret-key", "volley-secret"])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("s3s-fs starts");
    let server = Server(child);
    eventually(10, "the test's S3 server to listen", || {
        std::net::TcpStream::connect(format!("127.0.0.1:{PORT}")).is_ok()
    });
    server
}

#[test]
fn storage_that_goes_away_mid_job_fails_the_burst_with_the_object_named() {
    let Some(exe) = s3s_fs() else { return };
    let dir = TempDir::new("storage-outage");
    let root = dir.0.join("s3");
    std::fs::create_dir_all(root.join("volley-test")).unwrap();
    let mut server = start_server(&exe, &root);
    let endpoint = format!("http://127.0.0.1:{PORT}");

    let input = "s3://volley-test/outage/in";
    let gen_args = ["data", "gen", "terasort", "--records", "300000", "--parts", "4", "--to", input];
    let out = volley(None, &[&gen_args[..], &["--s3-endpoint", &endpoint]].concat());
    assert!(out.status.success(), "{}", stderr(&out));

    let p = Platform::up(&["--s3-endpoint", &endpoint, "--warm-pool", "0"]);
    let params = serde_json::json!({"input": input, "output": "s3://volley-test/outage/out"});
    let body = serde_json::json!({"function": "terasort", "workers": 4, "granularity": 2, "params": params,
        "timeout_secs": 300});
    let (status, burst) = p.post("/v1/bursts", &body.to_string());
    assert_eq!(status, 201, "{burst}");
    let id = burst["id"].as_str().unwrap().to_string();
    p.wait_state(&id, "running", 30);
    // Frozen first, so that the job cannot finish in the moment before it dies.
    unsafe {
        libc::kill(server.0.id() as i32, libc::SIGSTOP);
    }
    std::thread::sleep(Duration::from_millis(200));
    server.kill();
    let gone = Instant::now();

    let burst = p.wait(&id, 120);
    assert_eq!(burst["state"], "failed", "{burst}");
    let error = burst["error"].as_str().unwrap();
    eprintln!("storage gone: the burst failed {:?} later with: {error}", gone.elapsed());
    assert!(error.contains("s3://volley-test/outage/"), "the error names the object: {error}");
    // Long before the burst's own timeout (300 s); loose because the machine is shared.
    assert!(gone.elapsed() < Duration::from_secs(120), "{:?}", gone.elapsed());
    // Nothing looks complete: the success marker was never written.
    assert!(!root.join("volley-test/outage/out/_SUCCESS").exists());

    // Back again: the output is not taken for complete, and the same job then succeeds.
    let _server = start_server(&exe, &root);
    let validate = || {
        let args = ["data", "validate", "terasort", "--input", input, "--sorted", "s3://volley-test/outage/out"];
        volley(None, &[&args[..], &["--s3-endpoint", &endpoint]].concat())
    };
    assert!(stderr(&validate()).contains("_SUCCESS marker"), "{}", stderr(&validate()));
    let (_, again) = p.post("/v1/bursts", &body.to_string());
    let again = p.wait(again["id"].as_str().unwrap(), 120);
    assert_eq!(again["state"], "succeeded", "{again}");
    assert!(validate().status.success(), "{}", stderr(&validate()));
}
