//! The project file (`runner.yml` beside the sources): project-level settings a CodeBuild
//! user would otherwise set on the CodeBuild project (image, privileged mode, timeout,
//! environment variables). Command-line flags win over it.
//!
//! ```yaml
//! name: sample-app
//! build:
//!   buildspec: buildspec.yml
//!   image: runner/debian:bookworm
//!   privileged: false
//!   timeout-minutes: 30
//!   source-mode: copy        # mount (default) | copy
//!   variables:               # between the buildspec's env.variables and --env
//!     STAGE: test
//! ```
//!
//! Parsing is pure (text → config + diagnostics); unknown top-level sections are warnings,
//! so files written for newer versions of runner still load.

use crate::buildspec::yaml::{self, Node};
use crate::buildspec::{Diagnostic, Severity};
use crate::plan::SourceMode;

/// The file name looked for in the source directory.
pub const PROJECT_FILE: &str = "runner.yml";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectConfig {
    pub name: Option<String>,
    pub buildspec: Option<String>,
    pub image: Option<String>,
    pub privileged: Option<bool>,
    pub timeout_minutes: Option<f64>,
    pub source_mode: Option<SourceMode>,
    pub variables: Vec<(String, String)>,
}

const TOP_KEYS: &[&str] = &["name", "build"];
const BUILD_KEYS: &[&str] = &[
    "buildspec",
    "image",
    "privileged",
    "timeout-minutes",
    "source-mode",
    "variables",
];

/// Reads a project file. `None` when there are errors (all of them are in the list).
pub fn parse_project(text: &str) -> (Option<ProjectConfig>, Vec<Diagnostic>) {
    let loaded = yaml::load(text);
    let mut diags = loaded.diagnostics;
    let mut cfg = ProjectConfig::default();
    match &loaded.root {
        None => {}
        Some(Node::Map { entries, .. }) => {
            for (k, v) in entries {
                match k.as_str() {
                    Some("name") => cfg.name = string(v, "name", &mut diags),
                    Some("build") => build_section(v, &mut cfg, &mut diags),
                    Some(other) => unknown(k, other, "", TOP_KEYS, &mut diags),
                    None => diags.push(Diagnostic::error(k.pos(), "keys must be strings")),
                }
            }
        }
        Some(other) => diags.push(Diagnostic::error(
            other.pos(),
            format!("the project file must be a mapping, found {}", other.kind()),
        )),
    }
    let ok = !diags.iter().any(|d| d.severity == Severity::Error);
    (ok.then_some(cfg), diags)
}

fn build_section(node: &Node, cfg: &mut ProjectConfig, diags: &mut Vec<Diagnostic>) {
    let Node::Map { entries, .. } = node else {
        if !node.is_null() {
            diags.push(Diagnostic::error(
                node.pos(),
                format!("build must be a mapping, found {}", node.kind()),
            ));
        }
        return;
    };
    for (k, v) in entries {
        let Some(key) = k.as_str() else {
            diags.push(Diagnostic::error(k.pos(), "keys must be strings"));
            continue;
        };
        let path = format!("build.{key}");
        match key {
            "buildspec" => cfg.buildspec = string(v, &path, diags),
            "image" => cfg.image = string(v, &path, diags),
            "privileged" => {
                cfg.privileged = string(v, &path, diags).and_then(|s| match boolean(&s) {
                    Some(b) => Some(b),
                    None => {
                        diags.push(Diagnostic::error(
                            v.pos(),
                            format!("{path} must be true or false, found {s:?}"),
                        ));
                        None
                    }
                })
            }
            "timeout-minutes" => {
                cfg.timeout_minutes =
                    string(v, &path, diags).and_then(|s| match s.parse::<f64>() {
                        Ok(m) if m > 0.0 && m <= 2160.0 => Some(m),
                        _ => {
                            diags.push(Diagnostic::error(
                                v.pos(),
                                format!("{path} must be a number of minutes from 1 to 2160 (CodeBuild's limit), found {s:?}"),
                            ));
                            None
                        }
                    })
            }
            "source-mode" => {
                cfg.source_mode = string(v, &path, diags).and_then(|s| match s.as_str() {
                    "mount" => Some(SourceMode::Mount),
                    "copy" => Some(SourceMode::Copy),
                    _ => {
                        diags.push(Diagnostic::error(
                            v.pos(),
                            format!("{path} must be mount or copy, found {s:?}"),
                        ));
                        None
                    }
                })
            }
            "variables" => match v {
                Node::Map { entries, .. } => {
                    for (name, value) in entries {
                        let (Some(n), Some(val)) = (name.as_str(), value.as_str()) else {
                            diags.push(Diagnostic::error(
                                name.pos(),
                                "build.variables entries must be NAME: value",
                            ));
                            continue;
                        };
                        if crate::plan::parse_env_assignment("runner.yml", &format!("{n}=")).is_err() {
                            diags.push(Diagnostic::error(
                                name.pos(),
                                format!("build.variables: {n:?} is not a usable variable name (CODEBUILD_* are reserved)"),
                            ));
                            continue;
                        }
                        cfg.variables.push((n.to_string(), val.to_string()));
                    }
                }
                Node::Null { .. } => {}
                other => diags.push(Diagnostic::error(
                    other.pos(),
                    format!("build.variables must be a mapping, found {}", other.kind()),
                )),
            },
            other => unknown(k, other, "build.", BUILD_KEYS, diags),
        }
    }
}

