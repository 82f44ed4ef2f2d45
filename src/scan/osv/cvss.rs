//! Severity of a record: explicit labels, or a score computed from a CVSS vector.
//!
//! * CVSS v3.0/v3.1 and v4.0: the exact scores of RustSec's `cvss` crate (v3: the base
//!   score, FIRST specification §7.1 with v3.1's `Roundup`; v4: FIRST's macro-vector
//!   lookup and interpolation, every metric the vector carries), bucketed Low (0.1-3.9),
//!   Medium (4.0-6.9), High (7.0-8.9), Critical (9.0+). Checked against published scores
//!   (fixtures/scan/cvss, from FIRST's calculators via Red Hat's test data) and against
//!   PyPI's `cvss` over the whole v3 and v4 base-metric spaces (tests/it/cvss_reference.rs).
//! * CVSS v2: the exact v2 base score, bucketed Low (<4), Medium (<7), High.
//!
//! A vector missing one of its version's base metrics scores nothing (`None`).

use crate::scan::model::Severity;
use crate::scan::osv::record::{SeverityScore, Vuln};
use std::collections::HashMap;

/// The chosen severity and the CVSS vector it came from (if any).
pub fn record_severity(vuln: &Vuln, affected_index: Option<usize>) -> (Severity, Option<String>) {
    let mut scores: Vec<&SeverityScore> = vuln.severity.iter().collect();
    let affected = affected_index.and_then(|i| vuln.affected.get(i));
    if let Some(a) = affected {
        scores.extend(a.severity.iter());
    }
    let vector = pick_vector(&scores);
    // 1. An explicit label from the database.
    let label = vuln
        .database_specific
        .as_ref()
        .and_then(|d| d.get("severity"))
        .and_then(|s| s.as_str())
        .and_then(parse_label)
        .or_else(|| {
            affected
                .and_then(|a| a.ecosystem_specific.as_ref())
                .and_then(|e| e.get("severity"))
                .and_then(|s| s.as_str())
                .and_then(parse_label)
        });
    if let Some(label) = label {
        return (label, vector.map(str::to_string));
    }
    // 2. The CVSS vector.
    // 3. Red Hat's rating as the summary's first word, as RHSA, ALSA and RLSA records
    //    carry it (`Important: openssl security update`) with no vector.
    let sev = vector
        .and_then(severity_from_vector)
        .or_else(|| summary_rating(&vuln.summary))
        .unwrap_or(Severity::Unknown);
    (sev, vector.map(str::to_string))
}

/// `Critical:`, `Important:`, `Moderate:` or `Low:` at the start of a summary (Red
/// Hat's four ratings only: other words before a colon are not severities).
fn summary_rating(summary: &str) -> Option<Severity> {
    let (word, _) = summary.trim_start().split_once(':')?;
    match word {
        "Critical" | "Important" | "Moderate" | "Low" => parse_label(word),
        _ => None,
    }
}

fn pick_vector<'a>(scores: &[&'a SeverityScore]) -> Option<&'a str> {
    for kind in ["CVSS_V3", "CVSS_V4", "CVSS_V2"] {
        if let Some(s) = scores.iter().find(|s| s.kind == kind) {
            return Some(s.score.as_str());
        }
    }
    None
}

/// Maps a textual severity (`HIGH`, `moderate`, `important`, Debian `unimportant`...).
pub fn parse_label(s: &str) -> Option<Severity> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "critical" => Severity::Critical,
        "high" | "important" => Severity::High,
        "medium" | "moderate" => Severity::Medium,
        "low" | "negligible" | "unimportant" | "minor" => Severity::Low,
        _ => return None,
    })
}

/// Severity bucket of a CVSS vector of any supported version.
pub fn severity_from_vector(vector: &str) -> Option<Severity> {
    if vector.starts_with("CVSS:3.") {
        Some(bucket(base_score_v3(vector)?))
    } else if vector.starts_with("CVSS:4.") {
        Some(bucket(score_v4(vector)?))
    } else {
        let s = base_score_v2(vector)?;
        Some(if s < 4.0 {
            Severity::Low
        } else if s < 7.0 {
            Severity::Medium
        } else {
            Severity::High
        })
    }
}

