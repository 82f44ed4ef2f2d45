//! Local cache volumes: CodeBuild's `LOCAL_CUSTOM_CACHE` for `cache.paths`.
//!
//! On one machine, the cache paths of a project live in engine volumes named after the
//! project and the path, which outlive the build container. A build that finds in them
//! the state a successful build left under the same key (or a fallback key) uses them as
//! they are: nothing is extracted, nothing is deleted when the container goes. The
//! archive in the store is still written, for other machines (S3) and for when the
//! volumes cannot be used.
//!
//! This module is the bookkeeping only (no engine calls): a lease — an exclusive lock per
//! project, so two builds never share the volumes — and a state file that says which key
//! the volumes hold. The state is removed when a lease is taken and written back only
//! after a successful build, so a failed, cancelled or killed build leaves volumes that
//! the next build resets instead of trusting.

use super::archive::hex;
use super::error::CacheError;
use super::store::now_ns;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the volumes of a project hold, as the last successful build left them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeState {
    /// The cache key that build saved under (after shell expansion).
    pub key: String,
    /// The image the build ran on: volumes are first filled from the image's content.
    pub image: String,
    /// The container paths the volumes are mounted at, sorted.
    pub prefixes: Vec<String>,
    /// When the state was written (ns since the epoch), to compare with store entries.
    pub saved_ns: u64,
    /// `fingerprint` of the volumes when their content was last saved to the store under
    /// `key`: the same fingerprint at the end of a build means there is nothing new to save.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_fingerprint: Option<String>,
}

/// How the volumes serve a build's restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeUse {
    /// The volumes hold this key's state: use them, restore nothing.
    Reuse { matched_key: String },
    /// The volumes must be reset to the image's content (then the archive, if any, is
    /// extracted into them).
    Reset,
}

/// An exclusive hold on a project's cache volumes for one build. Dropping it releases
/// the lock (as does the process ending, however it ends).
#[derive(Debug)]
pub struct VolumeLease {
    _lock: File,
    state_path: PathBuf,
    image: String,
    /// `(container path, volume name)`, sorted by path.
    volumes: Vec<(String, String)>,
    /// What the volumes held when the lease was taken, when it can be trusted.
    held: Option<VolumeState>,
}

/// The engine volume holding container path `prefix` for `project`, for the runner whose
/// lease directory is `scope` (two runners with their own data directories on one engine
/// never share volumes, as they do not share locks).
pub fn volume_name(scope: &Path, project: &str, prefix: &str) -> String {
    let mut h = Sha256::new();
    h.update(scope.as_os_str().as_encoded_bytes());
    h.update([0]);
    h.update(prefix.as_bytes());
    format!("{}{}", volume_prefix(project), hex(&h.finalize()[..6]))
}

/// What the names of `project`'s cache volumes start with (`docker volume ls --filter
/// name=...`).
pub fn volume_prefix(project: &str) -> String {
    format!("runner-cache-{}-", safe_name(project))
}

fn safe_name(project: &str) -> String {
    project
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(60)
        .collect()
}

/// A project's file stem in the lease directory (its name, made safe, and a hash of it so
/// that two names made safe alike do not share a lock).
fn stem(project: &str) -> String {
    let hash = hex(&Sha256::digest(project.as_bytes())[..4]);
    format!("{}-{hash}", safe_name(project))
}

/// Takes an exclusive lock on `<dir>/<project>.<what>.lock` without waiting; `Ok(None)`
/// when another build holds it.
pub fn try_lock(dir: &Path, project: &str, what: &str) -> Result<Option<File>, CacheError> {
    fs::create_dir_all(dir).map_err(|e| CacheError::io("create directory", dir, e))?;
    let path = dir.join(format!("{}.{what}.lock", stem(project)));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| CacheError::io("open", &path, e))?;
    // A few tries: a lock just released can look held for a moment, while a child
    // process forked by this one (between fork and exec) still shares the descriptor.
    for _ in 0..5 {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(20)),
            Err(TryLockError::Error(e)) => return Err(CacheError::io("lock", &path, e)),
        }
    }
    Ok(None)
}

