//! Where cache entries live: a small key → content-addressed blob store.
//!
//! The model is the one an object store offers, so that an S3 store can implement the
//! same trait: blobs are immutable objects named by the sha256 of their bytes
//! (`blobs/sha256/<hex>`; an S3 store writes them with `If-None-Match: *` and skips the
//! upload when the object exists), and each key is one small JSON object
//! (`keys/<encoded key>.json`) naming its blob; writing a key is a whole-object
//! replacement where the last writer wins. Listing keys by prefix is a listing of
//! `keys/<encoded prefix>`, which is why keys are percent-encoded (encoding preserves
//! prefixes) rather than hashed.
//!
//! [`LocalStore`] is that layout on a local directory:
//!
//! ```text
//! root/blobs/sha256/<hex>       compressed cache entries (immutable)
//! root/keys/<encoded key>.json  {"key", "blob", "size", "created", "last_used"}
//! root/tmp/                     files being written (renamed into place when complete)
//! ```
//!
//! Every write goes to a temporary file in `root/tmp`, is fsynced and renamed into place,
//! so readers see either the old or the new complete file; concurrent saves of one key
//! (threads or processes) each leave a valid entry and the last rename wins. Blob reads
//! are verified against their sha256 while streaming; a blob that is missing, has the
//! wrong size or the wrong hash is [`CacheError::Corrupt`] and is removed.
//!
//! Eviction (after each save, when the blobs exceed `max_bytes`): unreferenced blobs
//! first, then keys in least-recently-used order (`last_used`, then `created`), deleting
//! each key's blob once no remaining key refers to it; the entry just saved is never
//! evicted. A blob modified within the eviction grace period (default 60 s) is kept even
//! when unreferenced, since a concurrent save may be about to write the key that refers
//! to it (it is collected by a later eviction); a race that still loses a blob shows up
//! as a missing blob on lookup, i.e. a cache miss, never as wrong content.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::archive::hex;
use super::error::CacheError;

/// Default size limit of a [`LocalStore`]: 5 GiB of blobs.
pub const DEFAULT_MAX_BYTES: u64 = 5 << 30;

/// Default time a freshly written blob is safe from eviction when unreferenced.
const DEFAULT_GRACE: Duration = Duration::from_secs(60);

/// Temporary files older than this are leftovers of crashed writers.
const STALE_TMP: Duration = Duration::from_secs(24 * 3600);

/// Encoded key names longer than this are cut and completed with a hash of the key.
const MAX_ENCODED: usize = 180;

/// One stored cache entry: the key record (also its JSON form in the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryHandle {
    /// The key as given to `save`.
    pub key: String,
    /// Lowercase hex sha256 of the compressed entry (the blob's name).
    pub blob: String,
    /// Size of the blob in bytes.
    pub size: u64,
    /// When the key was saved, in nanoseconds since the Unix epoch.
    pub created: u64,
    /// When the key was last saved or found, in nanoseconds since the Unix epoch.
    pub last_used: u64,
}

/// A cache store: keys naming content-addressed blobs.
///
/// Synchronous; callers on an async runtime use `spawn_blocking`.
pub trait CacheStore: Send + Sync {
    /// The entry saved under exactly `key`, marking it used.
    fn lookup(&self, key: &str) -> Result<Option<EntryHandle>, CacheError>;

    /// The newest entry (by `created`) whose key starts with `prefix` (CodeBuild's
    /// `fallback-keys` semantics), marking it used.
    fn lookup_prefix(&self, prefix: &str) -> Result<Option<EntryHandle>, CacheError>;

    /// Reads an entry's blob. The reader verifies the blob's size and sha256 as it
    /// streams and fails with an `InvalidData` error wrapping [`CacheError::Corrupt`]
    /// at the end when they do not match (the store then removes the entry); a missing
    /// blob is `Err(Corrupt)` at once.
    fn open(&self, entry: &EntryHandle) -> Result<Box<dyn Read + Send>, CacheError>;

    /// Saves the compressed entry read from `entry`, whose sha256 is `sha256` (as
    /// computed by `build_entry`), under `key`, replacing what the key named before.
    /// A blob already stored is not written again. Fails with `Corrupt` (and stores
    /// nothing) when the bytes read do not hash to `sha256`.
    fn save(
        &self,
        key: &str,
        sha256: &str,
        entry: &mut dyn Read,
    ) -> Result<EntryHandle, CacheError>;

    /// Removes a corrupt entry: its key (when it still names the same blob) and its blob.
    /// The caller calls it when restoring from the entry fails with
    /// [`CacheError::Corrupt`] (the decoder may stop before the store's own check at the
    /// end of the blob), then reports a miss.
    fn remove(&self, entry: &EntryHandle) -> Result<(), CacheError>;

