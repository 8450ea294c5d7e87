//! Functions: the built-ins, and deployed binaries stored by content (SHA-256)
//! in the data directory's blob store.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use volley_proto::api::FunctionInfo;
use volley_proto::now_micros;
use volley_proto::pack::Program;

use crate::error::{Error, Result};
use crate::store::Store;

pub(crate) struct Functions {
    builtins: Vec<FunctionInfo>,
    deployed: Mutex<BTreeMap<String, FunctionInfo>>,
    blobs: PathBuf,
}

/// Names users may give functions: they appear in URLs and file names.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!("function name {name:?} must be 1 to 64 characters from a-z 0-9 - _")))
    }
}

/// Deployed functions are stored under `namespace/name`.
fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

fn lock(m: &Mutex<BTreeMap<String, FunctionInfo>>) -> std::sync::MutexGuard<'_, BTreeMap<String, FunctionInfo>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Functions {
    pub(crate) async fn load(builtins: Vec<FunctionInfo>, blobs: PathBuf, store: &Store) -> Result<Functions> {
        std::fs::create_dir_all(&blobs)
            .map_err(|e| Error::Store(format!("cannot create the blob store {}: {e}", blobs.display())))?;
        let deployed = store
            .list_functions()
            .await?
            .into_iter()
            .map(|f| (key(f.namespace.as_deref().unwrap_or_default(), &f.name), f))
            .collect();
        Ok(Functions { builtins, deployed: Mutex::new(deployed), blobs })
    }

    /// The built-ins and the functions deployed in `namespace`.
    pub(crate) fn list(&self, namespace: &str) -> Vec<FunctionInfo> {
        let mut all = self.builtins.clone();
        all.extend(lock(&self.deployed).values().filter(|f| f.namespace.as_deref() == Some(namespace)).cloned());
        all
    }

    pub(crate) fn get(&self, namespace: &str, name: &str) -> Option<FunctionInfo> {
        self.builtins
            .iter()
            .find(|f| f.name == name)
            .cloned()
            .or_else(|| lock(&self.deployed).get(&key(namespace, name)).cloned())
    }

    /// What an invoker must start for `name`: None for a built-in.
    pub(crate) fn program(&self, namespace: &str, name: &str) -> Option<Program> {
        let deployed = lock(&self.deployed);
        let f = deployed.get(&key(namespace, name))?;
        Some(Program { digest: f.digest.clone()?, size_bytes: f.size_bytes.unwrap_or(0) })
    }

    /// Stores `binary` by its digest and records it as function `name`.
    pub(crate) async fn deploy(
        &self,
        store: &Store,
        namespace: &str,
        name: &str,
        description: &str,
        binary: &[u8],
    ) -> Result<FunctionInfo> {
        check_name(name)?;
        if self.builtins.iter().any(|f| f.name == name) {
            return Err(Error::Conflict(format!("{name} is a built-in function; deploy under another name")));
        }
        if binary.starts_with(b"\0asm") && !binary.starts_with(b"\0asm\x01\0\0\0") {
            return Err(Error::Unprocessable(
                "the uploaded file is a WebAssembly component or a module of another version; Volley runs core modules built for wasm32-wasip1-threads with the volley-wasm SDK".into(),
            ));
        }
        if !(binary.starts_with(b"\x7fELF") || binary.starts_with(b"#!") || binary.starts_with(b"\0asm")) {
            return Err(Error::Unprocessable(
                "the uploaded file is not an executable (an ELF binary or a #! script) nor a WebAssembly module; build the function crate and deploy target/release/NAME (or target/wasm32-wasip1-threads/release/NAME.wasm)".into(),
            ));
        }
        let digest: String = Sha256::digest(binary).iter().map(|b| format!("{b:02x}")).collect();
        let path = self.blob_path(&digest)?;
        if !path.exists() {
            let tmp = path.with_extension(format!("tmp{:08x}", rand::random::<u32>()));
            let write = std::fs::write(&tmp, binary).and_then(|_| std::fs::rename(&tmp, &path));
            if let Err(e) = write {
                let _ = std::fs::remove_file(&tmp);
                return Err(Error::Store(format!("cannot store the binary in {}: {e}", self.blobs.display())));
            }
        }
        let info = FunctionInfo {
            name: name.into(),
            namespace: Some(namespace.into()),
            kind: "deployed".into(),
            description: description.into(),
            digest: Some(digest),
            size_bytes: Some(binary.len() as u64),
            deployed_at: Some(now_micros()),
        };
        store.put_function(&key(namespace, name), &info).await?;
        lock(&self.deployed).insert(key(namespace, name), info.clone());
        Ok(info)
    }

    /// Forgets a deployed function (its blob stays while other names use it).
    pub(crate) async fn delete(&self, store: &Store, namespace: &str, name: &str) -> Result<()> {
        if self.builtins.iter().any(|f| f.name == name) {
            return Err(Error::Conflict(format!("{name} is a built-in function and cannot be deleted")));
        }
        let removed = lock(&self.deployed).remove(&key(namespace, name));
        let Some(info) = removed else {
            return Err(Error::NotFound(format!("no deployed function {name:?}")));
        };
        store.delete_function(&key(namespace, name)).await?;
        let still_used = lock(&self.deployed).values().any(|f| f.digest == info.digest);
        if !still_used && let Some(d) = &info.digest {
            let _ = std::fs::remove_file(self.blob_path(d)?);
        }
        Ok(())
    }

    /// Where the blob with `digest` lives (digests are checked: they become file names).
    pub(crate) fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        if digest.len() != 64 || !digest.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(Error::BadRequest(format!("{digest:?} is not a SHA-256 digest")));
        }
        Ok(self.blobs.join(digest))
    }
}
