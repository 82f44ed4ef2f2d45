//! `pnpm-lock.yaml`: the keys of the `packages` map. v5: `/name/1.2.3[_peers]`;
//! v6: `/name@1.2.3[(peers)]`; v9: `name@1.2.3`. Explicit `name`/`version` fields win.

use crate::buildspec::yaml::{self, Node};
use crate::scan::deps::lockfile::{ParseError, Parsed};

fn scalar(node: Option<&Node>) -> Option<String> {
    node.and_then(Node::as_str).map(str::to_string)
}

/// Splits a `packages` key into (name, version).
pub fn split_key(key: &str, major: u32) -> Option<(String, String)> {
    let k = key.strip_prefix('/').unwrap_or(key);
    let k = k.split('(').next().unwrap_or(k);
    if major < 6 {
        let (name, version) = k.rsplit_once('/')?;
        let version = version.split('_').next().unwrap_or(version);
        return Some((name.to_string(), version.to_string()));
    }
    let at = k.get(1..)?.rfind('@')? + 1;
    Some((k[..at].to_string(), k[at + 1..].to_string()))
}

pub fn parse(text: &str, path: &str) -> Result<Parsed, ParseError> {
    // The one YAML reader, with its limits (size, depth, alias bombs).
    let loaded = yaml::load(text);
    if let Some(e) = loaded.diagnostics.iter().find(|d| d.is_error()) {
        return Err(ParseError::new(path, Some(e.line), e.message.clone()));
    }
    let doc = loaded
        .root
        .ok_or_else(|| ParseError::new(path, None, "empty document"))?;
    let Some(version) = scalar(doc.get("lockfileVersion")) else {
        return Err(ParseError::new(
            path,
            Some(doc.pos().line),
            "no lockfileVersion: not a pnpm lockfile",
        ));
    };
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(9);
    let mut out = Parsed::default();
    let Some(Node::Map {
        entries: packages, ..
    }) = doc.get("packages")
    else {
        return Ok(out);
    };
    for (k, v) in packages {
        let Some(key) = k.as_str() else { continue };
        let line = Some(k.pos().line);
        let from_key = split_key(key, major);
        let name = scalar(v.get("name")).or_else(|| from_key.as_ref().map(|(n, _)| n.clone()));
        let version =
            scalar(v.get("version")).or_else(|| from_key.as_ref().map(|(_, v)| v.clone()));
        match (name, version) {
            (Some(n), Some(ver)) if !ver.contains(':') && !ver.contains('/') => {
                out.push("npm", &n, &ver, path, line)
            }
            _ => out.skip(line, key.to_string(), "not a registry package"),
        }
    }
    out.packages.sort_by_key(|p| p.location.line);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn keys_of_each_version() {
        assert_eq!(
            split_key("/lodash/4.17.4", 5),
            Some(("lodash".into(), "4.17.4".into()))
        );
        assert_eq!(
            split_key("/@babel/core/7.0.0_x@1.0.0", 5),
            Some(("@babel/core".into(), "7.0.0".into()))
        );
        assert_eq!(
            split_key("/@babel/core@7.0.0(x@1.0.0)", 6),
            Some(("@babel/core".into(), "7.0.0".into()))
        );
        assert_eq!(
            split_key("lodash@4.17.4", 9),
            Some(("lodash".into(), "4.17.4".into()))
        );
        assert_eq!(split_key("@", 9), None);
    }

    #[test]
    fn parses_v9() {
        let text = "lockfileVersion: '9.0'\n\nimporters:\n  .:\n    dependencies:\n      lodash:\n        specifier: ^4.17.4\n        version: 4.17.4\n\npackages:\n\n  '@babel/core@7.0.0':\n    resolution: {integrity: sha512-x}\n\n  lodash@4.17.4:\n    resolution: {integrity: sha512-y}\n";
        let p = parse(text, "pnpm-lock.yaml").unwrap();
        let got: Vec<_> = p
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.location.line))
            .collect();
        assert_eq!(got, [("@babel/core", Some(12)), ("lodash", Some(15))]);
        for t in ["packages: [", "packages: 3", "packages:\n  x: 1\n  '@': {}"] {
            let _ = parse(t, "pnpm-lock.yaml");
        }
    }

    /// fixtures/fuzz-crashes/pnpm_lock/cr-line-breaks-line-number.bin: the YAML scanner
    /// counts a bare `\r` as a line break, so the package was "at line 25" of a 13-line file.
    /// Lines count `\n` (and `\r\n`), as `str::lines`, the other lockfiles and `grep -n` do.
    #[test]
    fn line_numbers_point_into_the_file_with_bare_carriage_returns() {
        let text = std::str::from_utf8(include_bytes!(
            "../../../fixtures/fuzz-crashes/pnpm_lock/cr-line-breaks-line-number.bin"
        ))
        .unwrap();
        let p = parse(text, "pnpm-lock.yaml").unwrap();
        let got: Vec<_> = p
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.location.line))
            .collect();
        assert_eq!(got, [("lodash", Some(10))]);
        assert_eq!(text.lines().nth(9), Some("  lodash@4.17.15:"));
    }

    /// The same lockfile with `\n`, `\r\n` and some bare `\r` breaks: every package's line
    /// is the line of `str::lines` that holds its key.
    #[test]
    fn line_numbers_agree_with_str_lines_for_every_line_break() {
        let base = "lockfileVersion: '9.0'\n\npackages:\n\n  '@babel/core@7.0.0':\n    resolution: {integrity: sha512-x}\n\n  lodash@4.17.4:\n    resolution: {integrity: sha512-y}\n";
        for (text, want) in [
            (base.to_string(), [5, 8]),
            (base.replace('\n', "\r\n"), [5, 8]),
            (base.replace("\n\n", "\n\r"), [3, 5]),
            (base.replace("\n\n", "\r\r"), [1, 2]),
        ] {
            let p = parse(&text, "pnpm-lock.yaml").unwrap();
            let got: Vec<_> = p
                .packages
                .iter()
                .map(|p| p.location.line.unwrap_or(0))
                .collect();
            assert_eq!(got, want, "{text:?}");
            for p in &p.packages {
                let line = p.location.line.unwrap_or(0) as usize;
                let held = text.lines().nth(line - 1).unwrap_or("");
                assert!(
                    held.contains(&p.name),
                    "{} not on line {line} of {text:?}",
                    p.name
                );
            }
        }
    }

    /// A lockfile whose aliases expand to a million nodes is refused, not expanded.
    #[test]
    fn alias_bomb_is_an_error() {
        let mut text =
            String::from("lockfileVersion: '9.0'\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..6 {
            text.push_str(&format!(
                "a{i}: &a{i} [{}]\n",
                vec![format!("*a{}", i - 1); 10].join(", ")
            ));
        }
        text.push_str("packages:\n  lodash@4.17.4:\n    resolution: {integrity: sha512-y}\n");
        assert!(text.len() < 600);
        let err = parse(&text, "pnpm-lock.yaml").unwrap_err().to_string();
        assert!(
            err.contains("pnpm-lock.yaml") && err.contains("alias"),
            "{err}"
        );
    }
}
