//! POSIX ACL grants: how the invoker (root) lets the packs of one burst, each
//! of its own uid, reach each other's Unix sockets and nobody else (ADR
//! 0008, decision 3). Written as the kernel's `system.posix_acl_access`
//! extended attribute (the stable layout of `linux/posix_acl_xattr.h`): the
//! Rust crates for ACLs link libacl, whose headers a fresh machine lacks, for
//! what is one small structure. Also how local storage directories are
//! shared with every pack (the group all cells belong to).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Read, write and execute (search, for a directory) bits of an entry.
pub const READ: u16 = 4;
pub const WRITE: u16 = 2;
pub const EXECUTE: u16 = 1;

const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
const UNDEFINED_ID: u32 = u32::MAX;

/// Sets the access ACL of `path` to its mode's owner, group and other
/// entries plus `perms` for each uid in `users` (replacing named entries
/// set before). An empty `users` leaves only the mode's entries.
pub fn grant_users(path: &Path, users: &[u32], perms: u16) -> io::Result<()> {
    // Of the path itself (lstat, lsetxattr): a link a pack put there is not followed.
    let mode = std::fs::symlink_metadata(path)?.mode();
    set(path, "system.posix_acl_access", &access_acl(mode, users, perms))
}

/// Lets the group `gid` read and write (and search) `dir` and everything
/// below it, now and created later: an access ACL entry on each directory
/// and regular file there, and a default ACL on each directory, which what
/// is made inside inherits (whoever makes it). A directory that already
/// passes the group on was shared before (or made inside a shared one): all
/// it holds has the entry, and it is not walked again.
///
/// Packs may be writing there while root walks it: every step goes through
/// a descriptor opened without following links (a file swapped for a link
/// to /etc/shadow is passed over, not granted), and what disappears during
/// the walk is passed over. Sockets, pipes and devices are left alone.
///
/// The directories in `except` (the invoker's data directory, were it
/// inside) are left as they are, with what they hold.
pub fn share_tree_with_group(dir: &Path, gid: u32, except: &[&Path]) -> io::Result<()> {
    let fd = open_no_follow(rustix::fs::CWD, dir)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{} is not a directory", dir.display())))?;
    let except: Vec<(u64, u64)> =
        except.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| (m.dev(), m.ino())).collect();
    share_dir(&fd, gid, &except)
}

fn share_dir(dir: &OwnedFd, gid: u32, except: &[(u64, u64)]) -> io::Result<()> {
    if passes_on(dir, gid) {
        return Ok(());
    }
    let mode = rustix::fs::fstat(dir)?.st_mode;
    set_fd(dir, "system.posix_acl_access", &group_acl(mode, gid, READ | WRITE | EXECUTE))?;
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let Some(fd) = open_no_follow(dir, name)? else { continue };
        let stat = rustix::fs::fstat(&fd)?;
        match rustix::fs::FileType::from_raw_mode(stat.st_mode) {
            rustix::fs::FileType::Directory if except.contains(&(stat.st_dev, stat.st_ino)) => {}
            rustix::fs::FileType::Directory => share_dir(&fd, gid, except)?,
            rustix::fs::FileType::RegularFile => {
                let perms = if stat.st_mode & 0o111 != 0 { READ | WRITE | EXECUTE } else { READ | WRITE };
                set_fd(&fd, "system.posix_acl_access", &group_acl(stat.st_mode, gid, perms))?;
            }
            _ => {}
        }
    }
    // Last: a walk cut short is done again next time.
    set_fd(dir, "system.posix_acl_default", &group_acl(0o770, gid, READ | WRITE | EXECUTE))
}

