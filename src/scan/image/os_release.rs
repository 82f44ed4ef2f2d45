//! Which OS an image is: `/etc/os-release` (or `/usr/lib/os-release`), with
//! `/etc/debian_version` and `/etc/alpine-release` as fallbacks, mapped to the
//! OSV ecosystem its packages' advisories are filed under.

use serde::Serialize;

use super::archive::ImageArchive;
use super::layers::ImageFs;
use super::ImageError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OsInfo {
    /// os-release `ID` (`debian`, `alpine`, `ubuntu`, ...).
    pub id: String,
    /// os-release `VERSION_ID` (`12`, `3.19.1`, `22.04`), if any.
    pub version_id: Option<String>,
    pub pretty_name: Option<String>,
    /// OSV ecosystem: `Debian:12`, `Alpine:v3.19`, `Ubuntu:22.04`; `None` when the
    /// OS has no OSV ecosystem we know of.
    pub ecosystem: Option<String>,
    /// purl `distro` qualifier: `debian-12`, `alpine-3.19.1`, `ubuntu-22.04`.
    pub purl_distro: Option<String>,
    /// File the OS was read from.
    pub path: String,
}

/// Parse os-release `KEY=value` lines (values optionally quoted).
pub fn parse_os_release(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.starts_with('#') {
                return None;
            }
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_string(), v.replace("\\\"", "\"")))
        })
        .collect()
}

fn first_n(version: &str, n: usize) -> String {
    version.split('.').take(n).collect::<Vec<_>>().join(".")
}

/// Build [`OsInfo`] from os-release fields.
pub fn from_fields(fields: &[(String, String)], path: &str) -> Option<OsInfo> {
    let get = |k: &str| {
        fields
            .iter()
            .find(|(fk, _)| fk == k)
            .map(|(_, v)| v.clone())
    };
    let id = get("ID")?.to_ascii_lowercase();
    let version_id = get("VERSION_ID").filter(|v| !v.is_empty());
    let v = version_id.clone().unwrap_or_default();
    let has_v = !v.is_empty();
    let ecosystem = match id.as_str() {
        "debian" if has_v => Some(format!("Debian:{}", first_n(&v, 1))),
        "ubuntu" if has_v => Some(format!("Ubuntu:{}", first_n(&v, 2))),
        "alpine" if has_v => Some(format!("Alpine:v{}", first_n(&v, 2))),
        "rocky" if has_v => Some(format!("Rocky Linux:{}", first_n(&v, 1))),
        "almalinux" if has_v => Some(format!("AlmaLinux:{}", first_n(&v, 1))),
        "opensuse-leap" if has_v => Some(format!("openSUSE:Leap {v}")),
        "wolfi" => Some("Wolfi".to_string()),
        "chainguard" => Some("Chainguard".to_string()),
        _ => None,
    };
    let purl_distro = match id.as_str() {
        "debian" if has_v => Some(format!("debian-{}", first_n(&v, 1))),
        _ if has_v => Some(format!("{id}-{v}")),
        _ => None,
    };
    Some(OsInfo {
        id,
        version_id,
        pretty_name: get("PRETTY_NAME"),
        ecosystem,
        purl_distro,
        path: path.to_string(),
    })
}

/// Detect the OS of a flattened image. `Ok(None)` for images without one
/// (distroless static, scratch).
pub fn detect(fs: &ImageFs, img: &ImageArchive) -> Result<Option<OsInfo>, ImageError> {
    const MAX: u64 = 64 * 1024;
    for p in ["etc/os-release", "usr/lib/os-release"] {
        if let Some((real, _, bytes)) = fs.read(img, p, MAX)? {
            let fields = parse_os_release(&String::from_utf8_lossy(&bytes));
            if let Some(mut os) = from_fields(&fields, &real) {
                if os.id == "debian" && os.version_id.is_none() {
                    // testing/sid: os-release has no VERSION_ID; debian_version may.
                    if let Some(v) = debian_version(fs, img)? {
                        let more = from_fields(
                            &[("ID".into(), "debian".into()), ("VERSION_ID".into(), v)],
                            &real,
                        );
                        if let Some(more) = more {
                            os.ecosystem = more.ecosystem;
                            os.purl_distro = more.purl_distro;
                        }
                    }
                }
                return Ok(Some(os));
            }
        }
    }
    if let Some(v) = debian_version(fs, img)? {
        let f = [
            ("ID".to_string(), "debian".to_string()),
            ("VERSION_ID".into(), v),
        ];
        return Ok(from_fields(&f, "etc/debian_version"));
    }
    if let Some((real, _, b)) = fs.read(img, "etc/alpine-release", MAX)? {
        let v = String::from_utf8_lossy(&b).trim().to_string();
        let f = [
            ("ID".to_string(), "alpine".to_string()),
            ("VERSION_ID".into(), v),
        ];
        return Ok(from_fields(&f, &real));
    }
    Ok(None)
}

/// `/etc/debian_version` as a numeric version (`12.5`), or `None` for
/// `trixie/sid` and the like.
fn debian_version(fs: &ImageFs, img: &ImageArchive) -> Result<Option<String>, ImageError> {
    Ok(fs
        .read(img, "etc/debian_version", 4096)?
        .map(|(_, _, b)| String::from_utf8_lossy(&b).trim().to_string())
        .filter(|v| v.starts_with(|c: char| c.is_ascii_digit())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn eco(text: &str) -> Option<String> {
        from_fields(&parse_os_release(text), "etc/os-release").and_then(|o| o.ecosystem)
    }

    #[test]
    fn ecosystems() {
        let deb = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";
        assert_eq!(eco(deb).as_deref(), Some("Debian:12"));
        assert_eq!(
            eco("ID=alpine\nVERSION_ID=3.19.1\n").as_deref(),
            Some("Alpine:v3.19")
        );
        assert_eq!(
            eco("ID=ubuntu\nVERSION_ID=\"22.04\"\n").as_deref(),
            Some("Ubuntu:22.04")
        );
        assert_eq!(
            eco("ID=debian\nVERSION_ID=11.2\n").as_deref(),
            Some("Debian:11")
        );
        assert_eq!(eco("ID=plan9\nVERSION_ID=4\n"), None);
        assert_eq!(eco("NAME=x\n"), None);
        let o = from_fields(&parse_os_release(deb), "x").and_then(|o| o.purl_distro);
        assert_eq!(o.as_deref(), Some("debian-12"));
    }
}
