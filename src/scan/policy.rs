//! The scan policy: which findings fail a build. Pure: text in, verdict out.
//!
//! ```yaml
//! fail-on-unreadable: true       # a lockfile that cannot be read fails (fail closed)
//! fail-on-undecided: true        # a package that could not be checked fails (fail closed)
//! secrets:
//!   fail-on: verified            # verified | any | none
//! vulnerabilities:
//!   fail-on-severity: HIGH
//!   only-fixable: true
//!   unknown-as: MEDIUM
//! allow:
//!   - id: RUSTSEC-2020-0105
//!     package: smallvec
//!     path: "fixtures/**"
//!     reason: "..."
//!     expires: 2027-03-31
//! ```

use super::model::{
    SecretFinding, Severity, Undecided, Unreadable, VulnFinding, UNDECIDED_ID, UNREADABLE_ID,
};
use crate::buildspec::yaml::{self, Node};
use crate::buildspec::Diagnostic;
use serde::Serialize;

pub const DEFAULT_POLICY: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/scanners/policy.yml"));

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretsFailOn {
    Verified,
    Any,
    None,
    /// A finding of this severity or above (`runner build --fail-on`).
    #[serde(rename = "severity")]
    AtLeast(Severity),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AllowEntry {
    pub id: String,
    pub package: Option<String>,
    pub path: Option<String>,
    pub fingerprint: Option<String>,
    pub reason: String,
    /// `YYYY-MM-DD`; the entry applies through that day.
    pub expires: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    /// An input the scanners could not read fails the policy (unless an allow entry with
    /// id `unreadable-input` and a matching path accepts it).
    pub fail_on_unreadable: bool,
    /// A package the advisory check could not decide (its OS ecosystem has no advisory
    /// data, or its version cannot be ordered) fails the policy, unless an allow entry
    /// with id `undecided` (and optionally its package and path) accepts it. Default
    /// true: a gate fails closed, as an undecided package may well be vulnerable.
    pub fail_on_undecided: bool,
    pub secrets_fail_on: SecretsFailOn,
    pub fail_on_severity: Severity,
    pub only_fixable: bool,
    pub unknown_as: Severity,
    /// Scans warn when the advisory data is older than this many hours (0: never);
    /// `vulnerabilities.max-data-age-hours`.
    pub max_data_age_hours: u64,
    pub allow: Vec<AllowEntry>,
}

impl Policy {
    /// `runner build --fail-on SEVERITY`: any finding at or above `severity` fails, a
    /// secret (whatever its format) or a vulnerability, in place of the file's
    /// thresholds; the allow list, `only-fixable` and the fail-on-unreadable/undecided
    /// settings stay as the file says.
    pub fn fail_on(&mut self, severity: Severity) {
        self.fail_on_severity = severity;
        self.secrets_fail_on = SecretsFailOn::AtLeast(severity);
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            fail_on_unreadable: true,
            fail_on_undecided: true,
            secrets_fail_on: SecretsFailOn::Verified,
            fail_on_severity: Severity::High,
            only_fixable: true,
            unknown_as: Severity::Medium,
            max_data_age_hours: crate::scan::osv::DEFAULT_MAX_AGE_HOURS,
            allow: Vec::new(),
        }
    }
}

