use regex::bytes::Regex;

use super::allow::Allowlist;
use crate::scan::model::Severity;

/// Extra checks a rule can ask for beyond its regex (runner extension key `validate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validator {
    /// Header and payload must base64url-decode to JSON objects.
    Jwt,
    /// The file must have an `"auths"` object and the value must decode to `user:password`.
    DockerAuth,
}

/// One compiled detection rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub description: String,
    /// `None` for path-only rules (the file itself is the finding).
    pub regex: Option<Regex>,
    /// `None`: the first non-empty capture group (or the whole match), like gitleaks.
    pub secret_group: Option<usize>,
    /// Minimum Shannon entropy (bits/byte) of the secret.
    pub entropy: Option<f64>,
    /// Lower-cased keywords; the regex only runs on lines containing one of them.
    /// Empty: the regex runs on the whole file.
    pub keywords: Vec<String>,
    /// Only files whose path matches.
    pub path: Option<Regex>,
    pub tags: Vec<String>,
    pub severity: Severity,
    /// The rule checks the token's own format (prefix, length, structure).
    pub verified_format: bool,
    /// Never show any character of the secret (private keys).
    pub redact_fully: bool,
    /// Matches may span lines (detected from the regex, or `multiline = true`).
    pub multiline: bool,
    pub validate: Option<Validator>,
    pub allowlists: Vec<Allowlist>,
}

/// A loaded rule pack: rules in priority order plus the global allowlists.
#[derive(Debug, Clone, Default)]
pub struct RulePack {
    pub title: String,
    pub rules: Vec<Rule>,
    pub allowlists: Vec<Allowlist>,
    /// Non-fatal problems met while loading (ignored keys such as `[extend]`).
    pub warnings: Vec<String>,
}

/// What reports (SARIF `tool.driver.rules`) need to know about a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMeta {
    pub id: String,
    pub description: String,
    pub severity: Severity,
    pub tags: Vec<String>,
}

impl Rule {
    pub fn meta(&self) -> RuleMeta {
        RuleMeta {
            id: self.id.clone(),
            description: self.description.clone(),
            severity: self.severity,
            tags: self.tags.clone(),
        }
    }
}

/// True when a regex can match across lines, so its window must extend past the line.
pub(crate) fn looks_multiline(pattern: &str) -> bool {
    let escapes = ["\\n", "\\r", "[\\s\\S", "[\\S\\s", "\\x0a", "\\x0A"];
    if escapes.iter().any(|needle| pattern.contains(needle)) {
        return true;
    }
    // A group flag set that enables `s` (dot matches newline): `(?s)`, `(?is:`, ...
    pattern.match_indices("(?").any(|(i, _)| {
        pattern[i + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .any(|c| c == 's')
    })
}
