//! Writing an artifact as a directory tree, and the temporary-path-then-rename dance that
//! makes replacing an artifact all-or-nothing.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::beneath::Tree;
use super::collect::Planned;
use super::error::ArtifactError;
use super::glob::EntryKind;

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique_name(dir: &Path, identifier: &str, what: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{identifier}.{what}-{}-{n}", std::process::id()))
}

/// Removes a file, symlink or directory tree without following symlinks.
fn remove_any(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A temporary path inside the output directory, removed on drop unless committed.
#[derive(Debug)]
pub(super) struct TempPath {
    path: PathBuf,
    dir: PathBuf,
    identifier: String,
    committed: bool,
}

impl TempPath {
    pub(super) fn new(out_dir: &Path, identifier: &str) -> Self {
        TempPath {
            path: unique_name(out_dir, identifier, "partial"),
            dir: out_dir.to_path_buf(),
            identifier: identifier.to_string(),
            committed: false,
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the finished temporary output to `dest`, replacing what was there.
    pub(super) fn commit(mut self, dest: &Path) -> Result<(), ArtifactError> {
        if fs::symlink_metadata(dest).is_ok() {
            let old = unique_name(&self.dir, &self.identifier, "old");
            fs::rename(dest, &old)
                .map_err(|e| ArtifactError::io("move the previous artifact aside", dest, e))?;
            if let Err(e) = fs::rename(&self.path, dest) {
                // Put the previous artifact back; the temporary output is dropped.
                let _ = fs::rename(&old, dest);
                return Err(ArtifactError::io(
                    "move the new artifact into place",
                    dest,
                    e,
                ));
            }
            // Best effort: a leftover `.<id>.old-*` is harmless and hidden.
            let _ = remove_any(&old);
        } else {
            fs::rename(&self.path, dest)
                .map_err(|e| ArtifactError::io("move the new artifact into place", dest, e))?;
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if !self.committed {
            let _ = remove_any(&self.path);
        }
    }
}

/// Writes the planned entries below the new directory `root`; returns the bytes copied.
/// Files are read from `tree` (never through a link leading out of it).
pub(super) fn write_tree(
    root: &Path,
    tree: &Tree,
    planned: &[Planned],
) -> Result<u64, ArtifactError> {
    fs::create_dir(root).map_err(|e| ArtifactError::io("create", root, e))?;
    let mut bytes = 0u64;
    for p in planned {
        let dest = root.join(&p.dest);
        if !dest.starts_with(root) {
            return Err(ArtifactError::UnsafeDestination {
                path: p.dest.clone(),
            });
        }
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| ArtifactError::io("create", parent, e))?;
        }
        match &p.entry.kind {
            EntryKind::File { .. } => {
                let (mut src, meta) = tree
                    .open_file(&p.entry.abs)
                    .map_err(|e| ArtifactError::io("read", &p.entry.abs, e))?;
                let mut out = File::options()
                    .write(true)
                    .create_new(true)
                    .mode(meta.mode)
                    .open(&dest)
                    .map_err(|e| ArtifactError::io("create", &dest, e))?;
                bytes += io::copy(&mut src, &mut out)
                    .map_err(|e| ArtifactError::io("copy", &p.entry.abs, e))?;
                // The mode as the source has it (not narrowed by the umask), as `cp -p`.
                let _ = out.set_permissions(fs::Permissions::from_mode(meta.mode));
                if let Some(mtime) = meta.modified() {
                    // Keeping the mtime is best effort (some file systems refuse it).
                    let _ = out.set_modified(mtime);
                }
            }
            EntryKind::Symlink { target } => make_symlink(target, &dest)?,
        }
    }
    Ok(bytes)
}

#[cfg(unix)]
fn make_symlink(target: &Path, dest: &Path) -> Result<(), ArtifactError> {
    std::os::unix::fs::symlink(target, dest)
        .map_err(|e| ArtifactError::io("create symlink", dest, e))
}

#[cfg(not(unix))]
fn make_symlink(_target: &Path, dest: &Path) -> Result<(), ArtifactError> {
    Err(ArtifactError::io(
        "create symlink",
        dest,
        std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "symlinks in artifacts need a unix host; turn off enable-symlinks",
        ),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_temp_path_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path;
        {
            let tmp = TempPath::new(dir.path(), "a");
            path = tmp.path().to_path_buf();
            fs::create_dir(&path).unwrap();
            fs::write(path.join("f"), "x").unwrap();
        }
        assert!(!path.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn commit_replaces_existing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a");
        fs::create_dir(&dest).unwrap();
        fs::write(dest.join("stale"), "old").unwrap();
        let tmp = TempPath::new(dir.path(), "a");
        fs::create_dir(tmp.path()).unwrap();
        fs::write(tmp.path().join("fresh"), "new").unwrap();
        tmp.commit(&dest).unwrap();
        assert!(dest.join("fresh").exists());
        assert!(!dest.join("stale").exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
