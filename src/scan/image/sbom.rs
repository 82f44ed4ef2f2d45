//! SBOMs of a scanned image: CycloneDX 1.5 JSON and SPDX 2.3 JSON.

use serde_json::{json, Value};

use crate::scan::model::Package;

use super::inventory::purl_encode;
use super::os_release::OsInfo;
use super::ImageInventory;

const TOOL: &str = "runner";
const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What an SBOM describes.
#[derive(Debug, Clone, Copy)]
pub struct SbomSubject<'a> {
    /// Display name: the first repo tag, else the config digest.
    pub name: &'a str,
    /// `sha256:...` of the image config (the image id).
    pub config_digest: &'a str,
    pub manifest_digest: Option<&'a str>,
    pub repo_tags: &'a [String],
    pub os: Option<&'a OsInfo>,
    pub packages: &'a [Package],
}

impl ImageInventory {
    pub fn sbom_subject(&self) -> SbomSubject<'_> {
        SbomSubject {
            name: self
                .repo_tags
                .first()
                .map(String::as_str)
                .unwrap_or(&self.config_digest),
            config_digest: &self.config_digest,
            manifest_digest: self.manifest_digest.as_deref(),
            repo_tags: &self.repo_tags,
            os: self.os.as_ref(),
            packages: &self.packages,
        }
    }
}

/// A random (v4) UUID, `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`.
pub fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = super::archive::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Current UTC time, RFC 3339 to the second.
pub fn now_rfc3339() -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

fn repo_name(name: &str) -> &str {
    let n = name.split('@').next().unwrap_or(name);
    let n = match n.rfind(':') {
        Some(i) if !n[i..].contains('/') => &n[..i],
        _ => n,
    };
    n.rsplit('/').next().unwrap_or(n)
}

fn image_purl(s: &SbomSubject) -> String {
    let digest = s.manifest_digest.unwrap_or(s.config_digest);
    let name = if s.repo_tags.is_empty() {
        "image".to_string()
    } else {
        repo_name(s.name).to_ascii_lowercase()
    };
    format!("pkg:oci/{}@{}", purl_encode(&name), purl_encode(digest))
}

fn hex_of(digest: &str) -> Option<&str> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// CycloneDX 1.5 JSON with the given serial UUID and timestamp.
pub fn cyclonedx_with(s: &SbomSubject, serial: &str, timestamp: &str) -> Value {
    let image_ref = image_purl(s);
    let mut image = json!({
        "bom-ref": image_ref,
        "type": "container",
        "name": s.name,
        "version": s.config_digest,
        "purl": image_ref,
        "properties": [
            {"name": "runner:image:config_digest", "value": s.config_digest},
        ],
    });
    if let Some(h) = hex_of(s.config_digest) {
        image["hashes"] = json!([{"alg": "SHA-256", "content": h}]);
    }
    if let Some(props) = image["properties"].as_array_mut() {
        if let Some(md) = s.manifest_digest {
            props.push(json!({"name": "runner:image:manifest_digest", "value": md}));
        }
        for t in s.repo_tags {
            props.push(json!({"name": "runner:image:repo_tag", "value": t}));
        }
    }
    let mut components = Vec::new();
    let mut refs: Vec<String> = Vec::new();
    if let Some(os) = s.os {
        let r = format!("os:{}@{}", os.id, os.version_id.as_deref().unwrap_or(""));
        let mut c = json!({
            "bom-ref": r,
            "type": "operating-system",
            "name": os.id,
        });
        if let Some(v) = &os.version_id {
            c["version"] = json!(v);
        }
        if let Some(p) = &os.pretty_name {
            c["description"] = json!(p);
        }
        if let Some(e) = &os.ecosystem {
            c["properties"] = json!([{"name": "runner:ecosystem", "value": e}]);
        }
        refs.push(r);
        components.push(c);
    }
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for p in s.packages {
        let n = seen.entry(p.purl.clone()).or_insert(0);
        *n += 1;
        let r = if *n == 1 {
            p.purl.clone()
        } else {
            format!("{}#{}", p.purl, n)
        };
        let mut props = vec![
            json!({"name": "runner:ecosystem", "value": p.ecosystem}),
            json!({"name": "runner:path", "value": p.location.path}),
        ];
        if let Some(l) = &p.location.layer {
            props.push(json!({"name": "runner:layer_digest", "value": l}));
        }
        if let Some(src) = &p.source_name {
            props.push(json!({"name": "runner:source_name", "value": src}));
        }
        components.push(json!({
            "bom-ref": r,
            "type": "library",
            "name": p.name,
            "version": p.version,
            "purl": p.purl,
            "properties": props,
        }));
        refs.push(r);
    }
    json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{serial}"),
        "version": 1,
        "metadata": {
            "timestamp": timestamp,
            "tools": {"components": [{"type": "application", "name": TOOL, "version": TOOL_VERSION}]},
            "component": image,
        },
        "components": components,
        "dependencies": [{"ref": image_ref, "dependsOn": refs}],
    })
}

