//! `Cargo.lock` (v1-v4): `[[package]]` tables. Only registry packages are reported;
//! workspace members (no `source`) and git dependencies are skipped.

use crate::scan::deps::lockfile::{toml_packages, ParseError, Parsed};
use serde::Deserialize;

#[derive(Deserialize)]
struct Pkg {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
    source: Option<String>,
}

pub fn parse(text: &str, path: &str) -> Result<Parsed, ParseError> {
    let mut out = Parsed::default();
    for (p, line) in toml_packages::<Pkg>(text, path)? {
        match p.source.as_deref() {
            Some(s) if s.starts_with("registry+") || s.starts_with("sparse+") => {
                out.push("crates.io", &p.name, &p.version, path, line);
            }
            Some(s) => out.skip(
                line,
                format!("{} {}", p.name, p.version),
                format!("not from a registry ({s})"),
            ),
            None => {} // workspace member or path dependency: not published
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn registry_packages_with_lines() {
        let text = "version = 3\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\n\n[[package]]\nname = \"smallvec\"\nversion = \"0.6.9\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n[[package]]\nname = \"g\"\nversion = \"1.0.0\"\nsource = \"git+https://example.com/g#abc\"\n";
        let p = parse(text, "Cargo.lock").unwrap();
        assert_eq!(p.packages.len(), 1);
        assert_eq!(p.packages[0].name, "smallvec");
        assert_eq!(p.packages[0].location.line, Some(7));
        assert_eq!(p.packages[0].purl, "pkg:cargo/smallvec@0.6.9");
        assert_eq!(p.skipped.len(), 1);
    }

    #[test]
    fn garbage() {
        for t in [
            "[[package]",
            "package = 3",
            "[[package]]\nname = 1",
            "\u{0}",
        ] {
            let _ = parse(t, "Cargo.lock");
        }
        assert!(parse("[[package]", "Cargo.lock")
            .unwrap_err()
            .to_string()
            .contains("Cargo.lock"));
    }
}
