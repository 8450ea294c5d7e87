//! WebAssembly modules (ADR 0009): once per invoker and module, two steps
//! run in processes confined like packs (a cell, a cgroup, the sandbox where
//! packs are sandboxed): `volley wasm-compile` compiles the module into
//! wasmtime's artefact, and `volley wasm-snapshot` runs the module's
//! start-up and writes its initialised memory and a description. The invoker
//! copies what each step wrote out of its directory (regular files of the
//! step's own uid, not links, bounded sizes) into `data_dir/wasm`, root's,
//! where every pack process of the module reads them by name. A module whose
//! snapshot cannot be made (its start-up fails, starts threads, or leaves
//! more memory than a snapshot may hold) is marked, and each of its packs
//! runs the start-up itself, in the warm pool.

use std::io::Read as _;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use volley_proto::pack::{WASM_COMPILE_ARG, WASM_SNAPSHOT_ARG};

use crate::Shared;
use crate::confine::Confined;
use crate::sandbox::LOCK_FD;
use crate::spawn::pass_descriptors;

/// The directory of compiled modules and snapshots, beside the binaries
/// (root's, 0711: a pack may read what it is started with, list nothing).
pub(crate) const WASM_DIR: &str = "wasm";
/// The longest a step may take (a large module's compilation).
const STEP_TIMEOUT: Duration = Duration::from_secs(300);
/// Memory a step may use.
const STEP_MEMORY_MB: u64 = 2048;
/// The largest artefact and description copied out of a step.
const MAX_ARTIFACT: u64 = 1 << 30;
const MAX_DESCRIPTION: u64 = 1 << 20;
/// The largest snapshot image: a start-up that leaves more memory gets none.
pub(crate) const MAX_IMAGE: u64 = 256 << 20;
/// How much of a step's error output is kept.
const MAX_SAID: u64 = 16 << 10;

/// One step at a time across the invoker (each may use every core).
static STEPS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Whether the program at `path` is a WebAssembly module.
pub(crate) fn is_module(path: &Path) -> bool {
    let mut head = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && head == *b"\0asm"
}

/// What a pack process of the module at `module` (a cached program) is
/// started with: `wasm-pack ARTIFACT [IMAGE]`.
pub(crate) async fn pack_args(shared: &Shared, module: &Path) -> Result<Vec<String>, String> {
    let name = module.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = shared.opts.data_dir.join(WASM_DIR).join(format!("{name}-{}", binary_id(&shared.opts.program).await?));
    let artifact = stem.with_extension("cwasm");
    let gate = shared.programs.gate(format!("wasm:{name}"));
    let _one_at_a_time = gate.lock().await;
    if !artifact.exists() {
        compile(shared, module, &artifact).await?;
    }
    let mut args = vec![volley_proto::pack::WASM_PACK_ARG.to_string(), artifact.display().to_string()];
    let image = snapshot(shared, &artifact).await;
    // Settled once the snapshot is there or the module cannot have one (not
    // while a step could not run for the machine's reasons: tried again).
    let settled = image.is_some() || artifact.with_extension("nosnapshot").exists();
    args.extend(image.map(|image| image.display().to_string()));
    if settled {
        shared.programs.settle_launch(module, Some(args.clone()));
    }
    Ok(args)
}

/// The invoker's binary, by content: an artefact is compiled anew for another one.
async fn binary_id(program: &Path) -> Result<String, String> {
    static ID: OnceLock<String> = OnceLock::new();
    if let Some(id) = ID.get() {
        return Ok(id.clone());
    }
    let path = program.to_path_buf();
    let hashed = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher)?;
        Ok(hasher.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect())
    });
    let id = hashed.await.map_err(|e| e.to_string())?.map_err(|e| format!("cannot read {}: {e}", program.display()))?;
    Ok(ID.get_or_init(|| id).clone())
}

