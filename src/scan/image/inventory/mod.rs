//! Package inventory of a flattened image. Each parser is a pure function of one
//! file's bytes; [`collect`] picks the files, reads them in one pass per layer and
//! turns parser output into [`Package`]s located at the file and its layer.

pub mod apk;
pub mod cargo_auditable;
pub mod dpkg;
pub mod node;
pub mod python;
pub mod rpm;
pub mod rpm_bdb;
pub mod rpm_ndb;

use std::collections::HashMap;
use std::io::Read;

use crate::scan::model::{Location, Package};

use super::archive::ImageArchive;
use super::layers::{ImageFs, NodeKind};
use super::os_release::OsInfo;
use super::{ImageError, INVENTORY_MAX_FILE};

/// Why a package database or binary of the image could not be read. It becomes a
/// warning of the inventory (`<path>: <message>`), never a failure of the scan.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// NUL bytes in a text database (`what` names it: "a dpkg status file").
    #[error("binary data in {what}")]
    BinaryData { what: &'static str },
    #[error("no Packages table in the rpm database")]
    NoPackagesTable,
    #[error("not a sqlite 3 database")]
    NotSqlite,
    #[error("bad sqlite page size {0}")]
    SqlitePageSize(usize),
    #[error("bad sqlite reserved space")]
    SqliteReservedSpace,
    #[error("bad sqlite page number")]
    SqlitePageNumber,
    #[error("sqlite page {0} is past the end of the file (truncated?)")]
    SqlitePastEnd(usize),
    #[error("sqlite b-tree has a cycle")]
    SqliteCycle,
    #[error("short page")]
    SqliteShortPage,
    #[error("short cell")]
    SqliteShortCell,
    #[error("unexpected sqlite page type {0:#x} in a table")]
    SqlitePageType(u8),
    #[error("corrupt sqlite cell")]
    SqliteCorruptCell,
    #[error("corrupt sqlite overflow chain")]
    SqliteOverflowChain,
    #[error("not an rpm database: neither sqlite, ndb (Packages.db) nor Berkeley DB (Packages)")]
    UnknownRpmdb,
    #[error("not a Berkeley DB hash database")]
    NotBdbHash,
    #[error("bad Berkeley DB page size {0}")]
    BdbPageSize(u32),
    #[error("encrypted Berkeley DB database (rpm never writes one; the file is not an rpmdb)")]
    BdbEncrypted,
    #[error("corrupt Berkeley DB hash page (truncated file? rebuild it with `rpmdb --rebuilddb` in the image)")]
    BdbCorruptPage,
    #[error("corrupt Berkeley DB overflow chain (truncated file? rebuild it with `rpmdb --rebuilddb` in the image)")]
    BdbOverflowChain,
    #[error("not an rpm ndb database (bad magic or version)")]
    NotNdb,
    #[error("bad ndb slot page count {0}")]
    NdbSlotPages(usize),
    #[error("corrupt ndb slot or blob (truncated file? rebuild it with `rpmdb --rebuilddb` in the image)")]
    NdbCorrupt,
    #[error(".dep-v0: bad zlib data: {0}")]
    DepV0Zlib(#[source] std::io::Error),
    #[error(".dep-v0: dependency list too large")]
    DepV0TooLarge,
    #[error(".dep-v0: bad JSON: {0}")]
    DepV0Json(#[source] serde_json::Error),
}

/// Which parser a file goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    DpkgStatus,
    DpkgStatusD,
    Apk,
    Rpm,
    Python,
    Node,
    Elf,
}

/// Classify a path of the flattened image (regular file, given its mode).
pub fn classify(path: &str, mode: u32) -> Option<Kind> {
    if path == "var/lib/dpkg/status" {
        return Some(Kind::DpkgStatus);
    }
    if let Some(name) = path.strip_prefix("var/lib/dpkg/status.d/") {
        if !name.contains('/') && !name.ends_with(".md5sums") && !name.starts_with('.') {
            return Some(Kind::DpkgStatusD);
        }
    }
    if path == "lib/apk/db/installed" {
        return Some(Kind::Apk);
    }
    if let Some(name) = path
        .strip_prefix("var/lib/rpm/")
        .or_else(|| path.strip_prefix("usr/lib/sysimage/rpm/"))
    {
        // sqlite (RHEL 9, Fedora), ndb (SUSE), BerkeleyDB (Amazon Linux 2, RHEL 5-8).
        if matches!(name, "rpmdb.sqlite" | "Packages.db" | "Packages") {
            return Some(Kind::Rpm);
        }
    }
    if python::is_metadata_path(path) {
        return Some(Kind::Python);
    }
    if node::is_package_json(path) {
        return Some(Kind::Node);
    }
    if mode & 0o111 != 0 {
        return Some(Kind::Elf);
    }
    None
}

/// Percent-encode a purl component (everything but unreserved characters).
pub fn purl_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One OS package as a parser sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsPackage {
    pub name: String,
    pub version: String,
    pub source_name: Option<String>,
    pub source_version: Option<String>,
    pub arch: Option<String>,
}

fn os_package(p: OsPackage, kind: &str, os: Option<&OsInfo>, loc: &Location) -> Package {
    let (default_ns, default_eco) = if kind == "apk" {
        ("alpine", "Alpine")
    } else {
        ("debian", "Debian")
    };
    let ns = os
        .map(|o| o.id.clone())
        .unwrap_or_else(|| default_ns.into());
    let mut quals = Vec::new();
    if let Some(a) = &p.arch {
        quals.push(format!("arch={}", purl_encode(a)));
    }
    if let Some(d) = os.and_then(|o| o.purl_distro.as_deref()) {
        quals.push(format!("distro={}", purl_encode(d)));
    }
    let mut purl = format!(
        "pkg:{kind}/{}/{}@{}",
        purl_encode(&ns),
        purl_encode(&p.name),
        purl_encode(&p.version)
    );
    if !quals.is_empty() {
        purl.push('?');
        purl.push_str(&quals.join("&"));
    }
    Package {
        ecosystem: os
            .and_then(|o| o.ecosystem.clone())
            .unwrap_or_else(|| default_eco.into()),
        source_name: p.source_name.filter(|s| *s != p.name),
        name: p.name,
        version: p.version,
        purl,
        location: loc.clone(),
    }
}

/// Pass-1 capture for [`ImageFs::build_capturing`]: keep what [`collect`] will
/// parse. Text files are kept whole; for executables only their `.dep-v0`
/// section (empty when there is none), so big binaries are not held in memory.
pub fn capture(path: &str, mode: u32, size: u64, r: &mut dyn Read) -> Option<Vec<u8>> {
    let kind = classify(path, mode)?;
    if size > INVENTORY_MAX_FILE || (kind == Kind::Elf && size < MIN_ELF) {
        return None;
    }
    let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 20));
    r.take(size).read_to_end(&mut buf).ok()?;
    if kind == Kind::Elf {
        return Some(
            cargo_auditable::elf_section(&buf, ".dep-v0")
                .map(<[u8]>::to_vec)
                .unwrap_or_default(),
        );
    }
    Some(buf)
}

