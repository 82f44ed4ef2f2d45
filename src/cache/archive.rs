//! Cache entries: one zstd-compressed tar built from the Docker archive streams of the
//! cache paths, and the validated plain tar handed back to Docker to restore it.
//!
//! Entry format: a POSIX/GNU tar whose entry names are absolute container paths without
//! the leading `/` (`root/.cache/pip/http/x`), sorted by name (bytewise, so a directory
//! always precedes its contents), holding directories, regular files and symlinks with
//! their mode (setuid/setgid dropped), mtime and numeric owner; compressed as one zstd
//! frame (level 3) with zstd's content checksum. Hard links in a Docker stream are stored
//! as regular files (the content is duplicated), devices, fifos and sockets are skipped.
//!
//! Restoring validates the whole entry before a single byte reaches Docker (the re-emitted
//! tar is spooled to an anonymous temporary file first), refusing any entry that could
//! write outside the cache paths: absolute names or `..`, names outside every cache path
//! prefix, hard links to anything but a file restored before them inside the cache paths,
//! entries written through an earlier symlink, a cache path itself replaced by a symlink,
//! symlinks that climb above the root, duplicates, and device files. A symlink may point
//! outside the cache paths (a virtualenv's `bin/python -> /usr/bin/python3`): the restore
//! is extracted inside the build container and nothing is written through it.
//!
//! Temporary files (`build_entry`'s content spool, `validated_restore_tar`'s output spool)
//! are created in the system temporary directory (`TMPDIR`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};

use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use super::error::CacheError;
use super::paths::CachePath;

/// zstd level of cache entries.
const ZSTD_LEVEL: i32 = 3;
/// File contents up to this size are copied through one reused buffer.
const SMALL_FILE: u64 = 1 << 20;
/// Mode bits kept: permissions and the sticky bit (setuid/setgid are dropped).
const MODE_MASK: u32 = 0o1777;

/// What `build_entry` wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryStats {
    /// Regular files in the entry.
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Entries of the Docker streams left out: devices, fifos, sockets, hard links whose
    /// target was not selected, entries a restore would refuse, names that are not UTF-8.
    pub skipped: u64,
    /// Sum of the regular files' sizes.
    pub file_bytes: u64,
    /// Size of the (uncompressed) tar.
    pub bytes_uncompressed: u64,
    /// Size of the compressed entry written to `out`.
    pub bytes_compressed: u64,
    /// Lowercase hex sha256 of the compressed entry (its content address).
    pub sha256: String,
}

/// What `validated_restore_tar` emitted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Sum of the regular files' sizes.
    pub file_bytes: u64,
    /// Size of the plain tar written to `out`.
    pub bytes: u64,
}

// ---------------------------------------------------------------------------------------
// Path rules shared by saving and restoring.

/// Why a tar entry name is refused; the message completes "entry `x` …".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum NameError {
    #[error("has a name that is not UTF-8")]
    NotUtf8,
    #[error("is an absolute path")]
    Absolute,
    #[error("has a `..` component")]
    DotDot,
    #[error("has an empty name")]
    Empty,
}

/// Why an entry is refused by the [`Guard`]; the message completes "entry `x` …".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Refusal {
    #[error("appears twice in the entry")]
    Duplicate,
    #[error("lies outside every cache path ({allowed})")]
    Outside { allowed: String },
    #[error("would be written through the symlink {}", as_display(.ancestor))]
    ThroughSymlink { ancestor: String },
    #[error("is a symlink with an empty target")]
    EmptySymlink,
    #[error("is a symlink to `{target}`, which climbs above the root")]
    SymlinkAboveRoot { target: String },
    #[error("replaces the cache path {} with a symlink to `{target}`", as_display(.path))]
    ReplacesCachePath { path: String, target: String },
    #[error(
        "is a hard link to `{target}`, which is not a regular file restored \
         before it inside the cache paths"
    )]
    DanglingHardlink { target: String },
}

/// Normalises a tar entry name: drops `.` and empty components; refuses absolute names,
/// `..`, non-UTF-8 and empty names.
fn normalize_name(raw: &[u8]) -> Result<String, NameError> {
    let s = std::str::from_utf8(raw).map_err(|_| NameError::NotUtf8)?;
    if s.starts_with('/') {
        return Err(NameError::Absolute);
    }
    let mut parts = Vec::new();
    for part in s.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(NameError::DotDot),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(NameError::Empty);
    }
    Ok(parts.join("/"))
}

