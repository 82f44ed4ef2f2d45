//! A job's test reports and scan findings, read from the events the agent shipped
//! (`report` events: JUnit summaries; `stage` events of the `scan` stage: the secrets and
//! vulnerabilities found and the policy's verdict), rendered as the job page's tables.
//! Every string from the events reaches the page through [`esc`].

use super::html::esc;
use crate::reports::ReportResult;
use crate::scan::model::{SecretFinding, Severity, VulnFinding};
use serde_json::Value;
use std::fmt::Write as _;

/// At most this many failed tests and findings are listed (the log has them all).
const MAX_ROWS: usize = 500;

/// How the policy judged a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// It fails the policy.
    Violation,
    /// An allow-list entry accepted it.
    Allowed,
    /// Below the policy's thresholds: reported only.
    Reported,
}

impl Judgement {
    fn as_str(self) -> &'static str {
        match self {
            Judgement::Violation => "violation",
            Judgement::Allowed => "allowed",
            Judgement::Reported => "reported",
        }
    }
}

/// One finding as the table shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub severity: Severity,
    /// `secret` or `vulnerability`.
    pub kind: &'static str,
    /// The secret rule id or the advisory id.
    pub id: String,
    /// `file:line` or `package@version`.
    pub place: String,
    /// The rule's description, or the advisory's summary and fixed version.
    pub about: String,
    /// What was scanned (`source`, `image …`).
    pub target: String,
    pub judgement: Judgement,
}

