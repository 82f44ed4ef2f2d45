//! OS families and version orderings, each checked against code the project did not
//! write:
//! - differential tests of the RPM, PEP 440 and dpkg orderings against python3-rpm
//!   (`rpm.ver`), Python `packaging.version` and `dpkg --compare-versions`, over version
//!   pairs drawn from the shared advisory data (../shared/advisories);
//! - a table test per OS family: an image (`docker import` of a rootfs whose package
//!   database is written by the real tool: dpkg status, apk installed, an rpmdb written
//!   by Debian's `rpm`) → the OSV ecosystem name → an advisory filed under that name
//!   matched;
//! - the AlmaLinux 9 image: `runner scan image` findings equal an independent matcher's
//!   (python3-rpm's `labelCompare` over ../shared/advisories/AlmaLinux/all.zip).
//!
//! The reference tools are Debian packages (`rpm`, `python3-rpm`, `python3-packaging`)
//! that scripts/setup.sh installs; a missing one fails the test with that hint.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use crate::support::{repo_root, Project};
use runner::scan::image::scan_image_archive;
use runner::scan::osv::AdvisoryDb;
use runner::scan::version;
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Debian's interpreter: python3-rpm and python3-packaging install for it.
const PY: &str = "/usr/bin/python3";
const HINT: &str = "install the reference tools: `apt-get install rpm python3-rpm python3-packaging` (scripts/setup.sh does)";

fn advisories() -> PathBuf {
    repo_root().join("../shared/advisories")
}

fn script() -> PathBuf {
    repo_root().join("tests/it/version_reference.py")
}

pub(crate) fn need(cmd: &mut Command, what: &str) {
    let ok = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{what} is missing: {HINT}");
}

fn need_python_module(module: &str) {
    need(
        Command::new(PY).args(["-c", &format!("import {module}")]),
        &format!("{PY} module {module}"),
    );
}

pub(crate) fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} ({HINT})"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn reference(args: &[&str]) -> String {
    run(Command::new(PY).arg(script()).args(args))
}

fn ord_of(s: &str) -> Option<Ordering> {
    match s {
        "-1" => Some(Ordering::Less),
        "0" => Some(Ordering::Equal),
        "1" => Some(Ordering::Greater),
        _ => None,
    }
}

/// Compares `ours` with the reference's lines `a\tb\tcmp`; returns (pairs, disagreements).
fn differential(
    name: &str,
    lines: &str,
    ours: impl Fn(&str, &str) -> Option<Ordering>,
) -> (usize, Vec<String>) {
    let mut pairs = 0;
    let mut bad = Vec::new();
    for line in lines.lines() {
        let mut f = line.split('\t');
        let (Some(a), Some(b), Some(c)) = (f.next(), f.next(), f.next()) else {
            panic!("bad reference line {line:?}");
        };
        pairs += 1;
        let want = ord_of(c);
        let got = ours(a, b);
        if got != want {
            bad.push(format!("{a} vs {b}: reference {c}, runner {got:?}"));
        }
    }
    eprintln!(
        "{name}: {pairs} pairs compared, {} disagreements",
        bad.len()
    );
    (pairs, bad)
}

#[test]
fn rpm_ordering_agrees_with_python3_rpm() {
    need_python_module("rpm");
    let zip = advisories().join("AlmaLinux/all.zip");
    let lines = reference(&["pairs-rpm", zip.to_str().unwrap(), "20000"]);
    let (pairs, bad) = differential("rpm (python3-rpm rpm.ver)", &lines, version::rpm::compare);
    assert!(pairs >= 20000, "{pairs} pairs");
    assert!(
        bad.is_empty(),
        "{} disagreements:\n{}",
        bad.len(),
        bad[..bad.len().min(30)].join("\n")
    );
    // The ecosystems the dispatcher sends to the rpm ordering agree too.
    let first = lines.lines().next().unwrap();
    let mut f = first.split('\t');
    let (a, b, c) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
    for eco in [
        "AlmaLinux:9",
        "Rocky Linux:9",
        "Red Hat:enterprise_linux:9::baseos",
        "SUSE:Linux Enterprise Server 15 SP5",
        "openSUSE:Leap 15.5",
        "Amazon Linux:2",
    ] {
        assert_eq!(version::compare(eco, a, b), ord_of(c), "{eco}: {a} vs {b}");
    }
}

