//! `pnpm-lock.yaml`: the keys of the `packages` map. v5: `/name/1.2.3[_peers]`;
//! v6: `/name@1.2.3[(peers)]`; v9: `name@1.2.3`. Explicit `name`/`version` fields win.

use crate::scan::deps::lockfile::{line_no, ParseError, Parsed};
use std::collections::HashMap;
use yaml_rust2::{Yaml, YamlLoader};

fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        _ => None,
    }
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
    let docs = YamlLoader::load_from_str(text)
        .map_err(|e| ParseError::new(path, u32::try_from(e.marker().line()).ok(), e.to_string()))?;
    let doc = docs
        .first()
        .ok_or_else(|| ParseError::new(path, None, "empty document"))?;
    let version = scalar(&doc["lockfileVersion"]).unwrap_or_default();
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(9);
    // Line of each key directly under `packages:` (2-space indent).
    let mut key_lines: HashMap<String, u32> = HashMap::new();
    let mut in_packages = false;
    for (i, l) in text.lines().enumerate() {
        if !l.starts_with(' ') && !l.trim().is_empty() {
            in_packages = l.trim_end() == "packages:";
            continue;
        }
        if in_packages && l.starts_with("  ") && !l.starts_with("   ") {
            let k = l
                .trim()
                .trim_end_matches(':')
                .trim_matches('\'')
                .trim_matches('"');
            key_lines.insert(k.to_string(), line_no(i));
        }
    }
    let mut out = Parsed::default();
    let Some(packages) = doc["packages"].as_hash() else {
        return Ok(out);
    };
    for (k, v) in packages {
        let Some(key) = scalar(k) else { continue };
        let line = key_lines.get(&key).copied();
        let from_key = split_key(&key, major);
        let name = scalar(&v["name"]).or_else(|| from_key.as_ref().map(|(n, _)| n.clone()));
        let version = scalar(&v["version"]).or_else(|| from_key.as_ref().map(|(_, v)| v.clone()));
        match (name, version) {
            (Some(n), Some(ver)) if !ver.contains(':') && !ver.contains('/') => {
                out.push("npm", &n, &ver, path, line)
            }
            _ => out.skip(line, key, "not a registry package"),
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
}
