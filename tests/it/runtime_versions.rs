//! `runtime-versions` against an image that declares its runtimes the way CodeBuild's
//! standard images do (/codebuild/image/config/runtimes.yml): two versions of one
//! runtime selected in two builds (`node --version` proves which), the selection lasting
//! into later phases, a version the image lacks failing INSTALL with CodeBuild's
//! message, and an image without the file keeping the old behaviour (a notice).

use crate::support::{Project, Run, IMAGE};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// A small image with two fake Node.js versions and CodeBuild's runtimes file selecting
/// them by PATH. Built once per test run from the local busybox base.
fn runtimes_image() -> &'static str {
    const TAG: &str = "runner-test/runtimes:2";
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let dockerfile = format!(
        r#"FROM {IMAGE}
RUN for v in 18.20.4 20.17.0; do \
      major=${{v%%.*}}; mkdir -p /opt/node/$major/bin; \
      printf '#!/bin/sh\necho v%s\n' "$v" > /opt/node/$major/bin/node; \
      chmod +x /opt/node/$major/bin/node; \
    done \
 && mkdir -p /codebuild/image/config \
 && printf '%s\n' \
    'version: 0.1' \
    'runtimes:' \
    '  nodejs:' \
    '    versions:' \
    '      18:' \
    '        commands:' \
    '          - echo "Installing Node.js version 18 ..."' \
    '          - export PATH="/opt/node/18/bin:$PATH"' \
    '      20:' \
    '        commands:' \
    '          - echo "Installing Node.js version 20 ..."' \
    '          - export PATH="/opt/node/20/bin:$PATH"' \
    > /codebuild/image/config/runtimes.yml
"#
    );
    let r = BUILT.get_or_init(|| {
        let mut child = Command::new("docker")
            .args(["build", "-q", "-t", TAG, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        child
            .stdin
            .take()
            .ok_or("no stdin")?
            .write_all(dockerfile.as_bytes())
            .map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(())
    });
    if let Err(e) = r {
        panic!("docker build {TAG}: {e}");
    }
    TAG
}

fn build_with(p: &Project, image: &str) -> Run {
    let mut c = p.runner();
    c.args(["build", "--json", "--image", image, "--source"])
        .arg(p.path());
    Run::from(c.output().unwrap_or_else(|e| panic!("run runner: {e}")))
}

fn spec(version: &str) -> String {
    format!(
        r#"version: 0.2
phases:
  install:
    runtime-versions:
      nodejs: {version}
    commands:
      - echo install-ran
  build:
    commands:
      - node --version
"#
    )
}

fn notices(run: &Run) -> Vec<String> {
    run.events
        .iter()
        .filter(|e| e["event"] == "notice")
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect()
}

fn phase_context(run: &Run, phase: &str) -> String {
    run.events
        .iter()
        .find(|e| e["event"] == "phase_ended" && e["phase"] == phase)
        .and_then(|e| e["context"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn two_versions_of_one_runtime_are_selected_and_last_into_later_phases() {
    let image = runtimes_image();
    let p = Project::new();
    for (asked, expect) in [
        ("18", "v18.20.4"),
        ("20.x", "v20.17.0"),
        ("latest", "v20.17.0"),
    ] {
        p.write("buildspec.yml", &spec(asked));
        let run = build_with(&p, image);
        assert_eq!(run.status(), "SUCCEEDED", "{asked}: {}", run.debug());
        // The selection ran in INSTALL, in the build's shell, and PATH carried on to BUILD.
        assert!(run.has_line(expect), "{asked}: {}", run.debug());
        let major = &expect[1..3];
        assert!(
            run.has_line(&format!("Installing Node.js version {major} ...")),
            "{asked}: {}",
            run.debug()
        );
        assert!(
            notices(&run).contains(&format!(
                "Selecting 'nodejs' runtime version '{major}' based on manual selections..."
            )),
            "{asked}: {:?}",
            notices(&run)
        );
        assert!(run.has_line("install-ran"));
    }
}

#[test]
fn a_version_the_image_lacks_fails_install_with_codebuilds_message() {
    let image = runtimes_image();
    let p = Project::new();
    p.write("buildspec.yml", &spec("16"));
    let run = build_with(&p, image);
    assert_eq!(run.status(), "FAILED", "{}", run.debug());
    assert_eq!(run.code, 1, "{}", run.debug());
    assert!(
        run.phases().contains(&"INSTALL=FAILED".to_string()),
        "{:?}",
        run.phases()
    );
    assert_eq!(
        phase_context(&run, "INSTALL"),
        "YAML_FILE_ERROR: Unknown runtime version named '16' of nodejs. This build image has the following versions: 18, 20"
    );
    // Nothing of INSTALL ran, and the build went straight to FINALIZING.
    assert!(!run.has_line("install-ran"), "{}", run.debug());
    assert!(!run.phases().iter().any(|p| p.starts_with("BUILD=")));

    p.write(
        "buildspec.yml",
        "version: 0.2\nphases:\n  install:\n    runtime-versions:\n      dotnet: 8.0\n",
    );
    let run = build_with(&p, image);
    assert_eq!(run.status(), "FAILED", "{}", run.debug());
    assert_eq!(
        phase_context(&run, "INSTALL"),
        "YAML_FILE_ERROR: Unknown runtime named 'dotnet'. This build image has the following runtimes: nodejs"
    );
}

#[test]
fn an_image_without_a_runtimes_file_skips_selection_with_a_notice() {
    let p = Project::new();
    p.write("buildspec.yml", &spec("18"));
    let run = p.build(&[]);
    // The base image has no node: the build fails in BUILD, after INSTALL ran normally.
    assert!(run.has_line("install-ran"), "{}", run.debug());
    assert!(
        run.phases().contains(&"INSTALL=SUCCEEDED".to_string()),
        "{:?}",
        run.phases()
    );
    assert!(
        notices(&run).iter().any(|n| n
            == "Skipping install of runtimes (nodejs: 18). Runtime version selection is not \
                supported by this build image: it has no /codebuild/image/config/runtimes.yml \
                declaring its runtimes."),
        "{:?}",
        notices(&run)
    );
}

/// The test variant of the standard image (`scripts/images.sh standard-test`: the same
/// recipe and runtimes.yml with only Go 1.19 and 1.22 and the AWS CLI installed; the full image takes
/// a quarter of an hour here). Idempotent: built once, then found; every test that
/// needs it goes through here.
pub fn standard_test_image() -> &'static str {
    const TAG: &str = "runner/standard-test:bookworm";
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let r = READY.get_or_init(|| {
        crate::support::stack();
        let out = Command::new("bash")
            .arg(crate::support::repo_root().join("scripts/images.sh"))
            .arg("standard-test")
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(())
    });
    if let Err(e) = r {
        panic!("scripts/images.sh standard-test: {e}");
    }
    TAG
}

fn image_exists(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn the_standard_recipe_selects_two_real_go_versions_and_refuses_one_it_lacks() {
    let image = standard_test_image();
    let p = Project::new();
    for (asked, expect) in [("1.19", "go version go1.19"), ("1.22", "go version go1.22")] {
        p.write(
            "buildspec.yml",
            &format!(
                "version: 0.2\nphases:\n  install:\n    runtime-versions:\n      golang: {asked}\n      docker: 19\n  build:\n    commands:\n      - go version\n"
            ),
        );
        let run = build_with(&p, image);
        assert_eq!(run.status(), "SUCCEEDED", "{asked}: {}", run.debug());
        assert!(
            run.logs().iter().any(|l| l.starts_with(expect)),
            "{asked}: {}",
            run.debug()
        );
        // `docker: 19` is accepted as CodeBuild's images did, and says what docker is.
        assert!(
            run.logs().iter().any(|l| l.starts_with(
                "Specifying docker version in buildspec is deprecated. Using Docker version"
            )),
            "{asked}: {}",
            run.debug()
        );
    }
    p.write(
        "buildspec.yml",
        "version: 0.2\nphases:\n  install:\n    runtime-versions:\n      golang: 1.20\n  build:\n    commands:\n      - go version\n",
    );
    let run = build_with(&p, image);
    assert_eq!(run.status(), "FAILED", "{}", run.debug());
    assert_eq!(
        phase_context(&run, "INSTALL"),
        "YAML_FILE_ERROR: Unknown runtime version named '1.20' of golang. This build image has the following versions: 1.19, 1.22"
    );
}

/// Without --image, RUNNER_IMAGE or runner.yml, `runner build` uses the standard image.
/// The full image takes a quarter of an hour to build, so this test never builds it: on
/// an engine that has it, the build runs in it (runtimes, tools); on one that does not,
/// `--no-build-image` refuses with the one-line instruction naming it. (Before the
/// standard image, both were "no build image" errors.)
#[test]
fn runner_build_without_an_image_uses_the_standard_image() {
    let image = runner::standard_image::STANDARD_IMAGE;
    let p = Project::new();
    p.write(
        "buildspec.yml",
        "version: 0.2\nphases:\n  install:\n    runtime-versions:\n      nodejs: 18\n      python: 3.x\n      golang: 1.19\n  build:\n    commands:\n      - node --version\n      - python3 --version\n      - go version\n      - aws --version\n      - docker --version\n      - git --version && jq --version && mvn -B -v | sed -n 1p && zip -v | sed -n 2p && gcc --version | sed -n 1p\n",
    );
    // No --image, no RUNNER_IMAGE (support's runner() removes it), no runner.yml.
    let mut c = p.runner();
    c.args(["build", "--json", "--no-build-image", "--source"])
        .arg(p.path());
    let run = Run::from(c.output().unwrap_or_else(|e| panic!("run runner: {e}")));
    if !image_exists(image) {
        assert_eq!(run.code, 2, "{}", run.debug());
        assert!(
            run.stderr
                .contains(&format!("the default image {image} is not built yet"))
                && run.stderr.contains("scripts/images.sh standard"),
            "{}",
            run.debug()
        );
        assert!(run.events.iter().all(|e| e["event"] != "build_started"));
        return;
    }
    assert_eq!(run.status(), "SUCCEEDED", "{}", run.debug());
    let started = run
        .events
        .iter()
        .find(|e| e["event"] == "build_started")
        .cloned()
        .unwrap_or_default();
    assert_eq!(started["image"], image, "{}", run.debug());
    let logs = run.logs();
    for prefix in [
        "v18.",
        "Python 3.11",
        "go version go1.19",
        "aws-cli/2.",
        "Docker version",
        "git version",
        "Apache Maven 3.",
    ] {
        assert!(
            // Maven wraps its banner in colour resets even in batch mode.
            logs.iter()
                .any(|l| l.trim_start_matches("\u{1b}[0m").starts_with(prefix)),
            "{prefix}: {}",
            run.debug()
        );
    }
}
