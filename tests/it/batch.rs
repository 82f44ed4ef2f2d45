//! `runner build --batch`: each task of the buildspec's `batch` section is its own build
//! in its own container, with graph order, fast-fail and ignore-failure respected.

use crate::support::{runner_containers, Project, Run};
use serde_json::Value;
use std::collections::BTreeMap;

fn batch_id(e: &Value) -> String {
    e["batch_identifier"].as_str().unwrap_or("").to_string()
}

/// Index in the event stream of `event` for the build of batch task `id`.
fn index_of(run: &Run, event: &str, id: &str) -> usize {
    run.events
        .iter()
        .position(|e| e["event"] == event && batch_id(e) == id)
        .unwrap_or_else(|| panic!("no {event} for {id}:\n{}", run.stdout))
}

/// Batch task → final status, from the `build_ended` events.
fn statuses(run: &Run) -> BTreeMap<String, String> {
    run.events
        .iter()
        .filter(|e| e["event"] == "build_ended")
        .map(|e| (batch_id(e), e["status"].as_str().unwrap_or("").to_string()))
        .collect()
}

fn started(run: &Run) -> Vec<String> {
    let mut v: Vec<String> = run
        .events
        .iter()
        .filter(|e| e["event"] == "build_started")
        .map(batch_id)
        .collect();
    v.sort();
    v
}

/// The build ids of the batch's builds.
fn build_ids(run: &Run) -> Vec<String> {
    run.events
        .iter()
        .filter(|e| e["event"] == "build_started")
        .map(|e| e["build_id"].as_str().unwrap_or("").to_string())
        .collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn assert_no_containers(run: &Run) {
    for id in build_ids(run) {
        assert_eq!(runner_containers(Some(&id)), 0, "{id} left a container");
    }
}

#[test]
fn build_graph_runs_dependents_after_their_dependency() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
batch:
  build-graph:
    - identifier: a
      env:
        variables:
          WHO: first
    - identifier: b
      depend-on:
        - a
      env:
        variables:
          WHO: second
    - identifier: c
      depend-on:
        - a
      env:
        variables:
          WHO: third
phases:
  build:
    commands:
      - echo "task=$CODEBUILD_BATCH_BUILD_IDENTIFIER who=$WHO"
"#,
    );
    let run = p.build(&["--batch", "--concurrency", "3"]);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert_eq!(started(&run), ["a", "b", "c"]);
    assert_eq!(
        statuses(&run),
        map(&[("a", "SUCCEEDED"), ("b", "SUCCEEDED"), ("c", "SUCCEEDED")])
    );
    let a_ended = index_of(&run, "build_ended", "a");
    for dependent in ["b", "c"] {
        assert!(
            index_of(&run, "build_started", dependent) > a_ended,
            "{dependent} started before a ended:\n{}",
            run.stdout
        );
    }
    let mut lines: Vec<String> = run
        .logs()
        .into_iter()
        .filter(|l| l.contains("] task="))
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "[a] task=a who=first",
            "[b] task=b who=second",
            "[c] task=c who=third"
        ]
    );
    // Every build has its own id and build number.
    let ids = build_ids(&run);
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|i| !i.is_empty()));
    assert_ne!(ids[0], ids[1]);
    assert_no_containers(&run);
}

#[test]
fn build_graph_does_not_start_dependents_of_a_failed_build() {
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
    let run = p.build(&["--batch"]);
    assert_eq!(run.code, 1, "{}", run.debug());
    assert_eq!(started(&run), ["a"]);
    assert_eq!(statuses(&run), map(&[("a", "FAILED")]));
    assert!(
        run.events.iter().any(|e| e["event"] == "notice"
            && e["message"] == "batch: b not started: a build it depends on failed"),
        "{}",
        run.stdout
    );

    // The human summary lists every task, including the one that never started.
    let out = p
        .runner()
        .args([
            "build",
            "--batch",
            "--image",
            crate::support::IMAGE,
            "--source",
        ])
        .arg(p.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .split("\nBatch:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no batch summary:\n{stdout}"));
    assert_eq!(
        summary.lines().collect::<Vec<_>>(),
        [
            format!("  {:<24} FAILED", "a"),
            format!("  {:<24} NOT STARTED", "b")
        ],
        "{stdout}"
    );
}

const FAST_FAIL: &str = r#"version: 0.2
batch:
  fast-fail: true
  build-list:
    - identifier: breaks
      IGNORE
      env:
        variables:
          MODE: fail
    - identifier: slow1
      env:
        variables:
          MODE: sleep
    - identifier: slow2
      env:
        variables:
          MODE: sleep
phases:
  build:
    commands:
      - echo "started $CODEBUILD_BATCH_BUILD_IDENTIFIER"
      - test "$MODE" != fail
      - if [ "$MODE" = sleep ]; then sleep SLEEP; fi
"#;

