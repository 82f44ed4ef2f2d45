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

/// Ubuntu LTS releases: `YY.04` of an even year (6.06 LTS aside), or `LTS` in `VERSION`.
fn ubuntu_lts(version_id: &str, version: Option<&str>) -> bool {
    if version.is_some_and(|v| v.split_whitespace().any(|w| w == "LTS")) {
        return true;
    }
    let mut parts = version_id.split('.');
    match (parts.next().map(str::parse::<u32>), parts.next()) {
        (Some(Ok(yy)), Some("04")) => yy % 2 == 0,
        (Some(Ok(6)), Some("06")) => true,
        _ => false,
    }
}

/// The OSV ecosystem (ossf/osv-schema `ecosystems.json`) an OS's packages are filed
/// under, from os-release `ID`, `VERSION_ID` (`v`, may be empty), `VERSION` and
/// `PRETTY_NAME`:
///
/// | ID | ecosystem |
/// |---|---|
/// | `debian` 12.5 | `Debian:12` |
/// | `ubuntu` 22.04 (LTS) / 23.10 | `Ubuntu:22.04:LTS` / `Ubuntu:23.10` (records of `Ubuntu:Pro:22.04:LTS` match too) |
/// | `alpine` 3.19.1 | `Alpine:v3.19` |
/// | `almalinux` 9.4 | `AlmaLinux:9` |
/// | `rocky` 9.3 | `Rocky Linux:9` |
/// | `rhel` 9.3 | `Red Hat:enterprise_linux:9` (records of `Red Hat:enterprise_linux:9::<repo>` match) |
/// | `sles`, `sled`, `sle-micro`... | `SUSE:` + PRETTY_NAME without `SUSE ` (`SUSE:Linux Enterprise Server 15 SP5`) |
/// | `opensuse-leap`, `opensuse-tumbleweed`... | `openSUSE:` + PRETTY_NAME without `openSUSE ` (`openSUSE:Leap 15.5`) |
/// | `wolfi` / `chainguard` | `Wolfi` / `Chainguard` |
/// | `amzn` 2 / 2023 | `Amazon Linux:2` / `Amazon Linux:2023` (OSV publishes none: undecided unless local records exist) |
/// | `centos`, `ol`, `fedora` | `CentOS:7`, `Oracle Linux:8`, `Fedora:40` (likewise not in OSV) |
pub fn osv_ecosystem(
    id: &str,
    v: &str,
    version: Option<&str>,
    pretty_name: Option<&str>,
) -> Option<String> {
    let has_v = !v.is_empty();
    let pretty = pretty_name.map(str::trim).filter(|p| !p.is_empty());
    Some(match id {
        "debian" if has_v => format!("Debian:{}", first_n(v, 1)),
        "ubuntu" if has_v => {
            let release = first_n(v, 2);
            if ubuntu_lts(v, version) {
                format!("Ubuntu:{release}:LTS")
            } else {
                format!("Ubuntu:{release}")
            }
        }
        "alpine" if has_v => format!("Alpine:v{}", first_n(v, 2)),
        "rocky" if has_v => format!("Rocky Linux:{}", first_n(v, 1)),
        "almalinux" if has_v => format!("AlmaLinux:{}", first_n(v, 1)),
        "rhel" if has_v => format!("Red Hat:enterprise_linux:{}", first_n(v, 1)),
        "sles" | "sled" | "sles_sap" | "sle-micro" | "sl-micro" => {
            let p = pretty?;
            format!("SUSE:{}", p.strip_prefix("SUSE ").unwrap_or(p))
        }
        "opensuse-leap"
        | "opensuse-tumbleweed"
        | "opensuse-leap-micro"
        | "opensuse-microos"
        | "opensuse" => match pretty {
            Some(p) => format!("openSUSE:{}", p.strip_prefix("openSUSE ").unwrap_or(p)),
            None if id == "opensuse-tumbleweed" => "openSUSE:Tumbleweed".to_string(),
            None if id == "opensuse-leap" && has_v => format!("openSUSE:Leap {v}"),
            None => return None,
        },
        "wolfi" => "Wolfi".to_string(),
        "chainguard" => "Chainguard".to_string(),
        "amzn" if has_v => format!("Amazon Linux:{}", first_n(v, 1)),
        "centos" if has_v => format!("CentOS:{}", first_n(v, 1)),
        "ol" if has_v => format!("Oracle Linux:{}", first_n(v, 1)),
        "fedora" if has_v => format!("Fedora:{}", first_n(v, 1)),
        _ => return None,
    })
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
    let ecosystem = osv_ecosystem(
        &id,
        &v,
        get("VERSION").as_deref(),
        get("PRETTY_NAME").as_deref(),
    );
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
            Some("Ubuntu:22.04:LTS")
        );
        assert_eq!(
            eco("ID=debian\nVERSION_ID=11.2\n").as_deref(),
            Some("Debian:11")
        );
        assert_eq!(eco("ID=plan9\nVERSION_ID=4\n"), None);
        assert_eq!(
            eco("ID=sles\nVERSION_ID=15.5\n"),
            None,
            "SUSE needs PRETTY_NAME"
        );
        assert_eq!(eco("NAME=x\n"), None);
        let o = from_fields(&parse_os_release(deb), "x").and_then(|o| o.purl_distro);
        assert_eq!(o.as_deref(), Some("debian-12"));
    }

    /// os-release files as the distributions ship them (the fields that matter), and
    /// the OSV ecosystem names their advisories use (ossf/osv-schema ecosystems.json).
    #[test]
    fn real_os_release_files_map_to_osv_ecosystems() {
        let table = [
            ("NAME=\"Ubuntu\"\nVERSION=\"22.04.3 LTS (Jammy Jellyfish)\"\nID=ubuntu\nID_LIKE=debian\nPRETTY_NAME=\"Ubuntu 22.04.3 LTS\"\nVERSION_ID=\"22.04\"\n", "Ubuntu:22.04:LTS"),
            ("NAME=\"Ubuntu\"\nVERSION=\"24.04 LTS (Noble Numbat)\"\nID=ubuntu\nVERSION_ID=\"24.04\"\n", "Ubuntu:24.04:LTS"),
            ("NAME=\"Ubuntu\"\nVERSION=\"23.10 (Mantic Minotaur)\"\nID=ubuntu\nVERSION_ID=\"23.10\"\n", "Ubuntu:23.10"),
            ("NAME=\"Ubuntu\"\nID=ubuntu\nVERSION_ID=\"18.04\"\n", "Ubuntu:18.04:LTS"),
            ("PRETTY_NAME=\"Debian GNU/Linux 11 (bullseye)\"\nVERSION_ID=\"11\"\nID=debian\n", "Debian:11"),
            ("NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n", "Alpine:v3.19"),
            ("NAME=\"AlmaLinux\"\nVERSION=\"9.4 (Seafoam Ocelot)\"\nID=\"almalinux\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\n", "AlmaLinux:9"),
            ("NAME=\"Rocky Linux\"\nVERSION=\"8.9 (Green Obsidian)\"\nID=\"rocky\"\nVERSION_ID=\"8.9\"\n", "Rocky Linux:8"),
            ("NAME=\"Red Hat Enterprise Linux\"\nVERSION=\"9.3 (Plow)\"\nID=\"rhel\"\nVERSION_ID=\"9.3\"\n", "Red Hat:enterprise_linux:9"),
            ("NAME=\"SLES\"\nVERSION=\"15-SP5\"\nVERSION_ID=\"15.5\"\nPRETTY_NAME=\"SUSE Linux Enterprise Server 15 SP5\"\nID=\"sles\"\n", "SUSE:Linux Enterprise Server 15 SP5"),
            ("NAME=\"openSUSE Leap\"\nVERSION=\"15.5\"\nID=\"opensuse-leap\"\nVERSION_ID=\"15.5\"\nPRETTY_NAME=\"openSUSE Leap 15.5\"\n", "openSUSE:Leap 15.5"),
            ("NAME=\"openSUSE Tumbleweed\"\nID=\"opensuse-tumbleweed\"\nVERSION_ID=\"20240101\"\nPRETTY_NAME=\"openSUSE Tumbleweed\"\n", "openSUSE:Tumbleweed"),
            ("ID=wolfi\nNAME=\"Wolfi\"\nPRETTY_NAME=\"Wolfi\"\nVERSION_ID=\"20230201\"\n", "Wolfi"),
            ("ID=chainguard\nNAME=\"Chainguard\"\nPRETTY_NAME=\"Chainguard\"\nVERSION_ID=\"20230214\"\n", "Chainguard"),
            ("NAME=\"Amazon Linux\"\nVERSION=\"2\"\nID=\"amzn\"\nVERSION_ID=\"2\"\n", "Amazon Linux:2"),
            ("NAME=\"Amazon Linux\"\nVERSION=\"2023\"\nID=\"amzn\"\nVERSION_ID=\"2023\"\n", "Amazon Linux:2023"),
            ("NAME=\"CentOS Linux\"\nVERSION=\"7 (Core)\"\nID=\"centos\"\nVERSION_ID=\"7\"\n", "CentOS:7"),
        ];
        for (text, want) in table {
            assert_eq!(eco(text).as_deref(), Some(want), "{text}");
        }
    }
}
