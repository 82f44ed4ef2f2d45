//! Every format runner writes, read by code the project did not write: CycloneDX 1.5 and
//! SPDX 2.3 SBOMs against their publishers' JSON schemas, SARIF against OASIS's schema,
//! the pushed image and its signature/attestation manifests with Debian's `skopeo`, the
//! DSSE envelope with PyPI's securesystemslib and in-toto, the in-toto statement and its
//! SLSA provenance v1 predicate with in-toto-attestation. Each check also rejects a
//! deliberately broken document, so a validator that accepts anything (or is missing)
//! fails the test: a missing verifier is a failure, never a skip (`scripts/setup.sh`
//! installs them all).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use crate::support::output_text as text;
use crate::support::{repo_root, stack};
use crate::support_moto::moto;
use crate::support_registry::{Registry, ECR_PASSWORD, ECR_USER};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::{Command, Output};

fn runner(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
    c.env("RUNNER_DATA_DIR", data)
        .env("NO_COLOR", "1")
        .env("CI", "true")
        .env_remove("RUNNER_ADVISORIES")
        .env_remove("RUNNER_REGISTRY_ENDPOINTS")
        .env_remove("RUNNER_IMAGE");
    c
}

/// Runs a Python checker; `python3` itself missing is a failure, not a skip.
fn python(script: &str, args: &[&Path]) -> Output {
    Command::new("python3")
        .arg(repo_root().join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("python3 {script}: {e} (bash scripts/setup.sh)"))
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The SBOMs of a real image (Debian's dpkg database: a hundred packages) validate
/// against CycloneDX's bom-1.5 and SPDX's 2.3 schemas (benches/image/validate_sbom.py,
/// python-jsonschema); a broken copy of each is rejected.
#[test]
fn sboms_validate_against_the_publishers_schemas_and_broken_ones_do_not() {
    stack();
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = "benches/image/validate_sbom.py";
    for (format, kind, broken) in [
        (
            "cyclonedx",
            "valid CycloneDX 1.5",
            // A component type the schema's enum does not have.
            Box::new(|v: &mut Value| v["components"][0]["type"] = json!("gadget"))
                as Box<dyn Fn(&mut Value)>,
        ),
        (
            "spdx",
            "valid SPDX-2.3",
            // A package without its required SPDXID.
            Box::new(|v: &mut Value| {
                v["packages"][0].as_object_mut().unwrap().remove("SPDXID");
            }),
        ),
    ] {
        let out = dir.path().join(format!("sbom.{format}.json"));
        let o = runner(data.path())
            .args(["scan", "image", "runner/debian:bookworm", "--sbom", format])
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let doc = read_json(&out);
        let n = doc
            .get("components")
            .or_else(|| doc.get("packages"))
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        assert!(n > 50, "{format}: only {n} packages: {doc}");
        let v = python(script, &[&out]);
        assert_eq!(v.status.code(), Some(0), "{}", text(&v));
        assert!(
            String::from_utf8_lossy(&v.stdout).contains(kind),
            "{}",
            text(&v)
        );

        let mut bad = doc.clone();
        broken(&mut bad);
        let bad_path = dir.path().join(format!("broken.{format}.json"));
        write_json(&bad_path, &bad);
        let v = python(script, &[&bad_path]);
        assert_eq!(v.status.code(), Some(1), "{}", text(&v));
        assert!(
            String::from_utf8_lossy(&v.stdout).contains("INVALID"),
            "{}",
            text(&v)
        );
    }
}

/// An image scan's SARIF (OS-package findings) validates against OASIS's SARIF 2.1.0
/// schema (benches/secrets/validate_sarif.py); a broken copy is rejected.
#[test]
fn image_scan_sarif_validates_against_oasis_schema_and_a_broken_log_does_not() {
    stack();
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sarif = dir.path().join("image.sarif");
    let o = runner(data.path())
        .args([
            "scan",
            "image",
            "runner/debian:bookworm",
            "--format",
            "sarif",
        ])
        .arg("--advisories")
        .arg(repo_root().join("fixtures/scan/osv"))
        .arg("-o")
        .arg(&sarif)
        .output()
        .unwrap();
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", text(&o));
    let log = read_json(&sarif);
    assert_eq!(log["version"], "2.1.0", "{log}");
    let script = "benches/secrets/validate_sarif.py";
    let v = python(script, &[&sarif]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));

    let mut bad = log.clone();
    bad["runs"][0]["tool"]["driver"]
        .as_object_mut()
        .unwrap()
        .remove("name");
    bad["runs"][0]["columnKind"] = json!("bytes");
    let bad_path = dir.path().join("broken.sarif");
    write_json(&bad_path, &bad);
    let v = python(script, &[&bad_path]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
}

/// `skopeo` with the registry's credentials, `--tls-verify=false` for the loopback registry.
fn skopeo(args: &[&str]) -> Output {
    Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo (Debian's skopeo; bash scripts/setup.sh installs it)")
}

fn skopeo_remote(cmd: &str, extra: &[&str], reference: &str) -> Output {
    let creds = format!("{ECR_USER}:{ECR_PASSWORD}");
    let mut args = vec![cmd, "--tls-verify=false", "--creds", &creds];
    args.extend_from_slice(extra);
    let r = format!("docker://{reference}");
    args.push(&r);
    skopeo(&args)
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// `runner build` of fixtures/image-app pushes, signs and attaches SLSA provenance and
/// the SBOM; then skopeo reads the image, `.sig` and `.att` manifests (the raw bytes
/// hash to the digests runner reported), copies the attestations out, and
/// securesystemslib verifies each DSSE envelope with the public key, in-toto-attestation
/// parses the statements and the SLSA provenance v1 predicate, and the attested SBOM
/// passes CycloneDX's schema. Broken copies (a manifest naming a config that is
/// not there, an envelope whose payload changed, a statement with an unknown field, a
/// provenance whose timestamp is not RFC 3339) are rejected by the same tools.
#[test]
fn pushed_manifests_dsse_envelope_statement_and_provenance_pass_independent_tools() {
    stack();
    let data = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let with_aws = |c: &mut Command| {
        c.env("AWS_ENDPOINT_URL", &moto().endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("COSIGN_PASSWORD", "correct horse");
    };
    let mut c = runner(data.path());
    with_aws(&mut c);
    let o = c
        .args(["key", "generate", "--output-dir"])
        .arg(keys.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let reg = Registry::start(true);
    let app = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(repo_root().join("fixtures/image-app")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), app.path().join(f.file_name())).unwrap();
    }
    std::fs::copy(
        keys.path().join("cosign.key"),
        app.path().join("cosign.key"),
    )
    .unwrap();
    // Attest the image's SBOM too (a CycloneDX predicate), besides the provenance.
    let yml = std::fs::read_to_string(app.path().join("runner.yml")).unwrap();
    assert!(yml.contains("attest: [provenance]"), "{yml}");
    std::fs::write(
        app.path().join("runner.yml"),
        yml.replace("attest: [provenance]", "attest: [provenance, sbom]"),
    )
    .unwrap();
    let mut c = runner(data.path());
    with_aws(&mut c);
    let out = c
        .args(["build", "--json", "--source"])
        .arg(app.path())
        .args(["--registry-endpoint", &reg.ecr_endpoint()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let push = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "stage" && e["stage"] == "push")
        .unwrap_or_else(|| panic!("no push stage: {}", text(&out)));
    let digest = push["detail"]["digest"].as_str().unwrap().to_string();
    let hex = digest.trim_start_matches("sha256:").to_string();
    let repo = format!("{}/image-app", reg.addr());

    // The image manifest: skopeo's raw bytes are what the digest names, and skopeo parses
    // it (and its config) into an image.
    let raw = skopeo_remote("inspect", &["--raw"], &format!("{repo}@{digest}"));
    assert!(raw.status.success(), "{}", text(&raw));
    assert_eq!(sha256_hex(&raw.stdout), hex, "skopeo's raw manifest");
    let m: Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(m["schemaVersion"], 2, "{m}");
    let parsed = skopeo_remote("inspect", &[], &format!("{repo}:latest"));
    assert!(parsed.status.success(), "{}", text(&parsed));
    let parsed: Value = serde_json::from_slice(&parsed.stdout).unwrap();
    assert_eq!(parsed["Digest"], digest.as_str());
    assert_eq!(
        parsed["Layers"].as_array().map(Vec::len),
        m["layers"].as_array().map(Vec::len)
    );
    // The signature and attestation manifests parse too (config and layers included).
    for suffix in ["sig", "att"] {
        let r = skopeo_remote("inspect", &[], &format!("{repo}:sha256-{hex}.{suffix}"));
        assert!(r.status.success(), "{suffix}: {}", text(&r));
    }

    // Copy the attestation image out with skopeo; each layer is a DSSE envelope.
    let att_dir = tempfile::tempdir().unwrap();
    let dest = format!("dir:{}", att_dir.path().display());
    let creds = format!("{ECR_USER}:{ECR_PASSWORD}");
    let src = format!("docker://{repo}:sha256-{hex}.att");
    let cp = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &src,
        &dest,
    ]);
    assert!(cp.status.success(), "{}", text(&cp));
    let att_manifest = read_json(&att_dir.path().join("manifest.json"));
    let layers = att_manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "provenance and SBOM: {att_manifest}");
    let public = keys.path().join("cosign.pub");
    let check = "tests/it/attestation_check.py";
    let mut envelope_path = None;
    let mut kinds = Vec::new();
    for layer in layers {
        assert_eq!(
            layer["mediaType"], "application/vnd.dsse.envelope.v1+json",
            "{att_manifest}"
        );
        let path = att_dir.path().join(
            layer["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:"),
        );
        let v = python(check, &[&path, &public]);
        assert_eq!(v.status.code(), Some(0), "{}", text(&v));
        let summary: Value = serde_json::from_slice(&v.stdout).unwrap();
        assert_eq!(summary["signatures_verified"], 1, "{summary}");
        assert_eq!(summary["subjects"][0]["digest"]["sha256"], hex.as_str());
        let kind = summary["predicateType"].as_str().unwrap().to_string();
        if kind == "https://slsa.dev/provenance/v1" {
            assert_eq!(
                summary["provenance"]["buildType"],
                "https://github.com/runner-build/runner/buildspec@v1"
            );
            envelope_path = Some(path);
        } else {
            // The attested SBOM passes CycloneDX's schema as well.
            assert_eq!(kind, "https://cyclonedx.org/bom", "{summary}");
            let env = read_json(&path);
            let st: Value =
                serde_json::from_slice(&base64_decode(env["payload"].as_str().unwrap())).unwrap();
            let bom = att_dir.path().join("attested-bom.json");
            write_json(&bom, &st["predicate"]);
            let v = python("benches/image/validate_sbom.py", &[&bom]);
            assert_eq!(v.status.code(), Some(0), "{}", text(&v));
        }
        kinds.push(kind);
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "https://cyclonedx.org/bom",
            "https://slsa.dev/provenance/v1"
        ]
    );
    let envelope_path = envelope_path.unwrap();

    // Negative cases, each rejected by the external tools.
    let envelope = read_json(&envelope_path);
    let statement: Value =
        serde_json::from_slice(&base64_decode(envelope["payload"].as_str().unwrap())).unwrap();
    let bad_dir = tempfile::tempdir().unwrap();
    let reject = |name: &str, env: &Value, why: &str| {
        let p = bad_dir.path().join(name);
        write_json(&p, env);
        let v = python(check, &[&p, &public]);
        assert_eq!(v.status.code(), Some(1), "{name}: {}", text(&v));
        let out = String::from_utf8_lossy(&v.stdout);
        assert!(out.contains(why), "{name}: {}", text(&v));
    };
    // 1. The payload changed after signing: the signature no longer verifies.
    let mut tampered = statement.clone();
    tampered["subject"][0]["digest"]["sha256"] = json!("0".repeat(64));
    let mut env = envelope.clone();
    env["payload"] = json!(base64_encode(&serde_json::to_vec(&tampered).unwrap()));
    reject("tampered.json", &env, "no signature verifies");
    // 2. A key that did not sign it.
    let other = tempfile::tempdir().unwrap();
    let mut c = runner(data.path());
    with_aws(&mut c);
    let o = c
        .args(["key", "generate", "--output-dir"])
        .arg(other.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let v = python(check, &[&envelope_path, &other.path().join("cosign.pub")]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    // The statement and predicate checks on their own need a valid signature over the
    // broken statement: sign it with the independent cosign implementation's PAE.
    let signed = |st: &Value| -> Value {
        let payload = serde_json::to_vec(st).unwrap();
        let pae_path = bad_dir.path().join("payload.json");
        std::fs::write(&pae_path, &payload).unwrap();
        let o = Command::new("python3")
            .arg("-c")
            .arg(SIGN_DSSE)
            .arg(repo_root().join("tests/it"))
            .arg(keys.path().join("cosign.key"))
            .arg(&pae_path)
            .env("COSIGN_PASSWORD", "correct horse")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    // 2b. Re-signed, the unchanged statement passes (the signer is sound).
    let p = bad_dir.path().join("resigned.json");
    write_json(&p, &signed(&statement));
    let v = python(check, &[&p, &public]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    // 3. A statement with a field in-toto's Statement v1 does not have.
    let mut st = statement.clone();
    st["subjects"] = st["subject"].clone();
    reject("unknown-field.json", &signed(&st), "statement");
    // 4. A statement without subjects.
    let mut st = statement.clone();
    st["subject"] = json!([]);
    reject("no-subject.json", &signed(&st), "At least one subject");
    // 5. Provenance whose startedOn is not an RFC 3339 timestamp.
    let mut st = statement.clone();
    st["predicate"]["runDetails"]["metadata"]["startedOn"] = json!("yesterday");
    reject("bad-time.json", &signed(&st), "SLSA provenance v1");
    // 6. Provenance without a builder id (REQUIRED by the v1 spec).
    let mut st = statement.clone();
    st["predicate"]["runDetails"]["builder"]
        .as_object_mut()
        .unwrap()
        .remove("id");
    reject("no-builder.json", &signed(&st), "builder.id is required");
    // 7. Provenance with a misspelled field.
    let mut st = statement.clone();
    st["predicate"]["buildDefinition"]["buildtype"] = json!("x");
    reject("misspelled.json", &signed(&st), "SLSA provenance v1");

    // 8. skopeo: the image copied to a directory inspects; with its config digest
    //    pointing at a blob that is not there, it does not.
    let img_dir = tempfile::tempdir().unwrap();
    let dest = format!("dir:{}", img_dir.path().display());
    let src = format!("docker://{repo}@{digest}");
    let cp = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &src,
        &dest,
    ]);
    assert!(cp.status.success(), "{}", text(&cp));
    let ok = skopeo(&["inspect", &dest]);
    assert!(ok.status.success(), "{}", text(&ok));
    let mpath = img_dir.path().join("manifest.json");
    let mut broken = read_json(&mpath);
    broken["config"]["digest"] = json!(format!("sha256:{}", "1".repeat(64)));
    write_json(&mpath, &broken);
    let bad = skopeo(&["inspect", &dest]);
    assert!(!bad.status.success(), "{}", text(&bad));
}

/// Signs a payload as a DSSE envelope with the independent cosign implementation
/// (tests/it/cosign_indep.py: its PAE and ECDSA signer), argv: dir key payload.
const SIGN_DSSE: &str = r#"
import base64, json, sys
sys.path.insert(0, sys.argv[1])
import cosign_indep as c
key = c.load_private_key(open(sys.argv[2], "rb").read(), c._pw(None))
payload = open(sys.argv[3], "rb").read()
t = "application/vnd.in-toto+json"
sig = c.sign_bytes(key, c.pae(t, payload))
print(json.dumps({"payloadType": t, "payload": base64.b64encode(payload).decode(),
                  "signatures": [{"keyid": "", "sig": base64.b64encode(sig).decode()}]}))
"#;

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}