    /// CodeBuild's restore order: `key` exactly, then each fallback key as a prefix, in
    /// order, newest first.
    fn find(&self, key: &str, fallback_keys: &[String]) -> Result<Option<EntryHandle>, CacheError> {
        if let Some(hit) = self.lookup(key)? {
            return Ok(Some(hit));
        }
        for fallback in fallback_keys {
            if let Some(hit) = self.lookup_prefix(fallback)? {
                return Ok(Some(hit));
            }
        }
        Ok(None)
    }
}

/// What one eviction pass removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvictStats {
    pub keys: u64,
    pub blobs: u64,
    pub bytes: u64,
}

/// A [`CacheStore`] in a local directory (see the module documentation for the layout).
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    max_bytes: u64,
    grace: Duration,
}

/// Now, in nanoseconds since the Unix epoch; strictly increasing within the process.
pub(crate) fn now_ns() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    // Strictly increasing within the process, so that "newest" is well defined.
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push_str(&hex(&[b]).to_uppercase());
        }
    }
    out
}

/// Cuts an encoded key to at most `max` bytes without splitting a `%XX` escape.
fn cut_encoded(encoded: &str, max: usize) -> &str {
    if encoded.len() <= max {
        return encoded;
    }
    let bytes = encoded.as_bytes();
    let mut end = max;
    // An escape starting at end-1 or end-2 would be split.
    for back in 1..=2 {
        if end >= back && bytes[end - back] == b'%' {
            end -= back;
            break;
        }
    }
    &encoded[..end]
}

/// The file name (without `.json`) of a key: percent-encoded (only `A-Z a-z 0-9 - _ .`
/// kept), so no key can name a path outside `keys/`; keys whose encoding is long are cut
/// and completed with `~` and a hash of the whole key (`~` is always encoded otherwise).
pub(crate) fn key_stem(key: &str) -> String {
    let encoded = percent_encode(key);
    if encoded.len() <= MAX_ENCODED {
        return encoded;
    }
    let digest = hex(&Sha256::digest(key.as_bytes()));
    format!("{}~{}", cut_encoded(&encoded, MAX_ENCODED), &digest[..32])
}

/// A prefix of the stem of every key starting with `prefix` (cuts happen at or after
/// `MAX_ENCODED - 2` bytes), for listing the candidates of a prefix lookup; the records
/// found still need the `key.starts_with(prefix)` check.
pub(crate) fn key_stem_prefix(prefix: &str) -> String {
    let encoded = percent_encode(prefix);
    cut_encoded(&encoded, MAX_ENCODED - 2).to_string()
}

/// A key record from its JSON; `None` (treated as absent) when it does not parse or
/// names something that is not a sha256.
pub(crate) fn parse_record(bytes: &[u8]) -> Option<EntryHandle> {
    serde_json::from_slice::<EntryHandle>(bytes)
        .ok()
        .filter(|rec| is_sha256_hex(&rec.blob))
}

pub(crate) fn check_key(key: &str) -> Result<(), CacheError> {
    if key.is_empty() {
        return Err(CacheError::BadKey {
            key: key.to_string(),
            reason: "the key is empty",
        });
    }
    Ok(())
}

fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

/// Removes a file, ignoring "not found".
fn remove_file_quiet(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if !not_found(&e) => Err(e),
        _ => Ok(()),
    }
}

fn sync_dir(dir: &Path) {
    // Best effort: makes renames durable; not supported everywhere.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn read_record(path: &Path) -> io::Result<Option<EntryHandle>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if not_found(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    // A record that does not parse is ignored (treated as absent).
    Ok(parse_record(&bytes))
}

/// Removes the key record at `key_path` if it still names `blob`, and the blob file.
fn remove_entry_files(key_path: &Path, blob: &str, blob_path: &Path) -> io::Result<()> {
    if let Some(rec) = read_record(key_path)? {
        if rec.blob == blob {
            remove_file_quiet(key_path)?;
        }
    } else {
        remove_file_quiet(key_path)?;
    }
    remove_file_quiet(blob_path)
}

impl LocalStore {
    /// A store in `root` (created if missing) limited to [`DEFAULT_MAX_BYTES`].
    pub fn new(root: impl Into<PathBuf>) -> Result<LocalStore, CacheError> {
        let store = LocalStore {
            root: root.into(),
            max_bytes: DEFAULT_MAX_BYTES,
            grace: DEFAULT_GRACE,
        };
        for dir in [store.blob_dir(), store.key_dir(), store.tmp_dir()] {
            fs::create_dir_all(&dir)
                .map_err(|e| CacheError::io("create the cache directory", &dir, e))?;
        }
        Ok(store)
    }

