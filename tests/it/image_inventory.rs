//! Image scanner against real Docker images (runner/debian:bookworm, a debootstrap
//! minbase rootfs brought in with `docker import`; see scripts/images.sh).
//!
//! The stack must have them: a missing engine, image or dpkg-query fails the test
//! (`scripts/setup.sh --debian` builds the image; scripts/test.sh runs it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use runner::scan::image::{scan_image_archive, ImageInventory};

const DEBIAN: &str = "runner/debian:bookworm";
/// Files `docker create` adds to a container (not part of the image).
const CONTAINER_FILES: [&str; 4] = [".dockerenv", "etc/hostname", "etc/hosts", "etc/resolv.conf"];

/// Is `image` present in a reachable Docker engine (and dpkg-query on the host)?
/// Panics (fails the test) when not: a test that needs them must never pass without.
fn have_image(image: &str) -> bool {
    let ok = Command::new("docker")
        .args(["image", "inspect", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("dpkg-query")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        let msg = format!("skipping: docker image {image} or dpkg-query not available (scripts/setup.sh --debian)");
        panic!("{msg}");
    }
    ok
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `docker save IMAGE -o DIR/image.tar`.
fn docker_save(image: &str, dir: &Path) -> PathBuf {
    let p = dir.join("image.tar");
    run(Command::new("docker").args(["save", image, "-o"]).arg(&p));
    p
}

/// Copy PATH out of IMAGE (through a created, never started, container).
fn docker_cp(image: &str, path: &str, dest: &Path) {
    let cid = run(Command::new("docker").args(["create", image, "true"]));
    let cid = cid.trim();
    let res = Command::new("docker")
        .args(["cp", &format!("{cid}:{path}")])
        .arg(dest)
        .output();
    run(Command::new("docker").args(["rm", cid]));
    assert!(res.unwrap().status.success(), "docker cp {path} failed");
}

/// The reference: `dpkg-query --admindir=<image's /var/lib/dpkg> -W` as
/// "name version" lines.
fn dpkg_query(image: &str) -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let admin = dir.path().join("dpkg");
    docker_cp(image, "/var/lib/dpkg", &admin);
    run(Command::new("dpkg-query")
        .arg(format!("--admindir={}", admin.display()))
        .args(["-W", "-f", "${Package} ${Version}\n"]))
    .lines()
    .map(str::to_string)
    .collect()
}

/// The scanner's dpkg packages as "name version" lines.
fn scanned_debs(inv: &ImageInventory) -> BTreeSet<String> {
    inv.packages
        .iter()
        .filter(|p| p.purl.starts_with("pkg:deb/"))
        .map(|p| format!("{} {}", p.name, p.version))
        .collect()
}

/// `docker build -t TAG -` from a Dockerfile on stdin (no context).
fn docker_build(tag: &str, dockerfile: &str) {
    let mut child = Command::new("docker")
        .args(["build", "-q", "-t", tag, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dockerfile.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker build {tag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Regular files of the image as `docker export` flattens them (the engine's own
/// whiteout handling), minus what creating a container adds.
fn exported_files(image: &str) -> BTreeSet<String> {
    let cid = run(Command::new("docker").args(["create", image, "true"]));
    let cid = cid.trim().to_string();
    let out = Command::new("docker")
        .args(["export", &cid])
        .output()
        .unwrap();
    run(Command::new("docker").args(["rm", &cid]));
    assert!(out.status.success());
    let mut ar = tar::Archive::new(&out.stdout[..]);
    let mut files = BTreeSet::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        // Hardlinks are files too (the scanner reports every path).
        let t = e.header().entry_type();
        if t.is_file() || t.is_hard_link() {
            let p = e
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            if !CONTAINER_FILES.contains(&p.as_str()) && !p.starts_with("dev/") {
                files.insert(p);
            }
        }
    }
    files
}

fn scanned_files(inv: &ImageInventory) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    inv.for_each_file(u64::MAX, |p, _, _| {
        files.insert(p.to_string());
    })
    .unwrap();
    files
        .into_iter()
        .filter(|p| !CONTAINER_FILES.contains(&p.as_str()) && !p.starts_with("dev/"))
        .collect()
}

#[test]
fn debootstrap_image_inventory_equals_dpkg_query() {
    if !have_image(DEBIAN) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let archive = docker_save(DEBIAN, dir.path());
    let t = std::time::Instant::now();
    let inv = scan_image_archive(&archive).unwrap();
    eprintln!(
        "scanned {} packages in {:?}",
        inv.packages.len(),
        t.elapsed()
    );
    assert_eq!(inv.os_ecosystem(), Some("Debian:12"));
    let want = dpkg_query(DEBIAN);
    let got = scanned_debs(&inv);
    assert!(want.len() > 50, "suspiciously few packages: {}", want.len());
    assert_eq!(got, want);
    assert!(inv.packages.iter().all(|p| p.ecosystem == "Debian:12"
        && p.location.path == "var/lib/dpkg/status"
        && p.location.layer.as_deref() == Some(inv.layers[0].digest.as_str())));
    assert!(inv.warnings.is_empty(), "{:?}", inv.warnings);
}

#[test]
fn whiteout_layer_removes_packages() {
    if !have_image(DEBIAN) {
        return;
    }
    // Layer 2 adds a distroless-style status.d entry and a Python dist-info;
    // layer 3 deletes both (whiteouts) and purges `logsave` (rewrites status).
    let add = "runner-test/image-scan-add:latest";
    let del = "runner-test/image-scan-del:latest";
    let add_df = format!(
        "FROM {DEBIAN}\n\
         RUN mkdir -p /var/lib/dpkg/status.d /usr/lib/python3/dist-packages/fakepy-1.0.dist-info \
         && printf 'Package: fake-distroless\\nVersion: 1.0-1\\nArchitecture: all\\n' > /var/lib/dpkg/status.d/fake-distroless \
         && printf 'Name: fakepy\\nVersion: 1.0\\n' > /usr/lib/python3/dist-packages/fakepy-1.0.dist-info/METADATA\n"
    );
    docker_build(add, &add_df);
    let del_df = format!(
        "FROM {add}\n\
         RUN rm -rf /var/lib/dpkg/status.d/fake-distroless /usr/lib/python3/dist-packages/fakepy-1.0.dist-info \
         && dpkg --purge --force-depends logsave\n"
    );
    docker_build(del, &del_df);

    let dir = tempfile::tempdir().unwrap();
    let inv_add = scan_image_archive(&docker_save(add, dir.path())).unwrap();
    let debs = scanned_debs(&inv_add);
    assert!(debs.contains("fake-distroless 1.0-1"));
    assert!(debs.iter().any(|d| d.starts_with("logsave ")));
    let fake = inv_add
        .packages
        .iter()
        .find(|p| p.name == "fake-distroless")
        .unwrap();
    assert_eq!(fake.location.path, "var/lib/dpkg/status.d/fake-distroless");
    assert_eq!(
        fake.location.layer.as_deref(),
        Some(inv_add.layers[1].digest.as_str())
    );
    assert!(inv_add
        .packages
        .iter()
        .any(|p| p.name == "fakepy" && p.ecosystem == "PyPI"));

    let dir = tempfile::tempdir().unwrap();
    let inv_del = scan_image_archive(&docker_save(del, dir.path())).unwrap();
    assert_eq!(inv_del.layers.len(), 3);
    let debs = scanned_debs(&inv_del);
    assert!(!debs.contains("fake-distroless 1.0-1"));
    assert!(!debs.iter().any(|d| d.starts_with("logsave ")));
    assert!(!inv_del.packages.iter().any(|p| p.name == "fakepy"));
    assert_eq!(debs, dpkg_query(del));
    // The status file now comes from the top layer.
    let status_layer = inv_del
        .packages
        .iter()
        .find(|p| p.name == "bash")
        .and_then(|p| p.location.layer.clone());
    assert_eq!(
        status_layer.as_deref(),
        Some(inv_del.layers[2].digest.as_str())
    );
    // And the flattened filesystem equals what the engine itself exports.
    let (ours, engine) = (scanned_files(&inv_del), exported_files(del));
    let only_ours: Vec<_> = ours.difference(&engine).collect();
    let only_engine: Vec<_> = engine.difference(&ours).collect();
    assert!(
        only_ours.is_empty() && only_engine.is_empty(),
        "only in scan: {only_ours:?}\nonly in docker export: {only_engine:?}"
    );
    assert!(ours.len() > 1000);
    // Best effort: drop the test images (a failed run leaves them for inspection).
    let _ = Command::new("docker")
        .args(["rmi", del, add])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
