//! File selection shared by `artifacts:` and `reports:`: CodeBuild-style globs below a
//! base directory, with the containment rules that keep every selected path inside the
//! build's source directory.
//!
//! Rules (AWS CodeBuild buildspec reference, `artifacts` and `reports` sections):
//! - patterns and `base-directory` are relative; leading `./` and empty components are
//!   ignored; an absolute path or any `..` component is refused ([`GlobError::Escapes`]);
//! - `*` matches within one path component, `**` across components (`**/*` = every file
//!   recursively, hidden files included); a pattern without metacharacters names one file;
//! - only regular files (and, when symlinks are kept, symlinks) are selected: directories,
//!   fifos, sockets and devices never are;
//! - a symlink whose target resolves outside the source directory is never followed nor
//!   kept: it is skipped and reported in [`Selection::warnings`].

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};

/// Why a selection could not be made at all.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GlobError {
    #[error(
        "path `{path}` escapes the source directory; write it relative to the source root \
         without `..` or a leading `/`"
    )]
    Escapes { path: String },
    #[error("invalid glob pattern `{pattern}`: {reason}; fix the pattern in the buildspec")]
    BadPattern { pattern: String, reason: String },
    #[error(
        "base-directory {} does not exist or is not a directory; check `base-directory` \
         (it is relative to the source root) and that the build produced it",
        path.display()
    )]
    BaseDirectoryMissing { path: PathBuf },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What to select.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Query<'a> {
    /// The build's source directory on the host.
    pub src_root: &'a Path,
    /// `base-directory:` as written (relative to `src_root`).
    pub base_directory: Option<&'a str>,
    /// `files:` patterns as written (relative to the base directory).
    pub files: &'a [String],
    /// `exclude-paths:` patterns as written (relative to the base directory).
    pub exclude: &'a [String],
    /// `true`: symlinks are selected as symlinks and never followed;
    /// `false`: symlinks (to files and directories) inside `src_root` are followed.
    pub keep_symlinks: bool,
    /// A directory never to descend into (the output directory when it lies in the tree).
    pub skip_dir: Option<&'a Path>,
}

/// How a selected entry is to be reproduced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryKind {
    /// A regular file (possibly reached through followed symlinks) of `len` bytes.
    File { len: u64 },
    /// A symlink kept as such, with its target as written in the link.
    Symlink { target: PathBuf },
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Path relative to the base directory (only `Normal` components).
    pub rel: PathBuf,
    /// Absolute host path to read from.
    pub abs: PathBuf,
    pub kind: EntryKind,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Selection {
    /// The canonical base directory.
    pub base: PathBuf,
    /// Selected entries, sorted by `rel`, without duplicates.
    pub entries: Vec<Entry>,
    /// Paths that matched but were skipped (symlink policy, special files, loops).
    pub warnings: Vec<String>,
    /// How many matching entries `exclude-paths` removed.
    pub excluded: usize,
    /// Normalised patterns that named a directory rather than files (for hints).
    pub directory_patterns: Vec<String>,
}

