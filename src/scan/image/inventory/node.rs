//! npm packages: `node_modules/<name>/package.json` and
//! `node_modules/@scope/<name>/package.json` with a `name` and `version`
//! (test fixtures and other nested package.json files without them are skipped).

use super::purl_encode;

/// Is this the manifest of a package installed under `node_modules`?
pub fn is_package_json(path: &str) -> bool {
    let Some(dir) = path.strip_suffix("/package.json") else {
        return false;
    };
    let parts: Vec<&str> = dir.rsplitn(3, '/').collect();
    match parts.as_slice() {
        [_name, "node_modules", ..] => true,
        [_name, scope, rest] if scope.starts_with('@') => {
            *rest == "node_modules" || rest.ends_with("/node_modules")
        }
        _ => false,
    }
}

/// `(name, version)` of a package.json.
pub fn parse_package_json(bytes: &[u8]) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let name = v.get("name")?.as_str()?.trim();
    let version = v.get("version")?.as_str()?.trim();
    if name.is_empty() || version.is_empty() {
        return None;
    }
    Some((name.to_string(), version.to_string()))
}

/// `pkg:npm/<name>@<version>`, `pkg:npm/%40scope/<name>@<version>`.
pub fn purl(name: &str, version: &str) -> String {
    let path = match name.split_once('/') {
        Some((scope, n)) => format!("{}/{}", purl_encode(scope), purl_encode(n)),
        None => purl_encode(name),
    };
    format!("pkg:npm/{path}@{}", purl_encode(version))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn paths_and_purls() {
        assert!(is_package_json("usr/lib/node_modules/npm/package.json"));
        assert!(is_package_json("app/node_modules/@types/node/package.json"));
        assert!(is_package_json("node_modules/@scope/x/package.json"));
        assert!(!is_package_json("app/package.json"));
        assert!(!is_package_json(
            "app/node_modules/x/test/fixtures/package.json"
        ));
        assert_eq!(
            purl("@types/node", "20.1.0"),
            "pkg:npm/%40types/node@20.1.0"
        );
        assert_eq!(purl("lodash", "4.17.21"), "pkg:npm/lodash@4.17.21");
    }

    #[test]
    fn parse() {
        assert_eq!(
            parse_package_json(br#"{"name":"lodash","version":"4.17.21"}"#),
            Some(("lodash".into(), "4.17.21".into()))
        );
        assert_eq!(parse_package_json(br#"{"private":true}"#), None);
        assert_eq!(parse_package_json(b"{garbage"), None);
    }
}
