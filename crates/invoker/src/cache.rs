//! The invoker's cache (ADR 0013): files a pack made once (a reference
//! genome's index) kept for the later packs of the same namespace on this
//! invoker, by a key the pack names (a digest of what the files were made
//! from). Entries live in `data_dir/cache/<scope>/<key>/`, root's and
//! read-only; a namespace's scope is a digest of its name, so one tenant
//! never opens, nor overwrites, another's entry.
//!
//! A pack never writes the cache itself: it offers a directory of its own
//! (`keep`) and the invoker copies the regular files there that the pack's
//! uid owns (a sandboxed pack cannot slip in a link to someone else's file);
//! an `open` links the entry's files into a fresh directory only the invoker
//! can change, inside the pack's cell (or, unsandboxed, under the data
//! directory), removed with the pack. The least recently opened entries go
//! when the cache outgrows its budget.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use volley_proto::pack::check_cache_name;

/// Most files one entry may hold.
const MOST_FILES: usize = 64;

/// The cache of one invoker.
pub(crate) struct Cache {
    root: PathBuf,
    /// Bytes the entries may take in all.
    budget: u64,
    /// Where unsandboxed packs' views go.
    views: PathBuf,
    next: AtomicU64,
    /// Stores and evictions one at a time (opens go on meanwhile).
    storing: Mutex<()>,
}

/// Who asks: the pack's namespace, the uid its files must belong to (a
/// sandboxed pack's; None: unsandboxed, trusted as the invoker's own user),
/// and the directory its views go in.
#[derive(Clone)]
pub(crate) struct Asker {
    pub(crate) namespace: String,
    pub(crate) uid: Option<u32>,
    pub(crate) views: PathBuf,
}

/// The files of a `keep`, opened while the pack still has them.
pub(crate) struct Offered {
    dir: PathBuf,
    files: Vec<(String, File, u64)>,
}

impl Cache {
    pub(crate) fn new(data_dir: &Path, root: Option<PathBuf>, budget: u64) -> Cache {
        let views = data_dir.join("cache-views");
        // Views of an earlier run of this invoker, whose packs are gone.
        let _ = std::fs::remove_dir_all(&views);
        Cache {
            root: root.unwrap_or_else(|| data_dir.join("cache")),
            budget,
            views,
            next: AtomicU64::new(0),
            storing: Mutex::new(()),
        }
    }

    /// The asker for a pack of `namespace`: a sandboxed one's views go in
    /// its cell (`cell_dir`, root's), an unsandboxed one's under the data directory.
    pub(crate) fn asker(&self, namespace: &str, cell: Option<(u32, &Path)>, pack: &str) -> Asker {
        match cell {
            Some((uid, dir)) => Asker { namespace: namespace.into(), uid: Some(uid), views: dir.join("cache") },
            None => Asker { namespace: namespace.into(), uid: None, views: self.views.join(pack) },
        }
    }

    fn entry(&self, namespace: &str, key: &str) -> Result<PathBuf, String> {
        check_cache_name("cache key", key)?;
        let scope: String =
            Sha256::digest(format!("namespace:{namespace}")).iter().take(16).map(|b| format!("{b:02x}")).collect();
        Ok(self.root.join(scope).join(key))
    }

