//! Reading a tree a build controls (the source directory, a cache volume) from the host
//! without ever being led out of it.
//!
//! A check on a path followed by an open of the same path is a race a build process can
//! win: it swaps the checked file for a link to a host path in between. Here every path
//! is resolved one component at a time, relative to a handle on the directory reached so
//! far, with `O_NOFOLLOW`: a link is never followed by the kernel. Links are followed
//! only by this module, and only while they stay inside the tree (a relative target, or
//! an absolute one below the tree's own path); `..` never climbs above the tree's root.
//! What is finally opened is checked on the handle (`fstat`), never on the path.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{self as rfs, FileType, Mode, OFlags};

/// Links followed while resolving one path, as the kernel's own limit.
const MAX_LINKS: usize = 40;

/// A directory tree opened for reading.
#[derive(Debug)]
pub(crate) struct Tree {
    root: OwnedFd,
    /// The root's canonical path: absolute link targets below it stay inside.
    canon: PathBuf,
}

/// What an entry is, from `fstat` on a handle that does not follow links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    /// A fifo, socket or device: never opened for reading.
    Special,
}

/// An entry's metadata, taken from its handle.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub kind: Kind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    /// Seconds since the epoch (negative before it).
    pub mtime: i64,
    pub mtime_nsec: u32,
    dev: u64,
    ino: u64,
}

impl Meta {
    fn of(fd: BorrowedFd<'_>) -> io::Result<Self> {
        let st = rfs::fstat(fd)?;
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Special,
        };
        Ok(Meta {
            kind,
            mode: st.st_mode & 0o7777,
            uid: u64::from(st.st_uid),
            gid: u64::from(st.st_gid),
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime: st.st_mtime,
            mtime_nsec: u32::try_from(st.st_mtime_nsec).unwrap_or(0),
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }

    /// The modification time, for `File::set_modified` and zip timestamps.
    pub(crate) fn modified(&self) -> Option<std::time::SystemTime> {
        let base = std::time::UNIX_EPOCH;
        if self.mtime >= 0 {
            base.checked_add(std::time::Duration::new(
                u64::try_from(self.mtime).ok()?,
                self.mtime_nsec,
            ))
        } else {
            base.checked_sub(std::time::Duration::from_secs(self.mtime.unsigned_abs()))
        }
    }
}

fn escapes(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "{} leads outside the directory it was collected from (through a link or `..`); \
             it is not read",
            path.display()
        ),
    )
}

fn not_a_file(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is not a regular file (a directory, fifo, socket or device); it is not read",
            path.display()
        ),
    )
}

/// Opens `name` in `dir` without following a link and without side effects (`O_PATH`).
fn open_path(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<(OwnedFd, Meta)> {
    let fd = rfs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let meta = Meta::of(fd.as_fd())?;
    Ok((fd, meta))
}

/// Opens the regular file behind an `O_PATH` handle for reading: through
/// `/proc/self/fd` (the very inode, whatever the name now points at), else by name again
/// with `O_NOFOLLOW`, refused unless it is still the same inode.
fn reopen_file(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    handle: &OwnedFd,
    meta: &Meta,
) -> io::Result<File> {
    let by_proc = File::open(format!("/proc/self/fd/{}", handle.as_raw_fd()));
    let file = match by_proc {
        Ok(f) => f,
        Err(_) => File::from(rfs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )?),
    };
    let now = Meta::of(file.as_fd())?;
    if now.kind != Kind::File || now.dev != meta.dev || now.ino != meta.ino {
        return Err(io::Error::other(
            "the file changed while it was being opened; it is not read",
        ));
    }
    Ok(file)
}

impl Tree {
    /// Opens the tree rooted at `root` (a directory the host chose; followed if a link).
    pub(crate) fn open(root: &Path) -> io::Result<Self> {
        let canon = std::fs::canonicalize(root)?;
        let fd = rfs::open(
            &canon,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Tree { root: fd, canon })
    }

