//! `yarn.lock`, classic (v1: `version "1.2.3"`) and berry (v2+: YAML, `version: 1.2.3`).
//! An entry starts with an unindented line of comma-separated specs ending in `:`;
//! the name is the first spec up to its last `@` (scoped names keep their leading `@`).
//! Workspace, link, portal and file entries are skipped.

use crate::scan::deps::lockfile::{line_no, ParseError, Parsed};

struct Entry<'a> {
    line: u32,
    spec: &'a str,
    version: Option<&'a str>,
    resolution: Option<&'a str>,
}

fn unquote(s: &str) -> &str {
    s.trim().trim_matches('"').trim_matches('\'')
}

fn name_of(spec: &str) -> &str {
    let spec = unquote(spec);
    match spec.get(1..).and_then(|s| s.find('@')) {
        Some(i) => &spec[..i + 1],
        None => spec,
    }
}

pub fn parse(text: &str, path: &str) -> Result<Parsed, ParseError> {
    let mut entries: Vec<Entry<'_>> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() || raw.trim_start().starts_with('#') {
            continue;
        }
        if !raw.starts_with(' ') {
            let Some(head) = raw.trim_end().strip_suffix(':') else {
                return Err(ParseError::new(
                    path,
                    Some(line_no(i)),
                    format!("unexpected line `{}`", raw.trim()),
                ));
            };
            let spec = unquote(unquote(head).split(',').next().unwrap_or(""));
            entries.push(Entry {
                line: line_no(i),
                spec,
                version: None,
                resolution: None,
            });
            continue;
        }
        let Some(e) = entries.last_mut() else {
            continue;
        };
        let t = raw.trim();
        // Only the entry's own fields (2-space indent), not nested dependency maps.
        if raw.len() - raw.trim_start().len() > 2 {
            continue;
        }
        if let Some(v) = t
            .strip_prefix("version:")
            .or_else(|| t.strip_prefix("version "))
        {
            e.version = Some(unquote(v));
        } else if let Some(r) = t.strip_prefix("resolution:") {
            e.resolution = Some(unquote(r));
        }
    }
    let mut out = Parsed::default();
    for e in entries {
        if e.spec == "__metadata" || e.spec.is_empty() {
            continue;
        }
        // Aliases (`alias@npm:real@^1`): the resolution names the real package.
        let name = e.resolution.map_or_else(|| name_of(e.spec), name_of);
        let protocol_of = |s: &str| -> String {
            let s = unquote(s);
            let rest = s.get(name_of(s).len()..).unwrap_or("");
            let rest = rest.trim_start_matches('@');
            rest.split_once(':')
                .map(|(p, _)| p.to_string())
                .unwrap_or_default()
        };
        let proto = e
            .resolution
            .map(protocol_of)
            .unwrap_or_else(|| protocol_of(e.spec));
        let Some(version) = e.version else {
            out.skip(Some(e.line), e.spec.to_string(), "no version");
            continue;
        };
        if matches!(
            proto.as_str(),
            "workspace" | "link" | "portal" | "file" | "git" | "github"
        ) || version.ends_with("-use.local")
        {
            out.skip(
                Some(e.line),
                e.spec.to_string(),
                format!("{proto} dependency, not from the registry"),
            );
            continue;
        }
        out.push("npm", name, version, path, Some(e.line));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn classic() {
        let text = "# yarn lockfile v1\n\n\n\"@babel/code-frame@^7.0.0\", \"@babel/code-frame@^7.10.4\":\n  version \"7.12.13\"\n  resolved \"https://registry.yarnpkg.com/x\"\n  dependencies:\n    \"@babel/highlight\" \"^7.12.13\"\n\nlodash@^4.17.4:\n  version \"4.17.4\"\n";
        let p = parse(text, "yarn.lock").unwrap();
        let got = p.triples();
        assert_eq!(
            got,
            [
                ("@babel/code-frame", "7.12.13", Some(4)),
                ("lodash", "4.17.4", Some(10))
            ]
        );
    }

    #[test]
    fn berry() {
        let text = "__metadata:\n  version: 6\n  cacheKey: 8\n\n\"app@workspace:.\":\n  version: 0.0.0-use.local\n  resolution: \"app@workspace:.\"\n\n\"lodash@npm:^4.17.4, lodash@npm:^4.17.5\":\n  version: 4.17.4\n  resolution: \"lodash@npm:4.17.4\"\n  dependencies:\n    version: 9\n";
        let p = parse(text, "yarn.lock").unwrap();
        assert_eq!(p.packages.len(), 1);
        assert_eq!(p.packages[0].version, "4.17.4");
        assert_eq!(p.packages[0].location.line, Some(9));
        assert_eq!(p.skipped.len(), 1);
        let alias = "\"string-width-cjs@npm:string-width@^4.2.0\":\n  version: 4.2.3\n  resolution: \"string-width@npm:4.2.3\"\n";
        let p = parse(alias, "yarn.lock").unwrap();
        assert_eq!(p.packages[0].name, "string-width");
    }

    #[test]
    fn garbage() {
        assert!(parse("not a lockfile", "yarn.lock").is_err());
        for t in [
            "@:\n  version",
            "\"\":\n",
            ":\n  version \"\"",
            "@@@:\n  version: x",
        ] {
            let _ = parse(t, "yarn.lock");
        }
    }
}
