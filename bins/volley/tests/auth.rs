//! API keys: each key is a namespace; bursts and deployed functions of one
//! namespace are invisible to another; invokers need the cluster's token.

use volley_testkit as support;

use std::process::Command;

use support::{Platform, TempDir, http_as, stderr};

const KEY_A: &str = "team-a-key-0123456789abcdef0123456789";
const KEY_B: &str = "team-b-key-9876543210fedcba9876543210";
const TOKEN: &str = "cluster-token-0000000000000000000000";

fn platform(dir: &TempDir) -> Platform {
    let keys = dir.0.join("keys");
    std::fs::write(&keys, format!("# namespace key\nteam-a {KEY_A}\nteam-b {KEY_B}\n")).unwrap();
    std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    Platform::up(&["--api-keys", keys.to_str().unwrap(), "--invoker-token", TOKEN])
}

#[test]
fn keys_are_required_and_scope_what_each_tenant_sees() {
    let dir = TempDir::new("keys");
    let p = platform(&dir);
    let body = r#"{"function":"hello","workers":2}"#;

    let (status, answer) = http_as(None, &p.url, "POST", "/v1/bursts", body);
    assert_eq!((status, answer["error"]["code"].as_str()), (401, Some("unauthorized")), "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("VOLLEY_API_KEY"));
    let (status, _) = http_as(Some("not-a-key-at-all-xx-000000000000000"), &p.url, "POST", "/v1/bursts", body);
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
    let (status, _) = http_as(Some(TOKEN), &p.url, "POST", "/v1/invokers", reg);
    assert_eq!(status, 200);

    // The document says which secret each operation needs.
    let (_, doc) = http_as(None, &p.url, "GET", "/v1/openapi.json", "");
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert!(schemes.contains_key("api_key") && schemes.contains_key("invoker_token"), "{doc}");
    assert_eq!(doc["paths"]["/v1/bursts"]["post"]["security"][0]["api_key"], serde_json::json!([]));
    assert_eq!(doc["paths"]["/v1/invokers"]["post"]["security"][0]["invoker_token"], serde_json::json!([]));
    assert!(doc["paths"]["/healthz"]["get"].get("security").is_none());
    assert!(doc["paths"]["/metrics"]["get"].get("security").is_none(), "no metrics key here");
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

#[test]
fn a_controller_beyond_loopback_refuses_plain_http_unless_told() {
    let dir = TempDir::new("plain");
    let keys = dir.0.join("keys");
    std::fs::write(&keys, format!("team-a {KEY_A}\n")).unwrap();
    std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let token = "plain-test-token-000000000000000000000";
    let base = ["controller", "--listen", "0.0.0.0:0", "--api-keys", keys.to_str().unwrap(), "--invoker-token", token];
    let out = Command::new(support::volley_exe())
        .args(base)
        .args(["--data-dir", dir.0.to_str().unwrap()])
        .env_remove("VOLLEY_TLS_CERT")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(said.contains("in plain HTTP") && said.contains("--tls-cert FILE --tls-key FILE"), "{said}");
    // Told so, it serves (on every interface; its URL is loopback's).
    let mut args = base.to_vec();
    args.push("--insecure-plain-http");
    let (_controller, line) = support::Role::start(&args, &dir.0.join("served"), "listening on ");
    assert!(line.contains("http://127.0.0.1:"), "{line}");
}

/// `volley up` with a key file and `ARGS`, its data directory kept by the caller.
fn up_with_keys(dir: &TempDir, args: &[&str]) -> Platform {
    let keys = dir.0.join("keys");
    std::fs::write(&keys, format!("team-a {KEY_A}\nteam-b {KEY_B}\n")).unwrap();
    std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut all = vec!["--api-keys", keys.to_str().unwrap()];
    all.extend_from_slice(args);
    Platform::up_in(&dir.0.join("data"), &all)
}

#[test]
fn invoker_registration_needs_a_token_whenever_keys_are_set() {
    // No --invoker-token: registration used to be open to anyone on loopback,
    // and a rogue "invoker" then received every tenant's packs with their secrets.
    let dir = TempDir::new("token");
    let p = up_with_keys(&dir, &[]);
    let reg = r#"{"name":"rogue","host":"127.0.0.1","slots":100000,"memory_mb":100000}"#;
    let (status, answer) = http_as(None, &p.url, "POST", "/v1/invokers", reg);
    assert_eq!(status, 401, "{answer}");
    let (status, _) = http_as(Some(KEY_A), &p.url, "POST", "/v1/invokers", reg);
    assert_eq!(status, 401, "a tenant key is not an invoker token");
    // The local invoker got a generated token, kept for the owner's eyes only.
    let file = dir.0.join("data/invoker-token");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert!(token.len() >= 32, "{token}");
    let (status, burst) = http_as(Some(KEY_A), &p.url, "POST", "/v1/bursts", r#"{"function":"hello","workers":2}"#);
    assert_eq!(status, 201, "{burst}");
    let id = burst["id"].as_str().unwrap();
    let (_, done) = http_as(Some(KEY_A), &p.url, "GET", &format!("/v1/bursts/{id}/wait?timeout_ms=20000"), "");
    assert_eq!(done["state"], "succeeded", "the local invoker joined with the generated token: {done}");
    let (status, _) = http_as(Some(&token), &p.url, "POST", "/v1/invokers", reg);
    assert_eq!(status, 200, "the generated token is the invoker token");
    drop(p);
    // A restart on the same data directory keeps the token.
    let p = up_with_keys(&dir, &[]);
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);
    drop(p);
}

#[test]
fn a_pack_gets_only_its_own_transports_credentials() {
    let dir = TempDir::new("spec");
    let p = up_with_keys(&dir, &["--invoker-token", TOKEN]);
    // A second invoker with more room than the local one gets the packs: read what it is sent.
    let reg = r#"{"name":"inspector","host":"127.0.0.1","slots":100000,"memory_mb":1000000}"#;
    let (status, registered) = http_as(Some(TOKEN), &p.url, "POST", "/v1/invokers", reg);
    assert_eq!(status, 200, "{registered}");
    let invoker = registered["invoker_id"].as_str().unwrap().to_string();
    let spec_of = |transport: &str| -> serde_json::Value {
        let body = format!(r#"{{"function":"hello","workers":2,"granularity":1,"transport":"{transport}"}}"#);
        let (status, burst) = http_as(Some(KEY_A), &p.url, "POST", "/v1/bursts", &body);
        assert_eq!(status, 201, "{burst}");
        let id = burst["id"].as_str().unwrap().to_string();
        // A poll may first return the cancel of the previous burst, or come before
        // the placement is saved (a pack starts only once it is): poll until this
        // burst's pack arrives.
        let path = format!("/v1/invokers/{invoker}/commands?wait_ms=2000");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut seen = Vec::new();
        let start = loop {
            let (status, commands) = http_as(Some(TOKEN), &p.url, "GET", &path, "");
            assert_eq!(status, 200, "{commands}");
            let found = commands
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "start_pack" && c["burst"] == id.as_str())
                .cloned();
            seen.push(commands);
            if let Some(start) = found {
                break start;
            }
            assert!(std::time::Instant::now() < deadline, "no start_pack for {id} in {seen:?}");
        };
        http_as(Some(KEY_A), &p.url, "POST", &format!("/v1/bursts/{id}/cancel"), "");
        start
    };
    let redis = spec_of("redis");
    assert_eq!(redis["transport"]["name"], "redis", "{redis}");
    assert!(redis["transport"]["options"]["url"].as_str().unwrap().starts_with("redis://"));
    let text = redis.to_string();
    assert!(!text.contains("guest:guest"), "a Redis pack sees no AMQP credentials: {text}");
    assert!(!text.contains("nats://"), "nor other brokers: {text}");
    assert!(
        !text.contains("volley-secret"),
        "nor the S3 secret, which a burst without s3:// params does not need: {text}"
    );
    let tcp = spec_of("tcp").to_string();
    assert!(!tcp.contains("redis://") && !tcp.contains("guest:guest"), "a tcp pack needs no broker: {tcp}");
}

#[test]
fn configurations_that_weaken_auth_are_refused_at_start() {
    let dir = TempDir::new("weak");
    let start = |keys: &str, extra: &[&str]| {
        let file = dir.0.join("keys");
        std::fs::write(&file, keys).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let mut args = vec!["controller", "--listen", "127.0.0.1:0", "--api-keys", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = Command::new(support::volley_exe())
            .args(&args)
            .arg("--data-dir")
            .arg(dir.0.join("data"))
            .env_remove("VOLLEY_INVOKER_TOKEN")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} started");
        stderr(&out)
    };
    let err = start("team-a short-key\n", &["--invoker-token", TOKEN]);
    assert!(err.contains("at least 32"), "{err}");
    let err = start(&format!("team-a {KEY_A}\nteam-b {KEY_A}\n"), &["--invoker-token", TOKEN]);
    assert!(err.contains("already the key of namespace \"team-a\""), "{err}");
    let err = start(&format!("team-a {KEY_A}\n"), &["--invoker-token", KEY_A]);
    assert!(err.contains("invoker token is also an API key"), "{err}");
    let err = start(&format!("team-a {KEY_A}\n"), &["--invoker-token", "short"]);
    assert!(err.contains("invoker token has 5 characters"), "{err}");
    let err = start(&format!("team-a {KEY_A}\n"), &["--invoker-token", TOKEN, "--metrics-key", TOKEN]);
    assert!(err.contains("equals the invoker token"), "{err}");
}

#[test]
fn a_key_file_others_can_read_is_warned_about() {
    let dir = TempDir::new("mode");
    let keys = dir.0.join("keys");
    std::fs::write(&keys, format!("team-a {KEY_A}\n")).unwrap();
    std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let p = Platform::up(&["--api-keys", keys.to_str().unwrap(), "--invoker-token", TOKEN]);
    let log = p.role.log.lock().unwrap().clone();
    assert!(log.contains("readable by other users (mode 644)") && log.contains("chmod 600"), "{log}");
}

#[test]
fn metrics_can_require_a_key_and_never_name_tenants() {
    let dir = TempDir::new("metrics");
    let metrics_key = "metrics-key-000000000000000000000000000";
    let p = up_with_keys(&dir, &["--invoker-token", TOKEN, "--metrics-key", metrics_key]);
    let mut ids = Vec::new();
    for key in [KEY_A, KEY_B] {
        let body = r#"{"function":"hello","workers":2}"#;
        let (status, burst) = http_as(Some(key), &p.url, "POST", "/v1/bursts", body);
        assert_eq!(status, 201, "{burst}");
        ids.push(burst["id"].as_str().unwrap().to_string());
    }
    let (status, answer) = http_as(None, &p.url, "GET", "/metrics", "");
    assert_eq!((status, answer["error"]["code"].as_str()), (401, Some("unauthorized")), "{answer}");
    let (status, _) = http_as(Some(KEY_A), &p.url, "GET", "/metrics", "");
    assert_eq!(status, 401, "a tenant key does not open the metrics");
    let (status, text) = http_as(Some(metrics_key), &p.url, "GET", "/metrics", "");
    assert_eq!(status, 200);
    let text = text.as_str().unwrap().to_string();
    assert!(text.contains("volley_bursts_submitted_total 2"), "{text}");
    for tenant_data in ["team-a", "team-b", "hello", &ids[0], &ids[1]] {
        assert!(!text.contains(tenant_data), "{tenant_data} in the metrics:\n{text}");
    }
}

#[test]
fn idle_connections_from_one_host_do_not_shut_others_out_of_https() {
    let dir = TempDir::new("tls-flood");
    let certs = dir.0.join("certs");
    let made =
        Command::new(support::volley_exe()).args(["certificates", "--out", certs.to_str().unwrap()]).output().unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let (cert, key) = (certs.join("controller.crt"), certs.join("controller.key"));
    let args = [
        "controller",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    let (_controller, line) = support::Role::start(&args, &dir.0.join("data"), "listening on ");
    let url = line.split("listening on ").nth(1).unwrap().trim().to_string();
    let addr: std::net::SocketAddr = url.trim_start_matches("https://").parse().unwrap();
    // 300 connections from another loopback address that never start their handshake.
    let idle: Vec<std::net::TcpStream> = (0..300)
        .filter_map(|_| {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
            socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 2], 0)).into()).ok()?;
            socket.connect(&addr.into()).ok()?;
            Some(socket.into())
        })
        .collect();
    assert!(idle.len() >= 100, "only {} idle connections could be made", idle.len());
    // A client from elsewhere is still served.
    let (status, body) = support::http_trusting(Some(&certs.join("ca.crt")), None, &url, "GET", "/healthz", "");
    assert_eq!(status, 200, "{body}");
    drop(idle);
}