/// Normalises a relative path or pattern: drops `.` and empty components, refuses
/// absolute paths and `..`. Returns the components joined with `/` (empty = the root).
pub(crate) fn normalize_relative(raw: &str) -> Result<String, GlobError> {
    let escapes = || GlobError::Escapes {
        path: raw.to_string(),
    };
    if raw.starts_with('/') || raw.starts_with('\\') || Path::new(raw).is_absolute() {
        return Err(escapes());
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(escapes()),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

fn is_glob_meta(component: &str) -> bool {
    component.contains(['*', '?', '[', ']', '{', '}', '\\'])
}

/// The leading literal components of a normalised pattern (where a walk can start).
fn literal_prefix(pattern: &str) -> String {
    let mut out = Vec::new();
    for c in pattern.split('/') {
        if is_glob_meta(c) {
            break;
        }
        out.push(c);
    }
    out.join("/")
}

fn build_set(patterns: &[String]) -> Result<(GlobSet, Vec<String>), GlobError> {
    let mut builder = GlobSetBuilder::new();
    let mut normalised = Vec::with_capacity(patterns.len());
    for raw in patterns {
        let pattern = normalize_relative(raw)?;
        if pattern.is_empty() {
            return Err(GlobError::BadPattern {
                pattern: raw.clone(),
                reason: "the pattern is empty (use `**/*` for every file)".to_string(),
            });
        }
        let glob = GlobBuilder::new(&pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| GlobError::BadPattern {
                pattern: raw.clone(),
                reason: e.kind().to_string(),
            })?;
        builder.add(glob);
        normalised.push(pattern);
    }
    let set = builder.build().map_err(|e| GlobError::BadPattern {
        pattern: patterns.join(", "),
        reason: e.kind().to_string(),
    })?;
    Ok((set, normalised))
}

fn canonical(path: &Path, action: &'static str) -> Result<PathBuf, GlobError> {
    std::fs::canonicalize(path).map_err(|source| GlobError::Io {
        action,
        path: path.to_path_buf(),
        source,
    })
}

/// Resolves `..`/`.` lexically (no file system access).
fn lexical_normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Where a symlink ends up: `Some(true)` inside `root`, `Some(false)` outside.
/// Dangling links are judged lexically from their target text.
fn symlink_inside(link: &Path, root: &Path) -> (bool, bool) {
    match std::fs::canonicalize(link) {
        Ok(resolved) => (resolved.starts_with(root), false),
        Err(_) => {
            let Ok(target) = std::fs::read_link(link) else {
                return (false, true);
            };
            let parent = link.parent().unwrap_or(root);
            let joined = lexical_normalize(&parent.join(target));
            (joined.starts_with(root), true)
        }
    }
}

/// Resolves the base directory and checks it stays inside `src_root`.
/// Returns `(canonical src_root, canonical base)`.
pub(crate) fn resolve_base(
    src_root: &Path,
    base_directory: Option<&str>,
) -> Result<(PathBuf, PathBuf), GlobError> {
    let root = canonical(src_root, "resolve the source directory")?;
    let rel = match base_directory {
        Some(b) => normalize_relative(b)?,
        None => String::new(),
    };
    let lexical = root.join(&rel);
    let base = match std::fs::canonicalize(&lexical) {
        Ok(p) => p,
        Err(_) => return Err(GlobError::BaseDirectoryMissing { path: lexical }),
    };
    if !base.starts_with(&root) {
        return Err(GlobError::Escapes {
            path: base_directory.unwrap_or_default().to_string(),
        });
    }
    if !base.is_dir() {
        return Err(GlobError::BaseDirectoryMissing { path: lexical });
    }
    Ok((root, base))
}

/// Selects the files a `files:`/`exclude-paths:` pair names. Patterns that match nothing
/// are not an error here: callers decide (artifacts fail when nothing at all matched).
pub(crate) fn select(q: &Query<'_>) -> Result<Selection, GlobError> {
    let (root, base) = resolve_base(q.src_root, q.base_directory)?;
    let (include, patterns) = build_set(q.files)?;
    let (exclude, _) = build_set(q.exclude)?;

    // Walk only below the literal prefix of each pattern, dropping nested prefixes so
    // every entry is visited once.
    let mut prefixes: Vec<String> = patterns.iter().map(|p| literal_prefix(p)).collect();
    prefixes.sort();
    prefixes.dedup();
    let mut roots: Vec<String> = Vec::new();
    for p in prefixes {
        let nested = roots
            .iter()
            .any(|r| r.is_empty() || p == *r || p.starts_with(&format!("{r}/")));
        if !nested {
            roots.push(p);
        }
    }

    let mut sel = Selection {
        base: base.clone(),
        ..Selection::default()
    };
    let mut found: BTreeMap<PathBuf, Entry> = BTreeMap::new();
    for prefix in &roots {
        walk_prefix(
            q, &root, &base, prefix, &include, &exclude, &mut sel, &mut found,
        )?;
    }
    for p in &patterns {
        if !is_glob_meta(p) && base.join(p).is_dir() {
            sel.directory_patterns.push(p.clone());
        }
    }
    sel.entries = found.into_values().collect();
    Ok(sel)
}

#[allow(clippy::too_many_arguments)]
fn walk_prefix(
    q: &Query<'_>,
    root: &Path,
    base: &Path,
    prefix: &str,
    include: &GlobSet,
    exclude: &GlobSet,
    sel: &mut Selection,
    found: &mut BTreeMap<PathBuf, Entry>,
) -> Result<(), GlobError> {
    let start = if prefix.is_empty() {
        base.to_path_buf()
    } else {
        base.join(prefix)
    };
    if std::fs::symlink_metadata(&start).is_err() {
        return Ok(()); // nothing there: the pattern simply matches nothing
    }
    if !prefix.is_empty() {
        // The directories leading to `start` must not leave the tree, and when symlinks
        // are kept they must not be symlinks at all (a full walk would not enter them).
        let parent = start.parent().unwrap_or(base);
        match std::fs::canonicalize(parent) {
            Ok(p) if p.starts_with(root) && (!q.keep_symlinks || p == parent) => {}
            Ok(_) | Err(_) => {
                sel.warnings.push(format!(
                    "skipped {}: it is reached through a symlink {}",
                    start.display(),
                    if q.keep_symlinks {
                        "and enable-symlinks keeps symlinks unfollowed"
                    } else {
                        "that points outside the source directory"
                    }
                ));
                return Ok(());
            }
        }
    }

    let matches = |rel: &Path| -> Option<bool> {
        let cand = Candidate::new(rel);
        if !include.is_match_candidate(&cand) {
            return None;
        }
        Some(!exclude.is_match_candidate(&cand))
    };

    let mut walker = walkdir::WalkDir::new(&start)
        .follow_links(!q.keep_symlinks)
        .follow_root_links(!q.keep_symlinks)
        .sort_by_file_name()
        .into_iter();
    while let Some(item) = walker.next() {
        let entry = match item {
            Ok(e) => e,
            Err(err) => {
                let path = err.path().map(Path::to_path_buf).unwrap_or_default();
                let rel = path.strip_prefix(base).unwrap_or(&path).to_path_buf();
                if err.loop_ancestor().is_some() {
                    sel.warnings.push(format!(
                        "skipped {}: symlink loop back to an ancestor directory",
                        rel.display()
                    ));
                    continue;
                }
                let dangling = std::fs::symlink_metadata(&path)
                    .map(|m| m.file_type().is_symlink())
                    .unwrap_or(false);
                if dangling {
                    if matches(&rel) == Some(true) {
                        sel.warnings.push(format!(
                            "skipped {}: dangling symlink (its target does not exist)",
                            rel.display()
                        ));
                    }
                    continue;
                }
                let source = err
                    .into_io_error()
                    .unwrap_or_else(|| io::Error::other("directory walk failed"));
                return Err(GlobError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        let path = entry.path();
        let Ok(rel) = path.strip_prefix(base) else {
            continue;
        };
        let rel = rel.to_path_buf();
        let ft = entry.file_type();

        if ft.is_dir() {
            let canon = std::fs::canonicalize(path).ok();
            if entry.path_is_symlink() {
                let inside = canon.as_ref().is_some_and(|c| c.starts_with(root));
                if !inside {
                    sel.warnings.push(format!(
                        "skipped {}: symlinked directory points outside the source directory",
                        rel.display()
                    ));
                    walker.skip_current_dir();
                    continue;
                }
            }
            if let (Some(skip), Some(c)) = (q.skip_dir, canon.as_ref()) {
                if c == skip {
                    walker.skip_current_dir();
                }
            }
            continue;
        }

        let Some(keep) = matches(&rel) else {
            continue;
        };
        if !keep {
            sel.excluded += 1;
            continue;
        }

        if ft.is_symlink() {
            // Only reachable when symlinks are kept (otherwise walkdir follows them).
            let (inside, dangling) = symlink_inside(path, root);
            if !inside {
                sel.warnings.push(format!(
                    "skipped {}: symlink points outside the source directory",
                    rel.display()
                ));
                continue;
            }
            let target = std::fs::read_link(path).map_err(|source| GlobError::Io {
                action: "read symlink",
                path: path.to_path_buf(),
                source,
            })?;
            if dangling {
                sel.warnings.push(format!(
                    "kept dangling symlink {} -> {}",
                    rel.display(),
                    target.display()
                ));
            }
            found.insert(
                rel.clone(),
                Entry {
                    rel,
                    abs: path.to_path_buf(),
                    kind: EntryKind::Symlink { target },
                },
            );
            continue;
        }

        if !ft.is_file() {
            sel.warnings.push(format!(
                "skipped {}: not a regular file (fifo, socket or device)",
                rel.display()
            ));
            continue;
        }
        if entry.path_is_symlink() {
            let (inside, _) = symlink_inside(path, root);
            if !inside {
                sel.warnings.push(format!(
                    "skipped {}: symlink points outside the source directory",
                    rel.display()
                ));
                continue;
            }
        }
        let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
        found.insert(
            rel.clone(),
            Entry {
                rel,
                abs: path.to_path_buf(),
                kind: EntryKind::File { len },
            },
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_drops_dots_and_refuses_escapes() {
        assert_eq!(
            normalize_relative("./dist//a/./b").ok(),
            Some("dist/a/b".into())
        );
        assert_eq!(normalize_relative(".").ok(), Some(String::new()));
        assert!(matches!(
            normalize_relative("../x"),
            Err(GlobError::Escapes { .. })
        ));
        assert!(matches!(
            normalize_relative("a/../../x"),
            Err(GlobError::Escapes { .. })
        ));
        assert!(matches!(
            normalize_relative("/etc/passwd"),
            Err(GlobError::Escapes { .. })
        ));
    }

    #[test]
    fn literal_prefixes() {
        assert_eq!(literal_prefix("dist/**/*"), "dist");
        assert_eq!(literal_prefix("**/*"), "");
        assert_eq!(literal_prefix("a/b/c.txt"), "a/b/c.txt");
        assert_eq!(literal_prefix("a/*.txt"), "a");
    }
}
