//! Alpine secdb YAML (`packages[].pkg.{name, secfixes: {version: [CVE...]}}`) converted
//! to OSV records: one record per (release, advisory id), id `ALPINE-<id>`, alias
//! `<id>`, ecosystem `Alpine:vX.Y`, range `ECOSYSTEM` introduced `0` fixed `<version>`.
//! A fix version of `0` means "never affected in this release" and is dropped.

use crate::buildspec::yaml::{self, Node};
use crate::scan::osv::error::OsvError;
use crate::scan::osv::record::{Affected, AffectedPackage, Event, Range, Vuln};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Parses secdb files (all of one release) into OSV records.
pub fn load_files(files: &[PathBuf]) -> Result<Vec<Vuln>, OsvError> {
    // (ecosystem, id) -> affected entries
    let mut by_id: BTreeMap<(String, String), Vec<Affected>> = BTreeMap::new();
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|e| OsvError::io(path, e))?;
        parse_into(path, &text, &mut by_id)?;
    }
    Ok(by_id
        .into_iter()
        .map(|((eco, id), affected)| {
            let first = affected
                .first()
                .map(|a| a.package.name.clone())
                .unwrap_or_default();
            Vuln {
                id: format!("ALPINE-{id}"),
                aliases: vec![id.clone()],
                summary: format!("{id} in {first} ({eco})"),
                affected,
                ..Default::default()
            }
        })
        .collect())
}

type ById = BTreeMap<(String, String), Vec<Affected>>;

fn parse_into(path: &Path, text: &str, out: &mut ById) -> Result<(), OsvError> {
    let err = |message: String| OsvError::Secdb {
        path: path.to_path_buf(),
        message,
    };
    // The one YAML reader, with its limits (size, depth, alias bombs).
    let loaded = yaml::load(text);
    if let Some(d) = loaded.diagnostics.iter().find(|d| d.is_error()) {
        return Err(err(format!("line {}: {}", d.line, d.message)));
    }
    let doc = loaded.root.ok_or_else(|| err("empty document".into()))?;
    let release = doc
        .get("distroversion")
        .and_then(Node::as_str)
        .map(str::to_string)
        .or_else(|| {
            path.parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str())
                .map(str::to_string)
        })
        .ok_or_else(|| err("no distroversion".into()))?;
    let ecosystem = format!("Alpine:{release}");
    let packages = match doc.get("packages") {
        Some(Node::Seq { items, .. }) => items.as_slice(),
        // `packages:` with nothing under it: a release with no fixes in this repo.
        Some(Node::Null { .. }) | None => &[],
        _ => return Err(err("`packages` is not a list".into())),
    };
    for entry in packages {
        let Some(pkg) = entry.get("pkg") else {
            continue;
        };
        let Some(name) = pkg.get("name").and_then(Node::as_str) else {
            continue;
        };
        let Some(Node::Map {
            entries: secfixes, ..
        }) = pkg.get("secfixes")
        else {
            continue;
        };
        for (version, ids) in secfixes {
            let Some(version) = version.as_str().map(str::to_string) else {
                continue;
            };
            if version == "0" {
                continue;
            }
            let Node::Seq { items: ids, .. } = ids else {
                continue;
            };
            for id_item in ids {
                let Some(line) = id_item.as_str() else {
                    continue;
                };
                for id in line.split_whitespace().filter(|s| !s.starts_with('#')) {
                    let affected = Affected {
                        package: AffectedPackage {
                            ecosystem: ecosystem.clone(),
                            name: name.to_string(),
                            purl: None,
                        },
                        ranges: vec![Range {
                            kind: "ECOSYSTEM".into(),
                            events: vec![
                                Event {
                                    introduced: Some("0".into()),
                                    ..Default::default()
                                },
                                Event {
                                    fixed: Some(version.clone()),
                                    ..Default::default()
                                },
                            ],
                        }],
                        ..Default::default()
                    };
                    out.entry((ecosystem.clone(), id.to_string()))
                        .or_default()
                        .push(affected);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn converts_secfixes() {
        let text = "distroversion: v3.11\npackages:\n  - pkg:\n      name: curl\n      secfixes:\n        7.66.0-r0:\n          - CVE-2019-5481 CVE-2019-5482\n        0:\n          - CVE-2000-0001\n";
        let mut out = ById::new();
        assert!(parse_into(Path::new("x.yaml"), text, &mut out).is_ok());
        assert_eq!(out.len(), 2);
        let key = ("Alpine:v3.11".to_string(), "CVE-2019-5481".to_string());
        let a = &out[&key][0];
        assert_eq!(a.package.name, "curl");
        assert_eq!(a.ranges[0].events[1].fixed.as_deref(), Some("7.66.0-r0"));
    }

    #[test]
    fn empty_packages_is_fine() {
        let mut out = ById::new();
        assert!(parse_into(
            Path::new("x.yaml"),
            "distroversion: v3.3\npackages:\n",
            &mut out
        )
        .is_ok());
        assert!(out.is_empty());
        assert!(parse_into(
            Path::new("x.yaml"),
            "distroversion: v3.3\npackages: 3\n",
            &mut out
        )
        .is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in [
            "",
            "[",
            "packages: 3",
            "- a\n- b",
            "distroversion: v3.1\npackages:\n  - 1\n  - pkg: x",
        ] {
            let mut out = ById::new();
            let _ = parse_into(Path::new("x.yaml"), text, &mut out);
        }
    }
}
