//! The flattened filesystem of an image, built in memory from its layers.
//!
//! Pass 1 ([`ImageFs::build`]) streams every layer once and records metadata only:
//! path → [`Node`] (layer index, kind, size, mode, link target, offset of the data
//! in the layer's uncompressed tar stream). OCI whiteouts (`.wh.<name>`,
//! `.wh..wh..opq`) remove paths of lower layers. Pass 2 ([`ImageFs::visit`]) reads
//! the contents of the chosen files: seeking for uncompressed layers, skipping
//! forward through the decompressed stream otherwise. The host filesystem is never
//! written, and every path is normalised (no `..`, no leading `/`).

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Seek, SeekFrom};

use super::archive::{ImageArchive, LayerRef, LayerStream};
use super::{normalize_path, ImageError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
    /// A hardlink whose target was not found in the image (no contents).
    Hardlink,
    /// Devices, fifos, ...
    Other,
}

/// One path of the flattened filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: NodeKind,
    /// Index into the image's layers of the layer that last wrote this path.
    pub layer: usize,
    pub size: u64,
    pub mode: u32,
    /// Symlink target (as written) or hardlink target (normalised).
    pub link: Option<String>,
    /// Offset of the data in the layer's uncompressed tar stream (a hardlink
    /// shares the offset of the member it links to, in the same layer).
    pub data_offset: u64,
}

/// The flattened filesystem view. Paths are relative (`etc/os-release`).
#[derive(Debug, Default)]
pub struct ImageFs {
    pub nodes: BTreeMap<String, Node>,
    /// Layer digests (reporting names), bottom first, parallel to the image's layers.
    pub layer_digests: Vec<String>,
    /// Payloads captured during pass 1 from compressed layers (which cannot be
    /// seeked into later), keyed by `(layer, data_offset)` as in [`Node`].
    pub captured: HashMap<(usize, u64), Vec<u8>>,
}

/// Pass-1 capture hook: `(path, mode, size, contents) -> payload to keep`.
pub type Capture<'a> = dyn FnMut(&str, u32, u64, &mut dyn Read) -> Option<Vec<u8>> + 'a;

/// Remove `dir`'s strict descendants written by layers below `layer`.
fn remove_children(nodes: &mut BTreeMap<String, Node>, dir: &str, layer: usize) {
    let (lo, hi) = if dir.is_empty() {
        (String::new(), None)
    } else {
        // '0' is the byte after '/': the range [dir/, dir0) is exactly the subtree.
        (format!("{dir}/"), Some(format!("{dir}0")))
    };
    let doomed: Vec<String> = match &hi {
        Some(hi) => nodes
            .range(lo..hi.clone())
            .filter(|(_, n)| n.layer < layer)
            .map(|(k, _)| k.clone())
            .collect(),
        None => nodes
            .iter()
            .filter(|(_, n)| n.layer < layer)
            .map(|(k, _)| k.clone())
            .collect(),
    };
    for k in doomed {
        nodes.remove(&k);
    }
}

fn layer_err(img: &ImageArchive, layer: &LayerRef, e: impl std::fmt::Display) -> ImageError {
    ImageError::Layer {
        path: img.path.clone(),
        layer: layer.digest.clone(),
        reason: e.to_string(),
    }
}

impl ImageFs {
    /// Pass 1: apply all layers in order.
    pub fn build(img: &ImageArchive) -> Result<ImageFs, ImageError> {
        Self::build_capturing(img, &mut |_, _, _, _| None)
    }

    /// Pass 1, capturing payloads from compressed layers: for each regular file,
    /// `capture(path, mode, size, contents)` may read the contents and return what
    /// to keep (stored in [`ImageFs::captured`]). Decompressing is the cost of a
    /// compressed layer, so files wanted later are taken on the way instead of in
    /// a second decompression pass. Uncompressed layers are never captured (pass 2
    /// seeks straight to the data).
    pub fn build_capturing(
        img: &ImageArchive,
        capture: &mut Capture<'_>,
    ) -> Result<ImageFs, ImageError> {
        let mut fs = ImageFs::default();
        for (i, layer) in img.layers.iter().enumerate() {
            let stream = img.layer_reader(layer)?;
            fs.apply_layer(i, stream, capture)
                .map_err(|e| layer_err(img, layer, e))?;
            fs.layer_digests.push(layer.digest.clone());
        }
        Ok(fs)
    }

