//! End-to-end tests on synthetic images built in memory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use super::testutil::{image_tar, layer_tar, sha, write, Comp, Layout, E};
use super::{scan_image_archive, ImageError, ImageInventory};

const OS_RELEASE: &[u8] =
    b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n";

/// Scan an in-memory image; the temp dir must outlive the inventory (its files
/// are read on demand).
fn scan(layers: &[Vec<u8>], comp: Comp, layout: Layout) -> (tempfile::TempDir, ImageInventory) {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "img.tar", &image_tar(layers, comp, layout));
    let inv = scan_image_archive(&p).unwrap();
    (dir, inv)
}

fn files(inv: &ImageInventory, max: u64) -> BTreeMap<String, (String, Vec<u8>)> {
    let mut out = BTreeMap::new();
    inv.for_each_file(max, |p, l, b| {
        out.insert(p.to_string(), (l.to_string(), b.to_vec()));
    })
    .unwrap();
    out
}

fn status_para(name: &str, version: &str) -> String {
    format!(
        "Package: {name}\nStatus: install ok installed\nArchitecture: amd64\nVersion: {version}\n"
    )
}

fn base_layer() -> Vec<u8> {
    let status = format!(
        "{}\n{}\n",
        status_para("bash", "5.2.15-2+b2"),
        status_para("zlib1g", "1:1.2.13.dfsg-1")
    );
    layer_tar(&[
        E::Dir("./"),
        E::Dir("./etc/"),
        E::Symlink("./etc/os-release", "../usr/lib/os-release"),
        E::Dir("./usr/"),
        E::Dir("./usr/lib/"),
        E::File("./usr/lib/os-release", OS_RELEASE),
        E::File("./var/lib/dpkg/status", status.as_bytes()),
        E::File(
            "./var/lib/dpkg/status.d/tzdata",
            status_para("tzdata", "2024a-0+deb12u1").as_bytes(),
        ),
        E::File(
            "./var/lib/dpkg/status.d/tzdata.md5sums",
            b"abc  usr/share/zoneinfo/UTC\n",
        ),
        E::File(
            "./var/lib/dpkg/status.d/netbase",
            status_para("netbase", "6.4").as_bytes(),
        ),
        E::File(
            "./usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
            b"Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\n\nbody\n",
        ),
        E::File("./etc/x/1", b"one"),
        E::File("./etc/x/2", b"two"),
    ])
}

fn names(inv: &ImageInventory) -> Vec<String> {
    inv.packages
        .iter()
        .map(|p| format!("{} {} {}", p.ecosystem, p.name, p.version))
        .collect()
}

#[test]
fn all_layouts_and_compressions_agree() {
    let layers = vec![base_layer()];
    let mut seen = None;
    for layout in [Layout::Legacy, Layout::Oci, Layout::Both] {
        for comp in [Comp::None, Comp::Gzip, Comp::Zstd] {
            let (_dir, inv) = scan(&layers, comp, layout);
            assert_eq!(inv.os_ecosystem(), Some("Debian:12"), "{layout:?} {comp:?}");
            assert_eq!(inv.layers.len(), 1);
            assert_eq!(
                inv.layers[0].digest,
                sha(&layers[0]),
                "diff id names the layer"
            );
            let n = names(&inv);
            assert_eq!(
                n,
                [
                    "Debian:12 bash 5.2.15-2+b2",
                    "Debian:12 netbase 6.4",
                    "Debian:12 tzdata 2024a-0+deb12u1",
                    "Debian:12 zlib1g 1:1.2.13.dfsg-1",
                    "PyPI six 1.16.0",
                ],
                "{layout:?} {comp:?}"
            );
            let f = files(&inv, 1 << 20);
            assert_eq!(f["etc/x/2"].1, b"two");
            if let Some(prev) = &seen {
                assert_eq!(prev, &f);
            }
            seen = Some(f);
            match layout {
                Layout::Legacy => assert!(inv.manifest_digest.is_none()),
                _ => {
                    assert!(inv.manifest_digest.is_some());
                    assert!(!inv.repo_digests.is_empty());
                }
            }
            assert!(inv.repo_tags.iter().any(|t| t.contains("test/img:1")));
        }
    }
}

