//! Reading an image: a `docker save` tarball (legacy `manifest.json`, the OCI image
//! layout Docker 25+ also writes, or both) or an OCI image layout directory.
//!
//! Nothing is extracted: the outer tarball is indexed once (name → byte range) and
//! blobs are read in place through [`Section`], a seekable window on the file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{normalize_path, ImageError};

/// Largest JSON document (manifest, index, config) we accept.
const MAX_JSON: u64 = 16 << 20;

/// A seekable window `[start, start+len)` on a file: one blob inside a tarball, or
/// a whole blob file of an OCI layout directory.
#[derive(Debug)]
pub struct Section {
    file: File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Section {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Read for Section {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..want])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Section {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seek before start of blob")
        })?;
        self.file.seek(SeekFrom::Start(self.start + target))?;
        self.pos = target;
        Ok(target)
    }
}

/// Compression of a layer blob, from its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Where the blobs are.
#[derive(Debug)]
enum Store {
    /// `docker save` tarball: entry name → (data offset, size).
    Tar {
        entries: HashMap<String, (u64, u64)>,
    },
    /// OCI layout directory.
    Dir,
}

/// One layer of the image, bottom first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerRef {
    /// The name the layer is reported under: its diff id (`sha256:` of the
    /// uncompressed tar, what `docker inspect .RootFS.Layers` shows) when the config
    /// lists one, else the blob digest.
    pub digest: String,
    /// The manifest's blob digest (compressed), when the image came with an OCI
    /// manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob_digest: Option<String>,
    /// Name of the blob inside the archive / layout (`blobs/sha256/...`,
    /// `<id>/layer.tar`).
    #[serde(skip)]
    pub blob: String,
    pub size: u64,
}

/// An opened image: identity, layers, and access to blobs.
#[derive(Debug)]
pub struct ImageArchive {
    pub path: PathBuf,
    store: Store,
    /// `sha256:<hex>` of the config blob: the image id.
    pub config_digest: String,
    pub config: serde_json::Value,
    pub manifest_digest: Option<String>,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub layers: Vec<LayerRef>,
}