/// FIRST's qualitative rating scale (the same for v3.x and v4.0).
fn bucket(score: f64) -> Severity {
    if score >= 9.0 {
        Severity::Critical
    } else if score >= 7.0 {
        Severity::High
    } else if score >= 4.0 {
        Severity::Medium
    } else if score > 0.0 {
        Severity::Low
    } else {
        Severity::Unknown
    }
}

fn metrics(vector: &str) -> HashMap<&str, &str> {
    vector
        .split('/')
        .filter_map(|m| m.split_once(':'))
        .collect()
}

/// All of `required` are present in the vector (the crate would default a missing one).
fn has_all(vector: &str, required: &[&str]) -> bool {
    let m = metrics(vector);
    required.iter().all(|k| m.contains_key(k))
}

/// The CVSS v3.x base score, `None` if a base metric is missing or a metric is invalid.
pub fn base_score_v3(vector: &str) -> Option<f64> {
    if !has_all(vector, &["AV", "AC", "PR", "UI", "S", "C", "I", "A"]) {
        return None;
    }
    let v: cvss::v3::Vector = vector.parse().ok()?;
    Some(v.base_score().value())
}

/// The CVSS v4.0 score (FIRST's algorithm, all metrics the vector carries: CVSS-B, -BT,
/// -BE or -BTE), `None` if a base metric is missing or a metric is invalid.
pub fn score_v4(vector: &str) -> Option<f64> {
    let base = [
        "AV", "AC", "AT", "PR", "UI", "VC", "VI", "VA", "SC", "SI", "SA",
    ];
    if !has_all(vector, &base) {
        return None;
    }
    let v: cvss::v4::Vector = vector.parse().ok()?;
    Some(v.score().value())
}