    /// The entry `key` of the asker's namespace, linked into a new view
    /// directory; None when there is no such entry.
    pub(crate) fn open(&self, asker: &Asker, key: &str) -> Result<Option<PathBuf>, String> {
        let entry = self.entry(&asker.namespace, key)?;
        let names = match std::fs::read_dir(&entry) {
            Ok(names) => names,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read the cache entry {}: {e}", entry.display())),
        };
        make_dir(&asker.views, 0o711)?;
        let view = asker.views.join(format!("{}", self.next.fetch_add(1, Ordering::Relaxed)));
        // A fresh name the pack cannot have made (its cell's root is the invoker's).
        make_dir(&view, 0o755)?;
        for name in names {
            let name = name.map_err(|e| format!("cannot read the cache entry {}: {e}", entry.display()))?.file_name();
            let (from, to) = (entry.join(&name), view.join(&name));
            if std::fs::hard_link(&from, &to).is_err() {
                // (Another file system: a copy, read-only like the entry's.)
                std::fs::copy(&from, &to)
                    .and_then(|_| std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o444)))
                    .map_err(|e| format!("cannot open the cache entry {}: {e}", entry.display()))?;
            }
        }
        // Recently opened: the last to be evicted.
        let _ = File::open(&entry).and_then(|f| f.set_modified(std::time::SystemTime::now()));
        Ok(Some(view))
    }

    /// Opens the files the asker offers as an entry: the regular files
    /// directly in `dir`, owned by the asker's uid.
    pub(crate) fn offer(&self, asker: &Asker, dir: &str) -> Result<Offered, String> {
        let dir = PathBuf::from(dir);
        if !dir.is_absolute() {
            return Err(format!("{} is not an absolute path", dir.display()));
        }
        let mut files = Vec::new();
        let listing = std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for item in listing {
            let name = item.map_err(|e| format!("cannot read {}: {e}", dir.display()))?.file_name();
            let name =
                name.to_str().ok_or_else(|| format!("a file name in {} is not UTF-8", dir.display()))?.to_string();
            check_cache_name("file name", &name)?;
            if files.len() == MOST_FILES {
                return Err(format!("a cache entry holds at most {MOST_FILES} files"));
            }
            let path = dir.join(&name);
            // Not through a link, and never blocking on a FIFO.
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(&path)
                .map_err(|e| format!("cannot offer {}: {e} (only regular files, not links)", path.display()))?;
            let meta = file.metadata().map_err(|e| format!("cannot offer {}: {e}", path.display()))?;
            if !meta.is_file() {
                return Err(format!("cannot offer {}: only regular files go in the cache", path.display()));
            }
            if asker.uid.is_some_and(|uid| meta.uid() != uid) {
                return Err(format!("cannot offer {}: it is not the pack's own file", path.display()));
            }
            files.push((name, file, meta.len()));
        }
        if files.is_empty() {
            return Err(format!("{} holds no file to keep", dir.display()));
        }
        Ok(Offered { dir, files })
    }

    /// Copies the offered files in as the entry `key` (unless a pack kept it
    /// first), then evicts the least recently opened entries over the budget.
    pub(crate) fn store(&self, asker: &Asker, key: &str, offered: Offered) -> Result<(), String> {
        let entry = self.entry(&asker.namespace, key)?;
        let size: u64 = offered.files.iter().map(|(_, _, len)| len).sum();
        if size > self.budget {
            return Err(format!(
                "{} holds {size} bytes, more than the whole cache ({} bytes; the invoker's --cache-size)",
                offered.dir.display(),
                self.budget
            ));
        }
        let _one_at_a_time = self.storing.lock().unwrap_or_else(|p| p.into_inner());
        if entry.exists() {
            return Ok(());
        }
        let scope = entry.parent().unwrap_or(&self.root);
        make_dir(&self.root, 0o700)?;
        make_dir(scope, 0o700)?;
        let tmp = scope.join(format!(".{key}.tmp{:08x}", rand::random::<u32>()));
        let copied = copy_in(&tmp, offered)
            .and_then(|()| std::fs::rename(&tmp, &entry).map_err(|e| format!("cannot keep {}: {e}", entry.display())));
        if let Err(e) = copied {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        self.evict(&entry);
        Ok(())
    }

    /// Removes the least recently opened entries (never `kept`) until the
    /// cache fits its budget.
    fn evict(&self, kept: &Path) {
        let mut entries = Vec::new();
        for scope in std::fs::read_dir(&self.root).into_iter().flatten().flatten() {
            for entry in std::fs::read_dir(scope.path()).into_iter().flatten().flatten() {
                let path = entry.path();
                let used = entry.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
                let size: u64 = std::fs::read_dir(&path)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|f| f.metadata().ok())
                    .map(|m| m.len())
                    .sum();
                entries.push((used, size, path));
            }
        }
        let mut total: u64 = entries.iter().map(|(_, size, _)| size).sum();
        entries.sort();
        for (_, size, path) in entries {
            if total <= self.budget {
                break;
            }
            if path != kept {
                tracing::info!(
                    "cache: evicting {} ({size} bytes) to stay within {} bytes",
                    path.display(),
                    self.budget
                );
                let _ = std::fs::remove_dir_all(&path);
                total = total.saturating_sub(size);
            }
        }
    }
}

/// The asker's views go with its pack.
pub(crate) fn remove_views(asker: &Asker) {
    let _ = std::fs::remove_dir_all(&asker.views);
}

fn copy_in(tmp: &Path, offered: Offered) -> Result<(), String> {
    make_dir(tmp, 0o755)?;
    for (name, mut file, len) in offered.files {
        let to = tmp.join(&name);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&to)
            .map_err(|e| format!("cannot write {}: {e}", to.display()))?;
        let copied = std::io::copy(&mut std::io::Read::take(&mut file, len), &mut out)
            .map_err(|e| format!("cannot copy {}/{name} into the cache: {e}", offered.dir.display()))?;
        if copied != len {
            return Err(format!("{}/{name} changed while it was kept", offered.dir.display()));
        }
    }
    Ok(())
}

