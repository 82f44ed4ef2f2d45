//! cosign's bundle format (cosign 3, `--new-bundle-format`) against a real registry
//! (distribution 2.8: no referrers API, so the referrers tag schema): an independent
//! producer (`sigstore_bundle_indep.py`: the `sigstore-models` bundle model and
//! `cryptography`) signs, `runner verify` must accept it and reject tampered bundles;
//! `runner sign --new-bundle-format` signs and the independent checker accepts it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use crate::support::output_text as text;
use crate::support::{repo_root, stack};
use crate::support_registry::Registry;
use serde_json::Value;
use std::process::{Command, Output};

const PASSWORD: &str = "bundle pw";

fn runner(data: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
    c.env("RUNNER_DATA_DIR", data)
        .env("NO_COLOR", "1")
        .env("CI", "true")
        .env("COSIGN_PASSWORD", PASSWORD)
        .env_remove("RUNNER_REGISTRY_ENDPOINTS")
        .env_remove("RUNNER_REGISTRY_USER")
        .env("DOCKER_CONFIG", data.join("no-docker-config"));
    c
}

fn indep(args: &[&str]) -> Output {
    Command::new("python3")
        .arg(repo_root().join("tests/it/sigstore_bundle_indep.py"))
        .args(args)
        .env("COSIGN_PASSWORD", PASSWORD)
        .env_remove("REGISTRY_USER")
        .output()
        .expect("python3 tests/it/sigstore_bundle_indep.py (needs sigstore-models, cryptography: scripts/setup.sh)")
}

/// A fresh key pair, a registry, and a one-file image pushed to it; returns the image
/// by digest.
struct Setup {
    data: tempfile::TempDir,
    _reg: Registry,
    image: String,
}

impl Setup {
    fn new(name: &str) -> Self {
        stack();
        let data = tempfile::tempdir().unwrap();
        let reg = Registry::start(false);
        let out = runner(data.path())
            .args(["key", "generate", "--output-dir"])
            .arg(data.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let local = format!("runner-test/{name}:1");
        let content = format!("bundle test {name}");
        crate::support::docker_import(&local, &[("hello.txt", content.as_bytes())]);
        let out = runner(data.path())
            .args([
                "push",
                &local,
                &format!("{}/{name}:1", reg.addr()),
                "--json",
            ])
            .output()
            .unwrap();
        let _ = Command::new("docker").args(["rmi", &local]).output();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let pushed: Value =
            serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap())
                .unwrap();
        let digest = pushed["digest"].as_str().unwrap().to_string();
        Setup {
            image: format!("{}/{name}@{digest}", reg.addr()),
            data,
            _reg: reg,
        }
    }

    fn key(&self) -> String {
        self.data.path().join("cosign.key").display().to_string()
    }

    fn public(&self) -> String {
        self.data.path().join("cosign.pub").display().to_string()
    }

    fn verify(&self) -> Output {
        runner(self.data.path())
            .args(["verify", &self.image, "--key", &self.public(), "--json"])
            .output()
            .unwrap()
    }
}

#[test]
fn a_bundle_signed_by_an_independent_implementation_verifies_and_tampered_ones_do_not() {
    let s = Setup::new("bundle-indep");
    let v = s.verify();
    assert_eq!(v.status.code(), Some(1), "unsigned verified: {}", text(&v));

    // Each tampered bundle is attached (the referrers tag's index grows) and refused.
    for (tamper, reason) in [
        ("signature", "does not verify with this public key"),
        ("payload-digest", "does not verify with this public key"),
        ("other-digest", "is not about"),
    ] {
        let o = indep(&["sign", "--key", &s.key(), "--tamper", tamper, &s.image]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let v = s.verify();
        assert_eq!(
            v.status.code(),
            Some(1),
            "tampered ({tamper}) bundle verified: {}",
            text(&v)
        );
        assert!(
            String::from_utf8_lossy(&v.stderr).contains(reason),
            "{tamper}: {}",
            text(&v)
        );
    }

    // A good one among them: exactly one valid signature.
    let o = indep(&["sign", "--key", &s.key(), &s.image]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = s.verify();
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    let out: Value =
        serde_json::from_str(String::from_utf8_lossy(&v.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(out["signatures"], 1, "{}", text(&v));
}

#[test]
fn runner_signs_in_the_bundle_format_and_the_independent_checker_accepts_it() {
    let s = Setup::new("bundle-runner");
    let o = indep(&["verify", "--key", &s.public(), &s.image]);
    assert_eq!(o.status.code(), Some(1), "unsigned accepted: {}", text(&o));

    let signed = runner(s.data.path())
        .args([
            "sign",
            &s.image,
            "--key",
            &s.key(),
            "--new-bundle-format",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(signed.status.code(), Some(0), "{}", text(&signed));
    let out: Value = serde_json::from_str(
        String::from_utf8_lossy(&signed.stdout)
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    let hex = s.image.rsplit_once("@sha256:").unwrap().1;
    assert!(
        out["signature_tag"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":sha256-{hex}")),
        "{out}"
    );

    // The independent checker (strict bundle model, its own DSSE/ECDSA check) accepts it…
    let o = indep(&["verify", "--key", &s.public(), &s.image]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // …with this key only.
    let other = tempfile::tempdir().unwrap();
    let g = runner(s.data.path())
        .args(["key", "generate", "--output-dir"])
        .arg(other.path())
        .output()
        .unwrap();
    assert!(g.status.success(), "{}", text(&g));
    let other_pub = other.path().join("cosign.pub").display().to_string();
    let o = indep(&["verify", "--key", &other_pub, &s.image]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // No `.sig` tag was written: runner verify accepts it through the bundle.
    let v = s.verify();
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
}

#[test]
fn runner_build_signs_in_the_bundle_format_when_runner_yml_asks() {
    stack();
    let reg = Registry::start(false);
    let data = tempfile::tempdir().unwrap();
    let app = tempfile::tempdir().unwrap();
    for f in ["Dockerfile", "app.sh", "buildspec.yml", "test.sh"] {
        std::fs::copy(
            repo_root().join("fixtures/image-app").join(f),
            app.path().join(f),
        )
        .unwrap();
    }
    let out = runner(data.path())
        .args(["key", "generate", "--output-dir"])
        .arg(app.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(
        app.path().join("runner.yml"),
        format!(
            "name: image-app-bundle\nbuild:\n  image: runner/busybox:latest\nimage:\n  repository: {}/image-app-bundle\n  tags: [latest]\n  build-args:\n    GREETING: hi\nsign:\n  key: cosign.key\n  format: bundle\n",
            reg.addr()
        ),
    )
    .unwrap();
    let out = runner(data.path())
        .args(["build", "--json", "--source"])
        .arg(app.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let push = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "stage" && e["stage"] == "push")
        .unwrap_or_else(|| panic!("no push stage: {}", text(&out)));
    let digest = push["detail"]["digest"].as_str().unwrap().to_string();
    let image = format!("{}/image-app-bundle@{digest}", reg.addr());
    let public = app.path().join("cosign.pub").display().to_string();
    let o = indep(&["verify", "--key", &public, &image]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let _ = Command::new("docker")
        .args(["rmi", &format!("{}/image-app-bundle:latest", reg.addr())])
        .output();
}
