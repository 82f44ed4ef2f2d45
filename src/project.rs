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
//!   build-role: arn:aws:iam::123456789012:role/build   # with --build-credentials runner
//!   variables:               # between the buildspec's env.variables and --env
//!     STAGE: test
//! image:                   # after the phases succeed: build, push, sign (see README)
//!   repository: 123456789012.dkr.ecr.us-east-1.amazonaws.com/sample-app
//!   dockerfile: Dockerfile   # relative to context
//!   context: .
//!   tags: ["{short-revision}", latest]
//!   build-args: {PYTHON_VERSION: "3.11"}
//!   target: runtime
//!   create-repository: true
//!   cache-from: [123456789012.dkr.ecr.us-east-1.amazonaws.com/sample-app:latest]
//! sign:
//!   key: keys/cosign.key     # password from COSIGN_PASSWORD
//!   attest: [provenance, sbom]
//!   format: sig              # or bundle: a Sigstore bundle as an OCI referrer (cosign 3)
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
    /// `docker: gate | privileged | none` (see `docker::gate::DockerMode`).
    pub docker: Option<crate::docker::gate::DockerMode>,
    pub timeout_minutes: Option<f64>,
    pub source_mode: Option<SourceMode>,
    pub variables: Vec<(String, String)>,
    /// `build.build-role`: the role whose credentials the build is served (assumed
    /// through STS), when runner serves credentials (`--build-credentials runner`).
    pub build_role: Option<String>,
    /// The `image:` section.
    pub publish: Option<ImageConfig>,
    pub sign: Option<SignConfig>,
    pub scan: Option<ScanConfig>,
    /// `gitops:`: one target or a list.
    pub gitops: Vec<GitopsTarget>,
}

/// `scan:`: scans that gate the build (see scanners/policy.yml).
#[derive(Debug, Clone, PartialEq)]
pub struct ScanConfig {
    /// Secrets in the source, before the phases run.
    pub secrets: bool,
    /// Lockfiles in the source, before the phases run.
    pub deps: bool,
    /// The built image (packages and secrets in its layers), before it is pushed.
    pub image: bool,
    /// A policy file (relative to the source); default: the built-in scanners/policy.yml.
    pub policy: Option<String>,
    /// OSV dumps (`<ecosystem>/all.zip`); default: RUNNER_ADVISORIES, else
    /// `<data dir>/advisories` (`runner db update` fills it).
    pub advisories: Option<String>,
}

impl Default for ScanConfig {
    fn default() -> Self {
        Self {
            secrets: true,
            deps: true,
            image: true,
            policy: None,
            advisories: None,
        }
    }
}

/// One `gitops:` target.
#[derive(Debug, Clone, PartialEq)]
pub struct GitopsTarget {
    pub config: crate::gitops::GitopsConfig,
    /// Refuse to open the pull request for a digest without a valid signature by the
    /// project's key (default: true when `sign:` is set).
    pub require_signature: Option<bool>,
}

/// `image:`: the container image built after the phases succeed, and where it goes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageConfig {
    /// REGISTRY/REPOSITORY, without tag.
    pub repository: String,
    pub dockerfile: String,
    pub context: String,
    /// Tags, with `{revision}`, `{short-revision}`, `{branch}`, `{build-number}`
    /// placeholders. Default: `{short-revision}` (or `build-{build-number}` without git).
    pub tags: Vec<String>,
    pub build_args: Vec<(String, String)>,
    pub target: Option<String>,
    pub create_repository: bool,
    pub cache_from: Vec<String>,
}

/// `sign:`: how pushed images are signed and attested.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SignConfig {
    /// A cosign.key; its password comes from COSIGN_PASSWORD.
    pub key: String,
    /// `provenance` (SLSA v1) and/or `sbom` (CycloneDX 1.5).
    pub attest: Vec<String>,
    /// `format: sig` (default, a `.sig` tag) or `bundle` (a Sigstore bundle attached as
    /// an OCI referrer, as cosign 3 signs).
    pub format: crate::sign::bundle::SignatureFormat,
}

