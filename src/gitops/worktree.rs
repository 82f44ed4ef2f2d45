//! The files of the config repository's clone. A config repository is untrusted input: it
//! can commit a symbolic link (`apps/app.yaml -> /etc/…`, or a linked directory on the
//! way) that, followed, would make runner read or rewrite a file of this machine.
//!
//! Every read and write of a file in the clone goes through [`Worktree`], which
//! - takes `/`-separated paths relative to the clone's root (no `..`, nothing inside `.git`);
//! - walks the path one component at a time without following links and refuses a symbolic
//!   link anywhere on it ([`GitopsError::Symlink`], naming the file and the link): links
//!   are never followed, not even those that would stay inside the clone (a link that
//!   points elsewhere in the repository is edited through its real path);
//! - reads a file only when the open file is the one the walk found, and at most a size
//!   limit of it;
//! - writes through a temporary file in the same directory renamed over the old one (a
//!   rename replaces a name, it never writes through it), keeping the file's mode;
//! - lists YAML files without entering or reading links ([`Worktree::yaml_files`]).

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::gitops::edit;
use crate::gitops::error::GitopsError;

/// Largest file read from the clone.
pub const MAX_FILE: u64 = 2 * 1024 * 1024;

/// A checked-out config repository.
#[derive(Debug, Clone)]
pub struct Worktree {
    root: PathBuf,
}