    /// Sets the size limit of the blobs.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> LocalStore {
        self.max_bytes = max_bytes;
        self
    }

    /// Sets how long a freshly written, unreferenced blob is safe from eviction.
    pub fn with_eviction_grace(mut self, grace: Duration) -> LocalStore {
        self.grace = grace;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    fn key_dir(&self) -> PathBuf {
        self.root.join("keys")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        self.blob_dir().join(sha256)
    }

    fn key_path(&self, key: &str) -> PathBuf {
        self.key_dir().join(format!("{}.json", key_stem(key)))
    }

    fn temp_file(&self) -> Result<tempfile::NamedTempFile, CacheError> {
        let dir = self.tmp_dir();
        tempfile::Builder::new()
            .prefix(".part-")
            .tempfile_in(&dir)
            .map_err(|e| CacheError::io("create a temporary file in", &dir, e))
    }

    /// Writes `bytes` to `dest` atomically (temporary file, fsync, rename).
    fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> Result<(), CacheError> {
        let mut tmp = self.temp_file()?;
        let io_err = |e| CacheError::io("write", dest, e);
        tmp.write_all(bytes).map_err(io_err)?;
        tmp.as_file().sync_all().map_err(io_err)?;
        tmp.persist(dest).map_err(|e| io_err(e.error))?;
        Ok(())
    }

    fn write_record(&self, rec: &EntryHandle) -> Result<(), CacheError> {
        let path = self.key_path(&rec.key);
        let json = serde_json::to_vec_pretty(rec).map_err(|e| {
            CacheError::io(
                "encode",
                &path,
                io::Error::new(io::ErrorKind::InvalidData, e),
            )
        })?;
        self.write_atomic(&path, &json)?;
        if let Some(dir) = path.parent() {
            sync_dir(dir);
        }
        Ok(())
    }

    /// Marks `rec` used now, unless its key was re-saved meanwhile.
    fn touch(&self, mut rec: EntryHandle) -> Result<EntryHandle, CacheError> {
        let path = self.key_path(&rec.key);
        let current = read_record(&path).map_err(|e| CacheError::io("read", &path, e))?;
        if current.as_ref() != Some(&rec) {
            // Re-saved or removed meanwhile: leave the newer record alone.
            return Ok(rec);
        }
        rec.last_used = now_ns().max(rec.last_used);
        self.write_record(&rec)?;
        Ok(rec)
    }

    /// All key records, with their files.
    fn records(&self) -> Result<Vec<(PathBuf, EntryHandle)>, CacheError> {
        self.records_with_stem_prefix("")
    }

    fn records_with_stem_prefix(
        &self,
        stem_prefix: &str,
    ) -> Result<Vec<(PathBuf, EntryHandle)>, CacheError> {
        let dir = self.key_dir();
        let list_err = |e| CacheError::io("list", &dir, e);
        let mut out = Vec::new();
        for dirent in fs::read_dir(&dir).map_err(list_err)? {
            let dirent = dirent.map_err(list_err)?;
            let name = dirent.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            if !stem.starts_with(stem_prefix) {
                continue;
            }
            let path = dirent.path();
            let rec = read_record(&path).map_err(|e| CacheError::io("read", &path, e))?;
            // A record whose key does not encode to its file name is ignored.
            if let Some(rec) = rec.filter(|r| key_stem(&r.key) == stem) {
                out.push((path, rec));
            }
        }
        Ok(out)
    }

    /// Blobs in the store: (sha256, size, modified).
    fn blobs(&self) -> Result<Vec<(String, u64, SystemTime)>, CacheError> {
        let dir = self.blob_dir();
        let list_err = |e| CacheError::io("list", &dir, e);
        let mut out = Vec::new();
        for dirent in fs::read_dir(&dir).map_err(list_err)? {
            let dirent = dirent.map_err(list_err)?;
            let Ok(name) = dirent.file_name().into_string() else {
                continue;
            };
            if !is_sha256_hex(&name) {
                continue;
            }
            match dirent.metadata() {
                Ok(m) => out.push((name, m.len(), m.modified().unwrap_or(UNIX_EPOCH))),
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(CacheError::io("inspect", dirent.path(), e)),
            }
        }
        Ok(out)
    }

    /// Total size of the stored blobs.
    pub fn total_blob_bytes(&self) -> Result<u64, CacheError> {
        Ok(self.blobs()?.iter().map(|(_, size, _)| size).sum())
    }

    fn remove_stale_tmp(&self) {
        let Ok(entries) = fs::read_dir(self.tmp_dir()) else {
            return;
        };
        let now = SystemTime::now();
        for dirent in entries.flatten() {
            let stale = dirent
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| now.duration_since(t).unwrap_or_default() > STALE_TMP)
                .unwrap_or(false);
            if stale {
                let _ = remove_file_quiet(&dirent.path());
            }
        }
    }

    /// Brings the blobs under `max_bytes`: unreferenced blobs first, then the least
    /// recently used keys; never `protect` (the entry just saved) nor its blob.
    pub fn evict(&self, protect: Option<&EntryHandle>) -> Result<EvictStats, CacheError> {
        self.remove_stale_tmp();
        let mut stats = EvictStats::default();
        let blobs = self.blobs()?;
        let mut total: u64 = blobs.iter().map(|(_, size, _)| size).sum();
        if total <= self.max_bytes {
            return Ok(stats);
        }
        let now = SystemTime::now();
        let in_grace =
            |modified: SystemTime| now.duration_since(modified).unwrap_or_default() < self.grace;
        let blob_info: HashMap<String, (u64, SystemTime)> = blobs
            .into_iter()
            .map(|(name, size, modified)| (name, (size, modified)))
            .collect();
        let protected_blob = protect.map(|p| p.blob.as_str());

        let mut records = self.records()?;
        let mut refs: HashMap<String, usize> = HashMap::new();
        for (_, rec) in &records {
            *refs.entry(rec.blob.clone()).or_default() += 1;
        }

        // Unreferenced blobs.
        let mut orphans: Vec<(&String, &(u64, SystemTime))> = blob_info
            .iter()
            .filter(|(name, _)| !refs.contains_key(*name) && Some(name.as_str()) != protected_blob)
            .collect();
        orphans.sort_by_key(|(_, (_, modified))| *modified);
        for (name, (size, modified)) in orphans {
            if total <= self.max_bytes {
                break;
            }
            if in_grace(*modified) {
                continue;
            }
            let path = self.blob_path(name);
            remove_file_quiet(&path).map_err(|e| CacheError::io("remove", &path, e))?;
            total = total.saturating_sub(*size);
            stats.blobs += 1;
            stats.bytes += size;
        }

        // Least recently used keys.
        records.sort_by(|(_, a), (_, b)| {
            (a.last_used, a.created, &a.key).cmp(&(b.last_used, b.created, &b.key))
        });
        for (path, rec) in records {
            if total <= self.max_bytes {
                break;
            }
            if protect.is_some_and(|p| p.key == rec.key) {
                continue;
            }
            remove_file_quiet(&path).map_err(|e| CacheError::io("remove", &path, e))?;
            stats.keys += 1;
            let count = refs.entry(rec.blob.clone()).or_default();
            *count = count.saturating_sub(1);
            if *count > 0 || Some(rec.blob.as_str()) == protected_blob {
                continue;
            }
            let Some((size, modified)) = blob_info.get(&rec.blob) else {
                continue;
            };
            // A blob within the grace period may be about to be named by a concurrent
            // save: keep it (a later eviction collects it) but count it as freed.
            if !in_grace(*modified) {
                let blob_path = self.blob_path(&rec.blob);
                remove_file_quiet(&blob_path)
                    .map_err(|e| CacheError::io("remove", &blob_path, e))?;
                stats.blobs += 1;
                stats.bytes += size;
            }
            total = total.saturating_sub(*size);
        }
        Ok(stats)
    }
}

