//! Container image scanning: read a `docker save` tarball or OCI layout, flatten its
//! layers in memory, and inventory the packages installed in it (dpkg, apk,
//! Python, npm, cargo-auditable binaries). The inventory feeds the advisory
//! matcher; [`ImageInventory::for_each_file`] feeds the secret scanner. Paths
//! inside the image are relative and `/`-separated (`var/lib/dpkg/status`).

pub mod archive;
pub mod inventory;
pub mod layers;
pub mod os_release;
pub mod sbom;

#[cfg(test)]
mod scan_tests;
#[cfg(test)]
mod testutil;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::scan::model::{Package, Undecided, VulnFinding};
use crate::scan::osv::{AdvisoryDb, OsvError};

pub use archive::{ImageArchive, LayerRef};
pub use layers::{ImageFs, Node, NodeKind, VisitStats};
pub use os_release::OsInfo;

/// Largest file the inventory parsers read (status files, METADATA, binaries).
pub const INVENTORY_MAX_FILE: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a readable image: {reason}")]
    NotAnImage { path: PathBuf, reason: String },
    #[error("{path}: {name} is missing from the image; the archive is incomplete — re-run `docker save`")]
    MissingBlob { path: PathBuf, name: String },
    #[error("{path}: bad {name}: {reason}")]
    BadMetadata {
        path: PathBuf,
        name: String,
        reason: String,
    },
    #[error("{path}: layer {layer}: {reason} (corrupt or truncated layer; re-run `docker save`)")]
    Layer {
        path: PathBuf,
        layer: String,
        reason: String,
    },
}

/// Normalise a path inside an image: `/`-separated, relative, no `.`/`..`
/// (`..` never climbs above the root), no empty components.
pub fn normalize_path(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split(['/', '\\']) {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

/// What an image holds: identity, OS, packages, and its flattened filesystem.
#[derive(Debug, Serialize)]
pub struct ImageInventory {
    /// The scanned archive or layout directory.
    pub source: PathBuf,
    /// `sha256:` of the config blob: the image id.
    pub config_digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub os: Option<OsInfo>,
    pub layers: Vec<LayerRef>,
    pub packages: Vec<Package>,
    /// Files that could not be parsed (the scan goes on without them).
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub fs: ImageFs,
    #[serde(skip)]
    archive: ImageArchive,
}

impl ImageInventory {
    /// OSV ecosystem of the OS packages (`Debian:12`), if the OS was recognised.
    pub fn os_ecosystem(&self) -> Option<&str> {
        self.os.as_ref().and_then(|o| o.ecosystem.as_deref())
    }

    /// Call `f(path, layer_digest, bytes)` for every regular file of the flattened
    /// filesystem no larger than `max_size` bytes (larger ones are counted in
    /// [`VisitStats::skipped_too_large`]). Layers are read once each, in order.
    pub fn for_each_file<F>(&self, max_size: u64, f: F) -> Result<VisitStats, ImageError>
    where
        F: FnMut(&str, &str, &[u8]),
    {
        let paths: Vec<String> = self.fs.files().map(|(p, _)| p.clone()).collect();
        self.fs.visit(&self.archive, &paths, max_size, f)
    }

    /// Read the given files (paths relative to the image root, symlinks
    /// resolved); like [`Self::for_each_file`] for a chosen set.
    pub fn visit_files<F>(
        &self,
        paths: &[&str],
        max_size: u64,
        f: F,
    ) -> Result<VisitStats, ImageError>
    where
        F: FnMut(&str, &str, &[u8]),
    {
        let resolved: Vec<String> = paths
            .iter()
            .filter_map(|p| self.fs.resolve(p).map(|(r, _)| r))
            .collect();
        self.fs.visit(&self.archive, &resolved, max_size, f)
    }
}

/// A package of the distribution's own database (dpkg, apk, rpm), by its purl type.
pub fn is_os_package(p: &Package) -> bool {
    ["pkg:deb/", "pkg:apk/", "pkg:rpm/"]
        .iter()
        .any(|t| p.purl.starts_with(t))
}

/// Matches an image's packages against `db`: the findings, and the packages that could
/// not be decided — an OS package whose ecosystem the advisory data lacks (an OS family
/// OSV does not publish, such as Amazon Linux, or data not downloaded), or a version
/// that cannot be ordered against an advisory's ranges. Never counted as clean.
pub fn match_inventory(
    inv: &ImageInventory,
    db: &AdvisoryDb,
) -> Result<(Vec<VulnFinding>, Vec<Undecided>), OsvError> {
    db.check_all(&inv.packages, is_os_package)
}

/// Scan a `docker save` tarball (or an OCI image layout directory): flatten the
/// layers and inventory the OS and language packages.
pub fn scan_image_archive(path: &Path) -> Result<ImageInventory, ImageError> {
    let archive = ImageArchive::open(path)?;
    let fs = ImageFs::build_capturing(&archive, &mut inventory::capture)?;
    let os = os_release::detect(&fs, &archive)?;
    let mut warnings = Vec::new();
    let packages = inventory::collect(&fs, &archive, os.as_ref(), &mut warnings)?;
    Ok(ImageInventory {
        source: path.to_path_buf(),
        config_digest: archive.config_digest.clone(),
        manifest_digest: archive.manifest_digest.clone(),
        repo_tags: archive.repo_tags.clone(),
        repo_digests: archive.repo_digests.clone(),
        os,
        layers: archive.layers.clone(),
        packages,
        warnings,
        fs,
        archive,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::normalize_path;

    #[test]
    fn normalize() {
        assert_eq!(normalize_path("./etc/os-release"), "etc/os-release");
        assert_eq!(normalize_path("/../../etc//passwd"), "etc/passwd");
        assert_eq!(normalize_path("a/b/../c/."), "a/c");
        assert_eq!(normalize_path("./"), "");
    }
}
