//! Marked YAML tree → typed [`BuildSpec`] plus diagnostics.
//!
//! Follows the AWS CodeBuild buildspec reference (versions 0.1 and 0.2). Every problem is
//! reported (not just the first) at the line:col of the offending node; unknown keys are
//! warnings (CodeBuild ignores them) with a did-you-mean suggestion.

pub use super::diagnostic::has_errors;
use std::collections::{HashMap, HashSet};

use super::diagnostic::Diagnostic;
use super::model::{
    ArtifactSpec, Artifacts, Batch, BatchEnv, BatchTask, BuildMatrix, BuildSpec, Cache, Command,
    Env, EnvVar, OnFailure, Phase, Phases, Pos, Proxy, ReportGroup, Version,
};
use super::yaml::{self, Node};

/// The result of [`parse`]: `spec` is `Some` exactly when `diagnostics` has no error.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub spec: Option<BuildSpec>,
    /// Sorted by position.
    pub diagnostics: Vec<Diagnostic>,
}

const TOP_KEYS: &[&str] = &[
    "version",
    "run-as",
    "env",
    "proxy",
    "batch",
    "phases",
    "reports",
    "artifacts",
    "cache",
];
const ENV_KEYS: &[&str] = &[
    "shell",
    "variables",
    "parameter-store",
    "exported-variables",
    "secrets-manager",
    "git-credential-helper",
];
const PHASE_NAMES: &[&str] = &["install", "pre_build", "build", "post_build"];
const PHASE_KEYS: &[&str] = &[
    "run-as",
    "on-failure",
    "runtime-versions",
    "commands",
    "finally",
];
const PROXY_KEYS: &[&str] = &["upload-artifacts", "logs"];
const BATCH_KINDS: &[&str] = &["build-list", "build-graph", "build-matrix", "build-fanout"];
const BATCH_KEYS: &[&str] = &[
    "fast-fail",
    "build-list",
    "build-graph",
    "build-matrix",
    "build-fanout",
];
const TASK_KEYS: &[&str] = &[
    "identifier",
    "buildspec",
    "env",
    "ignore-failure",
    "depend-on",
    "debug-session",
];
const TASK_ENV_KEYS: &[&str] = &[
    "image",
    "compute-type",
    "type",
    "privileged-mode",
    "variables",
    "fleet",
];
const MATRIX_KEYS: &[&str] = &["static", "dynamic"];
const MATRIX_STATIC_KEYS: &[&str] = &["ignore-failure", "env"];
const MATRIX_DYNAMIC_KEYS: &[&str] = &["buildspec", "env"];
const MATRIX_DYNAMIC_ENV_KEYS: &[&str] = &["image", "compute-type", "variables"];
const FANOUT_KEYS: &[&str] = &["parallelism", "ignore-failure"];
const REPORT_KEYS: &[&str] = &["files", "base-directory", "discard-paths", "file-format"];
const FILE_FORMATS: &[&str] = &[
    "JUNITXML",
    "CUCUMBERJSON",
    "TESTNGXML",
    "VISUALSTUDIOTRX",
    "NUNITXML",
    "NUNIT3XML",
    "CLOVERXML",
    "COBERTURAXML",
    "JACOCOXML",
    "SIMPLECOV",
];
const ARTIFACT_KEYS: &[&str] = &[
    "files",
    "name",
    "discard-paths",
    "base-directory",
    "exclude-paths",
    "enable-symlinks",
    "s3-prefix",
    "secondary-artifacts",
];
const CACHE_KEYS: &[&str] = &["paths", "key", "fallback-keys", "action"];
const ON_FAILURE_CHOICES: &str =
    "ABORT, CONTINUE, RETRY, RETRY-<count>, RETRY-<regex> or RETRY-<count>-<regex>";
const BOOL_HINT: &str = "CodeBuild accepts yes/no, true/false or on/off";

/// Parses a buildspec. Never panics; every problem is a diagnostic.
pub fn parse(text: &str) -> Parsed {
    let loaded = yaml::load(text);
    let mut cx = Cx {
        diags: loaded.diagnostics,
        version: Version::V0_2,
    };
    let spec = match &loaded.root {
        Some(root) if !root.is_null() => cx.buildspec(root),
        _ => {
            if !has_errors(&cx.diags) {
                cx.diags.push(
                    Diagnostic::error(Pos { line: 1, col: 1 }, "the buildspec is empty")
                        .with_hint(MINIMAL_HINT),
                );
            }
            None
        }
    };
    let mut diagnostics = cx.diags;
    diagnostics.sort_by_key(|d| (d.line, d.col));
    let spec = if has_errors(&diagnostics) { None } else { spec };
    Parsed { spec, diagnostics }
}

const MINIMAL_HINT: &str = "a buildspec starts with `version: 0.2` and has a `phases:` mapping, e.g. `phases: {build: {commands: [make]}}`";

/// A `key: value` entry of a mapping whose key is a string.
struct Field<'a> {
    key: &'a str,
    key_pos: Pos,
    value: &'a Node,
}

impl Field<'_> {
    /// Where to point at the value: the value itself, or the key when the value is empty.
    fn at(&self) -> Pos {
        at(self.key_pos, self.value)
    }
}

