//! `poetry.lock`: `[[package]]` tables with `name` and `version`; packages whose
//! `[package.source]` is git, a directory, a file or a URL are skipped.

use crate::scan::deps::lockfile::{toml_packages, ParseError, Parsed};
use serde::Deserialize;

#[derive(Deserialize)]
struct Pkg {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
    source: Option<Source>,
}

#[derive(Deserialize)]
struct Source {
    #[serde(rename = "type", default)]
    kind: String,
}

pub fn parse(text: &str, path: &str) -> Result<Parsed, ParseError> {
    let mut out = Parsed::default();
    for (p, line) in toml_packages::<Pkg>(text, path)? {
        match p.source.as_ref().map(|s| s.kind.as_str()) {
            None | Some("legacy") | Some("") => out.push("PyPI", &p.name, &p.version, path, line),
            Some(kind) => out.skip(
                line,
                format!("{} {}", p.name, p.version),
                format!("{kind} source, not from a package index"),
            ),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_packages() {
        let text = "[[package]]\nname = \"Jinja2\"\nversion = \"2.10\"\ndescription = \"x\"\n\n[[package]]\nname = \"mylib\"\nversion = \"0.1.0\"\n\n[package.source]\ntype = \"git\"\nurl = \"https://example.com/x.git\"\n";
        let p = parse(text, "poetry.lock").unwrap();
        assert_eq!(p.packages.len(), 1);
        assert_eq!(p.packages[0].location.line, Some(1));
        assert_eq!(p.skipped.len(), 1);
        assert!(parse("[[package]]\nname=", "poetry.lock").is_err());
    }
}
