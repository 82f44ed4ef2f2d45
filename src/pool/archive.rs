//! Source archives: how `runner submit` ships a directory to the server and an agent
//! gets it back. A zstd-compressed tar, built deterministically (sorted entries, mtime
//! 0, owner 0) so the same tree always has the same SHA-256 and is stored once.
//!
//! An archive is untrusted input to the server and to every agent. [`validate`] refuses
//! one that could write outside the directory it is unpacked into (absolute names, `..`,
//! links pointing out, entries below a link, hard links, devices, duplicates) or that
//! exceeds [`Limits`]; [`unpack`] validates before it writes anything, creates every file
//! new (never through an existing one) and makes links last.

use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

/// Caps on what an archive may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The compressed archive.
    pub max_archive_bytes: u64,
    /// Everything unpacked.
    pub max_unpacked_bytes: u64,
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_archive_bytes: 512 * 1024 * 1024,
            max_unpacked_bytes: 2 * 1024 * 1024 * 1024,
            max_entries: 200_000,
        }
    }
}

/// Why an archive is refused or cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("source archive entry `{name}` {reason}; the archive is refused")]
    Entry { name: String, reason: &'static str },
    #[error("source archive is larger than {limit} bytes ({what}); submit a smaller directory")]
    TooLarge { what: &'static str, limit: u64 },
    #[error("source archive has more than {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error("source archive is not a zstd-compressed tar: {0}")]
    Corrupt(String),
    #[error("cannot read `{path}` for the source archive: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("`{path}` cannot go into the source archive: {reason}")]
    Unsupported { path: PathBuf, reason: &'static str },
    #[error("cannot unpack the source into `{path}`: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// A packed source tree.
#[derive(Debug, Clone)]
pub struct Packed {
    pub bytes: Vec<u8>,
    /// Lower-case hex SHA-256 of `bytes`: the blob's name.
    pub sha256: String,
    pub entries: u64,
}

/// What [`validate`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub entries: u64,
    pub unpacked_bytes: u64,
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `s` looks like a blob name (64 lower-case hex digits).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Packs `dir` (every file, directory and inside-pointing link; `.git` included, as a
/// bind-mounted `runner build` would see it).
pub fn pack(dir: &Path, limits: Limits) -> Result<Packed, ArchiveError> {
    let read_err = |path: &Path, source: io::Error| ArchiveError::Read {
        path: path.to_path_buf(),
        source,
    };
    let encoder = zstd::Encoder::new(Vec::new(), 3).map_err(|e| read_err(dir, e))?;
    let mut builder = tar::Builder::new(encoder);
    builder.mode(tar::HeaderMode::Deterministic);
    let mut entries = 0u64;
    let mut unpacked = 0u64;
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1);
    for item in walker {
        let item = item.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_path_buf();
            read_err(&path, e.into())
        })?;
        let path = item.path();
        let rel = path
            .strip_prefix(dir)
            .map_err(|_| ArchiveError::Unsupported {
                path: path.to_path_buf(),
                reason: "outside the source directory",
            })?;
        entries += 1;
        if entries > limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        let ft = item.file_type();
        let meta = item.metadata().map_err(|e| read_err(path, e.into()))?;
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Deterministic);
        if ft.is_dir() {
            header.set_size(0);
            builder
                .append_data(&mut header, rel, io::empty())
                .map_err(|e| read_err(path, e))?;
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(|e| read_err(path, e))?;
            if !link_stays_inside(rel, &target) {
                return Err(ArchiveError::Unsupported {
                    path: path.to_path_buf(),
                    reason: "a link pointing outside the source directory",
                });
            }
            header.set_size(0);
            builder
                .append_link(&mut header, rel, &target)
                .map_err(|e| read_err(path, e))?;
        } else if ft.is_file() {
            unpacked = unpacked.saturating_add(meta.len());
            if unpacked > limits.max_unpacked_bytes {
                return Err(ArchiveError::TooLarge {
                    what: "unpacked",
                    limit: limits.max_unpacked_bytes,
                });
            }
            let file = fs::File::open(path).map_err(|e| read_err(path, e))?;
            header.set_size(meta.len());
            builder
                .append_data(&mut header, rel, file.take(meta.len()))
                .map_err(|e| read_err(path, e))?;
        } else {
            return Err(ArchiveError::Unsupported {
                path: path.to_path_buf(),
                reason: "not a file, directory or link (a socket, fifo or device)",
            });
        }
    }
    let encoder = builder.into_inner().map_err(|e| read_err(dir, e))?;
    let bytes = encoder.finish().map_err(|e| read_err(dir, e))?;
    if bytes.len() as u64 > limits.max_archive_bytes {
        return Err(ArchiveError::TooLarge {
            what: "compressed",
            limit: limits.max_archive_bytes,
        });
    }
    Ok(Packed {
        sha256: sha256_hex(&bytes),
        bytes,
        entries,
    })
}

