//! AdvisoryDb against the shared real dumps and the hand-made fixture records.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::scan::model::{Location, Package, Severity};
use crate::scan::osv::{AdvisoryDb, OsvError};
use std::path::{Path, PathBuf};

fn shared() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/advisories"))
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scan/osv")
}

fn pkg(ecosystem: &str, name: &str, version: &str) -> Package {
    Package {
        ecosystem: ecosystem.into(),
        name: name.into(),
        version: version.into(),
        source_name: None,
        purl: String::new(),
        location: Location::default(),
    }
}

fn ids(db: &AdvisoryDb, p: &Package) -> Vec<String> {
    db.query(p).unwrap().into_iter().map(|f| f.id).collect()
}

#[test]
fn real_dumps_load_with_expected_counts() {
    let db = AdvisoryDb::open(&shared()).unwrap();
    db.load("crates.io").unwrap();
    db.load("PyPI").unwrap();
    let stats = db.stats();
    let get = |e: &str| stats.iter().find(|s| s.ecosystem == e).unwrap().clone();
    // README: 1206 crates.io records, 2661 PyPI records (withdrawn ones not indexed).
    let (c, p) = (get("crates.io"), get("PyPI"));
    assert_eq!(c.records + c.withdrawn + c.invalid, 1206);
    assert_eq!(p.records + p.withdrawn + p.invalid, 2661);
    assert_eq!((c.invalid, p.invalid), (0, 0));
    assert!(db.ecosystems().iter().any(|e| e == "Alpine:v3.11"));
}

#[test]
fn known_vulnerable_pins_are_found() {
    let db = AdvisoryDb::open(&shared()).unwrap();
    let found = db.query(&pkg("crates.io", "smallvec", "0.6.9")).unwrap();
    let f = found.iter().find(|f| f.id == "RUSTSEC-2019-0009").unwrap();
    assert_eq!(f.fixed.as_deref(), Some("0.6.10"));
    assert!(f.aliases.contains(&"CVE-2019-15551".to_string()));
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.cvss.as_deref().is_some_and(|c| c.starts_with("CVSS:3")));
    assert!(ids(&db, &pkg("crates.io", "smallvec", "1.13.2")).is_empty());
    // PyPI: PEP 503 name normalisation and PEP 440 ordering.
    let jinja = ids(&db, &pkg("PyPI", "Jinja2", "2.10"));
    assert!(jinja.contains(&"PYSEC-2019-217".to_string()), "{jinja:?}");
    assert!(ids(&db, &pkg("PyPI", "jinja_2", "2.10")).is_empty());
    assert!(ids(&db, &pkg("PyPI", "JINJA2", "3.1.4")).is_empty());
    let django = ids(&db, &pkg("PyPI", "Django", "2.2.0"));
    assert!(django.contains(&"PYSEC-2019-10".to_string()), "{django:?}");
}

#[test]
fn withdrawn_records_are_skipped() {
    let db = AdvisoryDb::open(&shared()).unwrap();
    // RUSTSEC-2019-0031 is withdrawn in the dump.
    for name in ["spin", "spin-rs"] {
        for v in db.records_for("crates.io", name).unwrap() {
            assert_ne!(v.id, "RUSTSEC-2019-0031");
        }
    }
    let fx = AdvisoryDb::open(&fixtures()).unwrap();
    assert_eq!(
        ids(&fx, &pkg("npm", "lodash", "4.17.15")),
        ["FIXTURE-NPM-0001"]
    );
    assert!(ids(&fx, &pkg("npm", "lodash", "4.17.21")).is_empty());
}

#[test]
fn debian_release_suffix_matches_exactly() {
    let db = AdvisoryDb::open(&fixtures()).unwrap();
    let mut p = pkg("Debian:12", "libssl3", "3.0.9-1");
    p.source_name = Some("openssl".into());
    let found = db.query(&p).unwrap();
    assert_eq!(
        found.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
        ["FIXTURE-DEB12-0001"]
    );
    assert_eq!(found[0].fixed.as_deref(), Some("3.0.11-1~deb12u1"));
    assert_eq!(found[0].severity, Severity::High); // ecosystem_specific.severity
                                                   // The fix itself, and a later one, are clean; `~deb12u1` sorts below `-1`.
    p.version = "3.0.11-1~deb12u1".into();
    assert!(db.query(&p).unwrap().is_empty());
    p.version = "3.0.11-1~deb12u0".into();
    assert_eq!(db.query(&p).unwrap().len(), 1);
    // Debian 11 packages only see the Debian:11 record.
    let mut p11 = pkg("Debian:11", "openssl", "1.1.1n-0+deb11u5");
    p11.source_name = None;
    assert_eq!(ids(&db, &p11), ["FIXTURE-DEB11-0001"]);
    let glibc = db
        .query(&pkg("Debian:12", "glibc", "2.36-9+deb12u1"))
        .unwrap();
    assert_eq!(glibc[0].severity, Severity::High); // CVSS 7.8
    assert!(ids(&db, &pkg("Debian:12", "glibc", "2.36-9+deb12u10")).is_empty());
}