#[test]
fn purls_and_locations() {
    let layers = vec![base_layer()];
    let (_dir, inv) = scan(&layers, Comp::None, Layout::Legacy);
    let zlib = inv.packages.iter().find(|p| p.name == "zlib1g").unwrap();
    assert_eq!(
        zlib.purl,
        "pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64&distro=debian-12"
    );
    assert_eq!(zlib.location.path, "var/lib/dpkg/status");
    assert_eq!(
        zlib.location.layer.as_deref(),
        Some(sha(&layers[0]).as_str())
    );
    let tz = inv.packages.iter().find(|p| p.name == "tzdata").unwrap();
    assert_eq!(tz.location.path, "var/lib/dpkg/status.d/tzdata");
    assert_eq!(inv.os.as_ref().unwrap().path, "usr/lib/os-release");
}

#[test]
fn whiteouts_remove_lower_files() {
    let upper_status = status_para("bash", "5.2.15-2+b2");
    let layers = vec![
        base_layer(),
        layer_tar(&[
            // status.d entry and a Python dist-info directory deleted.
            E::File("./var/lib/dpkg/status.d/.wh.netbase", b""),
            E::File(
                "./usr/lib/python3/dist-packages/.wh.six-1.16.0.dist-info",
                b"",
            ),
            // status rewritten without zlib1g (as `dpkg -r` would).
            E::File("./var/lib/dpkg/status", upper_status.as_bytes()),
            // opaque dir: lower children gone, this layer's child kept.
            E::Dir("./etc/x/"),
            E::File("./etc/x/.wh..wh..opq", b""),
            E::File("./etc/x/3", b"three"),
            // a whiteout never hides a file of its own layer.
            E::File("./new/kept", b"k"),
            E::File("./new/.wh.kept", b""),
        ]),
    ];
    for comp in [Comp::None, Comp::Gzip] {
        let (_dir, inv) = scan(&layers, comp, Layout::Oci);
        assert_eq!(
            names(&inv),
            [
                "Debian:12 bash 5.2.15-2+b2",
                "Debian:12 tzdata 2024a-0+deb12u1"
            ]
        );
        let bash = &inv.packages[0];
        assert_eq!(
            bash.location.layer.as_deref(),
            Some(sha(&layers[1]).as_str())
        );
        let f = files(&inv, 1 << 20);
        let x: Vec<&String> = f.keys().filter(|k| k.starts_with("etc/x/")).collect();
        assert_eq!(x, ["etc/x/3"]);
        assert!(f.contains_key("new/kept"));
        assert!(!f.keys().any(|k| k.contains(".wh.")));
        assert_eq!(f["etc/x/3"].0, sha(&layers[1]));
        assert_eq!(f["etc/x/3"].1, b"three");
        assert!(inv.fs.nodes.contains_key("etc/x"));
    }
}

#[test]
fn whiteout_of_directory_removes_subtree_and_file_replaces_dir() {
    let layers = vec![
        layer_tar(&[
            E::File("a/b/c", b"1"),
            E::File("a/b/d/e", b"2"),
            E::File("ab", b"sibling"),
            E::File("q/r", b"3"),
        ]),
        layer_tar(&[E::File("a/.wh.b", b""), E::File("q", b"now a file")]),
        layer_tar(&[E::File("a/b/new", b"4")]),
    ];
    let (_dir, inv) = scan(&layers, Comp::Zstd, Layout::Both);
    let f = files(&inv, 1 << 20);
    let keys: Vec<&str> = f.keys().map(String::as_str).collect();
    assert_eq!(keys, ["a/b/new", "ab", "q"]);
}

