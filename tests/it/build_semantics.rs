//! CodeBuild's execution semantics, against the real Docker engine.

use crate::support::{runner_containers, Project};

const COMMON_PHASES: &str = "SUBMITTED=SUCCEEDED,PROVISIONING=SUCCEEDED,DOWNLOAD_SOURCE=SUCCEEDED";

fn phases(run: &crate::support::Run) -> String {
    run.phases().join(",")
}

#[test]
fn version_0_2_keeps_one_shell_across_commands_and_phases() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
phases:
  install:
    commands:
      - export FOO=bar
      - cd /tmp
      - BAR=unexported
  build:
    commands:
      - echo "foo=$FOO bar=$BAR pwd=$(pwd)"
"#,
    );
    let run = p.build(&[]);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert!(
        run.has_line("foo=bar bar=unexported pwd=/tmp"),
        "{}",
        run.debug()
    );
}

#[test]
fn version_0_1_runs_each_command_in_a_fresh_shell() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.1
phases:
  build:
    commands:
      - export FOO=bar
      - cd /tmp
      - echo "foo=$FOO pwd=$(pwd) src=$CODEBUILD_SRC_DIR"
"#,
    );
    let run = p.build(&[]);
    assert_eq!(run.code, 0, "{}", run.debug());
    let line = run
        .logs()
        .into_iter()
        .find(|l| l.starts_with("foo="))
        .unwrap_or_default();
    let src = line.rsplit("src=").next().unwrap_or("");
    assert!(src.starts_with("/codebuild/output/src"), "{line}");
    assert_eq!(line, format!("foo= pwd={src} src={src}"));
}

#[test]
fn a_failed_command_skips_the_rest_of_its_phase_but_finally_runs() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
phases:
  build:
    commands:
      - echo before
      - sh -c 'exit 7'
      - echo never
    finally:
      - echo "finally ran"
"#,
    );
    let run = p.build(&[]);
    assert_eq!(run.code, 1, "{}", run.debug());
    assert_eq!(run.status(), "FAILED");
    assert!(run.has_line("before"));
    assert!(!run.has_line("never"), "{}", run.debug());
    assert!(run.has_line("finally ran"));
    let ended = run
        .events
        .iter()
        .find(|e| e["event"] == "phase_ended" && e["phase"] == "BUILD")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        ended["context"],
        "COMMAND_EXECUTION_ERROR: Error while executing command: sh -c 'exit 7'. Reason: exit status 7"
    );
}

fn transition_spec(failing: &str) -> String {
    let mut s = String::from("version: 0.2\nphases:\n");
    for phase in ["install", "pre_build", "build", "post_build"] {
        s.push_str(&format!(
            "  {phase}:\n    commands:\n      - echo ran-{phase}\n"
        ));
        if phase == failing {
            s.push_str("      - \"false\"\n");
        }
        if phase == "post_build" || phase == "build" {
            s.push_str("      - echo succeeding-$CODEBUILD_BUILD_SUCCEEDING\n");
        }
    }
    s.push_str("artifacts:\n  files:\n    - '**/*'\n");
    s
}

#[test]
fn install_failure_goes_straight_to_finalizing() {
    let p = Project::new();
    p.write("buildspec.yml", &transition_spec("install"));
    let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = p.build(&["--artifacts", &out.path().display().to_string()]);
    assert_eq!(run.code, 1, "{}", run.debug());
    assert_eq!(
        phases(&run),
        format!("{COMMON_PHASES},INSTALL=FAILED,FINALIZING=SUCCEEDED,COMPLETED=SUCCEEDED")
    );
    assert!(!run.has_line("ran-pre_build"));
    assert!(!run.has_line("ran-post_build"));
}