#[test]
fn pep440_ordering_agrees_with_packaging() {
    need_python_module("packaging.version");
    let zip = advisories().join("PyPI/all.zip");
    let lines = reference(&["pairs-pep440", zip.to_str().unwrap(), "20000"]);
    let (pairs, bad) = differential("PEP 440 (packaging.version)", &lines, |a, b| {
        version::compare("PyPI", a, b)
    });
    assert!(pairs >= 20000, "{pairs} pairs");
    assert!(
        bad.is_empty(),
        "{} disagreements:\n{}",
        bad.len(),
        bad[..bad.len().min(30)].join("\n")
    );
}

#[test]
fn dpkg_ordering_agrees_with_dpkg_compare_versions() {
    need(Command::new("dpkg").arg("--version"), "dpkg");
    let zip = advisories().join("AlmaLinux/all.zip");
    let pairs = reference(&[
        "pairs-dpkg",
        zip.to_str().unwrap(),
        "4000",
        "/var/lib/dpkg/status",
    ]);
    // One shell reads the pairs and asks dpkg about each (lt, eq, gt; "x" when dpkg
    // rejects a version).
    let mut child = Command::new("bash")
        .args([
            "-c",
            r#"while IFS=$'\t' read -r a b; do
                 if dpkg --compare-versions "$a" lt "$b" 2>/dev/null; then r=-1
                 elif dpkg --compare-versions "$a" eq "$b" 2>/dev/null; then r=0
                 elif dpkg --compare-versions "$a" gt "$b" 2>/dev/null; then r=1
                 else r=x; fi
                 printf '%s\t%s\t%s\n' "$a" "$b" "$r"
               done"#,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feed = std::thread::spawn(move || stdin.write_all(pairs.as_bytes()));
    let out = child.wait_with_output().unwrap();
    feed.join().unwrap().unwrap();
    assert!(out.status.success());
    let lines = String::from_utf8(out.stdout).unwrap();
    let (n, bad) = differential("dpkg (dpkg --compare-versions)", &lines, |a, b| {
        version::compare("Debian:12", a, b)
    });
    assert!(n >= 4000, "{n} pairs");
    assert!(
        bad.is_empty(),
        "{} disagreements:\n{}",
        bad.len(),
        bad[..bad.len().min(30)].join("\n")
    );
}

// --- images -------------------------------------------------------------------------

/// A package in an rpm database: source package, binary name, epoch, version, release.
#[derive(Clone, Copy)]
struct Rpm<'a> {
    src: &'a str,
    name: &'a str,
    epoch: Option<u32>,
    version: &'a str,
    release: &'a str,
}

/// Builds the packages with `rpmbuild` (no files, noarch; binary `name` as a
/// subpackage of `src`) and installs them with `rpm --dbpath DIR/db -i --justdb`: an
/// rpmdb.sqlite written by the real rpm. Returns the database directory.
fn rpmdb(dir: &Path, pkgs: &[Rpm]) -> PathBuf {
    need(
        Command::new("rpmbuild").arg("--version"),
        "rpmbuild (Debian package rpm)",
    );
    let top = dir.join("rpmbuild");
    let db = dir.join("rpmdb");
    std::fs::create_dir_all(&db).unwrap();
    let mut rpms = Vec::new();
    for (i, p) in pkgs.iter().enumerate() {
        let epoch = p.epoch.map(|e| format!("Epoch: {e}\n")).unwrap_or_default();
        let head = format!(
            "Name: {src}\nVersion: {v}\nRelease: {r}\n{epoch}Summary: test\nLicense: MIT\nBuildArch: noarch\n%description\ntest\n",
            src = p.src,
            v = p.version,
            r = p.release,
        );
        let spec = if p.src == p.name {
            format!("{head}%files\n")
        } else {
            format!(
                "{head}%package -n {name}\nSummary: test\n%description -n {name}\ntest\n%files -n {name}\n",
                name = p.name
            )
        };
        let spec_path = dir.join(format!("p{i}.spec"));
        std::fs::write(&spec_path, spec).unwrap();
        run(Command::new("rpmbuild")
            .args(["-bb", "--quiet", "--define"])
            .arg(format!("_topdir {}", top.display()))
            .arg(&spec_path));
        rpms.push(top.join(format!(
            "RPMS/noarch/{}-{}-{}.noarch.rpm",
            p.name, p.version, p.release
        )));
    }
    run(Command::new("rpm").arg("--dbpath").arg(&db).arg("--initdb"));
    run(Command::new("rpm")
        .arg("--dbpath")
        .arg(&db)
        .args([
            "-i",
            "--justdb",
            "--nodeps",
            "--noscripts",
            "--ignorearch",
            "--ignoreos",
        ])
        .args(&rpms));
    db
}

/// A rootfs tar of `files` (parent directories added).
fn rootfs_tar(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs = BTreeSet::new();
    for (path, _) in files {
        let mut acc = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            acc.push_str(part);
            acc.push('/');
            dirs.insert(acc.clone());
        }
    }
    for d in dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, &d, &[][..]).unwrap();
    }
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// `docker import` of the rootfs as `tag`; removed when dropped.
pub(crate) struct Imported(String);

