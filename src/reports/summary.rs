//! One-glance text for a report group's result.

use super::collect::ReportResult;

/// At most this many failed tests and file errors are listed.
const MAX_LINES: usize = 10;
/// A failure message is cut to this many characters.
const MAX_MESSAGE: usize = 200;

fn short(message: &str) -> String {
    let line = message.lines().next().unwrap_or("").trim();
    if line.chars().count() > MAX_MESSAGE {
        let cut: String = line.chars().take(MAX_MESSAGE).collect();
        format!("{cut}…")
    } else {
        line.to_string()
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn more(n: usize, one: &str, many: &str) -> String {
    format!("{n} more {}", if n == 1 { one } else { many })
}

/// Renders e.g.
/// `Reports: unit-tests: 42 tests, 40 passed, 1 failed, 1 skipped (3.21s) [2 files]`
/// followed by up to 10 failure lines (`  FAIL suite > name: message`) and up to 10
/// lines for unreadable files (`  ! file: problem`). `errored` is shown only when
/// non-zero. A group with nothing counted and a note shows the note instead of counts.
pub fn render_summary(r: &ReportResult) -> String {
    let files = plural(r.files.len(), "file", "files");
    let mut out = match (&r.note, r.total) {
        (Some(note), 0) => format!("Reports: {}: {note} [{files}]", r.group),
        _ => {
            let mut s = format!(
                "Reports: {}: {} tests, {} passed, {} failed",
                r.group, r.total, r.passed, r.failed
            );
            if r.errored > 0 {
                s.push_str(&format!(", {} errored", r.errored));
            }
            s.push_str(&format!(
                ", {} skipped ({:.2}s) [{files}]",
                r.skipped, r.duration_secs
            ));
            if let Some(note) = &r.note {
                s.push_str(&format!("\n  note: {note}"));
            }
            s
        }
    };
    for f in r.failures.iter().take(MAX_LINES) {
        let tag = if f.error { "ERROR" } else { "FAIL" };
        let who = if f.suite.is_empty() {
            f.name.clone()
        } else {
            format!("{} > {}", f.suite, f.name)
        };
        let msg = short(&f.message);
        if msg.is_empty() {
            out.push_str(&format!("\n  {tag} {who}"));
        } else {
            out.push_str(&format!("\n  {tag} {who}: {msg}"));
        }
    }
    if r.failures.len() > MAX_LINES {
        out.push_str(&format!(
            "\n  … and {}",
            more(r.failures.len() - MAX_LINES, "failure", "failures")
        ));
    }
    for e in r.errors.iter().take(MAX_LINES) {
        match &e.file {
            Some(f) => out.push_str(&format!("\n  ! {}: {}", f.display(), short(&e.message))),
            None => out.push_str(&format!("\n  ! {}", short(&e.message))),
        }
    }
    if r.errors.len() > MAX_LINES {
        out.push_str(&format!(
            "\n  ! … and {}",
            more(r.errors.len() - MAX_LINES, "problem", "problems")
        ));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::reports::{ReportFileError, TestCaseFailure};
    use std::path::PathBuf;

    fn failure(i: usize) -> TestCaseFailure {
        TestCaseFailure {
            suite: "pkg.Suite".into(),
            name: format!("t{i}"),
            message: format!("expected {i}\nstack trace"),
            error: false,
        }
    }

    #[test]
    fn headline_matches_the_documented_shape() {
        let r = ReportResult {
            group: "unit-tests".into(),
            format: "JUNITXML".into(),
            files: vec![PathBuf::from("a.xml"), PathBuf::from("b.xml")],
            total: 42,
            passed: 40,
            failed: 1,
            skipped: 1,
            duration_secs: 3.214,
            failures: vec![failure(1)],
            ..ReportResult::default()
        };
        assert_eq!(
            render_summary(&r),
            "Reports: unit-tests: 42 tests, 40 passed, 1 failed, 1 skipped (3.21s) [2 files]\n  \
             FAIL pkg.Suite > t1: expected 1"
        );
    }

    #[test]
    fn caps_failures_and_lists_file_errors() {
        let r = ReportResult {
            group: "g".into(),
            files: vec![PathBuf::from("a.xml")],
            total: 12,
            failed: 11,
            errored: 1,
            failures: (0..12).map(failure).collect(),
            errors: vec![ReportFileError {
                file: Some(PathBuf::from("bad.xml")),
                message: "malformed XML at byte 3: x".into(),
            }],
            ..ReportResult::default()
        };
        let s = render_summary(&r);
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines[0].contains("11 failed, 1 errored, 0 skipped"), "{s}");
        assert!(lines[0].ends_with("[1 file]"), "{s}");
        assert_eq!(lines.iter().filter(|l| l.starts_with("  FAIL")).count(), 10);
        assert!(s.contains("… and 2 more failures"), "{s}");
        assert!(s.contains("  ! bad.xml: malformed XML"), "{s}");
    }

    #[test]
    fn note_replaces_counts_when_nothing_was_counted() {
        let r = ReportResult {
            group: "bdd".into(),
            files: vec![PathBuf::from("c.json")],
            note: Some("CUCUMBERJSON reports are not summarised yet".into()),
            ..ReportResult::default()
        };
        assert_eq!(
            render_summary(&r),
            "Reports: bdd: CUCUMBERJSON reports are not summarised yet [1 file]"
        );
    }
}