fn severity(text: &str) -> Option<Severity> {
    match text.to_ascii_uppercase().as_str() {
        "LOW" => Some(Severity::Low),
        "MEDIUM" | "MODERATE" => Some(Severity::Medium),
        "HIGH" => Some(Severity::High),
        "CRITICAL" => Some(Severity::Critical),
        "UNKNOWN" => Some(Severity::Unknown),
        _ => None,
    }
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// Parses a policy file; errors carry line and column.
pub fn parse(text: &str) -> (Option<Policy>, Vec<Diagnostic>) {
    let loaded = yaml::load(text);
    let mut diags = loaded.diagnostics;
    let mut p = Policy::default();
    let str_of = |n: &Node| n.as_str().map(str::to_string);
    match &loaded.root {
        None => {}
        Some(Node::Map { entries, .. }) => {
            for (k, v) in entries {
                match (k.as_str(), v) {
                    (Some("secrets"), Node::Map { entries, .. }) => {
                        for (k2, v2) in entries {
                            match (k2.as_str(), str_of(v2).as_deref()) {
                                (Some("fail-on"), Some("verified")) => {
                                    p.secrets_fail_on = SecretsFailOn::Verified
                                }
                                (Some("fail-on"), Some("any")) => {
                                    p.secrets_fail_on = SecretsFailOn::Any
                                }
                                (Some("fail-on"), Some("none")) => {
                                    p.secrets_fail_on = SecretsFailOn::None
                                }
                                _ => diags.push(Diagnostic::error(
                                    k2.pos(),
                                    "secrets: expected `fail-on: verified | any | none`",
                                )),
                            }
                        }
                    }
                    (Some("vulnerabilities"), Node::Map { entries, .. }) => {
                        for (k2, v2) in entries {
                            let val = str_of(v2).unwrap_or_default();
                            match k2.as_str() {
                                Some("fail-on-severity") => match severity(&val) {
                                    Some(s) => p.fail_on_severity = s,
                                    None => diags.push(Diagnostic::error(v2.pos(), format!("fail-on-severity must be LOW, MEDIUM, HIGH or CRITICAL, found {val:?}"))),
                                },
                                Some("unknown-as") => match severity(&val) {
                                    Some(s) => p.unknown_as = s,
                                    None => diags.push(Diagnostic::error(v2.pos(), format!("unknown-as must be a severity, found {val:?}"))),
                                },
                                Some("only-fixable") => match val.as_str() {
                                    "true" => p.only_fixable = true,
                                    "false" => p.only_fixable = false,
                                    _ => diags.push(Diagnostic::error(v2.pos(), "only-fixable must be true or false")),
                                },
                                Some("max-data-age-hours") => match val.parse::<u64>() {
                                    Ok(h) => p.max_data_age_hours = h,
                                    Err(_) => diags.push(Diagnostic::error(v2.pos(), format!("max-data-age-hours must be a whole number of hours (0: never warn), found {val:?}"))),
                                },
                                _ => diags.push(Diagnostic::warning(k2.pos(), "unknown key in vulnerabilities (ignored)")),
                            }
                        }
                    }
                    (Some("allow"), Node::Seq { items, .. }) => {
                        for item in items {
                            let Node::Map { entries, .. } = item else {
                                diags.push(Diagnostic::error(item.pos(), "allow entries are mappings with id, reason and optionally package, path, fingerprint, expires"));
                                continue;
                            };
                            let mut e = AllowEntry {
                                id: String::new(),
                                package: None,
                                path: None,
                                fingerprint: None,
                                reason: String::new(),
                                expires: None,
                            };
                            for (k2, v2) in entries {
                                let val = str_of(v2);
                                match k2.as_str() {
                                    Some("id") => e.id = val.unwrap_or_default(),
                                    Some("package") => e.package = val,
                                    Some("path") => e.path = val,
                                    Some("fingerprint") => e.fingerprint = val,
                                    Some("reason") => e.reason = val.unwrap_or_default(),
                                    Some("expires") => {
                                        if !val.as_deref().is_some_and(is_date) {
                                            diags.push(Diagnostic::error(
                                                v2.pos(),
                                                "expires must be a date, YYYY-MM-DD",
                                            ));
                                        }
                                        e.expires = val;
                                    }
                                    _ => diags.push(Diagnostic::warning(
                                        k2.pos(),
                                        "unknown key in an allow entry (ignored)",
                                    )),
                                }
                            }
                            if e.id.is_empty() && e.fingerprint.is_none() {
                                diags.push(Diagnostic::error(item.pos(), "an allow entry needs an id (advisory or rule) or a fingerprint"));
                            } else if e.reason.trim().is_empty() {
                                diags.push(Diagnostic::error(item.pos(), "an allow entry needs a reason: say why the finding is accepted"));
                            } else {
                                p.allow.push(e);
                            }
                        }
                    }
                    (Some("allow"), Node::Null { .. }) => {}
                    (Some("fail-on-unreadable"), v) => match v.as_str() {
                        Some("true") => p.fail_on_unreadable = true,
                        Some("false") => p.fail_on_unreadable = false,
                        _ => diags.push(Diagnostic::error(
                            v.pos(),
                            "fail-on-unreadable must be true or false",
                        )),
                    },
                    (Some("fail-on-undecided"), v) => match v.as_str() {
                        Some("true") => p.fail_on_undecided = true,
                        Some("false") => p.fail_on_undecided = false,
                        _ => diags.push(Diagnostic::error(
                            v.pos(),
                            "fail-on-undecided must be true or false",
                        )),
                    },
                    (Some(other), _) => diags.push(Diagnostic::warning(
                        k.pos(),
                        format!("unknown key {other:?} in the policy (ignored)"),
                    )),
                    (None, _) => diags.push(Diagnostic::error(k.pos(), "keys must be strings")),
                }
            }
        }
        Some(other) => diags.push(Diagnostic::error(other.pos(), "a policy is a mapping")),
    }
    let ok = !crate::buildspec::has_errors(&diags);
    (ok.then_some(p), diags)
}

/// A finding that fails the policy, or one an allow entry accepted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judged {
    /// Advisory id or secret rule id.
    pub id: String,
    /// Package name@version, or path:line.
    pub subject: String,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Verdict {
    pub violations: Vec<Judged>,
    pub allowed: Vec<Judged>,
    /// Allow entries past their expiry (they no longer apply): `id (expired DATE)`.
    pub expired: Vec<String>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

fn glob_match(pattern: &str, path: &str) -> bool {
    globset::Glob::new(pattern)
        .map(|g| g.compile_matcher().is_match(path))
        .unwrap_or(false)
}

/// Judges the findings. `today` is `YYYY-MM-DD` (given, so this stays pure).
pub fn evaluate(
    policy: &Policy,
    secrets: &[SecretFinding],
    vulns: &[VulnFinding],
    unreadable: &[Unreadable],
    today: &str,
) -> Verdict {
    evaluate_all(policy, secrets, vulns, unreadable, &[], today)
}

/// [`evaluate`], with the packages the advisory check could not decide.
pub fn evaluate_all(
    policy: &Policy,
    secrets: &[SecretFinding],
    vulns: &[VulnFinding],
    unreadable: &[Unreadable],
    undecided: &[Undecided],
    today: &str,
) -> Verdict {
    let mut v = Verdict::default();
    let live: Vec<&AllowEntry> = policy
        .allow
        .iter()
        .filter(|a| match &a.expires {
            Some(date) if date.as_str() < today => {
                v.expired.push(format!(
                    "{} (expired {date})",
                    if a.id.is_empty() {
                        a.fingerprint.as_deref().unwrap_or("")
                    } else {
                        &a.id
                    }
                ));
                false
            }
            _ => true,
        })
        .collect();
    for u in unreadable.iter().filter(|_| policy.fail_on_unreadable) {
        let allow = live.iter().find(|a| {
            a.id == UNREADABLE_ID
                && a.path.as_ref().is_none_or(|p| glob_match(p, &u.path))
                && a.package.is_none()
                && a.fingerprint.is_none()
        });
        let judged = Judged {
            id: UNREADABLE_ID.to_string(),
            subject: format!("{}: {}", u.path, u.reason),
            severity: Severity::High,
            reason: allow.map(|a| a.reason.clone()),
        };
        if allow.is_some() {
            v.allowed.push(judged);
        } else {
            v.violations.push(judged);
        }
    }
    for u in undecided.iter().filter(|_| policy.fail_on_undecided) {
        let p = &u.package;
        let allow = live.iter().find(|a| {
            a.id == UNDECIDED_ID
                && a.package.as_ref().is_none_or(|n| *n == p.name)
                && a.path
                    .as_ref()
                    .is_none_or(|g| glob_match(g, &p.location.path))
                && a.fingerprint.is_none()
        });
        let judged = Judged {
            id: UNDECIDED_ID.to_string(),
            subject: format!(
                "{}@{} ({}, {}): {}",
                p.name, p.version, p.ecosystem, p.location.path, u.reason
            ),
            severity: Severity::High,
            reason: allow.map(|a| a.reason.clone()),
        };
        if allow.is_some() {
            v.allowed.push(judged);
        } else {
            v.violations.push(judged);
        }
    }
    for s in secrets {
        let fails = match policy.secrets_fail_on {
            SecretsFailOn::None => false,
            SecretsFailOn::Verified => s.verified_format,
            SecretsFailOn::Any => true,
            SecretsFailOn::AtLeast(min) => s.severity >= min,
        };
        if !fails {
            continue;
        }
        let subject = format!("{}:{}", s.location.path, s.location.line.unwrap_or(0));
        let allow = live.iter().find(|a| {
            (a.id.is_empty() || a.id == s.rule_id)
                && a.fingerprint.as_ref().is_none_or(|f| *f == s.fingerprint)
                && a.path
                    .as_ref()
                    .is_none_or(|p| glob_match(p, &s.location.path))
                && a.package.is_none()
        });
        let judged = Judged {
            id: s.rule_id.clone(),
            subject,
            severity: s.severity,
            reason: allow.map(|a| a.reason.clone()),
        };
        if allow.is_some() {
            v.allowed.push(judged);
        } else {
            v.violations.push(judged);
        }
    }
    for f in vulns {
        let sev = if f.severity == Severity::Unknown {
            policy.unknown_as
        } else {
            f.severity
        };
        if sev < policy.fail_on_severity || (policy.only_fixable && f.fixed.is_none()) {
            continue;
        }
        let allow = live.iter().find(|a| {
            (a.id == f.id || f.aliases.contains(&a.id))
                && a.package.as_ref().is_none_or(|p| *p == f.package.name)
                && a.path
                    .as_ref()
                    .is_none_or(|p| glob_match(p, &f.package.location.path))
                && a.fingerprint.is_none()
        });
        let judged = Judged {
            id: f.id.clone(),
            subject: format!(
                "{}@{} ({})",
                f.package.name, f.package.version, f.package.location.path
            ),
            severity: sev,
            reason: allow.map(|a| a.reason.clone()),
        };
        if allow.is_some() {
            v.allowed.push(judged);
        } else {
            v.violations.push(judged);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::scan::model::{Location, Package};

    fn vuln(id: &str, sev: Severity, fixed: Option<&str>) -> VulnFinding {
        VulnFinding {
            id: id.into(),
            aliases: vec!["CVE-2020-1".into()],
            summary: String::new(),
            severity: sev,
            cvss: None,
            package: Package {
                ecosystem: "crates.io".into(),
                name: "smallvec".into(),
                version: "0.6.9".into(),
                source_name: None,
                purl: "pkg:cargo/smallvec@0.6.9".into(),
                location: Location {
                    path: "Cargo.lock".into(),
                    ..Default::default()
                },
            },
            fixed: fixed.map(str::to_string),
        }
    }

    fn secret(verified: bool) -> SecretFinding {
        SecretFinding {
            rule_id: "github-pat".into(),
            description: String::new(),
            location: Location {
                path: "src/config.py".into(),
                line: Some(3),
                ..Default::default()
            },
            redacted: "ghp_***".into(),
            fingerprint: "abc".into(),
            severity: Severity::High,
            verified_format: verified,
        }
    }

    #[test]
    fn default_policy_parses_and_judges() {
        let (p, d) = parse(DEFAULT_POLICY);
        assert!(d.is_empty(), "{d:?}");
        let p = p.unwrap();
        assert_eq!(p, Policy::default());
        let v = evaluate(
            &p,
            &[secret(true), secret(false)],
            &[
                vuln("RUSTSEC-1", Severity::Critical, Some("0.6.10")),
                vuln("RUSTSEC-2", Severity::Critical, None),
                vuln("RUSTSEC-3", Severity::Medium, Some("1")),
            ],
            &[],
            "2026-11-23",
        );
        let ids: Vec<&str> = v.violations.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ["github-pat", "RUSTSEC-1"]);
        assert!(!v.passed());
    }

    #[test]
    fn max_data_age_is_configurable() {
        assert_eq!(Policy::default().max_data_age_hours, 24);
        let (p, d) = parse("vulnerabilities:\n  max-data-age-hours: 168\n");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(p.unwrap().max_data_age_hours, 168);
        let (p, d) = parse("vulnerabilities:\n  max-data-age-hours: a week\n");
        assert!(p.is_none());
        assert!(d[0].message.contains("max-data-age-hours"), "{d:?}");
    }

    #[test]
    fn allow_entries_need_reasons_and_expire() {
        let (p, d) = parse("allow:\n  - id: CVE-2020-1\n    package: smallvec\n    reason: not reachable\n    expires: 2026-12-31\n  - id: github-pat\n    path: \"src/**\"\n    reason: test token\n    expires: 2026-01-01\n");
        assert!(d.is_empty(), "{d:?}");
        let p = p.unwrap();
        let v = evaluate(
            &p,
            &[secret(true)],
            &[vuln("RUSTSEC-1", Severity::High, Some("1"))],
            &[],
            "2026-11-23",
        );
        assert_eq!(
            v.allowed.len(),
            1,
            "the advisory is allowed through its alias"
        );
        assert_eq!(
            v.violations.len(),
            1,
            "the expired secret entry no longer applies"
        );
        assert_eq!(v.expired, ["github-pat (expired 2026-01-01)"]);
        let (p, d) = parse(
            "allow:\n  - id: X\n  - reason: r\n  - id: Y\n    reason: r\n    expires: soon\n",
        );
        assert!(p.is_none());
        assert_eq!(d.len(), 3, "{d:?}");
    }

    /// A package the advisory check could not decide fails by default (never counted as
    /// clean); an allow entry for it (id `undecided`, its package) or
    /// `fail-on-undecided: false` lets it through.
    #[test]
    fn undecided_packages_fail_by_default() {
        let mut pkg = vuln("X", Severity::Low, None).package;
        pkg.ecosystem = "Amazon Linux:2".into();
        pkg.name = "openssl-libs".into();
        pkg.version = "1:1.0.2k-19.amzn2.0.10".into();
        pkg.location.path = "var/lib/rpm/rpmdb.sqlite".into();
        let u = [Undecided {
            package: pkg,
            reason: "the advisory data has no \"Amazon Linux:2\" ecosystem".into(),
            advisories: vec![],
        }];
        let (p, d) = parse(DEFAULT_POLICY);
        assert!(d.is_empty(), "{d:?}");
        let p = p.unwrap();
        assert!(p.fail_on_undecided);
        let v = evaluate_all(&p, &[], &[], &[], &u, "2026-11-23");
        assert!(!v.passed());
        assert_eq!(v.violations[0].id, UNDECIDED_ID);
        assert!(v.violations[0]
            .subject
            .starts_with("openssl-libs@1:1.0.2k-19.amzn2.0.10 (Amazon Linux:2"));
        // Without the undecided list the same inputs pass: the list is what fails.
        assert!(evaluate(&p, &[], &[], &[], "2026-11-23").passed());

        let (p, d) = parse("allow:\n  - id: undecided\n    package: openssl-libs\n    reason: checked against ALAS by hand\n");
        assert!(d.is_empty(), "{d:?}");
        let v = evaluate_all(&p.unwrap(), &[], &[], &[], &u, "2026-11-23");
        assert!(v.passed());
        assert_eq!(v.allowed.len(), 1);
        let (p, d) = parse("allow:\n  - id: undecided\n    package: bash\n    reason: r\n");
        assert!(d.is_empty(), "{d:?}");
        assert!(!evaluate_all(&p.unwrap(), &[], &[], &[], &u, "2026-11-23").passed());

        let (p, d) = parse("fail-on-undecided: false\n");
        assert!(d.is_empty(), "{d:?}");
        assert!(evaluate_all(&p.unwrap(), &[], &[], &[], &u, "2026-11-23").passed());
        let (p, d) = parse("fail-on-undecided: sometimes\n");
        assert!(p.is_none() && d[0].is_error());
    }

    /// A gate fails closed: an input it could not read is a violation by default, can be
    /// accepted per path with a reason, or let through by `fail-on-unreadable: false`.
    #[test]
    fn unreadable_inputs_fail_by_default() {
        let broken = [Unreadable {
            path: "web/pnpm-lock.yaml".into(),
            reason: "cannot parse web/pnpm-lock.yaml line 1: invalid yaml".into(),
        }];
        let (p, d) = parse(DEFAULT_POLICY);
        assert!(d.is_empty(), "{d:?}");
        let p = p.unwrap();
        assert!(p.fail_on_unreadable);
        let v = evaluate(&p, &[], &[], &broken, "2026-11-23");
        assert!(!v.passed());
        assert_eq!(v.violations[0].id, UNREADABLE_ID);
        assert!(v.violations[0].subject.starts_with("web/pnpm-lock.yaml: "));

        let (p, d) = parse("allow:\n  - id: unreadable-input\n    path: \"web/**\"\n    reason: generated by a test\n");
        assert!(d.is_empty(), "{d:?}");
        let v = evaluate(&p.unwrap(), &[], &[], &broken, "2026-11-23");
        assert!(v.passed());
        assert_eq!(v.allowed.len(), 1);

        let (p, d) = parse("fail-on-unreadable: false\n");
        assert!(d.is_empty(), "{d:?}");
        assert!(evaluate(&p.unwrap(), &[], &[], &broken, "2026-11-23").passed());
        let (p, d) = parse("fail-on-unreadable: maybe\n");
        assert!(p.is_none() && d[0].is_error());
    }
}
