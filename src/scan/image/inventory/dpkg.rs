//! dpkg databases: `/var/lib/dpkg/status` and distroless `/var/lib/dpkg/status.d/*`
//! (one control paragraph per package, same format).

use super::{InventoryError, OsPackage};

/// Split a Debian control file into paragraphs of `(field, value)`; continuation
/// lines are appended to the previous value.
pub fn paragraphs(text: &str) -> Vec<Vec<(&str, String)>> {
    let mut out = Vec::new();
    let mut cur: Vec<(&str, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = cur.last_mut() {
                v.push('\n');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            cur.push((k.trim(), v.trim().to_string()));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Installed packages of a dpkg status file: paragraphs whose `Status` is
/// `install ok installed` (a paragraph without `Status`, as some status.d
/// files have, counts as installed).
pub fn parse_status(bytes: &[u8]) -> Result<Vec<OsPackage>, InventoryError> {
    if bytes.contains(&0) {
        return Err(InventoryError::BinaryData {
            what: "a dpkg status file",
        });
    }
    let text = String::from_utf8_lossy(bytes);
    let mut pkgs = Vec::new();
    for para in paragraphs(&text) {
        let get = |k: &str| {
            para.iter()
                .find(|(fk, _)| fk.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
        };
        let (Some(name), Some(version)) = (get("Package"), get("Version")) else {
            continue;
        };
        if let Some(status) = get("Status") {
            if status.split_whitespace().collect::<Vec<_>>() != ["install", "ok", "installed"] {
                continue;
            }
        }
        let (source_name, source_version) = match get("Source") {
            Some(s) => match s.split_once('(') {
                Some((n, v)) => (
                    Some(n.trim().to_string()),
                    Some(v.trim_end_matches(')').trim().to_string()),
                ),
                None => (Some(s.trim().to_string()), None),
            },
            None => (None, None),
        };
        pkgs.push(OsPackage {
            name: name.to_string(),
            version: version.to_string(),
            source_name: source_name.filter(|s| !s.is_empty()),
            source_version,
            arch: get("Architecture").map(str::to_string),
        });
    }
    Ok(pkgs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn fixture_status() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/scan/image/dpkg-status"
        ))
        .unwrap();
        let pkgs = parse_status(&bytes).unwrap();
        let got: Vec<String> = pkgs
            .iter()
            .map(|p| format!("{} {} {:?} {:?}", p.name, p.version, p.source_name, p.arch))
            .collect();
        assert_eq!(
            got,
            [
                "base-files 12.4+deb12u5 None Some(\"amd64\")",
                "libc6 2.36-9+deb12u4 Some(\"glibc\") Some(\"amd64\")",
                "libgcc-s1 12.2.0-14 Some(\"gcc-12\") Some(\"amd64\")",
                "zlib1g 1:1.2.13.dfsg-1 Some(\"zlib\") Some(\"amd64\")",
            ]
        );
        let gcc = &pkgs[2];
        assert_eq!(gcc.source_version.as_deref(), Some("12.2.0-14"));
    }

    #[test]
    fn status_filter_and_garbage() {
        let t = b"Package: a\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: b\nVersion: 2\n";
        let p = parse_status(t).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].name, "b");
        assert!(parse_status(b"\x00\x01").is_err());
        assert!(parse_status(b"not a control file").unwrap().is_empty());
    }
}