/// Streams a blob, checking its size and sha256; removes the entry when they are wrong.
struct VerifyingReader {
    inner: BufReader<File>,
    hasher: Sha256,
    read: u64,
    expected_size: u64,
    expected_sha: String,
    key_path: PathBuf,
    blob_path: PathBuf,
    failed: Option<String>,
}

impl VerifyingReader {
    fn fail(&mut self, reason: String) -> io::Error {
        if self.failed.is_none() {
            let _ = remove_entry_files(&self.key_path, &self.expected_sha, &self.blob_path);
            self.failed = Some(reason.clone());
        }
        io::Error::new(io::ErrorKind::InvalidData, CacheError::corrupt(reason))
    }
}

impl Read for VerifyingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(reason) = &self.failed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                CacheError::corrupt(reason.clone()),
            ));
        }
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        if self.read > self.expected_size {
            let reason = format!(
                "blob {} is larger than its recorded {} bytes",
                self.expected_sha, self.expected_size
            );
            return Err(self.fail(reason));
        }
        if n == 0 && !buf.is_empty() {
            if self.read != self.expected_size {
                let reason = format!(
                    "blob {} has {} bytes, {} were recorded",
                    self.expected_sha, self.read, self.expected_size
                );
                return Err(self.fail(reason));
            }
            let actual = hex(&self.hasher.clone().finalize());
            if actual != self.expected_sha {
                let reason = format!(
                    "blob {} has sha256 {actual}; it was damaged on disk",
                    self.expected_sha
                );
                return Err(self.fail(reason));
            }
        }
        Ok(n)
    }
}

impl CacheStore for LocalStore {
    fn lookup(&self, key: &str) -> Result<Option<EntryHandle>, CacheError> {
        check_key(key)?;
        let path = self.key_path(key);
        let rec = read_record(&path).map_err(|e| CacheError::io("read", &path, e))?;
        match rec.filter(|r| r.key == key) {
            Some(rec) => self.touch(rec).map(Some),
            None => Ok(None),
        }
    }

