//! The scan policy as a gate of `runner build` and `runner scan`: a planted secret and a
//! vulnerable lockfile fail the build before any phase runs; an allow-list entry (with a
//! reason) lets it pass; SARIF output validates against the SARIF 2.1.0 schema.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use crate::support::{repo_root, Project};
use std::process::Command;

fn advisories() -> String {
    repo_root()
        .join("../shared/advisories")
        .display()
        .to_string()
}

/// A GitHub token of the right shape, made fresh so no file in the repository holds one.
fn fresh_github_token() -> String {
    let mut x: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let body: String = (0..36)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            alphabet[(x % alphabet.len() as u64) as usize] as char
        })
        .collect();
    format!("ghp_{body}")
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
    let o = p
        .runner()
        .args([
            "scan",
            "deps",
            ".",
            "--advisories",
            &advisories(),
            "--format",
            "sarif",
            "-o",
        ])
        .arg(&sarif)
        .output()
        .unwrap();
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
