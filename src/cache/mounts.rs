//! Restoring into, and saving from, host directories that back cache paths in the build
//! container (the engine's volumes for the cache paths). Writing a volume's directory on the
//! host is several times faster than extracting the same tar through the engine into the
//! container's layered file system.
//!
//! Architecture invariant: nothing is ever written through a symlink on the host. Volumes
//! may hold links copied from the image (`bin/python -> /usr/bin/python3`), which on the
//! host would lead into the host's own file system: every ancestor of every write is checked
//! to be a real directory, and an existing file or link at the destination is removed, not
//! written through.

use super::error::CacheError;
use super::paths::CachePath;
use crate::artifacts::beneath::{Child, Dir, Meta, Tree};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

/// A host directory backing the container path `prefix` (absolute, no trailing `/`).
#[derive(Debug, Clone)]
pub struct HostMount {
    pub prefix: String,
    pub host: PathBuf,
}

/// The mount holding container path `abs` and the remainder of `abs` below it.
fn locate<'m>(mounts: &'m [HostMount], abs: &str) -> Option<(&'m HostMount, String)> {
    mounts.iter().find_map(|m| {
        if abs == m.prefix {
            Some((m, String::new()))
        } else {
            abs.strip_prefix(&m.prefix)
                .and_then(|r| r.strip_prefix('/'))
                .map(|r| (m, r.to_string()))
        }
    })
}

fn unsafe_entry(path: &str, reason: &str) -> CacheError {
    CacheError::Unsafe {
        path: format!("/{path}"),
        reason: reason.to_string(),
    }
}

fn io_err(action: &'static str, path: &Path, e: io::Error) -> CacheError {
    CacheError::io(action, path, e)
}

/// Makes sure every directory between `root` and `dest`'s parent exists and is a real
/// directory (never a symlink), creating missing ones.
fn real_parent_dirs(root: &Path, rel: &Path, shown: &str) -> Result<(), CacheError> {
    let mut p = root.to_path_buf();
    let comps: Vec<Component<'_>> = rel.components().collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        let Component::Normal(name) = c else {
            return Err(unsafe_entry(
                shown,
                "has a path component that is not a plain name",
            ));
        };
        p.push(name);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(unsafe_entry(
                    shown,
                    "would be written through a symlink already in the volume",
                ))
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => fs::remove_file(&p)
                .and_then(|_| fs::create_dir(&p))
                .map_err(|e| io_err("replace a file by a directory at", &p, e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&p).map_err(|e| io_err("create directory", &p, e))?
            }
            Err(e) => return Err(io_err("inspect", &p, e)),
        }
    }
    Ok(())
}

/// Extracts a validated restore tar (names are container paths without the leading `/`)
/// into the host directories of `mounts`. Directory entries above every mount (the parents
/// the tar carries) are skipped; any other entry outside the mounts is refused.
pub fn extract_to_mounts(tar: impl Read, mounts: &[HostMount]) -> Result<(), CacheError> {
    extract_below(tar, "", mounts)
}

/// Extracts the engine's tar of container path `prefix` (entries named `<basename>/…`,
/// as `image_path_tar` gives) into the mount holding it: how a reset volume gets the
/// image's content back. Same checks as `extract_to_mounts`.
pub fn extract_engine_tar(
    tar: impl Read,
    prefix: &str,
    mounts: &[HostMount],
) -> Result<(), CacheError> {
    let parent = prefix.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
    extract_below(tar, parent.trim_start_matches('/'), mounts)
}

