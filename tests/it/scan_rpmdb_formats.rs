//! The two rpmdb formats before sqlite, each written by a real tool and checked against
//! a reader the project did not write:
//! - BerkeleyDB `Packages` (Amazon Linux 2, CentOS 7): rpm headers written by Debian's
//!   rpm (`rpmbuild`, `rpm -i --justdb` into sqlite), exported with Python's sqlite3 and
//!   loaded into a Berkeley DB hash file by Berkeley DB's own `db5.3_load`, in both byte
//!   orders and with page sizes that put the headers on overflow pages (4 KiB) and inline
//!   (64 KiB). The reference is `rpm -qa` through rpm's own `bdb_ro` backend.
//! - ndb `Packages.db` (SUSE): the real SLE 15 BCI rpmdb from go-rpmdb's test data
//!   (fixtures/scan/rpmdb/), against go-rpmdb's expected list.
//!
//! Each database goes into an image (`docker import` with a matching /etc/os-release)
//! scanned by `scan_image_archive`; the package list must equal the reference exactly.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use crate::scan_os_families::{need, record, run, Imported};
use crate::support::repo_root;
use runner::scan::image::scan_image_archive;
use runner::scan::model::Package;
use runner::scan::osv::AdvisoryDb;
use std::io::Read;
use std::path::Path;
use std::process::Command;

const AMZN2: &str = "NAME=\"Amazon Linux\"\nVERSION=\"2\"\nID=\"amzn\"\nID_LIKE=\"centos rhel fedora\"\nVERSION_ID=\"2\"\nPRETTY_NAME=\"Amazon Linux 2\"\n";
const CENTOS7: &str = "NAME=\"CentOS Linux\"\nVERSION=\"7 (Core)\"\nID=\"centos\"\nID_LIKE=\"rhel fedora\"\nVERSION_ID=\"7\"\nPRETTY_NAME=\"CentOS Linux 7 (Core)\"\n";
const SLE15: &str = "NAME=\"SLES\"\nVERSION=\"15-SP3\"\nVERSION_ID=\"15.3\"\nPRETTY_NAME=\"SUSE Linux Enterprise Server 15 SP3\"\nID=\"sles\"\nID_LIKE=\"suse\"\n";

/// Exports `Packages(hnum, blob)` of an rpmdb.sqlite as a `db_load` input file (keys
/// are the header numbers in the target byte order, as rpm's bdb backend stores them).
const EXPORT: &str = r#"
import sqlite3, struct, sys
db, out, order = sys.argv[1], sys.argv[2], sys.argv[3]
rows = sqlite3.connect(db).execute("select hnum, blob from Packages").fetchall()
with open(out, "w") as f:
    f.write("VERSION=3\nformat=bytevalue\ntype=hash\nHEADER=END\n")
    for hnum, blob in rows:
        f.write(" " + struct.pack(order + "I", hnum).hex() + "\n")
        f.write(" " + bytes(blob).hex() + "\n")
    f.write("DATA=END\n")
print(len(rows))
"#;

