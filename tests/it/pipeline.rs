//! The pipeline API as an agent or a GitHub Actions step would drive it: a request built
//! in code, `prepare` then `execute` with an in-memory reporter, the outcome read as
//! values. Diagnostics must arrive as events, not on standard error.

use crate::support::{runner_containers, Project, IMAGE};
use runner::event::{BuildStatus, Event, Level, Recorder};
use runner::pipeline::{self, BuildRequest, CacheChoice, Outcome, PrepareError, Release, Verdict};
use runner::run::Canceller;
use std::sync::Arc;

const TOKEN: &str = "tok-pipeline-7Hq2Lx9Vb";

fn request(p: &Project) -> BuildRequest {
    let mut req = BuildRequest::new(p.path(), p.data.path());
    req.image = Some(IMAGE.into());
    req.cache = CacheChoice::Off;
    req.cache_volumes = false;
    req.host_ca = pipeline::HostCa::Never;
    req
}

fn events(rec: &Recorder) -> Vec<Event> {
    rec.0.lock().map(|e| e.clone()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_reports_diagnostics_as_events_and_execute_runs_the_build() {
    let p = Project::new();
    p.write(
        "secrets.json",
        &serde_json::json!({"parameters": {"/app/token": TOKEN, "/app/pin": "123"}}).to_string(),
    );
    p.write(
        "buildspec.yml",
        "version: 0.2\nenv:\n  parameter-store:\n    TOKEN: /app/token\n    PIN: /app/pin\nphases:\n  build:\n    colour: red\n    commands:\n      - echo \"token $TOKEN\"\n",
    );
    let mut req = request(&p);
    req.secrets_file = Some(p.path().join("secrets.json"));
    let rec = Arc::new(Recorder::default());

    let prepared = pipeline::prepare(req, rec.as_ref())
        .await
        .unwrap_or_else(|e| panic!("prepare: {e}"));
    // Before execute: only diagnostics, and no container for the planned build.
    let before = events(&rec);
    let diags: Vec<_> = before
        .iter()
        .map(|e| match e {
            Event::Diagnostic(d) => d.clone(),
            other => panic!("prepare emitted {other:?}"),
        })
        .collect();
    assert!(
        diags.iter().any(|d| d.level == Level::Warning
            && d.file
                .as_deref()
                .is_some_and(|f| f.ends_with("buildspec.yml"))
            && d.line == Some(8)
            && d.message.contains("colour")),
        "{diags:?}"
    );
    assert!(
        diags.iter().any(|d| d.level == Level::Warning
            && d.file.is_none()
            && d.message
                .starts_with("secret PIN is not masked in the output")),
        "{diags:?}"
    );
    let plans = prepared.plans();
    assert_eq!(plans.len(), 1);
    let build_id = plans[0].build_id.clone();
    assert_eq!(runner_containers(Some(&build_id)), 0);
    let log_file = prepared
        .log_file()
        .map(|l| l.to_path_buf())
        .unwrap_or_else(|| panic!("no log file"));

    let (_keep, cancel) = Canceller::new();
    let outcome = pipeline::execute(prepared, rec.clone(), cancel).await;
    assert_eq!(outcome.verdict(), Verdict::Succeeded, "{outcome:?}");
    match &outcome {
        Outcome::Build {
            result,
            release: Release::None,
        } => {
            assert_eq!(result.status, BuildStatus::Succeeded);
            assert_eq!(result.build_id, build_id);
        }
        other => panic!("{other:?}"),
    }
    let all = events(&rec);
    let logs: Vec<&str> = all
        .iter()
        .filter_map(|e| match e {
            Event::Log { line, .. } => Some(line.as_str()),
            _ => None,
        })
        .collect();
    // Every reporter execute is given sits behind the build's masker.
    assert!(logs.contains(&"token ***"), "{logs:?}");
    assert!(!format!("{all:?}").contains(TOKEN));
    let text = std::fs::read_to_string(&log_file).unwrap_or_default();
    assert!(
        text.contains("Entering phase BUILD") && text.contains("token ***"),
        "{text}"
    );
    assert_eq!(runner_containers(Some(&build_id)), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_fails_in_prepare_and_nothing_runs() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo hi\n",
    );
    let mut req = request(&p);
    req.image = Some("runner/does-not-exist:pipeline".into());
    let rec = Recorder::default();
    match pipeline::prepare(req, &rec).await {
        Err(PrepareError::Docker(e)) => {
            assert!(e.to_string().contains("is not on this machine"), "{e}")
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("prepared with a missing image"),
    }
    assert!(events(&rec).is_empty());
    // No build number was taken: nothing was planned.
    assert!(!p.data.path().join("projects").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_outcome_lists_every_planned_build() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
batch:
  build-graph:
    - identifier: a
    - identifier: b
      depend-on:
        - a
phases:
  build:
    commands:
      - test "$CODEBUILD_BATCH_BUILD_IDENTIFIER" != a
"#,
    );
    let mut req = request(&p);
    req.batch = Some(2);
    let rec = Arc::new(Recorder::default());
    let prepared = pipeline::prepare(req, rec.as_ref())
        .await
        .unwrap_or_else(|e| panic!("prepare: {e}"));
    assert!(prepared.is_batch());
    assert_eq!(prepared.plans().len(), 2);
    let (_keep, cancel) = Canceller::new();
    let outcome = pipeline::execute(prepared, rec.clone(), cancel).await;
    assert_eq!(outcome.verdict(), Verdict::Failed);
    let Outcome::Batch(summary) = &outcome else {
        panic!("{outcome:?}")
    };
    let rows: Vec<(&str, Option<BuildStatus>)> = summary
        .builds
        .iter()
        .map(|b| (b.identifier.as_str(), b.status))
        .collect();
    assert_eq!(rows, [("a", Some(BuildStatus::Failed)), ("b", None)]);
    // The summary is the batch's last event, for every reporter.
    assert_eq!(
        events(&rec).last(),
        Some(&Event::BatchEnded(summary.clone()))
    );
}
