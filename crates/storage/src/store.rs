//! The storage handle: one bucket (or directory) and a key prefix.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart};

use crate::error::{Error, Result};

/// Settings for `s3://` URLs; anything left out comes from the `AWS_*` environment variables.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StorageOptions {
    /// `http://host:port` of an S3-compatible service (plain HTTP is allowed for `http://`).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
}

/// A place objects live: `file:///dir` or `s3://bucket/prefix`. Cheap to clone;
/// clones share the byte counters.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// The URL it was opened with, to name objects in errors.
    url: String,
    prefix: String,
    /// The directory of a `file://` storage (where unfinished writes are looked for).
    local_dir: Option<std::path::PathBuf>,
    pulled: Arc<AtomicU64>,
    pushed: Arc<AtomicU64>,
    notice: Option<WriteNotice>,
}

/// Told the local directory before every write to it (see [`Storage::with_write_notice`]).
pub type WriteNotice = Arc<dyn Fn(&std::path::Path) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// A service that went away fails a burst in seconds, not minutes: a few
/// retries ride out a blip (object_store's default retries for three minutes).
const RETRIES: usize = 3;
const RETRY_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

fn retry_policy() -> RetryConfig {
    RetryConfig { max_retries: RETRIES, retry_timeout: RETRY_TIMEOUT, ..RetryConfig::default() }
}

/// Parts of a multipart write in flight at once.
const UPLOAD_CONCURRENCY: usize = 8;

impl Storage {
    /// Opens `url`: `file:///abs/dir`, a plain directory path, or `s3://bucket[/prefix]`.
    /// A local directory is created if missing.
    pub fn open(url: &str, opts: &StorageOptions) -> Result<Storage> {
        let bad = |why: &str| Error::Url { url: url.into(), why: why.into() };
        let mut local_dir = None;
        let (store, prefix): (Arc<dyn ObjectStore>, String) = if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket: write s3://BUCKET/PREFIX"));
            }
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry_policy())
                .with_client_options(ClientOptions::new().with_connect_timeout(CONNECT_TIMEOUT));
            if let Some(endpoint) = &opts.endpoint {
                b = b.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
            }
            if let Some(region) = &opts.region {
                b = b.with_region(region);
            }
            if let (Some(k), Some(s)) = (&opts.access_key, &opts.secret_key) {
                b = b.with_access_key_id(k).with_secret_access_key(s);
            }
            let store = b.build().map_err(|e| bad(&format!("bad S3 settings: {e}")))?;
            (Arc::new(store), prefix.trim_matches('/').to_string())
        } else {
            let dir = url.strip_prefix("file://").unwrap_or(url);
            if dir.is_empty() || url.contains("://") && !url.starts_with("file://") {
                return Err(bad("use file:///absolute/dir, a directory path, or s3://bucket/prefix"));
            }
            std::fs::create_dir_all(dir)
                .map_err(|e| bad(&crate::error::with_sandbox_hint(format!("cannot create the directory: {e}"))))?;
            let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| bad(&e.to_string()))?;
            local_dir = Some(std::path::PathBuf::from(dir));
            (Arc::new(store), String::new())
        };
        Ok(Storage {
            store,
            url: url.trim_end_matches('/').to_string(),
            prefix,
            local_dir,
            pulled: Arc::default(),
            pushed: Arc::default(),
            notice: None,
        })
    }

    /// Awaits `notice(dir)` before each write to a local directory: a platform
    /// learns where a process may leave unfinished writes if it is killed, and
    /// can remove them (see [`remove_staging_files`]) once it is gone.
    pub fn with_write_notice(mut self, notice: WriteNotice) -> Self {
        self.notice = Some(notice);
        self
    }

    async fn announce_write(&self) {
        if let (Some(dir), Some(notice)) = (&self.local_dir, &self.notice) {
            notice(dir).await;
        }
    }

    fn path(&self, key: &str) -> Path {
        let key = key.trim_start_matches('/');
        if self.prefix.is_empty() { Path::from(key) } else { Path::from(format!("{}/{key}", self.prefix)) }
    }

    /// The object's full name, for messages.
    pub fn name(&self, key: &str) -> String {
        format!("{}/{}", self.url, key.trim_start_matches('/'))
    }

    /// The object's size in bytes.
    pub async fn size(&self, key: &str) -> Result<u64> {
        let meta = self.store.head(&self.path(key)).await.map_err(|e| Error::from_store(&self.name(key), e))?;
        Ok(meta.size)
    }

    /// The whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes> {
        let result = self.store.get(&self.path(key)).await.map_err(|e| Error::from_store(&self.name(key), e))?;
        let bytes = result.bytes().await.map_err(|e| Error::from_store(&self.name(key), e))?;
        self.pulled.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }

    /// Bytes `range` of the object (the range must lie inside it).
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let bytes =
            self.store.get_range(&self.path(key), range).await.map_err(|e| Error::from_store(&self.name(key), e))?;
        self.pulled.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }

    /// Writes the whole object at once; readers see the old object or the new one, never a part.
    pub async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.announce_write().await;
        let len = data.len() as u64;
        self.store
            .put(&self.path(key), PutPayload::from(data))
            .await
            .map_err(|e| Error::from_store(&self.name(key), e))?;
        self.pushed.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    /// A multipart writer for a large object: it appears only when [`Writer::finish`] succeeds.
    pub async fn writer(&self, key: &str) -> Result<Writer> {
        self.announce_write().await;
        let upload =
            self.store.put_multipart(&self.path(key)).await.map_err(|e| Error::from_store(&self.name(key), e))?;
        Ok(Writer {
            inner: Some(WriteMultipart::new(upload)),
            name: self.name(key),
            written: 0,
            pushed: self.pushed.clone(),
        })
    }

    /// Removes what writers killed mid-write left behind, and returns how many.
    /// On local files those are the staging files (`KEY#N`) that a put or a
    /// multipart write renames into place when it finishes; readers never see
    /// them, but they take space. On S3 a single put leaves nothing, and an
    /// unfinished multipart upload is invisible and expires by the bucket's
    /// lifecycle rules, so there is nothing to do.
    pub async fn remove_incomplete(&self) -> Result<usize> {
        let Some(dir) = self.local_dir.clone() else { return Ok(0) };
        let name = self.name("");
        tokio::task::spawn_blocking(move || remove_staging_files(&dir))
            .await
            .map_err(|e| Error::Storage { object: name.clone(), message: e.to_string() })?
            .map_err(|e| Error::Storage { object: name, message: format!("removing unfinished writes: {e}") })
    }

    /// Keys (relative to this storage) and sizes of the objects under `prefix`, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let base = self.path(prefix);
        let strip = if self.prefix.is_empty() { 0 } else { self.prefix.len() + 1 };
        let found: Vec<_> =
            self.store.list(Some(&base)).try_collect().await.map_err(|e| Error::from_store(&self.name(prefix), e))?;
        let mut out: Vec<(String, u64)> =
            found.into_iter().map(|m| (m.location.as_ref().get(strip..).unwrap_or("").to_string(), m.size)).collect();
        out.sort();
        Ok(out)
    }

    /// Deletes the object (deleting a missing object is not an error).
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::from_store(&self.name(key), e)),
        }
    }

    /// Bytes read from storage through this handle (and its clones).
    pub fn pulled_bytes(&self) -> u64 {
        self.pulled.load(Ordering::Relaxed)
    }

    /// Bytes written to storage through this handle (and its clones).
    pub fn pushed_bytes(&self) -> u64 {
        self.pushed.load(Ordering::Relaxed)
    }
}