    /// Apply one layer's tar stream on top of the current view.
    pub fn apply_layer(
        &mut self,
        li: usize,
        stream: LayerStream,
        capture: &mut Capture<'_>,
    ) -> io::Result<()> {
        match stream {
            LayerStream::Plain(r) => {
                let mut ar = tar::Archive::new(r);
                for e in ar.entries_with_seek()? {
                    self.apply_entry(li, &mut e?, None)?;
                }
            }
            LayerStream::Compressed(r) => {
                let mut ar = tar::Archive::new(r);
                for e in ar.entries()? {
                    self.apply_entry(li, &mut e?, Some(&mut *capture))?;
                }
            }
        }
        Ok(())
    }

    fn apply_entry<R: Read>(
        &mut self,
        li: usize,
        e: &mut tar::Entry<R>,
        capture: Option<&mut Capture<'_>>,
    ) -> io::Result<()> {
        let raw = e.path()?;
        let path = normalize_path(&raw.to_string_lossy());
        if path.is_empty() {
            return Ok(()); // "./" — the root itself
        }
        let (parent, name) = match path.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => ("", path.as_str()),
        };
        if name == ".wh..wh..opq" {
            remove_children(&mut self.nodes, parent, li);
            return Ok(());
        }
        if let Some(victim) = name.strip_prefix(".wh.") {
            if victim.is_empty() {
                return Ok(());
            }
            let victim = if parent.is_empty() {
                victim.to_string()
            } else {
                format!("{parent}/{victim}")
            };
            if self.nodes.get(&victim).is_some_and(|n| n.layer < li) {
                self.nodes.remove(&victim);
            }
            remove_children(&mut self.nodes, &victim, li);
            return Ok(());
        }
        let h = e.header();
        let mode = h.mode().unwrap_or(0o644);
        let mut node = Node {
            kind: NodeKind::Other,
            layer: li,
            size: 0,
            mode,
            link: None,
            data_offset: 0,
        };
        let t = h.entry_type();
        match t {
            tar::EntryType::Directory => node.kind = NodeKind::Dir,
            tar::EntryType::Symlink => {
                node.kind = NodeKind::Symlink;
                node.link = e.link_name()?.map(|l| l.to_string_lossy().into_owned());
            }
            tar::EntryType::Link => {
                let target = e
                    .link_name()?
                    .map(|l| normalize_path(&l.to_string_lossy()))
                    .unwrap_or_default();
                match self.nodes.get(&target) {
                    // Tar hardlinks point at an earlier member: share its data.
                    Some(tn) if tn.kind == NodeKind::File && tn.layer == li => {
                        node.kind = NodeKind::File;
                        node.size = tn.size;
                        node.data_offset = tn.data_offset;
                    }
                    _ => node.kind = NodeKind::Hardlink,
                }
                node.link = Some(target);
            }
            tar::EntryType::GNUSparse => node.kind = NodeKind::Other,
            t if t.is_file() => {
                node.kind = NodeKind::File;
                node.size = h.entry_size()?;
                node.data_offset = e.raw_file_position();
                if let Some(capture) = capture {
                    if let Some(payload) = capture(&path, mode, node.size, e) {
                        self.captured.insert((li, node.data_offset), payload);
                    }
                }
            }
            _ => {}
        }
        if node.kind == NodeKind::Dir {
            // A directory over a directory merges; keep lower children.
        } else {
            // A non-directory replaces whatever was there, including a subtree.
            remove_children(&mut self.nodes, &path, li + 1);
        }
        self.nodes.insert(path, node);
        Ok(())
    }

    /// Resolve symlinks (in every component) to the path of a node, staying inside
    /// the image. `None` if it does not exist or links loop.
    pub fn resolve(&self, path: &str) -> Option<(String, &Node)> {
        let mut pending: Vec<String> = normalize_path(path)
            .split('/')
            .filter(|c| !c.is_empty())
            .rev()
            .map(str::to_string)
            .collect();
        let mut cur = String::new();
        let mut hops = 0;
        while let Some(comp) = pending.pop() {
            let next = if cur.is_empty() {
                comp
            } else {
                format!("{cur}/{comp}")
            };
            match self.nodes.get(&next) {
                Some(n) if n.kind == NodeKind::Symlink => {
                    hops += 1;
                    if hops > 40 {
                        return None;
                    }
                    let target = n.link.clone().unwrap_or_default();
                    let base = if target.starts_with('/') {
                        String::new()
                    } else {
                        cur.clone()
                    };
                    let joined = normalize_path(&format!("{base}/{target}"));
                    // Restart from the root with the target's components first.
                    for c in joined.split('/').filter(|c| !c.is_empty()).rev() {
                        pending.push(c.to_string());
                    }
                    cur.clear();
                }
                Some(_) => cur = next,
                // Directories are often implicit in layer tars.
                None if !pending.is_empty() => cur = next,
                None => return None,
            }
        }
        let n = self.nodes.get(&cur)?;
        Some((cur, n))
    }

    /// Regular files (after whiteouts), in path order.
    pub fn files(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.nodes.iter().filter(|(_, n)| n.kind == NodeKind::File)
    }

    /// Pass 2: read the given regular files (paths as keys of `nodes`; others are
    /// ignored) and call `f(path, layer_digest, bytes)` for each whose size is at
    /// most `max_size`. Layers are visited in order, each read at most once.
    pub fn visit<F>(
        &self,
        img: &ImageArchive,
        paths: &[String],
        max_size: u64,
        mut f: F,
    ) -> Result<VisitStats, ImageError>
    where
        F: FnMut(&str, &str, &[u8]),
    {
        let mut stats = VisitStats::default();
        let mut by_layer: HashMap<usize, Vec<(&str, &Node)>> = HashMap::new();
        for p in paths {
            if let Some((k, n)) = self.nodes.get_key_value(p) {
                if n.kind != NodeKind::File {
                    continue;
                }
                if n.size > max_size {
                    stats.skipped_too_large += 1;
                    continue;
                }
                by_layer.entry(n.layer).or_default().push((k.as_str(), n));
            }
        }
        let mut order: Vec<usize> = by_layer.keys().copied().collect();
        order.sort_unstable();
        let mut buf = Vec::new();
        for li in order {
            let Some(layer) = img.layers.get(li) else {
                continue;
            };
            let mut want = by_layer.remove(&li).unwrap_or_default();
            want.sort_by_key(|(p, n)| (n.data_offset, *p));
            let mut stream = img.layer_reader(layer)?;
            let mut pos = 0u64;
            let mut last: Option<u64> = None;
            for (path, n) in want {
                if last != Some(n.data_offset) {
                    buf.clear();
                    let res: io::Result<()> = (|| {
                        match &mut stream {
                            LayerStream::Plain(r) => {
                                r.seek(SeekFrom::Start(n.data_offset))?;
                            }
                            LayerStream::Compressed(r) => {
                                let skip = n.data_offset.saturating_sub(pos);
                                io::copy(&mut r.take(skip), &mut io::sink())?;
                            }
                        }
                        (&mut stream).take(n.size).read_to_end(&mut buf)?;
                        Ok(())
                    })();
                    res.map_err(|e| layer_err(img, layer, e))?;
                    if (buf.len() as u64) < n.size {
                        return Err(layer_err(
                            img,
                            layer,
                            format!("{path}: layer ends inside the file (truncated blob?)"),
                        ));
                    }
                    pos = n.data_offset + n.size;
                    last = Some(n.data_offset);
                }
                stats.files += 1;
                stats.bytes += n.size;
                f(path, &layer.digest, &buf);
            }
        }
        Ok(stats)
    }
}

impl ImageFs {
    /// Read one file (symlinks resolved): `(resolved path, layer digest, bytes)`.
    pub fn read(
        &self,
        img: &ImageArchive,
        path: &str,
        max_size: u64,
    ) -> Result<Option<(String, String, Vec<u8>)>, ImageError> {
        let Some((real, _)) = self.resolve(path) else {
            return Ok(None);
        };
        let mut out = None;
        self.visit(img, std::slice::from_ref(&real), max_size, |p, l, b| {
            out = Some((p.to_string(), l.to_string(), b.to_vec()));
        })?;
        Ok(out)
    }
}

/// What [`ImageFs::visit`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct VisitStats {
    pub files: u64,
    pub bytes: u64,
    pub skipped_too_large: u64,
}
