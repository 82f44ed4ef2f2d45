//! Snapshot tests: each `fixtures/scan/deps/<case>/` holds one lockfile and an
//! `expected.json` with the packages parsed and the findings against the shared real
//! dumps (crates.io, PyPI) plus the hand-made records in `fixtures/scan/osv/`.
//! `UPDATE_SNAPSHOTS=1 cargo test` rewrites the expected files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::scan::deps::{scan_dir, DepsOutcome, LockfileKind};
use crate::scan::osv::AdvisoryDb;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scan")
}

fn shared() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/advisories"))
}

/// One database for all tests (its lazy indexes are shared, as in a real scan).
fn db() -> &'static AdvisoryDb {
    static DB: std::sync::OnceLock<AdvisoryDb> = std::sync::OnceLock::new();
    DB.get_or_init(|| AdvisoryDb::open_dirs(&[shared(), fixtures().join("osv")]).unwrap())
}

/// The stable, reviewable part of an outcome.
fn summarize(o: &DepsOutcome) -> Value {
    let lockfiles: Vec<Value> = o
        .lockfiles
        .iter()
        .map(|l| {
            json!({
                "path": l.path,
                "kind": l.kind,
                "packages": l.packages.iter().map(|p| format!(
                    "{}@{} line {} {}", p.name, p.version,
                    p.location.line.map_or("-".into(), |n| n.to_string()), p.purl
                )).collect::<Vec<_>>(),
                "skipped_entries": l.skipped_entries.iter().map(|s| format!(
                    "line {}: {} ({})", s.line.map_or("-".into(), |n| n.to_string()), s.entry, s.reason
                )).collect::<Vec<_>>(),
            })
        })
        .collect();
    let findings: Vec<Value> = o
        .findings
        .iter()
        .map(|f| {
            json!({
                "id": f.id,
                "package": format!("{}@{}", f.package.name, f.package.version),
                "line": f.package.location.line,
                "severity": f.severity,
                "fixed": f.fixed,
                "aliases": f.aliases,
            })
        })
        .collect();
    json!({ "lockfiles": lockfiles, "findings": findings, "skipped": o.skipped })
}

fn check(case: &str, kind: LockfileKind, db: &AdvisoryDb) -> Value {
    let dir = fixtures().join("deps").join(case);
    let outcome = scan_dir(&dir, db).unwrap();
    assert_eq!(outcome.lockfiles.len(), 1, "{case}: {:?}", outcome.skipped);
    assert_eq!(outcome.lockfiles[0].kind, kind);
    let got = summarize(&outcome);
    let expected_path = dir.join("expected.json");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
        std::fs::write(&expected_path, text).unwrap();
    }
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(&expected_path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with UPDATE_SNAPSHOTS=1)",
                expected_path.display()
            )
        }),
    )
    .unwrap();
    assert_eq!(
        got, expected,
        "{case}: snapshot differs (review, then UPDATE_SNAPSHOTS=1)"
    );
    got
}

fn ids(v: &Value) -> Vec<String> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{} {}",
                f["package"].as_str().unwrap(),
                f["id"].as_str().unwrap()
            )
        })
        .collect()
}

fn has(v: &Value, package: &str, id: &str) -> bool {
    ids(v).contains(&format!("{package} {id}"))
}

fn affected_packages(v: &Value) -> Vec<String> {
    let mut p: Vec<String> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["package"].as_str().unwrap().to_string())
        .collect();
    p.dedup();
    p
}

#[test]
fn cargo_lock_against_rustsec_dump() {
    let v = check("cargo", LockfileKind::CargoLock, db());
    assert!(has(&v, "smallvec@0.6.9", "RUSTSEC-2019-0009"));
    assert!(has(&v, "smallvec@0.6.9", "RUSTSEC-2021-0003"));
    assert!(has(&v, "regex@1.5.4", "RUSTSEC-2022-0013"));
    assert!(has(&v, "time@0.1.43", "RUSTSEC-2020-0071"));
    assert!(!affected_packages(&v)
        .iter()
        .any(|p| p.starts_with("serde@")));
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "RUSTSEC-2022-0013")
        .unwrap();
    assert_eq!(f["fixed"], "1.5.5");
}

#[test]
fn requirements_against_pypi_dump() {
    let v = check("requirements", LockfileKind::Requirements, db());
    assert!(has(&v, "Jinja2@2.10", "PYSEC-2019-217"));
    assert!(has(&v, "urllib3@1.24.1", "PYSEC-2019-132"));
    assert_eq!(affected_packages(&v), ["Jinja2@2.10", "urllib3@1.24.1"]);
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "PYSEC-2019-217")
        .unwrap();
    assert_eq!(f["fixed"], "2.10.1");
    assert_eq!(f["line"], 3);
}

#[test]
fn poetry_lock_against_pypi_dump() {
    let v = check("poetry", LockfileKind::PoetryLock, db());
    assert!(has(&v, "django@3.2.4", "PYSEC-2021-109"));
    assert!(has(&v, "werkzeug@2.2.2", "PYSEC-2023-57"));
    assert!(!affected_packages(&v).iter().any(|p| p.starts_with("pytz")));
}

#[test]
fn pipfile_lock_against_pypi_dump() {
    let v = check("pipfile", LockfileKind::PipfileLock, db());
    assert!(has(&v, "flask@1.0", "PYSEC-2018-66") || has(&v, "flask@1.0", "PYSEC-2023-62"));
    assert!(has(&v, "pyyaml@5.3", "PYSEC-2020-96"));
    assert!(!affected_packages(&v)
        .iter()
        .any(|p| p.starts_with("jinja2")));
}