#[test]
fn fast_fail_stops_the_running_builds_and_starts_no_more() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        &FAST_FAIL
            .replace("      IGNORE\n", "")
            .replace("SLEEP", "60"),
    );
    let t = std::time::Instant::now();
    let run = p.build(&["--batch", "--concurrency", "2"]);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(30),
        "the sleeping build was not stopped"
    );
    assert_eq!(run.code, 1, "{}", run.debug());
    assert_eq!(
        statuses(&run),
        map(&[("breaks", "FAILED"), ("slow1", "STOPPED")]),
        "{}",
        run.stdout
    );
    assert_eq!(started(&run), ["breaks", "slow1"]);
    assert!(!run.has_line("started slow2"));
    let slow1_ended = run
        .events
        .iter()
        .find(|e| e["event"] == "build_ended" && batch_id(e) == "slow1")
        .cloned()
        .unwrap_or_default();
    let build_phase = slow1_ended["phases"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["phase"] == "BUILD"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(build_phase["status"], "STOPPED", "{slow1_ended}");
    assert!(
        run.events.iter().any(|e| e["event"] == "notice"
            && e["message"] == "batch: breaks failed; fast-fail stops the other builds"),
        "{}",
        run.stdout
    );
    assert_no_containers(&run);
}

#[test]
fn ignore_failure_lets_the_batch_succeed() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        &FAST_FAIL
            .replace("IGNORE", "ignore-failure: true")
            .replace("SLEEP", "0"),
    );
    let run = p.build(&["--batch", "--concurrency", "2"]);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert_eq!(
        statuses(&run),
        map(&[
            ("breaks", "FAILED"),
            ("slow1", "SUCCEEDED"),
            ("slow2", "SUCCEEDED")
        ])
    );
    assert_no_containers(&run);
}

#[test]
fn build_matrix_runs_one_build_per_variable_value() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
batch:
  build-matrix:
    static:
      env:
        variables:
          SHARED: same
    dynamic:
      env:
        variables:
          FLAVOUR:
            - vanilla
            - chocolate
            - mint
phases:
  build:
    commands:
      - echo "matrix $CODEBUILD_BATCH_BUILD_IDENTIFIER flavour=$FLAVOUR shared=$SHARED"
"#,
    );
    let run = p.build(&["--batch", "--concurrency", "3"]);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert_eq!(started(&run), ["build1", "build2", "build3"]);
    let mut lines: Vec<String> = run
        .logs()
        .into_iter()
        .filter(|l| l.contains("] matrix "))
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "[build1] matrix build1 flavour=vanilla shared=same",
            "[build2] matrix build2 flavour=chocolate shared=same",
            "[build3] matrix build3 flavour=mint shared=same",
        ]
    );
}

#[test]
fn a_task_can_run_its_own_buildspec() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
batch:
  build-list:
    - identifier: main
    - identifier: other
      buildspec: ci/other.yml
phases:
  build:
    commands:
      - echo "main buildspec for $CODEBUILD_BATCH_BUILD_IDENTIFIER"
"#,
    );
    p.write(
        "ci/other.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo \"other buildspec for $CODEBUILD_BATCH_BUILD_IDENTIFIER\"\n",
    );
    let run = p.build(&["--batch"]);
    assert_eq!(run.code, 0, "{}", run.debug());
    let mut lines: Vec<String> = run
        .logs()
        .into_iter()
        .filter(|l| l.contains(" buildspec for "))
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "[main] main buildspec for main",
            "[other] other buildspec for other"
        ]
    );
    let other = run
        .events
        .iter()
        .find(|e| e["event"] == "build_started" && batch_id(e) == "other")
        .cloned()
        .unwrap_or_default();
    assert!(
        other["buildspec"]
            .as_str()
            .unwrap_or("")
            .ends_with("/ci/other.yml"),
        "{other}"
    );

    // A task buildspec outside the source directory is refused before anything runs.
    p.write(
        "buildspec.yml",
        "version: 0.2\nbatch:\n  build-list:\n    - identifier: x\n      buildspec: ../elsewhere.yml\nphases:\n  build:\n    commands:\n      - echo hi\n",
    );
    let run = p.build(&["--batch"]);
    assert_eq!(run.code, 2, "{}", run.debug());
    assert!(run.events.is_empty());
    assert!(
        run.stderr.contains("batch task x: buildspec \"../elsewhere.yml\" must be a path inside the source directory"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_task_whose_image_does_not_exist_is_a_setup_error() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
batch:
  build-list:
    - identifier: good
    - identifier: noimage
      env:
        image: runner/does-not-exist:batch
phases:
  build:
    commands:
      - echo "ran $CODEBUILD_BATCH_BUILD_IDENTIFIER"
"#,
    );
    let run = p.build(&["--batch"]);
    assert_eq!(run.code, 2, "{}", run.debug());
    assert!(run.events.is_empty(), "nothing ran: {}", run.stdout);
    assert!(
        run.stderr
            .contains("image \"runner/does-not-exist:batch\" is not on this machine"),
        "{}",
        run.stderr
    );
}

/// An image that exists but has no shell: its container cannot start (a FAULT).
fn image_without_shell() -> &'static str {
    use std::sync::OnceLock;
    const NAME: &str = "runner-test/noshell:latest";
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let exists = std::process::Command::new("docker")
            .args(["image", "inspect", NAME])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if exists {
            return;
        }
        crate::support::docker_import(NAME, &[("readme", b"hi\n")]);
    });
    NAME
}