/// A link at `rel` with `target` resolves inside the tree (lexically: relative, and its
/// `..`s never climb above the root).
fn link_stays_inside(rel: &Path, target: &Path) -> bool {
    if target.as_os_str().is_empty() {
        return false;
    }
    let mut depth: i64 = rel.parent().map_or(0, |p| p.components().count() as i64);
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// A safe relative entry name: normal components only.
fn clean_name(raw: &Path) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err("climbs out with `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path"),
        }
    }
    if out.as_os_str().is_empty() {
        return Err("has an empty name");
    }
    Ok(out)
}

/// One entry, checked.
enum Checked {
    Dir(PathBuf, u32),
    File(PathBuf, u32, Vec<u8>),
    Link(PathBuf, PathBuf),
}

/// Reads every entry, checking each; `keep` decides whose content is kept in memory.
fn walk(
    archive: impl Read,
    len: u64,
    limits: Limits,
    mut keep: impl FnMut(&Path) -> bool,
    mut visit: impl FnMut(Checked) -> Result<(), ArchiveError>,
) -> Result<Listing, ArchiveError> {
    if len > limits.max_archive_bytes {
        return Err(ArchiveError::TooLarge {
            what: "compressed",
            limit: limits.max_archive_bytes,
        });
    }
    let decoder = zstd::Decoder::new(archive).map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
    // The decompressed stream is capped: a zstd bomb stops at the limit (+ tar framing).
    let capped = decoder.take(limits.max_unpacked_bytes.saturating_add(64 * 1024 * 1024));
    let mut tar = tar::Archive::new(capped);
    let mut listing = Listing::default();
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut links: HashSet<PathBuf> = HashSet::new();
    let entries = tar
        .entries()
        .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
        listing.entries += 1;
        if listing.entries > limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        let raw = entry
            .path()
            .map_err(|e| ArchiveError::Corrupt(e.to_string()))?
            .into_owned();
        let shown = raw.display().to_string();
        let refuse = |reason: &'static str| ArchiveError::Entry {
            name: shown.clone(),
            reason,
        };
        if raw.as_os_str().as_encoded_bytes().contains(&0) {
            return Err(refuse("has a NUL byte in its name"));
        }
        let name = clean_name(&raw).map_err(&refuse)?;
        if name
            .ancestors()
            .skip(1)
            .any(|a| !a.as_os_str().is_empty() && links.contains(a))
        {
            return Err(refuse("lies below a link in the archive"));
        }
        if !seen.insert(name.clone()) {
            return Err(refuse("appears twice"));
        }
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        let kind = entry.header().entry_type();
        let checked = match kind {
            tar::EntryType::Directory => Checked::Dir(name, mode),
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                listing.unpacked_bytes = listing.unpacked_bytes.saturating_add(size);
                if listing.unpacked_bytes > limits.max_unpacked_bytes {
                    return Err(ArchiveError::TooLarge {
                        what: "unpacked",
                        limit: limits.max_unpacked_bytes,
                    });
                }
                let mut content = Vec::new();
                if keep(&name) {
                    entry
                        .read_to_end(&mut content)
                        .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
                }
                Checked::File(name, mode, content)
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| ArchiveError::Corrupt(e.to_string()))?
                    .ok_or_else(|| refuse("is a link without a target"))?
                    .into_owned();
                if !link_stays_inside(&name, &target) {
                    return Err(refuse("is a link pointing outside the source"));
                }
                links.insert(name.clone());
                Checked::Link(name, target)
            }
            tar::EntryType::Link => return Err(refuse("is a hard link")),
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            _ => return Err(refuse("is not a file, directory or link")),
        };
        visit(checked)?;
    }
    Ok(listing)
}

/// Checks every entry of `archive` without writing anything.
pub fn validate(archive: &[u8], limits: Limits) -> Result<Listing, ArchiveError> {
    validate_from(archive, archive.len() as u64, limits)
}

/// [`validate`] reading the archive (`len` bytes) from `reader`, e.g. a file, instead of
/// memory.
pub fn validate_from(reader: impl Read, len: u64, limits: Limits) -> Result<Listing, ArchiveError> {
    walk(reader, len, limits, |_| false, |_| Ok(()))
}

/// The content of the regular file at `path` in `archive` (after validating the whole
/// archive), or `None` when there is none.
pub fn read_file(
    archive: &[u8],
    path: &Path,
    limits: Limits,
) -> Result<Option<Vec<u8>>, ArchiveError> {
    read_file_from(archive, archive.len() as u64, path, limits)
}

/// [`read_file`] reading the archive (`len` bytes) from `reader`, e.g. a file, instead of
/// memory.
pub fn read_file_from(
    reader: impl Read,
    len: u64,
    path: &Path,
    limits: Limits,
) -> Result<Option<Vec<u8>>, ArchiveError> {
    let wanted = clean_name(path).ok();
    let mut found = None;
    walk(
        reader,
        len,
        limits,
        |name| Some(name) == wanted.as_deref(),
        |c| {
            if let Checked::File(name, _, content) = c {
                if Some(name.as_path()) == wanted.as_deref() {
                    found = Some(content);
                }
            }
            Ok(())
        },
    )?;
    Ok(found)
}

