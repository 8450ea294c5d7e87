//! Places on disk a test owns.

use std::path::PathBuf;

/// A fresh, empty directory that is removed when dropped, under
/// [`tests_root`].
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = tests_root().join(format!("{name}-{}-{:x}", std::process::id(), rand_u32()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

/// Where the tests' directories live: the local storage the platforms the
/// tests start grant their sandboxed packs (`VOLLEY_LOCAL_STORAGE`), so that
/// a test's `file://` data is theirs to read and write.
pub fn tests_root() -> PathBuf {
    std::env::temp_dir().join("volley-tests")
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A number unlikely to repeat across tests running at once.
pub fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    t.subsec_nanos() ^ (std::process::id() << 8)
}