    fn lookup_prefix(&self, prefix: &str) -> Result<Option<EntryHandle>, CacheError> {
        let newest = self
            .records_with_stem_prefix(&key_stem_prefix(prefix))?
            .into_iter()
            .map(|(_, rec)| rec)
            .filter(|rec| rec.key.starts_with(prefix))
            .max_by(|a, b| (a.created, &a.key).cmp(&(b.created, &b.key)));
        match newest {
            Some(rec) => self.touch(rec).map(Some),
            None => Ok(None),
        }
    }

    fn open(&self, entry: &EntryHandle) -> Result<Box<dyn Read + Send>, CacheError> {
        if !is_sha256_hex(&entry.blob) {
            return Err(CacheError::corrupt(format!(
                "key `{}` names an invalid blob `{}`",
                entry.key, entry.blob
            )));
        }
        let key_path = self.key_path(&entry.key);
        let blob_path = self.blob_path(&entry.blob);
        let file = match File::open(&blob_path) {
            Ok(f) => f,
            Err(e) if not_found(&e) => {
                let _ = remove_entry_files(&key_path, &entry.blob, &blob_path);
                return Err(CacheError::corrupt(format!(
                    "blob {} of key `{}` is missing",
                    entry.blob, entry.key
                )));
            }
            Err(e) => return Err(CacheError::io("open", &blob_path, e)),
        };
        Ok(Box::new(VerifyingReader {
            inner: BufReader::with_capacity(256 * 1024, file),
            hasher: Sha256::new(),
            read: 0,
            expected_size: entry.size,
            expected_sha: entry.blob.clone(),
            key_path,
            blob_path,
            failed: None,
        }))
    }