/// A large object being written in parts. Dropped without [`finish`](Writer::finish),
/// or after [`abort`](Writer::abort), the object does not appear.
pub struct Writer {
    inner: Option<WriteMultipart>,
    name: String,
    written: u64,
    pushed: Arc<AtomicU64>,
}

impl Writer {
    /// Appends `data` (parts are uploaded in the background, a few at a time).
    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        let inner = self.inner.as_mut().ok_or_else(|| Error::Storage {
            object: self.name.clone(),
            message: "the writer was already finished".into(),
        })?;
        inner.wait_for_capacity(UPLOAD_CONCURRENCY).await.map_err(|e| Error::from_store(&self.name, e))?;
        inner.write(data);
        self.written += data.len() as u64;
        Ok(())
    }

    /// Commits the object: it appears whole, now.
    pub async fn finish(mut self) -> Result<u64> {
        let inner = self.inner.take().ok_or_else(|| Error::Storage {
            object: self.name.clone(),
            message: "the writer was already finished".into(),
        })?;
        inner.finish().await.map_err(|e| Error::from_store(&self.name, e))?;
        self.pushed.fetch_add(self.written, Ordering::Relaxed);
        Ok(self.written)
    }

    /// Gives up: nothing appears and the uploaded parts are discarded.
    pub async fn abort(mut self) -> Result<()> {
        match self.inner.take() {
            Some(inner) => inner.abort().await.map_err(|e| Error::from_store(&self.name, e)),
            None => Ok(()),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Never finished: discard the parts uploaded so far (in the background).
        if let (Some(inner), Ok(runtime)) = (self.inner.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(async move {
                let _ = inner.abort().await;
            });
        }
    }
}

/// Deletes `KEY#N` staging files under `dir` (N all digits: object_store's names).
/// Removes the staging files (`KEY#N`) unfinished writes left under `dir`,
/// recursively; returns how many.
pub fn remove_staging_files(dir: &std::path::Path) -> std::io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            removed += remove_staging_files(&path)?;
            continue;
        }
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let staging = name
            .rsplit_once('#')
            .is_some_and(|(key, n)| !key.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if staging {
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}