/// For `runner cache invalidate`: takes the project's volume lock and forgets what the
/// volumes hold. `Ok(None)`: a build of the project holds them. Keep the returned lock
/// while removing the volumes.
pub fn invalidate(dir: &Path, project: &str) -> Result<Option<File>, CacheError> {
    let Some(lock) = try_lock(dir, project, "volumes")? else {
        return Ok(None);
    };
    let state_path = dir.join(format!("{}.volumes.json", stem(project)));
    match fs::remove_file(&state_path) {
        Ok(()) => Ok(Some(lock)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Some(lock)),
        Err(e) => Err(CacheError::io("remove", &state_path, e)),
    }
}

impl VolumeLease {
    /// Takes the lease on `project`'s volumes for the container paths `prefixes`, in
    /// `dir` (runner's `<data dir>/cache/volumes`). `Ok(None)`: another build of the
    /// project holds them; use anonymous volumes and the archive.
    pub fn acquire(
        dir: &Path,
        project: &str,
        image: &str,
        prefixes: &[String],
    ) -> Result<Option<VolumeLease>, CacheError> {
        let Some(lock) = try_lock(dir, project, "volumes")? else {
            return Ok(None);
        };
        let mut sorted = prefixes.to_vec();
        sorted.sort();
        sorted.dedup();
        let state_path = dir.join(format!("{}.volumes.json", stem(project)));
        let held = match fs::read(&state_path) {
            Ok(bytes) => serde_json::from_slice::<VolumeState>(&bytes)
                .ok()
                .filter(|s| s.image == image && s.prefixes == sorted),
            Err(_) => None,
        };
        // Not trusted again until this build ends well.
        match fs::remove_file(&state_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(CacheError::io("remove", &state_path, e)),
        }
        let volumes = sorted
            .iter()
            .map(|p| (p.clone(), volume_name(dir, project, p)))
            .collect();
        Ok(Some(VolumeLease {
            _lock: lock,
            state_path,
            image: image.to_string(),
            volumes,
            held,
        }))
    }

    /// `(container path, volume name)` for every volume of the lease.
    pub fn volumes(&self) -> &[(String, String)] {
        &self.volumes
    }

    /// What the volumes hold, when the last build that used them ended well.
    pub fn held(&self) -> Option<&VolumeState> {
        self.held.as_ref()
    }

    /// Forgets what the volumes held (they were reset).
    pub fn forget(&mut self) {
        self.held = None;
    }

    /// Decides how the volumes serve a restore of `key` with `fallback_keys`, given the
    /// entry the store would restore (`found`, with its key and creation time in ns).
    ///
    /// The volumes are used when they hold `key` itself; or, when the store has no entry
    /// for `key`, when they hold a fallback match no older than the store's.
    pub fn decide(
        &self,
        key: &str,
        fallback_keys: &[String],
        found: Option<(&str, u64)>,
    ) -> VolumeUse {
        let Some(held) = &self.held else {
            return VolumeUse::Reset;
        };
        if held.key == key {
            return VolumeUse::Reuse {
                matched_key: held.key.clone(),
            };
        }
        let fallback = fallback_keys
            .iter()
            .any(|f| !f.is_empty() && held.key.starts_with(f.as_str()));
        let store_better = match found {
            Some((k, _)) if k == key => true,
            Some((k, _)) if k == held.key => false,
            Some((_, created)) => created > held.saved_ns,
            None => false,
        };
        if fallback && !store_better {
            VolumeUse::Reuse {
                matched_key: held.key.clone(),
            }
        } else {
            VolumeUse::Reset
        }
    }

    /// Records, after a successful build, that the volumes now hold `key`'s state, and
    /// the fingerprint of what the store holds under `key` when it is theirs.
    pub fn commit(&self, key: &str, saved_fingerprint: Option<String>) -> Result<(), CacheError> {
        let state = VolumeState {
            key: key.to_string(),
            image: self.image.clone(),
            prefixes: self.volumes.iter().map(|(p, _)| p.clone()).collect(),
            saved_ns: now_ns(),
            saved_fingerprint,
        };
        let bytes = serde_json::to_vec_pretty(&state).map_err(|e| CacheError::Stream {
            action: "write the cache volumes' state",
            source: io::Error::other(e),
        })?;
        let dir = self
            .state_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut tmp = tempfile::NamedTempFile::new_in(&dir)
            .map_err(|e| CacheError::io("create a temporary file in", &dir, e))?;
        tmp.write_all(&bytes)
            .and_then(|_| tmp.as_file().sync_all())
            .map_err(|e| CacheError::io("write", tmp.path().to_path_buf(), e))?;
        tmp.persist(&self.state_path)
            .map_err(|e| CacheError::io("write", &self.state_path, e.error))?;
        Ok(())
    }
}