#[test]
fn pre_build_failure_goes_straight_to_finalizing() {
    let p = Project::new();
    p.write("buildspec.yml", &transition_spec("pre_build"));
    let run = p.build(&[]);
    assert_eq!(run.code, 1);
    assert_eq!(
        phases(&run),
        format!("{COMMON_PHASES},INSTALL=SUCCEEDED,PRE_BUILD=FAILED,FINALIZING=SUCCEEDED,COMPLETED=SUCCEEDED")
    );
}

#[test]
fn build_failure_still_runs_post_build_and_uploads_artifacts() {
    let p = Project::new();
    p.write("buildspec.yml", &transition_spec("build"));
    let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = p.build(&["--artifacts", &out.path().display().to_string()]);
    assert_eq!(run.code, 1, "{}", run.debug());
    assert_eq!(
        phases(&run),
        format!("{COMMON_PHASES},INSTALL=SUCCEEDED,PRE_BUILD=SUCCEEDED,BUILD=FAILED,POST_BUILD=SUCCEEDED,UPLOAD_ARTIFACTS=SUCCEEDED,FINALIZING=SUCCEEDED,COMPLETED=SUCCEEDED")
    );
    assert!(run.has_line("ran-post_build"));
    assert!(run.has_line("succeeding-0"), "{}", run.debug());
    assert!(out.path().join("primary/buildspec.yml").is_file());
}

#[test]
fn post_build_failure_still_uploads_artifacts() {
    let p = Project::new();
    p.write("buildspec.yml", &transition_spec("post_build"));
    let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = p.build(&["--artifacts", &out.path().display().to_string()]);
    assert_eq!(run.code, 1);
    assert!(
        run.has_line("succeeding-1"),
        "the build phase succeeded: {}",
        run.debug()
    );
    assert!(phases(&run).contains("POST_BUILD=FAILED,UPLOAD_ARTIFACTS=SUCCEEDED"));
}

#[test]
fn on_failure_continue_moves_on_to_the_next_phase() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
phases:
  install:
    on-failure: CONTINUE
    commands:
      - "false"
  pre_build:
    commands:
      - echo pre-build-ran
"#,
    );
    let run = p.build(&[]);
    assert_eq!(run.code, 1, "the build still fails: {}", run.debug());
    assert!(run.has_line("pre-build-ran"));
    assert!(phases(&run).contains("INSTALL=FAILED,PRE_BUILD=SUCCEEDED"));
}

#[test]
fn exported_variables_report_their_final_values() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
env:
  variables:
    STAGE: dev
  exported-variables:
    - STAGE
    - IMAGE_TAG
    - NEVER_SET
phases:
  build:
    commands:
      - export IMAGE_TAG=v1-$(echo abc)
  post_build:
    commands:
      - STAGE=prod
"#,
    );
    let run = p.build(&[]);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert_eq!(
        run.result()["exported_variables"],
        serde_json::json!([
            ["STAGE", "prod"],
            ["IMAGE_TAG", "v1-abc"],
            ["NEVER_SET", ""]
        ])
    );
}

#[test]
fn codebuild_variables_are_set_and_build_numbers_count_up() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
phases:
  build:
    commands:
      - echo "src=$CODEBUILD_SRC_DIR pwd=$(pwd)"
      - echo "id=$CODEBUILD_BUILD_ID"
      - echo "number=$CODEBUILD_BUILD_NUMBER"
      - echo "rev=$CODEBUILD_RESOLVED_SOURCE_VERSION"
      - echo "start=$CODEBUILD_START_TIME"
      - echo "succeeding=$CODEBUILD_BUILD_SUCCEEDING"
      - echo "image=$CODEBUILD_BUILD_IMAGE"