#[test]
fn alpine_secdb_and_osv_records() {
    let db = AdvisoryDb::open_dirs(&[shared(), fixtures()]).unwrap();
    let curl = db.query(&pkg("Alpine:v3.11", "curl", "7.64.0-r1")).unwrap();
    let curl_ids: Vec<_> = curl.iter().map(|f| f.id.as_str()).collect();
    assert!(curl_ids.contains(&"ALPINE-CVE-2019-5481"), "{curl_ids:?}");
    assert!(
        !curl_ids.contains(&"ALPINE-CVE-2018-16890"),
        "fixed in 7.64.0-r0"
    );
    let f = curl
        .iter()
        .find(|f| f.id == "ALPINE-CVE-2019-5481")
        .unwrap();
    assert_eq!(f.fixed.as_deref(), Some("7.66.0-r0"));
    assert_eq!(f.aliases, ["CVE-2019-5481"]);
    assert!(ids(&db, &pkg("Alpine:v3.11", "curl", "7.66.0-r0"))
        .iter()
        .all(|i| i != "ALPINE-CVE-2019-5481"));
    // Another release's data does not leak in.
    assert!(ids(&db, &pkg("Alpine:v3.99", "curl", "7.64.0-r1")).is_empty());
    assert_eq!(
        ids(&db, &pkg("Alpine:v3.19", "busybox", "1.36.1-r5")),
        ["FIXTURE-ALPINE-0001"]
    );
    assert!(ids(&db, &pkg("Alpine:v3.19", "busybox", "1.36.1-r15")).is_empty());
}

#[test]
fn severity_sources() {
    let db = AdvisoryDb::open(&fixtures()).unwrap();
    let sev = |e: &str, n: &str, v: &str| db.query(&pkg(e, n, v)).unwrap()[0].severity;
    assert_eq!(sev("npm", "lodash", "4.0.0"), Severity::High); // database_specific
    assert_eq!(sev("npm", "minimist", "1.0.0"), Severity::Critical); // CVSS v3 9.8
    assert_eq!(sev("npm", "@babel/traverse", "7.0.0"), Severity::Critical); // CVSS v4 approx
    assert_eq!(
        sev("Packagist", "symfony/http-kernel", "4.1.0"),
        Severity::Low
    );
    assert_eq!(sev("npm", "qs", "6.1.0"), Severity::Medium); // MODERATE
}

#[test]
fn go_fix_versions_keep_the_v() {
    let db = AdvisoryDb::open(&fixtures()).unwrap();
    let f = db.query(&pkg("Go", "golang.org/x/text", "v0.3.2")).unwrap();
    assert_eq!(f[0].fixed.as_deref(), Some("v0.3.3"));
    assert!(db
        .query(&pkg("Go", "golang.org/x/text", "v0.3.3"))
        .unwrap()
        .is_empty());
}

#[test]
fn opening_bad_directories_explains_what_to_do() {
    let err = AdvisoryDb::open(Path::new("/nonexistent/advisories"))
        .err()
        .unwrap();
    assert!(err.to_string().contains("/nonexistent/advisories"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let err = AdvisoryDb::open(empty.path()).err().unwrap();
    assert!(matches!(err, OsvError::NoData { .. }));
    assert!(err.to_string().contains("runner db update"), "{err}");
}

#[test]
fn corrupt_dumps_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("npm")).unwrap();
    std::fs::write(
        dir.path().join("npm/all.zip"),
        b"PK\x03\x04 truncated garbage",
    )
    .unwrap();
    let db = AdvisoryDb::open(dir.path()).unwrap();
    let err = db.query(&pkg("npm", "x", "1.0.0")).unwrap_err();
    assert!(err.to_string().contains("all.zip"), "{err}");
    // A second query gets the same (cached) error.
    assert!(db.query(&pkg("npm", "y", "1.0.0")).is_err());
    // Loose JSON that is not OSV is counted invalid and skipped.
    let loose = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(loose.path().join("PyPI")).unwrap();
    std::fs::write(loose.path().join("PyPI/bad.json"), b"{not json").unwrap();
    std::fs::write(loose.path().join("PyPI/odd.json"), br#"{"id": 3}"#).unwrap();
    let db = AdvisoryDb::open(loose.path()).unwrap();
    assert!(db.query(&pkg("PyPI", "x", "1.0")).unwrap().is_empty());
    assert_eq!(db.stats()[0].invalid, 2);
}

#[test]
fn mangled_records_never_panic() {
    use crate::scan::osv::db::match_record;
    use crate::scan::osv::record::Vuln;
    let text = std::fs::read_to_string(fixtures().join("npm/FIXTURE-NPM-0005.json")).unwrap();
    let mut seed = 7u64;
    let p = pkg("npm", "@babel/traverse", "7.0.0");
    for i in 0..2000 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut t = text.clone().into_bytes();
        let at = (seed >> 33) as usize % t.len();
        t[at] = b"0.~-_:*\"9a"[(i % 10) as usize];
        if let Ok(v) = serde_json::from_slice::<Vuln>(&t) {
            let _ = match_record(&v, &p, "@babel/traverse");
        }
    }
}

