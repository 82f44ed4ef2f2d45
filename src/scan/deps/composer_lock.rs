//! `composer.lock`: the `packages` and `packages-dev` arrays of `{name, version}`.

use crate::scan::deps::lockfile::{line_no, ParseError, Parsed};
use serde_json::Value;
use std::collections::HashMap;

pub fn parse(text: &str, path: &str) -> Result<Parsed, ParseError> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| ParseError::new(path, u32::try_from(e.line()).ok(), e.to_string()))?;
    // `"name": "vendor/package"` lines, in order.
    let mut name_lines: HashMap<String, u32> = HashMap::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if let Some(rest) = t.strip_prefix("\"name\":") {
            let v = rest.trim().trim_end_matches(',').trim_matches('"');
            name_lines.entry(v.to_string()).or_insert(line_no(i));
        }
    }
    let mut out = Parsed::default();
    for section in ["packages", "packages-dev"] {
        let Some(list) = doc.get(section).and_then(Value::as_array) else {
            continue;
        };
        for p in list {
            let (Some(name), Some(version)) = (
                p.get("name").and_then(Value::as_str),
                p.get("version").and_then(Value::as_str),
            ) else {
                continue;
            };
            let line = name_lines.get(name).copied();
            if version.starts_with("dev-") {
                out.skip(
                    line,
                    format!("{name} {version}"),
                    "development branch, no release version",
                );
                continue;
            }
            out.push("Packagist", name, version, path, line);
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
        let text = "{\n  \"packages\": [\n    {\n      \"name\": \"guzzlehttp/guzzle\",\n      \"version\": \"6.5.0\"\n    },\n    {\n      \"name\": \"acme/x\",\n      \"version\": \"dev-main\"\n    }\n  ],\n  \"packages-dev\": []\n}";
        let p = parse(text, "composer.lock").unwrap();
        assert_eq!(p.packages.len(), 1);
        assert_eq!(p.packages[0].location.line, Some(4));
        assert_eq!(p.skipped.len(), 1);
        let _ = parse("{\"packages\": [1, null, {}]}", "composer.lock");
    }
}