"#,
    );
    let git = |args: &[&str]| {
        let o = std::process::Command::new("git")
            .arg("-C")
            .arg(p.path())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("git: {e}"));
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    git(&["init", "-q"]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "x",
    ]);
    let commit = git(&["rev-parse", "HEAD"]);

    let first = p.build(&["--project", "demo"]);
    assert_eq!(first.code, 0, "{}", first.debug());
    let second = p.build(&["--project", "demo"]);
    let get = |run: &crate::support::Run, key: &str| {
        run.logs()
            .into_iter()
            .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
            .unwrap_or_default()
    };
    let src_line = first
        .logs()
        .into_iter()
        .find(|l| l.starts_with("src="))
        .unwrap_or_default();
    let (src, pwd) = src_line
        .trim_start_matches("src=")
        .split_once(" pwd=")
        .unwrap_or(("", "?"));
    assert_eq!(src, pwd, "commands start in CODEBUILD_SRC_DIR");
    assert!(get(&first, "id").starts_with("demo:"));
    assert_eq!(get(&first, "id"), first.build_id());
    assert_eq!(get(&first, "number"), "1");
    assert_eq!(get(&second, "number"), "2");
    assert_eq!(get(&first, "rev"), commit);
    assert!(get(&first, "start")
        .parse::<u64>()
        .is_ok_and(|t| t > 1_600_000_000_000));
    assert_eq!(get(&first, "succeeding"), "1");
    assert_eq!(get(&first, "image"), crate::support::IMAGE);
}

#[test]
fn env_overrides_win_and_reserved_names_are_refused() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
env:
  variables:
    A: from-buildspec
    B: from-buildspec
phases:
  build:
    commands:
      - echo "A=$A B=$B C=$C"
"#,
    );
    p.write("vars.env", "B=from-file\nC=\"from file\"\n");
    let run = p.build(&["--env-file", "vars.env", "--env", "A=from-cli"]);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert!(
        run.has_line("A=from-cli B=from-file C=from file"),
        "{}",
        run.debug()
    );

    let refused = p.build(&["--env", "CODEBUILD_SRC_DIR=/x"]);
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains("CODEBUILD_SRC_DIR is reserved"),
        "{}",
        refused.stderr
    );
}

#[test]
fn output_is_complete_and_in_order_even_without_trailing_newlines() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
phases:
  build:
    commands:
      - printf 'no-newline'
      - echo to-stderr >&2; echo to-stdout
      - "set -x; echo traced; set +x"
      - |
        for i in 1 2 3; do
          echo "line $i"
        done
"#,
    );
    let run = p.build(&[]);
    assert_eq!(run.code, 0, "{}", run.debug());
    let logs = run.logs();
    let joined = logs.join("\n");
    assert!(joined.contains("no-newline\n"), "{joined}");
    assert!(run.has_line("to-stderr") && run.has_line("to-stdout"));
    assert!(run.has_line("traced"));
    assert!(
        !joined.contains("__runner_rc"),
        "protocol noise leaked: {joined}"
    );
    assert!(!joined.contains("\u{1e}"), "markers leaked: {joined}");
    let pos = |s: &str| logs.iter().position(|l| l == s).unwrap_or(usize::MAX);
    assert!(pos("line 1") < pos("line 2") && pos("line 2") < pos("line 3"));
}

#[test]
fn an_exiting_shell_fails_the_phase_and_later_phases_get_a_new_shell() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
phases:
  build:
    commands:
      - exit 3
  post_build:
    commands:
      - echo post-build-ran
"#,
    );
    let run = p.build(&[]);
    assert_eq!(run.code, 1, "{}", run.debug());
    assert!(run.has_line("post-build-ran"), "{}", run.debug());
    assert!(run.stdout.contains("exit status 3"));
}

#[test]
fn run_as_runs_commands_as_that_user_and_carries_the_environment() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
phases:
  install:
    commands:
      - export CARRIED=yes
      - cd /tmp
  build:
    run-as: builder
    commands:
      - echo "user=$(id -un) carried=$CARRIED pwd=$(pwd)"
      - export BACK=from-builder
  post_build:
    commands:
      - echo "user=$(id -un) back=$BACK"
