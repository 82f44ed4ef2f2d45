//! Installed Python distributions: `*.dist-info/METADATA`, `*.egg-info/PKG-INFO`
//! and single-file `*.egg-info` (all RFC 822 style headers: `Name`, `Version`).

use super::purl_encode;

/// Is this path a Python distribution's metadata file?
pub fn is_metadata_path(path: &str) -> bool {
    if path.ends_with(".dist-info/METADATA") || path.ends_with(".egg-info/PKG-INFO") {
        return true;
    }
    // A bare `foo-1.0.egg-info` file directly in site-packages / dist-packages.
    if let Some((dir, file)) = path.rsplit_once('/') {
        return file.ends_with(".egg-info")
            && (dir.ends_with("site-packages") || dir.ends_with("dist-packages"));
    }
    false
}

/// `(Name, Version)` from the metadata headers (the body after the first blank
/// line is the description and is not read).
pub fn parse_metadata(bytes: &[u8]) -> Option<(String, String)> {
    let text = String::from_utf8_lossy(bytes);
    let (mut name, mut version) = (None, None);
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "name" if name.is_none() => name = Some(v.trim().to_string()),
                "version" if version.is_none() => version = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    match (name, version) {
        (Some(n), Some(v)) if !n.is_empty() && !v.is_empty() => Some((n, v)),
        _ => None,
    }
}

/// `pkg:pypi/<name>@<version>`, the name normalised as the purl spec says
/// (lowercase, `_` → `-`).
pub fn purl(name: &str, version: &str) -> String {
    let n = name.to_ascii_lowercase().replace('_', "-");
    format!("pkg:pypi/{}@{}", purl_encode(&n), purl_encode(version))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn fixture_metadata() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/scan/image/METADATA"
        ))
        .unwrap();
        assert_eq!(
            parse_metadata(&bytes),
            Some(("Jinja2".to_string(), "3.1.2".to_string()))
        );
        assert_eq!(
            purl("Typing_Extensions", "4.8.0"),
            "pkg:pypi/typing-extensions@4.8.0"
        );
        assert_eq!(parse_metadata(b"Metadata-Version: 2.1\n"), None);
    }

    #[test]
    fn paths() {
        assert!(is_metadata_path(
            "usr/lib/python3/dist-packages/jinja2-3.1.2.dist-info/METADATA"
        ));
        assert!(is_metadata_path(
            "usr/lib/python3/dist-packages/six-1.16.0.egg-info"
        ));
        assert!(is_metadata_path("x/site-packages/foo.egg-info/PKG-INFO"));
        assert!(!is_metadata_path("x/site-packages/foo/METADATA"));
    }
}