    /// `path` (absolute below the root, or relative to it) as components to resolve.
    fn relative<'p>(&self, path: &'p Path) -> io::Result<&'p Path> {
        if path.is_absolute() {
            path.strip_prefix(&self.canon).map_err(|_| escapes(path))
        } else {
            Ok(path)
        }
    }

    /// Opens the regular file at `path` for reading, following links only while they
    /// stay inside the tree. Anything else (a link leading out, a directory, a device) is
    /// an error.
    pub(crate) fn open_file(&self, path: &Path) -> io::Result<(File, Meta)> {
        let rel = self.relative(path)?;
        // Directories entered so far below the root (O_PATH handles).
        let mut stack: Vec<OwnedFd> = Vec::new();
        // Components still to resolve, the next one last.
        let mut pending: Vec<OsString> = Vec::new();
        push_components(&mut pending, rel, path)?;
        let mut links = 0;
        while let Some(name) = pending.pop() {
            if name == ".." {
                if stack.pop().is_none() {
                    return Err(escapes(path));
                }
                continue;
            }
            let dir = match stack.last() {
                Some(fd) => fd.as_fd(),
                None => self.root.as_fd(),
            };
            let (fd, meta) = open_path(dir, &name)?;
            let last = pending.is_empty();
            match meta.kind {
                Kind::Symlink => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(io::Error::other(format!(
                            "{}: too many levels of symbolic links",
                            path.display()
                        )));
                    }
                    let target = rfs::readlinkat(dir, &name, Vec::new())?;
                    let target = PathBuf::from(OsString::from_vec(target.into_bytes()));
                    if target.is_absolute() {
                        let inside = target
                            .strip_prefix(&self.canon)
                            .map_err(|_| escapes(path))?;
                        stack.clear();
                        push_components(&mut pending, inside, path)?;
                    } else {
                        push_components(&mut pending, &target, path)?;
                    }
                }
                Kind::Dir if !last => stack.push(fd),
                Kind::File if last => {
                    let file = reopen_file(dir, &name, &fd, &meta)?;
                    return Ok((file, meta));
                }
                _ => {
                    return Err(if last {
                        not_a_file(path)
                    } else {
                        io::Error::from(io::ErrorKind::NotADirectory)
                    })
                }
            }
        }
        Err(not_a_file(path))
    }

    /// The root directory, for a walk (`Dir::entries`).
    pub(crate) fn root_dir(&self) -> io::Result<Dir> {
        Dir::open_at(self.root.as_fd(), OsStr::new("."))
    }
}

/// Pushes `rel`'s components onto `pending` so that the first is popped next.
fn push_components(pending: &mut Vec<OsString>, rel: &Path, shown: &Path) -> io::Result<()> {
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_os_string()),
            Component::ParentDir => parts.push(OsString::from("..")),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err(escapes(shown)),
        }
    }
    pending.extend(parts.into_iter().rev());
    Ok(())
}

/// A directory of the tree opened for listing (never through a link).
#[derive(Debug)]
pub(crate) struct Dir {
    fd: OwnedFd,
}

/// One entry of a directory, opened without following it.
#[derive(Debug)]
pub(crate) enum Child {
    File(File, Meta),
    Dir(Dir),
    Symlink { target: PathBuf, meta: Meta },
    Special(Meta),
}

impl Dir {
    fn open_at(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<Self> {
        let fd = rfs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Dir { fd })
    }

    /// This directory's own metadata.
    pub(crate) fn meta(&self) -> io::Result<Meta> {
        Meta::of(self.fd.as_fd())
    }

    /// The names in this directory (without `.` and `..`), sorted.
    pub(crate) fn names(&self) -> io::Result<Vec<OsString>> {
        let mut out = Vec::new();
        for entry in rfs::Dir::read_from(self.fd.as_fd())? {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            out.push(OsStr::from_bytes(name).to_os_string());
        }
        out.sort();
        Ok(out)
    }