/// Everything the job page shows about tests and findings, built up event by event.
#[derive(Debug, Default, PartialEq)]
pub struct Results {
    pub reports: Vec<ReportResult>,
    pub findings: Vec<Finding>,
    /// Scans seen (a scan that found nothing still says so).
    pub scans: Vec<String>,
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// The (id, subject) pairs of a verdict list, as `scan::policy` names them.
fn judged(verdict: &Value, list: &str) -> Vec<(String, String)> {
    verdict
        .get(list)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|j| (s(j, "id").to_string(), s(j, "subject").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn judge(
    id: &str,
    subject: &str,
    violations: &[(String, String)],
    allowed: &[(String, String)],
) -> Judgement {
    let hit = |l: &[(String, String)]| l.iter().any(|(i, s)| i == id && s == subject);
    if hit(violations) {
        Judgement::Violation
    } else if hit(allowed) {
        Judgement::Allowed
    } else {
        Judgement::Reported
    }
}

impl Results {
    /// A `report` event (a report group's summary).
    pub fn report(&mut self, v: &Value) {
        if let Ok(r) = serde_json::from_value::<ReportResult>(v.clone()) {
            self.reports.push(r);
        }
    }

    /// The `detail` of a `scan` stage event.
    pub fn scan(&mut self, detail: &Value) {
        let target = s(detail, "target").to_string();
        let verdict = detail.get("verdict").unwrap_or(&Value::Null);
        let violations = judged(verdict, "violations");
        let allowed = judged(verdict, "allowed");
        let list = |k: &str| {
            detail
                .get(k)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        for v in list("secrets") {
            let Ok(f) = serde_json::from_value::<SecretFinding>(v) else {
                continue;
            };
            let place = format!("{}:{}", f.location.path, f.location.line.unwrap_or(0));
            self.findings.push(Finding {
                severity: f.severity,
                kind: "secret",
                judgement: judge(&f.rule_id, &place, &violations, &allowed),
                id: f.rule_id,
                about: format!("{} ({})", f.description, f.redacted),
                place,
                target: target.clone(),
            });
        }
        for v in list("vulnerabilities") {
            let Ok(f) = serde_json::from_value::<VulnFinding>(v) else {
                continue;
            };
            let p = &f.package;
            let subject = format!("{}@{} ({})", p.name, p.version, p.location.path);
            let mut about = f.summary.clone();
            if let Some(fixed) = &f.fixed {
                let _ = write!(about, "; fixed in {fixed}");
            }
            self.findings.push(Finding {
                severity: f.severity,
                kind: "vulnerability",
                judgement: judge(&f.id, &subject, &violations, &allowed),
                place: format!(
                    "{}@{} ({}, {})",
                    p.name, p.version, p.ecosystem, p.location.path
                ),
                id: f.id,
                about,
                target: target.clone(),
            });
        }
        // Most severe first; violations before accepted ones of the same severity.
        self.findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| rank(a.judgement).cmp(&rank(b.judgement)))
                .then_with(|| a.id.cmp(&b.id))
                .then_with(|| a.place.cmp(&b.place))
        });
        self.scans.push(target);
    }

    /// The tests and findings sections (empty when the job has neither).
    pub fn html(&self) -> String {
        let mut h = String::new();
        if !self.reports.is_empty() {
            h.push_str(&self.tests_html());
        }
        if !self.scans.is_empty() {
            h.push_str(&self.findings_html());
        }
        h
    }

    fn tests_html(&self) -> String {
        let mut h = String::from(
            "<h2>Tests</h2><table class=\"tests\"><thead><tr><th>Report</th><th>Passed</th>\
             <th>Failed</th><th>Errored</th><th>Skipped</th><th>Total</th><th>Time</th></tr>\
             </thead><tbody>",
        );
        for r in &self.reports {
            let bad = r.failed + r.errored > 0;
            let _ = write!(
                h,
                "<tr class=\"report{}\"><td>{}{}</td><td class=\"n passed\">{}</td>\
                 <td class=\"n failed\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{:.1}s</td></tr>",
                if bad { " bad" } else { "" },
                esc(&r.group),
                r.note
                    .as_deref()
                    .map(|n| format!(" <span class=\"muted\">({})</span>", esc(n)))
                    .unwrap_or_default(),
                r.passed,
                r.failed,
                r.errored,
                r.skipped,
                r.total,
                r.duration_secs
            );
        }
        h.push_str("</tbody></table>");
        let failures: Vec<_> = self
            .reports
            .iter()
            .flat_map(|r| r.failures.iter())
            .collect();
        if !failures.is_empty() {
            h.push_str(
                "<table class=\"failures\"><thead><tr><th>Suite</th><th>Test</th><th></th>\
                 <th>Message</th></tr></thead><tbody>",
            );
            for f in failures.iter().take(MAX_ROWS) {
                let _ = write!(
                    h,
                    "<tr class=\"failure\"><td>{}</td><td>{}</td><td><span class=\"sev {}\">{}</span></td>\
                     <td class=\"msg\">{}</td></tr>",
                    esc(&f.suite),
                    esc(&f.name),
                    if f.error { "sev-error" } else { "sev-failed" },
                    if f.error { "error" } else { "failed" },
                    esc(&f.message)
                );
            }
            h.push_str("</tbody></table>");
            if failures.len() > MAX_ROWS {
                let _ = write!(
                    h,
                    "<p class=\"muted\">{} more failures are in the log.</p>",
                    failures.len() - MAX_ROWS
                );
            }
        }
        h
    }

    fn findings_html(&self) -> String {
        let mut h = String::from("<h2>Findings</h2>");
        if self.findings.is_empty() {
            let _ = write!(
                h,
                "<p class=\"muted\">No findings in {}.</p>",
                esc(&self.scans.join(", "))
            );
            return h;
        }
        h.push_str(
            "<table class=\"findings\"><thead><tr><th>Severity</th><th>Kind</th><th>Id</th>\
             <th>Where</th><th>About</th><th>Policy</th></tr></thead><tbody>",
        );
        for f in self.findings.iter().take(MAX_ROWS) {
            let sev = format!("{:?}", f.severity).to_ascii_uppercase();
            let _ = write!(
                h,
                "<tr class=\"finding\"><td><span class=\"sev sev-{}\">{}</span></td><td>{}</td>\
                 <td><code>{}</code></td><td><code>{}</code> <span class=\"muted\">{}</span></td>\
                 <td>{}</td><td class=\"j-{}\">{}</td></tr>",
                sev.to_ascii_lowercase(),
                sev,
                f.kind,
                esc(&f.id),
                esc(&f.place),
                esc(&f.target),
                esc(&f.about),
                f.judgement.as_str(),
                f.judgement.as_str(),
            );
        }
        h.push_str("</tbody></table>");
        if self.findings.len() > MAX_ROWS {
            let _ = write!(
                h,
                "<p class=\"muted\">{} more findings are in the log.</p>",
                self.findings.len() - MAX_ROWS
            );
        }
        h
    }
}

fn rank(j: Judgement) -> u8 {
    match j {
        Judgement::Violation => 0,
        Judgement::Reported => 1,
        Judgement::Allowed => 2,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn findings_are_sorted_most_severe_first_judged_and_escaped() {
        let mut r = Results::default();
        r.scan(&json!({
            "target": "source",
            "secrets": [{
                "rule_id": "github-pat", "description": "GitHub <token>",
                "location": {"path": "app/<x>.py", "line": 3},
                "redacted": "ghp_***", "fingerprint": "f", "severity": "HIGH",
                "verified_format": true
            }],
            "vulnerabilities": [{
                "id": "RUSTSEC-1", "aliases": [], "summary": "low <b>", "severity": "LOW",
                "package": {"ecosystem": "crates.io", "name": "a", "version": "1.0.0",
                            "purl": "pkg:cargo/a@1.0.0", "location": {"path": "Cargo.lock"}}
            }, {
                "id": "RUSTSEC-2", "aliases": [], "summary": "bad", "severity": "CRITICAL",
                "fixed": "2.0.0",
                "package": {"ecosystem": "crates.io", "name": "b", "version": "1.0.0",
                            "purl": "pkg:cargo/b@1.0.0", "location": {"path": "Cargo.lock"}}
            }],
            "verdict": {
                "violations": [{"id": "github-pat", "subject": "app/<x>.py:3", "severity": "HIGH"}],
                "allowed": [{"id": "RUSTSEC-2", "subject": "b@1.0.0 (Cargo.lock)",
                             "severity": "CRITICAL", "reason": "r"}],
                "expired": []
            }
        }));
        let order: Vec<(&str, Judgement)> = r
            .findings
            .iter()
            .map(|f| (f.id.as_str(), f.judgement))
            .collect();
        assert_eq!(
            order,
            vec![
                ("RUSTSEC-2", Judgement::Allowed),
                ("github-pat", Judgement::Violation),
                ("RUSTSEC-1", Judgement::Reported),
            ]
        );
        let h = r.html();
        assert!(h.contains("sev-critical\">CRITICAL"), "{h}");
        assert!(h.contains("app/&lt;x&gt;.py:3"), "{h}");
        assert!(h.contains("GitHub &lt;token&gt;"), "{h}");
        assert!(h.contains("fixed in 2.0.0"), "{h}");
        assert!(!h.contains("<b>") && !h.contains("<token>"), "{h}");
    }

    #[test]
    fn reports_list_counts_and_failures() {
        let mut r = Results::default();
        r.report(&json!({
            "event": "report", "group": "unit<g>", "format": "JUNITXML", "files": ["r.xml"],
            "total": 3, "passed": 1, "failed": 1, "errored": 0, "skipped": 1,
            "duration_secs": 0.5, "note": null, "errors": [],
            "failures": [{"suite": "calc", "name": "adds", "message": "expected <2>", "error": false}]
        }));
        let h = r.html();
        assert!(h.contains("unit&lt;g&gt;"), "{h}");
        assert!(h.contains("<td class=\"n failed\">1</td>"), "{h}");
        assert!(h.contains("expected &lt;2&gt;"), "{h}");
        assert!(Results::default().html().is_empty());
    }
}
