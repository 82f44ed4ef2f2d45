//! The scan policy as a gate of `runner build` and `runner scan`: a planted secret and a
//! vulnerable lockfile fail the build before any phase runs; an allow-list entry (with a
//! reason) lets it pass; SARIF output validates against the SARIF 2.1.0 schema.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use crate::support::{fresh_github_token, repo_root, Project};
use std::process::Command;

fn advisories() -> String {
    repo_root()
        .join("../shared/advisories")
        .display()
        .to_string()
}

/// A GitHub token of the right shape, made fresh so no file in the repository holds one.
/// `runner scan deps . --format sarif -o SARIF` in the project.
fn scan_deps_sarif(p: &Project, sarif: &std::path::Path) -> std::process::Output {
    p.runner()
        .args(["scan", "deps", ".", "--advisories", &advisories()])
        .args(["--format", "sarif", "-o"])
        .arg(sarif)
        .output()
        .unwrap()
}

const VULNERABLE_LOCK: &str = "version = 3\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\ndependencies = [\"regex\"]\n\n[[package]]\nname = \"regex\"\nversion = \"1.5.4\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n";

fn project(runner_yml: &str) -> Project {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo built\n",
    );
    p.write("runner.yml", runner_yml);
    p
}

fn build(p: &Project) -> crate::support::Run {
    let mut c = p.runner();
    c.env("RUNNER_ADVISORIES", advisories());
    c.args([
        "build",
        "--json",
        "--image",
        crate::support::IMAGE,
        "--source",
    ])
    .arg(p.path());
    crate::support::Run::from(c.output().unwrap())
}

fn scan_stage(run: &crate::support::Run) -> serde_json::Value {
    run.events
        .iter()
        .find(|e| e["event"] == "stage" && e["stage"] == "scan")
        .cloned()
        .unwrap_or_else(|| panic!("no scan stage: {}", run.debug()))
}

#[test]
fn a_planted_secret_fails_the_build_before_any_phase() {
    let p = project("scan:\n  deps: false\n  image: false\n");
    let token = fresh_github_token();
    p.write(
        "config/settings.py",
        &format!("GITHUB_TOKEN = \"{token}\"\n"),
    );
    let run = build(&p);
    assert_eq!(run.code, 1, "{}", run.debug());
    let stage = scan_stage(&run);
    assert_eq!(stage["ok"], false);
    assert!(
        stage["message"]
            .as_str()
            .unwrap()
            .contains("config/settings.py:1"),
        "{stage}"
    );
    assert!(
        !run.events.iter().any(|e| e["event"] == "build_started"),
        "a phase ran: {}",
        run.debug()
    );
    // The secret itself is in no output.
    assert!(!run.stdout.contains(&token) && !run.stderr.contains(&token));

    // The same token with an inline allow comment passes.
    p.write(
        "config/settings.py",
        &format!("GITHUB_TOKEN = \"{token}\"  # runner:allow test fixture\n"),
    );
    let run = build(&p);
    assert_eq!(run.code, 0, "{}", run.debug());
}

#[test]
fn a_vulnerable_lockfile_fails_and_an_allow_list_entry_lets_it_pass() {
    let p = project("scan:\n  secrets: false\n  image: false\n");
    p.write("Cargo.lock", VULNERABLE_LOCK);
    let run = build(&p);
    assert_eq!(run.code, 1, "{}", run.debug());
    let stage = scan_stage(&run);
    assert!(
        stage["message"]
            .as_str()
            .unwrap()
            .contains("RUSTSEC-2022-0013"),
        "{stage}"
    );

    // Accepted with a reason: the build runs.
    p.write(
        "runner.yml",
        "scan:\n  secrets: false\n  image: false\n  policy: policy.yml\n",
    );
    p.write(
        "policy.yml",
        "allow:\n  - id: RUSTSEC-2022-0013\n    package: regex\n    reason: \"untrusted regexes never reach this app\"\n    expires: 2999-12-31\n",
    );
    let run = build(&p);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert_eq!(
        scan_stage(&run)["detail"]["verdict"]["allowed"][0]["id"],
        "RUSTSEC-2022-0013"
    );
    assert_eq!(run.status(), "SUCCEEDED");

    // An expired entry no longer applies.
    p.write(
        "policy.yml",
        "allow:\n  - id: RUSTSEC-2022-0013\n    reason: \"was fine last year\"\n    expires: 2020-01-01\n",
    );
    let run = build(&p);
    assert_eq!(run.code, 1, "{}", run.debug());
}

#[test]
fn scan_commands_exit_codes_and_sarif_validates() {
    let p = Project::new();
    p.write("Cargo.lock", VULNERABLE_LOCK);
    let token = fresh_github_token();
    p.write("app.env", &format!("TOKEN={token}\n"));
    let sarif = p.path().join("out.sarif");
    let o = scan_deps_sarif(&p, &sarif);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let secrets_sarif = p.path().join("secrets.sarif");
    let o = p
        .runner()
        .args(["scan", "secrets", ".", "--format", "sarif", "-o"])
        .arg(&secrets_sarif)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let text = std::fs::read_to_string(&secrets_sarif).unwrap();
    assert!(!text.contains(&token), "the secret is in the SARIF");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sarif).unwrap()).unwrap();
    assert_eq!(v["runs"][0]["results"][0]["ruleId"], "RUSTSEC-2022-0013");
    for f in [&sarif, &secrets_sarif] {
        let check = Command::new("python3")
            .arg(repo_root().join("benches/secrets/validate_sarif.py"))
            .arg(f)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{} is not valid SARIF 2.1.0: {}{}",
            f.display(),
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    }
    // A clean tree passes; an unreadable path cannot be scanned.
    let clean = Project::new();
    clean.write("README.md", "nothing here\n");
    let o = clean
        .runner()
        .args(["scan", "secrets", "."])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let o = clean
        .runner()
        .args(["scan", "deps", "no-such-dir", "--advisories", &advisories()])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// 517 bytes whose aliases expand to hundreds of millions of nodes (issue #17, item 3).
