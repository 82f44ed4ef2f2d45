//! Finding report files and folding them into one result per report group.

use std::path::{Path, PathBuf};

use super::junit::{self, TestCaseFailure};
use crate::artifacts::beneath::Tree;
use crate::artifacts::glob::{self, Query};
use crate::buildspec::model::ReportGroup;

/// The `file-format` values CodeBuild accepts that are not summarised (yet).
const KNOWN_UNSUMMARISED: &[&str] = &[
    "CUCUMBERJSON",
    "TESTNGXML",
    "NUNITXML",
    "NUNIT3XML",
    "VISUALSTUDIOTRX",
    "CLOVERXML",
    "COBERTURAXML",
    "JACOCOXML",
    "SIMPLECOV",
];

/// A problem with one report file (or, with `file: None`, with the group's patterns).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReportFileError {
    pub file: Option<PathBuf>,
    pub message: String,
}

/// The summary of one report group.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReportResult {
    /// The report group name or ARN (the key under `reports:`).
    pub group: String,
    /// `file-format` (upper case, `JUNITXML` by default).
    pub format: String,
    /// Report files found, relative to the base directory (file names with
    /// `discard-paths`), sorted.
    pub files: Vec<PathBuf>,
    pub total: u64,
    pub passed: u64,
    pub failed: u64,
    pub errored: u64,
    pub skipped: u64,
    pub duration_secs: f64,
    /// Failed and errored test cases, in file order.
    pub failures: Vec<TestCaseFailure>,
    /// Why there is nothing to count (no files, a format not summarised yet).
    pub note: Option<String>,
    /// Files that could not be read or parsed; their tests are not counted.
    pub errors: Vec<ReportFileError>,
}

fn display_path(rel: &Path, discard_paths: bool) -> PathBuf {
    if discard_paths {
        rel.file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| rel.to_path_buf())
    } else {
        rel.to_path_buf()
    }
}

fn collect_group(group: &ReportGroup, src_root: &Path, skip_dir: Option<&Path>) -> ReportResult {
    let format = if group.file_format.trim().is_empty() {
        "JUNITXML".to_string()
    } else {
        group.file_format.trim().to_ascii_uppercase()
    };
    let mut result = ReportResult {
        group: group.name.clone(),
        format: format.clone(),
        ..ReportResult::default()
    };
    if group.files.is_empty() {
        result.note = Some("no `files` given for this report group".to_string());
        return result;
    }
    let selection = match glob::select(&Query {
        src_root,
        base_directory: group.base_directory.as_deref(),
        files: &group.files,
        exclude: &[],
        keep_symlinks: false,
        skip_dir,
    }) {
        Ok(s) => s,
        Err(e) => {
            result.errors.push(ReportFileError {
                file: None,
                message: e.to_string(),
            });
            return result;
        }
    };
    for w in &selection.warnings {
        result.errors.push(ReportFileError {
            file: None,
            message: w.clone(),
        });
    }
    result.files = selection
        .entries
        .iter()
        .map(|e| display_path(&e.rel, group.discard_paths))
        .collect();
    if selection.entries.is_empty() {
        result.note = Some(format!(
            "no report files found for {} under {}",
            group.files.join(", "),
            selection.base.display()
        ));
        return result;
    }

    if format != "JUNITXML" {
        result.note = Some(if KNOWN_UNSUMMARISED.contains(&format.as_str()) {
            format!("{format} reports are not summarised yet")
        } else {
            format!("unknown report file-format {format}; the files were not read")
        });
        return result;
    }

    // Each file is read relative to a handle on the source directory, never through a
    // link leading out of it, whatever the build did to the tree since it was walked.
    let tree = match Tree::open(src_root) {
        Ok(t) => t,
        Err(e) => {
            result.errors.push(ReportFileError {
                file: None,
                message: format!("cannot open the source directory: {e}"),
            });
            return result;
        }
    };
    for entry in &selection.entries {
        let parsed = tree
            .open_file(&entry.abs)
            .map_err(|source| junit::JunitError::Read { source })
            .and_then(|(file, _)| junit::parse_junit(std::io::BufReader::new(file)));
        match parsed {
            Ok(c) => {
                result.total += c.total;
                result.passed += c.passed;
                result.failed += c.failed;
                result.errored += c.errored;
                result.skipped += c.skipped;
                result.duration_secs += c.duration_secs;
                result.failures.extend(c.failures);
            }
            Err(e) => result.errors.push(ReportFileError {
                file: Some(display_path(&entry.rel, group.discard_paths)),
                message: e.to_string(),
            }),
        }
    }
    result
}

/// Summarises every report group, in order. Never fails: problems are recorded in each
/// result's `errors` (and `note`), since a bad report must not fail the build.
pub fn collect_reports(groups: &[ReportGroup], src_root: &Path) -> Vec<ReportResult> {
    collect_reports_excluding(groups, src_root, None)
}

