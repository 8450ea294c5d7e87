//! Where a storage URL points, so that a job can tell whether its output would
//! land on its input before it touches anything.

use std::path::{Component, Path, PathBuf};

/// How two storage locations relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// They are the same place.
    Same,
    /// The first lies inside the second.
    Inside,
    /// The first contains the second.
    Contains,
    /// Neither holds the other.
    Apart,
}

/// How location `a` relates to location `b` (URLs as [`crate::Storage::open`]
/// takes them). Local paths are compared after resolving `.`, `..` and, where
/// the directories exist, symbolic links; S3 locations by bucket and key
/// prefix, segment by segment (`s3://b/data` does not contain `s3://b/data2`).
pub fn overlap(a: &str, b: &str) -> Overlap {
    let (a, b) = (Place::of(a), Place::of(b));
    if a.root != b.root {
        return Overlap::Apart;
    }
    let common = a.segments.iter().zip(&b.segments).take_while(|(x, y)| x == y).count();
    match (common == a.segments.len(), common == b.segments.len()) {
        (true, true) => Overlap::Same,
        (false, true) => Overlap::Inside,
        (true, false) => Overlap::Contains,
        (false, false) => Overlap::Apart,
    }
}

/// A location as a root (`file` or `s3://bucket`) and path segments.
struct Place {
    root: String,
    segments: Vec<String>,
}

impl Place {
    fn of(url: &str) -> Place {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            return Place { root: format!("s3://{bucket}"), segments: segments(prefix) };
        }
        let path = resolve(Path::new(url.strip_prefix("file://").unwrap_or(url)));
        let segments = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        Place { root: "file".into(), segments }
    }
}

fn segments(prefix: &str) -> Vec<String> {
    prefix.split('/').filter(|s| !s.is_empty() && *s != ".").map(String::from).collect()
}

/// The path with `.` and `..` resolved and, for the longest part of it that
/// exists, symbolic links followed.
fn resolve(path: &Path) -> PathBuf {
    let absolute = match path.is_absolute() {
        true => path.to_path_buf(),
        false => std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")).join(path),
    };
    let mut lexical = PathBuf::from("/");
    for c in absolute.components() {
        match c {
            Component::ParentDir => {
                lexical.pop();
            }
            Component::Normal(s) => lexical.push(s),
            _ => {}
        }
    }
    let mut existing = lexical.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match existing.file_name() {
            Some(name) => rest.push(name.to_os_string()),
            None => break,
        }
        existing.pop();
    }
    let mut resolved = std::fs::canonicalize(&existing).unwrap_or(existing);
    resolved.extend(rest.into_iter().rev());
    resolved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_locations_compare_by_segments() {
        assert_eq!(overlap("s3://b/data", "s3://b/data/"), Overlap::Same);
        assert_eq!(overlap("s3://b/data/out", "s3://b/data"), Overlap::Inside);
        assert_eq!(overlap("s3://b/data", "s3://b/data/in"), Overlap::Contains);
        assert_eq!(overlap("s3://b/data", "s3://b/data2"), Overlap::Apart);
        assert_eq!(overlap("s3://b/data", "s3://c/data"), Overlap::Apart);
        assert_eq!(overlap("s3://b", "s3://b/x"), Overlap::Contains);
    }

    #[test]
    fn local_paths_compare_after_resolving_dots_and_links() {
        assert_eq!(overlap("file:///tmp/a/b", "/tmp/a/./b/"), Overlap::Same);
        assert_eq!(overlap("file:///tmp/a/b/../c", "file:///tmp/a/c"), Overlap::Same);
        assert_eq!(overlap("file:///tmp/a/out", "file:///tmp/a"), Overlap::Inside);
        assert_eq!(overlap("file:///tmp/a", "file:///tmp/ab"), Overlap::Apart);
        assert_eq!(overlap("file:///tmp/a", "s3://tmp/a"), Overlap::Apart);
        let dir = std::env::temp_dir().join(format!("volley-overlap-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("real")).unwrap();
        let link = dir.join("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(dir.join("real"), &link).unwrap();
        let via_link = format!("file://{}/out", link.display());
        let direct = format!("file://{}", dir.join("real").display());
        assert_eq!(overlap(&via_link, &direct), Overlap::Inside);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