#[test]
fn uv_lock_against_pypi_dump() {
    let v = check("uv", LockfileKind::UvLock, db());
    assert!(has(&v, "requests@2.19.0", "PYSEC-2018-28"));
    assert_eq!(affected_packages(&v), ["requests@2.19.0"]);
}

#[test]
fn package_lock_v1_nested() {
    let v = check("npm-v1", LockfileKind::PackageLock, db());
    // Nested minimist 0.0.8 is affected (last_affected 1.2.5), top-level 1.2.6 not.
    assert!(has(&v, "minimist@0.0.8", "FIXTURE-NPM-0002"));
    assert!(!has(&v, "minimist@1.2.6", "FIXTURE-NPM-0002"));
    assert!(has(&v, "lodash@4.17.15", "FIXTURE-NPM-0001"));
    assert!(
        !ids(&v).iter().any(|i| i.contains("FIXTURE-NPM-0003")),
        "withdrawn record reported"
    );
}

#[test]
fn package_lock_v2_limit() {
    let v = check("npm-v2", LockfileKind::PackageLock, db());
    assert!(has(&v, "qs@6.2.0", "FIXTURE-NPM-0004"));
}

#[test]
fn package_lock_v3_scoped_and_nested() {
    let v = check("npm-v3", LockfileKind::PackageLock, db());
    assert!(has(&v, "@babel/traverse@7.22.5", "FIXTURE-NPM-0005"));
    assert!(has(&v, "minimist@1.2.5", "FIXTURE-NPM-0002"));
    assert!(!affected_packages(&v)
        .iter()
        .any(|p| p.starts_with("lodash@")));
}

#[test]
fn yarn_classic_and_berry() {
    let db = db();
    let v = check("yarn-classic", LockfileKind::YarnLock, db);
    assert!(has(&v, "lodash@4.17.11", "FIXTURE-NPM-0001"));
    assert!(has(&v, "@babel/traverse@7.20.1", "FIXTURE-NPM-0005"));
    let v = check("yarn-berry", LockfileKind::YarnLock, db);
    assert_eq!(affected_packages(&v), ["lodash@4.17.15"]);
}

#[test]
fn pnpm_lock_v9() {
    let v = check("pnpm", LockfileKind::PnpmLock, db());
    assert!(has(&v, "lodash@4.17.15", "FIXTURE-NPM-0001"));
    assert!(has(&v, "minimist@1.2.5", "FIXTURE-NPM-0002"));
    assert!(!affected_packages(&v).iter().any(|p| p.starts_with("qs@")));
}

#[test]
fn go_mod_with_replace() {
    let v = check("go", LockfileKind::GoMod, db());
    assert!(has(&v, "golang.org/x/text@v0.3.2", "FIXTURE-GO-0001"));
    assert!(has(
        &v,
        "github.com/gin-gonic/gin@v1.7.0",
        "FIXTURE-GO-0002"
    ));
    assert!(
        !ids(&v).iter().any(|i| i.contains("FIXTURE-GO-0003")),
        "replaced module reported"
    );
}

#[test]
fn gemfile_lock() {
    let v = check("gemfile", LockfileKind::GemfileLock, db());
    assert!(has(&v, "rack@2.0.5", "FIXTURE-GEM-0001"));
    assert!(has(&v, "nokogiri@1.10.4", "FIXTURE-GEM-0002"));
}

#[test]
fn composer_lock() {
    let v = check("composer", LockfileKind::ComposerLock, db());
    assert!(has(&v, "guzzlehttp/guzzle@6.5.5", "FIXTURE-PHP-0001"));
    assert!(
        !has(&v, "symfony/http-kernel@v4.4.13", "FIXTURE-PHP-0002"),
        "4.4.13 is the fix"
    );
}

#[test]
fn whole_fixture_tree_scans() {
    let outcome = scan_dir(&fixtures().join("deps"), db()).unwrap();
    assert_eq!(outcome.lockfiles.len(), 14, "{:?}", outcome.skipped);
    assert!(outcome.skipped.is_empty());
    let paths: Vec<&str> = outcome.lockfiles.iter().map(|l| l.path.as_str()).collect();
    assert!(paths.contains(&"npm-v3/package-lock.json"));
    // Findings are sorted by (path, line, id).
    let keys: Vec<_> = outcome
        .findings
        .iter()
        .map(|f| {
            (
                f.package.location.path.clone(),
                f.package.location.line,
                f.id.clone(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
}

#[test]
fn single_file_root_and_missing_root() {
    let file = fixtures().join("deps/cargo/Cargo.lock");
    let outcome = scan_dir(&file, db()).unwrap();
    assert_eq!(outcome.lockfiles[0].path, "Cargo.lock");
    assert_eq!(outcome.lockfiles[0].packages[0].location.path, "Cargo.lock");
    let err = scan_dir(Path::new("/nonexistent/project"), db()).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/project"), "{err}");
}

#[test]
fn broken_lockfile_is_skipped_with_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Cargo.lock"), "[[package]\nname = ").unwrap();
    std::fs::create_dir_all(dir.path().join("node_modules/x")).unwrap();
    std::fs::write(dir.path().join("node_modules/x/package-lock.json"), "{").unwrap();
    let outcome = scan_dir(dir.path(), db()).unwrap();
    assert!(outcome.lockfiles.is_empty());
    assert_eq!(outcome.skipped.len(), 1, "node_modules is not walked");
    assert_eq!(outcome.skipped[0].path, "Cargo.lock");
    assert!(
        outcome.skipped[0]
            .reason
            .contains("cannot parse Cargo.lock"),
        "{}",
        outcome.skipped[0].reason
    );
}