#[test]
fn paths_never_escape() {
    let layers = vec![layer_tar(&[
        E::File("../../etc/passwd", b"root:x:0:0"),
        E::File("/abs/file", b"abs"),
        E::File("./a/../../b", b"b"),
    ])];
    let (_dir, inv) = scan(&layers, Comp::None, Layout::Legacy);
    let f = files(&inv, 1 << 20);
    let keys: Vec<&str> = f.keys().map(String::as_str).collect();
    assert_eq!(keys, ["abs/file", "b", "etc/passwd"]);
    // Symlinks pointing outside resolve inside the image root.
    let layers = vec![layer_tar(&[
        E::Symlink("etc/os-release", "../../../../usr/lib/os-release"),
        E::File("usr/lib/os-release", b"ID=alpine\nVERSION_ID=3.19.1\n"),
    ])];
    let (_dir, inv) = scan(&layers, Comp::None, Layout::Legacy);
    assert_eq!(inv.os_ecosystem(), Some("Alpine:v3.19"));
}

#[test]
fn hardlinks_share_contents() {
    let layers = vec![layer_tar(&[
        E::File("usr/bin/a", b"same bytes"),
        E::Hardlink("usr/bin/b", "usr/bin/a"),
        E::File("usr/bin/c", b"other"),
    ])];
    for comp in [Comp::None, Comp::Gzip] {
        let (_dir, inv) = scan(&layers, comp, Layout::Oci);
        let f = files(&inv, 1 << 20);
        assert_eq!(f["usr/bin/a"].1, b"same bytes");
        assert_eq!(f["usr/bin/b"].1, b"same bytes");
        assert_eq!(f["usr/bin/c"].1, b"other");
    }
}

#[test]
fn size_limit_skips_large_files() {
    let big = vec![b'x'; 5000];
    let layers = vec![layer_tar(&[E::File("big", &big), E::File("small", b"s")])];
    let (_dir, inv) = scan(&layers, Comp::Gzip, Layout::Legacy);
    let mut seen = Vec::new();
    let stats = inv
        .for_each_file(100, |p, _, _| seen.push(p.to_string()))
        .unwrap();
    assert_eq!(seen, ["small"]);
    assert_eq!(stats.skipped_too_large, 1);
    assert_eq!(stats.files, 1);
}

#[test]
fn apk_node_and_cargo_auditable() {
    let elf = super::inventory::cargo_auditable::tests::tiny_elf(
        r#"{"packages":[{"name":"app","version":"0.1.0","source":"local"},{"name":"serde","version":"1.0.190","source":"crates.io"}]}"#,
    );
    let apk = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/scan/image/apk-installed"
    ))
    .unwrap();
    let layers = vec![layer_tar(&[
        E::File("etc/os-release", b"ID=alpine\nVERSION_ID=3.19.1\n"),
        E::File("lib/apk/db/installed", &apk),
        E::File(
            "app/node_modules/@types/node/package.json",
            br#"{"name":"@types/node","version":"20.1.0"}"#,
        ),
        E::File(
            "app/node_modules/left-pad/package.json",
            br#"{"name":"left-pad","version":"1.3.0"}"#,
        ),
        E::File(
            "app/node_modules/left-pad/test/fixture/package.json",
            br#"{"private":true}"#,
        ),
        E::Exec("usr/local/bin/app", &elf),
        E::Exec(
            "usr/local/bin/script",
            b"#!/bin/sh\n# long enough to be looked at as an ELF candidate\n",
        ),
    ])];
    // Compressed layers are parsed from pass-1 captures, plain ones in pass 2.
    for comp in [Comp::None, Comp::Gzip, Comp::Zstd] {
        check_apk_node_cargo(&layers, comp);
    }
}