"#,
    );
    let run = p.build(&[]);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert!(
        run.has_line("user=builder carried=yes pwd=/tmp"),
        "{}",
        run.debug()
    );
    assert!(
        run.has_line("user=root back=from-builder"),
        "{}",
        run.debug()
    );
}

#[test]
fn env_shell_chooses_the_shell() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        "version: 0.2\nenv:\n  shell: /bin/ash\nphases:\n  build:\n    commands:\n      - echo \"shell=$0\"\n",
    );
    let run = p.build(&[]);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert!(run.has_line("shell=/bin/ash"), "{}", run.debug());
}

#[test]
fn timeout_stops_the_build_and_removes_its_container() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - sleep 60\n",
    );
    let run = p.build(&["--timeout", "0.05"]);
    assert_eq!(run.code, 1, "{}", run.debug());
    assert_eq!(run.status(), "TIMED_OUT");
    assert!(phases(&run).contains("BUILD=TIMED_OUT"));
    assert_eq!(runner_containers(Some(&run.build_id())), 0);
}

fn spawn_sleeper(p: &Project) -> (std::process::Child, String) {
    use std::io::BufRead;
    p.write(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - sleep 120\n",
    );
    let mut child = p
        .runner()
        .args([
            "build",
            "--json",
            "--image",
            crate::support::IMAGE,
            "--source",
        ])
        .arg(p.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut build_id = String::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["event"] == "build_started" {
            build_id = v["build_id"].as_str().unwrap_or("").to_string();
        }
        if v["event"] == "command_started" {
            break;
        }
    }
    assert!(!build_id.is_empty());
    assert_eq!(
        runner_containers(Some(&build_id)),
        1,
        "the build container runs"
    );
    (child, build_id)
}

fn signal(child: &std::process::Child, sig: &str) {
    let st = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(st.success());
}

#[test]
fn sigterm_and_ctrl_c_stop_the_build_and_leave_no_container() {
    for sig in ["-TERM", "-INT"] {
        let p = Project::new();
        let (mut child, build_id) = spawn_sleeper(&p);
        signal(&child, sig);
        let status = child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
        assert_eq!(status.code(), Some(130), "{sig}");
        assert_eq!(
            runner_containers(Some(&build_id)),
            0,
            "{sig}: container left behind"
        );
    }
}

#[test]
fn even_a_killed_runner_leaves_no_container() {
    let p = Project::new();
    let (mut child, build_id) = spawn_sleeper(&p);
    signal(&child, "-KILL");
    let _ = child.wait();
    // The engine removes the container once its main process sees the attach close;
    // this waits for that (it is not a timing assertion: the bound is generous).
    let mut left = 1;
    for _ in 0..100 {
        left = runner_containers(Some(&build_id));
        if left == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        left, 0,
        "the dead-man's switch did not remove the container"
    );
}

#[test]
fn bad_input_exits_2_with_a_located_message() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands: make all\n",
    );
    let run = p.build(&[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains(
            "buildspec.yml:4:15: error: phases.build.commands must be a list of commands"
        ),
        "{}",
        run.stderr
    );
    assert!(run.events.is_empty(), "nothing ran");

    let missing_image = {
        let p = Project::new();
        p.write(
            "buildspec.yml",
            "version: 0.2\nphases:\n  build:\n    commands:\n      - echo hi\n",
        );
        let out = p
            .runner()
            .args(["build", "--image", "runner/does-not-exist:1", "--source"])
            .arg(p.path())
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        crate::support::Run::from(out)
    };
    assert_eq!(missing_image.code, 2, "{}", missing_image.debug());
    assert!(
        missing_image
            .stderr
            .contains("image \"runner/does-not-exist:1\" is not on this machine"),
        "{}",
        missing_image.debug()
    );

    let no_source = Project::new()
        .runner()
        .args([
            "build",
            "--image",
            crate::support::IMAGE,
            "--source",
            "/definitely/not/here",
        ])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(no_source.status.code(), Some(2));
}