/// `name` under `dir` opened for reading without following a link; None
/// for a link, something gone, or what opening would disturb (a socket, a
/// pipe, a device).
fn open_no_follow<P: rustix::path::Arg>(dir: impl AsFd, name: P) -> io::Result<Option<OwnedFd>> {
    use rustix::fs::{Mode, OFlags};
    // O_PATH first: it opens nothing but the name, whatever the file is.
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let path = match rustix::fs::openat(&dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let kind = rustix::fs::FileType::from_raw_mode(rustix::fs::fstat(&path)?.st_mode);
    if !matches!(kind, rustix::fs::FileType::Directory | rustix::fs::FileType::RegularFile) {
        return Ok(None);
    }
    // Reopened through the descriptor's /proc entry: the same inode, never a link's target.
    let reopened = format!("/proc/self/fd/{}", path.as_raw_fd());
    match rustix::fs::open(reopened.as_str(), OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Removes `dir`'s default ACL (what is made inside then inherits nothing
/// from it): the invoker's own directories, if they were made inside a
/// shared tree.
pub fn clear_default(dir: &Path) -> io::Result<()> {
    match rustix::fs::lremovexattr(dir, "system.posix_acl_default") {
        Ok(()) | Err(rustix::io::Errno::NODATA) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn set_fd(fd: &OwnedFd, attribute: &str, value: &[u8]) -> io::Result<()> {
    rustix::fs::fsetxattr(fd, attribute, value, rustix::fs::XattrFlags::empty()).map_err(io::Error::from)
}

/// Sets an ACL attribute on `path` itself, never on what a link there points to.
fn set(path: &Path, attribute: &str, value: &[u8]) -> io::Result<()> {
    rustix::fs::lsetxattr(path, attribute, value, rustix::fs::XattrFlags::empty()).map_err(io::Error::from)
}

/// Whether `dir`'s default ACL gives `gid` an entry (what is made inside inherits it).
fn passes_on(dir: &OwnedFd, gid: u32) -> bool {
    let mut buf = [0u8; 1024];
    let Ok(n) = rustix::fs::fgetxattr(dir, "system.posix_acl_default", &mut buf) else { return false };
    buf.get(4..n)
        .unwrap_or_default()
        .chunks_exact(8)
        .any(|e| u16::from_le_bytes([e[0], e[1]]) == GROUP && u32::from_le_bytes([e[4], e[5], e[6], e[7]]) == gid)
}

/// The mode's entries and one named group with `perms`.
fn group_acl(mode: u32, gid: u32, perms: u16) -> Vec<u8> {
    let bits = |shift: u32| ((mode >> shift) & 0o7) as u16;
    let group = bits(3);
    let entries = [
        (USER_OBJ, bits(6), UNDEFINED_ID),
        (GROUP_OBJ, group, UNDEFINED_ID),
        (GROUP, perms & 0o7, gid),
        (MASK, group | (perms & 0o7), UNDEFINED_ID),
        (OTHER, bits(0), UNDEFINED_ID),
    ];
    encode(&entries)
}

fn encode(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut out = VERSION.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

/// The attribute's bytes: entries in the order the kernel requires (by tag, then id).
fn access_acl(mode: u32, users: &[u32], perms: u16) -> Vec<u8> {
    let bits = |shift: u32| ((mode >> shift) & 0o7) as u16;
    let mut named: Vec<u32> = users.to_vec();
    named.sort_unstable();
    named.dedup();
    let group = bits(3);
    let mut entries = vec![(USER_OBJ, bits(6), UNDEFINED_ID)];
    entries.extend(named.iter().map(|&uid| (USER, perms & 0o7, uid)));
    entries.push((GROUP_OBJ, group, UNDEFINED_ID));
    if !named.is_empty() {
        // The mask bounds the named entries and the owning group: it must let both through.
        entries.push((MASK, group | (perms & 0o7), UNDEFINED_ID));
    }
    entries.push((OTHER, bits(0), UNDEFINED_ID));
    encode(&entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The access ACL of `path` as the kernel keeps it (read back, not as
    /// written): its (tag, perm, id) entries; empty if it has none.
    fn entries(path: &Path) -> Vec<(u16, u16, u32)> {
        let mut buf = [0u8; 1024];
        let Ok(n) = rustix::fs::getxattr(path, "system.posix_acl_access", &mut buf) else { return Vec::new() };
        buf.get(4..n)
            .unwrap_or_default()
            .chunks_exact(8)
            .map(|e| {
                (
                    u16::from_le_bytes([e[0], e[1]]),
                    u16::from_le_bytes([e[2], e[3]]),
                    u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
                )
            })
            .collect()
    }

    #[test]
    fn a_shared_tree_lets_the_group_in_and_passes_it_on_to_what_is_made_later() {
        // SAFETY: geteuid(2) reads the caller's effective uid.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = std::env::temp_dir().join(format!("volley-acl-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a")).expect("dirs");
        std::fs::write(dir.join("a/old"), b"x").expect("file");
        share_tree_with_group(&dir, 199_999, &[]).expect("shared");
        std::fs::write(dir.join("a/new"), b"y").expect("file");
        let group_perms = |p: &Path| entries(p).into_iter().find(|e| e.0 == GROUP && e.2 == 199_999).map(|e| e.1);
        assert_eq!(group_perms(&dir.join("a/old")), Some(READ | WRITE), "a file there before");
        // (Inherited as the default's rwx; the file's mask, from its mode, leaves rw of it.)
        let inherited = group_perms(&dir.join("a/new")).unwrap_or(0);
        assert_eq!(inherited & (READ | WRITE), READ | WRITE, "a file made after, by inheritance");
        assert_eq!(group_perms(&dir.join("a")), Some(READ | WRITE | EXECUTE), "a directory");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_link_in_a_shared_tree_or_a_socket_directory_is_not_followed() {
        // SAFETY: geteuid(2) reads the caller's effective uid.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let base = std::env::temp_dir().join(format!("volley-acl-links-{}", std::process::id()));
        let (tree, outside) = (base.join("tree"), base.join("outside"));
        std::fs::create_dir_all(&tree).expect("dirs");
        std::fs::write(&outside, b"not shared").expect("file");
        std::os::unix::fs::symlink(&outside, tree.join("link")).expect("link");
        std::os::unix::fs::symlink(&base, tree.join("dir-link")).expect("link");
        share_tree_with_group(&tree, 199_998, &[]).expect("shared");
        let has_acl = |p: &Path| !entries(p).is_empty();
        assert!(has_acl(&tree), "the tree itself is shared");
        assert!(!has_acl(&outside), "what a link in the tree points to is not");
        assert!(!has_acl(&base), "nor a directory a link points to");
        assert!(grant_users(&tree.join("link"), &[200_001], READ | WRITE).is_err(), "a link is not granted through");
        assert!(!has_acl(&outside));
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn entries_come_sorted_with_a_mask_only_when_users_are_named() {
        let plain = access_acl(0o750, &[], READ);
        assert_eq!(plain.len(), 4 + 3 * 8);
        let named = access_acl(0o700, &[200_002, 200_001, 200_002], READ | WRITE);
        // header, user_obj, two users (deduplicated, ascending), group_obj, mask, other
        assert_eq!(named.len(), 4 + 6 * 8);
        let entry = |i: usize| {
            let at = 4 + i * 8;
            let b = &named[at..at + 8];
            (
                u16::from_le_bytes([b[0], b[1]]),
                u16::from_le_bytes([b[2], b[3]]),
                u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            )
        };
        assert_eq!(entry(0), (USER_OBJ, 7, UNDEFINED_ID));
        assert_eq!(entry(1), (USER, 6, 200_001));
        assert_eq!(entry(2), (USER, 6, 200_002));
        assert_eq!(entry(3), (GROUP_OBJ, 0, UNDEFINED_ID));
        assert_eq!(entry(4), (MASK, 6, UNDEFINED_ID));
        assert_eq!(entry(5), (OTHER, 0, UNDEFINED_ID));
    }
}
