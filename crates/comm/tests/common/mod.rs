//! Helpers shared by the comm crate's test files.

use std::time::Duration;

/// The Redis the tests use (`VOLLEY_REDIS_URL` or the local one), or None
/// (skipped with a notice) when it is down outside CI; with CI=true it must be up.
pub fn redis_url() -> Option<String> {
    let url = std::env::var("VOLLEY_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let client = redis::Client::open(url.as_str()).expect("a Redis URL");
    match client.get_connection_with_timeout(Duration::from_secs(2)) {
        Ok(_) => Some(url),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("Redis at {url}: {e}; CI=true requires it"),
        Err(e) => {
            eprintln!("SKIPPED: Redis at {url}: {e}");
            None
        }
    }
}
