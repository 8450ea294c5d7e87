//! Deployed user functions: the example crate is built, deployed and run;
//! binaries that are not Volley functions fail with a clear reason.

use volley_testkit as support;

use std::path::PathBuf;

use support::{Platform, TempDir, json_ok, stderr};

/// The example function `examples/pi`, built by the same workspace test build
/// (its own integration test makes cargo build the binary next to `volley`).
fn example_binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_volley")).parent().unwrap().join("pi");
    assert!(
        path.exists(),
        "{} is missing: run the workspace's tests (scripts/test), which build examples/pi too",
        path.display()
    );
    path
}

fn script(dir: &TempDir, name: &str, body: &str) -> String {
    let path = dir.0.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    path.display().to_string()
}

#[test]
fn a_deployed_function_runs_on_every_worker() {
    let p = Platform::up(&[]);
    let binary = example_binary();
    let out = p.cli(&["deploy", "pi", binary.to_str().unwrap(), "--description", "Monte Carlo pi"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list = json_ok(&p.cli(&["functions", "list", "--output", "json"]));
    let pi = list.as_array().unwrap().iter().find(|f| f["name"] == "pi").expect("pi is listed");
    assert_eq!(pi["kind"], "deployed");
    assert_eq!(pi["description"], "Monte Carlo pi");
    assert_eq!(pi["digest"].as_str().unwrap().len(), 64);

    let burst =
        json_ok(&p.cli(&["run", "pi", "-n", "6", "-g", "4", "--params", r#"{"samples":20000}"#, "--output", "json"]));
    assert_eq!(burst["state"], "succeeded", "{burst}");
    let estimates: Vec<f64> =
        burst["workers"].as_array().unwrap().iter().map(|w| w["result"]["pi"].as_f64().unwrap()).collect();
    assert!(estimates.windows(2).all(|w| w[0] == w[1]), "every worker has the same all_reduce result: {estimates:?}");
    assert!((estimates[0] - std::f64::consts::PI).abs() < 0.05, "{estimates:?}");

    // A failing rank of a user function fails the burst with its message.
    let out = p.cli(&["run", "pi", "-n", "4", "-g", "2", "--params", r#"{"fail_rank":2}"#]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("rank 2 was asked to fail"), "{}", stderr(&out));

    // Deleted: gone from the list, and bursts of it are refused.
    assert!(p.cli(&["functions", "delete", "pi"]).status.success());
    let out = p.cli(&["run", "pi", "-n", "2"]);
    assert!(stderr(&out).contains("unknown function \"pi\""), "{}", stderr(&out));
}

#[test]
fn binaries_that_are_not_volley_functions_fail_with_the_reason() {
    let p = Platform::up(&["--start-timeout", "2", "--warm-pool", "0"]);
    let dir = TempDir::new("scripts");
    let cases = [
        ("crash", script(&dir, "crash", "echo about to crash >&2; exit 7"), "exit status: 7"),
        ("mute", script(&dir, "mute", "sleep 60"), "did not connect to the invoker within 2s"),
    ];
    for (name, path, _) in &cases {
        let out = p.cli(&["deploy", name, path]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    for (name, _, reason) in &cases {
        let out = p.cli(&["run", name, "-n", "2", "-g", "1", "--output", "json"]);
        assert!(!out.status.success(), "{name} must fail");
        let burst: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let error = burst["error"].as_str().unwrap();
        assert!(error.contains(reason), "{name}: {error}");
    }
    let crashed = json_ok(&p.cli(&["bursts", "list", "--output", "json"]));
    assert!(crashed.as_array().unwrap().iter().any(|b| b["error"].as_str().unwrap_or("").contains("about to crash")));
    // The mute script's `sleep 60` child was stopped with it.
    support::eventually(10, "no process left", || support::children_of(p.role.pid()).is_empty());
    assert!(support::processes_with_env(&p.role.data_dir.display().to_string()).is_empty());

    // Uploads that are not executables, bad names and built-in names are refused.
    let text = dir.0.join("notes.txt");
    std::fs::write(&text, "hello").unwrap();
    let out = p.cli(&["deploy", "notes", text.to_str().unwrap()]);
    assert!(stderr(&out).contains("not an executable"), "{}", stderr(&out));
    let out = p.cli(&["deploy", "Bad Name", &cases[0].1]);
    assert!(stderr(&out).contains("must be 1 to 64 characters"), "{}", stderr(&out));
    let out = p.cli(&["deploy", "hello", &cases[0].1]);
    assert!(stderr(&out).contains("built-in"), "{}", stderr(&out));
}
