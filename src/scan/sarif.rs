//! SARIF 2.1.0 log for secret and vulnerability findings, in the shape GitHub code
//! scanning accepts: relative `artifactLocation.uri` under `%SRCROOT%`, a `region`
//! with `startLine`, `partialFingerprints`, and rules carrying `security-severity`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::scan::model::{
    Location, SecretFinding, Severity, Undecided, Unreadable, VulnFinding, UNDECIDED_ID,
    UNREADABLE_ID,
};
use crate::scan::secrets::RuleMeta;

pub const SARIF_SCHEMA: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";
pub const SRCROOT: &str = "%SRCROOT%";
const TOOL_NAME: &str = "runner";

/// GitHub's `security-severity` scale (a numeric string).
pub fn security_severity(s: Severity) -> Option<&'static str> {
    match s {
        Severity::Critical => Some("9.5"),
        Severity::High => Some("8.0"),
        Severity::Medium => Some("5.5"),
        Severity::Low => Some("3.0"),
        Severity::Unknown => None,
    }
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Unknown => "note",
    }
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A relative URI reference: `/`-separated, no leading `/`, percent-encoded.
fn relative_uri(path: &str) -> String {
    let trimmed = path.trim_start_matches("./").trim_start_matches('/');
    let trimmed = if trimmed.is_empty() { "." } else { trimmed };
    let mut out = String::with_capacity(trimmed.len());
    for b in trimmed.replace('\\', "/").bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn physical_location(loc: &Location) -> Value {
    let mut region = Map::new();
    region.insert("startLine".into(), json!(loc.line.unwrap_or(1).max(1)));
    if let (Some(_), Some(c)) = (loc.line, loc.column) {
        region.insert("startColumn".into(), json!(c.max(1)));
    }
    json!({
        "artifactLocation": { "uri": relative_uri(&loc.path), "uriBaseId": SRCROOT },
        "region": Value::Object(region),
    })
}

fn rule_object(
    id: &str,
    short: &str,
    full: &str,
    help: &str,
    severity: Severity,
    tags: &[String],
    help_uri: Option<String>,
) -> Value {
    let mut props = Map::new();
    if let Some(s) = security_severity(severity) {
        props.insert("security-severity".into(), json!(s));
    }
    props.insert("tags".into(), json!(tags));
    let mut rule = json!({
        "id": id,
        "shortDescription": { "text": short },
        "fullDescription": { "text": full },
        "help": { "text": help, "markdown": help },
        "defaultConfiguration": { "level": level(severity) },
        "properties": Value::Object(props),
    });
    if let (Some(uri), Some(obj)) = (help_uri, rule.as_object_mut()) {
        obj.insert("helpUri".into(), json!(uri));
    }
    rule
}

struct RuleTable {
    rules: Vec<Value>,
    index: BTreeMap<String, usize>,
}

impl RuleTable {
    fn index_of(&mut self, id: &str, make: impl FnOnce() -> Value) -> usize {
        if let Some(&i) = self.index.get(id) {
            return i;
        }
        self.rules.push(make());
        let i = self.rules.len() - 1;
        self.index.insert(id.to_string(), i);
        i
    }
}

fn secret_rule(meta: Option<&RuleMeta>, f: &SecretFinding) -> Value {
    let (description, severity, extra_tags) = match meta {
        Some(m) => (m.description.as_str(), m.severity, m.tags.clone()),
        None => (f.description.as_str(), f.severity, Vec::new()),
    };
    let mut tags = vec!["security".to_string(), "secret".to_string()];
    tags.extend(
        extra_tags
            .into_iter()
            .filter(|t| t != "security" && t != "secret"),
    );
    let help = format!(
        "{description}. Revoke or rotate the credential, remove it from the source and its \
         history, and load it at run time from a secret store. If it is a false positive, add \
         `runner:allow` in a comment on the line or record it in a baseline."
    );
    rule_object(
        &f.rule_id,
        description,
        description,
        &help,
        severity,
        &tags,
        None,
    )
}

fn vuln_rule(v: &VulnFinding) -> Value {
    let summary = if v.summary.is_empty() {
        v.id.as_str()
    } else {
        v.summary.as_str()
    };
    let mut help = format!(
        "{summary}\n\nAffected package: {} {} ({}).",
        v.package.name, v.package.version, v.package.ecosystem
    );
    match &v.fixed {
        Some(fixed) => help.push_str(&format!(" Upgrade to {fixed} or later.")),
        None => help.push_str(" No fixed version is known."),
    }
    if !v.aliases.is_empty() {
        help.push_str(&format!(" Aliases: {}.", v.aliases.join(", ")));
    }
    let tags = vec![
        "security".to_string(),
        "vulnerability".to_string(),
        v.package.ecosystem.clone(),
    ];
    let short: String = summary.chars().take(200).collect();
    rule_object(
        &v.id,
        &short,
        summary,
        &help,
        v.severity,
        &tags,
        Some(format!("https://osv.dev/vulnerability/{}", v.id)),
    )
}

/// Builds one SARIF 2.1.0 log with a single run holding both kinds of findings.
/// `secret_rules` describes the secret rules (from `SecretScanner::rule_meta`); only
/// rules referenced by a result are listed.
pub fn sarif_log(
    tool_version: &str,
    secrets: &[SecretFinding],
    vulns: &[VulnFinding],
    secret_rules: &[RuleMeta],
) -> Value {
    let mut table = RuleTable {
        rules: Vec::new(),
        index: BTreeMap::new(),
    };
    let mut results = Vec::with_capacity(secrets.len() + vulns.len());

    for f in secrets {
        let meta = secret_rules.iter().find(|m| m.id == f.rule_id);
        let idx = table.index_of(&f.rule_id, || secret_rule(meta, f));
        let mut location = json!({ "physicalLocation": physical_location(&f.location) });
        let mut props = Map::new();
        props.insert("redacted".into(), json!(f.redacted));
        props.insert("verifiedFormat".into(), json!(f.verified_format));
        if let Some(layer) = &f.location.layer {
            props.insert("layer".into(), json!(layer));
            if let Some(obj) = location.as_object_mut() {
                obj.insert(
                    "logicalLocations".into(),
                    json!([{ "name": layer, "kind": "layer" }]),
                );
            }
        }
        results.push(json!({
            "ruleId": f.rule_id,
            "ruleIndex": idx,
            "level": level(f.severity),
            "message": { "text": format!("{} ({}) found: {}", f.description, f.rule_id, f.redacted) },
            "locations": [location],
            "partialFingerprints": { "secretFingerprint/v1": f.fingerprint },
            "properties": Value::Object(props),
        }));
    }

    for v in vulns {
        let idx = table.index_of(&v.id, || vuln_rule(v));
        let p = &v.package;
        let pkg = format!("{}@{}", p.name, p.version);
        let mut logical = json!({ "name": pkg, "fullyQualifiedName": p.purl, "kind": "package" });
        if let (Some(layer), Some(obj)) = (&p.location.layer, logical.as_object_mut()) {
            obj.insert(
                "decoratedName".into(),
                json!(format!("{pkg} in layer {layer}")),
            );
        }
        let mut props = Map::new();
        props.insert("package".into(), json!(p.name));
        props.insert("version".into(), json!(p.version));
        props.insert("ecosystem".into(), json!(p.ecosystem));
        props.insert("purl".into(), json!(p.purl));
        if let Some(layer) = &p.location.layer {
            props.insert("layer".into(), json!(layer));
        }
        if let Some(fixed) = &v.fixed {
            props.insert("fixed".into(), json!(fixed));
        }
        if !v.aliases.is_empty() {
            props.insert("aliases".into(), json!(v.aliases));
        }
        if let Some(cvss) = &v.cvss {
            props.insert("cvss".into(), json!(cvss));
        }
        let fixed_text = v.fixed.as_deref().map_or_else(
            || "no fixed version known".to_string(),
            |f| format!("fixed in {f}"),
        );
        results.push(json!({
            "ruleId": v.id,
            "ruleIndex": idx,
            "level": level(v.severity),
            "message": { "text": format!("{pkg} ({}) is affected by {}: {} ({fixed_text})", p.ecosystem, v.id, v.summary) },
            "locations": [{
                "physicalLocation": physical_location(&p.location),
                "logicalLocations": [logical],
            }],
            "partialFingerprints": {
                "vulnFingerprint/v1": sha256_hex(&format!("{}:{}:{}:{}", v.id, p.purl, p.location.path, p.location.layer.as_deref().unwrap_or(""))),
            },
            "properties": Value::Object(props),
        }));
    }

    let mut driver = json!({
        "name": TOOL_NAME,
        "version": tool_version,
        "rules": table.rules,
    });
    if is_semver(tool_version) {
        if let Some(obj) = driver.as_object_mut() {
            obj.insert("semanticVersion".into(), json!(tool_version));
        }
    }
    json!({
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": driver },
            "originalUriBaseIds": {
                SRCROOT: { "description": { "text": "The scanned directory or image root." } }
            },
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    })
}

/// Adds one `error` result per input that could not be read (rule `unreadable-input`),
/// at the file, to a log made by [`sarif_log`].
pub fn add_unreadable(log: &mut Value, unreadable: &[Unreadable]) {
    if unreadable.is_empty() {
        return;
    }
    let Some(run) = log.pointer_mut("/runs/0") else {
        return;
    };
    let rule_index = match run
        .pointer_mut("/tool/driver/rules")
        .and_then(Value::as_array_mut)
    {
        Some(rules) => {
            rules.push(rule_object(
                UNREADABLE_ID,
                "An input the scan could not read",
                "A lockfile that could not be opened or parsed, or is too large: nothing in it was checked for vulnerabilities.",
                "Fix or regenerate the file with its package manager; or accept it in the scan policy with an allow entry (id: unreadable-input, path, reason), or set fail-on-unreadable: false.",
                Severity::High,
                &["security".to_string()],
                None,
            ));
            rules.len() - 1
        }
        None => return,
    };
    let Some(results) = run.get_mut("results").and_then(Value::as_array_mut) else {
        return;
    };
    for u in unreadable {
        let location = Location {
            path: u.path.clone(),
            ..Location::default()
        };
        results.push(json!({
            "ruleId": UNREADABLE_ID,
            "ruleIndex": rule_index,
            "level": "error",
            "message": { "text": format!("{} could not be scanned: {}", u.path, u.reason) },
            "locations": [{ "physicalLocation": physical_location(&location) }],
            "partialFingerprints": { "unreadableFingerprint/v1": sha256_hex(&format!("{UNREADABLE_ID}:{}", u.path)) },
        }));
    }
}

/// Adds one `error` result per package the advisory check could not decide (rule
/// `undecided`), at the package database it was read from, to a log made by
/// [`sarif_log`]: an undecided package is reported, never dropped as clean.
pub fn add_undecided(log: &mut Value, undecided: &[Undecided]) {
    if undecided.is_empty() {
        return;
    }
    let Some(run) = log.pointer_mut("/runs/0") else {
        return;
    };
    let rule_index = match run
        .pointer_mut("/tool/driver/rules")
        .and_then(Value::as_array_mut)
    {
        Some(rules) => {
            rules.push(rule_object(
                UNDECIDED_ID,
                "A package whose advisories could not be checked",
                "The advisory data has no entry for the package's OS ecosystem, or the package's version cannot be ordered against an advisory's ranges: it is not known to be clean.",
                "Add the ecosystem's advisory data (runner db update, or OSV records), or check the package by hand and accept it in the scan policy with an allow entry (id: undecided, package, reason), or set fail-on-undecided: false.",
                Severity::High,
                &["security".to_string()],
                None,
            ));
            rules.len() - 1
        }
        None => return,
    };
    let Some(results) = run.get_mut("results").and_then(Value::as_array_mut) else {
        return;
    };
    for u in undecided {
        let p = &u.package;
        results.push(json!({
            "ruleId": UNDECIDED_ID,
            "ruleIndex": rule_index,
            "level": "error",
            "message": { "text": format!("{}@{} ({}) was not decided: {}", p.name, p.version, p.ecosystem, u.reason) },
            "locations": [{ "physicalLocation": physical_location(&p.location) }],
            "partialFingerprints": { "undecidedFingerprint/v1": sha256_hex(&format!("{UNDECIDED_ID}:{}:{}:{}", p.purl, p.location.path, u.advisories.join(","))) },
        }));
    }
}

fn is_semver(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests;