impl Imported {
    pub(crate) fn new(tag: &str, files: &[(String, Vec<u8>)]) -> Imported {
        let tar = rootfs_tar(files);
        let mut child = Command::new("docker")
            .args(["import", "-", tag])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&tar).unwrap();
        assert!(child.wait().unwrap().success(), "docker import {tag}");
        Imported(tag.to_string())
    }

    pub(crate) fn save(&self, dir: &Path) -> PathBuf {
        let p = dir.join("image.tar");
        run(Command::new("docker").args(["save", &self.0, "-o"]).arg(&p));
        p
    }
}

impl Drop for Imported {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

enum Db<'a> {
    Dpkg {
        src: &'a str,
        name: &'a str,
        version: &'a str,
    },
    Apk {
        origin: &'a str,
        name: &'a str,
        version: &'a str,
    },
    Rpm(Rpm<'a>),
}

struct Family<'a> {
    family: &'a str,
    os_release: &'a str,
    db: Db<'a>,
    ecosystem: &'a str,
    /// Records filed under OSV's ecosystem string for the family: (folder, id,
    /// record ecosystem, record package name, fixed). AlmaLinux uses the real data.
    records: &'a [(&'a str, &'a str, &'a str, &'a str, &'a str)],
    /// Advisory ids the installed package must match.
    expect: &'a [&'a str],
}

pub(crate) fn record(id: &str, ecosystem: &str, name: &str, fixed: &str) -> String {
    serde_json::json!({
        "id": id,
        "modified": "2026-01-01T00:00:00Z",
        "summary": format!("test advisory for {name} in {ecosystem}"),
        "affected": [{
            "package": {"ecosystem": ecosystem, "name": name},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]
        }]
    })
    .to_string()
}