/// Where symlink `link` (a tar path) pointing at `target` leads, as a tar path; `None`
/// when the target climbs above the root. Resolution is lexical.
fn resolve_symlink(link: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    if !target.starts_with('/') {
        parts.extend(link.split('/'));
        parts.pop();
    }
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

fn as_display(p: &str) -> String {
    format!("/{p}")
}

#[derive(Debug, Clone, Copy)]
enum Check<'t> {
    Dir,
    File,
    Symlink(&'t str),
    /// A hard link to an earlier entry (its tar path, normalised).
    Hardlink(&'t str),
}

/// Validates a sequence of entries in archive order.
struct Guard<'a> {
    allowed: &'a [CachePath],
    seen: HashSet<String>,
    symlinks: HashSet<String>,
    files: HashSet<String>,
}

impl<'a> Guard<'a> {
    fn new(allowed: &'a [CachePath]) -> Self {
        Guard {
            allowed,
            seen: HashSet::new(),
            symlinks: HashSet::new(),
            files: HashSet::new(),
        }
    }

    fn inside(&self, path: &str) -> bool {
        self.allowed.iter().any(|c| c.contains(path))
    }

    fn allowed_list(&self) -> String {
        let v: Vec<&str> = self.allowed.iter().map(|c| c.prefix()).collect();
        if v.is_empty() {
            "(no cache paths)".to_string()
        } else {
            v.join(", ")
        }
    }

    /// Checks one entry (its name already normalised) and records it.
    fn check(&mut self, path: &str, kind: Check<'_>) -> Result<(), Refusal> {
        if self.seen.contains(path) {
            return Err(Refusal::Duplicate);
        }
        if !self.inside(path) {
            return Err(Refusal::Outside {
                allowed: self.allowed_list(),
            });
        }
        for (i, _) in path.match_indices('/') {
            let ancestor = &path[..i];
            if self.symlinks.contains(ancestor) {
                return Err(Refusal::ThroughSymlink {
                    ancestor: ancestor.to_string(),
                });
            }
        }
        match kind {
            Check::Dir => {}
            Check::File => {
                self.files.insert(path.to_string());
            }
            Check::Symlink(target) => {
                if target.is_empty() {
                    return Err(Refusal::EmptySymlink);
                }
                // A symlink may point anywhere: a virtualenv's `bin/python` points at
                // `/usr/bin/python3`. Restores are extracted inside the build container,
                // and nothing is ever written *through* a restored symlink (checked
                // above), so a link leading out cannot carry a write out. Refused: a link
                // that climbs above the root (malformed), and a cache path itself replaced
                // by a link.
                if resolve_symlink(path, target).is_none() {
                    return Err(Refusal::SymlinkAboveRoot {
                        target: target.to_string(),
                    });
                }
                if self
                    .allowed
                    .iter()
                    .any(|c| c.prefix().trim_start_matches('/') == path)
                {
                    return Err(Refusal::ReplacesCachePath {
                        path: path.to_string(),
                        target: target.to_string(),
                    });
                }
                self.symlinks.insert(path.to_string());
            }
            Check::Hardlink(target) => {
                if !self.files.contains(target) {
                    return Err(Refusal::DanglingHardlink {
                        target: target.to_string(),
                    });
                }
            }
        }
        self.seen.insert(path.to_string());
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Writers.

/// Counts bytes and hashes them on the way to `inner`.
struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Counts bytes on the way to `inner` and remembers whether a write failed.
struct CountWriter<W> {
    inner: W,
    count: u64,
    failed: bool,
}

impl<W> CountWriter<W> {
    fn new(inner: W) -> Self {
        CountWriter {
            inner,
            count: 0,
            failed: false,
        }
    }
}

impl<W: Write> Write for CountWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.inner.write(buf) {
            Ok(n) => {
                self.count += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|_| self.failed = true)
    }
}

fn new_header(kind: EntryType, mode: u32, mtime: u64, uid: u64, gid: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_size(0);
    h
}

// ---------------------------------------------------------------------------------------
// Saving.

#[derive(Debug, Clone)]
enum Kind {
    Dir,
    /// Content at `offset..offset+len` of the spool.
    File {
        offset: u64,
        len: u64,
    },
    Symlink(String),
}

#[derive(Debug, Clone)]
struct Item {
    kind: Kind,
    mode: u32,
    mtime: u64,
    uid: u64,
    gid: u64,
}

fn header_meta(h: &Header, kind: Kind) -> Item {
    let mode = match kind {
        Kind::Symlink(_) => 0o777,
        _ => h.mode().unwrap_or(0o644) & MODE_MASK,
    };
    Item {
        kind,
        mode,
        mtime: h.mtime().unwrap_or(0),
        uid: h.uid().unwrap_or(0),
        gid: h.gid().unwrap_or(0),
    }
}

/// Maps a Docker archive entry name (`pip/http/x`, relative to the prefix's parent) to
/// a tar path (`root/.cache/pip/http/x`); `None` for a name to skip (not UTF-8).
fn docker_name_to_path(cp: &CachePath, raw: &[u8]) -> Result<Option<String>, CacheError> {
    let name = match normalize_name(raw) {
        Ok(n) => n,
        // Non-UTF-8 names are skipped; `..` or absolute names mean a broken stream.
        Err(NameError::NotUtf8) => return Ok(None),
        Err(reason) => {
            return Err(CacheError::BadInput {
                pattern: cp.pattern().to_string(),
                reason: format!("entry `{}` {reason}", String::from_utf8_lossy(raw)),
            })
        }
    };
    let (first, rest) = match name.split_once('/') {
        Some((f, r)) => (f, Some(r)),
        None => (name.as_str(), None),
    };
    if first != cp.archive_root() {
        return Err(CacheError::BadInput {
            pattern: cp.pattern().to_string(),
            reason: format!(
                "entry `{name}` is not below `{}`; the archive must be Docker's archive of {}",
                cp.archive_root(),
                cp.prefix()
            ),
        });
    }
    Ok(Some(match rest {
        Some(r) => format!("{}/{r}", cp.tar_prefix()),
        None => cp.tar_prefix().to_string(),
    }))
}

/// Builds one cache entry from the Docker archive streams of the cache paths (one
/// `(path, stream)` pair per pattern, the stream being Docker's archive of
/// [`CachePath::prefix`]) and writes it, zstd-compressed, to `out`.
///
/// Streams of overlapping paths are merged (one entry per container path).
pub fn build_entry<R: Read>(
    inputs: Vec<(CachePath, R)>,
    out: &mut impl Write,
) -> Result<EntryStats, CacheError> {
    let spool_file = tempfile::tempfile()
        .map_err(|e| CacheError::io("create a temporary file in", std::env::temp_dir(), e))?;
    let mut spool = CountWriter::new(BufWriter::with_capacity(256 * 1024, spool_file));
    let spool_err = |e: io::Error| CacheError::Stream {
        action: "write the cache entry's temporary file",
        source: e,
    };

    let allowed: Vec<CachePath> = inputs.iter().map(|(c, _)| c.clone()).collect();
    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    // Every directory of the streams (for the parents of selected entries).
    let mut dirs: BTreeMap<String, Item> = BTreeMap::new();
    // A path in several streams (overlapping prefixes) takes its metadata from the
    // stream of the longest prefix, whatever the order of the inputs.
    let mut item_rank: HashMap<String, usize> = HashMap::new();
    let mut dir_rank: HashMap<String, usize> = HashMap::new();
    fn put(
        map: &mut BTreeMap<String, Item>,
        ranks: &mut HashMap<String, usize>,
        rank: usize,
        path: String,
        item: Item,
    ) {
        if ranks.get(&path).is_some_and(|r| *r > rank) {
            return;
        }
        ranks.insert(path.clone(), rank);
        map.insert(path, item);
    }
    let mut stats = EntryStats::default();

    for (cp, reader) in inputs {
        let bad = |e: io::Error| CacheError::BadInput {
            pattern: cp.pattern().to_string(),
            reason: format!("cannot read the archive: {e}"),
        };
        // Tar path → spool range of files of this stream (for hard links).
        let mut stream_files: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let rank = cp.prefix().len();
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let etype = entry.header().entry_type();
            if etype.is_pax_global_extensions() {
                continue;
            }
            let path = match docker_name_to_path(&cp, &entry.path_bytes())? {
                Some(p) => p,
                None => {
                    stats.skipped += 1;
                    continue;
                }
            };
            let selected = cp.selects(&path);
            match etype {
                EntryType::Directory => {
                    let item = header_meta(entry.header(), Kind::Dir);
                    if selected {
                        put(&mut items, &mut item_rank, rank, path.clone(), item.clone());
                    }
                    put(&mut dirs, &mut dir_rank, rank, path, item);
                }
                EntryType::Regular | EntryType::Continuous => {
                    if !selected {
                        continue;
                    }
                    let offset = spool.count;
                    let len = io::copy(&mut entry, &mut spool).map_err(|e| {
                        if spool.failed {
                            spool_err(e)
                        } else {
                            bad(e)
                        }
                    })?;
                    stream_files.insert(path.clone(), (offset, len));
                    let item = header_meta(entry.header(), Kind::File { offset, len });
                    put(&mut items, &mut item_rank, rank, path, item);
                }
                EntryType::Symlink => {
                    if !selected {
                        continue;
                    }
                    let target = entry
                        .link_name_bytes()
                        .and_then(|t| String::from_utf8(t.into_owned()).ok());
                    match target {
                        Some(t) => {
                            let item = header_meta(entry.header(), Kind::Symlink(t));
                            put(&mut items, &mut item_rank, rank, path, item);
                        }
                        None => stats.skipped += 1,
                    }
                }
                EntryType::Link => {
                    if !selected {
                        continue;
                    }
                    // A target that does not map into the stream is skipped below.
                    let target = entry
                        .link_name_bytes()
                        .and_then(|t| docker_name_to_path(&cp, &t).ok())
                        .flatten();
                    match target.and_then(|t| stream_files.get(&t).copied()) {
                        Some((offset, len)) => {
                            let item = header_meta(entry.header(), Kind::File { offset, len });
                            put(&mut items, &mut item_rank, rank, path, item);
                        }
                        None => stats.skipped += 1,
                    }
                }
                _ => {
                    if selected {
                        stats.skipped += 1;
                    }
                }
            }
        }
    }

    // Parents (from the prefix down) of every selected entry.
    let mut parents: BTreeSet<String> = BTreeSet::new();
    for path in items.keys() {
        for (i, _) in path.match_indices('/') {
            let ancestor = &path[..i];
            if dirs.contains_key(ancestor) && allowed.iter().any(|c| c.contains(ancestor)) {
                parents.insert(ancestor.to_string());
            }
        }
    }
    for p in parents {
        if let Some(item) = dirs.get(&p) {
            items.entry(p).or_insert_with(|| item.clone());
        }
    }

    // Drop what a restore would refuse (escaping symlinks and what lies below them).
    let mut guard = Guard::new(&allowed);
    items.retain(|path, item| {
        let check = match &item.kind {
            Kind::Dir => Check::Dir,
            Kind::File { .. } => Check::File,
            Kind::Symlink(t) => Check::Symlink(t),
        };
        let ok = guard.check(path, check).is_ok();
        if !ok {
            stats.skipped += 1;
        }
        ok
    });

    let mut spool_file = spool
        .inner
        .into_inner()
        .map_err(|e| spool_err(e.into_error()))?;

    // Write the sorted tar through zstd.
    let write_err = |e: io::Error| CacheError::Stream {
        action: "write the cache entry",
        source: e,
    };
    let hashed = HashWriter {
        inner: out,
        hasher: Sha256::new(),
        count: 0,
    };
    let mut encoder = zstd::Encoder::new(hashed, ZSTD_LEVEL).map_err(write_err)?;
    encoder.include_checksum(true).map_err(write_err)?;
    let mut builder = tar::Builder::new(CountWriter::new(encoder));
    let mut buf: Vec<u8> = Vec::new();
    for (path, item) in &items {
        match &item.kind {
            Kind::Dir => {
                let mut h = new_header(
                    EntryType::Directory,
                    item.mode,
                    item.mtime,
                    item.uid,
                    item.gid,
                );
                builder
                    .append_data(&mut h, path, io::empty())
                    .map_err(write_err)?;
                stats.dirs += 1;
            }
            Kind::File { offset, len } => {
                let mut h = new_header(
                    EntryType::Regular,
                    item.mode,
                    item.mtime,
                    item.uid,
                    item.gid,
                );
                h.set_size(*len);
                spool_file
                    .seek(SeekFrom::Start(*offset))
                    .map_err(spool_err)?;
                if *len <= SMALL_FILE {
                    buf.resize(*len as usize, 0);
                    spool_file.read_exact(&mut buf).map_err(spool_err)?;
                    builder
                        .append_data(&mut h, path, buf.as_slice())
                        .map_err(write_err)?;
                } else {
                    let reader = io::BufReader::with_capacity(256 * 1024, (&spool_file).take(*len));
                    builder
                        .append_data(&mut h, path, reader)
                        .map_err(write_err)?;
                }
                stats.files += 1;
                stats.file_bytes += len;
            }
            Kind::Symlink(target) => {
                let mut h = new_header(
                    EntryType::Symlink,
                    item.mode,
                    item.mtime,
                    item.uid,
                    item.gid,
                );
                builder
                    .append_link(&mut h, path, target)
                    .map_err(write_err)?;
                stats.symlinks += 1;
            }
        }
    }
    let counted = builder.into_inner().map_err(write_err)?;
    stats.bytes_uncompressed = counted.count;
    let mut hashed = counted.inner.finish().map_err(write_err)?;
    hashed.flush().map_err(write_err)?;
    stats.bytes_compressed = hashed.count;
    stats.sha256 = hex(&hashed.hasher.finalize());
    Ok(stats)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

// ---------------------------------------------------------------------------------------
// Restoring.

/// Decompresses cache entry `entry`, validates every tar entry against the cache paths
/// `allowed`, and writes a plain tar for Docker to extract at `/` to `out`.
///
/// Validation happens before anything is written to `out`: on error `out` is untouched.
/// A truncated or corrupt entry (zstd, checksum or tar error, or an error reading
/// `entry`) is [`CacheError::Corrupt`]; an entry that would write outside the cache paths
/// is [`CacheError::Unsafe`].
pub fn validated_restore_tar(
    entry: impl Read,
    allowed: &[CachePath],
    mut out: impl Write,
) -> Result<RestoreStats, CacheError> {
    let spool_file = tempfile::tempfile()
        .map_err(|e| CacheError::io("create a temporary file in", std::env::temp_dir(), e))?;
    let mut builder = tar::Builder::new(CountWriter::new(BufWriter::with_capacity(
        256 * 1024,
        spool_file,
    )));
    let mut stats = RestoreStats::default();
    let mut guard = Guard::new(allowed);

    let decoder = zstd::Decoder::new(entry).map_err(|e| CacheError::corrupt(e.to_string()))?;
    let mut archive = tar::Archive::new(decoder);

    // Read/decode errors are corruption; errors writing the spool are I/O errors.
    fn classify(failed: bool, e: io::Error) -> CacheError {
        if failed {
            CacheError::Stream {
                action: "write the restore tar's temporary file",
                source: e,
            }
        } else {
            CacheError::corrupt(e.to_string())
        }
    }

    {
        let entries = archive
            .entries()
            .map_err(|e| CacheError::corrupt(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| CacheError::corrupt(e.to_string()))?;
            let etype = entry.header().entry_type();
            if etype.is_pax_global_extensions() {
                continue;
            }
            let raw = entry.path_bytes().into_owned();
            let shown = String::from_utf8_lossy(&raw).into_owned();
            let unsafe_err = |reason: &dyn std::fmt::Display| CacheError::Unsafe {
                path: shown.clone(),
                reason: reason.to_string(),
            };
            let path = normalize_name(&raw).map_err(|e| unsafe_err(&e))?;
            let h = entry.header();
            let (mode, mtime, uid, gid) = (
                h.mode().unwrap_or(0o644) & MODE_MASK,
                h.mtime().unwrap_or(0),
                h.uid().unwrap_or(0),
                h.gid().unwrap_or(0),
            );
            let result = match etype {
                EntryType::Directory => {
                    guard.check(&path, Check::Dir).map_err(|e| unsafe_err(&e))?;
                    let mut h = new_header(EntryType::Directory, mode, mtime, uid, gid);
                    stats.dirs += 1;
                    builder.append_data(&mut h, &path, io::empty())
                }
                EntryType::Regular | EntryType::Continuous => {
                    guard
                        .check(&path, Check::File)
                        .map_err(|e| unsafe_err(&e))?;
                    let size = entry.size();
                    let mut h = new_header(EntryType::Regular, mode, mtime, uid, gid);
                    h.set_size(size);
                    stats.files += 1;
                    stats.file_bytes += size;
                    builder.append_data(&mut h, &path, &mut entry)
                }
                EntryType::Symlink => {
                    let target = entry
                        .link_name_bytes()
                        .map(|t| t.into_owned())
                        .unwrap_or_default();
                    let target = String::from_utf8(target)
                        .map_err(|_| unsafe_err(&"has a symlink target that is not UTF-8"))?;
                    guard
                        .check(&path, Check::Symlink(&target))
                        .map_err(|e| unsafe_err(&e))?;
                    let mut h = new_header(EntryType::Symlink, 0o777, mtime, uid, gid);
                    stats.symlinks += 1;
                    builder.append_link(&mut h, &path, &target)
                }
                EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .map(|t| t.into_owned())
                        .unwrap_or_default();
                    let target = normalize_name(&target).map_err(|reason| {
                        unsafe_err(&format_args!("is a hard link whose target {reason}"))
                    })?;
                    guard
                        .check(&path, Check::Hardlink(&target))
                        .map_err(|e| unsafe_err(&e))?;
                    let mut h = new_header(EntryType::Link, mode, mtime, uid, gid);
                    stats.hardlinks += 1;
                    builder.append_link(&mut h, &path, &target)
                }
                EntryType::Char | EntryType::Block => return Err(unsafe_err(&"is a device file")),
                EntryType::Fifo => return Err(unsafe_err(&"is a fifo")),
                other => {
                    return Err(unsafe_err(&format_args!(
                        "has an unsupported tar entry type {:?}",
                        other.as_byte() as char
                    )))
                }
            };
            result.map_err(|e| classify(builder.get_ref().failed, e))?;
        }
    }

    // Read the rest of the zstd stream: trailing data and the frame checksum.
    let mut decoder = archive.into_inner();
    io::copy(&mut decoder, &mut io::sink()).map_err(|e| CacheError::corrupt(e.to_string()))?;

    let counted = builder.into_inner().map_err(|e| classify(true, e))?;
    stats.bytes = counted.count;
    let mut spool = counted
        .inner
        .into_inner()
        .map_err(|e| classify(true, e.into_error()))?;
    spool
        .seek(SeekFrom::Start(0))
        .map_err(|e| classify(true, e))?;
    let out_err = |e: io::Error| CacheError::Stream {
        action: "write the restore tar",
        source: e,
    };
    io::copy(&mut spool, &mut out).map_err(out_err)?;
    out.flush().map_err(out_err)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    const SRC: &str = "/codebuild/output/src1/src";

    fn cp(p: &str) -> CachePath {
        CachePath::parse(p, SRC).unwrap()
    }

    enum E<'a> {
        Dir(&'a str, u32),
        File(&'a str, u32, &'a [u8]),
        Sym(&'a str, &'a str),
        Hard(&'a str, &'a str),
        Fifo(&'a str),
        Char(&'a str),
        Block(&'a str),
    }

    /// A tar stream like Docker's archive API produces (GNU headers, names relative to
    /// the archived path's parent). Names are written raw (no validation), so refusal
    /// cases can be crafted too.
    fn tar_of(entries: &[E<'_>], mtime: u64) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let (name, etype, mode, link, data): (&str, EntryType, u32, Option<&str>, &[u8]) =
                match e {
                    E::Dir(n, m) => (n, EntryType::Directory, *m, None, b""),
                    E::File(n, m, d) => (n, EntryType::Regular, *m, None, d),
                    E::Sym(n, t) => (n, EntryType::Symlink, 0o777, Some(t), b""),
                    E::Hard(n, t) => (n, EntryType::Link, 0o644, Some(t), b""),
                    E::Fifo(n) => (n, EntryType::Fifo, 0o644, None, b""),
                    E::Char(n) => (n, EntryType::Char, 0o644, None, b""),
                    E::Block(n) => (n, EntryType::Block, 0o644, None, b""),
                };
            let mut h = Header::new_gnu();
            h.set_entry_type(etype);
            h.set_mode(mode);
            h.set_mtime(mtime);
            h.set_uid(1000);
            h.set_gid(1000);
            h.set_size(data.len() as u64);
            if name.len() <= 100 && link.is_none_or(|l| l.len() <= 100) {
                let raw = h.as_old_mut();
                raw.name = [0; 100];
                raw.name[..name.len()].copy_from_slice(name.as_bytes());
                if let Some(l) = link {
                    raw.linkname = [0; 100];
                    raw.linkname[..l.len()].copy_from_slice(l.as_bytes());
                }
                h.set_cksum();
                b.append(&h, data).unwrap();
            } else if let Some(l) = link {
                b.append_link(&mut h, name, l).unwrap();
            } else {
                b.append_data(&mut h, name, data).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    fn zstd_of(tar: &[u8]) -> Vec<u8> {
        zstd::encode_all(tar, 3).unwrap()
    }

    fn build(inputs: Vec<(CachePath, Vec<u8>)>) -> (EntryStats, Vec<u8>) {
        let mut out = Vec::new();
        let inputs = inputs
            .into_iter()
            .map(|(c, t)| (c, io::Cursor::new(t)))
            .collect();
        let stats = build_entry(inputs, &mut out).unwrap();
        (stats, out)
    }

    fn tar_names(tar: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
            .collect()
    }

    const LONG: &str = "pip/http/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/file-with-a-long-name.whl";

    fn pip_stream() -> Vec<u8> {
        tar_of(
            &[
                E::Dir("pip/", 0o755),
                E::Dir("pip/http/", 0o755),
                E::File("pip/http/a.bin", 0o644, b"content of a"),
                E::Dir("pip/bin", 0o755),
                E::File("pip/bin/tool", 0o755, b"#!/bin/sh\necho hi\n"),
                E::Dir("pip/empty", 0o700),
                E::Sym("pip/link", "http/a.bin"),
                E::Sym("pip/abslink", "/root/.cache/pip/http/a.bin"),
                E::Sym("pip/escape", "/etc/passwd"),
                E::Sym("pip/escape-rel", "../../../etc"),
                E::Fifo("pip/fifo"),
                E::Hard("pip/hard", "pip/http/a.bin"),
                E::File("pip/setuid", 0o4755, b"suid"),
                E::File(LONG, 0o644, b"long"),
            ],
            1_600_000_000,
        )
    }

    fn node_stream() -> Vec<u8> {
        tar_of(
            &[
                E::Dir("node_modules", 0o755),
                E::Dir("node_modules/pkg", 0o755),
                E::File("node_modules/pkg/cli.js", 0o755, b"console.log(1)"),
                E::Dir("node_modules/.bin", 0o755),
                E::Sym("node_modules/.bin/cli", "../pkg/cli.js"),
            ],
            1_700_000_000,
        )
    }

    fn cache_stream() -> Vec<u8> {
        // Docker's archive of /root/.cache for the pattern /root/.cache/*.whl.
        tar_of(
            &[
                E::Dir(".cache", 0o755),
                E::File(".cache/a.whl", 0o644, b"wheel"),
                E::File(".cache/b.txt", 0o644, b"not selected"),
                E::Dir(".cache/pip", 0o755),
                E::File(".cache/pip/c.whl", 0o644, b"not selected either"),
            ],
            1_500_000_000,
        )
    }

    fn all_paths() -> Vec<CachePath> {
        vec![
            cp("/root/.cache/pip/**/*"),
            cp("node_modules/**/*"),
            cp("/root/.cache/*.whl"),
        ]
    }

    fn all_inputs() -> Vec<(CachePath, Vec<u8>)> {
        let p = all_paths();
        vec![
            (p[0].clone(), pip_stream()),
            (p[1].clone(), node_stream()),
            (p[2].clone(), cache_stream()),
        ]
    }

    #[test]
    fn entry_names_sorted_filtered_and_rewritten() {
        let (stats, entry) = build(all_inputs());
        let tar = zstd::decode_all(entry.as_slice()).unwrap();
        let names = tar_names(&tar);
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        let long = format!("root/.cache/{LONG}");
        let expected = vec![
            "codebuild/output/src1/src/node_modules",
            "codebuild/output/src1/src/node_modules/.bin",
            "codebuild/output/src1/src/node_modules/.bin/cli",
            "codebuild/output/src1/src/node_modules/pkg",
            "codebuild/output/src1/src/node_modules/pkg/cli.js",
            "root/.cache",
            "root/.cache/a.whl",
            "root/.cache/pip",
            "root/.cache/pip/abslink",
            "root/.cache/pip/bin",
            "root/.cache/pip/bin/tool",
            "root/.cache/pip/empty",
            "root/.cache/pip/escape",
            "root/.cache/pip/escape-rel",
            "root/.cache/pip/hard",
            "root/.cache/pip/http",
            long.as_str(),
            "root/.cache/pip/http/a.bin",
            "root/.cache/pip/link",
            "root/.cache/pip/setuid",
        ];
        let mut expected_sorted = expected.clone();
        expected_sorted.sort();
        assert_eq!(names, expected_sorted);
        // Skipped: the fifo. Links leading out (escape, escape-rel) are kept.
        assert_eq!(stats.skipped, 1);
        assert_eq!(stats.files, 7);
        assert_eq!(stats.symlinks, 5);
        assert_eq!(stats.dirs, 8);
        assert_eq!(stats.bytes_compressed, entry.len() as u64);
        assert_eq!(stats.bytes_uncompressed, tar.len() as u64);
        assert_eq!(stats.sha256, hex(&Sha256::digest(&entry)));
    }

    #[test]
    fn entries_are_deterministic() {
        let (a, _) = build(all_inputs());
        let mut reversed = all_inputs();
        reversed.reverse();
        let (b, _) = build(reversed);
        assert_eq!(a.sha256, b.sha256);
    }

    fn unpack(tar: &[u8], dest: &Path) {
        let mut a = tar::Archive::new(tar);
        a.set_preserve_permissions(true);
        a.set_preserve_mtime(true);
        a.unpack(dest).unwrap();
    }

    #[test]
    fn round_trip_preserves_content_modes_symlinks_dirs_mtimes() {
        let (stats, entry) = build(all_inputs());
        let mut out = Vec::new();
        let rs = validated_restore_tar(entry.as_slice(), &all_paths(), &mut out).unwrap();
        assert_eq!(rs.files, stats.files);
        assert_eq!(rs.symlinks, stats.symlinks);
        assert_eq!(rs.dirs, stats.dirs);
        assert_eq!(rs.bytes, out.len() as u64);

        let dir = tempfile::tempdir().unwrap();
        unpack(&out, dir.path());
        let pip = dir.path().join("root/.cache/pip");
        assert_eq!(
            std::fs::read(pip.join("http/a.bin")).unwrap(),
            b"content of a"
        );
        assert_eq!(std::fs::read(pip.join("hard")).unwrap(), b"content of a");
        assert_eq!(
            std::fs::read(dir.path().join("root/.cache").join(LONG)).unwrap(),
            b"long"
        );
        let tool = std::fs::metadata(pip.join("bin/tool")).unwrap();
        assert_eq!(tool.permissions().mode() & 0o7777, 0o755);
        assert_eq!(tool.mtime(), 1_600_000_000);
        let suid = std::fs::metadata(pip.join("setuid")).unwrap();
        assert_eq!(suid.permissions().mode() & 0o7777, 0o755);
        let a = std::fs::metadata(pip.join("http/a.bin")).unwrap();
        assert_eq!(a.permissions().mode() & 0o7777, 0o644);
        let empty = std::fs::metadata(pip.join("empty")).unwrap();
        assert!(empty.is_dir());
        assert_eq!(empty.permissions().mode() & 0o7777, 0o700);
        assert_eq!(std::fs::read_dir(pip.join("empty")).unwrap().count(), 0);
        assert_eq!(
            std::fs::read_link(pip.join("link")).unwrap(),
            Path::new("http/a.bin")
        );
        assert_eq!(std::fs::read(pip.join("link")).unwrap(), b"content of a");
        assert_eq!(
            std::fs::read_link(pip.join("abslink")).unwrap(),
            Path::new("/root/.cache/pip/http/a.bin")
        );
        assert_eq!(
            std::fs::read_link(pip.join("escape")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert!(std::fs::symlink_metadata(pip.join("fifo")).is_err());
        let nm = dir.path().join("codebuild/output/src1/src/node_modules");
        assert_eq!(
            std::fs::read_link(nm.join(".bin/cli")).unwrap(),
            Path::new("../pkg/cli.js")
        );
        assert_eq!(
            std::fs::read(nm.join(".bin/cli")).unwrap(),
            b"console.log(1)"
        );
        assert_eq!(
            std::fs::metadata(nm.join("pkg/cli.js")).unwrap().mtime(),
            1_700_000_000
        );
        let cache = dir.path().join("root/.cache");
        assert_eq!(std::fs::read(cache.join("a.whl")).unwrap(), b"wheel");
        assert!(!cache.join("b.txt").exists());

        // Ownership is kept in the restore tar (Docker applies it).
        let mut ar = tar::Archive::new(out.as_slice());
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().uid().unwrap(), 1000);
            assert_eq!(e.header().gid().unwrap(), 1000);
        }
    }

    #[test]
    fn literal_path_and_bad_docker_streams() {
        let m2 = cp("/root/.m2");
        let stream = tar_of(&[E::Dir("m2", 0o755)], 1);
        let err = build_entry(vec![(m2.clone(), stream.as_slice())], &mut Vec::new()).unwrap_err();
        assert!(matches!(err, CacheError::BadInput { .. }), "{err}");
        let stream = tar_of(&[E::File(".m2/../x", 0o644, b"x")], 1);
        let err = build_entry(vec![(m2.clone(), stream.as_slice())], &mut Vec::new()).unwrap_err();
        assert!(matches!(err, CacheError::BadInput { .. }), "{err}");
        let stream = tar_of(
            &[
                E::Dir(".m2", 0o755),
                E::File(".m2/settings.xml", 0o600, b"s"),
            ],
            1,
        );
        let (stats, entry) = build(vec![(m2.clone(), stream)]);
        assert_eq!((stats.files, stats.dirs), (1, 1));
        let tar = zstd::decode_all(entry.as_slice()).unwrap();
        assert_eq!(tar_names(&tar), ["root/.m2", "root/.m2/settings.xml"]);
        // Garbage instead of a tar.
        let err = build_entry(vec![(m2, &b"not a tar at all"[..])], &mut Vec::new());
        assert!(err.is_err());
    }

    /// Restores a crafted plain tar (zstd-compressed) and expects a refusal with
    /// nothing written.
    fn refused(entries: &[E<'_>]) -> CacheError {
        let allowed = vec![cp("/root/.cache/pip/**/*"), cp("node_modules/**/*")];
        let entry = zstd_of(&tar_of(entries, 1));
        let mut out = Vec::new();
        let err = validated_restore_tar(entry.as_slice(), &allowed, &mut out).unwrap_err();
        assert!(out.is_empty(), "something was emitted before the refusal");
        err
    }

    fn assert_unsafe(entries: &[E<'_>], needle: &str) {
        let err = refused(entries);
        assert!(
            matches!(err, CacheError::Unsafe { .. }) && err.to_string().contains(needle),
            "expected Unsafe containing `{needle}`, got: {err}"
        );
    }

    const OK_DIR: E<'static> = E::Dir("root/.cache/pip", 0o755);
    const OK_FILE: E<'static> = E::File("root/.cache/pip/ok", 0o644, b"ok");

    #[test]
    fn refuses_parent_dir_and_absolute_names() {
        assert_unsafe(&[OK_DIR, OK_FILE, E::File("../x", 0o644, b"x")], "`..`");
        assert_unsafe(
            &[
                OK_DIR,
                E::File("root/.cache/pip/../../../etc/passwd", 0o644, b"x"),
            ],
            "`..`",
        );
        assert_unsafe(&[OK_DIR, E::File("/etc/passwd", 0o644, b"x")], "absolute");
        assert_unsafe(&[OK_DIR, E::Dir("/root/.cache/pip/x", 0o755)], "absolute");
    }

    #[test]
    fn refuses_entries_outside_the_cache_paths() {
        assert_unsafe(
            &[OK_DIR, OK_FILE, E::File("etc/passwd", 0o644, b"x")],
            "outside",
        );
        assert_unsafe(&[E::File("root/.cache/pipx/a", 0o644, b"x")], "outside");
        assert_unsafe(&[E::Dir("root/.cache", 0o755)], "outside");
        assert_unsafe(&[E::Dir("root", 0o755)], "outside");
        // Same entry twice.
        assert_unsafe(&[OK_DIR, OK_FILE, OK_FILE], "twice");
    }

    #[test]
    fn refuses_malformed_symlinks_and_replaced_cache_paths() {
        assert_unsafe(
            &[E::Sym("root/.cache/pip/x", "../../../../../../../..")],
            "climbs above the root",
        );
        assert_unsafe(&[E::Sym("root/.cache/pip/x", "")], "empty target");
        // The prefix itself replaced by a symlink.
        assert_unsafe(
            &[E::Sym("root/.cache/pip", "/etc")],
            "replaces the cache path",
        );
        // A link leading out is fine by itself (a venv's bin/python -> /usr/bin/python3);
        // writing through it is what refuses_writes_through_symlinks covers.
        assert_unsafe(
            &[
                E::Sym("root/.cache/pip/x", "/etc"),
                E::File("root/.cache/pip/x/passwd", 0o644, b"evil"),
            ],
            "through the symlink",
        );
    }

    #[test]
    fn refuses_writes_through_symlinks() {
        // `a -> /etc` then `a/passwd`: refused at the link already.
        assert_unsafe(
            &[
                E::Sym("root/.cache/pip/a", "/etc"),
                E::File("root/.cache/pip/a/passwd", 0o644, b"x"),
            ],
            "symlink",
        );
        // Even a link inside the cache paths may not be written through.
        assert_unsafe(
            &[
                E::Dir("root/.cache/pip/b", 0o755),
                E::Sym("root/.cache/pip/a", "b"),
                E::File("root/.cache/pip/a/passwd", 0o644, b"x"),
            ],
            "through the symlink /root/.cache/pip/a",
        );
        assert_unsafe(
            &[
                E::Sym("root/.cache/pip", "/root/.cache/pip/real"),
                E::Dir("root/.cache/pip/sub", 0o755),
            ],
            "replaces the cache path",
        );
    }

    #[test]
    fn refuses_hardlink_escapes_and_devices() {
        assert_unsafe(
            &[OK_DIR, E::Hard("root/.cache/pip/h", "etc/shadow")],
            "hard link",
        );
        assert_unsafe(
            &[OK_DIR, E::Hard("root/.cache/pip/h", "../../etc/shadow")],
            "hard link",
        );
        assert_unsafe(
            &[OK_DIR, E::Hard("root/.cache/pip/h", "/etc/shadow")],
            "hard link",
        );
        // A target inside the cache paths that the entry did not restore first.
        assert_unsafe(
            &[OK_DIR, E::Hard("root/.cache/pip/h", "root/.cache/pip/ok")],
            "hard link",
        );
        assert_unsafe(&[OK_DIR, E::Char("root/.cache/pip/null")], "device");
        assert_unsafe(&[OK_DIR, E::Block("root/.cache/pip/sda")], "device");
        assert_unsafe(&[OK_DIR, E::Fifo("root/.cache/pip/fifo")], "fifo");
    }

    #[test]
    fn accepts_hardlink_to_earlier_file_and_inside_symlinks() {
        let allowed = vec![cp("/root/.cache/pip/**/*")];
        let entry = zstd_of(&tar_of(
            &[
                OK_DIR,
                OK_FILE,
                E::Hard("root/.cache/pip/h", "root/.cache/pip/ok"),
                E::Sym("root/.cache/pip/s", "ok"),
                E::Sym("root/.cache/pip/t", "/root/.cache/pip"),
                E::Sym("root/.cache/pip/u", "sub/../ok"),
            ],
            1,
        ));
        let mut out = Vec::new();
        let rs = validated_restore_tar(entry.as_slice(), &allowed, &mut out).unwrap();
        assert_eq!((rs.files, rs.hardlinks, rs.symlinks, rs.dirs), (1, 1, 3, 1));
        let dir = tempfile::tempdir().unwrap();
        unpack(&out, dir.path());
        assert_eq!(
            std::fs::read(dir.path().join("root/.cache/pip/h")).unwrap(),
            b"ok"
        );
    }

    #[test]
    fn corrupt_entries() {
        let (_, entry) = build(all_inputs());
        let allowed = all_paths();
        let check = |bytes: &[u8], what: &str| {
            let mut out = Vec::new();
            let err = validated_restore_tar(bytes, &allowed, &mut out).unwrap_err();
            assert!(err.is_corrupt(), "{what}: {err}");
            assert!(out.is_empty(), "{what}: emitted");
        };
        check(&entry[..entry.len() / 2], "half");
        check(&entry[..entry.len() - 1], "last byte missing");
        check(&entry[..10], "header only");
        let mut flipped = entry.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x55;
        check(&flipped, "flipped byte");
        let mut trailing = entry.clone();
        trailing.extend_from_slice(b"garbage");
        check(&trailing, "trailing garbage");
        check(b"definitely not zstd", "not zstd");
        check(b"", "empty");
        // A valid zstd frame holding garbage instead of a tar.
        check(&zstd_of(&[0x41; 2048]), "not a tar");

        // A reader failing midway is corruption too.
        struct Failing<'a>(&'a [u8]);
        impl Read for Failing<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "disk on fire"));
                }
                let n = buf.len().min(self.0.len()).min(100);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut out = Vec::new();
        let err = validated_restore_tar(Failing(&entry[..entry.len() / 2]), &allowed, &mut out)
            .unwrap_err();
        assert!(
            err.is_corrupt() && err.to_string().contains("disk on fire"),
            "{err}"
        );
        assert!(out.is_empty());
    }

    #[test]
    fn resolve_symlink_is_lexical() {
        assert_eq!(resolve_symlink("a/b/c", "d").as_deref(), Some("a/b/d"));
        assert_eq!(resolve_symlink("a/b/c", "../d").as_deref(), Some("a/d"));
        assert_eq!(resolve_symlink("a/b/c", "/x/./y").as_deref(), Some("x/y"));
        assert_eq!(resolve_symlink("a/b/c", "../../..").as_deref(), None);
        assert_eq!(resolve_symlink("a/b/c", "../..").as_deref(), Some(""));
    }
}
