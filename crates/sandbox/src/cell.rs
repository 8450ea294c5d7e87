//! Cells (ADR 0008, decision 1): each sandboxed pack process gets a host uid
//! and gid of its own, 200000 + k, and a directory of that uid. A uid is
//! taken by holding an exclusive lock on its file in a host-wide directory,
//! so two invokers on one machine never hand out the same uid, and a killed
//! invoker's uids come free with its locks. The directory lives under the
//! invoker's data directory: `cells/<uid>/work` (the pack's working and home
//! directory) and `cells/<uid>/tmp` (its TMPDIR), both of the cell's uid,
//! mode 0700, below a root-owned `cells/<uid>` of mode 0711.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The first uid (and gid) given to a cell.
pub const FIRST_UID: u32 = 200_000;
/// How many cells a machine may have at once.
pub const CELLS: u32 = 65_536;
/// The supplementary group of every cell: local storage directories are
/// shared with it (file:// storage is one host directory for all tenants).
pub const PACKS_GID: u32 = FIRST_UID - 1;
/// Where the host-wide locks of taken uids live.
const LOCKS: &str = "/run/volley/cells";

/// A pack process's uid, gid and directories; the directories are removed
/// and the uid freed when it is dropped.
#[derive(Debug)]
pub struct Cell {
    pub uid: u32,
    pub gid: u32,
    /// `cells/<uid>`: root's, 0711; what the pack may write lies below.
    pub dir: PathBuf,
    /// The pack's working (and home) directory.
    pub work: PathBuf,
    /// The pack's temporary directory.
    pub tmp: PathBuf,
    /// Held while the cell lives: the uid is taken.
    _lock: File,
}

#[derive(Debug, thiserror::Error)]
pub enum CellError {
    #[error("no cell is free: all {CELLS} pack uids from {FIRST_UID} are taken on this machine")]
    Exhausted,
    #[error("making a pack's cell at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> CellError + '_ {
    move |source| CellError::Io { path: path.to_path_buf(), source }
}

impl Cell {
    /// Takes a free uid (starting the search at a random one, so that a
    /// just-freed uid is seldom reused at once) and makes its directories
    /// under `root` (the invoker's `cells` directory).
    pub fn take(root: &Path) -> Result<Cell, CellError> {
        make_dir(root, 0o711)?;
        let locks = Path::new(LOCKS);
        std::fs::create_dir_all(locks).map_err(io_at(locks))?;
        let start: u32 = rand_below(CELLS);
        for i in 0..CELLS {
            let uid = FIRST_UID + (start + i) % CELLS;
            let path = locks.join(uid.to_string());
            let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io_at(&path))?;
            // SAFETY: flock(2) on a descriptor this function owns.
            let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
            if locked {
                return Cell::make(root, uid, file);
            }
        }
        Err(CellError::Exhausted)
    }

    fn make(root: &Path, uid: u32, lock: File) -> Result<Cell, CellError> {
        let dir = root.join(uid.to_string());
        // Whatever an earlier holder of this uid under this root left goes first.
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io_at(&dir))?;
        }
        make_dir(&dir, 0o711)?;
        let (work, tmp) = (dir.join("work"), dir.join("tmp"));
        for d in [&work, &tmp] {
            make_dir(d, 0o700)?;
            std::os::unix::fs::chown(d, Some(uid), Some(uid)).map_err(io_at(d))?;
        }
        Ok(Cell { uid, gid: uid, dir, work, tmp, _lock: lock })
    }
}

impl Cell {
    /// The descriptor of the uid's lock: a process that holds a copy keeps
    /// the uid taken (the launcher's reaper does, so that a pack outliving a
    /// killed invoker keeps its uid to itself).
    pub fn lock_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self._lock.as_fd()
    }

    /// Removes the cells under `root` whose uid nobody holds any more (left
    /// by an invoker that was killed, once their packs ended too).
    pub fn remove_abandoned(root: &Path) {
        let Ok(entries) = std::fs::read_dir(root) else { return };
        for entry in entries.flatten() {
            let Some(uid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let lock = Path::new(LOCKS).join(uid.to_string());
            let Ok(file) = OpenOptions::new().create(true).truncate(false).write(true).open(&lock) else { continue };
            // SAFETY: flock(2) on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

impl Drop for Cell {
    fn drop(&mut self) {
        // The pack's processes are gone (the invoker drops a cell after its
        // process ended and its cgroup was emptied): nothing writes here now.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Makes `dir` (not its parents) with `mode`, or sets the mode of the one there.
fn make_dir(dir: &Path, mode: u32) -> Result<(), CellError> {
    match std::fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_at(dir)(e)),
    }
    // (The umask may have taken bits away.)
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(io_at(dir))
}

fn rand_below(n: u32) -> u32 {
    let mut bytes = [0u8; 4];
    // SAFETY: getrandom(2) writes at most the 4 bytes given.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), 4, 0) };
    if got != 4 {
        return 0;
    }
    u32::from_ne_bytes(bytes) % n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_here() -> bool {
        // SAFETY: geteuid(2) reads the caller's effective uid.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn two_cells_never_share_a_uid_and_a_dropped_cell_leaves_nothing() {
        if !root_here() {
            eprintln!("skipped: cells need root");
            return;
        }
        let root = std::env::temp_dir().join(format!("volley-cells-test-{}", std::process::id()));
        let a = Cell::take(&root).expect("a cell");
        let b = Cell::take(&root).expect("another cell");
        assert_ne!(a.uid, b.uid);
        assert!((FIRST_UID..FIRST_UID + CELLS).contains(&a.uid));
        use std::os::unix::fs::MetadataExt;
        let work = std::fs::metadata(&a.work).expect("work");
        assert_eq!((work.uid(), work.mode() & 0o777), (a.uid, 0o700));
        let dir = a.dir.clone();
        drop(a);
        assert!(!dir.exists(), "the cell's directory is removed with it");
        drop(b);
        let _ = std::fs::remove_dir_all(&root);
    }
}