/// Executables smaller than this are not looked at (scripts, stubs).
const MIN_ELF: u64 = 64;

fn rpm_package(p: rpm::RpmPackage, os: Option<&OsInfo>, loc: &Location) -> Package {
    let ns = os.map_or("rpm", |o| o.id.as_str());
    let mut quals = Vec::new();
    if let Some(a) = &p.arch {
        quals.push(format!("arch={}", purl_encode(a)));
    }
    if let Some(e) = p.epoch.filter(|e| *e > 0) {
        quals.push(format!("epoch={e}"));
    }
    if let Some(d) = os.and_then(|o| o.purl_distro.as_deref()) {
        quals.push(format!("distro={}", purl_encode(d)));
    }
    let mut purl = format!(
        "pkg:rpm/{}/{}@{}",
        purl_encode(ns),
        purl_encode(&p.name),
        purl_encode(&format!("{}-{}", p.version, p.release))
    );
    if !quals.is_empty() {
        purl.push('?');
        purl.push_str(&quals.join("&"));
    }
    Package {
        // RPM distributions without a known OSV ecosystem get their os-release ID.
        ecosystem: os
            .and_then(|o| o.ecosystem.clone())
            .or_else(|| os.map(|o| o.id.clone()))
            .unwrap_or_else(|| "rpm".into()),
        source_name: p.source_name().filter(|s| *s != p.name),
        version: p.evr(),
        name: p.name,
        purl,
        location: loc.clone(),
    }
}

/// Collect every package in the image. Files captured in pass 1 (see
/// [`capture`]) are parsed from memory; the rest are read in one pass per layer.
pub fn collect(
    fs: &ImageFs,
    img: &ImageArchive,
    os: Option<&OsInfo>,
    warnings: &mut Vec<String>,
) -> Result<Vec<Package>, ImageError> {
    let mut wanted: Vec<String> = Vec::new();
    let mut kinds: HashMap<&str, Kind> = HashMap::new();
    let mut pkgs: Vec<(Kind, Package)> = Vec::new();
    for (path, node) in fs.nodes.iter() {
        if node.kind != NodeKind::File {
            continue;
        }
        let Some(k) = classify(path, node.mode) else {
            continue;
        };
        if k == Kind::Elf && node.size < MIN_ELF {
            continue;
        }
        if let Some(payload) = fs.captured.get(&(node.layer, node.data_offset)) {
            let layer = fs.layer_digests.get(node.layer).map_or("", String::as_str);
            parse_file(k, path, layer, payload, true, os, &mut pkgs, warnings);
        } else {
            kinds.insert(path.as_str(), k);
            wanted.push(path.clone());
        }
    }
    fs.visit(img, &wanted, INVENTORY_MAX_FILE, |path, layer, bytes| {
        if let Some(&kind) = kinds.get(path) {
            parse_file(kind, path, layer, bytes, false, os, &mut pkgs, warnings);
        }
    })?;
    // Stable order: OS packages first, then by ecosystem, name, version, path.
    pkgs.sort_by(|(ka, a), (kb, b)| {
        let os_a = matches!(
            ka,
            Kind::DpkgStatus | Kind::DpkgStatusD | Kind::Apk | Kind::Rpm
        );
        let os_b = matches!(
            kb,
            Kind::DpkgStatus | Kind::DpkgStatusD | Kind::Apk | Kind::Rpm
        );
        os_b.cmp(&os_a)
            .then_with(|| a.ecosystem.cmp(&b.ecosystem))
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.version.cmp(&b.version))
            .then_with(|| a.location.path.cmp(&b.location.path))
            .then_with(|| a.purl.cmp(&b.purl))
    });
    pkgs.dedup_by(|(_, a), (_, b)| a == b);
    Ok(pkgs.into_iter().map(|(_, p)| p).collect())
}