/// The CVSS v2 base score.
pub fn base_score_v2(vector: &str) -> Option<f64> {
    let m = metrics(vector.trim_start_matches('(').trim_end_matches(')'));
    let av = match *m.get("AV")? {
        "L" => 0.395,
        "A" => 0.646,
        "N" => 1.0,
        _ => return None,
    };
    let ac = match *m.get("AC")? {
        "H" => 0.35,
        "M" => 0.61,
        "L" => 0.71,
        _ => return None,
    };
    let au = match *m.get("Au")? {
        "M" => 0.45,
        "S" => 0.56,
        "N" => 0.704,
        _ => return None,
    };
    let cia = |k: &str| -> Option<f64> {
        match *m.get(k)? {
            "N" => Some(0.0),
            "P" => Some(0.275),
            "C" => Some(0.660),
            _ => None,
        }
    };
    let (c, i, a) = (cia("C")?, cia("I")?, cia("A")?);
    let impact = 10.41 * (1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a));
    let expl = 20.0 * av * ac * au;
    let f = if impact == 0.0 { 0.0 } else { 1.176 };
    Some(((0.6 * impact + 0.4 * expl - 1.5) * f * 10.0).round() / 10.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::path::Path;

    #[test]
    fn v3_scores_match_nvd() {
        let cases = [
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
            ("CVSS:3.0/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H", 8.1),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
            ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 5.5),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5),
            ("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", 1.6),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
        ];
        for (v, want) in cases {
            assert_eq!(base_score_v3(v), Some(want), "{v}");
        }
        assert_eq!(severity_from_vector(cases[0].0), Some(Severity::Critical));
        assert_eq!(severity_from_vector(cases[2].0), Some(Severity::Medium));
        assert_eq!(severity_from_vector(cases[6].0), Some(Severity::Low));
    }

    #[test]
    fn v2_and_v4() {
        assert_eq!(base_score_v2("AV:N/AC:L/Au:N/C:P/I:P/A:P"), Some(7.5));
        assert_eq!(base_score_v2("AV:N/AC:M/Au:N/C:N/I:P/A:N"), Some(4.3));
        assert_eq!(
            severity_from_vector("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"),
            Some(Severity::Critical)
        );
        // 4.8 in FIRST's v4 calculator (Medium); the v3-formula approximation said Low.
        let v = "CVSS:4.0/AV:L/AC:L/AT:N/PR:L/UI:N/VC:N/VI:N/VA:L/SC:N/SI:N/SA:N";
        assert_eq!(score_v4(v), Some(4.8));
        assert_eq!(severity_from_vector(v), Some(Severity::Medium));
    }

    /// `VECTOR - (score, ...)` or `VECTOR - score` lines of fixtures/scan/cvss/NAME: the
    /// vector and its first (base, or v4's single) published score.
    fn published(name: &str) -> Vec<(String, f64)> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/scan/cvss")
            .join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let (v, scores) = l.split_once(" - ").unwrap();
                let first = scores
                    .trim()
                    .trim_start_matches('(')
                    .split([',', ')'])
                    .next()
                    .unwrap();
                (v.trim().to_string(), first.trim().parse::<f64>().unwrap())
            })
            .collect()
    }

    /// Every published score, compared; returns (vectors compared, disagreements).
    fn compare(files: &[&str], score: fn(&str) -> Option<f64>) -> (usize, Vec<String>) {
        let mut n = 0;
        let mut bad = Vec::new();
        for f in files {
            for (v, want) in published(f) {
                n += 1;
                let got = score(&v);
                if got != Some(want) {
                    bad.push(format!("{f}: {v}: published {want}, computed {got:?}"));
                }
            }
        }
        (n, bad)
    }

    #[test]
    fn published_vectors_v3_all_agree() {
        let files = [
            "vectors_simple3",
            "vectors_simple31",
            "vectors_calculator3",
            "vectors_cvsslib3",
        ];
        let (n, bad) = compare(&files, base_score_v3);
        eprintln!(
            "CVSS v3 published vectors: {n} compared, {} disagree",
            bad.len()
        );
        assert!(n >= 5000, "only {n} vectors");
        assert!(
            bad.is_empty(),
            "{} of {n} disagree:\n{}",
            bad.len(),
            bad[..bad.len().min(20)].join("\n")
        );
    }

    #[test]
    fn published_vectors_v4_all_agree() {
        let files = [
            "vectors_simple4",
            "vectors_supplemental4",
            "vectors_security4",
            "vectors_threat4",
        ];
        let (n, bad) = compare(&files, score_v4);
        eprintln!(
            "CVSS v4 published vectors: {n} compared, {} disagree",
            bad.len()
        );
        assert!(n >= 1500, "only {n} vectors");
        assert!(
            bad.is_empty(),
            "{} of {n} disagree:\n{}",
            bad.len(),
            bad[..bad.len().min(20)].join("\n")
        );
    }

    #[test]
    fn red_hat_ratings_in_summaries() {
        let rec = |summary: &str| Vuln {
            id: "ALSA-2024:0310".into(),
            summary: summary.into(),
            ..Default::default()
        };
        let sev = |s: &str| record_severity(&rec(s), None).0;
        assert_eq!(sev("Moderate: openssl security update"), Severity::Medium);
        assert_eq!(sev("Important: sudo security update"), Severity::High);
        assert_eq!(sev("Critical: kernel security update"), Severity::Critical);
        assert_eq!(sev("Low: less security update"), Severity::Low);
        assert_eq!(sev("High CPU use: a bug"), Severity::Unknown);
        assert_eq!(sev("Note: important"), Severity::Unknown);
    }

    #[test]
    fn garbage_vectors() {
        for v in [
            "",
            "CVSS:3.1",
            "CVSS:3.1/AV:X/AC:L",
            "CVSS:4.0/AV:N",
            "AV:N",
            "///:::",
        ] {
            assert!(severity_from_vector(v).is_none(), "{v}");
        }
        assert_eq!(parse_label("MODERATE"), Some(Severity::Medium));
        assert_eq!(parse_label("whatever"), None);
    }
}
