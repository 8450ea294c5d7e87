//! API keys: each key is a namespace; bursts and deployed functions of one
//! namespace are invisible to another; invokers need the cluster's token.

mod support;

use std::process::Command;

use support::{Platform, TempDir, http_as, stderr};

const KEY_A: &str = "team-a-key-0123456789";
const KEY_B: &str = "team-b-key-9876543210";

fn platform(dir: &TempDir) -> Platform {
    let keys = dir.0.join("keys");
    std::fs::write(&keys, format!("# namespace key\nteam-a {KEY_A}\nteam-b {KEY_B}\n")).unwrap();
    Platform::up(&["--api-keys", keys.to_str().unwrap(), "--invoker-token", "cluster-token-000000"])
}

#[test]
fn keys_are_required_and_scope_what_each_tenant_sees() {
    let dir = TempDir::new("keys");
    let p = platform(&dir);
    let body = r#"{"function":"hello","workers":2}"#;

    let (status, answer) = http_as(None, &p.url, "POST", "/v1/bursts", body);
    assert_eq!((status, answer["error"]["code"].as_str()), (401, Some("unauthorized")), "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("VOLLEY_API_KEY"));
    let (status, _) = http_as(Some("not-a-key-at-all-xx"), &p.url, "POST", "/v1/bursts", body);
    assert_eq!(status, 401);

    let (status, burst) = http_as(Some(KEY_A), &p.url, "POST", "/v1/bursts", body);
    assert_eq!(status, 201, "{burst}");
    assert_eq!(burst["namespace"], "team-a");
    let id = burst["id"].as_str().unwrap();
    let (_, done) = http_as(Some(KEY_A), &p.url, "GET", &format!("/v1/bursts/{id}/wait?timeout_ms=20000"), "");
    assert_eq!(done["state"], "succeeded", "{done}");

    let (status, _) = http_as(Some(KEY_B), &p.url, "GET", &format!("/v1/bursts/{id}"), "");
    assert_eq!(status, 404, "another tenant's burst does not exist for team-b");
    let (status, _) = http_as(Some(KEY_B), &p.url, "POST", &format!("/v1/bursts/{id}/cancel"), "");
    assert_eq!(status, 404);
    let (_, list) = http_as(Some(KEY_B), &p.url, "GET", "/v1/bursts", "");
    assert_eq!(list.as_array().unwrap().len(), 0);
    let (_, list) = http_as(Some(KEY_A), &p.url, "GET", "/v1/bursts", "");
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Deployed functions belong to the deployer's namespace (the CLI takes the key from --api-key).
    let script = dir.0.join("noop");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    let deploy = |key: &str| {
        Command::new(support::volley_exe())
            .args(["--controller", &p.url, "--api-key", key, "deploy", "noop", script.to_str().unwrap()])
            .env_remove("VOLLEY_API_KEY")
            .output()
            .unwrap()
    };
    let out = deploy(KEY_A);
    assert!(out.status.success(), "{}", stderr(&out));
    let names = |key: &str| {
        let (_, list) = http_as(Some(key), &p.url, "GET", "/v1/functions", "");
        list.as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert!(names(KEY_A).contains(&"noop".to_string()));
    assert!(!names(KEY_B).contains(&"noop".to_string()), "team-b does not see team-a's function");
    let (status, answer) = http_as(Some(KEY_B), &p.url, "POST", "/v1/bursts", r#"{"function":"noop","workers":1}"#);
    assert_eq!(status, 404, "{answer}");

    // Invoker endpoints need the cluster token, not a tenant key.
    let reg = r#"{"name":"rogue","host":"127.0.0.1","slots":4,"memory_mb":100}"#;
    let (status, _) = http_as(Some(KEY_A), &p.url, "POST", "/v1/invokers", reg);
    assert_eq!(status, 401, "a tenant cannot pose as an invoker");
    let (status, _) = http_as(Some("cluster-token-000000"), &p.url, "POST", "/v1/invokers", reg);
    assert_eq!(status, 200);
}

#[test]
fn a_controller_beyond_loopback_refuses_to_start_without_keys() {
    let dir = TempDir::new("open");
    let out = Command::new(support::volley_exe())
        .args(["controller", "--listen", "0.0.0.0:0", "--data-dir", dir.0.to_str().unwrap()])
        .env_remove("VOLLEY_API_KEYS_FILE")
        .env_remove("VOLLEY_INVOKER_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("beyond loopback: give it API keys"), "{}", stderr(&out));
}
