//! `Pipfile.lock`: the `default` and `develop` maps of `name -> {"version": "==X"}`.
//! Entries without a pinned version (git, path, editable) are skipped.

use crate::scan::deps::lockfile::{JsonKeyLines, ParseError, Parsed};
use serde_json::Value;

pub fn parse(text: &str, path: &str) -> Result<Parsed, ParseError> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| ParseError::new(path, u32::try_from(e.line()).ok(), e.to_string()))?;
    let keys = JsonKeyLines::new(text);
    let mut out = Parsed::default();
    for section in ["default", "develop"] {
        let Some(map) = doc.get(section).and_then(Value::as_object) else {
            continue;
        };
        for (name, entry) in map {
            let raw = entry.get("version").and_then(Value::as_str).unwrap_or("");
            let line = keys.line(name, raw);
            match raw.strip_prefix("===").or_else(|| raw.strip_prefix("==")) {
                Some(v) => out.push("PyPI", name, v.trim(), path, line),
                None => out.skip(
                    line,
                    name.clone(),
                    "no pinned version (git, path or editable)",
                ),
            }
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
    fn parses_sections() {
        let text = "{\n  \"_meta\": {\"hash\": {}},\n  \"default\": {\n    \"django\": {\n      \"hashes\": [],\n      \"version\": \"==2.2.0\"\n    },\n    \"mylib\": {\n      \"editable\": true,\n      \"path\": \".\"\n    }\n  },\n  \"develop\": {}\n}";
        let p = parse(text, "Pipfile.lock").unwrap();
        assert_eq!(p.packages.len(), 1);
        assert_eq!(p.packages[0].version, "2.2.0");
        assert_eq!(p.packages[0].location.line, Some(4));
        assert_eq!(p.skipped.len(), 1);
        assert!(parse("{", "Pipfile.lock").is_err());
    }
}