fn check_apk_node_cargo(layers: &[Vec<u8>], comp: Comp) {
    let (_dir, inv) = scan(layers, comp, Layout::Oci);
    assert_eq!(
        names(&inv),
        [
            "Alpine:v3.19 busybox 1.36.1-r15",
            "Alpine:v3.19 libcrypto3 3.1.4-r5",
            "Alpine:v3.19 musl 1.2.4_git20230717-r4",
            "crates.io serde 1.0.190",
            "npm @types/node 20.1.0",
            "npm left-pad 1.3.0",
        ]
    );
    let crypto = inv
        .packages
        .iter()
        .find(|p| p.name == "libcrypto3")
        .unwrap();
    assert_eq!(crypto.source_name.as_deref(), Some("openssl"));
    assert_eq!(
        crypto.purl,
        "pkg:apk/alpine/libcrypto3@3.1.4-r5?arch=x86_64&distro=alpine-3.19.1"
    );
    let musl = inv.packages.iter().find(|p| p.name == "musl").unwrap();
    assert_eq!(musl.source_name, None, "source equal to name is None");
    let serde = inv.packages.iter().find(|p| p.name == "serde").unwrap();
    assert_eq!(serde.purl, "pkg:cargo/serde@1.0.190");
    assert_eq!(serde.location.path, "usr/local/bin/app");
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    // Missing file.
    let e = scan_image_archive(&dir.path().join("nope.tar")).unwrap_err();
    assert!(matches!(e, ImageError::Io { .. }), "{e}");
    // Garbage.
    let p = write(dir.path(), "garbage.tar", &[0x42; 3000]);
    let e = scan_image_archive(&p).unwrap_err();
    assert!(matches!(e, ImageError::NotAnImage { .. }), "{e}");
    // A tar without manifests.
    let p = write(dir.path(), "plain.tar", &layer_tar(&[E::File("x", b"y")]));
    let e = scan_image_archive(&p).unwrap_err();
    assert!(e.to_string().contains("docker save"), "{e}");
    // Compressed outer archive.
    let gz = super::testutil::compress(
        &image_tar(&[base_layer()], Comp::None, Layout::Legacy),
        Comp::Gzip,
    );
    let p = write(dir.path(), "img.tar.gz", &gz);
    let e = scan_image_archive(&p).unwrap_err();
    assert!(e.to_string().contains("decompress it first"), "{e}");
    // Truncated archive.
    let full = image_tar(&[base_layer()], Comp::None, Layout::Legacy);
    for cut in [100, full.len() / 3, full.len() / 2, full.len() * 2 / 3] {
        let p = write(dir.path(), "cut.tar", &full[..cut]);
        assert!(scan_image_archive(&p).is_err(), "cut at {cut}");
    }
    // A truncated gzip layer inside a well-formed archive.
    let layer = base_layer();
    let mut gz = super::testutil::compress(&layer, Comp::Gzip);
    gz.truncate(gz.len() / 2);
    let img = image_tar_with_blob(&layer, &gz);
    let p = write(dir.path(), "badlayer.tar", &img);
    let e = scan_image_archive(&p).unwrap_err();
    assert!(matches!(e, ImageError::Layer { .. }), "{e}");
    assert!(e.to_string().contains("re-run `docker save`"), "{e}");
    // A layer of garbage.
    let img = image_tar_with_blob(&layer, &[7u8; 2000]);
    let p = write(dir.path(), "garbagelayer.tar", &img);
    assert!(scan_image_archive(&p).is_err());
    // Bad manifest JSON.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    b.append_data(&mut h, "manifest.json", &b"{nope"[..])
        .unwrap();
    let p = write(dir.path(), "badmanifest.tar", &b.into_inner().unwrap());
    let e = scan_image_archive(&p).unwrap_err();
    assert!(matches!(e, ImageError::BadMetadata { .. }), "{e}");
}

