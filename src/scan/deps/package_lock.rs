//! `package-lock.json` / `npm-shrinkwrap.json`. v2/v3: the `packages` map keyed by
//! `node_modules/...` paths (name = after the last `node_modules/`, or the entry's
//! `name` for aliases; the root `""`, workspace folders and `link: true` are skipped).
//! v1: the nested `dependencies` tree.

use crate::scan::deps::lockfile::{JsonKeyLines, ParseError, Parsed};
use serde_json::{Map, Value};

pub fn parse(text: &str, path: &str) -> Result<Parsed, ParseError> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| ParseError::new(path, u32::try_from(e.line()).ok(), e.to_string()))?;
    let obj = doc
        .as_object()
        .ok_or_else(|| ParseError::new(path, None, "not a JSON object"))?;
    let keys = JsonKeyLines::new(text);
    let mut out = Parsed::default();
    if let Some(packages) = obj.get("packages").and_then(Value::as_object) {
        for (key, entry) in packages {
            let Some(idx) = key.rfind("node_modules/") else {
                continue;
            }; // root, workspaces
            if entry.get("link").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let name = entry
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(&key[idx + "node_modules/".len()..]);
            let Some(version) = entry.get("version").and_then(Value::as_str) else {
                let line = keys.line(key, "");
                out.skip(line, key.clone(), "no version");
                continue;
            };
            let line = keys.line(key, version);
            out.push("npm", name, version, path, line);
        }
    } else if let Some(deps) = obj.get("dependencies").and_then(Value::as_object) {
        walk_v1(deps, path, &keys, &mut out, 0);
    }
    out.packages.sort_by_key(|p| p.location.line);
    Ok(out)
}

fn walk_v1(
    deps: &Map<String, Value>,
    path: &str,
    keys: &JsonKeyLines<'_>,
    out: &mut Parsed,
    depth: usize,
) {
    if depth > 64 {
        return;
    }
    for (name, entry) in deps {
        let Some(version) = entry.get("version").and_then(Value::as_str) else {
            continue;
        };
        let line = keys.line(name, version);
        // Aliases (`npm:real@1.0.0`) and non-registry specs (`file:`, `git+`).
        if let Some(alias) = version.strip_prefix("npm:") {
            if let Some(at) = alias.rfind('@').filter(|&i| i > 0) {
                out.push("npm", &alias[..at], &alias[at + 1..], path, line);
            }
        } else if version.contains(':') || version.contains('/') {
            out.skip(line, format!("{name} {version}"), "not from the registry");
        } else {
            out.push("npm", name, version, path, line);
        }
        if let Some(nested) = entry.get("dependencies").and_then(Value::as_object) {
            walk_v1(nested, path, keys, out, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn v3_packages() {
        let text = r#"{
  "name": "app",
  "lockfileVersion": 3,
  "packages": {
    "": {
      "name": "app",
      "version": "1.0.0"
    },
    "node_modules/@babel/core": {
      "version": "7.0.0"
    },
    "node_modules/a/node_modules/lodash": {
      "version": "4.17.4"
    },
    "node_modules/linked": {
      "resolved": "packages/linked",
      "link": true
    },
    "packages/linked": {
      "version": "0.0.1"
    }
  }
}"#;
        let p = parse(text, "package-lock.json").unwrap();
        let names: Vec<_> = p
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.location.line))
            .collect();
        assert_eq!(names, [("@babel/core", Some(9)), ("lodash", Some(12))]);
    }

    #[test]
    fn v1_nested() {
        let text = r#"{
  "lockfileVersion": 1,
  "dependencies": {
    "a": {
      "version": "1.0.0",
      "dependencies": {
        "lodash": {
          "version": "4.17.4"
        }
      }
    },
    "lodash": {
      "version": "4.17.21"
    }
  }
}"#;
        let p = parse(text, "package-lock.json").unwrap();
        let got = p.triples();
        assert_eq!(
            got,
            [
                ("a", "1.0.0", Some(4)),
                ("lodash", "4.17.4", Some(7)),
                ("lodash", "4.17.21", Some(12))
            ]
        );
    }

    #[test]
    fn garbage() {
        for t in [
            "",
            "[]",
            "{\"packages\": 3}",
            "{\"packages\": {\"node_modules/x\": 1}}",
            "{",
        ] {
            let _ = parse(t, "package-lock.json");
        }
    }
}