async fn compile(shared: &Shared, module: &Path, artifact: &Path) -> Result<(), String> {
    let ran = step(shared, "compile", |dir| {
        // The step reads its own copy: the programs directory is root's alone.
        std::fs::copy(module, dir.join("module.wasm")).map_err(|e| format!("cannot copy the module: {e}"))?;
        Ok(vec![
            WASM_COMPILE_ARG.into(),
            dir.join("module.wasm").display().to_string(),
            dir.join("artifact").display().to_string(),
        ])
    })
    .await;
    let dir = match ran {
        Ok(dir) => dir,
        Err(Failed::Module(said)) => return Err(format!("cannot compile the WebAssembly module: {said}")),
        Err(Failed::Here(why)) => return Err(format!("cannot compile the WebAssembly module here: {why}")),
    };
    let (from, to) = (dir.path().join("artifact"), artifact.to_path_buf());
    blocking(move || install(&from, dir.owner, MAX_ARTIFACT, &to)).await
}

/// Runs file work off the async threads.
async fn blocking(work: impl FnOnce() -> Result<(), String> + Send + 'static) -> Result<(), String> {
    tokio::task::spawn_blocking(work).await.map_err(|e| e.to_string())?
}

/// The image of `artifact`'s snapshot, made now if this invoker has none
/// yet; None where the module cannot have one.
async fn snapshot(shared: &Shared, artifact: &Path) -> Option<PathBuf> {
    let (image, description) = (artifact.with_extension("image"), artifact.with_extension("json"));
    let refused = artifact.with_extension("nosnapshot");
    // The description is installed last: it says the image is whole.
    if description.exists() {
        return Some(image);
    }
    if refused.exists() {
        return None;
    }
    let ran = step(shared, "snapshot", |dir| {
        Ok(vec![WASM_SNAPSHOT_ARG.into(), artifact.display().to_string(), dir.display().to_string()])
    })
    .await;
    let installed = match ran {
        Ok(dir) => {
            let (image, description) = (image.clone(), description.clone());
            blocking(move || {
                install(&dir.path().join("snapshot.image"), dir.owner, MAX_IMAGE, &image)?;
                check_image(&dir.path().join("snapshot.json"), &image)?;
                install(&dir.path().join("snapshot.json"), dir.owner, MAX_DESCRIPTION, &description)
            })
            .await
            .map_err(Failed::Module)
        }
        Err(e) => Err(e),
    };
    match installed {
        Ok(()) => Some(image),
        Err(Failed::Module(why)) => {
            tracing::warn!("no snapshot of {}: {why}; its packs run its start-up themselves", artifact.display());
            let _ = std::fs::remove_file(&image);
            let _ = std::fs::write(&refused, why);
            None
        }
        // Not the module's doing (no cell free, say): tried again next time.
        Err(Failed::Here(why)) => {
            tracing::warn!("no snapshot of {} this time: {why}", artifact.display());
            None
        }
    }
}

/// The description names as many pages as the image holds.
fn check_image(description: &Path, image: &Path) -> Result<(), String> {
    let text = std::fs::read(description).map_err(|e| e.to_string())?;
    let value: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| format!("its description is not JSON: {e}"))?;
    let pages = value["pages"].as_u64().ok_or("its description names no pages")?;
    let size = std::fs::metadata(image).map_err(|e| e.to_string())?.len();
    if pages.checked_mul(65536) != Some(size) {
        return Err(format!("its image has {size} bytes, not {pages} pages"));
    }
    Ok(())
}

/// Why a step gave nothing: the module's doing (it failed), or this machine's.
enum Failed {
    Module(String),
    Here(String),
}

/// A step's directory, and the uid its files must have.
struct StepDir {
    _cell: Option<volley_sandbox::Cell>,
    scratch: Option<PathBuf>,
    path: PathBuf,
    owner: u32,
}

