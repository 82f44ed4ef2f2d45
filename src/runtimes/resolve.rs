//! CodeBuild's rules for `runtime-versions`, applied to what an image declares.
//!
//! - `nodejs: 20`, `java: corretto17`, `python: 3.12`: that version, exactly as the
//!   image names it.
//! - `nodejs: 20.x`, `java: corretto17.x`, `golang: 1.x`: the highest version the image
//!   has whose name is the part before `.x` or starts with it followed by a dot.
//! - `nodejs: latest`: the highest version the image has.
//! - Several runtimes: each is selected, in the buildspec's order.
//! - A version the image lacks: the image's `default` entry installs it (CodeBuild's
//!   custom runtime versions, `$VERSION` set to it) when the image has one; otherwise
//!   `Unknown runtime version named '15' of nodejs. This build image has the following
//!   versions: 10, 12`. A runtime the image lacks: `Unknown runtime named 'dotnet'. This
//!   build image has the following runtimes: docker, golang, java, …`.
//! - A version that `requires:` another runtime gets the first version it names when the
//!   buildspec does not select that runtime; a buildspec selecting another version of it
//!   is an error.
//!
//! "Highest" compares names piece by piece: runs of digits as numbers, the rest as text,
//! so `3.10` > `3.9` and `corretto21` > `corretto8`.

use super::manifest::{Manifest, Runtime, RuntimeVersion};
use std::cmp::Ordering;

/// One runtime to select: the commands to run at the start of INSTALL.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub runtime: String,
    /// The version the image selects (its name in the runtimes file, or the exact
    /// version asked for when the image's `default` entry installs it).
    pub version: String,
    /// Why: `None` when the buildspec asked for it, `Some(runtime)` when a runtime it
    /// selected requires it.
    pub required_by: Option<String>,
    /// Installed through the image's `default` entry (a version it does not have).
    pub custom: bool,
    /// The shell commands that select the version, in order.
    pub commands: Vec<String>,
}

impl Selection {
    /// The line CodeBuild logs before running the selection's commands.
    pub fn announcement(&self) -> String {
        match &self.required_by {
            None => format!(
                "Selecting '{}' runtime version '{}' based on manual selections...",
                self.runtime, self.version
            ),
            Some(by) => format!(
                "Selecting '{}' runtime version '{}' required by '{by}'...",
                self.runtime, self.version
            ),
        }
    }
}

/// A `runtime-versions` entry the image cannot satisfy. The messages are CodeBuild's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "Unknown runtime named '{name}'. This build image has the following runtimes: {}",
        .available.join(", ")
    )]
    UnknownRuntime {
        name: String,
        available: Vec<String>,
    },
    #[error(
        "Unknown runtime version named '{version}' of {runtime}. This build image has the following versions: {}",
        .available.join(", ")
    )]
    UnknownVersion {
        runtime: String,
        version: String,
        available: Vec<String>,
    },
    #[error(
        "Runtime version '{version}' of {runtime} requires {needs} version {}, but the buildspec selects '{selected}'. Select one of those versions of {needs}, or remove {needs} from runtime-versions",
        .allowed.join(" or ")
    )]
    Conflict {
        runtime: String,
        version: String,
        needs: String,
        allowed: Vec<String>,
        selected: String,
    },
}

/// One piece of a version name, for ordering.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Piece<'a> {
    Text(&'a str),
    Num(u64),
}

fn pieces(name: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        let digits = c.is_ascii_digit();
        let end = rest
            .find(|ch: char| ch.is_ascii_digit() != digits || ch == '.')
            .unwrap_or(rest.len())
            .max(c.len_utf8());
        let (head, tail) = rest.split_at(end);
        if digits {
            out.push(Piece::Num(head.parse().unwrap_or(u64::MAX)));
        } else if head != "." {
            out.push(Piece::Text(head));
        }
        rest = tail;
    }
    out
}

/// Orders version names as CodeBuild's tables do (`3.9` < `3.10`, `corretto8` < `corretto11`).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    pieces(a).cmp(&pieces(b)).then_with(|| a.cmp(b))
}

fn sorted_names(runtime: &Runtime) -> Vec<String> {
    let mut names: Vec<String> = runtime.versions.iter().map(|v| v.name.clone()).collect();
    names.sort_by(|a, b| compare_versions(a, b));
    names
}

fn highest<'r>(candidates: impl Iterator<Item = &'r RuntimeVersion>) -> Option<&'r RuntimeVersion> {
    candidates.max_by(|a, b| compare_versions(&a.name, &b.name))
}

fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// The version of `runtime` that `asked` names, by CodeBuild's rules.
fn pick(runtime: &Runtime, asked: &str) -> Result<(String, bool, Vec<String>), ResolveError> {
    let asked = asked.trim();
    let found = if asked == "latest" {
        highest(runtime.versions.iter())
    } else if let Some(prefix) = asked
        .strip_suffix(".x")
        .or_else(|| asked.strip_suffix(".X"))
    {
        let dotted = format!("{prefix}.");
        highest(
            runtime
                .versions
                .iter()
                .filter(|v| v.name == prefix || v.name.starts_with(&dotted)),
        )
    } else {
        runtime.versions.iter().find(|v| v.name == asked)
    };
    if let Some(v) = found {
        return Ok((v.name.clone(), false, v.commands.clone()));
    }
    let exact = asked != "latest" && !asked.ends_with(".x") && !asked.ends_with(".X");
    match &runtime.default {
        // CodeBuild's custom runtime versions: the image installs the exact version.
        Some(d) if exact && !asked.is_empty() => {
            let mut commands = vec![format!("VERSION={}", quote(asked))];
            commands.extend(d.commands.iter().cloned());
            Ok((asked.to_string(), true, commands))
        }
        _ => Err(ResolveError::UnknownVersion {
            runtime: runtime.name.clone(),
            version: asked.to_string(),
            available: sorted_names(runtime),
        }),
    }
}

fn runtime<'m>(manifest: &'m Manifest, name: &str) -> Result<&'m Runtime, ResolveError> {
    manifest.runtime(name).ok_or_else(|| {
        let mut available: Vec<String> = manifest.runtimes.iter().map(|r| r.name.clone()).collect();
        available.sort();
        ResolveError::UnknownRuntime {
            name: name.to_string(),
            available,
        }
    })
}