/// Debian's rpm writes `n` noarch packages (descriptions of growing size, so headers
/// span 2-12 KiB; every third has an epoch) into DIR/sqlite/rpmdb.sqlite.
fn sqlite_rpmdb(dir: &Path, n: usize) -> std::path::PathBuf {
    need(
        Command::new("rpmbuild").arg("--version"),
        "rpmbuild (Debian package rpm)",
    );
    let top = dir.join("rpmbuild");
    let mut rpms = Vec::new();
    for i in 1..=n {
        let epoch = if i % 3 == 0 {
            format!("Epoch: {i}\n")
        } else {
            String::new()
        };
        let spec = format!(
            "Name: pkg{i}\nVersion: 1.{i}\nRelease: {i}.amzn2\n{epoch}Summary: test\nLicense: MIT\nBuildArch: noarch\n%description\n{}\n%files\n",
            "x".repeat(i * 900)
        );
        let spec_path = dir.join(format!("p{i}.spec"));
        std::fs::write(&spec_path, spec).unwrap();
        run(Command::new("rpmbuild")
            .args(["-bb", "--quiet", "--define"])
            .arg(format!("_topdir {}", top.display()))
            .arg(&spec_path));
        rpms.push(top.join(format!("RPMS/noarch/pkg{i}-1.{i}-{i}.amzn2.noarch.rpm")));
    }
    let db = dir.join("sqlite");
    std::fs::create_dir_all(&db).unwrap();
    run(Command::new("rpm").arg("--dbpath").arg(&db).arg("--initdb"));
    run(Command::new("rpm")
        .arg("--dbpath")
        .arg(&db)
        .args(["-i", "--justdb", "--nodeps", "--noscripts"])
        .args(["--ignorearch", "--ignoreos"])
        .args(&rpms));
    db.join("rpmdb.sqlite")
}

/// `name [epoch:]version-release arch` of every package rpm reads from DIR (`backend`).
fn rpm_qa(dbpath: &Path, backend: &str) -> Vec<String> {
    let out = run(Command::new("rpm")
        .arg("--dbpath")
        .arg(dbpath)
        .args(["--define", &format!("_db_backend {backend}"), "-qa", "--qf"])
        .arg("%{NAME} %|EPOCH?{%{EPOCH}:}|%{VERSION}-%{RELEASE} %{ARCH}\\n"));
    let mut v: Vec<String> = out.lines().map(str::to_string).collect();
    v.sort();
    v
}

/// Scans an image of `files` + os-release; returns (ecosystem, sorted package lines).
fn scan(dir: &Path, tag: &str, os_release: &str, path: &str, db: Vec<u8>) -> (String, Vec<String>) {
    let (eco, got, _) = scan_packages(dir, tag, os_release, path, db);
    (eco, got)
}

/// [`scan`], with the packages themselves.
fn scan_packages(
    dir: &Path,
    tag: &str,
    os_release: &str,
    path: &str,
    db: Vec<u8>,
) -> (String, Vec<String>, Vec<Package>) {
    let files = vec![
        ("etc/os-release".to_string(), os_release.as_bytes().to_vec()),
        (path.to_string(), db),
    ];
    let tag = format!("runner-test/rpmdb-{tag}:{}", std::process::id());
    let image = Imported::new(&tag, &files);
    let inv = scan_image_archive(&image.save(dir)).unwrap();
    assert!(inv.warnings.is_empty(), "{tag}: {:?}", inv.warnings);
    let mut got: Vec<String> = inv.packages.iter().map(line).collect();
    got.sort();
    (
        inv.os_ecosystem().unwrap_or_default().to_string(),
        got,
        inv.packages,
    )
}

/// `name evr arch` from a scanned package (arch from its purl).
fn line(p: &Package) -> String {
    let arch = p
        .purl
        .split_once("arch=")
        .map(|(_, a)| a.split('&').next().unwrap_or(""))
        .unwrap_or("");
    format!("{} {} {arch}", p.name, p.version)
}