/// CycloneDX 1.5 JSON (fresh serial number, current time).
pub fn cyclonedx(s: &SbomSubject) -> Value {
    cyclonedx_with(s, &uuid_v4(), &now_rfc3339())
}

fn spdx_id(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// SPDX 2.3 JSON with the given namespace UUID and timestamp.
pub fn spdx_with(s: &SbomSubject, uuid: &str, timestamp: &str) -> Value {
    let mut image = json!({
        "SPDXID": "SPDXRef-Image",
        "name": s.name,
        "versionInfo": s.config_digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": image_purl(s),
        }],
    });
    if let Some(h) = hex_of(s.config_digest) {
        image["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": h}]);
    }
    let mut packages = vec![image];
    let mut rels = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image",
    })];
    if let Some(os) = s.os {
        let mut p = json!({
            "SPDXID": "SPDXRef-OperatingSystem",
            "name": os.id,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "OPERATING_SYSTEM",
        });
        if let Some(v) = &os.version_id {
            p["versionInfo"] = json!(v);
        }
        packages.push(p);
        rels.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": "SPDXRef-OperatingSystem",
        }));
    }
    for (i, p) in s.packages.iter().enumerate() {
        let id = format!("SPDXRef-Package-{}-{}", i + 1, spdx_id(&p.name));
        let mut info = format!("{} package read from {}", p.ecosystem, p.location.path);
        if let Some(l) = &p.location.layer {
            info.push_str(&format!(" in layer {l}"));
        }
        let mut pkg = json!({
            "SPDXID": id,
            "name": p.name,
            "versionInfo": p.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "LIBRARY",
            "sourceInfo": info,
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": p.purl,
            }],
        });
        if let Some(src) = &p.source_name {
            pkg["comment"] = json!(format!("source package: {src}"));
        }
        packages.push(pkg);
        rels.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": s.name,
        "documentNamespace": format!("https://runner.invalid/spdx/image/{}-{uuid}", spdx_id(repo_name(s.name))),
        "creationInfo": {
            "created": timestamp,
            "creators": [format!("Tool: {TOOL}-{TOOL_VERSION}")],
        },
        "packages": packages,
        "relationships": rels,
    })
}

/// SPDX 2.3 JSON (fresh namespace, current time).
pub fn spdx(s: &SbomSubject) -> Value {
    spdx_with(s, &uuid_v4(), &now_rfc3339())
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::scan::model::Location;

    pub(crate) fn sample_packages() -> Vec<Package> {
        let loc = Location {
            path: "var/lib/dpkg/status".into(),
            layer: Some(format!("sha256:{}", "a".repeat(64))),
            ..Location::default()
        };
        vec![
            Package {
                ecosystem: "Debian:12".into(),
                name: "libc6".into(),
                version: "2.36-9+deb12u4".into(),
                source_name: Some("glibc".into()),
                purl: "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12".into(),
                location: loc.clone(),
            },
            Package {
                ecosystem: "PyPI".into(),
                name: "Jinja2".into(),
                version: "3.1.2".into(),
                source_name: None,
                purl: "pkg:pypi/jinja2@3.1.2".into(),
                location: Location {
                    path: "usr/lib/python3/dist-packages/Jinja2-3.1.2.dist-info/METADATA".into(),
                    ..loc
                },
            },
        ]
    }

    pub(crate) fn sample_os() -> OsInfo {
        OsInfo {
            id: "debian".into(),
            version_id: Some("12".into()),
            pretty_name: Some("Debian GNU/Linux 12 (bookworm)".into()),
            ecosystem: Some("Debian:12".into()),
            purl_distro: Some("debian-12".into()),
            path: "usr/lib/os-release".into(),
        }
    }

    fn check_snapshot(name: &str, v: &Value) {
        let path = format!("{}/fixtures/scan/image/{name}", env!("CARGO_MANIFEST_DIR"));
        let got = serde_json::to_string_pretty(v).unwrap() + "\n";
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("missing {path}; run with UPDATE_SNAPSHOTS=1"));
        assert_eq!(
            got, want,
            "snapshot {name} differs; UPDATE_SNAPSHOTS=1 to accept"
        );
    }

    #[test]
    fn snapshots() {
        let pkgs = sample_packages();
        let os = sample_os();
        let tags = vec!["runner/debian:bookworm".to_string()];
        let cfg = format!("sha256:{}", "b".repeat(64));
        let s = SbomSubject {
            name: &tags[0],
            config_digest: &cfg,
            manifest_digest: None,
            repo_tags: &tags,
            os: Some(&os),
            packages: &pkgs,
        };
        let uuid = "00000000-0000-4000-8000-000000000000";
        let ts = "2026-01-01T00:00:00Z";
        let cdx = cyclonedx_with(&s, uuid, ts);
        assert_eq!(cdx["components"].as_array().unwrap().len(), 3);
        check_snapshot("sbom.cdx.json", &cdx);
        check_snapshot("sbom.spdx.json", &spdx_with(&s, uuid, ts));
    }

    #[test]
    fn uuid_shape() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(now_rfc3339().ends_with('Z'));
    }
}
