//! How old the advisory data is: `runner db update` (from a real HTTP server on loopback)
//! records when it fetched each dump; `runner scan` reports the data's age in the table,
//! the JSON and the SARIF, and warns once it is older than the policy's
//! `max-data-age-hours` (24 by default); `runner version --json` includes it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use crate::support::output_text as text;
use crate::support::{repo_root, Project};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Output;

const VULNERABLE_LOCK: &str = "version = 3\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\ndependencies = [\"regex\"]\n\n[[package]]\nname = \"regex\"\nversion = \"1.5.4\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n";

/// An HTTP/1.1 server answering one request for `/crates.io/all.zip` with `zip`.
fn serve_once(zip: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut r = BufReader::new(stream.try_clone().unwrap());
        let mut req = String::new();
        r.read_line(&mut req).unwrap();
        loop {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            if l.trim().is_empty() {
                break;
            }
        }
        let ok = req.split_whitespace().nth(1) == Some("/crates.io/all.zip");
        let (status, body) = if ok {
            ("200 OK", zip)
        } else {
            ("404 Not Found", b"no".to_vec())
        };
        write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        stream.write_all(&body).unwrap();
    });
    format!("http://{addr}")
}

fn scan(p: &Project, adv: &Path, args: &[&str]) -> Output {
    p.runner()
        .args(["scan", "deps", "."])
        .arg("--advisories")
        .arg(adv)
        .args(args)
        .output()
        .unwrap()
}

/// Sets every recorded fetch time in `<adv>/runner-db.json` to `at`.
fn backdate(adv: &Path, at: &str) {
    let path = adv.join("runner-db.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for (_, e) in state["ecosystems"].as_object_mut().unwrap() {
        e["fetched_at"] = Value::from(at);
    }
    std::fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();
}

#[test]
fn db_update_records_the_fetch_and_scans_report_the_age_and_warn_when_stale() {
    let zip = std::fs::read(repo_root().join("../shared/advisories/crates.io/all.zip")).unwrap();
    let base = serve_once(zip);
    let p = Project::new();
    p.write("Cargo.lock", VULNERABLE_LOCK);
    let adv = tempfile::tempdir().unwrap();

    let o = p
        .runner()
        .args([
            "db",
            "update",
            "--json",
            "--ecosystem",
            "crates.io",
            "--base-url",
            &base,
        ])
        .arg("--dir")
        .arg(adv.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let state: Value =
        serde_json::from_slice(&std::fs::read(adv.path().join("runner-db.json")).unwrap()).unwrap();
    let fetched = state["ecosystems"]["crates.io"]["fetched_at"]
        .as_str()
        .unwrap_or_else(|| panic!("no fetch time recorded: {state}"))
        .to_string();
    assert_eq!(
        state["ecosystems"]["crates.io"]["url"],
        format!("{base}/crates.io/all.zip")
    );

    // Fresh data: the JSON says when it was fetched; no warning.
    let o = scan(&p, adv.path(), &["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let data = &report["advisory_data"];
    assert_eq!(data["fetched_at"], fetched.as_str(), "{report}");
    assert_eq!(data["basis"], "db-update");
    assert_eq!(data["stale"], false);
    assert!(data["age_seconds"].as_u64().unwrap() < 3600, "{data}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("advisory data fetched"), "{}", text(&o));
    assert!(!stderr.contains("runner db update"), "{}", text(&o));

    // Years old: the table and stderr warn, JSON and SARIF say stale.
    backdate(adv.path(), "2020-01-01T00:00:00Z");
    let o = scan(&p, adv.path(), &[]);
    let out = text(&o);
    assert!(
        out.contains("advisory data fetched 2020-01-01T00:00:00Z ("),
        "{out}"
    );
    assert!(out.contains("warning: advisory data is "), "{out}");
    assert!(out.contains("run `runner db update`"), "{out}");
    let o = scan(&p, adv.path(), &["--json"]);
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["advisory_data"]["stale"], true, "{report}");
    assert_eq!(report["advisory_data"]["max_age_hours"], 24);
    let sarif = p.path().join("out.sarif");
    let o = p
        .runner()
        .args(["scan", "deps", ".", "--format", "sarif", "-o"])
        .arg(&sarif)
        .arg("--advisories")
        .arg(adv.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let log: Value = serde_json::from_slice(&std::fs::read(&sarif).unwrap()).unwrap();
    let props = &log["runs"][0]["properties"]["advisoryData"];
    assert_eq!(props["fetchedAt"], "2020-01-01T00:00:00Z", "{log}");
    assert_eq!(props["stale"], true);
    let check = std::process::Command::new("python3")
        .arg(repo_root().join("benches/secrets/validate_sarif.py"))
        .arg(&sarif)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));

    // A policy that allows older data does not warn.
    p.write(
        "policy.yml",
        "vulnerabilities:\n  fail-on-severity: HIGH\n  max-data-age-hours: 1000000\n",
    );
    let o = scan(&p, adv.path(), &["--policy", "policy.yml"]);
    let out = text(&o);
    assert!(out.contains("advisory data fetched 2020-01-01"), "{out}");
    assert!(!out.contains("warning: advisory data is"), "{out}");

    // `runner build`'s scan gate says it too, as notices (it fails at the gate, before
    // any phase: the lockfile is vulnerable).
    p.write(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo built\n",
    );
    p.write("runner.yml", "scan:\n  secrets: false\n  image: false\n");
    let o = p
        .runner()
        .env("RUNNER_ADVISORIES", adv.path())
        .args([
            "build",
            "--json",
            "--image",
            crate::support::IMAGE,
            "--source",
        ])
        .arg(p.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let notices: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "notice")
        .collect();
    let said = |needle: &str, level: &str| {
        notices.iter().any(|n| {
            n["level"] == level && n["message"].as_str().is_some_and(|m| m.contains(needle))
        })
    };
    assert!(
        said("advisory data fetched 2020-01-01T00:00:00Z", "info"),
        "{notices:?}\n{}",
        text(&o)
    );
    assert!(said("run `runner db update`", "warning"), "{notices:?}");

    // `runner version --json` says where the data is and how old.
    let o = p
        .runner()
        .args(["version", "--json"])
        .env("RUNNER_ADVISORIES", adv.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let d = &v["advisory_data"];
    assert_eq!(d["fetched_at"], "2020-01-01T00:00:00Z", "{v}");
    assert_eq!(d["basis"], "db-update");
    assert!(d["age_seconds"].as_u64().unwrap() > 365 * 86400, "{v}");
    assert_eq!(d["dir"], adv.path().display().to_string());
}
