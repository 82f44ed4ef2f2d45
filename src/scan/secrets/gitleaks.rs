//! Loader for rule packs in gitleaks' TOML format (`.gitleaks.toml`).
//!
//! Supported: `title`, `[extend]` (ignored with a warning), `[[rules]]` with `id`,
//! `description`, `regex`, `secretGroup`, `entropy`, `keywords`, `path`, `tags`,
//! `[rules.allowlist]` / `[[rules.allowlists]]`, and the global `[allowlist]` /
//! `[[allowlists]]` (with `targetRules`). Allowlists take `description`, `condition`,
//! `regexTarget`, `regexes`, `paths`, `stopwords`, `commits`.
//!
//! Runner extensions (gitleaks ignores unknown keys): `severity`, `verifiedFormat`,
//! `redactFully`, `multiline`, `validate` (`jwt` or `docker-auth`).

use std::collections::HashSet;

use regex::bytes::{Regex, RegexBuilder};
use serde::Deserialize;

use super::allow::{Allowlist, Condition, RegexTarget};
use super::error::SecretsError;
use super::rules::{looks_multiline, Rule, RulePack, Validator};
use crate::scan::model::Severity;

/// Compiled-program size cap per regex; gitleaks' larger alternations need more
/// than the regex crate's 10 MiB default.
const REGEX_SIZE_LIMIT: usize = 32 << 20;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigToml {
    title: Option<String>,
    extend: Option<toml::Value>,
    #[serde(default)]
    rules: Vec<RuleToml>,
    allowlist: Option<AllowlistToml>,
    #[serde(default)]
    allowlists: Vec<AllowlistToml>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    fn as_f64(&self) -> f64 {
        match *self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuleToml {
    id: Option<String>,
    description: Option<String>,
    regex: Option<String>,
    secret_group: Option<i64>,
    entropy: Option<Number>,
    #[serde(default)]
    keywords: Vec<String>,
    path: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    allowlist: Option<AllowlistToml>,
    #[serde(default)]
    allowlists: Vec<AllowlistToml>,
    severity: Option<String>,
    verified_format: Option<bool>,
    redact_fully: Option<bool>,
    multiline: Option<bool>,
    validate: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AllowlistToml {
    description: Option<String>,
    condition: Option<String>,
    regex_target: Option<String>,
    #[serde(default)]
    regexes: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    stopwords: Vec<String>,
    #[serde(default)]
    commits: Vec<String>,
    #[serde(default)]
    target_rules: Vec<String>,
}

/// Compiles ASCII-only first (`\w`, `(?i)` and `.` on bytes: much smaller automata,
/// which is what secrets need), falling back to Unicode mode for patterns that need it
/// (`\p{L}`, non-ASCII literals).
fn compile(rule_id: &str, field: &'static str, pattern: &str) -> Result<Regex, SecretsError> {
    let translated = translate_go_regex(pattern);
    let build = |unicode: bool| {
        RegexBuilder::new(&translated)
            .unicode(unicode)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
    };
    build(false)
        .or_else(|_| build(true))
        .map_err(|e| SecretsError::InvalidRegex {
            rule_id: rule_id.to_string(),
            field,
            pattern: pattern.to_string(),
            message: e
                .to_string()
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_string(),
        })
}

/// Rewrites the RE2 (Go) constructs Rust's regex rejects: a `{` that does not start a
/// repetition (`{{ var }}`) is a literal in Go, and `\Q...\E` quotes a literal.
pub(crate) fn translate_go_regex(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    let mut in_class = false;
    let mut open_reps = 0usize;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' if chars.get(i + 1) == Some(&'Q') => {
                let body_start = i + 2;
                let mut end = body_start;
                while end < chars.len() && !(chars[end] == '\\' && chars.get(end + 1) == Some(&'E'))
                {
                    end += 1;
                }
                let literal: String = chars[body_start..end].iter().collect();
                out.push_str(&regex::escape(&literal));
                i = end + 2;
                continue;
            }
            '\\' => {
                out.push(c);
                if let Some(&next) = chars.get(i + 1) {
                    out.push(next);
                    i += 2;
                    // \p{..}, \x{..}: copy the braces verbatim.
                    if matches!(next, 'p' | 'P' | 'x') && chars.get(i) == Some(&'{') {
                        while i < chars.len() {
                            out.push(chars[i]);
                            i += 1;
                            if chars[i - 1] == '}' {
                                break;
                            }
                        }
                    }
                    continue;
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // A `]` right after `[` or `[^` is a literal member.
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i + 1) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            '{' if !in_class => {
                let rest: String = chars[i + 1..].iter().take(24).collect();
                let is_rep = rest.split_once('}').is_some_and(|(body, _)| {
                    let (lo, hi) = body.split_once(',').unwrap_or((body, "0"));
                    !lo.is_empty()
                        && lo.bytes().all(|b| b.is_ascii_digit())
                        && hi.bytes().all(|b| b.is_ascii_digit())
                });
                if is_rep {
                    open_reps += 1;
                    out.push('{');
                } else {
                    out.push_str("\\{");
                }
            }
            '}' if !in_class => {
                if open_reps > 0 {
                    open_reps -= 1;
                    out.push('}');
                } else {
                    out.push_str("\\}");
                }
            }
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

fn parse_severity(context: &str, value: &str) -> Result<Severity, SecretsError> {
    match value.to_ascii_lowercase().as_str() {
        "critical" => Ok(Severity::Critical),
        "high" => Ok(Severity::High),
        "medium" | "moderate" => Ok(Severity::Medium),
        "low" => Ok(Severity::Low),
        "unknown" | "info" | "none" => Ok(Severity::Unknown),
        _ => Err(SecretsError::InvalidValue {
            context: context.to_string(),
            field: "severity",
            value: value.to_string(),
            expected: "critical, high, medium, low, unknown",
        }),
    }
}

fn convert_allowlist(owner: &str, a: AllowlistToml) -> Result<Allowlist, SecretsError> {
    let condition = match a
        .condition
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("") | Some("OR") => Condition::Or,
        Some("AND") => Condition::And,
        Some(other) => {
            return Err(SecretsError::InvalidValue {
                context: format!("allowlist of `{owner}`"),
                field: "condition",
                value: other.to_string(),
                expected: "OR, AND",
            })
        }
    };
    let regex_target = match a.regex_target.as_deref() {
        None | Some("") | Some("secret") => RegexTarget::Secret,
        Some("match") => RegexTarget::Match,
        Some("line") => RegexTarget::Line,
        Some(other) => {
            return Err(SecretsError::InvalidValue {
                context: format!("allowlist of `{owner}`"),
                field: "regexTarget",
                value: other.to_string(),
                expected: "secret, match, line",
            })
        }
    };
    let regexes = a
        .regexes
        .iter()
        .map(|r| compile(owner, "allowlist", r))
        .collect::<Result<Vec<_>, _>>()?;
    let paths = a
        .paths
        .iter()
        .map(|r| compile(owner, "allowlist path", r))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Allowlist {
        description: a.description.unwrap_or_default(),
        condition,
        regex_target,
        regexes,
        paths,
        stopwords: a.stopwords.iter().map(|s| s.to_ascii_lowercase()).collect(),
        commits: a.commits,
        target_rules: a.target_rules,
    })
}

fn convert_rule(r: RuleToml, warnings: &mut Vec<String>) -> Result<Rule, SecretsError> {
    let id =
        r.id.filter(|s| !s.trim().is_empty())
            .ok_or(SecretsError::MissingRuleId)?;
    let regex_src = r.regex.filter(|s| !s.is_empty());
    let regex = regex_src
        .as_deref()
        .map(|p| compile(&id, "rule", p))
        .transpose()?;
    let path = r
        .path
        .filter(|s| !s.is_empty())
        .map(|p| compile(&id, "path", &p))
        .transpose()?;
    if regex.is_none() && path.is_none() {
        return Err(SecretsError::EmptyRule { rule_id: id });
    }
    let secret_group = match (r.secret_group, &regex) {
        (Some(g), Some(re)) if g > 0 => {
            let groups = re.captures_len().saturating_sub(1);
            let g = usize::try_from(g).unwrap_or(usize::MAX);
            if g > groups {
                return Err(SecretsError::InvalidSecretGroup {
                    rule_id: id,
                    group: g,
                    groups,
                });
            }
            Some(g)
        }
        _ => None,
    };
    let severity = match r.severity.as_deref() {
        Some(s) => parse_severity(&format!("rule `{id}`"), s)?,
        None => Severity::High,
    };
    let validate = match r.validate.as_deref() {
        None | Some("") => None,
        Some("jwt") => Some(Validator::Jwt),
        Some("docker-auth") => Some(Validator::DockerAuth),
        Some(other) => {
            return Err(SecretsError::InvalidValue {
                context: format!("rule `{id}`"),
                field: "validate",
                value: other.to_string(),
                expected: "jwt, docker-auth",
            })
        }
    };
    let mut allowlists = Vec::new();
    for a in r.allowlist.into_iter().chain(r.allowlists) {
        allowlists.push(convert_allowlist(&id, a)?);
    }
    let entropy = r.entropy.map(|e| e.as_f64()).filter(|e| *e > 0.0);
    let mut keywords: Vec<String> = r
        .keywords
        .iter()
        .map(|k| k.to_ascii_lowercase())
        .filter(|k| !k.is_empty())
        .collect();
    keywords.sort();
    keywords.dedup();
    if regex.is_none() && !keywords.is_empty() {
        warnings.push(format!(
            "rule `{id}`: keywords are ignored on a path-only rule"
        ));
    }
    let multiline = r
        .multiline
        .unwrap_or_else(|| regex_src.as_deref().is_some_and(looks_multiline));
    Ok(Rule {
        description: r.description.unwrap_or_else(|| id.clone()),
        id,
        regex,
        secret_group,
        entropy,
        keywords,
        path,
        tags: r.tags,
        severity,
        verified_format: r.verified_format.unwrap_or(false),
        redact_fully: r.redact_fully.unwrap_or(false),
        multiline,
        validate,
        allowlists,
    })
}

/// Parses and compiles a gitleaks-format TOML rule pack.
pub(crate) fn parse_rule_pack(text: &str) -> Result<RulePack, SecretsError> {
    let cfg: ConfigToml = toml::from_str(text)?;
    let mut warnings = Vec::new();
    if cfg.extend.is_some() {
        warnings.push(
            "[extend] is ignored: runner does not load gitleaks' built-in config; \
             copy the rules you need into this file"
                .to_string(),
        );
    }
    let mut rules = Vec::with_capacity(cfg.rules.len());
    let mut seen = HashSet::new();
    for r in cfg.rules {
        let rule = convert_rule(r, &mut warnings)?;
        if !seen.insert(rule.id.clone()) {
            return Err(SecretsError::DuplicateRuleId(rule.id));
        }
        rules.push(rule);
    }
    let mut allowlists = Vec::new();
    for a in cfg.allowlist.into_iter().chain(cfg.allowlists) {
        let mut a = convert_allowlist("global allowlist", a)?;
        if a.target_rules.is_empty() {
            allowlists.push(a);
            continue;
        }
        // A targeted global allowlist behaves as a rule allowlist of each target.
        for target in &a.target_rules {
            if !seen.contains(target) {
                warnings.push(format!(
                    "global allowlist targets unknown rule `{target}`; check targetRules"
                ));
            }
        }
        let targets = std::mem::take(&mut a.target_rules);
        for rule in rules.iter_mut().filter(|r| targets.contains(&r.id)) {
            rule.allowlists.push(a.clone());
        }
    }
    Ok(RulePack {
        title: cfg.title.unwrap_or_default(),
        rules,
        allowlists,
        warnings,
    })
}
