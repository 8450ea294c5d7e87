//! Deployed function binaries, fetched from the controller by digest and
//! cached in the data directory (a binary is downloaded once per invoker);
//! a WebAssembly module is also compiled once per invoker, by the invoker's
//! own `volley wasm-compile`, into an artefact every pack of it loads.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use volley_proto::pack::Program;

use volley_client::Client;

/// The directory of compiled WebAssembly modules, beside the binaries (packs
/// may look up an artefact by name, not list them: see the sandbox).
pub(crate) const WASM_DIR: &str = "wasm";
/// The longest a module's compilation may take.
const COMPILE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

pub(crate) struct Programs {
    dir: PathBuf,
    /// Compiled WebAssembly modules.
    wasm: PathBuf,
    /// One download per digest at a time; later packs wait for it.
    downloads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Programs {
    pub(crate) fn new(dir: PathBuf, wasm: PathBuf) -> Self {
        Programs { dir, wasm, downloads: Mutex::new(HashMap::new()) }
    }

    /// One at a time per `name` (a download, a compilation, a snapshot).
    pub(crate) fn gate(&self, name: String) -> Arc<tokio::sync::Mutex<()>> {
        let mut downloads = self.downloads.lock().unwrap_or_else(|p| p.into_inner());
        downloads.entry(name).or_default().clone()
    }

    /// For a WebAssembly module at `path` (a cached program), its compiled
    /// artefact, compiled first if needed by `volley` (the invoker's own
    /// binary, which must have been built with WebAssembly support); None
    /// for a native program.
    pub(crate) async fn wasm_artifact(&self, path: &Path, volley: &Path) -> Result<Option<PathBuf>, String> {
        let mut head = [0u8; 4];
        let read = std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head));
        if read.is_err() || head != *b"\0asm" {
            return Ok(None);
        }
        // Named by the module and the binary that compiles and runs it: a
        // rebuilt volley (perhaps another wasmtime) compiles anew.
        let built = std::fs::metadata(volley).map_err(|e| format!("cannot read {}: {e}", volley.display()))?;
        let mtime =
            built.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).unwrap_or_default();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let artifact = self.wasm.join(format!("{name}-{:x}-{:x}.cwasm", built.len(), mtime.as_nanos()));
        let gate = self.gate(format!("wasm:{name}"));
        let _one_at_a_time = gate.lock().await;
        if artifact.exists() {
            return Ok(Some(artifact));
        }
        std::fs::create_dir_all(&self.wasm).map_err(|e| format!("cannot create {}: {e}", self.wasm.display()))?;
        let compile = tokio::process::Command::new(volley)
            .arg(volley_proto::pack::WASM_COMPILE_ARG)
            .arg(path)
            .arg(&artifact)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = match tokio::time::timeout(COMPILE_TIMEOUT, compile).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => {
                return Err(format!("cannot run {} to compile the WebAssembly module: {e}", volley.display()));
            }
            Err(_) => return Err(format!("compiling the WebAssembly module took longer than {COMPILE_TIMEOUT:?}")),
        };
        if !output.status.success() {
            let said = String::from_utf8_lossy(&output.stderr).trim().to_string();
            return Err(format!("cannot compile the WebAssembly module: {said}"));
        }
        Ok(Some(artifact))
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
