//! One suite, two backends: the local filesystem and a real S3-compatible
//! server (s3s-fs, started by scripts/services).

use std::time::Duration;

use bytes::Bytes;
use volley_comm::{Layout, LocalBurst};
use volley_storage::{Error, Storage, StorageOptions, cooperative_get};

fn unique() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    format!("{:x}{:x}", t.as_nanos() as u64, std::process::id())
}

fn local() -> (Storage, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("volley-storage-{}", unique()));
    (Storage::open(&format!("file://{}", dir.display()), &StorageOptions::default()).unwrap(), dir)
}

fn s3() -> Option<Storage> {
    let endpoint = std::env::var("VOLLEY_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9900".into());
    let addr = endpoint.trim_start_matches("http://").to_string();
    if !volley_testkit::service_up("the S3 test server", &addr) {
        return None;
    }
    let opts = StorageOptions {
        endpoint: Some(endpoint),
        region: Some("us-east-1".into()),
        access_key: Some(std::env::var("VOLLEY_S3_ACCESS_KEY").unwrap_or_else(|_| "volley".into())),
        secret_key: Some(std::env::var("VOLLEY_S3_SECRET_KEY").unwrap_or_else(|_| "volley-secret".into())),
    };
    let bucket = std::env::var("VOLLEY_S3_BUCKET").unwrap_or_else(|_| "volley-test".into());
    Some(Storage::open(&format!("s3://{bucket}/storage-test-{}", unique()), &opts).unwrap())
}

fn data(n: usize) -> Bytes {
    (0..n).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>().into()
}

async fn basics(s: &Storage) {
    let body = data(100_000);
    s.put("dir/a.bin", body.clone()).await.unwrap();
    s.put("dir/b.bin", Bytes::from_static(b"bee")).await.unwrap();
    assert_eq!(s.size("dir/a.bin").await.unwrap(), 100_000);
    assert_eq!(s.get("dir/a.bin").await.unwrap(), body);
    assert_eq!(s.get_range("dir/a.bin", 10..20).await.unwrap(), body.slice(10..20));
    assert_eq!(s.get_range("dir/a.bin", 5..5).await.unwrap(), Bytes::new());
    let listed = s.list("dir").await.unwrap();
    assert_eq!(listed, vec![("dir/a.bin".to_string(), 100_000), ("dir/b.bin".to_string(), 3)]);
    match s.get("dir/missing.bin").await {
        Err(Error::NotFound { object }) => assert!(object.ends_with("dir/missing.bin"), "{object}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let pulled = s.pulled_bytes();
    assert_eq!(pulled, 100_000 + 10, "reads are counted");
    s.delete("dir/a.bin").await.unwrap();
    s.delete("dir/a.bin").await.unwrap();
    assert!(matches!(s.size("dir/a.bin").await, Err(Error::NotFound { .. })));
    s.delete("dir/b.bin").await.unwrap();
}

/// Large writes commit atomically: nothing is visible until finish; abort leaves nothing.
async fn multipart(s: &Storage) {
    let part = data(6 << 20);
    let mut w = s.writer("big/out.bin").await.unwrap();
    w.write(&part).await.unwrap();
    w.write(&part).await.unwrap();
    w.write(b"tail").await.unwrap();
    assert!(matches!(s.size("big/out.bin").await, Err(Error::NotFound { .. })), "half-written output is invisible");
    assert_eq!(w.finish().await.unwrap(), (12 << 20) + 4);
    let back = s.get("big/out.bin").await.unwrap();
    assert_eq!(back.len(), (12 << 20) + 4);
    assert_eq!(&back[6 << 20..(6 << 20) + 100], &part[..100]);
    assert_eq!(&back[12 << 20..], b"tail");

    let mut w = s.writer("big/abandoned.bin").await.unwrap();
    w.write(&part).await.unwrap();
    w.abort().await.unwrap();
    assert!(matches!(s.size("big/abandoned.bin").await, Err(Error::NotFound { .. })));
    s.delete("big/out.bin").await.unwrap();
}

/// Every worker of a pack ends up with the whole object; the pack pulls it
/// from storage once; the pieces are shared, not copied.
fn cooperative(s: &Storage) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let body = data(1_000_003);
    runtime.block_on(s.put("coop/object.bin", body.clone())).unwrap();
    let before = s.pulled_bytes();
    let layout = Layout::new(&[3, 2]).unwrap();
    let (storage, handle) = (s.clone(), runtime.handle().clone());
    let results = LocalBurst::new(layout)
        .run(move |comm| {
            let chunks = cooperative_get(&storage, "coop/object.bin", comm, 77, &handle)
                .map_err(|e| volley_comm::Error::invalid(e.to_string()))?;
            let ptrs: Vec<usize> = chunks.0.iter().map(|c| c.as_ptr() as usize).collect();
            Ok((chunks.concat(), ptrs, comm.pack()))
        })
        .unwrap();
    for (bytes, _, _) in &results {
        assert_eq!(bytes.as_slice(), &body[..], "every worker has the whole object");
    }
    assert_eq!(s.pulled_bytes() - before, 2 * body.len() as u64, "each of the 2 packs pulled it once");
    // Within a pack, every worker holds the very same pieces (no copies).
    for pack in 0..2 {
        let views: Vec<&Vec<usize>> = results.iter().filter(|r| r.2 == pack).map(|r| &r.1).collect();
        assert!(views.windows(2).all(|w| w[0] == w[1]), "pack {pack}: {views:?}");
    }
    runtime.block_on(s.delete("coop/object.bin")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_files_pass_the_suite() {
    let (s, dir) = local();
    basics(&s).await;
    multipart(&s).await;
    let s2 = s.clone();
    tokio::task::spawn_blocking(move || cooperative(&s2)).await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn unfinished_local_writes_are_removed_and_finished_ones_kept() {
    let (s, dir) = local();
    s.put("out/part-00000", data(100)).await.unwrap();
    // What a writer killed between writing and renaming leaves: KEY#N.
    std::fs::write(dir.join("out/part-00001#3"), b"half").unwrap();
    std::fs::write(dir.join("odd#name"), b"an object whose name has a #").unwrap();
    assert_eq!(s.remove_incomplete().await.unwrap(), 1);
    assert!(!dir.join("out/part-00001#3").exists());
    assert!(dir.join("odd#name").exists() && dir.join("out/part-00000").exists());
    assert_eq!(s.remove_incomplete().await.unwrap(), 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_passes_the_suite() {
    let Some(s) = s3() else { return };
    tokio::time::timeout(Duration::from_secs(120), async {
        basics(&s).await;
        multipart(&s).await;
    })
    .await
    .expect("the S3 suite finishes");
    let s2 = s.clone();
    tokio::task::spawn_blocking(move || cooperative(&s2)).await.unwrap();
    assert!(s.list("").await.unwrap().is_empty(), "the suite leaves nothing behind");
}

#[test]
fn bad_urls_say_what_is_accepted() {
    let err = Storage::open("ftp://host/x", &StorageOptions::default()).err().unwrap().to_string();
    assert!(err.contains("file:///absolute/dir") && err.contains("s3://bucket/prefix"), "{err}");
    let err = Storage::open("s3:///prefix", &StorageOptions::default()).err().unwrap().to_string();
    assert!(err.contains("no bucket"), "{err}");
}