fn families() -> Vec<Family<'static>> {
    let ossl_el9 = Rpm {
        src: "openssl",
        name: "openssl-libs",
        epoch: Some(1),
        version: "3.0.7",
        release: "24.el9",
    };
    let suse = Rpm {
        src: "openssl-3",
        name: "libopenssl3",
        epoch: None,
        version: "3.0.8",
        release: "150500.5.8.1",
    };
    vec![
        Family {
            family: "Debian",
            os_release: "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nID=debian\n",
            db: Db::Dpkg { src: "openssl", name: "libssl3", version: "3.0.11-1~deb12u1" },
            ecosystem: "Debian:12",
            records: &[("Debian", "DSA-TEST-1", "Debian:12", "openssl", "3.0.11-1~deb12u2")],
            expect: &["DSA-TEST-1"],
        },
        Family {
            family: "Ubuntu",
            os_release: "NAME=\"Ubuntu\"\nVERSION=\"22.04.3 LTS (Jammy Jellyfish)\"\nID=ubuntu\nID_LIKE=debian\nPRETTY_NAME=\"Ubuntu 22.04.3 LTS\"\nVERSION_ID=\"22.04\"\n",
            db: Db::Dpkg { src: "openssl", name: "libssl3", version: "3.0.2-0ubuntu1.10" },
            ecosystem: "Ubuntu:22.04:LTS",
            records: &[
                ("Ubuntu", "USN-TEST-1", "Ubuntu:22.04:LTS", "openssl", "3.0.2-0ubuntu1.12"),
                ("Ubuntu", "USN-TEST-2", "Ubuntu:Pro:22.04:LTS", "openssl", "3.0.2-0ubuntu1.15+esm1"),
                ("Ubuntu", "USN-TEST-3", "Ubuntu:20.04:LTS", "openssl", "3.0.2-0ubuntu1.99"),
            ],
            expect: &["USN-TEST-1", "USN-TEST-2"],
        },
        Family {
            family: "Alpine",
            os_release: "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n",
            db: Db::Apk { origin: "openssl", name: "libcrypto3", version: "3.1.4-r1" },
            ecosystem: "Alpine:v3.19",
            records: &[("Alpine", "ALPINE-TEST-1", "Alpine:v3.19", "openssl", "3.1.4-r10")],
            expect: &["ALPINE-TEST-1"],
        },
        Family {
            family: "AlmaLinux",
            os_release: "NAME=\"AlmaLinux\"\nVERSION=\"9.3 (Shamrock Pampas Cat)\"\nID=\"almalinux\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\n",
            db: Db::Rpm(ossl_el9),
            ecosystem: "AlmaLinux:9",
            records: &[],
            expect: &["ALSA-2024:0310", "ALSA-2024:2447"],
        },
        Family {
            family: "Rocky Linux",
            os_release: "NAME=\"Rocky Linux\"\nVERSION=\"9.3 (Blue Onyx)\"\nID=\"rocky\"\nVERSION_ID=\"9.3\"\n",
            db: Db::Rpm(ossl_el9),
            ecosystem: "Rocky Linux:9",
            records: &[("Rocky Linux", "RLSA-TEST-1", "Rocky Linux:9", "openssl", "1:3.0.7-25.el9_3")],
            expect: &["RLSA-TEST-1"],
        },
        Family {
            family: "Red Hat",
            os_release: "NAME=\"Red Hat Enterprise Linux\"\nVERSION=\"9.3 (Plow)\"\nID=\"rhel\"\nVERSION_ID=\"9.3\"\n",
            db: Db::Rpm(ossl_el9),
            ecosystem: "Red Hat:enterprise_linux:9",
            records: &[
                ("Red Hat", "RHSA-TEST-1", "Red Hat:enterprise_linux:9::baseos", "openssl-libs", "1:3.0.7-25.el9_3"),
                ("Red Hat", "RHSA-TEST-2", "Red Hat:enterprise_linux:8::baseos", "openssl-libs", "1:3.0.7-99.el8"),
            ],
            expect: &["RHSA-TEST-1"],
        },
        Family {
            family: "SUSE",
            os_release: "NAME=\"SLES\"\nVERSION=\"15-SP5\"\nVERSION_ID=\"15.5\"\nPRETTY_NAME=\"SUSE Linux Enterprise Server 15 SP5\"\nID=\"sles\"\n",
            db: Db::Rpm(suse),
            ecosystem: "SUSE:Linux Enterprise Server 15 SP5",
            records: &[("SUSE", "SUSE-SU-TEST-1", "SUSE:Linux Enterprise Server 15 SP5", "openssl-3", "3.0.8-150500.5.20.1")],
            expect: &["SUSE-SU-TEST-1"],
        },
        Family {
            family: "openSUSE",
            os_release: "NAME=\"openSUSE Leap\"\nVERSION=\"15.5\"\nID=\"opensuse-leap\"\nVERSION_ID=\"15.5\"\nPRETTY_NAME=\"openSUSE Leap 15.5\"\n",
            db: Db::Rpm(suse),
            ecosystem: "openSUSE:Leap 15.5",
            records: &[("openSUSE", "openSUSE-SU-TEST-1", "openSUSE:Leap 15.5", "openssl-3", "3.0.8-150500.5.20.1")],
            expect: &["openSUSE-SU-TEST-1"],
        },
        Family {
            family: "Wolfi",
            os_release: "ID=wolfi\nNAME=\"Wolfi\"\nPRETTY_NAME=\"Wolfi\"\nVERSION_ID=\"20230201\"\n",
            db: Db::Apk { origin: "openssl", name: "libcrypto3", version: "3.2.0-r1" },
            ecosystem: "Wolfi",
            records: &[("Wolfi", "CGA-TEST-1", "Wolfi", "openssl", "3.2.0-r10")],
            expect: &["CGA-TEST-1"],
        },
        Family {
            family: "Chainguard",
            os_release: "ID=chainguard\nNAME=\"Chainguard\"\nPRETTY_NAME=\"Chainguard\"\nVERSION_ID=\"20230214\"\n",
            db: Db::Apk { origin: "openssl", name: "libcrypto3", version: "3.2.0-r1" },
            ecosystem: "Chainguard",
            records: &[("Chainguard", "CGA-TEST-2", "Chainguard", "openssl", "3.2.0-r10")],
            expect: &["CGA-TEST-2"],
        },
        Family {
            family: "Amazon Linux",
            os_release: "NAME=\"Amazon Linux\"\nVERSION=\"2\"\nID=\"amzn\"\nID_LIKE=\"centos rhel fedora\"\nVERSION_ID=\"2\"\n",
            db: Db::Rpm(Rpm {
                src: "openssl",
                name: "openssl-libs",
                epoch: Some(1),
                version: "1.0.2k",
                release: "19.amzn2.0.10",
            }),
            ecosystem: "Amazon Linux:2",
            // OSV publishes no Amazon Linux data; local records in OSV format match.
            records: &[("Amazon Linux", "ALAS2-TEST-1", "Amazon Linux:2", "openssl", "1:1.0.2k-24.amzn2.0.6")],
            expect: &["ALAS2-TEST-1"],
        },
    ]
}