#[test]
fn bdb_rpmdb_written_by_berkeley_db_lists_what_rpm_reads() {
    crate::support::stack();
    need(
        Command::new("db5.3_load").arg("-V"),
        "db5.3_load (Debian package db5.3-util)",
    );
    let work = tempfile::tempdir().unwrap();
    let sqlite = sqlite_rpmdb(work.path(), 12);
    // (name, python struct byte order, db_lorder, page size, page checksums,
    // os-release, ecosystem)
    let variants = [
        ("le-4k", "<", "1234", "4096", false, AMZN2, "Amazon Linux:2"),
        ("be-4k", ">", "4321", "4096", false, CENTOS7, ""),
        (
            "le-64k",
            "<",
            "1234",
            "65536",
            false,
            AMZN2,
            "Amazon Linux:2",
        ),
        ("be-4k-chksum", ">", "4321", "4096", true, CENTOS7, ""),
    ];
    for (name, order, lorder, page, chksum, os_release, eco) in variants {
        let dir = work.path().join(name);
        std::fs::create_dir_all(dir.join("db")).unwrap();
        let dump = dir.join("dump.txt");
        let n = run(Command::new("/usr/bin/python3")
            .args(["-c", EXPORT])
            .arg(&sqlite)
            .arg(&dump)
            .arg(order));
        assert_eq!(n.trim(), "12");
        run(Command::new("db5.3_load")
            .args(["-c", &format!("db_lorder={lorder}")])
            .args(["-c", &format!("db_pagesize={page}")])
            .args(if chksum { &["-c", "chksum=1"][..] } else { &[] })
            .arg("-f")
            .arg(&dump)
            .arg(dir.join("db/Packages")));
        // rpm's bdb_ro does not open a checksummed file (rpm never writes one): the
        // reference for it is rpm's reading of the same dump without checksums.
        let want = if chksum {
            rpm_qa(&work.path().join("le-4k/db"), "bdb_ro")
        } else {
            rpm_qa(&dir.join("db"), "bdb_ro")
        };
        assert_eq!(want.len(), 12, "{name}: rpm reads {want:?}");
        let bytes = std::fs::read(dir.join("db/Packages")).unwrap();
        let (got_eco, got) = scan(&dir, name, os_release, "var/lib/rpm/Packages", bytes);
        if !eco.is_empty() {
            assert_eq!(got_eco, eco, "{name}");
        }
        assert_eq!(got, want, "{name}");
        eprintln!("{name}: {} packages, equal to rpm -qa (bdb_ro)", got.len());
    }
}

#[test]
fn sle15_ndb_rpmdb_lists_go_rpmdbs_reference() {
    crate::support::stack();
    let work = tempfile::tempdir().unwrap();
    let base = repo_root().join("fixtures/scan/rpmdb/sle15-bci");
    let gz = std::fs::read(base.join("Packages.db.gz")).unwrap();
    let mut db = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut db)
        .unwrap();
    let mut want: Vec<String> = std::fs::read_to_string(base.join("expected.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    want.sort();
    // OSV files SLE 15 fixes under the module shipping the package, not the product
    // os-release names: a glibc record of the Basesystem module of SP3 applies, one of
    // SP4 does not.
    let adv = work.path().join("advisories/SUSE");
    std::fs::create_dir_all(&adv).unwrap();
    for (id, eco) in [
        (
            "SUSE-SU-TEST-1",
            "SUSE:Linux Enterprise Module for Basesystem 15 SP3",
        ),
        (
            "SUSE-SU-TEST-2",
            "SUSE:Linux Enterprise Module for Basesystem 15 SP4",
        ),
    ] {
        let text = record(id, eco, "glibc", "2.31-9.3.3");
        std::fs::write(adv.join(format!("{id}.json")), text).unwrap();
    }
    let advisories = AdvisoryDb::open_dirs(&[work.path().join("advisories")]).unwrap();
    for path in [
        "var/lib/rpm/Packages.db",
        "usr/lib/sysimage/rpm/Packages.db",
    ] {
        let (eco, got, pkgs) = scan_packages(work.path(), "sle15", SLE15, path, db.clone());
        assert_eq!(eco, "SUSE:Linux Enterprise Server 15 SP3");
        assert_eq!(got, want, "{path}");
        eprintln!("{path}: {} packages, equal to go-rpmdb's list", got.len());
        let glibc = pkgs.iter().find(|p| p.name == "glibc").unwrap();
        let found: Vec<String> = advisories
            .query(glibc)
            .unwrap()
            .into_iter()
            .map(|v| v.id)
            .collect();
        assert_eq!(found, ["SUSE-SU-TEST-1"], "{path}");
    }
}