    fn save(
        &self,
        key: &str,
        sha256: &str,
        entry: &mut dyn Read,
    ) -> Result<EntryHandle, CacheError> {
        check_key(key)?;
        if !is_sha256_hex(sha256) {
            return Err(CacheError::corrupt(format!(
                "`{sha256}` is not a lowercase hex sha256"
            )));
        }
        let blob_path = self.blob_path(sha256);
        let existing = match fs::metadata(&blob_path) {
            Ok(m) if m.is_file() => Some(m.len()),
            _ => None,
        };
        let size = match existing {
            Some(size) => {
                // Already stored: refresh its mtime so a concurrent eviction sees it as
                // fresh (see the eviction grace period).
                if let Ok(f) = File::options().write(true).open(&blob_path) {
                    let _ = f.set_modified(SystemTime::now());
                }
                size
            }
            None => {
                let mut tmp = self.temp_file()?;
                let tmp_path = tmp.path().to_path_buf();
                let mut hasher = Sha256::new();
                let mut size: u64 = 0;
                {
                    let mut writer = BufWriter::with_capacity(256 * 1024, tmp.as_file_mut());
                    let mut buf = vec![0u8; 256 * 1024];
                    loop {
                        let n = match entry.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => {
                                return Err(CacheError::Stream {
                                    action: "read the cache entry to save",
                                    source: e,
                                })
                            }
                        };
                        hasher.update(&buf[..n]);
                        size += n as u64;
                        writer
                            .write_all(&buf[..n])
                            .map_err(|e| CacheError::io("write", &tmp_path, e))?;
                    }
                    writer
                        .flush()
                        .map_err(|e| CacheError::io("write", &tmp_path, e))?;
                }
                let actual = hex(&hasher.finalize());
                if actual != sha256 {
                    return Err(CacheError::corrupt(format!(
                        "the entry to save has sha256 {actual}, not {sha256} as announced"
                    )));
                }
                tmp.as_file()
                    .sync_all()
                    .map_err(|e| CacheError::io("write", &tmp_path, e))?;
                tmp.persist(&blob_path)
                    .map_err(|e| CacheError::io("store", &blob_path, e.error))?;
                sync_dir(&self.blob_dir());
                size
            }
        };
        let now = now_ns();
        let rec = EntryHandle {
            key: key.to_string(),
            blob: sha256.to_string(),
            size,
            created: now,
            last_used: now,
        };
        self.write_record(&rec)?;
        // Best effort: a failed eviction leaves the store over its limit until the next.
        let _ = self.evict(Some(&rec));
        Ok(rec)
    }

    fn remove(&self, entry: &EntryHandle) -> Result<(), CacheError> {
        let key_path = self.key_path(&entry.key);
        if !is_sha256_hex(&entry.blob) {
            return remove_file_quiet(&key_path)
                .map_err(|e| CacheError::io("remove", &key_path, e));
        }
        let blob_path = self.blob_path(&entry.blob);
        remove_entry_files(&key_path, &entry.blob, &blob_path)
            .map_err(|e| CacheError::io("remove", &key_path, e))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::sync::Arc;

    fn sha(data: &[u8]) -> String {
        hex(&Sha256::digest(data))
    }

    fn store(dir: &Path) -> LocalStore {
        LocalStore::new(dir.join("cache"))
            .unwrap()
            .with_eviction_grace(Duration::ZERO)
    }

    fn save(s: &LocalStore, key: &str, data: &[u8]) -> EntryHandle {
        s.save(key, &sha(data), &mut &data[..]).unwrap()
    }

    fn read_all(s: &LocalStore, h: &EntryHandle) -> Result<Vec<u8>, io::Error> {
        let mut r = s.open(h).map_err(io::Error::other)?;
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn hit_miss_and_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        assert_eq!(s.lookup("deps-1").unwrap(), None);
        let saved = save(&s, "deps-1", b"one");
        assert_eq!(saved.size, 3);
        assert!(s.root().join("blobs/sha256").join(sha(b"one")).is_file());
        assert!(s.root().join("keys/deps-1.json").is_file());
        let hit = s.lookup("deps-1").unwrap().unwrap();
        assert_eq!(hit.blob, sha(b"one"));
        assert!(hit.last_used > saved.last_used);
        assert_eq!(hit.created, saved.created);
        assert_eq!(read_all(&s, &hit).unwrap(), b"one");
        assert_eq!(s.lookup("deps-").unwrap(), None);
        assert_eq!(s.lookup("deps-10").unwrap(), None);

        // Overwrite: the key now names the new blob.
        save(&s, "deps-1", b"two");
        let hit = s.lookup("deps-1").unwrap().unwrap();
        assert_eq!(read_all(&s, &hit).unwrap(), b"two");
        // Empty keys are refused.
        assert!(matches!(s.lookup(""), Err(CacheError::BadKey { .. })));
        assert!(s.save("", &sha(b"x"), &mut &b"x"[..]).is_err());
        // A wrong announced sha256 stores nothing.
        let err = s.save("k", &sha(b"other"), &mut &b"x"[..]).unwrap_err();
        assert!(err.is_corrupt());
        assert_eq!(s.lookup("k").unwrap(), None);
        assert!(!s.root().join("blobs/sha256").join(sha(b"x")).exists());
        assert_eq!(std::fs::read_dir(s.root().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn fallback_prefix_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        save(&s, "npm-main-aaa", b"a");
        save(&s, "npm-main-bbb", b"b");
        save(&s, "npm-feature-ccc", b"c");
        save(&s, "pip-ddd", b"d");
        assert_eq!(
            s.lookup_prefix("npm-main-").unwrap().unwrap().key,
            "npm-main-bbb"
        );
        assert_eq!(
            s.lookup_prefix("npm-").unwrap().unwrap().key,
            "npm-feature-ccc"
        );
        assert_eq!(s.lookup_prefix("").unwrap().unwrap().key, "pip-ddd");
        assert_eq!(s.lookup_prefix("gradle-").unwrap(), None);
        // Re-saving makes a key the newest; a lookup does not.
        s.lookup("npm-main-aaa").unwrap().unwrap();
        assert_eq!(
            s.lookup_prefix("npm-main-").unwrap().unwrap().key,
            "npm-main-bbb"
        );
        save(&s, "npm-main-aaa", b"a2");
        assert_eq!(
            s.lookup_prefix("npm-main-").unwrap().unwrap().key,
            "npm-main-aaa"
        );

        // CodeBuild order: the exact key, then each fallback in order.
        let f = |k: &str, fb: &[&str]| {
            let fb: Vec<String> = fb.iter().map(|s| s.to_string()).collect();
            s.find(k, &fb).unwrap().map(|h| h.key)
        };
        assert_eq!(
            f("npm-main-bbb", &["npm-"]).as_deref(),
            Some("npm-main-bbb")
        );
        assert_eq!(
            f("npm-main-zzz", &["npm-main-", "npm-"]).as_deref(),
            Some("npm-main-aaa")
        );
        assert_eq!(
            f("npm-x-zzz", &["npm-x-", "npm-"]).as_deref(),
            Some("npm-main-aaa")
        );
        assert_eq!(
            f("npm-x-zzz", &["npm-f"]).as_deref(),
            Some("npm-feature-ccc")
        );
        assert_eq!(f("npm-x-zzz", &["yarn-"]), None);
    }

    #[test]
    fn keys_with_slashes_dots_and_odd_characters_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let long = format!("long/{}", "é../".repeat(200));
        let keys = [
            "../../../../etc/passwd",
            "..",
            ".",
            "a/b/c",
            "/abs/key",
            "sp ace%2F~",
            "nul\0byte",
            "ünïcødé",
            long.as_str(),
        ];
        for (i, k) in keys.iter().enumerate() {
            save(&s, k, format!("data {i}").as_bytes());
        }
        // Nothing outside root/keys, one flat file per key.
        let names: Vec<String> = std::fs::read_dir(s.root().join("keys"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), keys.len(), "{names:?}");
        for n in &names {
            assert!(
                !n.contains('/') && n.ends_with(".json") && n.len() < 255,
                "{n}"
            );
        }
        let top: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(top.len(), 1);
        for (i, k) in keys.iter().enumerate() {
            let h = s.lookup(k).unwrap().unwrap();
            assert_eq!(&h.key, k);
            assert_eq!(read_all(&s, &h).unwrap(), format!("data {i}").as_bytes());
        }
        // Prefix lookups work across the encoding, long keys included.
        assert_eq!(s.lookup_prefix("../").unwrap().unwrap().key, keys[0]);
        assert_eq!(s.lookup_prefix("long/é../é").unwrap().unwrap().key, long);
        assert_eq!(
            s.lookup_prefix(&long[..long.len() - 3])
                .unwrap()
                .unwrap()
                .key,
            long
        );
        assert_eq!(s.lookup_prefix("sp ace%").unwrap().unwrap().key, keys[5]);
        assert_eq!(s.lookup_prefix("sp ace%3").unwrap(), None);
    }

    #[test]
    fn concurrent_saves_of_one_key_leave_a_valid_entry() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(store(dir.path()));
        let payloads: Vec<Vec<u8>> = (0..8u8)
            .map(|i| {
                (0..(256 * 1024 + i as usize * 1000))
                    .map(|j| (j as u8) ^ i)
                    .collect()
            })
            .collect();
        for round in 0..3 {
            let barrier = Arc::new(std::sync::Barrier::new(8));
            let handles: Vec<_> = payloads
                .iter()
                .cloned()
                .map(|data| {
                    let s = Arc::clone(&s);
                    let barrier = Arc::clone(&barrier);
                    std::thread::spawn(move || {
                        barrier.wait();
                        // Same key, and a shared blob under a second key.
                        save(&s, "same-key", &data);
                        save(&s, "shared", b"same content for all");
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            let hit = s.lookup("same-key").unwrap().unwrap();
            let data = read_all(&s, &hit).unwrap();
            assert!(
                payloads.contains(&data),
                "round {round}: unexpected content"
            );
            assert_eq!(sha(&data), hit.blob);
            let shared = s.lookup("shared").unwrap().unwrap();
            assert_eq!(read_all(&s, &shared).unwrap(), b"same content for all");
        }
        assert_eq!(std::fs::read_dir(s.root().join("tmp")).unwrap().count(), 0);
        // Every blob is intact.
        for (name, _, _) in s.blobs().unwrap() {
            let bytes = std::fs::read(s.blob_path(&name)).unwrap();
            assert_eq!(sha(&bytes), name);
        }
    }

    #[test]
    fn eviction_is_least_recently_used_and_spares_the_new_entry() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path()).with_max_bytes(3000);
        let blob = |c: u8| vec![c; 1000];
        save(&s, "k1", &blob(1));
        save(&s, "k2", &blob(2));
        save(&s, "k3", &blob(3));
        // Use k1: k2 is now the least recently used.
        s.lookup("k1").unwrap().unwrap();
        save(&s, "k4", &blob(4));
        assert_eq!(s.lookup("k2").unwrap(), None);
        assert!(!s.blob_path(&sha(&blob(2))).exists());
        for k in ["k1", "k3", "k4"] {
            assert!(s.lookup(k).unwrap().is_some(), "{k}");
        }
        assert_eq!(s.total_blob_bytes().unwrap(), 3000);
        // Lookups above refreshed k1, k3, k4 in that order: k1 goes next.
        save(&s, "k5", &blob(5));
        assert_eq!(s.lookup("k1").unwrap(), None);
        assert!(s.lookup("k3").unwrap().is_some());

        // A blob shared by two keys stays while one of them does.
        let s = store(&dir.path().join("b")).with_max_bytes(2500);
        save(&s, "a", &blob(7));
        save(&s, "b", &blob(7));
        save(&s, "c", &blob(8));
        save(&s, "d", &blob(9)); // 3000 bytes: evicts `a` (LRU) but its blob stays for `b`…
        assert_eq!(s.lookup("a").unwrap(), None);
        // …and then `b` as well, freeing the blob.
        assert_eq!(s.lookup("b").unwrap(), None);
        assert!(!s.blob_path(&sha(&blob(7))).exists());
        assert!(s.lookup("c").unwrap().is_some() && s.lookup("d").unwrap().is_some());

        // The entry just saved is never evicted, even when alone over the limit.
        let s = store(&dir.path().join("c")).with_max_bytes(10);
        save(&s, "big", &blob(1));
        assert!(s.lookup("big").unwrap().is_some());
        save(&s, "big2", &blob(2));
        assert_eq!(s.lookup("big").unwrap(), None);
        assert!(s.lookup("big2").unwrap().is_some());

        // Orphan blobs go first; within the grace period they are kept.
        let s = LocalStore::new(dir.path().join("d"))
            .unwrap()
            .with_max_bytes(2000);
        std::fs::write(s.blob_path(&sha(&blob(6))), blob(6)).unwrap();
        // Ten seconds older than what follows (file times can tie within a test), and
        // still inside the 60 s grace period.
        std::fs::File::options()
            .write(true)
            .open(s.blob_path(&sha(&blob(6))))
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(10))
            .unwrap();
        save(&s, "x", &blob(1));
        save(&s, "y", &blob(2));
        // Over the limit: the fresh orphan is spared, so key `x` goes (its blob, fresh
        // too, stays until a later eviction).
        assert!(
            s.blob_path(&sha(&blob(6))).exists(),
            "orphan in grace period"
        );
        assert_eq!(s.lookup("x").unwrap(), None);
        assert!(s.blob_path(&sha(&blob(1))).exists());
        let s = s.with_eviction_grace(Duration::ZERO);
        let stats = s.evict(None).unwrap();
        assert_eq!(
            stats,
            EvictStats {
                keys: 0,
                blobs: 1,
                bytes: 1000
            }
        );
        assert!(!s.blob_path(&sha(&blob(6))).exists(), "oldest orphan first");
        assert!(s.lookup("y").unwrap().is_some());
        assert_eq!(s.total_blob_bytes().unwrap(), 2000);
    }

    #[test]
    fn corrupt_or_missing_blob_is_reported_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let data = vec![42u8; 100_000];
        save(&s, "k", &data);
        let h = s.lookup("k").unwrap().unwrap();
        // Flip one byte on disk (same size).
        let path = s.blob_path(&h.blob);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[50_000] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = read_all(&s, &h).unwrap_err();
        let inner = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<CacheError>())
            .unwrap();
        assert!(inner.is_corrupt(), "{inner}");
        assert!(!path.exists());
        assert_eq!(s.lookup("k").unwrap(), None);

        // Truncated blob.
        save(&s, "k", &data);
        let h = s.lookup("k").unwrap().unwrap();
        std::fs::write(s.blob_path(&h.blob), &data[..10]).unwrap();
        assert!(read_all(&s, &h).is_err());
        assert_eq!(s.lookup("k").unwrap(), None);

        // Missing blob.
        save(&s, "k", &data);
        let h = s.lookup("k").unwrap().unwrap();
        std::fs::remove_file(s.blob_path(&h.blob)).unwrap();
        let err = s.open(&h).err().unwrap();
        assert!(err.is_corrupt());
        assert_eq!(s.lookup("k").unwrap(), None);

        // A damaged key record is a miss; a record naming a path is ignored.
        std::fs::write(s.key_path("j"), b"{not json").unwrap();
        assert_eq!(s.lookup("j").unwrap(), None);
        std::fs::write(
            s.key_path("j"),
            br#"{"key":"j","blob":"../../../etc/passwd","size":1,"created":1,"last_used":1}"#,
        )
        .unwrap();
        assert_eq!(s.lookup("j").unwrap(), None);

        // Through the restore path: a corrupt blob is a Corrupt restore error.
        save(&s, "k", &data);
        let h = s.lookup("k").unwrap().unwrap();
        let mut bytes = std::fs::read(s.blob_path(&h.blob)).unwrap();
        bytes[0] ^= 1;
        std::fs::write(s.blob_path(&h.blob), &bytes).unwrap();
        // The decoder fails before the end of the blob: the caller removes the entry.
        let r = s.open(&h).unwrap();
        let err = crate::cache::validated_restore_tar(r, &[], io::sink()).unwrap_err();
        assert!(err.is_corrupt());
        s.remove(&h).unwrap();
        assert_eq!(s.lookup("k").unwrap(), None);

        // `remove` drops key and blob.
        save(&s, "k", &data);
        let h = s.lookup("k").unwrap().unwrap();
        s.remove(&h).unwrap();
        assert_eq!(s.lookup("k").unwrap(), None);
        assert!(!s.blob_path(&h.blob).exists());
    }

    #[test]
    fn saving_an_existing_blob_does_not_read_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        save(&s, "a", b"payload");
        struct Panics;
        impl Read for Panics {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                panic!("read");
            }
        }
        let h = s.save("b", &sha(b"payload"), &mut Panics).unwrap();
        assert_eq!(h.size, 7);
        assert_eq!(
            read_all(&s, &s.lookup("b").unwrap().unwrap()).unwrap(),
            b"payload"
        );
    }

    #[test]
    fn key_encoding() {
        assert_eq!(key_stem("deps-1.2_x"), "deps-1.2_x");
        assert_eq!(key_stem("a/b"), "a%2Fb");
        assert_eq!(key_stem("../x"), "..%2Fx");
        assert_eq!(key_stem("~"), "%7E");
        let long = "x/".repeat(100);
        let stem = key_stem(&long);
        assert!(stem.len() <= MAX_ENCODED + 33 && stem.contains('~'));
        assert!(stem.starts_with(&percent_encode(&long)[..MAX_ENCODED - 2]));
        assert_eq!(cut_encoded("ab%2F", 4), "ab");
        assert_eq!(cut_encoded("ab%2F", 3), "ab");
        assert_eq!(cut_encoded("ab%2Fc", 5), "ab%2F");
    }
}
