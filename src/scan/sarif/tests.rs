#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use serde_json::Value;

use super::*;
use crate::scan::model::{Location, Package, SecretFinding, Severity, VulnFinding};
use crate::scan::secrets::SecretScanner;

const TOKEN: &str = "ghp_Zq8RmT4vXk2LpN7sWc9YbH3jFd6GaQe1Uo5I";

fn sample_secrets(s: &SecretScanner) -> Vec<SecretFinding> {
    let mut f = s.scan_bytes(
        "config/app settings.env",
        format!("GH={TOKEN}\n").as_bytes(),
        None,
    );
    f.extend(s.scan_bytes(
        "/etc/app/token.txt",
        format!("\n{TOKEN}\n").as_bytes(),
        Some("sha256:aaaa"),
    ));
    assert_eq!(f.len(), 2);
    f
}

fn sample_vulns() -> Vec<VulnFinding> {
    let lock = VulnFinding {
        id: "RUSTSEC-2020-0105".into(),
        aliases: vec!["CVE-2020-36432".into()],
        summary: "Unsoundness in abi_stable".into(),
        severity: Severity::High,
        cvss: Some("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H".into()),
        package: Package {
            ecosystem: "crates.io".into(),
            name: "abi_stable".into(),
            version: "0.8.0".into(),
            source_name: None,
            purl: "pkg:cargo/abi_stable@0.8.0".into(),
            location: Location {
                path: "Cargo.lock".into(),
                line: Some(42),
                column: None,
                layer: None,
            },
        },
        fixed: Some("0.9.1".into()),
    };
    let image = VulnFinding {
        id: "DEBIAN-CVE-2023-0001".into(),
        aliases: vec![],
        summary: String::new(),
        severity: Severity::Unknown,
        cvss: None,
        package: Package {
            ecosystem: "Debian:12".into(),
            name: "libfoo".into(),
            version: "1.2-3".into(),
            source_name: Some("foo".into()),
            purl: "pkg:deb/debian/libfoo@1.2-3?distro=debian-12".into(),
            location: Location {
                path: "/var/lib/dpkg/status".into(),
                line: None,
                column: None,
                layer: Some("sha256:bbbb".into()),
            },
        },
        fixed: None,
    };
    let second_in_lock = VulnFinding {
        id: "RUSTSEC-2020-0105".into(),
        ..lock.clone()
    };
    vec![lock, image, second_in_lock]
}

fn sample_log() -> Value {
    let s = SecretScanner::default_rules().unwrap();
    sarif_log(
        "0.1.0",
        &sample_secrets(&s),
        &sample_vulns(),
        &s.rule_meta(),
    )
}

fn sample_undecided() -> Vec<Undecided> {
    let mut package = sample_vulns()[1].package.clone();
    package.ecosystem = "Amazon Linux:2".into();
    vec![Undecided {
        package,
        reason: "the advisory data has no \"Amazon Linux:2\" ecosystem".into(),
        advisories: vec![],
    }]
}

