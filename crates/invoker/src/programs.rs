//! Deployed function binaries, fetched from the controller by digest and
//! cached in the data directory (a binary is downloaded once per invoker;
//! a WebAssembly module is then prepared once by `wasm.rs`).

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use volley_proto::pack::Program;

use volley_client::Client;

pub(crate) struct Programs {
    dir: PathBuf,
    /// One download per digest at a time; later packs wait for it.
    downloads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// How each cached program is started, once that is settled: None for a
    /// native binary (run as it is), a WebAssembly module's `wasm-pack`
    /// arguments (so no pack start reads or stats its files again).
    launches: Mutex<HashMap<PathBuf, Option<Vec<String>>>>,
}

impl Programs {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Programs { dir, downloads: Mutex::new(HashMap::new()), launches: Mutex::new(HashMap::new()) }
    }

    /// How the cached program at `path` is started, if that is settled.
    pub(crate) fn launch(&self, path: &Path) -> Option<Option<Vec<String>>> {
        self.launches.lock().unwrap_or_else(|p| p.into_inner()).get(path).cloned()
    }

    /// Settles how the cached program at `path` is started.
    pub(crate) fn settle_launch(&self, path: &Path, launch: Option<Vec<String>>) {
        self.launches.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_path_buf(), launch);
    }

    /// One at a time per `name` (a download, a compilation, a snapshot).
    pub(crate) fn gate(&self, name: String) -> Arc<tokio::sync::Mutex<()>> {
        let mut downloads = self.downloads.lock().unwrap_or_else(|p| p.into_inner());
        downloads.entry(name).or_default().clone()
    }

    /// The local path of `program`, downloading it first if needed.
    pub(crate) async fn path(&self, client: &Client, program: &Program) -> Result<PathBuf, String> {
        let digest = &program.digest;
        if digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("{digest:?} is not a SHA-256 digest"));
        }
        let path = self.dir.join(digest);
        let gate = self.gate(digest.clone());
        let _one_at_a_time = gate.lock().await;
        if path.exists() {
            return Ok(path);
        }
        let bytes = client.blob(digest).await.map_err(|e| match e.status() {
            Some(404) => format!("the controller has no binary {digest} (was the function deleted?)"),
            _ => format!("cannot download the function binary {digest}: {e}"),
        })?;
        let actual: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        if actual != *digest {
            return Err(format!("the downloaded binary has digest {actual}, not {digest}; refusing to run it"));
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let tmp = path.with_extension(format!("tmp{:08x}", rand::random::<u32>()));
        let write = std::fs::write(&tmp, &bytes)
            .and_then(|_| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)))
            .and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = write {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("cannot cache the function binary in {}: {e}", self.dir.display()));
        }
        Ok(path)
    }
}