/// Measurement, not a check: `cargo test --release --lib prescan_vs_full -- --ignored --nocapture`.
#[test]
#[ignore]
fn prescan_vs_full_parse() {
    use crate::scan::osv::record::{PreScan, Vuln};
    use std::io::Read;
    for eco in ["crates.io", "PyPI"] {
        let data = std::fs::read(shared().join(eco).join("all.zip")).unwrap();
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(data)).unwrap();
        let t = std::time::Instant::now();
        let mut raw = Vec::new();
        for i in 0..z.len() {
            let mut b = Vec::new();
            z.by_index(i).unwrap().read_to_end(&mut b).unwrap();
            raw.push(b);
        }
        let inflate = t.elapsed();
        let t = std::time::Instant::now();
        let n: usize = raw
            .iter()
            .map(|b| {
                serde_json::from_slice::<PreScan<'_>>(b)
                    .unwrap()
                    .affected
                    .len()
            })
            .sum();
        let pre = t.elapsed();
        let t = std::time::Instant::now();
        let m: usize = raw
            .iter()
            .map(|b| serde_json::from_slice::<Vuln>(b).unwrap().affected.len())
            .sum();
        let full = t.elapsed();
        assert_eq!(n, m);
        println!(
            "{eco}: {} records, inflate {inflate:?}, pre-scan {pre:?}, full parse {full:?}",
            raw.len()
        );
    }
    let db = AdvisoryDb::open(&shared()).unwrap();
    for release in ["v3.3", "v3.11"] {
        db.load(&format!("Alpine:{release}")).unwrap();
    }
    for s in db.stats() {
        println!(
            "{}: {} records in {:.1} ms",
            s.ecosystem, s.records, s.load_ms
        );
    }
}

#[test]
fn every_shared_alpine_release_loads() {
    let db = AdvisoryDb::open(&shared()).unwrap();
    let releases: Vec<String> = db
        .ecosystems()
        .into_iter()
        .filter(|e| e.starts_with("Alpine:"))
        .collect();
    assert_eq!(releases.len(), 9, "{releases:?}");
    for r in &releases {
        db.load(r).unwrap();
    }
    assert!(db.stats().iter().all(|s| s.invalid == 0));
}

/// Not decided is not clean: a version the ordering cannot place against a record's
/// ranges, and an OS ecosystem the data lacks, are reported as undecided; a package
/// of an ecosystem with data and an orderable version is decided.
#[test]
fn undecided_versions_and_missing_os_ecosystems() {
    let db = AdvisoryDb::open(&shared()).unwrap();
    let c = db.check(&pkg("PyPI", "jinja2", "not a version")).unwrap();
    assert!(c.findings.is_empty());
    assert!(!c.undecided.is_empty(), "{c:?}");
    let c = db.check(&pkg("PyPI", "jinja2", "2.10")).unwrap();
    assert!(!c.findings.is_empty() && c.undecided.is_empty(), "{c:?}");

    let mut amzn = pkg("Amazon Linux:2", "openssl-libs", "1:1.0.2k-19.amzn2.0.10");
    amzn.purl = "pkg:rpm/amzn/openssl-libs@1:1.0.2k-19.amzn2.0.10".into();
    let mut alma = pkg("AlmaLinux:9", "openssl-libs", "1:3.0.7-24.el9");
    alma.purl = "pkg:rpm/almalinux/openssl-libs@1:3.0.7-24.el9".into();
    let all = [amzn.clone(), alma, pkg("PyPI", "jinja2", "x y")];
    let (found, undecided) = db
        .check_all(&all, |p| p.purl.starts_with("pkg:rpm/"))
        .unwrap();
    assert!(found.iter().any(|f| f.id == "ALSA-2024:0310"));
    let who: Vec<&str> = undecided
        .iter()
        .map(|u| u.package.ecosystem.as_str())
        .collect();
    assert_eq!(who, ["Amazon Linux:2", "PyPI"]);
    assert!(undecided[0]
        .reason
        .contains("no \"Amazon Linux:2\" ecosystem"));
    assert!(undecided[1].advisories.len() > 1);
    // No data at all: "not checked" is reported by the caller, not per package.
    let (_, none) = AdvisoryDb::empty().check_all(&[amzn], |_| true).unwrap();
    assert!(none.is_empty());
}
