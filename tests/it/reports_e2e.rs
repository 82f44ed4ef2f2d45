//! `reports:` end to end: a build writes JUnit XML, runner summarises it as a `report`
//! event (and a `Reports:` line for humans); test failures never fail the build.

use crate::support::{Project, Run, IMAGE};
use serde_json::{json, Value};

const JUNIT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites time="2.5">
  <testsuite name="calc" tests="5" failures="1" skipped="1">
    <testcase classname="calc.AddTest" name="adds" time="0.5"/>
    <testcase classname="calc.AddTest" name="adds_negative" time="0.5"/>
    <testcase classname="calc.DivTest" name="divides" time="0.5"/>
    <testcase classname="calc.DivTest" name="divides_by_zero" time="0.5">
      <failure message="expected Err, got Ok(inf)" type="AssertionError">stack trace here</failure>
    </testcase>
    <testcase classname="calc.DivTest" name="big_numbers" time="0.5">
      <skipped message="slow"/>
    </testcase>
  </testsuite>
</testsuites>"#;

/// A buildspec whose build writes `content` to reports/junit.xml with a heredoc.
fn spec(content: &str, build_fails: bool) -> String {
    // The heredoc sits in a YAML block scalar, indented by 8.
    let body: String = content.lines().map(|l| format!("        {l}\n")).collect();
    let fail = if build_fails {
        "      - \"false\"\n"
    } else {
        ""
    };
    format!(
        "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p reports\n      - |\n        cat > reports/junit.xml <<'EOF'\n{body}        EOF\n      - echo tests-written\n{fail}reports:\n  my-group:\n    files:\n      - '**/*.xml'\n    base-directory: reports\n"
    )
}

fn reports(run: &Run) -> Vec<&Value> {
    run.events
        .iter()
        .filter(|e| e["event"] == "report")
        .collect()
}

#[test]
fn junit_results_are_summarised_and_failing_tests_do_not_fail_the_build() {
    let p = Project::new();
    p.write("buildspec.yml", &spec(JUNIT, false));
    let run = p.build(&[]);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert_eq!(run.status(), "SUCCEEDED");
    assert!(run.has_line("tests-written"), "{}", run.debug());
    assert_eq!(
        std::fs::read_to_string(p.path().join("reports/junit.xml")).unwrap_or_default(),
        format!("{JUNIT}\n"),
        "the heredoc wrote the file verbatim"
    );
    let r = reports(&run);
    assert_eq!(r.len(), 1, "{}", run.stdout);
    let r = r[0];
    assert_eq!(r["group"], "my-group");
    assert_eq!(r["format"], "JUNITXML");
    assert_eq!(r["files"], json!(["junit.xml"]));
    assert_eq!(
        (
            &r["total"],
            &r["passed"],
            &r["failed"],
            &r["errored"],
            &r["skipped"]
        ),
        (&json!(5), &json!(3), &json!(1), &json!(0), &json!(1))
    );
    assert_eq!(r["duration_secs"], json!(2.5));
    assert_eq!(
        r["failures"],
        json!([{
            "suite": "calc.DivTest",
            "name": "divides_by_zero",
            "message": "expected Err, got Ok(inf)",
            "error": false,
        }])
    );
    assert_eq!(r["errors"], json!([]));
    assert_eq!(r["note"], Value::Null);
    // The report is produced in UPLOAD_ARTIFACTS, before the build ends.
    let pos = |pred: &dyn Fn(&Value) -> bool| run.events.iter().position(pred);
    let report_at = pos(&|e| e["event"] == "report");
    let upload_end = pos(&|e| e["event"] == "phase_ended" && e["phase"] == "UPLOAD_ARTIFACTS");
    assert!(
        report_at < upload_end && report_at.is_some(),
        "{}",
        run.stdout
    );
}

#[test]
fn reports_are_collected_after_a_failed_build_phase_too() {
    let p = Project::new();
    p.write("buildspec.yml", &spec(JUNIT, true));
    let run = p.build(&[]);
    assert_eq!(run.code, 1, "{}", run.debug());
    assert_eq!(run.status(), "FAILED");
    let r = reports(&run);
    assert_eq!(r.len(), 1, "{}", run.stdout);
    assert_eq!((&r[0]["total"], &r[0]["failed"]), (&json!(5), &json!(1)));
}

#[test]
fn reports_work_in_copy_mode() {
    let p = Project::new();
    p.write("buildspec.yml", &spec(JUNIT, false));
    let run = p.build(&["--source-mode", "copy"]);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert!(!p.path().join("reports").exists());
    let r = reports(&run);
    assert_eq!(r.len(), 1, "{}", run.stdout);
    assert_eq!((&r[0]["total"], &r[0]["passed"]), (&json!(5), &json!(3)));
}

#[test]
fn malformed_or_missing_reports_do_not_fail_the_build() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        &spec("<testsuite name=\"broken\"><testcase name=\"a\">", false),
    );
    let run = p.build(&[]);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert_eq!(run.status(), "SUCCEEDED");
    let r = reports(&run);
    assert_eq!(r.len(), 1, "{}", run.stdout);
    assert_eq!(r[0]["total"], 0);
    assert_eq!(r[0]["files"], json!(["junit.xml"]));
    let errors = r[0]["errors"].as_array().cloned().unwrap_or_default();
    assert_eq!(errors.len(), 1, "{}", r[0]);
    assert_eq!(errors[0]["file"], "junit.xml");
    assert!(
        !errors[0]["message"].as_str().unwrap_or("").is_empty(),
        "{}",
        r[0]
    );

    // Not XML at all, and a group whose files were never written.
    p.write(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p reports && echo 'not xml {' > reports/junit.xml\nreports:\n  my-group:\n    files:\n      - '**/*.xml'\n    base-directory: reports\n  never-written:\n    files:\n      - 'out/*.xml'\n",
    );
    let run = p.build(&[]);
    assert_eq!(run.code, 0, "{}", run.debug());
    let r = reports(&run);
    assert_eq!(r.len(), 2, "{}", run.stdout);
    assert_eq!(r[0]["group"], "my-group");
    assert_eq!(r[0]["errors"].as_array().map(Vec::len), Some(1), "{}", r[0]);
    assert_eq!(r[1]["group"], "never-written");
    assert_eq!(r[1]["files"], json!([]));
    assert!(
        r[1]["note"]
            .as_str()
            .unwrap_or("")
            .starts_with("no report files found for out/*.xml"),
        "{}",
        r[1]
    );
}

#[test]
fn the_human_output_shows_the_summary_line() {
    let p = Project::new();
    p.write("buildspec.yml", &spec(JUNIT, false));
    let out = p
        .runner()
        .args(["build", "--image", IMAGE, "--source"])
        .arg(p.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| {
            *l == "Reports: my-group: 5 tests, 3 passed, 1 failed, 1 skipped (2.50s) [1 file]"
        })
        .unwrap_or_else(|| panic!("no summary line in:\n{stdout}"));
    assert_eq!(
        lines.get(at + 1).copied(),
        Some("  FAIL calc.DivTest > divides_by_zero: expected Err, got Ok(inf)"),
        "{stdout}"
    );
}
