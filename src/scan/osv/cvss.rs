//! Severity of a record: explicit labels, or a score computed from a CVSS vector.
//!
//! * CVSS v3.0/v3.1: the exact base score (FIRST specification §7.1, with the v3.1
//!   `Roundup`), bucketed Low (0.1-3.9), Medium (4.0-6.9), High (7.0-8.9), Critical (9.0+).
//! * CVSS v2: the exact v2 base score, bucketed Low (<4), Medium (<7), High.
//! * CVSS v4: **approximation** (the real v4 score needs FIRST's macro-vector table): the
//!   v4 metrics are mapped onto v3 ones (AT:P raises AC to H; UI:P/A -> UI:R; any
//!   subsequent-system impact SC/SI/SA above the vulnerable-system one -> S:C with the
//!   higher impact) and scored with the v3 formula. It agrees with the published v4
//!   ratings in the common cases (network, no privileges, high impact -> Critical/High).

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
        Some(bucket_v3(base_score_v3(vector)?))
    } else if vector.starts_with("CVSS:4.") {
        Some(bucket_v3(approx_score_v4(vector)?))
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

fn bucket_v3(score: f64) -> Severity {
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

/// CVSS v3.1 `Roundup`.
fn roundup(x: f64) -> f64 {
    let int_input = (x * 100_000.0).round() as i64;
    if int_input % 10_000 == 0 {
        int_input as f64 / 100_000.0
    } else {
        ((int_input / 10_000) + 1) as f64 / 10.0
    }
}

/// The CVSS v3.x base score, `None` if a base metric is missing or invalid.
pub fn base_score_v3(vector: &str) -> Option<f64> {
    let m = metrics(vector);
    let changed = match *m.get("S")? {
        "U" => false,
        "C" => true,
        _ => return None,
    };
    let av = match *m.get("AV")? {
        "N" => 0.85,
        "A" => 0.62,
        "L" => 0.55,
        "P" => 0.2,
        _ => return None,
    };
    let ac = match *m.get("AC")? {
        "L" => 0.77,
        "H" => 0.44,
        _ => return None,
    };
    let pr = match (*m.get("PR")?, changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        ("H", false) => 0.27,
        ("H", true) => 0.5,
        _ => return None,
    };
    let ui = match *m.get("UI")? {
        "N" => 0.85,
        "R" => 0.62,
        _ => return None,
    };
    let cia = |k: &str| -> Option<f64> {
        match *m.get(k)? {
            "H" => Some(0.56),
            "L" => Some(0.22),
            "N" => Some(0.0),
            _ => None,
        }
    };
    let (c, i, a) = (cia("C")?, cia("I")?, cia("A")?);
    Some(score_v3(changed, av, ac, pr, ui, c, i, a))
}

#[allow(clippy::too_many_arguments)]
fn score_v3(changed: bool, av: f64, ac: f64, pr: f64, ui: f64, c: f64, i: f64, a: f64) -> f64 {
    let iss = 1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a);
    let impact = if changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02).powi(15)
    } else {
        6.42 * iss
    };
    let exploitability = 8.22 * av * ac * pr * ui;
    if impact <= 0.0 {
        0.0
    } else if changed {
        roundup((1.08 * (impact + exploitability)).min(10.0))
    } else {
        roundup((impact + exploitability).min(10.0))
    }
}

/// Approximate CVSS v4 score through the v3 formula (see the module docs).
pub fn approx_score_v4(vector: &str) -> Option<f64> {
    let m = metrics(vector);
    let av = match *m.get("AV")? {
        "N" => 0.85,
        "A" => 0.62,
        "L" => 0.55,
        "P" => 0.2,
        _ => return None,
    };
    let ac = match (*m.get("AC")?, m.get("AT").copied().unwrap_or("N")) {
        ("L", "N") => 0.77,
        ("L" | "H", _) => 0.44,
        _ => return None,
    };
    let imp = |k: &str| -> Option<f64> {
        match *m.get(k)? {
            "H" => Some(0.56),
            "L" => Some(0.22),
            "N" => Some(0.0),
            _ => None,
        }
    };
    let (vc, vi, va) = (imp("VC")?, imp("VI")?, imp("VA")?);
    let (sc, si, sa) = (
        imp("SC").unwrap_or(0.0),
        imp("SI").unwrap_or(0.0),
        imp("SA").unwrap_or(0.0),
    );
    let changed = sc > vc || si > vi || sa > va;
    let pr = match (*m.get("PR")?, changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        ("H", false) => 0.27,
        ("H", true) => 0.5,
        _ => return None,
    };
    let ui = match *m.get("UI")? {
        "N" => 0.85,
        "P" | "A" => 0.62,
        _ => return None,
    };
    Some(score_v3(
        changed,
        av,
        ac,
        pr,
        ui,
        vc.max(sc),
        vi.max(si),
        va.max(sa),
    ))
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
        assert_eq!(
            severity_from_vector("CVSS:4.0/AV:L/AC:L/AT:N/PR:L/UI:N/VC:N/VI:N/VA:L/SC:N/SI:N/SA:N"),
            Some(Severity::Low)
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