/// Parse one file of kind `kind` (`bytes` is the file, or for a captured ELF
/// file its `.dep-v0` section) into `pkgs`.
#[allow(clippy::too_many_arguments)]
fn parse_file(
    kind: Kind,
    path: &str,
    layer: &str,
    bytes: &[u8],
    captured: bool,
    os: Option<&OsInfo>,
    pkgs: &mut Vec<(Kind, Package)>,
    warnings: &mut Vec<String>,
) {
    let loc = Location {
        path: path.to_string(),
        layer: Some(layer.to_string()),
        ..Location::default()
    };
    match kind {
        Kind::DpkgStatus | Kind::DpkgStatusD => match dpkg::parse_status(bytes) {
            Ok(list) => pkgs.extend(
                list.into_iter()
                    .map(|p| (kind, os_package(p, "deb", os, &loc))),
            ),
            Err(e) => warnings.push(format!("{path}: {e}")),
        },
        Kind::Apk => match apk::parse_installed(bytes) {
            Ok(list) => pkgs.extend(
                list.into_iter()
                    .map(|p| (kind, os_package(p, "apk", os, &loc))),
            ),
            Err(e) => warnings.push(format!("{path}: {e}")),
        },
        Kind::Rpm => match rpm::parse_rpmdb(bytes) {
            Ok(list) => pkgs.extend(list.into_iter().map(|p| (kind, rpm_package(p, os, &loc)))),
            Err(e) => warnings.push(format!("{path}: {e}")),
        },
        Kind::Python => match python::parse_metadata(bytes) {
            Some((name, version)) => pkgs.push((
                kind,
                Package {
                    ecosystem: "PyPI".into(),
                    purl: python::purl(&name, &version),
                    name,
                    version,
                    source_name: None,
                    location: loc,
                },
            )),
            None => warnings.push(format!("{path}: no Name/Version in metadata")),
        },
        Kind::Node => {
            if let Some((name, version)) = node::parse_package_json(bytes) {
                pkgs.push((
                    kind,
                    Package {
                        ecosystem: "npm".into(),
                        purl: node::purl(&name, &version),
                        name,
                        version,
                        source_name: None,
                        location: loc,
                    },
                ));
            }
        }
        Kind::Elf => {
            let res = match (captured, bytes.is_empty()) {
                (true, true) => Ok(Vec::new()),
                (true, false) => cargo_auditable::decode_dep_v0(bytes),
                (false, _) => cargo_auditable::packages_from_elf(bytes),
            };
            match res {
                Ok(list) => pkgs.extend(list.into_iter().map(|(name, version)| {
                    (
                        kind,
                        Package {
                            ecosystem: "crates.io".into(),
                            purl: format!(
                                "pkg:cargo/{}@{}",
                                purl_encode(&name),
                                purl_encode(&version)
                            ),
                            name,
                            version,
                            source_name: None,
                            location: loc.clone(),
                        },
                    )
                })),
                Err(e) => warnings.push(format!("{path}: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn classify_paths() {
        assert_eq!(
            classify("var/lib/dpkg/status", 0o644),
            Some(Kind::DpkgStatus)
        );
        assert_eq!(
            classify("var/lib/dpkg/status.d/base", 0o644),
            Some(Kind::DpkgStatusD)
        );
        assert_eq!(classify("var/lib/dpkg/status.d/base.md5sums", 0o644), None);
        assert_eq!(classify("lib/apk/db/installed", 0o644), Some(Kind::Apk));
        assert_eq!(classify("usr/bin/ls", 0o755), Some(Kind::Elf));
        assert_eq!(classify("etc/passwd", 0o644), None);
    }

    #[test]
    fn purl_encoding() {
        assert_eq!(purl_encode("2.36-9+deb12u4"), "2.36-9%2Bdeb12u4");
        assert_eq!(purl_encode("1:2.3"), "1%3A2.3");
    }
}
