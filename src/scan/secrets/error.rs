use std::path::PathBuf;

/// Everything that can go wrong loading rules, baselines or scanning a tree.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("the secret rule pack is not valid TOML: {0}; fix the file (gitleaks' config format) and run again")]
    RulePackToml(#[from] toml::de::Error),

    #[error("rule `{rule_id}`: its {field} regex `{pattern}` is not supported: {message}; rewrite it in RE2/Rust regex syntax (no look-around or back-references)")]
    InvalidRegex {
        rule_id: String,
        field: &'static str,
        pattern: String,
        message: String,
    },

    #[error("rule `{rule_id}` has neither `regex` nor `path`; give it at least one")]
    EmptyRule { rule_id: String },

    #[error("a rule has no `id`; every [[rules]] entry needs a unique id")]
    MissingRuleId,

    #[error("rule id `{0}` appears more than once in the rule pack; rule ids must be unique")]
    DuplicateRuleId(String),

    #[error("rule `{rule_id}`: secretGroup {group} does not exist, the regex has only {groups} capture group(s)")]
    InvalidSecretGroup {
        rule_id: String,
        group: usize,
        groups: usize,
    },

    #[error("{context}: unknown {field} `{value}`; expected one of: {expected}")]
    InvalidValue {
        context: String,
        field: &'static str,
        value: String,
        expected: &'static str,
    },

    #[error("cannot build the keyword matcher from the rule pack's keywords: {0}; shorten or remove unusual keywords")]
    Keywords(String),

    #[error("cannot read {path}: {source}; check that it exists and is readable")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot scan {path}: it is not a directory or file that can be read")]
    NotFound { path: PathBuf },

    #[error("baseline {path} is not a valid secrets baseline: {message}; regenerate it from a fresh scan or delete it")]
    Baseline { path: PathBuf, message: String },
}