fn alias_bomb_lockfile() -> String {
    let mut text = String::from("lockfileVersion: '9.0'\na: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
    {
        text.push_str(&format!(
            "{name}: &{name} [{}]\n",
            vec![format!("*{prev}"); 9].join(",")
        ));
    }
    text
}

/// Bytes that are no lockfile (not UTF-8), the same on every run.
fn random_bytes(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8 | 0x80
        })
        .collect()
}

#[test]
fn unreadable_lockfiles_fail_closed_in_scan_deps_and_build() {
    let p = project("scan:\n  secrets: false\n  image: false\n");
    let bomb = alias_bomb_lockfile();
    p.write("web/pnpm-lock.yaml", &bomb);
    std::fs::create_dir_all(p.path().join("py")).unwrap();
    std::fs::write(p.path().join("py/poetry.lock"), random_bytes(600)).unwrap();

    // `scan deps`: the policy fails, naming both files (the bomb is refused, not expanded).
    let o = p
        .runner()
        .args([
            "scan",
            "deps",
            ".",
            "--advisories",
            &advisories(),
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["passed"], false);
    let unreadable: Vec<&str> = v["unreadable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["path"].as_str().unwrap())
        .collect();
    assert_eq!(unreadable, ["py/poetry.lock", "web/pnpm-lock.yaml"], "{v}");
    assert!(
        v["unreadable"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("alias"),
        "{v}"
    );
    assert_eq!(v["verdict"]["violations"][0]["id"], "unreadable-input");

    // The table names the file and the policy's verdict.
    let o = p
        .runner()
        .args(["scan", "deps", ".", "--advisories", &advisories()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{table}");
    assert!(
        table.contains("violation: unreadable-input web/pnpm-lock.yaml"),
        "{table}"
    );

    // SARIF: one error result per unreadable file, and still valid SARIF 2.1.0.
    let sarif = p.path().join("out.sarif");
    let o = scan_deps_sarif(&p, &sarif);
    assert_eq!(o.status.code(), Some(1));
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sarif).unwrap()).unwrap();
    let results = log["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{log}");
    assert!(results
        .iter()
        .all(|r| r["ruleId"] == "unreadable-input" && r["level"] == "error"));
    assert_eq!(
        results[1]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "web/pnpm-lock.yaml"
    );
    let check = Command::new("python3")
        .arg(repo_root().join("benches/secrets/validate_sarif.py"))
        .arg(&sarif)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    // `runner build` with scan.deps: the gate fails before any phase, naming the file.
    let run = build(&p);
    assert_eq!(run.code, 1, "{}", run.debug());
    let stage = scan_stage(&run);
    assert_eq!(stage["ok"], false);
    let message = stage["message"].as_str().unwrap();
    assert!(
        message.contains("unreadable-input (web/pnpm-lock.yaml"),
        "{message}"
    );
    assert_eq!(stage["detail"]["unreadable"][0]["path"], "py/poetry.lock");
    assert!(!run.events.iter().any(|e| e["event"] == "build_started"));

    // A policy may accept one file with a reason; or only report them.
    p.write(
        "runner.yml",
        "scan:\n  secrets: false\n  image: false\n  policy: policy.yml\n",
    );
    p.write(
        "policy.yml",
        "allow:\n  - id: unreadable-input\n    path: \"web/**\"\n    reason: \"a fuzzing fixture, not a real lockfile\"\n",
    );
    let run = build(&p);
    assert_eq!(
        run.code,
        1,
        "py/poetry.lock is still unreadable: {}",
        run.debug()
    );
    p.write("policy.yml", "fail-on-unreadable: false\n");
    let run = build(&p);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert!(
        run.stderr.contains("could not read web/pnpm-lock.yaml")
            || run.stdout.contains("could not read web/pnpm-lock.yaml"),
        "the unreadable file is still reported: {}",
        run.debug()
    );
}

#[test]
fn scan_image_of_a_non_archive_names_it_without_quoting_it() {
    let p = Project::new();
    let line = "root:$6$Zq8JxHHv$QWERTYsecretHashValue0123456789:19000:0:99999:7:::\n";
    p.write("shadow", &line.repeat(20));
    let o = p
        .runner()
        .args(["scan", "image", "shadow"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("shadow is not a readable image"),
        "{stderr}"
    );
    assert!(stderr.contains("not a tar archive"), "{stderr}");
    for part in ["root:", "QWERTY", "secretHash", "19000"] {
        assert!(
            !stderr.contains(part),
            "the file's content is in the error: {stderr}"
        );
    }
}

#[test]
fn validate_reports_invalid_utf8_as_a_positioned_error() {
    let p = Project::new();
    std::fs::write(
        p.path().join("buildspec.yml"),
        b"version: 0.2\nphases:\n  build:\n    commands:\n      - echo \xff\xfe hi\n",
    )
    .unwrap();
    let o = p
        .runner()
        .args(["validate", "buildspec.yml"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("buildspec.yml:5:14: error: invalid UTF-8 (byte 0xFF)"),
        "{stdout}"
    );
    assert!(stderr.contains("1 error(s)"), "{stderr}");
}
