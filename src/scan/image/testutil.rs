//! Test helpers: build layer tars and `docker save` / OCI archives in memory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest, Sha256};

use super::archive::hex;

/// One member of a layer tar. Names are written verbatim (no sanitising), so
/// tests can use `..` and absolute paths.
pub enum E<'a> {
    File(&'a str, &'a [u8]),
    Exec(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

fn header(name: &str, ty: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    {
        let raw = &mut h.as_old_mut().name;
        let b = name.as_bytes();
        assert!(b.len() < raw.len(), "test names must fit 100 bytes");
        raw[..b.len()].copy_from_slice(b);
    }
    h.set_entry_type(ty);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h
}

fn set_link(h: &mut tar::Header, target: &str) {
    let raw = &mut h.as_old_mut().linkname;
    raw[..target.len()].copy_from_slice(target.as_bytes());
}

pub fn layer_tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            E::File(p, d) | E::Exec(p, d) => {
                let mode = if matches!(e, E::Exec(..)) {
                    0o755
                } else {
                    0o644
                };
                let mut h = header(p, tar::EntryType::Regular, d.len() as u64, mode);
                h.set_cksum();
                b.append(&h, *d).unwrap();
            }
            E::Dir(p) => {
                let mut h = header(p, tar::EntryType::Directory, 0, 0o755);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            E::Symlink(p, t) | E::Hardlink(p, t) => {
                let ty = if matches!(e, E::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                let mut h = header(p, ty, 0, 0o777);
                set_link(&mut h, t);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Comp {
    None,
    Gzip,
    Zstd,
}

pub fn compress(data: &[u8], c: Comp) -> Vec<u8> {
    match c {
        Comp::None => data.to_vec(),
        Comp::Gzip => {
            let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(data).unwrap();
            z.finish().unwrap()
        }
        Comp::Zstd => zstd::stream::encode_all(data, 1).unwrap(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Layout {
    /// Docker < 25: manifest.json, `<id>/layer.tar`, `<hex>.json`.
    Legacy,
    /// OCI layout only.
    Oci,
    /// Docker 25+: both; manifest.json points into blobs/.
    Both,
}

pub fn sha(d: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(d)))
}

fn add(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, name, data).unwrap();
}

/// A whole image archive (bytes of the outer tar) from layer tars.
pub fn image_tar(layers: &[Vec<u8>], comp: Comp, layout: Layout) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let cfg_digest = sha(&config);
    let blobs: Vec<Vec<u8>> = layers.iter().map(|l| compress(l, comp)).collect();
    let mut b = tar::Builder::new(Vec::new());
    match layout {
        Layout::Legacy => {
            let cfg_name = format!("{}.json", &cfg_digest[7..]);
            add(&mut b, &cfg_name, &config);
            let mut names = Vec::new();
            for (i, blob) in blobs.iter().enumerate() {
                let n = format!("l{i}/layer.tar");
                add(&mut b, &n, blob);
                names.push(n);
            }
            let m = json!([{"Config": cfg_name, "RepoTags": ["test/img:1"], "Layers": names}]);
            add(&mut b, "manifest.json", &serde_json::to_vec(&m).unwrap());
        }
        Layout::Oci | Layout::Both => {
            let media = match comp {
                Comp::None => "application/vnd.oci.image.layer.v1.tar",
                Comp::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
                Comp::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            };
            add(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
            add(
                &mut b,
                &format!("blobs/sha256/{}", &cfg_digest[7..]),
                &config,
            );
            let mut descs = Vec::new();
            let mut names = Vec::new();
            for blob in &blobs {
                let d = sha(blob);
                let n = format!("blobs/sha256/{}", &d[7..]);
                add(&mut b, &n, blob);
                names.push(n);
                descs.push(json!({"mediaType": media, "digest": d, "size": blob.len()}));
            }
            let manifest = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest, "size": config.len()},
                "layers": descs,
            }))
            .unwrap();
            let md = sha(&manifest);
            add(&mut b, &format!("blobs/sha256/{}", &md[7..]), &manifest);
            let index = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [{
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": md, "size": manifest.len(),
                    "annotations": {"io.containerd.image.name": "docker.io/test/img:1", "org.opencontainers.image.ref.name": "1"},
                }],
            });
            add(&mut b, "index.json", &serde_json::to_vec(&index).unwrap());
            if layout == Layout::Both {
                let m = json!([{"Config": format!("blobs/sha256/{}", &cfg_digest[7..]), "RepoTags": ["test/img:1"], "Layers": names}]);
                add(&mut b, "manifest.json", &serde_json::to_vec(&m).unwrap());
            }
        }
    }
    b.into_inner().unwrap()
}

/// Write bytes to a file in `dir`, returning its path.
pub fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}
