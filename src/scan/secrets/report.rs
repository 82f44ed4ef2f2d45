//! Human (table) and machine (JSON) renderings of a scan; SARIF lives in `scan::sarif`.

use std::fmt::Write as _;

use super::walk::ScanOutcome;
use crate::scan::model::Severity;

fn severity_label(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "CRITICAL",
        Severity::High => "HIGH",
        Severity::Medium => "MEDIUM",
        Severity::Low => "LOW",
        Severity::Unknown => "UNKNOWN",
    }
}

/// The `--format json` document: the whole outcome (secrets are redacted already).
pub fn render_json(outcome: &ScanOutcome) -> String {
    // Plain strings and integers: serialization cannot fail.
    serde_json::to_string_pretty(outcome).unwrap_or_default() + "\n"
}

/// The `--format table` text.
pub fn render_table(outcome: &ScanOutcome) -> String {
    let mut out = String::new();
    let rows: Vec<[String; 4]> = outcome
        .findings
        .iter()
        .map(|f| {
            let mut loc = f.location.path.clone();
            if let Some(l) = f.location.line {
                let _ = write!(loc, ":{l}");
                if let Some(c) = f.location.column {
                    let _ = write!(loc, ":{c}");
                }
            }
            if let Some(layer) = &f.location.layer {
                let _ = write!(loc, " (layer {layer})");
            }
            [
                severity_label(f.severity).to_string(),
                f.rule_id.clone(),
                loc,
                f.redacted.clone(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        let header = ["SEVERITY", "RULE", "LOCATION", "SECRET"].map(str::to_string);
        let mut widths = [0usize; 4];
        for row in std::iter::once(&header).chain(rows.iter()) {
            for (w, cell) in widths.iter_mut().zip(row.iter()) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(rows.iter()) {
            let _ = writeln!(
                out,
                "{:<w0$}  {:<w1$}  {:<w2$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            );
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "{} secret(s) found in {} file(s) ({} bytes); {} file(s) skipped; {} suppressed by baseline",
        outcome.findings.len(),
        outcome.files_scanned,
        outcome.bytes_scanned,
        outcome.skipped_files,
        outcome.suppressed
    );
    for w in &outcome.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}