fn at(key_pos: Pos, value: &Node) -> Pos {
    if value.is_null() {
        key_pos
    } else {
        value.pos()
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" => Some(true),
        "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// `ABORT | CONTINUE | RETRY | RETRY-<n> | RETRY-<regex> | RETRY-<n>-<regex>`.
fn parse_on_failure(s: &str) -> Option<OnFailure> {
    let upper = s.to_ascii_uppercase();
    match upper.as_str() {
        "ABORT" => return Some(OnFailure::Abort),
        "CONTINUE" => return Some(OnFailure::Continue),
        "RETRY" => {
            return Some(OnFailure::Retry {
                count: 3,
                regex: None,
            })
        }
        _ => {}
    }
    if !upper.starts_with("RETRY-") {
        return None;
    }
    let rest = s.get("RETRY-".len()..)?;
    if rest.is_empty() {
        return None;
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (num, tail) = rest.split_at(digits);
    if digits == 0 {
        return Some(OnFailure::Retry {
            count: 3,
            regex: Some(rest.to_string()),
        });
    }
    match tail.strip_prefix('-') {
        None if tail.is_empty() => Some(OnFailure::Retry {
            count: num.parse().ok()?,
            regex: None,
        }),
        Some(re) if !re.is_empty() => Some(OnFailure::Retry {
            count: num.parse().ok()?,
            regex: Some(re.to_string()),
        }),
        // `RETRY-12abc`: a regex that happens to start with digits.
        None => Some(OnFailure::Retry {
            count: 3,
            regex: Some(rest.to_string()),
        }),
        Some(_) => None,
    }
}

fn normalize(s: &str) -> String {
    s.trim().to_ascii_lowercase().replace(['_', ' '], "-")
}

/// The closest of `candidates` to `key`, if any is close enough.
fn did_you_mean<'c>(key: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let k = normalize(key);
    let mut best: Option<(f64, &'c str)> = None;
    for &c in candidates {
        let n = normalize(c);
        let score = if n == k {
            2.0
        } else {
            let lev = strsim::levenshtein(&k, &n);
            let jw = strsim::jaro_winkler(&k, &n);
            if (lev <= 2 && lev < k.len().max(2)) || jw >= 0.88 {
                jw
            } else {
                continue;
            }
        };
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Keys that belong one level down: an unknown top-level key that is one of these gets a
/// "belongs under" hint.
fn misplaced_hint(key: &str) -> Option<String> {
    let k = normalize(key);
    let parent = if ENV_KEYS.iter().any(|e| normalize(e) == k) {
        "env"
    } else if PHASE_NAMES.iter().any(|e| normalize(e) == k) {
        "phases"
    } else if matches!(k.as_str(), "commands" | "finally" | "runtime-versions") {
        "a phase (e.g. phases.build)"
    } else if matches!(
        k.as_str(),
        "files" | "base-directory" | "discard-paths" | "secondary-artifacts"
    ) {
        "artifacts"
    } else if k == "paths" {
        "cache"
    } else {
        return None;
    };
    Some(format!("\"{key}\" belongs under {parent}"))
}

/// Quotes a command for a hint so YAML reads it as one string.
fn quote_for_hint(text: &str) -> String {
    if !text.contains('"') && !text.contains('\\') {
        format!("\"{text}\"")
    } else {
        format!("'{}'", text.replace('\'', "''"))
    }
}

/// Rebuilds `key: value` from a mapping that was meant to be a command.
fn reconstruct_command(node: &Node) -> Option<String> {
    let Node::Map { entries, .. } = node else {
        return None;
    };
    let [(k, v)] = entries.as_slice() else {
        return None;
    };
    let key = k.as_str()?;
    match v {
        Node::Null { .. } => Some(format!("{key}:")),
        Node::Scalar { text, .. } if !text.contains('\n') => Some(format!("{key}: {text}")),
        _ => None,
    }
}

struct Cx {
    diags: Vec<Diagnostic>,
    version: Version,
}

impl Cx {
    fn error(&mut self, pos: Pos, msg: impl Into<String>) {
        self.diags.push(Diagnostic::error(pos, msg));
    }

    fn error_hint(&mut self, pos: Pos, msg: impl Into<String>, hint: impl Into<String>) {
        self.diags.push(Diagnostic::error(pos, msg).with_hint(hint));
    }

    fn warning_hint(&mut self, pos: Pos, msg: impl Into<String>, hint: impl Into<String>) {
        self.diags
            .push(Diagnostic::warning(pos, msg).with_hint(hint));
    }

    /// The string-keyed entries of a mapping; other keys get a warning.
    fn fields<'a>(&mut self, path: &str, entries: &'a [(Node, Node)]) -> Vec<Field<'a>> {
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            match k.as_str() {
                Some(key) => out.push(Field {
                    key,
                    key_pos: k.pos(),
                    value: v,
                }),
                None => {
                    let place = if path.is_empty() {
                        String::new()
                    } else {
                        format!(" in {path}")
                    };
                    self.diags.push(Diagnostic::warning(
                        k.pos(),
                        format!(
                            "ignored key{place}: keys must be strings, found {}",
                            k.kind()
                        ),
                    ));
                }
            }
        }
        out
    }

    /// A mapping's fields. An empty value is an empty mapping; anything else is an error.
    fn map<'a>(&mut self, path: &str, key_pos: Pos, node: &'a Node) -> Option<Vec<Field<'a>>> {
        match node {
            Node::Map { entries, .. } => Some(self.fields(path, entries)),
            Node::Null { .. } => Some(Vec::new()),
            other => {
                self.error(
                    at(key_pos, other),
                    format!("{path} must be a mapping, found {}", other.kind()),
                );
                None
            }
        }
    }

    fn unknown(&mut self, path: &str, f: &Field<'_>, allowed: &[&str]) {
        let place = if path.is_empty() {
            String::new()
        } else {
            format!(" in {path}")
        };
        let msg = format!("unknown key \"{}\"{place} (CodeBuild ignores it)", f.key);
        let mut d = Diagnostic::warning(f.key_pos, msg);
        let k = normalize(f.key);
        let legacy_env = path.is_empty()
            && strsim::levenshtein(&k, "environment-variables") <= 3
            && self.version == Version::V0_2;
        if legacy_env {
            d = d.with_hint(
                "did you mean \"env\"? version 0.2 renamed 0.1's `environment_variables:` to `env:` and `plaintext:` to `variables:`",
            );
        } else if path == "env" && strsim::levenshtein(&k, "plaintext") <= 2 {
            d = d.with_hint(
                "did you mean \"variables\"? version 0.2 renamed 0.1's `plaintext:` to `variables:`",
            );
        } else if let Some(s) = did_you_mean(f.key, allowed) {
            d = d.with_hint(format!("did you mean \"{s}\"?"));
        } else if let Some(h) = path.is_empty().then(|| misplaced_hint(f.key)).flatten() {
            d = d.with_hint(h);
        } else if path.ends_with(".env") && is_var_name(f.key) && f.value.as_str().is_some() {
            d = d.with_hint(format!(
                "environment variables go under `variables:` ({path}.variables.{})",
                f.key
            ));
        } else {
            d = d.with_hint(format!("valid keys here: {}", allowed.join(", ")));
        }
        self.diags.push(d);
    }

    // ---- scalar helpers -------------------------------------------------------------

    /// A string value; an empty value counts as absent.
    fn string(&mut self, path: &str, f: &Field<'_>) -> Option<String> {
        match f.value {
            Node::Scalar { text, .. } => Some(text.clone()),
            Node::Null { .. } => None,
            other => {
                self.error(
                    other.pos(),
                    format!("{path} must be a string, found {}", other.kind()),
                );
                None
            }
        }
    }

    /// A yes/no value; an empty value counts as absent.
    fn boolean(&mut self, path: &str, f: &Field<'_>) -> Option<bool> {
        match f.value {
            Node::Scalar { text, pos, .. } => match parse_bool(text) {
                Some(b) => Some(b),
                None => {
                    self.error_hint(
                        *pos,
                        format!("{path} must be yes or no, found \"{text}\""),
                        BOOL_HINT,
                    );
                    None
                }
            },
            Node::Null { .. } => None,
            other => {
                self.error_hint(
                    other.pos(),
                    format!("{path} must be yes or no, found {}", other.kind()),
                    BOOL_HINT,
                );
                None
            }
        }
    }

    /// One list item that must be a string.
    fn list_item(&mut self, path: &str, i: usize, item: &Node, what: &str) -> Option<String> {
        match item {
            Node::Scalar { text, .. } => Some(text.clone()),
            Node::Null { pos } => {
                self.error(*pos, format!("{path}[{i}] is empty"));
                None
            }
            Node::Map { pos, .. } => {
                let msg = format!("{path}[{i}] must be {what}, found a mapping");
                match reconstruct_command(item) {
                    Some(t) => self.error_hint(
                        *pos,
                        msg,
                        format!(
                            "this item contains \": \" so YAML read it as a mapping; quote it: - {}",
                            quote_for_hint(&t)
                        ),
                    ),
                    None => self.error(*pos, msg),
                }
                None
            }
            Node::Seq { pos, .. } => {
                self.error(*pos, format!("{path}[{i}] must be {what}, found a list"));
                None
            }
        }
    }

    /// A list of strings. `lenient`: a single string is a one-element list (CodeBuild
    /// accepts `files: app.jar`). An empty value is an empty list.
    fn string_list(&mut self, path: &str, f: &Field<'_>, lenient: bool) -> Vec<(String, Pos)> {
        match f.value {
            Node::Seq { items, .. } => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    self.list_item(path, i, item, "a string")
                        .map(|s| (s, item.pos()))
                })
                .collect(),
            Node::Scalar { text, pos, .. } if lenient => vec![(text.clone(), *pos)],
            Node::Null { .. } => Vec::new(),
            other => {
                self.error(
                    other.pos(),
                    format!("{path} must be a list, found {}", other.kind()),
                );
                Vec::new()
            }
        }
    }

    fn strings(&mut self, path: &str, f: &Field<'_>, lenient: bool) -> Vec<String> {
        self.string_list(path, f, lenient)
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    }

    /// `NAME: value` pairs (env variables, parameter-store, secrets-manager).
    fn env_vars(&mut self, path: &str, f: &Field<'_>, reserved_check: bool) -> Vec<EnvVar> {
        let Node::Map { entries, .. } = f.value else {
            if let Node::Null { .. } = f.value {
                return Vec::new();
            }
            let mut d = Diagnostic::error(
                f.value.pos(),
                format!(
                    "{path} must be a mapping of NAME: value, found {}",
                    f.value.kind()
                ),
            );
            if let Node::Seq { .. } = f.value {
                d = d.with_hint("write one `NAME: value` per line, not a list");
            }
            self.diags.push(d);
            return Vec::new();
        };
        let mut out = Vec::new();
        for v in self.fields(path, entries) {
            let name_ok = self.var_name(path, &v, reserved_check);
            let value = match v.value {
                Node::Scalar { text, .. } => Some(text.clone()),
                Node::Null { .. } => {
                    self.error_hint(
                        v.key_pos,
                        format!("{path}.{} has no value", v.key),
                        format!("write `{}: \"\"` for an empty string", v.key),
                    );
                    None
                }
                other => {
                    self.error(
                        other.pos(),
                        format!("{path}.{} must be a string, found {}", v.key, other.kind()),
                    );
                    None
                }
            };
            if let (true, Some(value)) = (name_ok, value) {
                out.push(EnvVar {
                    name: v.key.to_string(),
                    value,
                    pos: v.key_pos,
                });
            }
        }
        out
    }

    /// Checks a variable name; true when it is usable.
    fn var_name(&mut self, path: &str, v: &Field<'_>, reserved_check: bool) -> bool {
        if !is_var_name(v.key) {
            self.error_hint(
                v.key_pos,
                format!("{path}: \"{}\" is not a valid variable name", v.key),
                "names are letters, digits and underscores and don't start with a digit",
            );
            return false;
        }
        if reserved_check && v.key.starts_with("CODEBUILD_") {
            self.error_hint(
                v.key_pos,
                format!(
                    "{path}: \"{}\" starts with the reserved prefix CODEBUILD_",
                    v.key
                ),
                "CodeBuild refuses variable names starting with CODEBUILD_; rename it",
            );
            return false;
        }
        true
    }

    // ---- sections --------------------------------------------------------------------

    fn buildspec(&mut self, root: &Node) -> Option<BuildSpec> {
        let Node::Map { entries, .. } = root else {
            self.error_hint(
                root.pos(),
                format!("a buildspec must be a mapping, found {}", root.kind()),
                MINIMAL_HINT,
            );
            return None;
        };
        let fields = self.fields("", entries);
        let mut spec = BuildSpec::default();

        // The version decides how some keys are read, so it goes first.
        match fields.iter().find(|f| f.key == "version") {
            Some(f) => spec.version = self.version_field(f),
            None => self.error_hint(
                Pos { line: 1, col: 1 },
                "missing required key \"version\"",
                "add `version: 0.2` at the top",
            ),
        }
        self.version = spec.version();

        let mut has_phases = false;
        for f in &fields {
            match f.key {
                "version" => {}
                "run-as" => spec.run_as = self.string("run-as", f),
                "env" => spec.env = self.env(f),
                "environment_variables" if self.version == Version::V0_1 => {
                    self.legacy_env(f, &mut spec.env)
                }
                "proxy" => spec.proxy = self.proxy(f),
                "batch" => spec.batch = self.batch(f),
                "phases" => {
                    has_phases = true;
                    spec.phases = self.phases(f);
                }
                "reports" => spec.reports = self.reports(f),
                "artifacts" => spec.artifacts = self.artifacts(f),
                "cache" => spec.cache = self.cache(f),
                _ => self.unknown("", f, TOP_KEYS),
            }
        }
        if !has_phases && spec.batch.is_none() {
            let batch_given = fields.iter().any(|f| f.key == "batch");
            if !batch_given {
                self.error_hint(
                    Pos { line: 1, col: 1 },
                    "missing required key \"phases\"",
                    "a buildspec needs `phases:` with at least one of install, pre_build, build, post_build, each with `commands:`",
                );
            }
        }
        Some(spec)
    }

    fn version_field(&mut self, f: &Field<'_>) -> Option<Version> {
        match f.value.as_str() {
            Some("0.2") => Some(Version::V0_2),
            Some("0.1") => Some(Version::V0_1),
            Some(other) => {
                self.error_hint(
                    f.at(),
                    format!("version must be 0.1 or 0.2, found \"{other}\""),
                    "use `version: 0.2`",
                );
                None
            }
            None => {
                self.error_hint(
                    f.at(),
                    format!("version must be 0.1 or 0.2, found {}", f.value.kind()),
                    "use `version: 0.2`",
                );
                None
            }
        }
    }

    fn env(&mut self, f: &Field<'_>) -> Env {
        let mut env = Env::default();
        let Some(fields) = self.map("env", f.key_pos, f.value) else {
            return env;
        };
        for v in &fields {
            let path = join("env", v.key);
            match v.key {
                "shell" => env.shell = self.string(&path, v),
                "variables" => env.variables = self.env_vars(&path, v, true),
                "parameter-store" => env.parameter_store = self.env_vars(&path, v, true),
                "secrets-manager" => env.secrets_manager = self.env_vars(&path, v, true),
                "exported-variables" => env.exported_variables = self.exported(&path, v),
                "git-credential-helper" => {
                    env.git_credential_helper = self.boolean(&path, v).unwrap_or(false)
                }
                _ => self.unknown("env", v, ENV_KEYS),
            }
        }
        env
    }

    /// Version 0.1's `environment_variables: plaintext:`.
    fn legacy_env(&mut self, f: &Field<'_>, env: &mut Env) {
        let path = "environment_variables";
        let Some(fields) = self.map(path, f.key_pos, f.value) else {
            return;
        };
        for v in &fields {
            match v.key {
                "plaintext" => {
                    let vars = self.env_vars("environment_variables.plaintext", v, true);
                    env.variables.extend(vars);
                }
                _ => self.unknown(path, v, &["plaintext"]),
            }
        }
    }

    fn exported(&mut self, path: &str, v: &Field<'_>) -> Vec<String> {
        match v.value {
            Node::Scalar { text, pos, .. } => {
                self.error_hint(
                    *pos,
                    format!("{path} must be a list of variable names, found a string"),
                    format!("write it as a list: `exported-variables: [{text}]` or `- {text}` on the next line"),
                );
                Vec::new()
            }
            _ => {
                let names = self.string_list(path, v, false);
                let mut out = Vec::new();
                for (name, pos) in names {
                    if is_var_name(&name) {
                        out.push(name);
                    } else {
                        self.error_hint(
                            pos,
                            format!("{path}: \"{name}\" is not a valid variable name"),
                            "names are letters, digits and underscores and don't start with a digit",
                        );
                    }
                }
                out
            }
        }
    }

    fn proxy(&mut self, f: &Field<'_>) -> Option<Proxy> {
        let fields = self.map("proxy", f.key_pos, f.value)?;
        let mut p = Proxy::default();
        for v in &fields {
            let path = join("proxy", v.key);
            match v.key {
                "upload-artifacts" => p.upload_artifacts = self.boolean(&path, v),
                "logs" => p.logs = self.boolean(&path, v),
                _ => self.unknown("proxy", v, PROXY_KEYS),
            }
        }
        Some(p)
    }

    fn phases(&mut self, f: &Field<'_>) -> Phases {
        let mut phases = Phases::default();
        let mut finally_only: Vec<(Pos, String)> = Vec::new();
        let fields = match f.value {
            Node::Null { .. } => {
                self.error_hint(
                    f.key_pos,
                    "phases is empty",
                    "add at least one of install, pre_build, build, post_build with `commands:`",
                );
                return phases;
            }
            Node::Map { entries, .. } if entries.is_empty() => {
                self.error_hint(
                    f.value.pos(),
                    "phases is empty",
                    "add at least one of install, pre_build, build, post_build with `commands:`",
                );
                return phases;
            }
            _ => match self.map("phases", f.key_pos, f.value) {
                Some(fields) => fields,
                None => return phases,
            },
        };
        for p in &fields {
            let slot = match p.key {
                "install" => &mut phases.install,
                "pre_build" => &mut phases.pre_build,
                "build" => &mut phases.build,
                "post_build" => &mut phases.post_build,
                _ => {
                    self.unknown("phases", p, PHASE_NAMES);
                    continue;
                }
            };
            *slot = self.phase(p, &mut finally_only);
        }
        // A phase with `finally:` but no `commands:` runs on CodeBuild when another phase
        // has commands (aws/sagemaker-python-sdk ran one in CI for years); a buildspec
        // whose only commands are `finally` blocks has nothing to run and is refused.
        let any_commands = [
            &phases.install,
            &phases.pre_build,
            &phases.build,
            &phases.post_build,
        ]
        .iter()
        .any(|p| p.as_ref().is_some_and(|p| !p.commands.is_empty()));
        for (pos, path) in finally_only {
            if any_commands {
                self.warning_hint(
                    pos,
                    format!("{path} has only `finally:` commands"),
                    "they run after the phase's (empty) commands; add `commands:` to make the phase explicit",
                );
            } else {
                self.error_hint(
                    pos,
                    format!("{path} has no commands"),
                    "no phase of this buildspec has `commands:`, so there is nothing to run; add `commands:` with at least one command",
                );
            }
        }
        phases
    }

    fn phase(&mut self, f: &Field<'_>, finally_only: &mut Vec<(Pos, String)>) -> Option<Phase> {
        let path = join("phases", f.key);
        let fields = match f.value {
            Node::Map { entries, .. } => self.fields(&path, entries),
            Node::Null { .. } => {
                self.error_hint(
                    f.key_pos,
                    format!("{path} is empty"),
                    "give it `commands:` with at least one command, or remove it",
                );
                return None;
            }
            Node::Seq { pos, .. } => {
                self.error_hint(
                    *pos,
                    format!("{path} must be a mapping, found a list"),
                    format!("put the commands under `commands:` ({path}.commands)"),
                );
                return None;
            }
            other => {
                self.error(
                    other.pos(),
                    format!("{path} must be a mapping, found {}", other.kind()),
                );
                return None;
            }
        };
        let is_install = f.key == "install";
        let mut phase = Phase {
            pos: f.key_pos,
            ..Phase::default()
        };
        let mut has_commands = false;
        let mut has_runtimes = false;
        let mut has_finally = false;
        for v in &fields {
            let vpath = join(&path, v.key);
            match v.key {
                "run-as" => phase.run_as = self.string(&vpath, v),
                "on-failure" => {
                    if let Some(of) = self.on_failure(&vpath, v) {
                        phase.on_failure = of;
                    }
                }
                "runtime-versions" => {
                    has_runtimes = true;
                    if is_install {
                        phase.runtime_versions = self.runtime_versions(&vpath, v);
                    } else {
                        self.error_hint(
                            v.key_pos,
                            format!("runtime-versions is not allowed in {path}"),
                            "CodeBuild only accepts runtime-versions in phases.install",
                        );
                    }
                }
                "commands" => {
                    has_commands = true;
                    phase.commands = self.commands(&vpath, v);
                }
                "finally" => {
                    has_finally = true;
                    phase.finally = self.commands(&vpath, v);
                }
                _ => self.unknown(&path, v, PHASE_KEYS),
            }
        }
        let runtimes_only = is_install && has_runtimes;
        if !has_commands && !runtimes_only {
            if has_finally {
                finally_only.push((f.key_pos, path.clone()));
            } else {
                self.error_hint(
                    f.key_pos,
                    format!("{path} has no commands"),
                    format!("add `commands:` with at least one command under {path}"),
                );
            }
        }
        Some(phase)
    }

    fn on_failure(&mut self, path: &str, f: &Field<'_>) -> Option<OnFailure> {
        let text = f.value.as_str();
        if let Some(of) = text.and_then(parse_on_failure) {
            return Some(of);
        }
        let found = match text {
            Some(t) => format!("\"{t}\""),
            None => f.value.kind().to_string(),
        };
        self.error(
            f.at(),
            format!("{path} must be one of {ON_FAILURE_CHOICES}, found {found}"),
        );
        None
    }

    fn runtime_versions(&mut self, path: &str, f: &Field<'_>) -> Vec<EnvVar> {
        let Some(fields) = self.map(path, f.key_pos, f.value) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for v in &fields {
            match v.value {
                Node::Scalar { text, .. } => out.push(EnvVar {
                    name: v.key.to_string(),
                    value: text.clone(),
                    pos: v.key_pos,
                }),
                Node::Null { .. } => self.error_hint(
                    v.key_pos,
                    format!("{path}.{} has no version", v.key),
                    format!("give a version, e.g. `{}: latest`", v.key),
                ),
                other => self.error(
                    other.pos(),
                    format!(
                        "{path}.{} must be a version string, found {}",
                        v.key,
                        other.kind()
                    ),
                ),
            }
        }
        out
    }

    fn commands(&mut self, path: &str, f: &Field<'_>) -> Vec<Command> {
        match f.value {
            Node::Seq { items, .. } => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Node::Scalar { text, pos, .. } => out.push(Command {
                            text: text.clone(),
                            pos: *pos,
                        }),
                        Node::Map { pos, .. } => {
                            let msg = format!("{path}[{i}] must be a string, found a mapping");
                            match reconstruct_command(item) {
                                // `- echo "Instances: $IDS"`: what the author meant is
                                // unambiguous, so runner runs it as written and warns
                                // (CodeBuild itself refuses such a file).
                                Some(t) => {
                                    self.warning_hint(
                                        *pos,
                                        format!("{path}[{i}] is a mapping, not a string; runner runs it as the command `{t}`, CodeBuild refuses it"),
                                        format!(
                                            "this command contains \": \" so YAML read it as a mapping; quote the whole command: - {}",
                                            quote_for_hint(&t)
                                        ),
                                    );
                                    out.push(Command { text: t, pos: *pos });
                                }
                                None => self.error_hint(
                                    *pos,
                                    msg,
                                    "a command is one string; quote it if it contains \": \"",
                                ),
                            }
                        }
                        other => {
                            let _ = self.list_item(path, i, other, "a string");
                        }
                    }
                }
                out
            }
            Node::Null { .. } => {
                self.error_hint(
                    f.key_pos,
                    format!("{path} is empty"),
                    "list at least one command: `- make`",
                );
                Vec::new()
            }
            Node::Scalar { text, pos, .. } => {
                self.error_hint(
                    *pos,
                    format!("{path} must be a list of commands, found a string"),
                    format!(
                        "write each command as a list item: - {}",
                        quote_for_hint(text.lines().next().unwrap_or_default())
                    ),
                );
                Vec::new()
            }
            Node::Map { pos, .. } => {
                self.error(
                    *pos,
                    format!("{path} must be a list of commands, found a mapping"),
                );
                Vec::new()
            }
        }
    }

    fn reports(&mut self, f: &Field<'_>) -> Vec<ReportGroup> {
        let Some(fields) = self.map("reports", f.key_pos, f.value) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for g in &fields {
            let path = join("reports", g.key);
            let mut group = ReportGroup {
                name: g.key.to_string(),
                file_format: "JUNITXML".to_string(),
                pos: g.key_pos,
                ..ReportGroup::default()
            };
            let Some(gf) = self.map(&path, g.key_pos, g.value) else {
                continue;
            };
            let mut has_files = false;
            for v in &gf {
                let vpath = join(&path, v.key);
                match v.key {
                    "files" => {
                        has_files = !v.value.is_null();
                        group.files = self.strings(&vpath, v, true);
                    }
                    "base-directory" => group.base_directory = self.string(&vpath, v),
                    "discard-paths" => {
                        group.discard_paths = self.boolean(&vpath, v).unwrap_or(false)
                    }
                    "file-format" => {
                        if let Some(fmt) = self.string(&vpath, v) {
                            let upper = fmt.to_ascii_uppercase();
                            if FILE_FORMATS.contains(&upper.as_str()) {
                                group.file_format = upper;
                            } else {
                                let mut d = Diagnostic::error(
                                    v.at(),
                                    format!(
                                        "{vpath} must be one of {}, found \"{fmt}\"",
                                        FILE_FORMATS.join(", ")
                                    ),
                                );
                                if let Some(s) = did_you_mean(&fmt, FILE_FORMATS) {
                                    d = d.with_hint(format!("did you mean \"{s}\"?"));
                                }
                                self.diags.push(d);
                            }
                        }
                    }
                    _ => self.unknown(&path, v, REPORT_KEYS),
                }
            }
            if !has_files {
                self.error_hint(
                    g.key_pos,
                    format!("{path} has no files"),
                    "list the report files: `files: ['**/*.xml']`",
                );
            }
            out.push(group);
        }
        out
    }

    fn artifacts(&mut self, f: &Field<'_>) -> Option<Artifacts> {
        if f.value.is_null() {
            self.error_hint(
                f.key_pos,
                "artifacts is empty",
                "add `files:` or remove `artifacts:`",
            );
            return None;
        }
        let fields = self.map("artifacts", f.key_pos, f.value)?;
        let mut arts = Artifacts::default();
        let has_secondary = fields.iter().any(|v| v.key == "secondary-artifacts");
        arts.primary = self.artifact_spec("artifacts", f.key_pos, &fields, !has_secondary);
        for v in &fields {
            if v.key != "secondary-artifacts" {
                continue;
            }
            let path = "artifacts.secondary-artifacts";
            let Some(sf) = self.map(path, v.key_pos, v.value) else {
                continue;
            };
            for s in &sf {
                let spath = join(path, s.key);
                if s.value.is_null() {
                    self.error_hint(
                        s.key_pos,
                        format!("{spath} has no files"),
                        "list the files: `files: ['**/*']`",
                    );
                    continue;
                }
                let Some(af) = self.map(&spath, s.key_pos, s.value) else {
                    continue;
                };
                let spec = self.artifact_spec(&spath, s.key_pos, &af, true);
                arts.secondary.push((s.key.to_string(), spec));
            }
        }
        Some(arts)
    }

    fn artifact_spec(
        &mut self,
        path: &str,
        pos: Pos,
        fields: &[Field<'_>],
        files_required: bool,
    ) -> ArtifactSpec {
        let mut a = ArtifactSpec {
            pos,
            ..ArtifactSpec::default()
        };
        let mut has_files = false;
        let primary = path == "artifacts";
        for v in fields {
            let vpath = join(path, v.key);
            match v.key {
                "files" => {
                    has_files = true;
                    if v.value.is_null() {
                        // Seen in real buildspecs (diffblue/cbmc): CodeBuild runs them.
                        self.diags.push(
                            Diagnostic::warning(
                                v.key_pos,
                                format!("{vpath} is empty, so no files are uploaded"),
                            )
                            .with_hint(format!(
                                "list the files (`files: ['**/*']`) or remove `{path}:`"
                            )),
                        );
                    }
                    a.files = self.strings(&vpath, v, true);
                }
                "name" => a.name = self.string(&vpath, v),
                "discard-paths" => a.discard_paths = self.boolean(&vpath, v).unwrap_or(false),
                "base-directory" => a.base_directory = self.string(&vpath, v),
                "exclude-paths" => a.exclude_paths = self.strings(&vpath, v, true),
                "enable-symlinks" => a.enable_symlinks = self.boolean(&vpath, v).unwrap_or(false),
                "s3-prefix" => a.s3_prefix = self.string(&vpath, v),
                "secondary-artifacts" if primary => {}
                _ => {
                    let allowed: Vec<&str> = ARTIFACT_KEYS
                        .iter()
                        .copied()
                        .filter(|k| primary || *k != "secondary-artifacts")
                        .collect();
                    self.unknown(path, v, &allowed);
                }
            }
        }
        if files_required && !has_files {
            self.error_hint(
                pos,
                format!("{path} has no files"),
                "list the files to upload: `files: ['**/*']`",
            );
        }
        a
    }

    fn cache(&mut self, f: &Field<'_>) -> Option<Cache> {
        let fields = self.map("cache", f.key_pos, f.value)?;
        let mut c = Cache {
            pos: f.key_pos,
            ..Cache::default()
        };
        for v in &fields {
            let path = join("cache", v.key);
            match v.key {
                "paths" => c.paths = self.strings(&path, v, true),
                "key" => c.key = self.string(&path, v),
                "fallback-keys" => c.fallback_keys = self.strings(&path, v, true),
                "action" => {
                    if let Some(a) = self.string(&path, v) {
                        let lower = a.to_ascii_lowercase();
                        if lower == "restore" || lower == "save" {
                            c.action = Some(lower);
                        } else {
                            self.error(
                                v.at(),
                                format!("{path} must be restore or save, found \"{a}\""),
                            );
                        }
                    }
                }
                _ => self.unknown("cache", v, CACHE_KEYS),
            }
        }
        Some(c)
    }

    // ---- batch -----------------------------------------------------------------------

    fn batch(&mut self, f: &Field<'_>) -> Option<Batch> {
        let fields = self.map("batch", f.key_pos, f.value)?;
        let mut fast_fail = false;
        let mut kind: Option<&Field<'_>> = None;
        for v in &fields {
            match v.key {
                "fast-fail" => {
                    fast_fail = self.boolean("batch.fast-fail", v).unwrap_or(false);
                }
                k if BATCH_KINDS.contains(&k) => match kind {
                    None => kind = Some(v),
                    Some(first) => self.error_hint(
                        v.key_pos,
                        format!("batch has both {} and {}", first.key, v.key),
                        "a batch has exactly one of build-list, build-graph, build-matrix, build-fanout",
                    ),
                },
                _ => self.unknown("batch", v, BATCH_KEYS),
            }
        }
        let Some(kind) = kind else {
            self.error_hint(
                f.key_pos,
                "batch has no build-list, build-graph, build-matrix or build-fanout",
                "add one of them, or remove `batch:`",
            );
            return None;
        };
        let path = join("batch", kind.key);
        match kind.key {
            "build-list" => Some(Batch::List {
                fast_fail,
                tasks: self.tasks(&path, kind, false),
            }),
            "build-graph" => Some(Batch::Graph {
                fast_fail,
                tasks: self.tasks(&path, kind, true),
            }),
            "build-matrix" => Some(Batch::Matrix {
                fast_fail,
                matrix: self.matrix(&path, kind),
            }),
            _ => self.fanout(&path, kind, fast_fail),
        }
    }

    fn tasks(&mut self, path: &str, f: &Field<'_>, graph: bool) -> Vec<BatchTask> {
        let items = match f.value {
            Node::Seq { items, .. } => items,
            other => {
                self.error(
                    at(f.key_pos, other),
                    format!("{path} must be a list of builds, found {}", other.kind()),
                );
                return Vec::new();
            }
        };
        let mut tasks: Vec<BatchTask> = Vec::new();
        let mut seen_ids: HashSet<String> = HashSet::new();
        // (task index, dependency name, where it is written)
        let mut deps: Vec<(usize, String, Pos)> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let tpath = format!("{path}[{i}]");
            let Node::Map { entries, pos } = item else {
                self.error(
                    item.pos(),
                    format!("{tpath} must be a mapping, found {}", item.kind()),
                );
                continue;
            };
            let fields = self.fields(&tpath, entries);
            let mut task = BatchTask {
                pos: *pos,
                ..BatchTask::default()
            };
            let mut ident: Option<(String, Pos)> = None;
            for v in &fields {
                let vpath = join(&tpath, v.key);
                match v.key {
                    "identifier" => {
                        if let Some(id) = self.string(&vpath, v) {
                            ident = Some((id, v.at()));
                        }
                    }
                    "buildspec" => task.buildspec = self.string(&vpath, v),
                    "env" => task.env = self.batch_env(&vpath, v, TASK_ENV_KEYS),
                    "ignore-failure" => {
                        task.ignore_failure = self.boolean(&vpath, v).unwrap_or(false)
                    }
                    "debug-session" => {
                        task.debug_session = self.boolean(&vpath, v).unwrap_or(false)
                    }
                    "depend-on" if graph => {
                        let idx = tasks.len();
                        for (name, p) in self.string_list(&vpath, v, true) {
                            deps.push((idx, name.clone(), p));
                            task.depend_on.push(name);
                        }
                    }
                    "depend-on" => self.diags.push(
                        Diagnostic::warning(
                            v.key_pos,
                            format!(
                                "{vpath} is only used in build-graph (CodeBuild ignores it here)"
                            ),
                        )
                        .with_hint("use `build-graph:` instead of `build-list:` for dependencies"),
                    ),
                    _ => {
                        let allowed: Vec<&str> = TASK_KEYS
                            .iter()
                            .copied()
                            .filter(|k| graph || *k != "depend-on")
                            .collect();
                        self.unknown(&tpath, v, &allowed);
                    }
                }
            }
            match ident {
                None => {
                    self.error_hint(
                        *pos,
                        format!("{tpath} has no identifier"),
                        "every batch build needs `identifier:` (letters, digits, underscores)",
                    );
                    continue;
                }
                Some((id, p)) => {
                    if !is_identifier(&id) {
                        self.error_hint(
                            p,
                            format!("{tpath}.identifier \"{id}\" is not a valid identifier"),
                            "identifiers are letters, digits and underscores only",
                        );
                        continue;
                    }
                    if !seen_ids.insert(id.clone()) {
                        self.error(p, format!("{path}: duplicate identifier \"{id}\""));
                        continue;
                    }
                    task.identifier = id;
                }
            }
            // Dependencies recorded for a skipped task are dropped with it.
            tasks.push(task);
        }
        deps.retain(|(idx, _, _)| *idx < tasks.len());
        if graph {
            self.check_graph(path, &tasks, &deps);
        }
        tasks
    }

    fn check_graph(&mut self, path: &str, tasks: &[BatchTask], deps: &[(usize, String, Pos)]) {
        let ids: HashMap<&str, usize> = tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.identifier.as_str(), i))
            .collect();
        let index = |name: &str| ids.get(name).copied();
        // edges[i]: tasks that task i depends on.
        let mut edges: Vec<Vec<usize>> = vec![Vec::new(); tasks.len()];
        for (i, name, pos) in deps {
            match index(name) {
                Some(j) => {
                    if let Some(e) = edges.get_mut(*i) {
                        e.push(j);
                    }
                }
                None => {
                    let names: Vec<&str> = tasks.iter().map(|t| t.identifier.as_str()).collect();
                    let mut d = Diagnostic::error(
                        *pos,
                        format!("{path}: depend-on names unknown identifier \"{name}\""),
                    );
                    if let Some(s) = did_you_mean(name, &names) {
                        d = d.with_hint(format!("did you mean \"{s}\"?"));
                    }
                    self.diags.push(d);
                }
            }
        }
        // Kahn's algorithm: what is left over is on or behind a cycle.
        let n = tasks.len();
        let mut remaining_deps: Vec<usize> = edges.iter().map(Vec::len).collect();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, e) in edges.iter().enumerate() {
            for &j in e {
                if let Some(d) = dependents.get_mut(j) {
                    d.push(i);
                }
            }
        }
        let mut ready: Vec<usize> = (0..n)
            .filter(|&i| remaining_deps.get(i) == Some(&0))
            .collect();
        let mut done = vec![false; n];
        while let Some(i) = ready.pop() {
            if let Some(d) = done.get_mut(i) {
                *d = true;
            }
            for &k in dependents.get(i).map(Vec::as_slice).unwrap_or_default() {
                if let Some(r) = remaining_deps.get_mut(k) {
                    *r = r.saturating_sub(1);
                    if *r == 0 {
                        ready.push(k);
                    }
                }
            }
        }
        let Some(start) = done.iter().position(|d| !d) else {
            return;
        };
        // Walk undone dependencies until a task repeats: that loop is a cycle.
        let mut seen: Vec<usize> = Vec::new();
        // seen_at[i]: where task i is in `seen`.
        let mut seen_at: Vec<Option<usize>> = vec![None; n];
        let mut cur = start;
        loop {
            if let Some(at) = seen_at.get(cur).copied().flatten() {
                let cycle: Vec<usize> = seen.get(at..).map(<[usize]>::to_vec).unwrap_or_default();
                let mut names: Vec<&str> = cycle
                    .iter()
                    .filter_map(|&i| tasks.get(i).map(|t| t.identifier.as_str()))
                    .collect();
                if let Some(first) = names.first().copied() {
                    names.push(first);
                }
                let pos = cycle
                    .first()
                    .and_then(|&i| tasks.get(i))
                    .map(|t| t.pos)
                    .unwrap_or_default();
                self.error(
                    pos,
                    format!("{path} has a dependency cycle: {}", names.join(" -> ")),
                );
                return;
            }
            if let Some(slot) = seen_at.get_mut(cur) {
                *slot = Some(seen.len());
            }
            seen.push(cur);
            let next = edges
                .get(cur)
                .and_then(|e| e.iter().copied().find(|&j| done.get(j) == Some(&false)));
            match next {
                Some(j) => cur = j,
                None => return,
            }
        }
    }

    fn batch_env(&mut self, path: &str, f: &Field<'_>, allowed: &[&str]) -> BatchEnv {
        let mut env = BatchEnv::default();
        let Some(fields) = self.map(path, f.key_pos, f.value) else {
            return env;
        };
        for v in &fields {
            let vpath = join(path, v.key);
            match v.key {
                "image" if allowed.contains(&"image") => env.image = self.string(&vpath, v),
                "compute-type" if allowed.contains(&"compute-type") => {
                    env.compute_type = self.string(&vpath, v)
                }
                "type" if allowed.contains(&"type") => env.env_type = self.string(&vpath, v),
                "privileged-mode" if allowed.contains(&"privileged-mode") => {
                    env.privileged_mode = self.boolean(&vpath, v)
                }
                "variables" if allowed.contains(&"variables") => {
                    env.variables = self.env_vars(&vpath, v, true)
                }
                // CodeBuild accepts the fleet of a batch build; runner has no fleets.
                "fleet" if allowed.contains(&"fleet") => {
                    let _ = self.string(&vpath, v);
                }
                // Seen in real buildspecs (an empty `env:` inside `env:`); harmless.
                "env" if v.value.is_null() => {}
                _ => self.unknown(path, v, allowed),
            }
        }
        env
    }

    fn matrix(&mut self, path: &str, f: &Field<'_>) -> BuildMatrix {
        let mut m = BuildMatrix::default();
        let Some(fields) = self.map(path, f.key_pos, f.value) else {
            return m;
        };
        for v in &fields {
            let vpath = join(path, v.key);
            match v.key {
                "static" => {
                    let Some(sf) = self.map(&vpath, v.key_pos, v.value) else {
                        continue;
                    };
                    for s in &sf {
                        let spath = join(&vpath, s.key);
                        match s.key {
                            "ignore-failure" => {
                                m.ignore_failure = self.boolean(&spath, s).unwrap_or(false)
                            }
                            "env" => m.static_env = self.batch_env(&spath, s, TASK_ENV_KEYS),
                            _ => self.unknown(&vpath, s, MATRIX_STATIC_KEYS),
                        }
                    }
                }
                "dynamic" => {
                    let Some(df) = self.map(&vpath, v.key_pos, v.value) else {
                        continue;
                    };
                    for d in &df {
                        let dpath = join(&vpath, d.key);
                        match d.key {
                            "buildspec" => m.buildspecs = self.strings(&dpath, d, true),
                            "env" => self.dynamic_env(&dpath, d, &mut m),
                            _ => self.unknown(&vpath, d, MATRIX_DYNAMIC_KEYS),
                        }
                    }
                }
                _ => self.unknown(path, v, MATRIX_KEYS),
            }
        }
        m
    }

    fn dynamic_env(&mut self, path: &str, f: &Field<'_>, m: &mut BuildMatrix) {
        let Some(fields) = self.map(path, f.key_pos, f.value) else {
            return;
        };
        for v in &fields {
            let vpath = join(path, v.key);
            match v.key {
                "image" => m.images = self.strings(&vpath, v, true),
                "compute-type" => m.compute_types = self.strings(&vpath, v, true),
                "variables" => {
                    let Some(vars) = self.map(&vpath, v.key_pos, v.value) else {
                        continue;
                    };
                    for var in &vars {
                        if !self.var_name(&vpath, var, true) {
                            continue;
                        }
                        let choices = self.strings(&join(&vpath, var.key), var, true);
                        m.variables.push((var.key.to_string(), choices));
                    }
                }
                _ => self.unknown(path, v, MATRIX_DYNAMIC_ENV_KEYS),
            }
        }
    }

    fn fanout(&mut self, path: &str, f: &Field<'_>, fast_fail: bool) -> Option<Batch> {
        let fields = self.map(path, f.key_pos, f.value)?;
        let mut parallelism: Option<u32> = None;
        let mut ignore_failure = false;
        for v in &fields {
            let vpath = join(path, v.key);
            match v.key {
                "parallelism" => match v.value.as_str().map(|s| s.trim().parse::<u32>()) {
                    Some(Ok(n)) if n > 0 => parallelism = Some(n),
                    _ => self.error(v.at(), format!("{vpath} must be a positive whole number")),
                },
                "ignore-failure" => ignore_failure = self.boolean(&vpath, v).unwrap_or(false),
                _ => self.unknown(path, v, FANOUT_KEYS),
            }
        }
        let Some(parallelism) = parallelism else {
            if !fields.iter().any(|v| v.key == "parallelism") {
                self.error_hint(
                    f.key_pos,
                    format!("{path} has no parallelism"),
                    "add `parallelism: <number of parallel builds>`",
                );
            }
            return None;
        };
        Some(Batch::Fanout {
            fast_fail,
            parallelism,
            ignore_failure,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::diagnostic::render;
    use super::super::model::PhaseName;
    use super::*;

    /// Parses `input` and compares all rendered diagnostics (file name `buildspec.yml`).
    fn check(input: &str, expected: &[&str]) -> Parsed {
        let parsed = parse(input);
        let got: Vec<String> = parsed
            .diagnostics
            .iter()
            .map(|d| render("buildspec.yml", d))
            .collect();
        assert_eq!(
            got.join("\n"),
            expected.join("\n"),
            "\ninput:\n{input}\ngot:\n{}\n",
            got.join("\n")
        );
        assert_eq!(parsed.spec.is_some(), !has_errors(&parsed.diagnostics));
        parsed
    }

    fn ok(input: &str) -> BuildSpec {
        match check(input, &[]).spec {
            Some(s) => s,
            None => panic!("no spec"),
        }
    }

    const HEAD: &str = "version: 0.2\nphases:\n  build:\n    commands:\n      - make\n";

    #[test]
    fn minimal() {
        let spec = ok(HEAD);
        assert_eq!(spec.version, Some(Version::V0_2));
        let build = spec.phases.build.clone().unwrap_or_default();
        assert_eq!(build.commands.len(), 1);
        assert_eq!(build.commands[0].text, "make");
        assert_eq!(build.commands[0].pos, Pos { line: 5, col: 9 });
        assert_eq!(build.pos, Pos { line: 3, col: 3 });
        assert_eq!(spec.phases.in_order()[2].0, PhaseName::Build);
    }

    #[test]
    fn version_values() {
        assert_eq!(
            ok("version: \"0.1\"\nphases: {build: {commands: [x]}}").version,
            Some(Version::V0_1)
        );
        check(
            "version: 1.0\nphases: {build: {commands: [x]}}",
            &[
                "buildspec.yml:1:10: error: version must be 0.1 or 0.2, found \"1.0\"",
                "  = help: use `version: 0.2`",
            ],
        );
        check(
            "version:\nphases: {build: {commands: [x]}}",
            &[
                "buildspec.yml:1:1: error: version must be 0.1 or 0.2, found an empty value",
                "  = help: use `version: 0.2`",
            ],
        );
        check(
            "phases: {build: {commands: [x]}}",
            &[
                "buildspec.yml:1:1: error: missing required key \"version\"",
                "  = help: add `version: 0.2` at the top",
            ],
        );
    }

    #[test]
    fn missing_phases_and_not_a_buildspec() {
        check(
            "version: 0.1\ncomponent: build\nsteps:\n  - type: Command\n",
            &[
                "buildspec.yml:1:1: error: missing required key \"phases\"",
                "  = help: a buildspec needs `phases:` with at least one of install, pre_build, build, post_build, each with `commands:`",
                "buildspec.yml:2:1: warning: unknown key \"component\" (CodeBuild ignores it)",
                "  = help: valid keys here: version, run-as, env, proxy, batch, phases, reports, artifacts, cache",
                "buildspec.yml:3:1: warning: unknown key \"steps\" (CodeBuild ignores it)",
                "  = help: valid keys here: version, run-as, env, proxy, batch, phases, reports, artifacts, cache",
            ],
        );
        check(
            "version: 0.2\nphases:\n",
            &[
                "buildspec.yml:2:1: error: phases is empty",
                "  = help: add at least one of install, pre_build, build, post_build with `commands:`",
            ],
        );
    }

    #[test]
    fn batch_only_buildspec_needs_no_phases() {
        let spec = ok("version: 0.2\nbatch:\n  build-list:\n    - identifier: a\n");
        assert!(matches!(spec.batch, Some(Batch::List { ref tasks, .. }) if tasks.len() == 1));
    }

    #[test]
    fn phase_rules() {
        check(
            "version: 0.2\nphases:\n  post_build:\n    finally:\n      - echo done\n",
            &[
                "buildspec.yml:3:3: error: phases.post_build has no commands",
                "  = help: no phase of this buildspec has `commands:`, so there is nothing to run; add `commands:` with at least one command",
            ],
        );
        check(
            "version: 0.2\nphases:\n  build:\n",
            &[
                "buildspec.yml:3:3: error: phases.build is empty",
                "  = help: give it `commands:` with at least one command, or remove it",
            ],
        );
        check(
            "version: 0.2\nphases:\n  build:\n    - make\n",
            &[
                "buildspec.yml:4:5: error: phases.build must be a mapping, found a list",
                "  = help: put the commands under `commands:` (phases.build.commands)",
            ],
        );
        let spec = ok("version: 0.2\nphases:\n  install:\n    runtime-versions:\n      python: 3.12\n      nodejs: latest\n");
        let install = spec.phases.install.unwrap_or_default();
        assert_eq!(install.runtime_versions.len(), 2);
        assert_eq!(install.runtime_versions[0].value, "3.12");
        check(
            "version: 0.2\nphases:\n  build:\n    runtime-versions:\n      python: 3.12\n    commands: [x]\n",
            &[
                "buildspec.yml:4:5: error: runtime-versions is not allowed in phases.build",
                "  = help: CodeBuild only accepts runtime-versions in phases.install",
            ],
        );
        check(
            "version: 0.2\nphases:\n  install:\n    runtime-versions:\n      python:\n",
            &[
                "buildspec.yml:5:7: error: phases.install.runtime-versions.python has no version",
                "  = help: give a version, e.g. `python: latest`",
            ],
        );
        check(
            "version: 0.2\nphases:\n  prebuild:\n    commands: [x]\n",
            &[
                "buildspec.yml:3:3: warning: unknown key \"prebuild\" in phases (CodeBuild ignores it)",
                "  = help: did you mean \"pre_build\"?",
            ],
        );
        check(
            "version: 0.2\nphases:\n  build:\n    command:\n      - make\n",
            &[
                "buildspec.yml:3:3: error: phases.build has no commands",
                "  = help: add `commands:` with at least one command under phases.build",
                "buildspec.yml:4:5: warning: unknown key \"command\" in phases.build (CodeBuild ignores it)",
                "  = help: did you mean \"commands\"?",
            ],
        );
    }

    #[test]
    fn commands() {
        let spec = ok("version: 0.2\nphases:\n  build:\n    commands:\n      - 1\n      - true\n      - 'a: b'\n      - |\n        x\n        y\n    finally:\n      - echo bye\n");
        let b = spec.phases.build.unwrap_or_default();
        let texts: Vec<&str> = b.commands.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["1", "true", "a: b", "x\ny\n"]);
        assert_eq!(b.finally.len(), 1);
        check(
            "version: 0.2\nphases:\n  build:\n    commands:\n      - make\n      - ls\n      - echo foo: bar\n      - - nested\n      -\n",
            &[
                "buildspec.yml:7:9: warning: phases.build.commands[2] is a mapping, not a string; runner runs it as the command `echo foo: bar`, CodeBuild refuses it",
                "  = help: this command contains \": \" so YAML read it as a mapping; quote the whole command: - \"echo foo: bar\"",
                "buildspec.yml:8:9: error: phases.build.commands[3] must be a string, found a list",
                "buildspec.yml:10:1: error: phases.build.commands[4] is empty",
            ],
        );
        check(
            "version: 0.2\nphases:\n  build:\n    commands:\n      - echo \"a: $B\"\n",
            &[
                "buildspec.yml:5:9: warning: phases.build.commands[0] is a mapping, not a string; runner runs it as the command `echo \"a: $B\"`, CodeBuild refuses it",
                "  = help: this command contains \": \" so YAML read it as a mapping; quote the whole command: - 'echo \"a: $B\"'",
            ],
        );
        check(
            "version: 0.2\nphases:\n  build:\n    commands: make all\n",
            &[
                "buildspec.yml:4:15: error: phases.build.commands must be a list of commands, found a string",
                "  = help: write each command as a list item: - \"make all\"",
            ],
        );
        check(
            "version: 0.2\nphases:\n  build:\n    commands:\n",
            &[
                "buildspec.yml:4:5: error: phases.build.commands is empty",
                "  = help: list at least one command: `- make`",
            ],
        );
    }

    #[test]
    fn several_errors_at_once() {
        let p = parse("version: 0.3\nphases:\n  build:\n    commands:\n      - a: {b: c}\n  post_build:\n    finally: [x]\n  install:\n    finally: [y]\n");
        assert_eq!(
            p.diagnostics
                .iter()
                .filter(|d| d.is_error())
                .map(|d| (d.line, d.col))
                .collect::<Vec<_>>(),
            [(1, 10), (5, 9), (6, 3), (8, 3)]
        );
        assert!(p.spec.is_none());
    }

    #[test]
    fn on_failure() {
        let of = |v: &str| {
            let spec = ok(&format!(
                "version: 0.2\nphases:\n  build:\n    on-failure: {v}\n    commands: [x]\n"
            ));
            spec.phases.build.unwrap_or_default().on_failure
        };
        assert_eq!(of("ABORT"), OnFailure::Abort);
        assert_eq!(of("continue"), OnFailure::Continue);
        assert_eq!(
            of("RETRY"),
            OnFailure::Retry {
                count: 3,
                regex: None
            }
        );
        assert_eq!(
            of("RETRY-5"),
            OnFailure::Retry {
                count: 5,
                regex: None
            }
        );
        assert_eq!(
            of("RETRY-Timeout.*"),
            OnFailure::Retry {
                count: 3,
                regex: Some("Timeout.*".into())
            }
        );
        assert_eq!(
            of("'retry-2-Error: x'"),
            OnFailure::Retry {
                count: 2,
                regex: Some("Error: x".into())
            }
        );
        check(
            "version: 0.2\nphases:\n  build:\n    on-failure: IGNORE\n    commands: [x]\n",
            &["buildspec.yml:4:17: error: phases.build.on-failure must be one of ABORT, CONTINUE, RETRY, RETRY-<count>, RETRY-<regex> or RETRY-<count>-<regex>, found \"IGNORE\""],
        );
        check(
            "version: 0.2\nphases:\n  build:\n    on-failure: RETRY-99999999999\n    commands: [x]\n",
            &["buildspec.yml:4:17: error: phases.build.on-failure must be one of ABORT, CONTINUE, RETRY, RETRY-<count>, RETRY-<regex> or RETRY-<count>-<regex>, found \"RETRY-99999999999\""],
        );
    }

    #[test]
    fn run_as() {
        let spec = ok("version: 0.2\nrun-as: builder\nphases:\n  build:\n    run-as: root\n    commands: [x]\n");
        assert_eq!(spec.run_as.as_deref(), Some("builder"));
        assert_eq!(
            spec.phases.build.unwrap_or_default().run_as.as_deref(),
            Some("root")
        );
        check(
            &format!("version: 0.2\nrun-as: [a]\n{}", &HEAD[13..]),
            &["buildspec.yml:2:9: error: run-as must be a string, found a list"],
        );
    }

    #[test]
    fn env_section() {
        let spec = ok(&format!(
            "{HEAD}env:\n  shell: bash\n  variables:\n    A: 1\n    B: yes\n    C: \"x y\"\n  parameter-store:\n    P: /a/b\n  secrets-manager:\n    S: id:key\n  exported-variables:\n    - A\n  git-credential-helper: Yes\n"
        ));
        assert_eq!(spec.env.shell.as_deref(), Some("bash"));
        let vars: Vec<(&str, &str)> = spec
            .env
            .variables
            .iter()
            .map(|v| (v.name.as_str(), v.value.as_str()))
            .collect();
        assert_eq!(vars, [("A", "1"), ("B", "yes"), ("C", "x y")]);
        assert_eq!(spec.env.variables[0].pos, Pos { line: 9, col: 5 });
        assert_eq!(spec.env.parameter_store[0].value, "/a/b");
        assert_eq!(spec.env.secrets_manager[0].value, "id:key");
        assert_eq!(spec.env.exported_variables, ["A"]);
        assert!(spec.env.git_credential_helper);
    }

    #[test]
    fn env_errors() {
        check(
            &format!("{HEAD}env:\n  variables:\n    1BAD: x\n    CODEBUILD_X: y\n    EMPTY:\n    LIST: [a]\n"),
            &[
                "buildspec.yml:8:5: error: env.variables: \"1BAD\" is not a valid variable name",
                "  = help: names are letters, digits and underscores and don't start with a digit",
                "buildspec.yml:9:5: error: env.variables: \"CODEBUILD_X\" starts with the reserved prefix CODEBUILD_",
                "  = help: CodeBuild refuses variable names starting with CODEBUILD_; rename it",
                "buildspec.yml:10:5: error: env.variables.EMPTY has no value",
                "  = help: write `EMPTY: \"\"` for an empty string",
                "buildspec.yml:11:11: error: env.variables.LIST must be a string, found a list",
            ],
        );
        check(
            &format!("{HEAD}env:\n  exported-variables:\n    VERSION_HASH\n"),
            &[
                "buildspec.yml:8:5: error: env.exported-variables must be a list of variable names, found a string",
                "  = help: write it as a list: `exported-variables: [VERSION_HASH]` or `- VERSION_HASH` on the next line",
            ],
        );
        check(
            &format!("{HEAD}env:\n  variables:\n    - A=1\n"),
            &[
                "buildspec.yml:8:5: error: env.variables must be a mapping of NAME: value, found a list",
                "  = help: write one `NAME: value` per line, not a list",
            ],
        );
        check(
            &format!("{HEAD}env:\n  git-credential-helper: maybe\n  plaintext:\n    A: b\n"),
            &[
                "buildspec.yml:7:26: error: env.git-credential-helper must be yes or no, found \"maybe\"",
                "  = help: CodeBuild accepts yes/no, true/false or on/off",
                "buildspec.yml:8:3: warning: unknown key \"plaintext\" in env (CodeBuild ignores it)",
                "  = help: did you mean \"variables\"? version 0.2 renamed 0.1's `plaintext:` to `variables:`",
            ],
        );
    }

    #[test]
    fn legacy_environment_variables() {
        check(
            &format!("{HEAD}environment_variables:\n  plaintext:\n    A: b\n"),
            &[
                "buildspec.yml:6:1: warning: unknown key \"environment_variables\" (CodeBuild ignores it)",
                "  = help: did you mean \"env\"? version 0.2 renamed 0.1's `environment_variables:` to `env:` and `plaintext:` to `variables:`",
            ],
        );
        check(
            &format!("{HEAD}environment_variabls:\n  plaintext:\n    A: b\n"),
            &[
                "buildspec.yml:6:1: warning: unknown key \"environment_variabls\" (CodeBuild ignores it)",
                "  = help: did you mean \"env\"? version 0.2 renamed 0.1's `environment_variables:` to `env:` and `plaintext:` to `variables:`",
            ],
        );
        // Version 0.1 still reads them.
        let spec = ok("version: 0.1\nenvironment_variables:\n  plaintext:\n    A: b\nphases:\n  build:\n    commands: [x]\n");
        assert_eq!(spec.env.variables[0].name, "A");
        assert_eq!(spec.version(), Version::V0_1);
    }

    #[test]
    fn unknown_keys_and_suggestions() {
        check(
            &format!("{HEAD}artifact:\n  files: [a]\nenvv:\n  shell: bash\nshell: bash\n"),
            &[
                "buildspec.yml:6:1: warning: unknown key \"artifact\" (CodeBuild ignores it)",
                "  = help: did you mean \"artifacts\"?",
                "buildspec.yml:8:1: warning: unknown key \"envv\" (CodeBuild ignores it)",
                "  = help: did you mean \"env\"?",
                "buildspec.yml:10:1: warning: unknown key \"shell\" (CodeBuild ignores it)",
                "  = help: \"shell\" belongs under env",
            ],
        );
        check(
            &format!("{HEAD}cache:\n  path: [a]\n"),
            &[
                "buildspec.yml:7:3: warning: unknown key \"path\" in cache (CodeBuild ignores it)",
                "  = help: did you mean \"paths\"?",
            ],
        );
    }

    #[test]
    fn duplicate_keys_warn_last_wins() {
        let p = check(
            "version: 0.2\nphases:\n  build:\n    commands: [a]\n    commands: [b]\n",
            &[
                "buildspec.yml:5:5: warning: duplicate key \"commands\" (CodeBuild uses the last one)",
                "  = help: the earlier \"commands\" at line 4 is ignored; remove one of them",
            ],
        );
        let spec = p.spec.unwrap_or_default();
        assert_eq!(spec.phases.build.unwrap_or_default().commands[0].text, "b");
    }

    #[test]
    fn booleans() {
        for (text, want) in [
            ("yes", true),
            ("YES", true),
            ("True", true),
            ("on", true),
            ("no", false),
            ("False", false),
            ("OFF", false),
        ] {
            let spec = ok(&format!(
                "{HEAD}artifacts:\n  files: [a]\n  discard-paths: {text}\n  enable-symlinks: {text}\nproxy:\n  logs: {text}\n  upload-artifacts: {text}\n"
            ));
            let a = spec.artifacts.unwrap_or_default();
            assert_eq!(a.primary.discard_paths, want);
            assert_eq!(a.primary.enable_symlinks, want);
            let p = spec.proxy.unwrap_or_default();
            assert_eq!((p.logs, p.upload_artifacts), (Some(want), Some(want)));
        }
        check(
            &format!("{HEAD}proxy:\n  logs: 1\n"),
            &[
                "buildspec.yml:7:9: error: proxy.logs must be yes or no, found \"1\"",
                "  = help: CodeBuild accepts yes/no, true/false or on/off",
            ],
        );
    }

    #[test]
    fn artifacts() {
        let spec = ok(&format!(
            "{HEAD}artifacts:\n  files: target/app.jar\n  name: app-$(date)\n  base-directory: out\n  exclude-paths: '**/*.tmp'\n  s3-prefix: p\n  secondary-artifacts:\n    docs:\n      files:\n        - docs/**/*\n"
        ));
        let a = spec.artifacts.unwrap_or_default();
        assert_eq!(a.primary.files, ["target/app.jar"]);
        assert_eq!(a.primary.exclude_paths, ["**/*.tmp"]);
        assert_eq!(a.primary.name.as_deref(), Some("app-$(date)"));
        assert_eq!(a.primary.s3_prefix.as_deref(), Some("p"));
        assert_eq!(a.secondary.len(), 1);
        assert_eq!(a.secondary[0].0, "docs");
        assert_eq!(a.secondary[0].1.files, ["docs/**/*"]);
        // Only secondary artifacts: no primary files needed.
        ok(&format!(
            "{HEAD}artifacts:\n  secondary-artifacts:\n    a:\n      files: [x]\n"
        ));
        check(
            &format!(
                "{HEAD}artifacts:\n  name: x\n  secondary-artifacts:\n    a:\n      name: y\n"
            ),
            &[
                "buildspec.yml:9:5: error: artifacts.secondary-artifacts.a has no files",
                "  = help: list the files to upload: `files: ['**/*']`",
            ],
        );
        check(
            &format!("{HEAD}artifacts:\n  name: x\n"),
            &[
                "buildspec.yml:6:1: error: artifacts has no files",
                "  = help: list the files to upload: `files: ['**/*']`",
            ],
        );
        check(
            &format!("{HEAD}artifacts:\n  files:\n"),
            &[
                "buildspec.yml:7:3: warning: artifacts.files is empty, so no files are uploaded",
                "  = help: list the files (`files: ['**/*']`) or remove `artifacts:`",
            ],
        );
        check(
            &format!("{HEAD}artifacts:\n  files:\n    - a: b\n"),
            &[
                "buildspec.yml:8:7: error: artifacts.files[0] must be a string, found a mapping",
                "  = help: this item contains \": \" so YAML read it as a mapping; quote it: - \"a: b\"",
            ],
        );
    }

    #[test]
    fn reports() {
        let spec = ok(&format!(
            "{HEAD}reports:\n  unit:\n    files: ['**/*.xml']\n    base-directory: build/test-results\n    discard-paths: yes\n  arn:aws:codebuild:x:report-group/cov:\n    files: coverage.xml\n    file-format: coberturaxml\n"
        ));
        assert_eq!(spec.reports.len(), 2);
        assert_eq!(spec.reports[0].file_format, "JUNITXML");
        assert!(spec.reports[0].discard_paths);
        assert_eq!(spec.reports[1].name, "arn:aws:codebuild:x:report-group/cov");
        assert_eq!(spec.reports[1].file_format, "COBERTURAXML");
        assert_eq!(spec.reports[1].files, ["coverage.xml"]);
        check(
            &format!("{HEAD}reports:\n  unit:\n    base-directory: x\n    file-format: JUNIT\n"),
            &[
                "buildspec.yml:7:3: error: reports.unit has no files",
                "  = help: list the report files: `files: ['**/*.xml']`",
                "buildspec.yml:9:18: error: reports.unit.file-format must be one of JUNITXML, CUCUMBERJSON, TESTNGXML, VISUALSTUDIOTRX, NUNITXML, NUNIT3XML, CLOVERXML, COBERTURAXML, JACOCOXML, SIMPLECOV, found \"JUNIT\"",
                "  = help: did you mean \"JUNITXML\"?",
            ],
        );
    }

    #[test]
    fn cache() {
        let spec = ok(&format!(
            "{HEAD}cache:\n  key: k-$(cat lock)\n  fallback-keys: k-\n  action: Restore\n  paths:\n    - /root/.m2/**/*\n"
        ));
        let c = spec.cache.unwrap_or_default();
        assert_eq!(c.key.as_deref(), Some("k-$(cat lock)"));
        assert_eq!(c.fallback_keys, ["k-"]);
        assert_eq!(c.action.as_deref(), Some("restore"));
        assert_eq!(c.paths, ["/root/.m2/**/*"]);
        check(
            &format!("{HEAD}cache:\n  action: both\n"),
            &["buildspec.yml:7:11: error: cache.action must be restore or save, found \"both\""],
        );
    }

    #[test]
    fn batch_graph() {
        let spec = ok("version: 0.2\nbatch:\n  fast-fail: true\n  build-graph:\n    - identifier: a\n      env:\n        env:\n        image: img\n        compute-type: BUILD_GENERAL1_LARGE\n        type: LINUX_CONTAINER\n        privileged-mode: yes\n        variables:\n          X: 1\n    - identifier: b\n      buildspec: b.yml\n      depend-on: a\n      ignore-failure: yes\n      debug-session: true\n");
        let Some(Batch::Graph { fast_fail, tasks }) = spec.batch else {
            panic!("not a graph");
        };
        assert!(fast_fail);
        assert_eq!(tasks[0].env.image.as_deref(), Some("img"));
        assert_eq!(tasks[0].env.env_type.as_deref(), Some("LINUX_CONTAINER"));
        assert_eq!(tasks[0].env.privileged_mode, Some(true));
        assert_eq!(tasks[0].env.variables[0].value, "1");
        assert_eq!(tasks[1].depend_on, ["a"]);
        assert!(tasks[1].ignore_failure && tasks[1].debug_session);
        assert_eq!(tasks[1].buildspec.as_deref(), Some("b.yml"));
        check(
            "version: 0.2\nbatch:\n  build-graph:\n    - identifier: a\n      depend-on: [c]\n    - identifier: b\n      depend-on: [a, ax]\n    - identifier: c\n      depend-on: [b]\n    - identifier: a\n    - identifier: bad-id\n    - buildspec: x.yml\n",
            &[
                "buildspec.yml:4:7: error: batch.build-graph has a dependency cycle: a -> c -> b -> a",
                "buildspec.yml:7:22: error: batch.build-graph: depend-on names unknown identifier \"ax\"",
                "  = help: did you mean \"a\"?",
                "buildspec.yml:10:19: error: batch.build-graph: duplicate identifier \"a\"",
                "buildspec.yml:11:19: error: batch.build-graph[4].identifier \"bad-id\" is not a valid identifier",
                "  = help: identifiers are letters, digits and underscores only",
                "buildspec.yml:12:7: error: batch.build-graph[5] has no identifier",
                "  = help: every batch build needs `identifier:` (letters, digits, underscores)",
            ],
        );
        check(
            "version: 0.2\nbatch:\n  build-graph:\n    - identifier: a\n      depend-on: a\n",
            &["buildspec.yml:4:7: error: batch.build-graph has a dependency cycle: a -> a"],
        );
    }

    #[test]
    fn batch_shapes() {
        check(
            "version: 0.2\nbatch:\n  fast-fail: no\n",
            &[
                "buildspec.yml:2:1: error: batch has no build-list, build-graph, build-matrix or build-fanout",
                "  = help: add one of them, or remove `batch:`",
            ],
        );
        check(
            "version: 0.2\nbatch:\n  build-list:\n    - identifier: a\n      depend-on: [b]\n  build-graph:\n    - identifier: b\n",
            &[
                "buildspec.yml:5:7: warning: batch.build-list[0].depend-on is only used in build-graph (CodeBuild ignores it here)",
                "  = help: use `build-graph:` instead of `build-list:` for dependencies",
                "buildspec.yml:6:3: error: batch has both build-list and build-graph",
                "  = help: a batch has exactly one of build-list, build-graph, build-matrix, build-fanout",
            ],
        );
        let spec = ok("version: 0.2\nbatch:\n  build-fanout:\n    parallelism: 5\n    ignore-failure: false\n");
        assert_eq!(
            spec.batch,
            Some(Batch::Fanout {
                fast_fail: false,
                parallelism: 5,
                ignore_failure: false
            })
        );
        check(
            "version: 0.2\nbatch:\n  build-fanout:\n    parallelism: many\n",
            &["buildspec.yml:4:18: error: batch.build-fanout.parallelism must be a positive whole number"],
        );
        check(
            "version: 0.2\nbatch:\n  build-list:\n    - identifier: a\n      env:\n        NAME: x\n",
            &[
                "buildspec.yml:6:9: warning: unknown key \"NAME\" in batch.build-list[0].env (CodeBuild ignores it)",
                "  = help: environment variables go under `variables:` (batch.build-list[0].env.variables.NAME)",
            ],
        );
    }

    #[test]
    fn batch_matrix() {
        let spec = ok("version: 0.2\nbatch:\n  build-matrix:\n    static:\n      ignore-failure: yes\n      env:\n        type: LINUX_CONTAINER\n        privileged-mode: true\n    dynamic:\n      buildspec:\n        - a.yml\n        - b.yml\n      env:\n        compute-type: BUILD_GENERAL1_SMALL\n        image:\n          - i1\n          - i2\n        variables:\n          MY_VAR:\n            - v1\n            - v2\n");
        let Some(Batch::Matrix { matrix, .. }) = spec.batch else {
            panic!("not a matrix");
        };
        assert!(matrix.ignore_failure);
        assert_eq!(matrix.static_env.privileged_mode, Some(true));
        assert_eq!(matrix.buildspecs, ["a.yml", "b.yml"]);
        assert_eq!(matrix.compute_types, ["BUILD_GENERAL1_SMALL"]);
        assert_eq!(matrix.images, ["i1", "i2"]);
        assert_eq!(
            matrix.variables,
            [(
                "MY_VAR".to_string(),
                vec!["v1".to_string(), "v2".to_string()]
            )]
        );
    }

    #[test]
    fn anchors_and_merges_in_buildspecs() {
        let p = check(
            "version: 0.2\nx-common: &common\n  - echo one\nphases:\n  pre_build:\n    commands: *common\n  build:\n    commands: *common\n",
            &[
                "buildspec.yml:2:1: warning: unknown key \"x-common\" (CodeBuild ignores it)",
                "  = help: valid keys here: version, run-as, env, proxy, batch, phases, reports, artifacts, cache",
            ],
        );
        let spec = p.spec.unwrap_or_default();
        assert_eq!(
            spec.phases.build.unwrap_or_default().commands[0].pos,
            Pos { line: 3, col: 5 }
        );
    }

    #[test]
    fn weird_inputs_give_diagnostics_not_panics() {
        check(
            "",
            &[
                "buildspec.yml:1:1: error: the buildspec is empty",
                &format!("  = help: {MINIMAL_HINT}"),
            ],
        );
        check(
            "---\n",
            &[
                "buildspec.yml:1:1: error: the buildspec is empty",
                &format!("  = help: {MINIMAL_HINT}"),
            ],
        );
        check(
            "just a string",
            &[
                "buildspec.yml:1:1: error: a buildspec must be a mapping, found a string",
                &format!("  = help: {MINIMAL_HINT}"),
            ],
        );
        check(
            "- version: 0.2\n",
            &[
                "buildspec.yml:1:1: error: a buildspec must be a mapping, found a list",
                &format!("  = help: {MINIMAL_HINT}"),
            ],
        );
        let p = parse("version: 0.2\nphases:\n\tbuild:\n");
        assert!(p.spec.is_none());
        assert!(p.diagnostics.iter().any(|d| d.is_error() && d.line == 3));
        let deep = format!("version: 0.2\nphases: {}\n", "[".repeat(300));
        assert!(parse(&deep).spec.is_none());
        let deep_block = format!("version: 0.2\nphases:\n  build: {}x\n", "- ".repeat(5000));
        assert!(parse(&deep_block).spec.is_none());
        for text in [
            "version: 0.2\nphases: {build: {commands: [[[]]]}}",
            "version: [0.2]\nphases: {build: {commands: {a: b}}}",
            "version: 0.2\nphases:\n  build:\n    commands:\n      - {}\n      - []\n      - ? [a]\n        : b\n",
            "? [complex]\n: key\nversion: 0.2\n",
            "version: 0.2\nbatch: []\n",
            "version: 0.2\nbatch:\n  build-graph: {}\n  build-matrix: x\n",
            "version: 0.2\nbatch:\n  build-matrix:\n    static: []\n    dynamic:\n      env: {variables: [a]}\n",
            "version: 0.2\nbatch:\n  build-list:\n    - 1\n    - []\n    - identifier: [x]\n",
            "version: 0.2\nreports: [a]\nartifacts: [b]\ncache: c\nproxy: d\nenv: e\nrun-as: {}\n",
            "version: 0.2\nreports:\n  a:\n  b: []\nartifacts:\n  secondary-artifacts: [x]\n",
            "version: 0.2\nphases:\n  install:\n    runtime-versions: [a]\n    on-failure: [b]\n",
            "\u{0}\u{1}\u{2}",
            "version: 0.2\nphases: &a {build: *a}\n",
            "%TAG ! tag:x:\n---\nversion: !x 0.2\n",
            "version: 0.2\n...\n---\nversion: 0.1\n",
            "version: 0.2\nphases:\n  build:\n    on-failure: RETRY-\n    commands: [x]\n",
            "version: 0.2\nphases:\n  build:\n    on-failure: RETRY-3-\n    commands: [x]\n",
        ] {
            let p = parse(text);
            assert_eq!(p.spec.is_some(), !has_errors(&p.diagnostics), "{text}");
            assert!(
                p.diagnostics.iter().all(|d| d.line >= 1 && d.col >= 1),
                "{text}"
            );
        }
    }

    #[test]
    fn large_inputs_stay_linear() {
        let n = 20_000;
        let mut text = String::from("version: 0.2\nbatch:\n  build-graph:\n");
        for i in 0..n {
            let dep = (i + 1) % n;
            text.push_str(&format!(
                "    - identifier: t{i}\n      depend-on: t{dep}\n"
            ));
        }
        let start = std::time::Instant::now();
        let p = parse(&text);
        assert!(p.spec.is_none());
        assert!(p.diagnostics[0].message.contains("dependency cycle"));
        let mut text = String::from("version: 0.2\nenv:\n  variables:\n");
        for i in 0..n {
            text.push_str(&format!("    V{i}: x\n    V{i}: y\n"));
        }
        text.push_str("phases: {build: {commands: [x]}}\n");
        let p = parse(&text);
        assert_eq!(p.diagnostics.len(), n);
        assert_eq!(p.spec.map(|s| s.env.variables.len()), Some(n));
        assert!(start.elapsed().as_secs() < 20);
    }

    #[test]
    fn suggestion_helpers() {
        assert_eq!(did_you_mean("pre-build", PHASE_NAMES), Some("pre_build"));
        assert_eq!(did_you_mean("Commands", PHASE_KEYS), Some("commands"));
        assert_eq!(
            did_you_mean("secrets_manager", ENV_KEYS),
            Some("secrets-manager")
        );
        assert_eq!(did_you_mean("zzz", ENV_KEYS), None);
        assert_eq!(quote_for_hint("a: b"), "\"a: b\"");
        assert_eq!(quote_for_hint("a: \"b\" 'c'"), "'a: \"b\" ''c'''");
        assert!(is_var_name("_A1") && !is_var_name("1A") && !is_var_name("A-B"));
    }
}