/// An undecided package is an `error` result of its own rule, at the package database.
#[test]
fn undecided_packages_are_error_results() {
    let mut log = sample_log();
    let before = log["runs"][0]["results"].as_array().unwrap().len();
    add_undecided(&mut log, &sample_undecided());
    let results = log["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), before + 1);
    let r = &results[before];
    assert_eq!(r["ruleId"], "undecided");
    assert_eq!(r["level"], "error");
    let rules = log["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    assert_eq!(
        rules[r["ruleIndex"].as_u64().unwrap() as usize]["id"],
        "undecided"
    );
    assert!(r["message"]["text"]
        .as_str()
        .unwrap()
        .contains("libfoo@1.2-3 (Amazon Linux:2) was not decided"));
    let mut empty = sample_log();
    add_undecided(&mut empty, &[]);
    assert_eq!(empty, sample_log());
}

#[test]
fn structure_matches_github_expectations() {
    let log = sample_log();
    assert_eq!(log["version"], "2.1.0");
    assert_eq!(log["$schema"], SARIF_SCHEMA);
    let run = &log["runs"][0];
    let driver = &run["tool"]["driver"];
    assert_eq!(driver["name"], "runner");
    assert_eq!(driver["semanticVersion"], "0.1.0");
    let rules = driver["rules"].as_array().unwrap();
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    // Rules listed once each, only those referenced.
    assert_eq!(
        ids,
        ["github-pat", "RUSTSEC-2020-0105", "DEBIAN-CVE-2023-0001"]
    );
    for r in rules {
        assert!(!r["shortDescription"]["text"].as_str().unwrap().is_empty());
        assert!(!r["help"]["text"].as_str().unwrap().is_empty());
        let tags = r["properties"]["tags"].as_array().unwrap();
        assert!(tags.iter().any(|t| t == "security"));
    }
    assert_eq!(rules[0]["properties"]["security-severity"], "9.5");
    assert_eq!(rules[1]["properties"]["security-severity"], "8.0");
    assert!(rules[2]["properties"].get("security-severity").is_none());
    assert_eq!(
        rules[1]["helpUri"],
        "https://osv.dev/vulnerability/RUSTSEC-2020-0105"
    );
    assert!(rules[1]["help"]["text"].as_str().unwrap().contains("0.9.1"));

    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    for r in results {
        let idx = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(ids[idx], r["ruleId"].as_str().unwrap());
        let phys = &r["locations"][0]["physicalLocation"];
        let uri = phys["artifactLocation"]["uri"].as_str().unwrap();
        assert!(!uri.starts_with('/') && !uri.contains("://"), "{uri}");
        assert_eq!(phys["artifactLocation"]["uriBaseId"], SRCROOT);
        assert!(phys["region"]["startLine"].as_u64().unwrap() >= 1);
        let fp = r["partialFingerprints"].as_object().unwrap();
        assert_eq!(fp.len(), 1);
        assert_eq!(fp.values().next().unwrap().as_str().unwrap().len(), 64);
    }
    // Secret: relative, percent-encoded uri, line and column.
    let phys = &results[0]["locations"][0]["physicalLocation"];
    assert_eq!(phys["artifactLocation"]["uri"], "config/app%20settings.env");
    assert_eq!(phys["region"]["startLine"], 1);
    assert_eq!(phys["region"]["startColumn"], 4);
    assert_eq!(results[0]["level"], "error");
    // Secret from an image layer: path made relative, layer named.
    assert_eq!(
        results[1]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "etc/app/token.txt"
    );
    assert_eq!(results[1]["properties"]["layer"], "sha256:aaaa");
    // Vulnerability in a lockfile: line known, logical location names the package.
    let v = &results[2];
    assert_eq!(v["ruleId"], "RUSTSEC-2020-0105");
    assert_eq!(
        v["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "Cargo.lock"
    );
    assert_eq!(
        v["locations"][0]["physicalLocation"]["region"]["startLine"],
        42
    );
    assert!(v["locations"][0]["physicalLocation"]["region"]
        .get("startColumn")
        .is_none());
    assert_eq!(
        v["locations"][0]["logicalLocations"][0]["name"],
        "abi_stable@0.8.0"
    );
    assert_eq!(
        v["locations"][0]["logicalLocations"][0]["fullyQualifiedName"],
        "pkg:cargo/abi_stable@0.8.0"
    );
    // Image package: line 1 by default, layer in properties and decorated name.
    let img = &results[3];
    assert_eq!(
        img["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "var/lib/dpkg/status"
    );
    assert_eq!(
        img["locations"][0]["physicalLocation"]["region"]["startLine"],
        1
    );
    assert_eq!(img["properties"]["layer"], "sha256:bbbb");
    assert_eq!(img["properties"]["package"], "libfoo");
    assert_eq!(img["level"], "note");
    // Never the secret itself.
    let text = serde_json::to_string(&log).unwrap();
    assert!(!text.contains(TOKEN));
    assert!(text.contains("ghp_***"));
}

#[test]
fn empty_log_is_well_formed() {
    let log = sarif_log("dev-build", &[], &[], &[]);
    assert_eq!(log["runs"][0]["results"].as_array().unwrap().len(), 0);
    assert!(log["runs"][0]["tool"]["driver"]
        .get("semanticVersion")
        .is_none());
    assert_eq!(
        log["runs"][0]["tool"]["driver"]["rules"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn security_severity_scale() {
    assert_eq!(security_severity(Severity::Critical), Some("9.5"));
    assert_eq!(security_severity(Severity::High), Some("8.0"));
    assert_eq!(security_severity(Severity::Medium), Some("5.5"));
    assert_eq!(security_severity(Severity::Low), Some("3.0"));
    assert_eq!(security_severity(Severity::Unknown), None);
    assert_eq!(relative_uri("./a b/ü.txt"), "a%20b/%C3%BC.txt");
}

/// Validates against the committed OASIS schema with benches/secrets/validate_sarif.py.
/// Never skipped: without python3 and its jsonschema module (`bash scripts/setup.sh`
/// installs them) the test fails.
#[test]
fn validates_against_official_schema() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("benches/secrets/validate_sarif.py");
    let has_jsonschema = std::process::Command::new("python3")
        .args(["-c", "import jsonschema"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_jsonschema && script.exists(),
        "python3 with jsonschema and {} are needed: run `bash scripts/setup.sh`",
        script.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.sarif");
    let mut good_log = sample_log();
    add_undecided(&mut good_log, &sample_undecided());
    std::fs::write(&good, serde_json::to_string_pretty(&good_log).unwrap()).unwrap();
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The validator is not a rubber stamp: a broken log fails.
    let mut broken = sample_log();
    broken["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] =
        Value::from(0);
    broken["version"] = Value::from("2.0.0");
    let bad = dir.path().join("bad.sarif");
    std::fs::write(&bad, serde_json::to_string(&broken).unwrap()).unwrap();
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
