//! CVSS scores against an independent implementation: PyPI's `cvss` (Red Hat's, checked by
//! its authors against FIRST's calculators) scores every CVSS:3.0, CVSS:3.1 and CVSS:4.0
//! base vector (2592 + 2592 + 104,976) and every v3/v4 vector of the shared OSV advisories
//! (crates.io, PyPI); runner's scores must agree on all of them. The published scores in
//! fixtures/scan/cvss are compared by the unit tests of src/scan/osv/cvss.rs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use crate::support::repo_root;
use runner::scan::osv::cvss::{base_score_v3, score_v4};
use std::collections::BTreeMap;
use std::process::Command;

#[test]
fn every_base_vector_and_every_advisory_vector_scores_as_pypi_cvss_does() {
    let shared = repo_root().join("../shared/advisories");
    let zips: Vec<_> = ["crates.io", "PyPI"]
        .iter()
        .map(|e| shared.join(e).join("all.zip"))
        .collect();
    for z in &zips {
        assert!(
            z.exists(),
            "{} is missing (../shared/advisories)",
            z.display()
        );
    }
    let out = Command::new("python3")
        .arg(repo_root().join("tests/it/cvss_reference.py"))
        .args(&zips)
        .output()
        .expect("python3 (bash scripts/setup.sh)");
    assert!(
        out.status.success(),
        "cvss_reference.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut compared: BTreeMap<&str, usize> = BTreeMap::new();
    let mut bad = Vec::new();
    for line in text.lines() {
        let (vector, want) = line.split_once('\t').unwrap();
        let want: f64 = want.parse().unwrap();
        let (kind, got) = if vector.starts_with("CVSS:4.") {
            ("v4.0", score_v4(vector))
        } else {
            (&vector[..8], base_score_v3(vector))
        };
        *compared.entry(kind).or_default() += 1;
        if got != Some(want) {
            bad.push(format!("{vector}: PyPI cvss {want}, runner {got:?}"));
        }
    }
    let total: usize = compared.values().sum();
    eprintln!(
        "CVSS vs PyPI cvss: {compared:?}, {total} compared, {} disagree",
        bad.len()
    );
    assert!(compared.get("v4.0").copied().unwrap_or(0) >= 104_976);
    assert!(compared.get("CVSS:3.1").copied().unwrap_or(0) >= 2592);
    assert!(compared.get("CVSS:3.0").copied().unwrap_or(0) >= 2592);
    assert!(
        bad.is_empty(),
        "{} of {total} disagree:\n{}",
        bad.len(),
        bad[..bad.len().min(30)].join("\n")
    );
}