/// `dir` and any missing parents, with `mode` (an existing one is left as it is).
fn make_dir(dir: &Path, mode: u32) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|e| format!("cannot make {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(budget: u64) -> (tempdir::Dir, Cache) {
        let dir = tempdir::Dir::new();
        let cache = Cache::new(&dir.0.join("data"), None, budget);
        (dir, cache)
    }

    /// A temporary directory for one test.
    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                let d = std::env::temp_dir().join(format!("volley-cache-test-{:08x}", rand::random::<u32>()));
                std::fs::create_dir_all(&d).unwrap();
                Dir(d)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn files(dir: &Path, named: &[(&str, &[u8])]) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        for (name, bytes) in named {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        dir.to_path_buf()
    }

    fn keep(cache: &Cache, asker: &Asker, key: &str, dir: &Path) -> Result<(), String> {
        let offered = cache.offer(asker, dir.to_str().unwrap())?;
        cache.store(asker, key, offered)
    }

    #[test]
    fn an_entry_kept_is_opened_read_only_by_its_namespace_alone() {
        let (tmp, cache) = setup(1 << 20);
        let a = cache.asker("a", None, "p1");
        let b = cache.asker("b", None, "p2");
        assert_eq!(cache.open(&a, "ref-1").unwrap(), None);
        let made = files(&tmp.0.join("made"), &[("ref.mmi", b"index"), ("ref.fa", b">c\nACGT\n")]);
        keep(&cache, &a, "ref-1", &made).unwrap();
        let view = cache.open(&a, "ref-1").unwrap().expect("kept");
        assert_eq!(std::fs::read(view.join("ref.mmi")).unwrap(), b"index");
        assert_eq!(std::fs::read(view.join("ref.fa")).unwrap(), b">c\nACGT\n");
        let mode = std::fs::metadata(view.join("ref.mmi")).unwrap().permissions().mode();
        assert_eq!(mode & 0o222, 0, "a view's files are read-only");
        // Another namespace sees nothing under the same key, and its own keep does not overwrite a's.
        assert_eq!(cache.open(&b, "ref-1").unwrap(), None);
        let other = files(&tmp.0.join("other"), &[("ref.mmi", b"poisoned")]);
        keep(&cache, &b, "ref-1", &other).unwrap();
        let again = cache.open(&a, "ref-1").unwrap().unwrap();
        assert_eq!(std::fs::read(again.join("ref.mmi")).unwrap(), b"index");
        assert_eq!(std::fs::read(cache.open(&b, "ref-1").unwrap().unwrap().join("ref.mmi")).unwrap(), b"poisoned");
        remove_views(&a);
        assert!(!view.exists(), "views go with the pack");
    }

    #[test]
    fn a_second_keep_of_a_key_leaves_the_first() {
        let (tmp, cache) = setup(1 << 20);
        let a = cache.asker("a", None, "p");
        keep(&cache, &a, "k", &files(&tmp.0.join("1"), &[("f", b"first")])).unwrap();
        keep(&cache, &a, "k", &files(&tmp.0.join("2"), &[("f", b"second")])).unwrap();
        assert_eq!(std::fs::read(cache.open(&a, "k").unwrap().unwrap().join("f")).unwrap(), b"first");
    }

    #[test]
    fn bad_keys_links_and_others_files_are_refused() {
        let (tmp, cache) = setup(1 << 20);
        let a = cache.asker("a", None, "p");
        for key in ["", "../x", ".hidden", "a/b", &"k".repeat(129)] {
            let e = cache.open(&a, key).unwrap_err();
            assert!(e.contains("cache key"), "{key}: {e}");
        }
        let dir = files(&tmp.0.join("links"), &[("real", b"x")]);
        std::os::unix::fs::symlink("/etc/hostname", dir.join("link")).unwrap();
        let e = keep(&cache, &a, "k", &dir).unwrap_err();
        assert!(e.contains("not links"), "{e}");
        let fifo = files(&tmp.0.join("fifo"), &[]);
        let path = std::ffi::CString::new(fifo.join("pipe").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) on a path this test owns.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        let e = keep(&cache, &a, "k", &fifo).unwrap_err();
        assert!(e.contains("only regular files"), "{e}");
        // A sandboxed pack's files must be its own uid's.
        let sandboxed = Asker { uid: Some(4_000_000), ..a.clone() };
        let e = keep(&cache, &sandboxed, "k", &files(&tmp.0.join("mine"), &[("f", b"x")])).unwrap_err();
        assert!(e.contains("not the pack's own file"), "{e}");
        let e = keep(&cache, &a, "k", &files(&tmp.0.join("empty"), &[])).unwrap_err();
        assert!(e.contains("no file"), "{e}");
        assert_eq!(cache.open(&a, "k").unwrap(), None, "nothing refused was kept");
    }

    #[test]
    fn the_least_recently_opened_entries_go_when_the_cache_is_full() {
        let (tmp, cache) = setup(250);
        let a = cache.asker("a", None, "p");
        let hundred = [0u8; 100];
        for k in ["one", "two"] {
            keep(&cache, &a, k, &files(&tmp.0.join(k), &[("f", &hundred)])).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // "one" opened after "two" was kept: "two" is now the older.
        cache.open(&a, "one").unwrap().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        keep(&cache, &a, "three", &files(&tmp.0.join("three"), &[("f", &hundred)])).unwrap();
        assert!(cache.open(&a, "one").unwrap().is_some());
        assert!(cache.open(&a, "two").unwrap().is_none(), "the least recently used went");
        assert!(cache.open(&a, "three").unwrap().is_some());
        let e = keep(&cache, &a, "big", &files(&tmp.0.join("big"), &[("f", &[0u8; 300])])).unwrap_err();
        assert!(e.contains("--cache-size"), "{e}");
    }
}
