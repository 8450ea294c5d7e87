//! The transports under test and the services they need.

use volley_comm::{NatsOptions, RabbitMqOptions, RedisOptions, S3Options, StreamOptions, TransportOptions};

pub fn redis_url() -> String {
    std::env::var("VOLLEY_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// Skips (returns false) when a service is missing on a developer machine; fails under CI.
fn available(name: &str, addr: &str) -> bool {
    volley_testkit::service_up(name, addr)
}

pub fn tcp() -> Option<TransportOptions> {
    // Two connections per pack pair, and small chunks, so striping is exercised.
    Some(TransportOptions::Tcp(StreamOptions { connections: 2, chunk_bytes: 1 << 20, ..Default::default() }))
}

pub fn uds() -> Option<TransportOptions> {
    Some(TransportOptions::Uds(StreamOptions::default()))
}

/// Unix sockets, large packets through shared memory segments.
pub fn shm() -> Option<TransportOptions> {
    Some(TransportOptions::Uds(StreamOptions { shared_memory: true, ..Default::default() }))
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

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn host_of(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    rest.split('/').next().unwrap_or(rest).to_string()
}

pub fn redis_streams() -> Option<TransportOptions> {
    redis().map(|t| match t {
        TransportOptions::Redis(mut o) => {
            o.mode = volley_comm::RedisMode::Streams;
            TransportOptions::Redis(o)
        }
        other => other,
    })
}

pub fn rabbitmq() -> Option<TransportOptions> {
    let url = env_or("VOLLEY_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f");
    available("RabbitMQ", &host_of(&url)).then(|| {
        let mut o = RabbitMqOptions::new(url);
        o.chunk_bytes = 512 << 10;
        TransportOptions::RabbitMq(o)
    })
}

pub fn nats() -> Option<TransportOptions> {
    let url = env_or("VOLLEY_NATS_URL", "nats://127.0.0.1:4222");
    available("NATS", &host_of(&url)).then(|| TransportOptions::Nats(NatsOptions::new(url)))
}

/// The S3-compatible server that `scripts/services` starts (s3s-fs), or another one.
pub fn s3_options() -> S3Options {
    let mut o = S3Options::new(env_or("VOLLEY_S3_BUCKET", "volley-test"));
    o.endpoint = Some(env_or("VOLLEY_S3_ENDPOINT", "http://127.0.0.1:9900"));
    o.access_key = Some(env_or("VOLLEY_S3_ACCESS_KEY", "volley"));
    o.secret_key = Some(env_or("VOLLEY_S3_SECRET_KEY", "volley-secret"));
    o.prefix = "conformance/".into();
    o.chunk_bytes = 4 << 20;
    o
}

pub fn s3() -> Option<TransportOptions> {
    let o = s3_options();
    let endpoint = o.endpoint.clone().unwrap_or_default();
    available("the S3-compatible server (scripts/services starts one)", &host_of(&endpoint))
        .then_some(TransportOptions::S3(o))
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// Names of the broker objects a burst of `packs` packs still has (empty for direct transports).
pub fn leftovers(transport: &TransportOptions, burst: &str, packs: usize) -> Vec<String> {
    match transport {
        TransportOptions::RabbitMq(o) => block_on(async {
            use lapin::options::QueueDeclareOptions;
            let conn = lapin::Connection::connect(&o.url, Default::default()).await.unwrap();
            let mut left = Vec::new();
            for pack in 0..packs {
                let name = format!("volley.{burst}.{pack}");
                let channel = conn.create_channel().await.unwrap();
                let passive = QueueDeclareOptions { passive: true, ..Default::default() };
                if channel.queue_declare(name.as_str().into(), passive, Default::default()).await.is_ok() {
                    left.push(name);
                }
            }
            left
        }),
        TransportOptions::Nats(o) => block_on(async {
            use futures::StreamExt;
            let js = async_nats::jetstream::new(async_nats::connect(o.url.as_str()).await.unwrap());
            let names: Vec<String> = js.stream_names().filter_map(|n| async { n.ok() }).collect().await;
            let _ = packs;
            names.into_iter().filter(|n| n.contains(burst)).collect()
        }),
        TransportOptions::S3(o) => block_on(async {
            use futures::TryStreamExt;
            use object_store::ObjectStore;
            let store = object_store::aws::AmazonS3Builder::new()
                .with_bucket_name(&o.bucket)
                .with_region(&o.region)
                .with_endpoint(o.endpoint.clone().unwrap())
                .with_allow_http(true)
                .with_access_key_id(o.access_key.clone().unwrap())
                .with_secret_access_key(o.secret_key.clone().unwrap())
                .build()
                .unwrap();
            let prefix = object_store::path::Path::from(format!("{}{burst}", o.prefix));
            let objects: Vec<_> = store.list(Some(&prefix)).try_collect().await.unwrap();
            objects.into_iter().map(|m| m.location.to_string()).collect()
        }),
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
