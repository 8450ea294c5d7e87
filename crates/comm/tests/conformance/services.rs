//! The transports under test and the services they need.

use volley_comm::{RedisOptions, StreamOptions, TransportOptions};

pub fn redis_url() -> String {
    std::env::var("VOLLEY_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// Skips (returns false) when a service is missing on a developer machine; fails under CI.
fn available(name: &str, addr: &str) -> bool {
    let ok = std::net::TcpStream::connect_timeout(
        &addr.parse().expect("test service address"),
        std::time::Duration::from_secs(2),
    )
    .is_ok();
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{name} is not reachable at {addr}, and CI=true requires it");
        }
        eprintln!("SKIPPED: {name} is not reachable at {addr}; start it to run this test");
    }
    ok
}

pub fn tcp() -> Option<TransportOptions> {
    // Two connections per pack pair, and small chunks, so striping is exercised.
    Some(TransportOptions::Tcp(StreamOptions { connections: 2, chunk_bytes: 1 << 20, ..Default::default() }))
}

pub fn uds() -> Option<TransportOptions> {
    Some(TransportOptions::Uds(StreamOptions::default()))
}

pub fn redis() -> Option<TransportOptions> {
    let url = redis_url();
    let host = url.trim_start_matches("redis://").split('/').next().unwrap_or("127.0.0.1:6379").to_string();
    available("Redis", &host).then(|| {
        let mut o = RedisOptions::new(url);
        o.chunk_bytes = 256 << 10;
        TransportOptions::Redis(o)
    })
}

/// Names of the broker objects a burst still has (empty for direct transports).
pub fn leftovers(transport: &TransportOptions, burst: &str) -> Vec<String> {
    match transport {
        TransportOptions::Redis(o) => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let client = redis::Client::open(o.url.as_str()).unwrap();
                let mut conn = client.get_multiplexed_async_connection().await.unwrap();
                let mut keys: Vec<String> =
                    redis::cmd("KEYS").arg(format!("volley:{burst}:*")).query_async(&mut conn).await.unwrap();
                keys.sort();
                keys
            })
        }
        TransportOptions::Uds(o) => {
            let dir = o.bind.clone().map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
            std::fs::read_dir(dir)
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.contains(burst))
                .collect()
        }
        _ => Vec::new(),
    }
}
