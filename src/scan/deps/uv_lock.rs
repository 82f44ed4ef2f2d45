//! `uv.lock`: `[[package]]` tables; only packages with a `registry` source are
//! reported (editable/virtual/path/git projects are skipped).

use crate::scan::deps::lockfile::{toml_packages, ParseError, Parsed};
use serde::Deserialize;

#[derive(Deserialize)]
struct Pkg {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    source: Option<toml::Table>,
}

pub fn parse(text: &str, path: &str) -> Result<Parsed, ParseError> {
    let mut out = Parsed::default();
    for (p, line) in toml_packages::<Pkg>(text, path)? {
        let registry = p
            .source
            .as_ref()
            .is_some_and(|s| s.contains_key("registry"));
        match (&p.version, registry) {
            (Some(v), true) => out.push("PyPI", &p.name, v, path, line),
            (_, false) => {
                let kind = p
                    .source
                    .as_ref()
                    .and_then(|s| s.keys().next().cloned())
                    .unwrap_or_else(|| "no".into());
                if kind != "editable" && kind != "virtual" {
                    out.skip(
                        line,
                        p.name.clone(),
                        format!("{kind} source, not from a package index"),
                    );
                }
            }
            (None, true) => out.skip(line, p.name.clone(), "no version"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_registry_packages() {
        let text = "version = 1\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\nsource = { editable = \".\" }\n\n[[package]]\nname = \"django\"\nversion = \"3.2.0\"\nsource = { registry = \"https://pypi.org/simple\" }\n";
        let p = parse(text, "uv.lock").unwrap();
        assert_eq!(p.packages.len(), 1);
        assert_eq!(p.packages[0].location.line, Some(8));
        assert!(p.skipped.is_empty());
        assert!(parse("[[package]]\nsource = 3", "uv.lock").is_err());
    }
}