#[test]
fn a_task_whose_container_cannot_start_faults_and_the_batch_exits_3() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        &format!(
            r#"version: 0.2
batch:
  build-list:
    - identifier: fails
      env:
        variables:
          MODE: fail
    - identifier: good
    - identifier: noshell
      env:
        image: {}
phases:
  build:
    commands:
      - echo "ran $CODEBUILD_BATCH_BUILD_IDENTIFIER"
      - test "$MODE" != fail
"#,
            image_without_shell()
        ),
    );
    // One at a time, in list order: the FAILED build ends before the FAULT one, and the
    // exit status must not depend on that order.
    let run = p.build(&["--batch", "--concurrency", "1"]);
    assert_eq!(
        statuses(&run),
        map(&[
            ("fails", "FAILED"),
            ("good", "SUCCEEDED"),
            ("noshell", "FAULT")
        ]),
        "{}",
        run.stdout
    );
    assert_eq!(run.code, 3, "{}", run.debug());
    assert!(run.has_line("[good] ran good"));
    assert!(!run.has_line("[noshell] ran noshell"));
    let ended = run
        .events
        .iter()
        .find(|e| e["event"] == "build_ended" && batch_id(e) == "noshell")
        .cloned()
        .unwrap_or_default();
    let provisioning = ended["phases"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["phase"] == "PROVISIONING"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(provisioning["status"], "FAULT", "{ended}");
    assert!(
        provisioning["context"]
            .as_str()
            .unwrap_or("")
            .contains("/bin/sh"),
        "{ended}"
    );
    assert_no_containers(&run);

    // With ignore-failure on the faulting task, only the failed one counts.
    let spec = std::fs::read_to_string(p.path().join("buildspec.yml")).unwrap_or_default();
    p.write(
        "buildspec.yml",
        &spec.replace(
            "    - identifier: noshell\n",
            "    - identifier: noshell\n      ignore-failure: true\n",
        ),
    );
    let run = p.build(&["--batch", "--concurrency", "1"]);
    assert_eq!(statuses(&run)["noshell"], "FAULT");
    assert_eq!(run.code, 1, "{}", run.debug());
}

#[test]
fn batch_artifacts_go_below_one_directory_per_task() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
batch:
  build-list:
    - identifier: linux
    - identifier: mac
phases:
  build:
    commands:
      - mkdir -p out
      - echo "$CODEBUILD_BATCH_BUILD_IDENTIFIER" > out/id.txt
artifacts:
  base-directory: out
  files:
    - '**/*'
"#,
    );
    let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = p.build(&[
        "--batch",
        "--source-mode",
        "copy",
        "--artifacts",
        &out.path().display().to_string(),
    ]);
    assert_eq!(run.code, 0, "{}", run.debug());
    for id in ["linux", "mac"] {
        let got = std::fs::read_to_string(out.path().join(id).join("primary/id.txt"))
            .unwrap_or_else(|e| panic!("{id}: {e}\n{}", run.debug()));
        assert_eq!(got, format!("{id}\n"));
    }
}

#[test]
fn without_a_batch_section_batch_is_a_setup_error() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo hi\n",
    );
    let run = p.build(&["--batch"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("has no batch section"),
        "{}",
        run.stderr
    );
}

#[test]
fn ctrl_c_stops_the_whole_batch_and_leaves_no_container() {
    use std::io::BufRead;
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
batch:
  build-list:
    - identifier: one
    - identifier: two
    - identifier: three
phases:
  build:
    commands:
      - sleep 60
"#,
    );
    let mut child = p
        .runner()
        .args([
            "build",
            "--json",
            "--batch",
            "--concurrency",
            "2",
            "--image",
            crate::support::IMAGE,
            "--source",
        ])
        .arg(p.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let mut sleeping = 0;
    for line in lines.by_ref() {
        let line = line.unwrap_or_default();
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        if v["event"] == "command_started" {
            sleeping += 1;
        }
        seen.push(v);
        if sleeping == 2 {
            break;
        }
    }
    assert_eq!(sleeping, 2, "both builds started sleeping");
    let st = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(st.success());
    for line in lines {
        seen.push(serde_json::from_str(&line.unwrap_or_default()).unwrap_or_default());
    }
    let status = child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
    assert_eq!(status.code(), Some(130));
    let ended: BTreeMap<String, String> = seen
        .iter()
        .filter(|e| e["event"] == "build_ended")
        .map(|e| (batch_id(e), e["status"].as_str().unwrap_or("").to_string()))
        .collect();
    assert_eq!(ended, map(&[("one", "STOPPED"), ("two", "STOPPED")]));
    assert!(
        !seen
            .iter()
            .any(|e| e["message"].as_str().unwrap_or("").contains("fast-fail")),
        "a stop is not a failure"
    );
    for e in seen.iter().filter(|e| e["event"] == "build_started") {
        let id = e["build_id"].as_str().unwrap_or("");
        assert_eq!(runner_containers(Some(id)), 0, "{id} left a container");
    }
}