    /// Opens the entry `name` of this directory without following it. `Ok(None)`: it is
    /// gone, or changed kind while being opened.
    pub(crate) fn child(&self, name: &OsStr) -> io::Result<Option<Child>> {
        let (handle, meta) = match open_path(self.fd.as_fd(), name) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(match meta.kind {
            Kind::File => match reopen_file(self.fd.as_fd(), name, &handle, &meta) {
                Ok(f) => Child::File(f, meta),
                Err(_) => return Ok(None),
            },
            Kind::Dir => {
                let dir = Dir::open_at(self.fd.as_fd(), name)?;
                let now = dir.meta()?;
                if now.dev != meta.dev || now.ino != meta.ino {
                    return Ok(None);
                }
                Child::Dir(dir)
            }
            Kind::Symlink => {
                let target = match rfs::readlinkat(self.fd.as_fd(), name, Vec::new()) {
                    Ok(t) => PathBuf::from(OsString::from_vec(t.into_bytes())),
                    Err(_) => return Ok(None),
                };
                Child::Symlink { target, meta }
            }
            Kind::Special => Child::Special(meta),
        }))
    }
}

/// For tests: a thread that keeps replacing `path` by a link to `target` and back by a
/// regular file holding `content` (each an atomic rename), as a hostile build does.
#[cfg(test)]
pub(crate) struct Swapper {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[cfg(test)]
impl Swapper {
    pub(crate) fn start(path: &Path, target: &Path, content: &'static str) -> Self {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (path, target, flag) = (path.to_path_buf(), target.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || {
            let tmp_link = path.with_extension("swap-link");
            let tmp_file = path.with_extension("swap-file");
            while !flag.load(Ordering::Relaxed) {
                let _ = std::fs::remove_file(&tmp_link);
                if std::os::unix::fs::symlink(&target, &tmp_link).is_ok() {
                    let _ = std::fs::rename(&tmp_link, &path);
                }
                if std::fs::write(&tmp_file, content).is_ok() {
                    let _ = std::fs::rename(&tmp_file, &path);
                }
            }
        });
        Swapper {
            stop,
            thread: Some(thread),
        }
    }
}

#[cfg(test)]
impl Drop for Swapper {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    fn read(tree: &Tree, rel: &str) -> io::Result<String> {
        let (mut f, _) = tree.open_file(Path::new(rel))?;
        let mut s = String::new();
        f.read_to_string(&mut s)?;
        Ok(s)
    }

    #[test]
    fn follows_links_inside_and_refuses_links_out() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("src");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("a/b/f"), "inside").unwrap();
        std::fs::write(outside.join("secret"), "secret").unwrap();
        symlink("b/f", root.join("a/rel")).unwrap();
        symlink("../a/b", root.join("a/dirlink")).unwrap();
        let canon = std::fs::canonicalize(&root).unwrap();
        symlink(canon.join("a/b/f"), root.join("abs")).unwrap();
        symlink(outside.join("secret"), root.join("out-abs")).unwrap();
        symlink("../outside/secret", root.join("out-rel")).unwrap();
        symlink(&outside, root.join("out-dir")).unwrap();
        symlink("loop", root.join("loop")).unwrap();

        let tree = Tree::open(&root).unwrap();
        assert_eq!(read(&tree, "a/b/f").unwrap(), "inside");
        assert_eq!(read(&tree, "a/rel").unwrap(), "inside");
        assert_eq!(read(&tree, "a/dirlink/f").unwrap(), "inside");
        assert_eq!(read(&tree, "abs").unwrap(), "inside");
        assert_eq!(
            read(&tree, canon.join("a/b/f").to_str().unwrap()).unwrap(),
            "inside"
        );
        for bad in [
            "out-abs",
            "out-rel",
            "out-dir/secret",
            "../outside/secret",
            "loop",
            "a/b",
        ] {
            let e = read(&tree, bad).unwrap_err();
            assert!(!e.to_string().contains("secret\n"), "{bad}: {e}");
        }
        assert_eq!(
            read(&tree, "out-abs").unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
    }

    #[test]
    fn fifos_are_not_opened() {
        let tmp = tempfile::tempdir().unwrap();
        let st = std::process::Command::new("mkfifo")
            .arg(tmp.path().join("p"))
            .status();
        if !st.map(|s| s.success()).unwrap_or(false) {
            return;
        }
        let tree = Tree::open(tmp.path()).unwrap();
        // Would block forever if opened for reading.
        let e = tree.open_file(Path::new("p")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