#[test]
fn runtime_versions_are_reported_not_silently_ignored() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        "version: 0.2\nphases:\n  install:\n    runtime-versions:\n      python: 3.12\n",
    );
    let run = p.build(&[]);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert!(run
        .stdout
        .contains("Runtime version selection is not supported by this build image"));
}

#[test]
fn containers_trust_the_host_ca_bundle() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - test -s \"$SSL_CERT_FILE\" && echo \"ca=$SSL_CERT_FILE pip=$PIP_CERT\"\n",
    );
    let run = p.build(&["--host-ca", "always"]);
    assert_eq!(run.code, 0, "{}", run.debug());
    let ca = runner::plan::CA_BUNDLE_MOUNT;
    assert!(
        run.has_line(&format!("ca={ca} pip={ca}")),
        "{}",
        run.debug()
    );
    let off = p.build(&["--host-ca", "never"]);
    assert_eq!(
        off.code,
        1,
        "no bundle without the setting: {}",
        off.debug()
    );
}

#[test]
fn copy_mode_leaves_the_host_source_untouched() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
phases:
  build:
    commands:
      - cat input.txt
      - mkdir -p dist && echo built > dist/out.txt
artifacts:
  files:
    - dist/out.txt
"#,
    );
    p.write("input.txt", "hello from the host");
    let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = p.build(&[
        "--source-mode",
        "copy",
        "--artifacts",
        &out.path().display().to_string(),
    ]);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert!(run.has_line("hello from the host"));
    assert!(
        !p.path().join("dist").exists(),
        "copy mode must not write to the host source"
    );
    let built =
        std::fs::read_to_string(out.path().join("primary/dist/out.txt")).unwrap_or_default();
    assert_eq!(built, "built\n");
}

#[test]
fn the_project_file_names_the_image_and_sits_between_buildspec_and_flags() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        "version: 0.2\nenv:\n  variables:\n    A: spec\n    B: spec\n    C: spec\nphases:\n  build:\n    commands:\n      - echo \"A=$A B=$B C=$C id=$CODEBUILD_BUILD_ID\"\n",
    );
    p.write(
        "runner.yml",
        &format!(
            "name: from-file\nbuild:\n  image: {}\n  variables:\n    B: project\n    C: project\n",
            crate::support::IMAGE
        ),
    );
    let out = p
        .runner()
        .args(["build", "--json", "--env", "C=cli", "--source"])
        .arg(p.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let run = crate::support::Run::from(out);
    assert_eq!(run.code, 0, "{}", run.debug());
    let line = run
        .logs()
        .into_iter()
        .find(|l| l.starts_with("A="))
        .unwrap_or_default();
    assert!(
        line.starts_with("A=spec B=project C=cli id=from-file:"),
        "{line}"
    );

    // Every build writes its log file in the data directory.
    let log = run.result()["log_file"].as_str().unwrap_or("").to_string();
    assert!(
        log.starts_with(&p.data.path().display().to_string()),
        "{log}"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("Entering phase BUILD") && text.contains(&line),
        "{text}"
    );

    p.write("runner.yml", "build:\n  timeout-minutes: soon\n");
    let bad = p
        .runner()
        .args(["build", "--source"])
        .arg(p.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr)
        .contains("runner.yml:2:20: error: build.timeout-minutes"));
}

#[test]
fn run_as_an_unknown_user_says_so() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    run-as: nosuchuser\n    commands:\n      - echo never\n",
    );
    let run = p.build(&[]);
    assert_eq!(run.code, 1, "{}", run.debug());
    assert!(phases(&run).contains("BUILD=FAILED"), "{}", phases(&run));
    assert!(
        run.stdout
            .contains("cannot run commands as user \\\"nosuchuser\\\" (run-as)"),
        "{}",
        run.stdout
    );
    assert_eq!(runner_containers(Some(&run.build_id())), 0);
}
