//! Pushing a local image: read it from the engine, compress its layers (deterministic
//! gzip, so an unchanged layer always has the same digest), upload only the blobs the
//! registry lacks, then put the manifest.
//!
//! An unchanged image is pushed without exporting it at all: the layer map remembers
//! which compressed blob each layer became, and the registry already has them all.

use super::error::PublishError;
use super::reference::{short_digest, ImageRef};
use super::registry::{Registry, OCI_MANIFEST};
use crate::docker::DockerEngine;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Blob uploads at once unless the caller says otherwise (the command line reads
/// RUNNER_PUSH_CONCURRENCY).
pub const DEFAULT_PUSH_CONCURRENCY: usize = 3;

#[derive(Debug, Clone)]
pub struct PushOptions {
    /// gzip level, 1 (fast) to 9 (small).
    pub compression_level: u32,
    /// Blob uploads at once (1 uploads one blob at a time).
    pub concurrency: usize,
    /// Where compressed layers are written while they upload (a temporary directory).
    pub work_dir: PathBuf,
    /// File remembering layer → compressed blob, so unchanged layers are not exported
    /// again. `None`: no memory.
    pub layer_map: Option<PathBuf>,
    /// Manifest annotations (OCI `org.opencontainers.image.*`).
    pub annotations: BTreeMap<String, String>,
    /// Refuse to move an existing tag (ECR tag immutability).
    pub immutable_tags: bool,
    /// A `docker save` archive of this very image already on disk (the image scan made
    /// one): layers are read from it instead of exporting the image again.
    pub saved_archive: Option<PathBuf>,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self {
            compression_level: 6,
            concurrency: DEFAULT_PUSH_CONCURRENCY,
            work_dir: std::env::temp_dir(),
            layer_map: None,
            annotations: BTreeMap::new(),
            immutable_tags: false,
            saved_archive: None,
        }
    }
}

/// What a push did.
#[derive(Debug, Clone, Serialize)]
pub struct PushOutcome {
    /// `registry/repository@sha256:...`
    pub reference: String,
    pub digest: String,
    pub tag: Option<String>,
    pub layers: usize,
    pub blobs_uploaded: u64,
    pub blobs_skipped: u64,
    pub bytes_uploaded: u64,
    pub uploads_resumed: u64,
    pub uploads_restarted: u64,
    /// Whether the image had to be read (false: nothing new).
    pub exported: bool,
    /// It was read from `saved_archive`, not exported from the engine again.
    pub from_saved_archive: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
struct BlobInfo {
    #[serde(with = "digest_string")]
    digest: [u8; 32],
    size: u64,
}

mod digest_string {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(d: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&format!("sha256:{hex}"))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        super::parse_digest(&text).ok_or_else(|| serde::de::Error::custom("bad digest"))
    }
}