/// Per family: the image's OS maps to OSV's ecosystem name, and an advisory filed under
/// that name (with a fix the family's ordering must place above the installed version)
/// matches the installed package; a record of another release does not.
#[test]
fn every_os_family_maps_to_its_osv_ecosystem_and_matches() {
    crate::support::stack();
    let work = tempfile::tempdir().unwrap();
    let adv = work.path().join("advisories");
    for f in families() {
        for (folder, id, eco, name, fixed) in f.records {
            let d = adv.join(folder);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(format!("{id}.json")), record(id, eco, name, fixed)).unwrap();
        }
    }
    let db = AdvisoryDb::open_dirs(&[adv.clone(), advisories()]).unwrap();
    let mut failures = Vec::new();
    for (i, f) in families().into_iter().enumerate() {
        let dir = work.path().join(format!("fam{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut files = vec![(
            "etc/os-release".to_string(),
            f.os_release.as_bytes().to_vec(),
        )];
        match &f.db {
            Db::Dpkg { src, name, version } => files.push((
                "var/lib/dpkg/status".into(),
                format!("Package: {name}\nStatus: install ok installed\nArchitecture: amd64\nSource: {src}\nVersion: {version}\n\n").into_bytes(),
            )),
            Db::Apk { origin, name, version } => files.push((
                "lib/apk/db/installed".into(),
                format!("P:{name}\nV:{version}\nA:x86_64\no:{origin}\n\n").into_bytes(),
            )),
            Db::Rpm(p) => {
                let d = rpmdb(&dir, &[*p]);
                files.push((
                    "var/lib/rpm/rpmdb.sqlite".into(),
                    std::fs::read(d.join("rpmdb.sqlite")).unwrap(),
                ));
            }
        }
        let tag = format!("runner-test/os-family-{i}:{}", std::process::id());
        let image = Imported::new(&tag, &files);
        let inv = scan_image_archive(&image.save(&dir)).unwrap();
        if inv.os_ecosystem() != Some(f.ecosystem) {
            failures.push(format!(
                "{}: ecosystem {:?}, want {}",
                f.family,
                inv.os_ecosystem(),
                f.ecosystem
            ));
            continue;
        }
        assert_eq!(inv.packages.len(), 1, "{}: {:?}", f.family, inv.packages);
        let pkg = &inv.packages[0];
        assert_eq!(pkg.ecosystem, f.ecosystem, "{}", f.family);
        let found: Vec<String> = db.query(pkg).unwrap().into_iter().map(|v| v.id).collect();
        for want in f.expect {
            if !found.iter().any(|id| id == want) {
                failures.push(format!(
                    "{}: {}@{} did not match {want} (found {found:?})",
                    f.family, pkg.name, pkg.version
                ));
            }
        }
        for id in &found {
            if !id.starts_with("ALSA") && !f.expect.contains(&id.as_str()) {
                failures.push(format!("{}: unexpected {id}", f.family));
            }
        }
        eprintln!(
            "{:<13} {:<38} {}@{} -> {}",
            f.family,
            f.ecosystem,
            pkg.name,
            pkg.version,
            found.join(", ")
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The AlmaLinux 9 image of issue #16: a dozen real package names at old versions in an
/// rpmdb written by Debian's rpm. `runner scan image` must report exactly the
/// (advisory, package) pairs an independent matcher (python3-rpm reading the same rpmdb
/// and comparing with `labelCompare` over the same all.zip) finds.
#[test]
fn almalinux_image_findings_equal_an_independent_matcher() {
    need_python_module("rpm");
    let p = Project::new();
    let work = tempfile::tempdir().unwrap();
    let r = |src, name, epoch, version, release| Rpm {
        src,
        name,
        epoch,
        version,
        release,
    };
    let pkgs = [
        r("openssl", "openssl-libs", Some(1), "3.0.1", "41.el9_0"),
        r("sudo", "sudo", None, "1.9.5p2", "7.el9"),
        r("curl", "curl", None, "7.76.1", "14.el9"),
        r("curl", "libcurl", None, "7.76.1", "14.el9"),
        r("glibc", "glibc", None, "2.34", "28.el9_0"),
        r("expat", "expat", None, "2.2.10", "12.el9_0"),
        r("libxml2", "libxml2", None, "2.9.13", "1.el9"),
        r("python3.9", "python3-libs", None, "3.9.10", "2.el9"),
        r("systemd", "systemd-libs", None, "250", "6.el9_0"),
        r("vim", "vim-minimal", Some(2), "8.2.2637", "16.el9_0.3"),
        r("krb5", "krb5-libs", None, "1.19.1", "15.el9_0"),
        r("less", "less", None, "590", "1.el9"),
    ];
    let db = rpmdb(work.path(), &pkgs);
    let os = "NAME=\"AlmaLinux\"\nVERSION=\"9.0 (Emerald Puma)\"\nID=\"almalinux\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.0\"\nPRETTY_NAME=\"AlmaLinux 9.0 (Emerald Puma)\"\n";
    let files = vec![
        ("etc/os-release".to_string(), os.as_bytes().to_vec()),
        (
            "var/lib/rpm/rpmdb.sqlite".to_string(),
            std::fs::read(db.join("rpmdb.sqlite")).unwrap(),
        ),
    ];
    let tag = format!("runner-test/almalinux-rpmdb:{}", std::process::id());
    let _image = Imported::new(&tag, &files);

    let zip = advisories().join("AlmaLinux/all.zip");
    let expected: BTreeSet<String> = reference(&[
        "match-rpm",
        zip.to_str().unwrap(),
        "AlmaLinux:9",
        db.to_str().unwrap(),
    ])
    .lines()
    .map(str::to_string)
    .collect();

    let out = p
        .runner()
        .args(["scan", "image", &tag, "--advisories"])
        .arg(advisories())
        .args(["--format", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let got: BTreeSet<String> = v["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{}\t{}",
                f["id"].as_str().unwrap(),
                f["package"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(v["packages"], pkgs.len(), "{v}");
    let missing: Vec<_> = expected.difference(&got).collect();
    let extra: Vec<_> = got.difference(&expected).collect();
    eprintln!(
        "AlmaLinux 9 image: {} packages, runner {} findings, independent matcher {} findings, {} missing, {} extra",
        pkgs.len(),
        got.len(),
        expected.len(),
        missing.len(),
        extra.len()
    );
    assert!(
        expected.len() >= 24,
        "the independent matcher found only {}",
        expected.len()
    );
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing: {missing:?}\nextra: {extra:?}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "the default policy fails on these: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An OS family the advisory data lacks (Amazon Linux 2: OSV publishes none) is not
/// clean: `runner scan image` reports every OS package as not decided in the summary,
/// the JSON and the SARIF, and the default policy fails on it; `fail-on-undecided:
/// false` lets it through while still reporting it.
#[test]
fn an_os_without_advisory_data_is_not_decided_never_clean() {
    let p = Project::new();
    let work = tempfile::tempdir().unwrap();
    let r = |src, name, epoch, version, release| Rpm {
        src,
        name,
        epoch,
        version,
        release,
    };
    let pkgs = [
        r(
            "openssl",
            "openssl-libs",
            Some(1),
            "1.0.2k",
            "19.amzn2.0.10",
        ),
        r("bash", "bash", None, "4.2.46", "34.amzn2"),
    ];
    let db = rpmdb(work.path(), &pkgs);
    let os = "NAME=\"Amazon Linux\"\nVERSION=\"2\"\nID=\"amzn\"\nID_LIKE=\"centos rhel fedora\"\nVERSION_ID=\"2\"\nPRETTY_NAME=\"Amazon Linux 2\"\n";
    let files = vec![
        ("etc/os-release".to_string(), os.as_bytes().to_vec()),
        (
            "var/lib/rpm/rpmdb.sqlite".to_string(),
            std::fs::read(db.join("rpmdb.sqlite")).unwrap(),
        ),
    ];
    let tag = format!("runner-test/amzn2-rpmdb:{}", std::process::id());
    let _image = Imported::new(&tag, &files);
    let scan = |extra: &[&str]| {
        p.runner()
            .args(["scan", "image", &tag, "--advisories"])
            .arg(advisories())
            .args(extra)
            .output()
            .unwrap()
    };

    let out = scan(&["--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(1), "{v}");
    assert_eq!(v["passed"], false);
    assert_eq!(v["vulnerabilities"].as_array().unwrap().len(), 0);
    let undecided: BTreeSet<String> = v["undecided"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            format!(
                "{} {}",
                u["package"]["ecosystem"].as_str().unwrap(),
                u["package"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        undecided,
        ["Amazon Linux:2 bash", "Amazon Linux:2 openssl-libs"]
            .map(String::from)
            .into(),
        "{v}"
    );
    assert!(v["verdict"]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j["id"] == "undecided"));

    let out = scan(&[]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}");
    assert!(
        table.contains("0 vulnerabilities, 2 not decided") && table.contains("policy FAILED"),
        "{table}"
    );

    let sarif = work.path().join("scan.sarif");
    let out = scan(&["--format", "sarif", "-o", sarif.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let log: serde_json::Value = serde_json::from_slice(&std::fs::read(&sarif).unwrap()).unwrap();
    let results = log["runs"][0]["results"].as_array().unwrap();
    assert_eq!(
        results
            .iter()
            .filter(|r| r["ruleId"] == "undecided" && r["level"] == "error")
            .count(),
        2,
        "{log}"
    );

    p.write("policy.yml", "fail-on-undecided: false\n");
    let out = scan(&["--policy", "policy.yml"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}");
    assert!(
        table.contains("2 not decided") && table.contains("policy passed"),
        "{table}"
    );
}