impl StepDir {
    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StepDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Runs `volley ARGS` (`args` made for the step's directory) confined like
/// a pack process; returns the directory it wrote in.
async fn step(
    shared: &Shared,
    what: &str,
    args: impl FnOnce(&Path) -> Result<Vec<String>, String>,
) -> Result<StepDir, Failed> {
    let _one = STEPS.acquire().await.map_err(|e| Failed::Here(e.to_string()))?;
    let opts = &shared.opts;
    let mut confined = shared
        .cgroups
        .as_ref()
        .and_then(|layout| Confined::new(layout, &format!("wasm-{what}-{:08x}", rand::random::<u32>())));
    if let Some(c) = confined.as_mut() {
        c.take_pack(1, Some(STEP_MEMORY_MB));
    }
    let cgroups = confined.as_ref().map(|c| c.dirs().to_vec()).unwrap_or_default();
    let (mut command, dir) = match &shared.sandbox {
        Some(sandbox) => {
            let cell = sandbox.cell().map_err(Failed::Here)?;
            let args = args(&cell.work).map_err(Failed::Here)?;
            let mut command = sandbox.command(&cell, &cgroups, &opts.program, &args);
            pass_descriptors(&mut command, &[(cell.lock_fd().as_raw_fd(), LOCK_FD)]);
            let dir = StepDir { path: cell.work.clone(), owner: cell.uid, _cell: Some(cell), scratch: None };
            (command, dir)
        }
        None => {
            let path = opts.data_dir.join(WASM_DIR).join(format!("{what}-{:08x}", rand::random::<u32>()));
            std::fs::create_dir_all(&path).map_err(|e| Failed::Here(format!("cannot make {}: {e}", path.display())))?;
            // SAFETY: geteuid(2) reads the caller's effective uid.
            let owner = unsafe { libc::geteuid() };
            let dir = StepDir { path: path.clone(), owner, _cell: None, scratch: Some(path) };
            let mut command = tokio::process::Command::new(&opts.program);
            command.args(args(&dir.path).map_err(Failed::Here)?);
            (command, dir)
        }
    };
    command.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    let mut child = command
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Failed::Here(format!("cannot run {}: {e}", opts.program.display())))?;
    if let (Some(c), Some(pid)) = (&confined, child.id()) {
        c.admit(pid);
    }
    // What it says, kept up to a bound; the rest is read and dropped.
    let said = child.stderr.take().map(|mut err| {
        tokio::spawn(async move {
            let mut kept = Vec::new();
            let _ = (&mut err).take(MAX_SAID).read_to_end(&mut kept).await;
            let _ = tokio::io::copy(&mut err, &mut tokio::io::sink()).await;
            String::from_utf8_lossy(&kept).trim().to_string()
        })
    });
    let ended = tokio::time::timeout(STEP_TIMEOUT, child.wait()).await;
    if ended.is_err() {
        let _ = child.kill().await;
    }
    // Everything it left ends before its cell is given back.
    if let Some(c) = confined {
        c.remove().await;
    }
    let said = match said {
        Some(task) => {
            tokio::time::timeout(Duration::from_secs(5), task).await.ok().and_then(Result::ok).unwrap_or_default()
        }
        None => String::new(),
    };
    match ended {
        Ok(Ok(status)) if status.success() => Ok(dir),
        Ok(Ok(status)) => Err(Failed::Module(if said.is_empty() { format!("it ended with {status}") } else { said })),
        Ok(Err(e)) => Err(Failed::Here(e.to_string())),
        Err(_) => Err(Failed::Module(format!("it took longer than {STEP_TIMEOUT:?}"))),
    }
}

/// Copies the file `from`, which a step (uid `owner`) wrote: a regular file
/// of its own, not a link to something it could not read, at most `max`
/// bytes; installed as `to`, root's, whole or not at all, readable by packs.
fn install(from: &Path, owner: u32, max: u64, to: &Path) -> Result<(), String> {
    let mut source = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(from)
        .map_err(|e| format!("the step left no {}: {e}", from.display()))?;
    let meta = source.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() || meta.uid() != owner || meta.nlink() != 1 {
        return Err(format!("{} is not a file the step wrote", from.display()));
    }
    if meta.len() > max {
        return Err(format!("{} has {} bytes, more than the {max} allowed", from.display(), meta.len()));
    }
    let tmp = to.with_extension(format!("tmp{:08x}", rand::random::<u32>()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .and_then(|mut out| {
            // (No more than the size checked, whatever the file holds now.)
            std::io::copy(&mut (&mut source).take(max), &mut out)?;
            out.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, to));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", to.display())
    })
}
