//! The services tests talk to: reachable, or the test is skipped with a
//! notice on a developer machine; with CI=true a missing service fails it.

/// Whether a service needed by a test is reachable; with CI=true it must be.
pub fn service_up(name: &str, addr: &str) -> bool {
    present(&format!("{name} on {addr}"), std::net::TcpStream::connect(addr).is_ok())
}

/// The one check every test makes of what it needs (a service, a tool): with
/// CI=true, `ok` must hold; otherwise a missing `what` skips the test with a notice.
pub fn present(what: &str, ok: bool) -> bool {
    if !ok {
        assert!(!ci(), "CI=true needs {what} (scripts/services starts or installs it)");
        eprintln!("SKIPPED: no {what} here (scripts/services starts or installs it)");
    }
    ok
}

/// Whether CI=true (a missing service must fail the test, not skip it).
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The Redis the tests use (`VOLLEY_REDIS_URL` or the local one), if it is up.
pub fn redis_url() -> Option<String> {
    let url = std::env::var("VOLLEY_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let addr = url.trim_start_matches("redis://").split('/').next().unwrap_or("127.0.0.1:6379").to_string();
    service_up("Redis", &addr).then_some(url)
}

/// Whether the local PostgreSQL is up.
pub fn postgres_up() -> bool {
    service_up("PostgreSQL", "127.0.0.1:5432")
}