const TOP_KEYS: &[&str] = &["name", "build", "image", "sign", "scan", "gitops"];
const SCAN_KEYS: &[&str] = &["secrets", "deps", "image", "policy", "advisories"];
const IMAGE_KEYS: &[&str] = &[
    "repository",
    "dockerfile",
    "context",
    "tags",
    "build-args",
    "target",
    "create-repository",
    "cache-from",
];
const SIGN_KEYS: &[&str] = &["key", "attest", "format"];
/// The keys of a `gitops:` entry: [`crate::gitops::GitopsConfig`]'s, and `require-signature`.
const GITOPS_KEYS: &[&str] = &[
    "repo",
    "base",
    "files",
    "branch",
    "forge",
    "forge-url",
    "token-env",
    "helm-keys",
    "author-name",
    "author-email",
    "commit-message",
    "pr-title",
    "labels",
    "force-push",
    "max-push-attempts",
    "require-signature",
];
const BUILD_KEYS: &[&str] = &[
    "buildspec",
    "image",
    "privileged",
    "docker",
    "timeout-minutes",
    "source-mode",
    "variables",
    "build-role",
];

/// A value that runner.yml and the command line share, refused the same way in both.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BadValue {
    #[error("must be a number of minutes above 0 and at most 2160 (CodeBuild's limit), e.g. 30 or 0.5; found {0:?}")]
    Timeout(String),
    #[error("`{value}`: port `{port}` is not a TCP port (1 to 65535)")]
    Port { value: String, port: String },
}

/// Longest build timeout, in minutes (CodeBuild's).
pub const MAX_TIMEOUT_MINUTES: f64 = 2160.0;

/// A build timeout in minutes: a finite number above 0 and at most 2160.
pub fn timeout_minutes(s: &str) -> Result<f64, BadValue> {
    match s.trim().parse::<f64>() {
        Ok(m) if m.is_finite() && m > 0.0 && m <= MAX_TIMEOUT_MINUTES => Ok(m),
        _ => Err(BadValue::Timeout(s.to_string())),
    }
}

/// An image reference whose registry port, if it has one, is a TCP port. (Its other rules
/// are [`crate::publish::ImageRef::parse`]'s.)
pub fn registry_port(reference: &str) -> Result<(), BadValue> {
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            host_port(first).map_err(|e| match e {
                BadValue::Port { port, .. } => BadValue::Port {
                    value: reference.to_string(),
                    port,
                },
                other => other,
            })
        }
        _ => Ok(()),
    }
}