/// A digest of the trees below `dirs`: every entry's path, type, mode, size, and
/// modification and change times, without following links. Any write to a file changes
/// its change time, which no tool can set back.
pub fn fingerprint(dirs: &[PathBuf]) -> String {
    use std::os::unix::fs::MetadataExt;
    let mut h = Sha256::new();
    for (i, root) in dirs.iter().enumerate() {
        let mut entries: Vec<(PathBuf, fs::Metadata)> = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            let Ok(list) = fs::read_dir(&d) else {
                continue;
            };
            for entry in list.flatten() {
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                if meta.is_dir() {
                    stack.push(entry.path());
                }
                entries.push((entry.path(), meta));
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        h.update((i as u64).to_le_bytes());
        for (path, m) in entries {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            h.update(rel.as_os_str().as_encoded_bytes());
            h.update([0]);
            for n in [
                u64::from(m.mode()),
                m.size(),
                m.mtime() as u64,
                m.mtime_nsec() as u64,
                m.ctime() as u64,
                m.ctime_nsec() as u64,
            ] {
                h.update(n.to_le_bytes());
            }
        }
    }
    hex(&h.finalize())
}

/// Removes everything inside `dir` (a volume's host directory), never following a link.
pub fn empty_dir(dir: &Path) -> Result<(), CacheError> {
    let entries = fs::read_dir(dir).map_err(|e| CacheError::io("read", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| CacheError::io("read", dir, e))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| CacheError::io("inspect", &path, e))?;
        let removed = if kind.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(|e| CacheError::io("remove", &path, e))?;
    }
    Ok(())
}