fn string(node: &Node, path: &str, diags: &mut Vec<Diagnostic>) -> Option<String> {
    match node {
        Node::Scalar { text, .. } => Some(text.clone()),
        Node::Null { .. } => None,
        other => {
            diags.push(Diagnostic::error(
                other.pos(),
                format!("{path} must be a string, found {}", other.kind()),
            ));
            None
        }
    }
}

fn boolean(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => Some(true),
        "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn unknown(key: &Node, name: &str, prefix: &str, known: &[&str], diags: &mut Vec<Diagnostic>) {
    let best = known
        .iter()
        .map(|k| (strsim::jaro_winkler(k, name), *k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let mut d = Diagnostic::warning(
        key.pos(),
        format!("unknown key \"{prefix}{name}\" (this version of runner ignores it)"),
    );
    if let Some((_, k)) = best {
        d = d.with_hint(format!("did you mean \"{prefix}{k}\"?"));
    }
    diags.push(d);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buildspec::render;

    fn rendered(text: &str) -> Vec<String> {
        parse_project(text)
            .1
            .iter()
            .map(|d| render("runner.yml", d))
            .collect()
    }

    #[test]
    fn reads_every_key() {
        let (cfg, diags) = parse_project(
            "name: demo\nbuild:\n  buildspec: ci/bs.yml\n  image: img:1\n  privileged: yes\n  timeout-minutes: 15\n  source-mode: copy\n  variables:\n    A: 1\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(
            cfg,
            Some(ProjectConfig {
                name: Some("demo".into()),
                buildspec: Some("ci/bs.yml".into()),
                image: Some("img:1".into()),
                privileged: Some(true),
                timeout_minutes: Some(15.0),
                source_mode: Some(SourceMode::Copy),
                variables: vec![("A".into(), "1".into())],
            })
        );
    }

    #[test]
    fn errors_are_located_and_unknown_keys_warn() {
        assert_eq!(
            rendered("build:\n  imgae: x\n  timeout-minutes: forever\n  variables:\n    CODEBUILD_X: 1\nscan: {}\n"),
            vec![
                "runner.yml:2:3: warning: unknown key \"build.imgae\" (this version of runner ignores it)\n  = help: did you mean \"build.image\"?",
                "runner.yml:3:20: error: build.timeout-minutes must be a number of minutes from 1 to 2160 (CodeBuild's limit), found \"forever\"",
                "runner.yml:5:5: error: build.variables: \"CODEBUILD_X\" is not a usable variable name (CODEBUILD_* are reserved)",
                "runner.yml:6:1: warning: unknown key \"scan\" (this version of runner ignores it)",
            ]
        );
        assert!(parse_project("- a\n").0.is_none());
        assert!(parse_project("").0.is_some());
    }
}