fn parse_digest(text: &str) -> Option<[u8; 32]> {
    let hex = text.strip_prefix("sha256:")?;
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

fn digest_text(d: &[u8; 32]) -> String {
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// diff ID (+ compression level) → the compressed blob it became.
#[derive(Debug, Default, Serialize, Deserialize)]
struct LayerMap {
    layers: BTreeMap<String, BlobInfo>,
}

impl LayerMap {
    fn key(diff_id: &str, level: u32) -> String {
        format!("{diff_id}+gzip{level}")
    }

    fn load(path: Option<&Path>) -> Self {
        path.and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Merges with what is on disk and writes atomically (temp + rename).
    fn save(&self, path: &Path) -> Result<(), PublishError> {
        let mut merged = Self::load(Some(path));
        merged
            .layers
            .extend(self.layers.iter().map(|(k, v)| (k.clone(), *v)));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| PublishError::io("create", dir, e))?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let bytes = serde_json::to_vec(&merged).unwrap_or_default();
        std::fs::write(&tmp, bytes).map_err(|e| PublishError::io("write", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| PublishError::io("rename", path, e))
    }
}

/// A compressed layer ready to upload.
struct Compressed {
    diff_id: String,
    blob: BlobInfo,
    path: PathBuf,
}

/// Pushes `local` (a name or ID on the engine) to `target` (its tag, if any, is moved to
/// the new manifest). `on_progress` gets human-readable lines.
pub async fn push_image(
    engine: &DockerEngine,
    local: &str,
    target: &ImageRef,
    registry: Arc<Registry>,
    opts: &PushOptions,
    on_progress: &(dyn Fn(&str) + Sync),
) -> Result<PushOutcome, PublishError> {
    let info = engine
        .image_info(local)
        .await
        .map_err(|e| PublishError::LocalImage {
            image: local.to_string(),
            detail: e.to_string(),
        })?;
    let repo = target.repository.clone();
    let level = opts.compression_level.clamp(1, 9);

    // Tag immutability: a tag that exists must already name this image.
    let existing_tag = match (&target.tag, opts.immutable_tags) {
        (Some(tag), true) => registry
            .get_manifest(&repo, tag)
            .await?
            .map(|m| (tag.clone(), m)),
        _ => None,
    };

    let mut map = LayerMap::load(opts.layer_map.as_deref());
    let mut blobs: HashMap<String, BlobInfo> = HashMap::new();
    let mut needed: HashSet<String> = HashSet::new();
    for diff_id in &info.diff_ids {
        match map.layers.get(&LayerMap::key(diff_id, level)) {
            Some(b) if registry.blob_exists(&repo, &digest_text(&b.digest)).await? => {
                blobs.insert(diff_id.clone(), *b);
            }
            _ => {
                needed.insert(diff_id.clone());
            }
        }
    }
    let config_present = registry.blob_exists(&repo, &info.id).await?;
    let mut config_bytes: Option<Vec<u8>> = None;
    let exported = !needed.is_empty() || !config_present;
    let skipped_layers = info.diff_ids.len() - needed.len();

    if exported {
        on_progress(&format!(
            "{} {local} ({} of {} layers to upload)",
            if opts.saved_archive.is_some() {
                "reading the saved archive of"
            } else {
                "exporting"
            },
            needed.len(),
            info.diff_ids.len()
        ));
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Compressed>(4);
        let reader: std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>> = match &opts.saved_archive
        {
            Some(path) => Box::pin(
                tokio::fs::File::open(path)
                    .await
                    .map_err(|e| PublishError::io("open", path, e))?,
            ),
            None => Box::pin(tokio_util::io::StreamReader::new(
                engine
                    .export_image(local)
                    .map(|r| r.map_err(std::io::Error::other)),
            )),
        };
        std::fs::create_dir_all(&opts.work_dir)
            .map_err(|e| PublishError::io("create", &opts.work_dir, e))?;
        let work = tempfile::Builder::new()
            .prefix("runner-push-")
            .tempdir_in(&opts.work_dir)
            .map_err(|e| PublishError::io("create a directory in", &opts.work_dir, e))?;
        let work_path = work.path().to_path_buf();
        let want_config = info.id.clone();
        let needed_set = needed.clone();
        let handle = tokio::runtime::Handle::current();
        let reader_task = tokio::task::spawn_blocking(move || {
            let sync = tokio_util::io::SyncIoBridge::new_with_handle(reader, handle);
            read_export(sync, &want_config, &needed_set, &work_path, level, tx)
        });

        // Upload layers as they come out of the compressor.
        let mut uploads = futures_util::stream::FuturesUnordered::new();
        let sem = Arc::new(tokio::sync::Semaphore::new(opts.concurrency.max(1)));
        let mut done: Vec<Compressed> = Vec::new();
        loop {
            tokio::select! {
                next = rx.recv() => match next {
                    Some(c) => {
                        let reg = registry.clone();
                        let repo = repo.clone();
                        let sem = sem.clone();
                        uploads.push(async move {
                            let _permit = sem.acquire().await;
                            reg.push_blob_file(&repo, &digest_text(&c.blob.digest), &c.path, c.blob.size).await?;
                            Ok::<_, PublishError>(c)
                        });
                    }
                    None => break,
                },
                Some(r) = uploads.next(), if !uploads.is_empty() => done.push(r?),
            }
        }
        while let Some(r) = uploads.next().await {
            done.push(r?);
        }
        config_bytes = reader_task.await.map_err(|e| PublishError::LocalImage {
            image: local.to_string(),
            detail: e.to_string(),
        })??;
        for c in done {
            on_progress(&format!(
                "layer {} -> {} ({} bytes)",
                short_digest(&c.diff_id),
                short_digest(&digest_text(&c.blob.digest)),
                c.blob.size
            ));
            map.layers.insert(LayerMap::key(&c.diff_id, level), c.blob);
            blobs.insert(c.diff_id, c.blob);
        }
        drop(work);
    }

    let config_size =
        match &config_bytes {
            Some(bytes) => {
                registry.push_blob_bytes(&repo, bytes).await?;
                bytes.len() as u64
            }
            None => registry.blob_size(&repo, &info.id).await?.ok_or_else(|| {
                PublishError::NotFound {
                    reference: format!("{}/{repo}@{}", registry.registry(), info.id),
                }
            })?,
        };
    let mut layers = Vec::new();
    for diff_id in &info.diff_ids {
        let b = blobs.get(diff_id).ok_or_else(|| PublishError::LocalImage {
            image: local.to_string(),
            detail: format!("the engine's export did not contain layer {diff_id}"),
        })?;
        layers.push(serde_json::json!({
            "mediaType": OCI_LAYER_GZIP,
            "digest": digest_text(&b.digest),
            "size": b.size,
        }));
    }
    let mut manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": info.id, "size": config_size},
        "layers": layers,
    });
    if !opts.annotations.is_empty() {
        manifest["annotations"] = serde_json::json!(opts.annotations);
    }
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap_or_default();
    let digest = super::reference::sha256_digest(&manifest_bytes);
    if let Some((tag, m)) = &existing_tag {
        if m.digest != digest {
            return Err(PublishError::TagImmutable {
                repository: target.name(),
                tag: tag.clone(),
            });
        }
    }
    let reference = target.tag.clone().unwrap_or_else(|| digest.clone());
    registry
        .put_manifest(&repo, &reference, OCI_MANIFEST, &manifest_bytes)
        .await?;
    if let Some(path) = &opts.layer_map {
        map.save(path)?;
    }
    use std::sync::atomic::Ordering::Relaxed;
    let s = &registry.stats;
    Ok(PushOutcome {
        reference: format!("{}@{digest}", target.name()),
        digest,
        tag: target.tag.clone(),
        layers: info.diff_ids.len(),
        blobs_uploaded: s.blobs_uploaded.load(Relaxed),
        blobs_skipped: s.blobs_skipped.load(Relaxed)
            + skipped_layers as u64
            + u64::from(config_present),
        bytes_uploaded: s.bytes_uploaded.load(Relaxed),
        uploads_resumed: s.uploads_resumed.load(Relaxed),
        uploads_restarted: s.uploads_restarted.load(Relaxed),
        exported,
        from_saved_archive: exported && opts.saved_archive.is_some(),
    })
}

/// Reads a `docker save` stream (OCI layout of Docker 25+, or the legacy
/// `<id>/layer.tar` layout): returns the config bytes; compresses each needed layer into
/// `work` and hands it to `tx` as soon as it is done.
fn read_export(
    reader: impl Read,
    config_id: &str,
    needed: &HashSet<String>,
    work: &Path,
    level: u32,
    tx: tokio::sync::mpsc::Sender<Compressed>,
) -> Result<Option<Vec<u8>>, PublishError> {
    let bad = |detail: String| PublishError::LocalImage {
        image: config_id.to_string(),
        detail,
    };
    let mut archive = tar::Archive::new(reader);
    let mut config = None;
    let mut legacy_config_name = format!("{}.json", config_id.trim_start_matches("sha256:"));
    let entries = archive.entries().map_err(|e| bad(e.to_string()))?;
    // Layers are copied out of the (sequential) export stream as they come and compressed
    // on their own threads, one per core, so a multi-layer image uses every core.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (permit_tx, permit_rx) = std::sync::mpsc::sync_channel::<()>(cores);
    let permits = std::sync::Mutex::new(permit_rx);
    std::thread::scope(|scope| -> Result<(), PublishError> {
        let mut workers = Vec::new();
        for (n, entry) in entries.enumerate() {
            let mut entry = entry.map_err(|e| bad(format!("reading the export: {e}")))?;
            let path = entry
                .path()
                .map_err(|e| bad(e.to_string()))?
                .to_string_lossy()
                .into_owned();
            let name = path.trim_start_matches("./");
            let blob_id = name
                .strip_prefix("blobs/sha256/")
                .map(|h| format!("sha256:{h}"));
            let is_legacy_layer = name.ends_with("/layer.tar");
            if blob_id.as_deref() == Some(config_id) || name == legacy_config_name {
                let mut bytes = Vec::new();
                entry
                    .read_to_end(&mut bytes)
                    .map_err(|e| bad(e.to_string()))?;
                config = Some(bytes);
                legacy_config_name.clear();
                continue;
            }
            let is_needed_blob = blob_id.as_ref().is_some_and(|id| needed.contains(id));
            if !(is_needed_blob || is_legacy_layer) || entry.header().entry_type().is_symlink() {
                continue;
            }
            let raw_path = work.join(format!("layer{n}.tar"));
            let mut raw = std::fs::File::create(&raw_path)
                .map_err(|e| PublishError::io("create", &raw_path, e))?;
            std::io::copy(&mut entry, &mut raw)
                .map_err(|e| PublishError::io("write", &raw_path, e))?;
            drop(raw);
            // Wait for a free core.
            permit_tx.send(()).map_err(|e| bad(e.to_string()))?;
            let tx = tx.clone();
            let permits = &permits;
            workers.push(scope.spawn(move || -> Result<(), PublishError> {
                let out_path = raw_path.with_extension("tar.gz");
                let result = std::fs::File::open(&raw_path)
                    .map_err(|e| PublishError::io("read", &raw_path, e))
                    .and_then(|mut f| compress(&mut f, &out_path, level));
                let _ = std::fs::remove_file(&raw_path);
                if let Ok(rx) = permits.lock() {
                    let _ = rx.try_recv();
                }
                let (diff_id, blob) = result?;
                if !needed.contains(&diff_id) {
                    let _ = std::fs::remove_file(&out_path);
                    return Ok(());
                }
                if let Some(expected) = &blob_id {
                    if *expected != diff_id {
                        return Err(PublishError::LocalImage {
                            image: config_id.to_string(),
                            detail: format!("layer {expected} hashed to {diff_id}"),
                        });
                    }
                }
                // A closed channel means the uploader stopped (an upload failed): its
                // error is the one reported.
                let _ = tx.blocking_send(Compressed {
                    diff_id,
                    blob,
                    path: out_path,
                });
                Ok(())
            }));
        }
        for w in workers {
            w.join()
                .map_err(|_| bad("a compression thread panicked".into()))??;
        }
        Ok(())
    })?;
    drop(tx);
    Ok(config)
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// gzip with a fixed header (no name, mtime 0): the same layer always gives the same
/// blob. Returns (diff ID of the input, digest and size of the output).
fn compress(
    input: &mut impl Read,
    out: &Path,
    level: u32,
) -> Result<(String, BlobInfo), PublishError> {
    let file = std::fs::File::create(out).map_err(|e| PublishError::io("create", out, e))?;
    let hashing = HashingWriter {
        inner: std::io::BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        size: 0,
    };
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(hashing, flate2::Compression::new(level));
    let mut diff = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input
            .read(&mut buf)
            .map_err(|e| PublishError::io("read layer for", out, e))?;
        if n == 0 {
            break;
        }
        diff.update(&buf[..n]);
        gz.write_all(&buf[..n])
            .map_err(|e| PublishError::io("write", out, e))?;
    }
    let mut hashing = gz.finish().map_err(|e| PublishError::io("write", out, e))?;
    hashing
        .flush()
        .map_err(|e| PublishError::io("write", out, e))?;
    let digest: [u8; 32] = hashing.hasher.finalize().into();
    let diff: [u8; 32] = diff.finalize().into();
    Ok((
        digest_text(&diff),
        BlobInfo {
            digest,
            size: hashing.size,
        },
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn compression_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (d1, b1) = compress(&mut &data[..], &dir.path().join("a"), 6).unwrap();
        let (d2, b2) = compress(&mut &data[..], &dir.path().join("b"), 6).unwrap();
        assert_eq!(d1, d2);
        assert_eq!(b1, b2);
        assert_eq!(d1, crate::publish::reference::sha256_digest(&data));
        let gz = std::fs::read(dir.path().join("a")).unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn layer_map_round_trips_and_merges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        let mut a = LayerMap::default();
        a.layers.insert(
            "x".into(),
            BlobInfo {
                digest: [1; 32],
                size: 5,
            },
        );
        a.save(&path).unwrap();
        let mut b = LayerMap::default();
        b.layers.insert(
            "y".into(),
            BlobInfo {
                digest: [2; 32],
                size: 6,
            },
        );
        b.save(&path).unwrap();
        let back = LayerMap::load(Some(&path));
        assert_eq!(back.layers.len(), 2);
        assert_eq!(back.layers["x"].size, 5);
        assert!(parse_digest("sha256:zz").is_none());
    }
}