/// `HOST[:PORT]` (`[v6]:PORT` too) whose port, if it has one, is a TCP port.
pub fn host_port(host: &str) -> Result<(), BadValue> {
    let port = match host.strip_prefix('[') {
        Some(v6) => v6.split_once("]:").map(|(_, p)| p),
        None => host.rsplit_once(':').map(|(_, p)| p),
    };
    match port {
        None => Ok(()),
        Some(p)
            if p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n > 0) =>
        {
            Ok(())
        }
        Some(p) => Err(BadValue::Port {
            value: host.to_string(),
            port: p.to_string(),
        }),
    }
}

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
                    Some("image") => cfg.publish = image_section(v, &mut diags),
                    Some("sign") => cfg.sign = sign_section(v, &mut diags),
                    Some("scan") => cfg.scan = scan_section(v, &mut diags),
                    Some("gitops") => cfg.gitops = gitops_section(v, &mut diags),
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
            "build-role" => cfg.build_role = string(v, &path, diags),
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
            "docker" => {
                cfg.docker = string(v, &path, diags).and_then(|s| {
                    let m = crate::docker::gate::DockerMode::parse(&s);
                    if m.is_none() {
                        diags.push(Diagnostic::error(
                            v.pos(),
                            format!("{path} must be gate, privileged or none, found {s:?}"),
                        ));
                    }
                    m
                })
            }
            "timeout-minutes" => {
                cfg.timeout_minutes =
                    string(v, &path, diags).and_then(|s| match timeout_minutes(&s) {
                        Ok(m) => Some(m),
                        Err(e) => {
                            diags.push(Diagnostic::error(v.pos(), format!("{path} {e}")));
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
                        if crate::plan::parse_env_assignment("runner.yml", &format!("{n}="))
                            .is_err()
                        {
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

fn mapping<'a>(
    node: &'a Node,
    path: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<&'a [(Node, Node)]> {
    match node {
        Node::Map { entries, .. } => Some(entries),
        Node::Null { .. } => None,
        other => {
            diags.push(Diagnostic::error(
                other.pos(),
                format!("{path} must be a mapping, found {}", other.kind()),
            ));
            None
        }
    }
}

/// A list of strings; a single string is a list of one.
fn string_list(node: &Node, path: &str, diags: &mut Vec<Diagnostic>) -> Vec<String> {
    match node {
        Node::Seq { items, .. } => items
            .iter()
            .filter_map(|i| string(i, path, diags))
            .collect(),
        other => string(other, path, diags).into_iter().collect(),
    }
}

fn bool_value(node: &Node, path: &str, diags: &mut Vec<Diagnostic>) -> Option<bool> {
    string(node, path, diags).and_then(|s| match boolean(&s) {
        Some(b) => Some(b),
        None => {
            diags.push(Diagnostic::error(
                node.pos(),
                format!("{path} must be true or false, found {s:?}"),
            ));
            None
        }
    })
}

fn image_section(node: &Node, diags: &mut Vec<Diagnostic>) -> Option<ImageConfig> {
    let entries = mapping(node, "image", diags)?;
    let mut cfg = ImageConfig {
        dockerfile: "Dockerfile".into(),
        context: ".".into(),
        ..Default::default()
    };
    let mut repository = None;
    for (k, v) in entries {
        let Some(key) = k.as_str() else {
            diags.push(Diagnostic::error(k.pos(), "keys must be strings"));
            continue;
        };
        let path = format!("image.{key}");
        match key {
            "repository" => {
                if let Some(r) = string(v, &path, diags) {
                    let checked = crate::publish::ImageRef::parse(&r)
                        .map_err(|e| e.to_string())
                        .and_then(|p| {
                            registry_port(&r)
                                .map(|()| p)
                                .map_err(|e| format!("image.repository {e}"))
                        });
                    match checked {
                        Ok(parsed) if parsed.tag.is_none() && parsed.digest.is_none() => repository = Some(r),
                        Ok(_) => diags.push(Diagnostic::error(v.pos(), "image.repository is REGISTRY/REPOSITORY without a tag; put tags in image.tags")),
                        Err(e) => diags.push(Diagnostic::error(v.pos(), e)),
                    }
                }
            }
            "dockerfile" => cfg.dockerfile = string(v, &path, diags).unwrap_or(cfg.dockerfile),
            "context" => cfg.context = string(v, &path, diags).unwrap_or(cfg.context),
            "tags" => cfg.tags = string_list(v, &path, diags),
            "target" => cfg.target = string(v, &path, diags),
            "create-repository" => {
                cfg.create_repository = bool_value(v, &path, diags).unwrap_or(false)
            }
            "cache-from" => {
                cfg.cache_from = string_list(v, &path, diags);
                for r in &cfg.cache_from {
                    if let Err(e) = registry_port(r) {
                        diags.push(Diagnostic::error(v.pos(), format!("{path}: {e}")));
                    }
                }
            }
            "build-args" => {
                for (name, value) in mapping(v, &path, diags).unwrap_or_default() {
                    match (name.as_str(), string(value, &path, diags)) {
                        (Some(n), Some(val)) => cfg.build_args.push((n.to_string(), val)),
                        _ => diags.push(Diagnostic::error(
                            name.pos(),
                            "image.build-args entries must be NAME: value",
                        )),
                    }
                }
            }
            other => unknown(k, other, "image.", IMAGE_KEYS, diags),
        }
    }
    for p in [&cfg.dockerfile, &cfg.context] {
        if p.starts_with('/') || p.split('/').any(|c| c == "..") {
            diags.push(Diagnostic::error(
                node.pos(),
                format!("image: {p:?} must be a path inside the source directory"),
            ));
        }
    }
    match repository {
        Some(r) => {
            cfg.repository = r;
            Some(cfg)
        }
        None => {
            diags.push(Diagnostic::error(
                node.pos(),
                "image.repository is required (REGISTRY/REPOSITORY)",
            ));
            None
        }
    }
}

fn sign_section(node: &Node, diags: &mut Vec<Diagnostic>) -> Option<SignConfig> {
    let entries = mapping(node, "sign", diags)?;
    let mut cfg = SignConfig::default();
    for (k, v) in entries {
        let Some(key) = k.as_str() else {
            diags.push(Diagnostic::error(k.pos(), "keys must be strings"));
            continue;
        };
        let path = format!("sign.{key}");
        match key {
            "key" => cfg.key = string(v, &path, diags).unwrap_or_default(),
            "attest" => {
                for a in string_list(v, &path, diags) {
                    if a == "provenance" || a == "sbom" {
                        cfg.attest.push(a);
                    } else {
                        diags.push(Diagnostic::error(
                            v.pos(),
                            format!("sign.attest: {a:?} is not provenance or sbom"),
                        ));
                    }
                }
            }
            "format" => {
                let f = string(v, &path, diags).unwrap_or_default();
                match crate::sign::bundle::SignatureFormat::parse(&f) {
                    Some(f) => cfg.format = f,
                    None => diags.push(Diagnostic::error(
                        v.pos(),
                        format!("sign.format: {f:?} is not sig or bundle"),
                    )),
                }
            }
            other => unknown(k, other, "sign.", SIGN_KEYS, diags),
        }
    }
    if cfg.key.is_empty() {
        diags.push(Diagnostic::error(
            node.pos(),
            "sign.key is required (a cosign.key; `runner key generate` writes one)",
        ));
        return None;
    }
    Some(cfg)
}

fn scan_section(node: &Node, diags: &mut Vec<Diagnostic>) -> Option<ScanConfig> {
    let mut cfg = ScanConfig::default();
    if node.is_null() {
        return Some(cfg);
    }
    let entries = mapping(node, "scan", diags)?;
    for (k, v) in entries {
        let Some(key) = k.as_str() else {
            diags.push(Diagnostic::error(k.pos(), "keys must be strings"));
            continue;
        };
        let path = format!("scan.{key}");
        match key {
            "secrets" => cfg.secrets = bool_value(v, &path, diags).unwrap_or(true),
            "deps" => cfg.deps = bool_value(v, &path, diags).unwrap_or(true),
            "image" => cfg.image = bool_value(v, &path, diags).unwrap_or(true),
            "policy" => cfg.policy = string(v, &path, diags),
            "advisories" => cfg.advisories = string(v, &path, diags),
            other => unknown(k, other, "scan.", SCAN_KEYS, diags),
        }
    }
    Some(cfg)
}

/// A node as JSON, for sections read with serde: plain `true`/`false` and numbers
/// become JSON booleans and numbers, everything else strings.
fn node_json(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match node {
        Node::Scalar { text, .. } => match text.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            t => t
                .parse::<u64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(t.to_string())),
        },
        Node::Null { .. } => Value::Null,
        Node::Seq { items, .. } => Value::Array(items.iter().map(node_json).collect()),
        Node::Map { entries, .. } => Value::Object(
            entries
                .iter()
                .filter_map(|(k, v)| k.as_str().map(|k| (k.to_string(), node_json(v))))
                .collect(),
        ),
    }
}

fn gitops_section(node: &Node, diags: &mut Vec<Diagnostic>) -> Vec<GitopsTarget> {
    let items: Vec<&Node> = match node {
        Node::Seq { items, .. } => items.iter().collect(),
        Node::Null { .. } => Vec::new(),
        other => vec![other],
    };
    let mut out = Vec::new();
    for item in items {
        let serde_json::Value::Object(mut obj) = node_json(item) else {
            diags.push(Diagnostic::error(
                item.pos(),
                "gitops entries are mappings with at least `repo`",
            ));
            continue;
        };
        // Unknown keys warn, like in every other section (the config itself refuses them).
        if let Node::Map { entries, .. } = item {
            for (k, _) in entries {
                if let Some(name) = k.as_str().filter(|n| !GITOPS_KEYS.contains(n)) {
                    unknown(k, name, "gitops.", GITOPS_KEYS, diags);
                    obj.remove(name);
                }
            }
        }
        let require_signature = match obj.remove("require-signature") {
            None => None,
            Some(serde_json::Value::Bool(b)) => Some(b),
            Some(_) => {
                diags.push(Diagnostic::error(
                    item.pos(),
                    "gitops.require-signature must be true or false",
                ));
                None
            }
        };
        match serde_json::from_value::<crate::gitops::GitopsConfig>(serde_json::Value::Object(obj))
        {
            Ok(config) => out.push(GitopsTarget {
                config,
                require_signature,
            }),
            Err(e) => diags.push(Diagnostic::error(item.pos(), format!("gitops: {e}"))),
        }
    }
    out
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
    #![allow(clippy::unwrap_used, clippy::expect_used)]
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
    fn shared_values_are_checked() {
        for ok in ["30", "0.05", "2160", " 15 "] {
            assert!(timeout_minutes(ok).is_ok(), "{ok}");
        }
        for bad in [
            "0", "-1", "nan", "NaN", "inf", "-inf", "1e30", "2160.5", "", "soon",
        ] {
            assert_eq!(
                timeout_minutes(bad),
                Err(BadValue::Timeout(bad.into())),
                "{bad}"
            );
        }
        for ok in [
            "app:1",
            "team/app",
            "127.0.0.1:5000/app",
            "[::1]:5000/a",
            "localhost/a",
            "ghcr.io/a/b:1",
        ] {
            assert_eq!(registry_port(ok), Ok(()), "{ok}");
        }
        for (bad, port) in [
            ("127.0.0.1:99999/app", "99999"),
            ("localhost:0/a", "0"),
            ("h.io:+80/a", "+80"),
            ("[::1]:70000/a", "70000"),
            ("h.io:/a", ""),
        ] {
            assert_eq!(
                registry_port(bad),
                Err(BadValue::Port {
                    value: bad.into(),
                    port: port.into()
                }),
                "{bad}"
            );
        }
        assert_eq!(
            rendered("image:\n  repository: 127.0.0.1:99999/app\n"),
            [
                "runner.yml:2:15: error: image.repository `127.0.0.1:99999/app`: port `99999` is not a TCP port (1 to 65535)",
                "runner.yml:2:3: error: image.repository is required (REGISTRY/REPOSITORY)"
            ]
        );
        assert_eq!(
            rendered("build:\n  timeout-minutes: .inf\n"),
            ["runner.yml:2:20: error: build.timeout-minutes must be a number of minutes above 0 and at most 2160 (CodeBuild's limit), e.g. 30 or 0.5; found \".inf\""]
        );
    }

    #[test]
    fn gitops_keys_are_the_configs() {
        let value = serde_json::to_value(crate::gitops::GitopsConfig::new("x")).unwrap();
        let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        keys.push("require-signature".into());
        keys.sort();
        let mut known: Vec<String> = GITOPS_KEYS.iter().map(|k| k.to_string()).collect();
        known.sort();
        assert_eq!(keys, known);
    }

    #[test]
    fn reads_every_key() {
        let (cfg, diags) = parse_project(
            "name: demo\nbuild:\n  buildspec: ci/bs.yml\n  image: img:1\n  privileged: yes\n  timeout-minutes: 15\n  source-mode: copy\n  build-role: arn:aws:iam::1:role/b\n  variables:\n    A: 1\n",
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
                build_role: Some("arn:aws:iam::1:role/b".into()),
                ..Default::default()
            })
        );
    }

    #[test]
    fn errors_are_located_and_unknown_keys_warn() {
        assert_eq!(
            rendered("build:\n  imgae: x\n  timeout-minutes: forever\n  variables:\n    CODEBUILD_X: 1\nzzz: {}\n"),
            vec![
                "runner.yml:2:3: warning: unknown key \"build.imgae\" (this version of runner ignores it)\n  = help: did you mean \"build.image\"?",
                "runner.yml:3:20: error: build.timeout-minutes must be a number of minutes above 0 and at most 2160 (CodeBuild's limit), e.g. 30 or 0.5; found \"forever\"",
                "runner.yml:5:5: error: build.variables: \"CODEBUILD_X\" is not a usable variable name (CODEBUILD_* are reserved)",
                "runner.yml:6:1: warning: unknown key \"zzz\" (this version of runner ignores it)",
            ]
        );
        assert!(parse_project("- a\n").0.is_none());
        let (cfg, diags) = parse_project("image:\n  repository: 127.0.0.1:5000/app\n  tags: [latest, \"{short-revision}\"]\n  build-args: {A: b}\nsign:\n  key: k/cosign.key\n  attest: [provenance, sbom]\n");
        assert!(diags.is_empty(), "{diags:?}");
        let cfg = cfg.unwrap();
        let image = cfg.publish.unwrap();
        assert_eq!(image.tags, ["latest", "{short-revision}"]);
        assert_eq!(image.dockerfile, "Dockerfile");
        assert_eq!(image.build_args, [("A".to_string(), "b".to_string())]);
        let sign = cfg.sign.unwrap();
        assert_eq!(sign.attest, ["provenance", "sbom"]);
        assert_eq!(sign.format, crate::sign::bundle::SignatureFormat::Sig);
        let (cfg, diags) = parse_project("sign:\n  key: k\n  format: bundle\n");
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(
            cfg.unwrap().sign.unwrap().format,
            crate::sign::bundle::SignatureFormat::Bundle
        );
        let (_, diags) = parse_project("sign:\n  key: k\n  format: sigstore\n");
        assert!(
            diags
                .iter()
                .any(|d| d.message.contains("not sig or bundle")),
            "{diags:?}"
        );
        let (cfg, diags) = parse_project("gitops:\n  repo: https://example.com/deploy.git\n  files: [k8s/kustomization.yaml]\n  force-push: true\n  require-signature: false\nscan:\n  deps: false\n");
        assert!(diags.is_empty(), "{diags:?}");
        let cfg = cfg.unwrap();
        assert_eq!(cfg.gitops.len(), 1);
        assert!(cfg.gitops[0].config.force_push);
        assert_eq!(cfg.gitops[0].require_signature, Some(false));
        assert!(!cfg.scan.unwrap().deps);
        assert_eq!(
            rendered("gitops:\n  - repo: x\n    colour: blue\n    force-pushh: true\n"),
            vec![
                "runner.yml:3:5: warning: unknown key \"gitops.colour\" (this version of runner ignores it)",
                "runner.yml:4:5: warning: unknown key \"gitops.force-pushh\" (this version of runner ignores it)\n  = help: did you mean \"gitops.force-push\"?",
            ]
        );
        let (cfg, _) = parse_project("gitops:\n  repo: x\n  colour: blue\n");
        assert_eq!(
            cfg.map(|c| c.gitops[0].config.repo.clone()).as_deref(),
            Some("x")
        );
        assert_eq!(
            rendered("image:\n  repository: 127.0.0.1:5000/app:v1\n  context: ../x\nsign: {}\n"),
            vec![
                "runner.yml:2:15: error: image.repository is REGISTRY/REPOSITORY without a tag; put tags in image.tags",
                "runner.yml:2:3: error: image: \"../x\" must be a path inside the source directory",
                "runner.yml:2:3: error: image.repository is required (REGISTRY/REPOSITORY)",
                "runner.yml:4:7: error: sign.key is required (a cosign.key; `runner key generate` writes one)",
            ]
        );
        assert!(parse_project("").0.is_some());
    }
}