/// Regular files and their bytes below `dir`, without following links.
pub fn tree_size(dir: &Path) -> (u64, u64) {
    let mut files = 0;
    let mut bytes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    (files, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixes() -> Vec<String> {
        vec!["/src/.venv".into(), "/root/.cache/pip".into()]
    }

    fn lease(dir: &Path) -> VolumeLease {
        VolumeLease::acquire(dir, "app", "img", &prefixes())
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("lease busy"))
    }

    #[test]
    fn a_second_build_of_the_project_cannot_take_the_volumes() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let first = lease(dir.path());
        let second = VolumeLease::acquire(dir.path(), "app", "img", &prefixes())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(second.is_none());
        // Another project is independent.
        assert!(
            VolumeLease::acquire(dir.path(), "other", "img", &prefixes())
                .unwrap_or_else(|e| panic!("{e}"))
                .is_some()
        );
        drop(first);
        assert!(VolumeLease::acquire(dir.path(), "app", "img", &prefixes())
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some());
    }

    #[test]
    fn state_is_trusted_only_after_a_commit() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let l = lease(dir.path());
        assert!(l.held().is_none());
        l.commit("pip-1", None).unwrap_or_else(|e| panic!("{e}"));
        drop(l);
        let l = lease(dir.path());
        assert_eq!(l.held().map(|s| s.key.as_str()), Some("pip-1"));
        // Taken and dropped without a commit (a failed build): not trusted any more.
        drop(l);
        assert!(lease(dir.path()).held().is_none());
    }

    #[test]
    fn invalidating_forgets_the_state_and_waits_for_no_build() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        lease(dir.path())
            .commit("k", None)
            .unwrap_or_else(|e| panic!("{e}"));
        let running = lease(dir.path());
        assert!(invalidate(dir.path(), "app")
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none());
        running.commit("k", None).unwrap_or_else(|e| panic!("{e}"));
        drop(running);
        let lock = invalidate(dir.path(), "app").unwrap_or_else(|e| panic!("{e}"));
        assert!(lock.is_some());
        drop(lock);
        assert!(lease(dir.path()).held().is_none());
    }

    #[test]
    fn another_image_or_other_paths_are_not_trusted() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        lease(dir.path())
            .commit("k", None)
            .unwrap_or_else(|e| panic!("{e}"));
        let other = VolumeLease::acquire(dir.path(), "app", "img2", &prefixes())
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("busy"));
        assert!(other.held().is_none());
        other.commit("k", None).unwrap_or_else(|e| panic!("{e}"));
        drop(other);
        let fewer = VolumeLease::acquire(dir.path(), "app", "img2", &prefixes()[..1])
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("busy"));
        assert!(fewer.held().is_none());
    }

    #[test]
    fn decides_reuse_for_the_key_or_a_fallback_the_store_has_nothing_newer_for() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        lease(dir.path())
            .commit("pip-aaa", None)
            .unwrap_or_else(|e| panic!("{e}"));
        let l = lease(dir.path());
        let saved = l.held().map(|s| s.saved_ns).unwrap_or(0);
        let reuse = VolumeUse::Reuse {
            matched_key: "pip-aaa".into(),
        };
        let fb = vec!["pip-".to_string()];
        // Exact key.
        assert_eq!(l.decide("pip-aaa", &[], None), reuse);
        assert_eq!(l.decide("pip-aaa", &[], Some(("pip-aaa", saved))), reuse);
        // Key change, no fallback: reset.
        assert_eq!(l.decide("pip-bbb", &[], None), VolumeUse::Reset);
        // Key change with a matching fallback.
        assert_eq!(l.decide("pip-bbb", &fb, None), reuse);
        assert_eq!(l.decide("pip-bbb", &fb, Some(("pip-aaa", saved))), reuse);
        assert_eq!(
            l.decide("pip-bbb", &fb, Some(("pip-ccc", saved - 1))),
            reuse
        );
        // ...unless the store has the key itself or a newer fallback match.
        assert_eq!(
            l.decide("pip-bbb", &fb, Some(("pip-bbb", 0))),
            VolumeUse::Reset
        );
        assert_eq!(
            l.decide("pip-bbb", &fb, Some(("pip-ccc", saved + 1))),
            VolumeUse::Reset
        );
        // A fallback that does not match the held key.
        assert_eq!(
            l.decide("npm-1", &["npm-".to_string()], None),
            VolumeUse::Reset
        );
    }

    #[test]
    fn names_are_per_project_and_path_and_safe() {
        let scope = Path::new("/data/cache-volumes");
        let a = volume_name(scope, "my app/1", "/src/.venv");
        assert!(a.starts_with(&volume_prefix("my app/1")), "{a}");
        assert!(a.starts_with("runner-cache-my-app-1-"), "{a}");
        assert_ne!(a, volume_name(scope, "my app/1", "/root/.cache/pip"));
        assert_ne!(a, volume_name(scope, "other", "/src/.venv"));
        assert_ne!(
            a,
            volume_name(Path::new("/other"), "my app/1", "/src/.venv")
        );
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
    }

    #[test]
    fn the_fingerprint_changes_with_any_write_and_is_kept_in_the_state() {
        let vol = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        fs::create_dir_all(vol.path().join("lib")).unwrap_or_else(|e| panic!("{e}"));
        fs::write(vol.path().join("lib/a.py"), b"one").unwrap_or_else(|e| panic!("{e}"));
        let dirs = [vol.path().to_path_buf()];
        let first = fingerprint(&dirs);
        assert_eq!(first, fingerprint(&dirs), "stable");
        // Same size, content rewritten.
        fs::write(vol.path().join("lib/a.py"), b"two").unwrap_or_else(|e| panic!("{e}"));
        let second = fingerprint(&dirs);
        assert_ne!(first, second);
        fs::write(vol.path().join("lib/b.py"), b"").unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(second, fingerprint(&dirs));

        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        lease(dir.path())
            .commit("k", Some(second.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
        let l = lease(dir.path());
        assert_eq!(
            l.held().and_then(|s| s.saved_fingerprint.clone()),
            Some(second)
        );
    }

    #[test]
    fn empties_a_directory_without_following_links() {
        let vol = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let outside = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        fs::write(outside.path().join("keep"), b"k").unwrap_or_else(|e| panic!("{e}"));
        fs::create_dir_all(vol.path().join("a/b")).unwrap_or_else(|e| panic!("{e}"));
        fs::write(vol.path().join("a/b/f"), b"123").unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(outside.path(), vol.path().join("link"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tree_size(vol.path()), (1, 3));
        empty_dir(vol.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fs::read_dir(vol.path()).map(|d| d.count()).unwrap_or(9), 0);
        assert!(outside.path().join("keep").exists());
    }
}
