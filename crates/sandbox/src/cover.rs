//! Granted paths below directories closed to other users. A pack's uid
//! cannot even look up a path below a directory without the search bit for
//! others (`/root`, mode 0700, holds the machine's Python; a temporary data
//! directory is 0700 too), however Landlock rules it. In the pack's own
//! mount namespace, while still root, the launcher covers each such closed
//! directory with an empty tmpfs and mounts back into it only the granted
//! paths that lay below: they are reachable at the same names, and the rest
//! of the closed directory is not there at all. The host's modes are not
//! touched.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::CWD;
use rustix::mount::{MoveMountFlags, OpenTreeFlags, move_mount, open_tree};

/// Covers the closed directories above `granted` paths (absolute, existing
/// ones; others are left out) and mounts those paths back. Only in a
/// private mount namespace, as root.
pub(crate) fn cover_closed_directories(granted: &[PathBuf]) -> std::io::Result<()> {
    for (closed, paths) in closed_ancestors(granted) {
        // Detached copies of the granted trees first: once the tmpfs is
        // there, their names lead into it.
        let mut copies = Vec::with_capacity(paths.len());
        for path in &paths {
            let flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::AT_RECURSIVE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
            copies.push((path, open_tree(CWD, path, flags)?));
        }
        nix::mount::mount(
            Some("tmpfs"),
            &closed,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some("mode=0755"),
        )
        .map_err(std::io::Error::from)?;
        for (path, copy) in copies {
            make_mount_point(path, copy_is_dir(&copy))?;
            move_mount(&copy, "", CWD, path, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)?;
        }
    }
    Ok(())
}

fn copy_is_dir(copy: &rustix::fd::OwnedFd) -> bool {
    rustix::fs::fstat(copy).map(|s| rustix::fs::FileType::from_raw_mode(s.st_mode).is_dir()).unwrap_or(true)
}

/// An empty directory (or file) at `path` on the covering tmpfs, its parents 0755.
fn make_mount_point(path: &Path, dir: bool) -> std::io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    std::fs::DirBuilder::new().recursive(true).mode(0o755).create(parent)?;
    if dir {
        std::fs::DirBuilder::new().mode(0o755).create(path)
    } else {
        let file = std::fs::File::create(path)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))
    }
}

/// The topmost closed directory above each granted path, with the granted
/// paths below it (a path below another granted one goes with that one).
fn closed_ancestors(granted: &[PathBuf]) -> BTreeMap<PathBuf, Vec<PathBuf>> {
    let mut paths: Vec<&PathBuf> = granted.iter().filter(|p| p.is_absolute() && p.exists()).collect();
    paths.sort();
    paths.dedup();
    let mut covers: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    // Every path, even one below another granted path: a closed directory
    // may lie between the two (a data directory inside local storage).
    let granted = |a: &Path| paths.iter().any(|g| g.as_path() == a);
    for &path in &paths {
        // A granted directory is reachable by its grant (a cell is the
        // pack's own, local storage is shared through the packs' group):
        // it is never covered, whatever its mode says to others. A closed
        // one below it is (a data directory inside local storage).
        let ancestors: Vec<&Path> = path.ancestors().skip(1).collect();
        let closed = ancestors.into_iter().rev().find(|a| !granted(a) && closed_to_others(a));
        if let Some(closed) = closed {
            covers.entry(closed.to_path_buf()).or_default().push(path.clone());
        }
    }
    // A closed directory below another closed one is covered with it.
    let tops: Vec<PathBuf> = covers.keys().cloned().collect();
    for inner in &tops {
        if let Some(outer) = tops.iter().find(|o| *o != inner && inner.starts_with(o)) {
            let moved = covers.remove(inner).unwrap_or_default();
            covers.entry(outer.clone()).or_default().extend(moved);
        }
    }
    // Under one cover, a path below another comes back with it.
    for paths in covers.values_mut() {
        paths.sort();
        let mut kept: Vec<PathBuf> = Vec::new();
        for p in paths.drain(..) {
            if !kept.iter().any(|k| p.starts_with(k)) {
                kept.push(p);
            }
        }
        *paths = kept;
    }
    covers
}

fn closed_to_others(dir: &Path) -> bool {
    std::fs::metadata(dir).map(|m| m.permissions().mode() & 0o001 == 0).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topmost_closed_directory_covers_the_granted_paths_below_it() {
        let base = std::env::temp_dir().join(format!("volley-cover-{}", std::process::id()));
        let closed = base.join("closed");
        let inner = closed.join("a/inner");
        std::fs::create_dir_all(inner.join("x")).expect("dirs");
        std::fs::create_dir_all(base.join("open/y")).expect("dirs");
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).expect("mode");
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).expect("mode");
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o700)).expect("mode");
        // `base` itself granted too (as local storage holding a closed data directory is).
        let granted = vec![inner.join("x"), closed.join("a"), base.join("open/y"), base.join("missing"), base.clone()];
        let covers = closed_ancestors(&granted);
        // The tmp directory above may itself be closed to others on some machines: look at ours only.
        let ours: Vec<_> = covers.iter().filter(|(k, _)| k.starts_with(&base)).collect();
        assert_eq!(ours, vec![(&closed, &vec![closed.join("a")])], "{covers:?}");
        // A closed directory granted itself is not covered; a closed one below it is.
        let covers = closed_ancestors(&[closed.clone(), inner.join("x")]);
        let ours: Vec<_> = covers.iter().filter(|(k, _)| k.starts_with(&base)).collect();
        assert_eq!(ours, vec![(&inner, &vec![inner.join("x")])], "{covers:?}");
        let _ = std::fs::remove_dir_all(&base);
    }
}