fn io_err(path: &Path, source: std::io::Error) -> GitopsError {
    GitopsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `rel` as a clean `/`-separated path inside the repository: `./` and empty components
/// dropped; absolute paths, `..` and `.git` refused.
pub fn clean_path(rel: &str) -> Result<String, GitopsError> {
    let parts: Vec<&str> = rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let bad = rel.starts_with('/')
        || rel.contains('\0')
        || parts.is_empty()
        || parts
            .iter()
            .any(|c| *c == ".." || c.eq_ignore_ascii_case(".git"));
    if bad {
        return Err(GitopsError::InvalidRequest(format!(
            "file `{rel}` must be a path inside the config repository (relative, no `..`, not in .git)"
        )));
    }
    Ok(parts.join("/"))
}

impl Worktree {
    pub fn new(root: impl Into<PathBuf>) -> Worktree {
        Worktree { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The host path of regular file `rel` and its metadata, reached without following a
    /// link. `rel` must be clean ([`clean_path`]).
    fn resolve(&self, rel: &str) -> Result<(PathBuf, std::fs::Metadata), GitopsError> {
        let parts: Vec<&str> = rel.split('/').collect();
        let mut path = self.root.clone();
        for (i, part) in parts.iter().enumerate() {
            path.push(part);
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(GitopsError::FileNotFound {
                        file: rel.to_string(),
                    })
                }
                Err(e) => return Err(io_err(&path, e)),
            };
            if meta.file_type().is_symlink() {
                return Err(GitopsError::Symlink {
                    file: rel.to_string(),
                    link: parts[..=i].join("/"),
                });
            }
            let last = i + 1 == parts.len();
            if !last && !meta.is_dir() {
                return Err(GitopsError::FileNotFound {
                    file: rel.to_string(),
                });
            }
            if last {
                if !meta.is_file() {
                    return Err(GitopsError::NotAFile {
                        file: rel.to_string(),
                    });
                }
                return Ok((path, meta));
            }
        }
        Err(GitopsError::FileNotFound {
            file: rel.to_string(),
        })
    }

    /// The bytes of regular file `rel` (at most `limit`; larger: [`GitopsError::TooLarge`]).
    pub fn read(&self, rel: &str, limit: u64) -> Result<Vec<u8>, GitopsError> {
        let rel = clean_path(rel)?;
        let (path, meta) = self.resolve(&rel)?;
        let file = std::fs::File::open(&path).map_err(|e| io_err(&path, e))?;
        let opened = file.metadata().map_err(|e| io_err(&path, e))?;
        if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
            // Replaced between the walk and the open: do not trust what was opened.
            return Err(GitopsError::Symlink {
                file: rel.clone(),
                link: rel,
            });
        }
        let mut bytes = Vec::new();
        file.take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| io_err(&path, e))?;
        if bytes.len() as u64 > limit {
            return Err(GitopsError::TooLarge { file: rel, limit });
        }
        Ok(bytes)
    }

    /// Replace regular file `rel` with `content` atomically, keeping its permissions.
    pub fn write(&self, rel: &str, content: &[u8]) -> Result<(), GitopsError> {
        let rel = clean_path(rel)?;
        let (path, meta) = self.resolve(&rel)?;
        let dir = path.parent().unwrap_or(&self.root);
        let mut tmp = tempfile::Builder::new()
            .prefix(".runner-gitops-")
            .tempfile_in(dir)
            .map_err(|e| io_err(dir, e))?;
        tmp.write_all(content).map_err(|e| io_err(tmp.path(), e))?;
        tmp.as_file()
            .set_permissions(meta.permissions())
            .map_err(|e| io_err(tmp.path(), e))?;
        tmp.persist(&path).map_err(|e| io_err(&path, e.error))?;
        Ok(())
    }

    /// Every YAML file (`*.yaml`, `*.yml`) of the clone, sorted, skipping hidden
    /// directories, `node_modules` and `vendor`. Links are not followed: a link with a YAML
    /// name is reported in the second list (as a note for the user).
    pub fn yaml_files(&self) -> Result<(Vec<String>, Vec<String>), GitopsError> {
        let mut files = Vec::new();
        let mut links = Vec::new();
        self.walk(&self.root, "", &mut files, &mut links)?;
        Ok((files, links))
    }

    fn walk(
        &self,
        dir: &Path,
        prefix: &str,
        files: &mut Vec<String>,
        links: &mut Vec<String>,
    ) -> Result<(), GitopsError> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| io_err(dir, e))?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            // DirEntry::file_type does not follow links.
            let Ok(ft) = e.file_type() else { continue };
            let rel = format!("{prefix}{name}");
            if ft.is_symlink() {
                if edit::is_yaml_name(&name) {
                    links.push(rel);
                }
            } else if ft.is_dir() {
                if name.starts_with('.') || name == "node_modules" || name == "vendor" {
                    continue;
                }
                self.walk(&e.path(), &format!("{rel}/"), files, links)?;
            } else if ft.is_file() && edit::is_yaml_name(&name) {
                files.push(rel);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn paths_stay_inside() {
        assert_eq!(clean_path("./a//b.yaml").unwrap(), "a/b.yaml");
        for bad in ["/etc/x", "a/../../x", "..", ".git/config", "a/.GIT/x", ""] {
            assert!(clean_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn links_are_refused_for_reads_and_writes_and_skipped_by_the_walk() {
        let tmp = tempfile::tempdir().unwrap();
        let host = tmp.path().join("host.yaml");
        std::fs::write(&host, "image: x\n").unwrap();
        let root = tmp.path().join("repo");
        std::fs::create_dir_all(root.join("apps/real")).unwrap();
        std::fs::write(root.join("apps/real/a.yaml"), "a: 1\n").unwrap();
        symlink(&host, root.join("apps/evil.yaml")).unwrap();
        symlink(tmp.path(), root.join("linked")).unwrap();
        symlink("real", root.join("apps/inside")).unwrap();
        let wt = Worktree::new(&root);
        for (rel, link) in [
            ("apps/evil.yaml", "apps/evil.yaml"),
            ("linked/host.yaml", "linked"),
            ("apps/inside/a.yaml", "apps/inside"),
        ] {
            match wt.read(rel, MAX_FILE) {
                Err(GitopsError::Symlink { file, link: l }) => {
                    assert_eq!((file.as_str(), l.as_str()), (rel, link));
                }
                other => panic!("{rel}: {other:?}"),
            }
            assert!(matches!(
                wt.write(rel, b"pwned"),
                Err(GitopsError::Symlink { .. })
            ));
        }
        assert_eq!(std::fs::read_to_string(&host).unwrap(), "image: x\n");
        let (files, links) = wt.yaml_files().unwrap();
        assert_eq!(files, ["apps/real/a.yaml"]);
        assert_eq!(links, ["apps/evil.yaml"]);
        assert!(matches!(
            wt.read("apps/nope.yaml", MAX_FILE),
            Err(GitopsError::FileNotFound { .. })
        ));
        assert!(matches!(
            wt.read("apps/real", MAX_FILE),
            Err(GitopsError::NotAFile { .. })
        ));
        assert!(matches!(
            wt.read("apps/real/a.yaml", 3),
            Err(GitopsError::TooLarge { .. })
        ));
    }

    #[test]
    fn writes_replace_the_file_and_keep_its_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("run.yaml");
        std::fs::write(&p, "a: 1\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let wt = Worktree::new(tmp.path());
        wt.write("run.yaml", b"a: 2\n").unwrap();
        assert_eq!(wt.read("run.yaml", MAX_FILE).unwrap(), b"a: 2\n");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