/// Unpacks `archive` into `dest`, which must be an empty directory. Validates the whole
/// archive first: a refused archive writes nothing.
pub fn unpack(archive: &[u8], dest: &Path, limits: Limits) -> Result<Listing, ArchiveError> {
    validate(archive, limits)?;
    let write_err = |path: &Path, source: io::Error| ArchiveError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut links = Vec::new();
    let listing = walk(
        archive,
        archive.len() as u64,
        limits,
        |_| true,
        |c| {
            match c {
                Checked::Dir(name, mode) => {
                    let path = dest.join(&name);
                    match fs::create_dir(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(write_err(&path, e)),
                    }
                    set_mode(&path, mode | 0o700).map_err(|e| write_err(&path, e))?;
                }
                Checked::File(name, mode, content) => {
                    let path = dest.join(&name);
                    if let Some(parent) = path.parent() {
                        fs::create_dir_all(parent).map_err(|e| write_err(parent, e))?;
                    }
                    let mut file = fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .map_err(|e| write_err(&path, e))?;
                    file.write_all(&content).map_err(|e| write_err(&path, e))?;
                    set_mode(&path, mode | 0o600).map_err(|e| write_err(&path, e))?;
                }
                Checked::Link(name, target) => links.push((name, target)),
            }
            Ok(())
        },
    )?;
    for (name, target) in links {
        let path = dest.join(&name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| write_err(parent, e))?;
        }
        std::os::unix::fs::symlink(&target, &path).map_err(|e| write_err(&path, e))?;
    }
    Ok(listing)
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn tar_zst(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        let tar = b.into_inner().unwrap();
        zstd::encode_all(tar.as_slice(), 3).unwrap()
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // Raw names: the builder's own checks would refuse `..` before the test could.
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, name: &str, target: &str) {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Symlink);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        h.set_cksum();
        b.append(&h, io::empty()).unwrap();
    }

    #[test]
    fn a_tree_round_trips_and_packs_to_the_same_digest_twice() {
        let src = tempfile::tempdir().unwrap();
        fs::create_dir_all(src.path().join("a/b")).unwrap();
        fs::write(src.path().join("a/b/c.txt"), "hello").unwrap();
        fs::write(src.path().join("buildspec.yml"), "version: 0.2\n").unwrap();
        std::os::unix::fs::symlink("b/c.txt", src.path().join("a/l")).unwrap();
        let one = pack(src.path(), Limits::default()).unwrap();
        let two = pack(src.path(), Limits::default()).unwrap();
        assert_eq!(one.sha256, two.sha256);
        assert!(is_sha256_hex(&one.sha256));
        let got = read_file(&one.bytes, Path::new("buildspec.yml"), Limits::default()).unwrap();
        assert_eq!(got.as_deref(), Some(&b"version: 0.2\n"[..]));
        let dest = tempfile::tempdir().unwrap();
        unpack(&one.bytes, dest.path(), Limits::default()).unwrap();
        assert_eq!(
            fs::read_to_string(dest.path().join("a/l")).unwrap(),
            "hello"
        );
    }

    #[test]
    fn a_link_out_of_the_source_is_not_packed() {
        let src = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.path().join("p")).unwrap();
        assert!(matches!(
            pack(src.path(), Limits::default()),
            Err(ArchiveError::Unsupported { .. })
        ));
    }

    #[test]
    fn escaping_entries_are_refused_and_nothing_is_written() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("dotdot", tar_zst(|b| file(b, "../evil", b"x"))),
            ("absolute", tar_zst(|b| file(b, "/tmp/evil", b"x"))),
            ("link out", tar_zst(|b| link(b, "l", "../../etc"))),
            ("absolute link", tar_zst(|b| link(b, "l", "/etc"))),
            (
                "below a link",
                tar_zst(|b| {
                    link(b, "l", "d");
                    file(b, "l/x", b"x");
                }),
            ),
            (
                "twice",
                tar_zst(|b| {
                    file(b, "a", b"1");
                    file(b, "a", b"2");
                }),
            ),
        ];
        for (what, archive) in cases {
            let err = validate(&archive, Limits::default());
            assert!(
                matches!(err, Err(ArchiveError::Entry { .. })),
                "{what}: {err:?}"
            );
            let dest = tempfile::tempdir().unwrap();
            assert!(unpack(&archive, dest.path(), Limits::default()).is_err());
            assert_eq!(fs::read_dir(dest.path()).unwrap().count(), 0, "{what}");
        }
    }

    #[test]
    fn limits_hold_against_a_decompression_bomb() {
        let archive = tar_zst(|b| file(b, "zeros", &vec![0u8; 8 * 1024 * 1024]));
        assert!(archive.len() < 64 * 1024);
        let limits = Limits {
            max_unpacked_bytes: 1024 * 1024,
            ..Limits::default()
        };
        assert!(matches!(
            validate(&archive, limits),
            Err(ArchiveError::TooLarge { .. })
        ));
        assert!(matches!(
            validate(b"not zstd", Limits::default()),
            Err(ArchiveError::Corrupt(_))
        ));
    }
}