/// Extracts `tar`, whose names are relative to container directory `base` (no leading
/// or trailing `/`; empty for the root).
fn extract_below(tar: impl Read, base: &str, mounts: &[HostMount]) -> Result<(), CacheError> {
    let mut archive = tar::Archive::new(tar);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_preserve_ownerships(true);
    archive.set_overwrite(true);
    let entries = archive.entries().map_err(|e| CacheError::Stream {
        action: "read the restore tar",
        source: e,
    })?;
    for entry in entries {
        let mut entry = entry.map_err(|e| CacheError::Stream {
            action: "read the restore tar",
            source: e,
        })?;
        let name = entry.path_bytes();
        let name = String::from_utf8_lossy(&name)
            .trim_end_matches('/')
            .to_string();
        let name = if base.is_empty() {
            name
        } else {
            format!("{base}/{}", name.trim_start_matches('/'))
        };
        let abs = format!("/{}", name.trim_start_matches('/'));
        let kind = entry.header().entry_type();
        let Some((mount, rest)) = locate(mounts, &abs) else {
            let above = mounts
                .iter()
                .any(|m| m.prefix.starts_with(&format!("{abs}/")));
            if kind.is_dir() && above {
                continue;
            }
            return Err(unsafe_entry(&name, "lies outside every cache volume"));
        };
        if rest.is_empty() {
            // The mount root itself: the volume's directory already exists.
            continue;
        }
        if kind.is_hard_link() {
            return Err(unsafe_entry(
                &name,
                "is a hard link (runner's entries never hold one)",
            ));
        }
        let rel = PathBuf::from(&rest);
        real_parent_dirs(&mount.host, &rel, &name)?;
        let dest = mount.host.join(&rel);
        match fs::symlink_metadata(&dest) {
            Ok(m) if m.is_dir() && !m.file_type().is_symlink() => {
                if !kind.is_dir() {
                    fs::remove_dir_all(&dest).map_err(|e| io_err("remove", &dest, e))?;
                }
            }
            Ok(_) => fs::remove_file(&dest).map_err(|e| io_err("remove", &dest, e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("inspect", &dest, e)),
        }
        entry
            .unpack(&dest)
            .map_err(|e| io_err("restore", &dest, e))?;
    }
    Ok(())
}

/// Writes, for `path`, the tar stream the engine's archive API would give for its prefix
/// (entries named `<basename of prefix>/…`), read from the host directory of its mount.
/// `Ok(false)`: the prefix does not exist.
///
/// The volume's content is the build's: every entry is opened relative to a handle on
/// its directory, without following links (a link is stored as a link), and what is read
/// is checked on that handle, so no swap of a file for a link can make the host read
/// outside the volume.
pub fn tar_from_mounts(
    path: &CachePath,
    mounts: &[HostMount],
    out: &mut impl Write,
) -> Result<bool, CacheError> {
    let Some((mount, rest)) = locate(mounts, path.prefix()) else {
        return Ok(false);
    };
    let vol = Tree::open(&mount.host).map_err(|e| io_err("open", &mount.host, e))?;
    let mut dir = vol.root_dir().map_err(|e| io_err("open", &mount.host, e))?;
    let mut shown = mount.host.clone();
    for name in Path::new(&rest).components() {
        let Component::Normal(name) = name else {
            return Ok(false);
        };
        shown.push(name);
        match dir.child(name) {
            Ok(Some(Child::Dir(d))) => dir = d,
            Ok(_) => return Ok(false),
            Err(e) => return Err(io_err("inspect", &shown, e)),
        }
    }
    let mut b = tar::Builder::new(out);
    append_tree(&mut b, &dir, PathBuf::from(path.archive_root()), &shown)
        .map_err(|e| io_err("read the cache volume", &shown, e))?;
    b.finish()
        .map_err(|e| io_err("write a tar of", &shown, e))?;
    Ok(true)
}

fn header(kind: tar::EntryType, meta: &Meta, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(meta.mode);
    h.set_uid(meta.uid);
    h.set_gid(meta.gid);
    h.set_mtime(u64::try_from(meta.mtime).unwrap_or(0));
    h.set_size(size);
    h
}

/// Appends `dir` (named `name`) and everything below it, depth first in name order.
fn append_tree<W: Write>(
    b: &mut tar::Builder<W>,
    dir: &Dir,
    name: PathBuf,
    shown: &Path,
) -> io::Result<()> {
    let meta = dir.meta()?;
    let mut h = header(tar::EntryType::Directory, &meta, 0);
    b.append_data(&mut h, &name, io::empty())?;
    for child_name in dir.names()? {
        let child_path = name.join(&child_name);
        match dir.child(&child_name)? {
            None => {}
            Some(Child::Dir(d)) => append_tree(b, &d, child_path, &shown.join(&child_name))?,
            Some(Child::File(file, meta)) => {
                // Exactly the size taken from the handle, padded if the file shrank.
                let size = meta.size;
                let data = file.take(size).chain(io::repeat(0)).take(size);
                let mut h = header(tar::EntryType::Regular, &meta, size);
                b.append_data(&mut h, &child_path, data)?;
            }
            Some(Child::Symlink { target, meta }) => {
                let mut h = header(tar::EntryType::Symlink, &meta, 0);
                b.append_link(&mut h, &child_path, &target)?;
            }
            Some(Child::Special(meta)) => {
                // Kept as an entry (reading the entry counts it as left out), never opened.
                let mut h = header(tar::EntryType::Fifo, &meta, 0);
                b.append_data(&mut h, &child_path, io::empty())?;
            }
        }
    }
    Ok(())
}

/// Whether container path `abs` lies in one of `mounts`.
pub fn covered(mounts: &[HostMount], abs: &str) -> bool {
    locate(mounts, abs).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            h.set_size(data.len() as u64);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            if let Some(l) = link {
                h.set_link_name(l).unwrap_or_else(|e| panic!("{e}"));
            }
            h.set_cksum();
            b.append_data(&mut h, name, *data)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        b.into_inner().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn extracts_below_mounts_and_skips_parents() {
        let vol = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mounts = [HostMount {
            prefix: "/opt/venv".into(),
            host: vol.path().to_path_buf(),
        }];
        let tar = tar_of(&[
            ("opt", tar::EntryType::Directory, b"", None),
            ("opt/venv", tar::EntryType::Directory, b"", None),
            ("opt/venv/bin", tar::EntryType::Directory, b"", None),
            (
                "opt/venv/bin/python",
                tar::EntryType::Symlink,
                b"",
                Some("/usr/bin/python3"),
            ),
            (
                "opt/venv/lib/x.py",
                tar::EntryType::Regular,
                b"print(1)",
                None,
            ),
        ]);
        extract_to_mounts(&tar[..], &mounts).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            fs::read_link(vol.path().join("bin/python")).unwrap_or_default(),
            PathBuf::from("/usr/bin/python3")
        );
        assert_eq!(
            fs::read(vol.path().join("lib/x.py")).unwrap_or_default(),
            b"print(1)"
        );
    }

    #[test]
    fn never_writes_through_a_symlink_already_in_the_volume() {
        let vol = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let outside = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        // As a volume copied up from an image could hold: links leading out of it.
        std::os::unix::fs::symlink(outside.path(), vol.path().join("lib"))
            .unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(outside.path().join("victim"), vol.path().join("file"))
            .unwrap_or_else(|e| panic!("{e}"));
        let mounts = [HostMount {
            prefix: "/opt/venv".into(),
            host: vol.path().to_path_buf(),
        }];
        let through = tar_of(&[("opt/venv/lib/evil", tar::EntryType::Regular, b"x", None)]);
        let err = extract_to_mounts(&through[..], &mounts).err();
        assert!(matches!(err, Some(CacheError::Unsafe { .. })), "{err:?}");
        // A file entry where a link stands replaces the link; the target is untouched.
        let over = tar_of(&[("opt/venv/file", tar::EntryType::Regular, b"new", None)]);
        extract_to_mounts(&over[..], &mounts).unwrap_or_else(|e| panic!("{e}"));
        assert!(!outside.path().join("victim").exists());
        assert_eq!(
            fs::read(vol.path().join("file")).unwrap_or_default(),
            b"new"
        );
        assert_eq!(
            fs::read_dir(outside.path()).map(|d| d.count()).unwrap_or(1),
            0
        );
        // Outside every mount, and hard links, are refused.
        let stray = tar_of(&[("etc/passwd", tar::EntryType::Regular, b"x", None)]);
        assert!(extract_to_mounts(&stray[..], &mounts).is_err());
        let hard = tar_of(&[("opt/venv/h", tar::EntryType::Link, b"", Some("etc/shadow"))]);
        assert!(extract_to_mounts(&hard[..], &mounts).is_err());
    }

    #[test]
    fn seeds_a_volume_from_the_engine_tar_of_its_path() {
        let vol = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mounts = [HostMount {
            prefix: "/root/.cache/pip".into(),
            host: vol.path().to_path_buf(),
        }];
        let tar = tar_of(&[
            ("pip", tar::EntryType::Directory, b"", None),
            ("pip/wheels", tar::EntryType::Directory, b"", None),
            ("pip/wheels/a.whl", tar::EntryType::Regular, b"w", None),
        ]);
        extract_engine_tar(&tar[..], "/root/.cache/pip", &mounts).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            fs::read(vol.path().join("wheels/a.whl")).unwrap_or_default(),
            b"w"
        );
        // The same names under another prefix lie outside the mount.
        assert!(extract_engine_tar(&tar[..], "/opt/pip", &mounts).is_err());
    }

    /// A file of the volume swapped for a link to a host file (and back) while the host
    /// saves the cache: the link is stored as a link, the host file is never read.
    #[test]
    fn a_file_swapped_for_a_link_out_of_the_volume_is_never_read() {
        let vol = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        fs::create_dir_all(vol.path().join("pip")).unwrap_or_else(|e| panic!("{e}"));
        // Many files read between listing the directory and reading the swapped one.
        for i in 0..200 {
            fs::write(vol.path().join(format!("pip/b{i}")), [b'x'; 4096])
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let secret_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let secret = secret_dir.path().join("secret");
        fs::write(&secret, "HOST-SECRET").unwrap_or_else(|e| panic!("{e}"));
        let _swap =
            crate::artifacts::beneath::Swapper::start(&vol.path().join("pip/a"), &secret, "a");
        let mounts = [HostMount {
            prefix: "/root/.cache".into(),
            host: vol.path().to_path_buf(),
        }];
        let path =
            CachePath::parse("/root/.cache/pip/**/*", "/src").unwrap_or_else(|e| panic!("{e}"));
        for i in 0..300 {
            let mut out = Vec::new();
            if tar_from_mounts(&path, &mounts, &mut out).is_err() {
                continue;
            }
            let leaked = out.windows(11).any(|w| w == b"HOST-SECRET");
            assert!(!leaked, "round {i}: the host file was read into the cache");
        }
    }

    #[test]
    fn tars_a_mounted_path_like_the_engine_does() {
        let vol = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        fs::create_dir_all(vol.path().join("pip/http")).unwrap_or_else(|e| panic!("{e}"));
        fs::write(vol.path().join("pip/http/a"), b"a").unwrap_or_else(|e| panic!("{e}"));
        let mounts = [HostMount {
            prefix: "/root/.cache".into(),
            host: vol.path().to_path_buf(),
        }];
        let path =
            CachePath::parse("/root/.cache/pip/**/*", "/src").unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        assert!(tar_from_mounts(&path, &mounts, &mut out).unwrap_or(false));
        let names: Vec<String> = tar::Archive::new(&out[..])
            .entries()
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(Result::ok)
            .map(|e| String::from_utf8_lossy(&e.path_bytes()).into_owned())
            .collect();
        assert!(names.iter().any(|n| n == "pip/http/a"), "{names:?}");
        let missing =
            CachePath::parse("/root/.cache/none/**/*", "/src").unwrap_or_else(|e| panic!("{e}"));
        assert!(!tar_from_mounts(&missing, &mounts, &mut Vec::new()).unwrap_or(true));
    }
}
