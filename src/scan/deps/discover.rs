//! Finding lockfiles below a directory (skipping `node_modules`, `.git` and `target`).

use crate::scan::deps::lockfile::LockfileKind;
use std::path::{Path, PathBuf};

/// Directories never descended into.
pub const SKIP_DIRS: [&str; 3] = ["node_modules", ".git", "target"];

/// A lockfile found below the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    /// Relative to the root, `/`-separated.
    pub rel: String,
    pub kind: LockfileKind,
}

/// Walks `root` (symlinks not followed) and returns its lockfiles sorted by path, plus
/// the paths that could not be read (with the reason). If `root` is a file, it is the
/// only candidate.
pub fn find_lockfiles(root: &Path) -> (Vec<Found>, Vec<(String, String)>) {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    let walker = walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            e.depth() == 0
                || !(e.file_type().is_dir() && SKIP_DIRS.iter().any(|d| e.file_name() == *d))
        });
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let p = e.path().map(|p| rel_of(root, p)).unwrap_or_default();
                errors.push((p, e.to_string()));
                continue;
            }
        };
        if !entry.file_type().is_file() {
            continue;
        }
        let Some(kind) = entry.file_name().to_str().and_then(LockfileKind::detect) else {
            continue;
        };
        let rel = if entry.depth() == 0 {
            entry.file_name().to_string_lossy().into_owned()
        } else {
            rel_of(root, entry.path())
        };
        found.push(Found {
            path: entry.path().to_path_buf(),
            rel,
            kind,
        });
    }
    (found, errors)
}

fn rel_of(root: &Path, p: &Path) -> String {
    let rel = p.strip_prefix(root).unwrap_or(p);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn skips_vendor_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        for f in [
            "Cargo.lock",
            "web/package-lock.json",
            "web/node_modules/x/package-lock.json",
            "target/Cargo.lock",
            ".git/yarn.lock",
            "py/requirements-dev.txt",
            "py/notes.txt",
        ] {
            let path = p.join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        let (found, errors) = find_lockfiles(p);
        let rels: Vec<_> = found.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(
            rels,
            [
                "Cargo.lock",
                "py/requirements-dev.txt",
                "web/package-lock.json"
            ]
        );
        assert!(errors.is_empty());
        let (single, _) = find_lockfiles(&p.join("Cargo.lock"));
        assert_eq!(single[0].rel, "Cargo.lock");
    }
}
