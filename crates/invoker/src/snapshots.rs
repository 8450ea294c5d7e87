//! Snapshots of WebAssembly modules (ADR 0009): once per invoker and module,
//! the module's start-up runs in a process confined like a pack's (`volley
//! wasm-snapshot ARTIFACT DIR`, in a cell of its own where packs are
//! sandboxed), which writes the initialised memory and its description into
//! its directory; the invoker copies them beside the compiled module, and
//! every pack process of the module starts from them (`volley wasm-pack
//! ARTIFACT IMAGE`). A module whose snapshot cannot be made (its start-up
//! starts threads, say) starts each pack from scratch, as the marker file
//! beside it records.

use std::io::Read as _;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use volley_proto::pack::WASM_SNAPSHOT_ARG;

use crate::Shared;
use crate::sandbox::LOCK_FD;
use crate::spawn::pass_descriptors;

/// The longest a module's start-up may take to be snapshotted.
const TIMEOUT: Duration = Duration::from_secs(60);
/// The largest description a snapshot may have.
const MAX_DESCRIPTION: u64 = 1 << 20;
/// The largest image: a wasm32 memory.
const MAX_IMAGE: u64 = 4 << 30;

/// The image of `artifact`'s snapshot, made now if this invoker has none
/// yet; None where it cannot be made (the reason is logged once, and packs
/// start from scratch).
pub(crate) async fn image(shared: &Shared, artifact: &Path) -> Option<PathBuf> {
    let image = artifact.with_extension("image");
    let refused = artifact.with_extension("nosnapshot");
    let gate = shared.programs.gate(format!("snapshot:{}", artifact.display()));
    let _one_at_a_time = gate.lock().await;
    if image.exists() {
        return Some(image);
    }
    if refused.exists() {
        return None;
    }
    match make(shared, artifact, &image).await {
        Ok(()) => Some(image),
        Err(why) => {
            tracing::warn!("no snapshot of {}: {why}; its packs start from scratch", artifact.display());
            let _ = std::fs::write(&refused, why);
            None
        }
    }
}

async fn make(shared: &Shared, artifact: &Path, image: &Path) -> Result<(), String> {
    let opts = &shared.opts;
    let args =
        |dir: &Path| vec![WASM_SNAPSHOT_ARG.to_string(), artifact.display().to_string(), dir.display().to_string()];
    let (mut command, dir, owner, _cell, _scratch) = match &shared.sandbox {
        Some(sandbox) => {
            let cell = sandbox.cell()?;
            let mut command = sandbox.command(&cell, &[], &opts.program, &args(&cell.work));
            pass_descriptors(&mut command, &[(cell.lock_fd().as_raw_fd(), LOCK_FD)]);
            (command, cell.work.clone(), cell.uid, Some(cell), None)
        }
        None => {
            let dir = image.with_extension(format!("making{:08x}", rand::random::<u32>()));
            std::fs::create_dir_all(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
            let mut command = tokio::process::Command::new(&opts.program);
            command.args(args(&dir));
            // SAFETY: geteuid(2) reads the caller's effective uid.
            let me = unsafe { libc::geteuid() };
            (command, dir.clone(), me, None, Some(Scratch(dir)))
        }
    };
    command.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).kill_on_drop(true);
    let output = match tokio::time::timeout(TIMEOUT, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err(format!("cannot run {}: {e}", opts.program.display())),
        Err(_) => return Err(format!("the module's start-up took longer than {TIMEOUT:?}")),
    };
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
    }
    let description = copy_out(&dir.join("snapshot.json"), owner, MAX_DESCRIPTION)?;
    let memory = copy_out(&dir.join("snapshot.image"), owner, MAX_IMAGE)?;
    // The description last: a pack finds the image only with its description.
    install(&memory, image)?;
    install(&description, &image.with_extension("json"))
}

/// A directory removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The contents of `path`, which the snapshot process (uid `owner`) wrote:
/// a regular file of its own, not a link to something it could not read.
fn copy_out(path: &Path, owner: u32, max: u64) -> Result<Vec<u8>, String> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("the snapshot process left no {}: {e}", path.display()))?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() || meta.uid() != owner || meta.nlink() != 1 || meta.len() > max {
        return Err(format!("{} is not a file the snapshot process wrote", path.display()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// Writes `bytes` as `path`, whole or not at all, readable by the packs.
fn install(bytes: &[u8], path: &Path) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp{:08x}", rand::random::<u32>()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}