/// A legacy archive whose single layer blob is `blob` (diff id from `layer`).
fn image_tar_with_blob(layer: &[u8], blob: &[u8]) -> Vec<u8> {
    let config =
        serde_json::to_vec(&serde_json::json!({"rootfs": {"diff_ids": [sha(layer)]}})).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [("c.json", &config[..]), ("l/layer.tar", blob)] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    }
    let m = br#"[{"Config":"c.json","RepoTags":null,"Layers":["l/layer.tar"]}]"#;
    let mut h = tar::Header::new_gnu();
    h.set_size(m.len() as u64);
    b.append_data(&mut h, "manifest.json", &m[..]).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn oci_layout_directory() {
    let dir = tempfile::tempdir().unwrap();
    let img = image_tar(&[base_layer()], Comp::Gzip, Layout::Oci);
    tar::Archive::new(&img[..]).unpack(dir.path()).unwrap();
    let inv = scan_image_archive(dir.path()).unwrap();
    assert_eq!(names(&inv).len(), 5);
    assert_eq!(files(&inv, 1 << 20)["etc/x/1"].1, b"one");
}

#[test]
fn legacy_symlinked_layers() {
    // Docker 25+ legacy entries `<id>/layer.tar` may be symlinks into blobs/.
    let layer = base_layer();
    let d = sha(&layer);
    let config = serde_json::to_vec(&serde_json::json!({"rootfs": {"diff_ids": [d]}})).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let blob = format!("blobs/sha256/{}", &d[7..]);
    for (name, data) in [("c.json", &config[..]), (blob.as_str(), &layer[..])] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "abc/layer.tar", format!("../{blob}"))
        .unwrap();
    let m = br#"[{"Config":"c.json","RepoTags":["x:1"],"Layers":["abc/layer.tar"]}]"#;
    let mut h = tar::Header::new_gnu();
    h.set_size(m.len() as u64);
    b.append_data(&mut h, "manifest.json", &m[..]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "img.tar", &b.into_inner().unwrap());
    let inv = scan_image_archive(&p).unwrap();
    assert_eq!(names(&inv).len(), 5);
    assert_eq!(inv.layers[0].blob_digest.as_deref(), None);
}

#[test]
fn mutated_archives_never_panic() {
    // Corrupt bytes all over a small image (plain and gzip layers): every scan
    // must end in Ok or Err, never a panic, and for_each_file likewise.
    let dir = tempfile::tempdir().unwrap();
    for comp in [Comp::None, Comp::Gzip] {
        let good = image_tar(&[base_layer()], comp, Layout::Both);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for i in 0..300 {
            let mut bad = good.clone();
            for _ in 0..1 + i % 4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let pos = (seed % bad.len() as u64) as usize;
                bad[pos] = (seed >> 32) as u8;
            }
            if i % 10 == 0 {
                bad.truncate((seed % bad.len() as u64) as usize);
            }
            let p = write(dir.path(), "m.tar", &bad);
            if let Ok(inv) = scan_image_archive(&p) {
                let _ = inv.for_each_file(1 << 20, |_, _, _| {});
            }
        }
    }
}

#[test]
fn rpm_sqlite_database() {
    let db = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/scan/image/rpmdb.sqlite"
    ))
    .unwrap();
    let layers = vec![layer_tar(&[
        E::File(
            "etc/os-release",
            b"NAME=\"Rocky Linux\"\nID=\"rocky\"\nVERSION_ID=\"9.3\"\n",
        ),
        E::File("var/lib/rpm/rpmdb.sqlite", &db),
    ])];
    for comp in [Comp::None, Comp::Gzip] {
        let (_dir, inv) = scan(&layers, comp, Layout::Oci);
        assert_eq!(
            names(&inv),
            [
                "Rocky Linux:9 bigpkg 1.0-3",
                "Rocky Linux:9 hello 2.12-1.el9",
                "Rocky Linux:9 openssl-libs 1:3.0.7-24.el9",
            ]
        );
        let o = inv
            .packages
            .iter()
            .find(|p| p.name == "openssl-libs")
            .unwrap();
        assert_eq!(o.source_name.as_deref(), Some("openssl"));
        assert_eq!(
            o.purl,
            "pkg:rpm/rocky/openssl-libs@3.0.7-24.el9?arch=noarch&epoch=1&distro=rocky-9.3"
        );
        assert_eq!(o.location.path, "var/lib/rpm/rpmdb.sqlite");
    }
}
