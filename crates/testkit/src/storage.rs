//! Object storage for tests: local directories and fresh prefixes on the S3
//! test server, removed afterwards.

use crate::fs::TempDir;
use crate::services::service_up;

/// The shared S3 test server (scripts/services), or None (skipped) when it is down.
pub fn s3_base(name: &str) -> Option<String> {
    if !service_up("the S3 test server", "127.0.0.1:9900") {
        return None;
    }
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    Some(format!("s3://volley-test/{name}-{:x}{:x}", t.subsec_nanos(), std::process::id()))
}

/// Runs `test` on a fresh prefix of the S3 test server (a `s3://` base URL)
/// and removes everything under it afterwards; skipped without the server
/// (outside CI).
pub fn on_s3(name: &str, test: impl FnOnce(&str)) {
    let Some(base) = s3_base(name) else { return };
    test(&base);
    remove_all(&base);
}

/// Runs `test` on a fresh local directory, given as a `file://` base URL.
pub fn on_local_dir(name: &str, test: impl FnOnce(&str)) {
    let dir = TempDir::new(name);
    test(&format!("file://{}", dir.0.display()));
}

/// Storage at `url` (file:// or the S3 test server), with the test server's credentials.
pub fn storage(url: &str) -> volley_storage::Storage {
    let opts = volley_storage::StorageOptions {
        endpoint: Some("http://127.0.0.1:9900".into()),
        region: Some("us-east-1".into()),
        access_key: Some("volley".into()),
        secret_key: Some("volley-secret".into()),
    };
    volley_storage::Storage::open(url, &opts).unwrap()
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// The whole object `key` under `url`.
pub fn read_object(url: &str, key: &str) -> Vec<u8> {
    block_on(storage(url).get(key)).unwrap_or_else(|e| panic!("reading {url}/{key}: {e}")).to_vec()
}

/// Writes object `key` under `url`.
pub fn write_object(url: &str, key: &str, data: &[u8]) {
    block_on(storage(url).put(key, bytes::Bytes::copy_from_slice(data)))
        .unwrap_or_else(|e| panic!("writing {url}/{key}: {e}"));
}

/// The objects under `url` and their sizes.
pub fn list_objects(url: &str) -> Vec<(String, u64)> {
    block_on(storage(url).list("")).unwrap_or_else(|e| panic!("listing {url}: {e}"))
}

/// Deletes every object under `url` (a test leaves the shared bucket as it found it).
pub fn remove_all(url: &str) {
    let s = storage(url);
    block_on(async {
        for (key, _) in s.list("").await.unwrap() {
            s.delete(&key).await.unwrap();
        }
        assert!(s.list("").await.unwrap().is_empty());
    });
}
