//! The job page's tests and findings, end to end: a real agent runs a buildspec whose
//! `reports:` JUnit file has a failing test, in a source with a planted GitHub token and a
//! vulnerable `Cargo.lock` (the project's scan policy reports the secret and accepts the
//! advisory, so the build runs); the page shows the report's counts, the failure with its
//! message, and the findings most severe first with their severity, id and place, escaped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::pool_web::Browser;
use crate::support::fresh_github_token;
use crate::support_pool::{project, source, Containers, Pool};
use reqwest::StatusCode;

const JUNIT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="calc" tests="3" failures="1" skipped="1">
    <testcase classname="calc.Add" name="adds_small_numbers" time="0.01"/>
    <testcase classname="calc.Add" name="adds_negative_numbers" time="0.02">
      <failure message="expected &lt;-3&gt; but was 3" type="AssertionError">at calc.rs:12</failure>
    </testcase>
    <testcase classname="calc.Div" name="divides_by_zero"><skipped/></testcase>
  </testsuite>
</testsuites>
"#;

const VULNERABLE_LOCK: &str = "version = 3\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\ndependencies = [\"regex\"]\n\n[[package]]\nname = \"regex\"\nversion = \"1.5.4\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n";

/// A source whose build reports a failing test and whose scan finds a secret (reported:
/// the policy fails on none) and a vulnerability (accepted by the allow list): (source,
/// the planted token).
pub fn results_source() -> (tempfile::TempDir, String) {
    let token = fresh_github_token();
    let advisories = crate::support::repo_root().join("../shared/advisories");
    let runner_yml = format!(
        "scan:\n  image: false\n  policy: policy.yml\n  advisories: {}\n",
        advisories.display()
    );
    let settings = format!("GITHUB_TOKEN = \"{token}\"\n");
    let src = source(&[
        (
            "buildspec.yml",
            "version: 0.2\nphases:\n  build:\n    commands:\n      - echo tests ran\nreports:\n  unit-tests:\n    files:\n      - junit.xml\n    base-directory: reports\n",
        ),
        ("reports/junit.xml", JUNIT),
        ("runner.yml", &runner_yml),
        (
            "policy.yml",
            "secrets:\n  fail-on: none\nallow:\n  - id: RUSTSEC-2022-0013\n    package: regex\n    reason: \"no untrusted regexes reach this app\"\n    expires: 2999-12-31\n",
        ),
        ("config/settings.py", &settings),
        ("Cargo.lock", VULNERABLE_LOCK),
    ]);
    (src, token)
}

/// The severities of the findings table's rows, in order.
pub fn finding_severities(html: &str) -> Vec<String> {
    html.split("<tr class=\"finding\">")
        .skip(1)
        .filter_map(|row| {
            let at = row.find("class=\"sev sev-")? + "class=\"sev sev-".len();
            Some(row[at..].split('"').next()?.to_string())
        })
        .collect()
}

#[tokio::test]
async fn web_job_page_shows_junit_results_and_scan_findings_from_a_real_agent() {
    let pool = Pool::start(30);
    let _agent = pool.agent("web-results", &[]);
    let name = project("web-results");
    let _containers = Containers(name.clone());
    let (src, token) = results_source();
    let id = pool.submit(src.path(), &name, &[]);
    let job = pool.wait_job(&id, "the job to finish", 180, |j| {
        j["state"] != "queued" && j["state"] != "running"
    });
    // A failing test does not fail the build; the scan's policy passed.
    assert_eq!(job["state"], "succeeded", "{job}");

    let mut b = Browser::new(&pool);
    b.sign_in(pool.submit_token()).await;
    let page = b.get(&format!("/jobs/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let h = page.body;
    // Tests: the report's counts and the failure with its message, escaped.
    assert!(h.contains("<h2>Tests</h2>"), "{h}");
    assert!(h.contains("<td>unit-tests</td>"), "{h}");
    assert!(h.contains("<td class=\"n passed\">1</td>"), "{h}");
    assert!(h.contains("<td class=\"n failed\">1</td>"), "{h}");
    assert!(
        h.contains("<td>calc.Add</td><td>adds_negative_numbers</td>"),
        "{h}"
    );
    assert!(h.contains("expected &lt;-3&gt; but was 3"), "{h}");
    assert!(
        !h.contains("adds_small_numbers</td>"),
        "only failures are listed"
    );
    // Findings: the secret (reported, never its value) and the advisory (accepted).
    assert!(h.contains("<h2>Findings</h2>"), "{h}");
    assert!(h.contains("<code>config/settings.py:1</code>"), "{h}");
    assert!(h.contains("<code>RUSTSEC-2022-0013</code>"), "{h}");
    assert!(h.contains("regex@1.5.4 (crates.io, Cargo.lock)"), "{h}");
    assert!(h.contains("class=\"j-allowed\""), "{h}");
    assert!(h.contains("class=\"j-reported\""), "{h}");
    assert!(!h.contains(&token), "the page shows the secret's value");
    // Most severe first.
    let order = ["critical", "high", "medium", "low", "unknown"];
    let sev = finding_severities(&h);
    assert_eq!(sev.len(), 2, "{h}");
    let rank = |s: &String| order.iter().position(|o| o == s).unwrap();
    assert!(
        sev.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])),
        "{sev:?}"
    );
}