/// Like [`collect_reports`], but never looks inside `artifacts_dir` (the `--artifacts`
/// output), so report files an earlier build copied there are not counted again when
/// that directory lies inside the source directory.
pub fn collect_reports_excluding(
    groups: &[ReportGroup],
    src_root: &Path,
    artifacts_dir: Option<&Path>,
) -> Vec<ReportResult> {
    let skip = artifacts_dir.and_then(|d| std::fs::canonicalize(d).ok());
    groups
        .iter()
        .map(|g| collect_group(g, src_root, skip.as_deref()))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::fs;

    fn write(root: &Path, rel: &str, content: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    fn group(name: &str, files: &[&str], base: Option<&str>) -> ReportGroup {
        ReportGroup {
            name: name.into(),
            files: files.iter().map(|s| s.to_string()).collect(),
            base_directory: base.map(str::to_string),
            file_format: "JUNITXML".into(),
            ..ReportGroup::default()
        }
    }

    const OK: &str = r#"<testsuite name="s" time="1.5"><testcase name="a"/><testcase name="b"><failure message="boom"/></testcase></testsuite>"#;
    const SKIP: &str = r#"<testsuites><testsuite name="t" time="0.25"><testcase name="c"><skipped/></testcase></testsuite></testsuites>"#;

    #[test]
    fn junit_files_under_base_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path();
        write(src, "build/test-results/a/TEST-a.xml", OK);
        write(src, "build/test-results/b/TEST-b.xml", SKIP);
        write(src, "build/test-results/b/notes.txt", "not a report");
        write(
            src,
            "build/test-results/c/TEST-bad.xml",
            "<testsuite><testcase>",
        );

        let mut g = group("unit", &["**/*.xml"], Some("build/test-results"));
        let r = collect_reports(std::slice::from_ref(&g), src);
        let r = &r[0];
        assert_eq!(r.group, "unit");
        assert_eq!(
            r.files,
            [
                PathBuf::from("a/TEST-a.xml"),
                PathBuf::from("b/TEST-b.xml"),
                PathBuf::from("c/TEST-bad.xml")
            ]
        );
        assert_eq!((r.total, r.passed, r.failed, r.skipped), (3, 1, 1, 1));
        assert!((r.duration_secs - 1.75).abs() < 1e-9);
        assert_eq!(r.failures[0].message, "boom");
        assert_eq!(r.errors.len(), 1);
        assert_eq!(r.errors[0].file, Some(PathBuf::from("c/TEST-bad.xml")));
        assert!(r.note.is_none());

        g.discard_paths = true;
        let r = collect_reports(&[g], src);
        assert_eq!(r[0].files[0], PathBuf::from("TEST-a.xml"));
    }

    #[test]
    fn other_formats_missing_files_and_escapes_do_not_fail() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path();
        write(src, "cucumber.json", "[]");
        let mut cucumber = group("bdd", &["cucumber.json"], None);
        cucumber.file_format = "CUCUMBERJSON".into();
        let none = group("none", &["reports/*.xml"], None);
        let escape = group("escape", &["../*.xml"], None);
        let r = collect_reports(&[cucumber, none, escape], src);
        assert_eq!(r.len(), 3);
        assert!(r[0].note.as_deref().unwrap().contains("not summarised yet"));
        assert_eq!(r[0].files.len(), 1);
        assert!(r[1]
            .note
            .as_deref()
            .unwrap()
            .contains("no report files found"));
        assert!(r[1].errors.is_empty());
        assert!(
            r[2].errors[0].message.contains("escapes"),
            "{:?}",
            r[2].errors
        );
    }

    #[test]
    fn the_artifacts_directory_is_not_searched() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path();
        write(src, "reports/TEST-a.xml", OK);
        write(src, "out/primary/reports/TEST-a.xml", OK);
        let g = group("unit", &["**/*.xml"], None);
        let r = collect_reports_excluding(std::slice::from_ref(&g), src, Some(&src.join("out")));
        assert_eq!(r[0].files, [PathBuf::from("reports/TEST-a.xml")]);
        assert_eq!(r[0].total, 2);
        // Without it, the copy counts twice.
        let r = collect_reports(&[g], src);
        assert_eq!(r[0].total, 4);
    }

    /// A report file swapped for a link to a host file (and back) while the host reads
    /// the reports: the host file is never parsed.
    #[test]
    fn a_report_swapped_for_a_link_out_of_the_tree_is_never_read() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        // Many files read before the swapped one: time for the swap after the walk.
        for i in 0..100 {
            write(&src, &format!("reports/a-{i:03}.xml"), SKIP);
        }
        write(&src, "reports/z.xml", OK);
        let secret_dir = tempfile::tempdir().unwrap();
        let secret = secret_dir.path().join("secret.xml");
        fs::write(
            &secret,
            r#"<testsuite><testcase name="x"><failure message="HOST-SECRET"/></testcase></testsuite>"#,
        )
        .unwrap();
        let _swap =
            crate::artifacts::beneath::Swapper::start(&src.join("reports/z.xml"), &secret, OK);
        let g = group("unit", &["reports/*.xml"], None);
        for i in 0..300 {
            let r = collect_reports(std::slice::from_ref(&g), &src);
            let leaked = r[0]
                .failures
                .iter()
                .any(|f| f.message.contains("HOST-SECRET"));
            assert!(!leaked, "round {i}: the host file was parsed");
        }
    }

    #[test]
    fn result_serialises() {
        let r = ReportResult {
            group: "g".into(),
            format: "JUNITXML".into(),
            ..ReportResult::default()
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["group"], "g");
        assert_eq!(v["total"], 0);
    }
}