#[derive(Deserialize)]
struct LegacyManifest {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Deserialize)]
struct OciIndex {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct OciManifest {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    /// Present when this "manifest" is really a nested index.
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

fn blob_name(digest: &str) -> String {
    match digest.split_once(':') {
        Some((alg, hex)) => format!("blobs/{alg}/{hex}"),
        None => format!("blobs/sha256/{digest}"),
    }
}

fn valid_digest(d: &str) -> bool {
    match d.split_once(':') {
        Some((alg, hex)) => {
            !alg.is_empty()
                && !hex.is_empty()
                && alg.bytes().all(|b| b.is_ascii_alphanumeric())
                && hex.bytes().all(|b| b.is_ascii_hexdigit())
        }
        None => false,
    }
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

impl ImageArchive {
    /// Open a `docker save` tarball or an OCI layout directory.
    pub fn open(path: &Path) -> Result<ImageArchive, ImageError> {
        let meta = std::fs::metadata(path).map_err(|source| ImageError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let store = if meta.is_dir() {
            Store::Dir
        } else {
            Store::Tar {
                entries: index_tarball(path)?,
            }
        };
        let mut img = ImageArchive {
            path: path.to_path_buf(),
            store,
            config_digest: String::new(),
            config: serde_json::Value::Null,
            manifest_digest: None,
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            layers: Vec::new(),
        };
        let has_index = img.exists("index.json");
        let has_legacy = img.exists("manifest.json");
        if has_legacy {
            img.load_legacy()?;
            if has_index {
                // Docker 25+: both. Layers come from manifest.json; the OCI index only
                // adds the manifest digest and names. Best effort.
                if let Ok((digest, names)) = img.oci_manifest_digest() {
                    img.manifest_digest = Some(digest);
                    for n in names {
                        if !img.repo_tags.contains(&n) {
                            img.repo_tags.push(n);
                        }
                    }
                }
            }
        } else if has_index {
            img.load_oci()?;
        } else {
            return Err(ImageError::NotAnImage {
                path: path.to_path_buf(),
                reason: "neither manifest.json nor index.json found; expected the output of \
                         `docker save IMAGE -o FILE` (uncompressed) or an OCI image layout"
                    .into(),
            });
        }
        if let Some(md) = &img.manifest_digest {
            img.repo_digests = img
                .repo_tags
                .iter()
                .map(|t| format!("{}@{md}", strip_tag(t)))
                .collect();
        }
        Ok(img)
    }

    fn exists(&self, name: &str) -> bool {
        match &self.store {
            Store::Tar { entries } => entries.contains_key(name),
            Store::Dir => self.path.join(name).is_file(),
        }
    }

    /// Open a blob (or any member) by its name in the archive.
    pub fn open_member(&self, name: &str) -> Result<Section, ImageError> {
        let missing = || ImageError::MissingBlob {
            path: self.path.clone(),
            name: name.to_string(),
        };
        let io_err = |source| ImageError::Io {
            path: self.path.clone(),
            source,
        };
        match &self.store {
            Store::Tar { entries } => {
                let &(start, len) = entries.get(name).ok_or_else(missing)?;
                let mut file = File::open(&self.path).map_err(io_err)?;
                file.seek(SeekFrom::Start(start)).map_err(io_err)?;
                Ok(Section {
                    file,
                    start,
                    len,
                    pos: 0,
                })
            }
            Store::Dir => {
                let rel = normalize_path(name);
                let p = self.path.join(&rel);
                let file = File::open(&p).map_err(|_| missing())?;
                let len = file.metadata().map_err(io_err)?.len();
                Ok(Section {
                    file,
                    start: 0,
                    len,
                    pos: 0,
                })
            }
        }
    }

    fn read_json_bytes(&self, name: &str) -> Result<Vec<u8>, ImageError> {
        let sec = self.open_member(name)?;
        if sec.len() > MAX_JSON {
            return Err(ImageError::BadMetadata {
                path: self.path.clone(),
                name: name.to_string(),
                reason: format!("{} bytes is too large for a JSON document", sec.len()),
            });
        }
        let mut buf = Vec::with_capacity(sec.len() as usize);
        BufReader::new(sec)
            .read_to_end(&mut buf)
            .map_err(|source| ImageError::Io {
                path: self.path.clone(),
                source,
            })?;
        Ok(buf)
    }

    fn parse_json<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<T, ImageError> {
        serde_json::from_slice(bytes).map_err(|e| ImageError::BadMetadata {
            path: self.path.clone(),
            name: name.to_string(),
            reason: e.to_string(),
        })
    }

    fn load_config(&mut self, name: &str) -> Result<(), ImageError> {
        let bytes = self.read_json_bytes(name)?;
        self.config_digest = format!("sha256:{}", hex(&Sha256::digest(&bytes)));
        self.config = self.parse_json(name, &bytes)?;
        Ok(())
    }

    fn diff_ids(&self) -> Vec<String> {
        self.config
            .pointer("/rootfs/diff_ids")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn load_legacy(&mut self) -> Result<(), ImageError> {
        let bytes = self.read_json_bytes("manifest.json")?;
        let mut manifests: Vec<LegacyManifest> = self.parse_json("manifest.json", &bytes)?;
        if manifests.is_empty() {
            return Err(ImageError::BadMetadata {
                path: self.path.clone(),
                name: "manifest.json".into(),
                reason: "no images listed".into(),
            });
        }
        // `docker save a b` holds several images; we scan the first.
        let m = manifests.swap_remove(0);
        let config_name = normalize_path(&m.config);
        self.load_config(&config_name)?;
        self.repo_tags = m.repo_tags.unwrap_or_default();
        let diff_ids = self.diff_ids();
        for (i, l) in m.layers.iter().enumerate() {
            let blob = normalize_path(l);
            let size = self.open_member(&blob)?.len();
            // Docker 25+ names layers `blobs/sha256/<hex>`: that is the blob digest.
            let blob_digest = blob
                .strip_prefix("blobs/")
                .and_then(|r| r.split_once('/'))
                .map(|(alg, hex)| format!("{alg}:{hex}"))
                .filter(|d| valid_digest(d));
            let digest = diff_ids
                .get(i)
                .cloned()
                .or_else(|| blob_digest.clone())
                .unwrap_or_else(|| blob.clone());
            self.layers.push(LayerRef {
                digest,
                blob_digest,
                blob,
                size,
            });
        }
        Ok(())
    }

    /// Pick the image manifest from index.json (descending into nested indexes),
    /// returning its descriptor digest and the names it is annotated with.
    fn pick_manifest(&self) -> Result<(String, Vec<String>, OciManifest), ImageError> {
        let bytes = self.read_json_bytes("index.json")?;
        let mut index: OciIndex = self.parse_json("index.json", &bytes)?;
        let mut names = Vec::new();
        for _depth in 0..4 {
            let arch = host_arch();
            let pos = index
                .manifests
                .iter()
                .position(|d| {
                    d.platform
                        .as_ref()
                        .is_some_and(|p| p.os == "linux" && p.architecture == arch)
                })
                .or_else(|| {
                    // Skip attestation manifests (buildkit marks them unknown/unknown).
                    index.manifests.iter().position(|d| {
                        d.platform
                            .as_ref()
                            .is_none_or(|p| p.architecture != "unknown")
                    })
                })
                .ok_or_else(|| ImageError::BadMetadata {
                    path: self.path.clone(),
                    name: "index.json".into(),
                    reason: "no image manifest listed".into(),
                })?;
            let d = index.manifests.swap_remove(pos);
            for key in [
                "io.containerd.image.name",
                "org.opencontainers.image.ref.name",
            ] {
                if let Some(n) = d.annotations.get(key) {
                    // ref.name is often just a tag ("latest"); keep only full names.
                    if (n.contains('/') || n.contains(':')) && !names.contains(n) {
                        names.push(n.clone());
                    }
                }
            }
            if !valid_digest(&d.digest) {
                return Err(ImageError::BadMetadata {
                    path: self.path.clone(),
                    name: "index.json".into(),
                    reason: format!("invalid digest {:?}", d.digest),
                });
            }
            let name = blob_name(&d.digest);
            let bytes = self.read_json_bytes(&name)?;
            let m: OciManifest = self.parse_json(&name, &bytes)?;
            let is_index = d.media_type.contains("index")
                || d.media_type.contains("manifest.list")
                || m.media_type.contains("index")
                || m.media_type.contains("manifest.list")
                || m.manifests.is_some();
            if is_index {
                index = OciIndex {
                    manifests: m.manifests.unwrap_or_default(),
                };
                continue;
            }
            return Ok((d.digest, names, m));
        }
        Err(ImageError::BadMetadata {
            path: self.path.clone(),
            name: "index.json".into(),
            reason: "image indexes nested too deeply".into(),
        })
    }

    fn oci_manifest_digest(&self) -> Result<(String, Vec<String>), ImageError> {
        let (d, names, _) = self.pick_manifest()?;
        Ok((d, names))
    }

    fn load_oci(&mut self) -> Result<(), ImageError> {
        let (digest, names, m) = self.pick_manifest()?;
        let config = m.config.ok_or_else(|| ImageError::BadMetadata {
            path: self.path.clone(),
            name: blob_name(&digest),
            reason: "manifest has no config".into(),
        })?;
        self.load_config(&blob_name(&config.digest))?;
        self.manifest_digest = Some(digest);
        self.repo_tags = names;
        let diff_ids = self.diff_ids();
        for (i, l) in m.layers.iter().enumerate() {
            if !valid_digest(&l.digest) {
                return Err(ImageError::BadMetadata {
                    path: self.path.clone(),
                    name: "manifest".into(),
                    reason: format!("invalid layer digest {:?}", l.digest),
                });
            }
            let blob = blob_name(&l.digest);
            let size = self.open_member(&blob)?.len();
            self.layers.push(LayerRef {
                digest: diff_ids.get(i).cloned().unwrap_or_else(|| l.digest.clone()),
                blob_digest: Some(l.digest.clone()),
                blob,
                size,
            });
        }
        Ok(())
    }

    /// The layer's tar stream, decompressed, plus whether it is seekable (an
    /// uncompressed tar read in place).
    pub fn layer_reader(&self, layer: &LayerRef) -> Result<LayerStream, ImageError> {
        let sec = self.open_member(&layer.blob)?;
        let mut br = BufReader::with_capacity(128 * 1024, sec);
        let head = br.fill_buf().map_err(|source| ImageError::Layer {
            path: self.path.clone(),
            layer: layer.digest.clone(),
            reason: source.to_string(),
        })?;
        Ok(match Compression::detect(head) {
            Compression::None => LayerStream::Plain(br),
            Compression::Gzip => {
                LayerStream::Compressed(Box::new(flate2::bufread::MultiGzDecoder::new(br)))
            }
            Compression::Zstd => {
                let d = zstd::stream::read::Decoder::with_buffer(br).map_err(|source| {
                    ImageError::Layer {
                        path: self.path.clone(),
                        layer: layer.digest.clone(),
                        reason: format!("zstd: {source}"),
                    }
                })?;
                LayerStream::Compressed(Box::new(d))
            }
        })
    }
}

/// A layer's decompressed tar stream.
pub enum LayerStream {
    Plain(BufReader<Section>),
    Compressed(Box<dyn Read>),
}

impl Read for LayerStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            LayerStream::Plain(r) => r.read(buf),
            LayerStream::Compressed(r) => r.read(buf),
        }
    }
}

fn strip_tag(name: &str) -> &str {
    // "repo:tag" → "repo"; keep "host:port/repo".
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Why a file is not a readable tar archive, without quoting any of its bytes.
fn tar_reason(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        "the tar archive is truncated; re-run `docker save`"
    } else {
        "not a tar archive, or a corrupt one (its headers do not parse); expected a \
         `docker save` archive or an OCI layout"
    }
}

/// Index the outer tarball: member name → byte range, symlinks resolved.
fn index_tarball(path: &Path) -> Result<HashMap<String, (u64, u64)>, ImageError> {
    let bad = |reason: String| ImageError::NotAnImage {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(|source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut br = BufReader::new(file);
    let head = br.fill_buf().map_err(|source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    match Compression::detect(head) {
        Compression::None => {}
        c => {
            return Err(bad(format!(
                "the archive itself is {c:?}-compressed; decompress it first \
                 (e.g. `gunzip -k` / `zstd -d`) — the scanner reads blobs in place"
            )))
        }
    }
    let mut ar = tar::Archive::new(br);
    let mut entries = HashMap::new();
    let mut links = Vec::new();
    // The tar crate's messages quote header bytes, which for a file that is not an
    // archive (`/etc/shadow`) are its content: say what is wrong in our words only.
    let iter = ar
        .entries_with_seek()
        .map_err(|e| bad(tar_reason(&e).into()))?;
    for e in iter {
        let e = e.map_err(|e| bad(tar_reason(&e).into()))?;
        let name = normalize_path(
            &e.path()
                .map_err(|e| bad(tar_reason(&e).into()))?
                .to_string_lossy(),
        );
        match e.header().entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                if let Ok(Some(t)) = e.link_name() {
                    let t = t.to_string_lossy().into_owned();
                    let target = if e.header().entry_type() == tar::EntryType::Symlink {
                        let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                        normalize_path(&format!("{dir}/{t}"))
                    } else {
                        normalize_path(&t)
                    };
                    links.push((name, target));
                }
            }
            t if t.is_file() => {
                let size = e
                    .header()
                    .entry_size()
                    .map_err(|e| bad(tar_reason(&e).into()))?;
                entries.insert(name, (e.raw_file_position(), size));
            }
            _ => {}
        }
    }
    let flen = std::fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX);
    if let Some((n, _)) = entries
        .iter()
        .find(|(_, &(o, s))| o.saturating_add(s) > flen)
    {
        return Err(bad(format!(
            "member {n} extends past the end of the file: the archive is truncated; \
             re-run `docker save`"
        )));
    }
    for _ in 0..8 {
        let mut changed = false;
        for (name, target) in &links {
            if !entries.contains_key(name) {
                if let Some(&r) = entries.get(target) {
                    entries.insert(name.clone(), r);
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn compression_magic() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"usr/"), Compression::None);
    }

    #[test]
    fn strip_tags() {
        assert_eq!(strip_tag("runner/debian:bookworm"), "runner/debian");
        assert_eq!(strip_tag("localhost:5000/x"), "localhost:5000/x");
        assert_eq!(strip_tag("localhost:5000/x:1"), "localhost:5000/x");
    }
}