/// Resolves a buildspec's `runtime-versions` (runtime → version, in the buildspec's
/// order) against an image's runtimes. Returns the selections in the order their
/// commands run: each runtime another one requires comes before the first that needs it.
pub fn resolve(
    manifest: &Manifest,
    requested: &[(String, String)],
) -> Result<Vec<Selection>, ResolveError> {
    let mut chosen = Vec::new();
    for (name, asked) in requested {
        let rt = runtime(manifest, name)?;
        let (version, custom, commands) = pick(rt, asked)?;
        chosen.push(Selection {
            runtime: name.clone(),
            version,
            required_by: None,
            custom,
            commands,
        });
    }
    let mut out: Vec<Selection> = Vec::new();
    for sel in &chosen {
        let requires = manifest
            .runtime(&sel.runtime)
            .and_then(|rt| rt.versions.iter().find(|v| v.name == sel.version))
            .map(|v| v.requires.clone())
            .unwrap_or_default();
        for (needs, allowed) in requires {
            if let Some(other) = chosen.iter().find(|s| s.runtime == needs) {
                if !allowed.is_empty() && !allowed.contains(&other.version) {
                    return Err(ResolveError::Conflict {
                        runtime: sel.runtime.clone(),
                        version: sel.version.clone(),
                        needs,
                        allowed,
                        selected: other.version.clone(),
                    });
                }
                continue;
            }
            if out.iter().any(|s| s.runtime == needs) {
                continue;
            }
            let rt = runtime(manifest, &needs)?;
            let first = allowed.first().map(String::as_str).unwrap_or("latest");
            let (version, custom, commands) = pick(rt, first)?;
            out.push(Selection {
                runtime: needs,
                version,
                required_by: Some(sel.runtime.clone()),
                custom,
                commands,
            });
        }
        out.push(sel.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtimes::manifest::parse;

    fn manifest() -> Manifest {
        parse(crate::runtimes::manifest::tests::CODEBUILD_EXCERPT).unwrap_or_else(|e| panic!("{e}"))
    }

    fn req(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn one(name: &str, asked: &str) -> Result<Selection, ResolveError> {
        let mut s = resolve(&manifest(), &req(&[(name, asked)]))?;
        Ok(s.remove(0))
    }

    fn version(name: &str, asked: &str) -> String {
        one(name, asked)
            .unwrap_or_else(|e| panic!("{name}: {asked}: {e}"))
            .version
    }

    #[test]
    fn exact_versions_select_themselves_with_their_commands() {
        let s = one("nodejs", "10").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.version, "10");
        assert_eq!(s.commands, ["n $NODE_10_VERSION"]);
        assert!(!s.custom);
        assert_eq!(
            s.announcement(),
            "Selecting 'nodejs' runtime version '10' based on manual selections..."
        );
        assert_eq!(version("java", "corretto17"), "corretto17");
        assert_eq!(version("python", "3.10"), "3.10");
        assert_eq!(version("python", "3.9"), "3.9");
    }

    #[test]
    fn major_only_picks_the_highest_minor_of_that_major() {
        assert_eq!(version("python", "3.x"), "3.12");
        assert_eq!(version("golang", "1.x"), "1.22");
        assert_eq!(version("nodejs", "12.x"), "12");
        assert_eq!(version("nodejs", "10.x"), "10");
        assert_eq!(version("java", "corretto8.x"), "corretto8");
        assert_eq!(version("java", "corretto17.x"), "corretto17");
        // `1.x` never matches `12` or `10`: the major is followed by a dot or nothing.
        let e = one("nodejs", "1.x")
            .err()
            .unwrap_or_else(|| panic!("1.x matched"));
        assert!(matches!(e, ResolveError::UnknownVersion { .. }), "{e}");
    }

    #[test]
    fn latest_is_the_highest_version_by_number_not_by_text() {
        assert_eq!(version("java", "latest"), "corretto21");
        assert_eq!(version("python", "latest"), "3.12");
        assert_eq!(version("nodejs", "latest"), "12");
        assert_eq!(version("golang", "latest"), "1.22");
        assert_eq!(compare_versions("3.9", "3.10"), Ordering::Less);
        assert_eq!(compare_versions("corretto8", "corretto11"), Ordering::Less);
        assert_eq!(compare_versions("1.22", "1.22"), Ordering::Equal);
    }

    #[test]
    fn several_runtimes_are_selected_in_the_buildspecs_order() {
        let s = resolve(
            &manifest(),
            &req(&[("python", "3.x"), ("nodejs", "10"), ("java", "latest")]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<_> = s
            .iter()
            .map(|s| format!("{}={}", s.runtime, s.version))
            .collect();
        assert_eq!(got, ["python=3.12", "nodejs=10", "java=corretto21"]);
    }

    #[test]
    fn an_unknown_runtime_lists_the_images_runtimes() {
        let e = one("dotnet", "6.0")
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert_eq!(
            e.to_string(),
            "Unknown runtime named 'dotnet'. This build image has the following runtimes: android, golang, java, nodejs, python"
        );
    }

    #[test]
    fn an_unknown_version_gives_codebuilds_message_with_the_versions_in_order() {
        let e = one("nodejs", "15")
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert_eq!(
            e.to_string(),
            "Unknown runtime version named '15' of nodejs. This build image has the following versions: 10, 12"
        );
        let e = one("python", "3.11")
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert_eq!(
            e.to_string(),
            "Unknown runtime version named '3.11' of python. This build image has the following versions: 3.9, 3.10, 3.12"
        );
        let e = one("python", "2.x")
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert!(e.to_string().contains("named '2.x' of python"), "{e}");
    }

    #[test]
    fn a_runtime_with_a_default_entry_installs_an_exact_version_it_lacks() {
        let s = one("golang", "1.19.1").unwrap_or_else(|e| panic!("{e}"));
        assert!(s.custom);
        assert_eq!(s.version, "1.19.1");
        assert_eq!(
            s.commands,
            [
                "VERSION='1.19.1'",
                "goenv install $VERSION && rm -rf /tmp/*",
                "goenv global $VERSION"
            ]
        );
        // …but `.x` and `latest` only ever pick what the image has.
        let e = one("golang", "2.x")
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert_eq!(
            e.to_string(),
            "Unknown runtime version named '2.x' of golang. This build image has the following versions: 1.20, 1.22"
        );
        // A quote in the version cannot break out of the assignment.
        let s = one("golang", "1'; rm -rf / #").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.commands[0], "VERSION='1'\\''; rm -rf / #'");
    }

    #[test]
    fn a_required_runtime_is_selected_first_or_checked() {
        let s = resolve(&manifest(), &req(&[("android", "28")])).unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<_> = s
            .iter()
            .map(|s| format!("{}={}", s.runtime, s.version))
            .collect();
        assert_eq!(got, ["java=corretto8", "android=28"]);
        assert_eq!(
            s[0].announcement(),
            "Selecting 'java' runtime version 'corretto8' required by 'android'..."
        );
        let ok = resolve(
            &manifest(),
            &req(&[("android", "28"), ("java", "corretto8")]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.len(), 2);
        let e = resolve(
            &manifest(),
            &req(&[("android", "28"), ("java", "corretto17")]),
        )
        .err()
        .unwrap_or_else(|| panic!("accepted"));
        assert!(matches!(e, ResolveError::Conflict { .. }), "{e}");
        assert!(
            e.to_string().contains("requires java version corretto8"),
            "{e}"
        );
    }

    #[test]
    fn odd_names_never_panic() {
        for name in [
            "",
            ".",
            "..x",
            ".x",
            "x",
            "é.x",
            "99999999999999999999999.1",
            "1..2",
        ] {
            let _ = resolve(&manifest(), &req(&[("python", name)]));
            let _ = compare_versions(name, "3.10");
        }
    }
}
