//! Honest outcomes: a burst's error names the root cause (the pack that died,
//! with its exit status or signal), not the peer that saw the disconnect first;
//! a pack that dies after its work was committed does not fail the burst; a
//! burst killed mid-write leaves no unfinished files behind.

use volley_testkit as support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Platform, TempDir, children_of, descendants_of, eventually};

fn submit(p: &Platform, body: Value) -> String {
    let (status, burst) = p.post("/v1/bursts", &body.to_string());
    assert_eq!(status, 201, "{burst}");
    burst["id"].as_str().unwrap().to_string()
}

fn error_of(burst: &Value) -> String {
    burst["error"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_pack_that_exits_with_a_status_is_named_whatever_its_peers_saw_first() {
    let p = Platform::up(&["--warm-pool", "0"]);
    // Rank 0 ends its pack process with exit(17) in the middle of a stream of
    // barriers: the other pack's workers see its connection break (often while
    // writing to it), usually before the invoker reports the exit.
    for round in 0..8 {
        let params = json!({"seconds": 0, "barriers": 1_000_000_000u64, "exit_rank": 0, "exit_after_barriers": 200, "exit_code": 17});
        let id = submit(
            &p,
            json!({"function": "sleep", "workers": 4, "granularity": 2, "transport": "uds", "params": params}),
        );
        let burst = p.wait(&id, 30);
        assert_eq!(burst["state"], "failed", "{burst}");
        let error = error_of(&burst);
        assert!(error.starts_with("pack 0 ") && error.contains("exit status: 17"), "round {round}: {error}");
    }
}

#[test]
fn a_killed_pack_is_named_over_the_peers_that_saw_it_go() {
    let p = Platform::up(&["--warm-pool", "0"]);
    for round in 0..8 {
        // Every worker passes barriers without end (writing, so that the pack
        // processes can be told apart), until pack 0 is killed mid-stream.
        let dir = TempDir::new("killed-pack");
        let params =
            json!({"seconds": 0, "barriers": 1_000_000_000u64, "write_to": format!("file://{}", dir.0.display())});
        let body = json!({"function": "sleep", "workers": 4, "granularity": 2, "transport": "uds", "params": params});
        let id = submit(&p, body);
        p.wait_state(&id, "running", 20);
        let mut victim = None;
        eventually(20, "pack 0 to be writing", || {
            victim = process_writing(&p, &dir.0, "part-00000#");
            victim.is_some()
        });
        std::thread::sleep(Duration::from_millis(50));
        unsafe {
            libc::kill(victim.unwrap() as i32, libc::SIGKILL);
        }
        let burst = p.wait(&id, 30);
        let error = error_of(&burst);
        assert!(error.starts_with("pack 0 ") && error.contains("signal: 9"), "round {round}: {error}");
        eventually(10, "the packs to be gone", || children_of(p.role.pid()).is_empty());
    }
}

/// The pack process that has a file named `name…` open in `dir`.
fn process_writing(p: &Platform, dir: &std::path::Path, name: &str) -> Option<u32> {
    let prefix = dir.join(name).display().to_string();
    descendants_of(p.role.pid()).into_iter().find(|pid| {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten();
        fds.filter_map(|fd| std::fs::read_link(fd.path()).ok()).any(|l| l.display().to_string().starts_with(&prefix))
    })
}

#[test]
fn a_pack_that_dies_after_its_workers_reported_does_not_fail_the_burst() {
    let p = Platform::up(&["--warm-pool", "0"]);
    // Pack 0's workers report at once; its process dies (exit 17) while it waits
    // to say goodbye to pack 1, whose workers are still busy for a second.
    let params = json!({"exit_rank_after_result": 0, "exit_code": 17});
    let worker_params = json!([{"seconds": 0}, {"seconds": 0}, {"seconds": 1}, {"seconds": 1}]);
    let body =
        json!({"function": "sleep", "workers": 4, "granularity": 2, "params": params, "worker_params": worker_params});
    let id = submit(&p, body);
    let burst = p.wait(&id, 30);
    assert_eq!(burst["state"], "succeeded", "every worker reported its result: {burst}");
    let notes = burst["notes"].to_string();
    // The pack may have exited before or after its goodbye: its own exit is noted either way.
    assert!(notes.contains("pack 0") && notes.contains("exit status: 17"), "{notes}");
    assert!(notes.contains("after all its workers had reported"), "{notes}");
}

fn unfinished(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains('#'))
        .collect()
}

#[test]
fn a_burst_killed_mid_write_leaves_no_unfinished_files() {
    let p = Platform::up(&["--warm-pool", "0"]);
    for how in ["sigkill", "cancel"] {
        let out = TempDir::new(&format!("midwrite-{how}"));
        let url = format!("file://{}", out.0.display());
        let id = submit(
            &p,
            json!({"function": "sleep", "workers": 2, "granularity": 2,
                                   "params": {"seconds": 60, "write_to": url}}),
        );
        eventually(20, "both writes to be under way", || unfinished(&out.0).len() == 2);
        match how {
            "sigkill" => {
                for pid in children_of(p.role.pid()) {
                    unsafe {
                        libc::kill(pid as i32, libc::SIGKILL);
                    }
                }
            }
            _ => {
                p.post(&format!("/v1/bursts/{id}/cancel"), "");
            }
        }
        let burst = p.wait(&id, 30);
        assert_ne!(burst["state"], "succeeded", "{burst}");
        // Removed before the pack's end was reported, so by the time the burst is final.
        assert_eq!(unfinished(&out.0), Vec::<String>::new(), "{how}: {burst}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
