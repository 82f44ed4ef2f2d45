//! The image supply chain against real parts: `runner build` of a fixture app with a
//! Dockerfile → image pushed to a real registry (distribution 2.8 behind htpasswd) with
//! the ECR token moto hands out → signature and SLSA provenance attached → checked by an
//! independent implementation of cosign's format (`cosign_indep.py`) and by
//! `runner verify`, both ways round. Plus tag immutability, token refresh, an upload
//! interrupted by killing the registry, and unchanged pushes that upload nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use crate::support::output_text as text;
use crate::support::{repo_root, stack};
use crate::support_moto::moto;
use crate::support_registry::{Proxy, Registry, ECR_HOST, ECR_PASSWORD, ECR_USER};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::Duration;

struct Env {
    data: tempfile::TempDir,
    keys: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        stack();
        let e = Env {
            data: tempfile::tempdir().unwrap(),
            keys: tempfile::tempdir().unwrap(),
        };
        let out = e
            .runner()
            .args(["key", "generate", "--output-dir"])
            .arg(e.keys.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        e
    }

    fn key(&self) -> String {
        self.keys.path().join("cosign.key").display().to_string()
    }

    /// `runner build --json` of `app`, with the registry standing in for ECR.
    fn build(&self, app: &Path, reg: &Registry) -> Output {
        self.runner()
            .args(["build", "--json", "--source"])
            .arg(app)
            .args(["--registry-endpoint", &reg.ecr_endpoint()])
            .output()
            .unwrap()
    }

    fn public(&self) -> String {
        self.keys.path().join("cosign.pub").display().to_string()
    }

    /// `runner` pointed at moto for AWS, with its own data directory.
    fn runner(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
        c.env("RUNNER_DATA_DIR", self.data.path())
            .env("NO_COLOR", "1")
            .env("CI", "true")
            .env("AWS_ENDPOINT_URL", &moto().endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("COSIGN_PASSWORD", "correct horse")
            .env_remove("RUNNER_REGISTRY_ENDPOINTS")
            .env_remove("RUNNER_IMAGE");
        c
    }
}

/// The independent verifier/signer, with the registry's credentials.
fn indep(args: &[&str]) -> Output {
    Command::new("python3")
        .arg(repo_root().join("tests/it/cosign_indep.py"))
        .args(args)
        .env("REGISTRY_USER", ECR_USER)
        .env("REGISTRY_PASSWORD", ECR_PASSWORD)
        .env("COSIGN_PASSWORD", "correct horse")
        .output()
        .expect("python3 tests/it/cosign_indep.py (needs cryptography, PyNaCl: scripts/setup.sh)")
}

/// The JSON events of a `--json` run.
fn events(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// The `stage` event called `name` of a `runner build --json` run.
fn stage(o: &Output, name: &str) -> Value {
    events(o)
        .into_iter()
        .find(|e| e["event"] == "stage" && e["stage"] == name)
        .unwrap_or_else(|| panic!("no {name} stage: {}", text(o)))
}

fn json_line(o: &Output) -> Value {
    let s = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(s.lines().last().unwrap_or(""))
        .unwrap_or_else(|_| panic!("no JSON: {}", text(o)))
}

fn copy_dir(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from).min_depth(1) {
        let e = e.unwrap();
        let dest = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

#[test]
fn build_push_sign_attest_and_verify_both_ways() {
    let env = Env::new();
    let reg = Registry::start(true);
    let app = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("fixtures/image-app"), app.path());
    std::fs::copy(env.key(), app.path().join("cosign.key")).unwrap();

    let out = env.build(app.path(), &reg);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stages: Vec<Value> = events(&out)
        .into_iter()
        .filter(|e| e["event"] == "stage")
        .collect();
    let names: Vec<&str> = stages
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["image", "push", "sign"], "{}", text(&out));
    assert!(stages.iter().all(|s| s["ok"] == true));
    let digest = stages[1]["detail"]["digest"].as_str().unwrap().to_string();
    assert_eq!(
        stages[1]["detail"]["tags"],
        serde_json::json!(["build-1", "latest"])
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("correct horse"));

    // The independent verifier, straight at the registry, accepts with our key...
    let by_digest = format!("{}/image-app@{digest}", reg.addr());
    let v = indep(&["verify", "--key", &env.public(), &by_digest]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    let v = indep(&[
        "verify-attestation",
        "--type",
        "slsaprovenance1",
        "--key",
        &env.public(),
        &by_digest,
    ]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    // ... and the tag `latest` names the same digest.
    let v = indep(&[
        "verify",
        "--key",
        &env.public(),
        &format!("{}/image-app:latest", reg.addr()),
    ]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));

    // A second key is refused by both implementations.
    let other = tempfile::tempdir().unwrap();
    let o = indep(&[
        "generate-key-pair",
        "--output-dir",
        &other.path().display().to_string(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let other_pub = other.path().join("cosign.pub").display().to_string();
    let v = indep(&["verify", "--key", &other_pub, &by_digest]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));

    let ecr_ref = format!("{ECR_HOST}/image-app@{digest}");
    let ours = |key: &str, extra: &[&str]| {
        env.runner()
            .args([
                "verify",
                &ecr_ref,
                "--key",
                key,
                "--registry-endpoint",
                &reg.ecr_endpoint(),
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let v = ours(
        &env.public(),
        &["--attestation", "slsaprovenance1", "--json"],
    );
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    assert_eq!(json_line(&v)["signatures"], 1);
    let v = ours(&other_pub, &[]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert!(
        String::from_utf8_lossy(&v.stderr).contains("does not verify with this public key"),
        "{}",
        text(&v)
    );
    // An attestation type that is not there fails verification.
    let v = ours(&env.public(), &["--attestation", "spdxjson"]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));

    // The provenance names the source and buildspec.
    let p = indep(&[
        "verify-attestation",
        "--type",
        "slsaprovenance1",
        "--key",
        &env.public(),
        &by_digest,
    ]);
    let s = String::from_utf8_lossy(&p.stdout);
    assert!(s.contains("slsa.dev/provenance/v1"), "{s}");
}

#[test]
fn an_image_signed_independently_with_runners_key_is_accepted_and_unsigned_is_not() {
    let env = Env::new();
    let reg = Registry::start(true);
    crate::support::docker_import(
        "runner-test/indep-signed:1",
        &[("hello.txt", b"signed elsewhere")],
    );
    let target = format!("{ECR_HOST}/indep:1");
    let out = env
        .runner()
        .args([
            "push",
            "runner-test/indep-signed:1",
            &target,
            "--create-repository",
            "--json",
        ])
        .args(["--registry-endpoint", &reg.ecr_endpoint()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let digest = json_line(&out)["digest"].as_str().unwrap().to_string();

    let verify = || {
        env.runner()
            .args([
                "verify",
                &format!("{ECR_HOST}/indep@{digest}"),
                "--key",
                &env.public(),
            ])
            .args(["--registry-endpoint", &reg.ecr_endpoint()])
            .output()
            .unwrap()
    };
    let v = verify();
    assert_eq!(
        v.status.code(),
        Some(1),
        "unsigned image verified: {}",
        text(&v)
    );
    assert!(
        String::from_utf8_lossy(&v.stderr).contains("no signature manifest"),
        "{}",
        text(&v)
    );

    // Python signs with runner's encrypted cosign.key (scrypt + secretbox).
    let s = indep(&[
        "sign",
        "--key",
        &env.key(),
        &format!("{}/indep@{digest}", reg.addr()),
    ]);
    assert_eq!(s.status.code(), Some(0), "{}", text(&s));
    let v = verify();
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
}

/// With an SBOM to attest, the image is saved once for the inventory and the push reads
/// its layers from that archive: the same manifest digest as an export from the engine.
#[test]
fn the_push_reuses_the_archive_saved_for_the_sbom() {
    let env = Env::new();
    let reg = Registry::start(true);
    let app = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("fixtures/image-app"), app.path());
    std::fs::copy(env.key(), app.path().join("cosign.key")).unwrap();
    let yml = std::fs::read_to_string(app.path().join("runner.yml")).unwrap();
    std::fs::write(
        app.path().join("runner.yml"),
        yml.replace("attest: [provenance]", "attest: [provenance, sbom]"),
    )
    .unwrap();
    let out = env.build(app.path(), &reg);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let push = stage(&out, "push");
    let detail = &push["detail"]["push"];
    assert_eq!(detail["exported"], true, "{push}");
    assert_eq!(detail["from_saved_archive"], true, "{push}");
    let local = format!("{ECR_HOST}/image-app:build-1");

    // `runner push` of the same image, exported from the engine on a fresh data dir.
    let fresh = tempfile::tempdir().unwrap();
    let again = env
        .runner()
        .env("RUNNER_DATA_DIR", fresh.path())
        .args([
            "push",
            &local,
            &format!("{ECR_HOST}/image-app:again"),
            "--json",
        ])
        .args(["--registry-endpoint", &reg.ecr_endpoint()])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    let again = json_line(&again);
    assert_eq!(again["from_saved_archive"], false, "{again}");
    let digest = push["detail"]["digest"].as_str().unwrap_or_default();
    assert!(digest.starts_with("sha256:"), "{push}");
    assert_eq!(again["digest"].as_str(), Some(digest), "{again}");
}

/// Docker layer cache for a cold agent: `cache-from` an image in the registry. The first
/// build pushes `latest`; its layers are then removed from the engine (a fresh agent), and
/// the second build pulls them through runner's registry client and reuses them.
#[test]
fn a_cold_engine_reuses_layers_from_the_registry_through_cache_from() {
    let env = Env::new();
    let reg = Registry::start(true);
    let app = tempfile::tempdir().unwrap();
    let nonce = format!("{}-{}", std::process::id(), reg.addr().replace(':', "-"));
    let repo = format!("{ECR_HOST}/cache-from-{}", std::process::id());
    std::fs::write(
        app.path().join("buildspec.yml"),
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo built\n",
    )
    .unwrap();
    std::fs::write(app.path().join("app.sh"), "#!/bin/sh\necho app\n").unwrap();
    std::fs::write(
        app.path().join("Dockerfile"),
        format!("FROM runner/busybox:latest\nCOPY app.sh /app/app.sh\nRUN echo {nonce} > /app/nonce\nRUN echo step-two > /app/two\n"),
    )
    .unwrap();
    std::fs::write(
        app.path().join("runner.yml"),
        format!("name: cache-from-app\nbuild:\n  image: runner/busybox:latest\nimage:\n  repository: {repo}\n  tags: [\"build-{{build-number}}\", latest]\n  cache-from: [\"{repo}:latest\"]\n  create-repository: true\n"),
    )
    .unwrap();
    let build = || {
        let out = env.build(app.path(), &reg);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let image = stage(&out, "image");
        let notes: Vec<String> = events(&out)
            .iter()
            .filter(|e| e["event"] == "notice")
            .filter_map(|e| e["message"].as_str().map(str::to_string))
            .filter(|m| m.starts_with("cache-from"))
            .collect();
        (image, notes)
    };
    let remove = |id: &str| {
        let o = Command::new("docker")
            .args(["rmi", "-f", id])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let gone = Command::new("docker")
            .args(["image", "inspect", id])
            .output()
            .unwrap();
        assert!(!gone.status.success(), "image {id} is still on the engine");
    };

    let (first, notes) = build();
    assert_eq!(first["detail"]["cached_steps"], 0, "a cold engine: {first}");
    assert!(
        notes.iter().any(|n| n.contains("not in the registry yet")),
        "{notes:?}"
    );
    let first_id = first["detail"]["id"].as_str().unwrap().to_string();
    remove(&first_id);

    let base = Command::new("docker")
        .args([
            "image",
            "inspect",
            "runner/busybox:latest",
            "--format",
            "{{len .RootFS.Layers}}",
        ])
        .output()
        .unwrap();
    let base: usize = String::from_utf8_lossy(&base.stdout)
        .trim()
        .parse()
        .unwrap();
    let (second, notes) = build();
    let pulled = format!("pulled 3 of {} layers", base + 3);
    assert!(
        notes.iter().any(|n| n.contains(&pulled)),
        "the base layers were on the engine, the three built ones came from the registry: {notes:?}"
    );
    // COPY, both RUNs and the LABEL step the build's labels add.
    assert!(
        second["detail"]["cached_steps"].as_u64().unwrap_or(0) >= 3,
        "COPY and both RUNs reused: {second}"
    );
    assert_eq!(
        second["detail"]["id"].as_str(),
        Some(first_id.as_str()),
        "the same image"
    );
    // A warm agent only checks that its copy is what the tag names.
    let (_, notes) = build();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("the engine has it already")),
        "{notes:?}"
    );
    remove(&first_id);
}

#[test]
fn unchanged_push_uploads_nothing_and_tag_immutability_is_honoured() {
    let env = Env::new();
    let reg = Registry::start(true);
    crate::support::docker_import("runner-test/immut-a:1", &[("a.txt", b"first image")]);
    crate::support::docker_import("runner-test/immut-b:1", &[("b.txt", b"second image")]);
    // An IMMUTABLE repository in moto's ECR.
    let py = format!(
        "import boto3\nboto3.client('ecr', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test').create_repository(repositoryName='immut', imageTagMutability='IMMUTABLE')",
        moto().endpoint
    );
    let o = Command::new("python3").args(["-c", &py]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let push = |local: &str, data: &Path| {
        env.runner()
            .env("RUNNER_DATA_DIR", data)
            .args(["push", local, &format!("{ECR_HOST}/immut:v1"), "--json"])
            .args(["--registry-endpoint", &reg.ecr_endpoint()])
            .output()
            .unwrap()
    };
    let first = push("runner-test/immut-a:1", env.data.path());
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let first = json_line(&first);
    assert!(first["blobs_uploaded"].as_u64().unwrap() >= 2, "{first}");

    // The same image again: nothing uploaded, not even exported from the engine.
    let again = push("runner-test/immut-a:1", env.data.path());
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    let again = json_line(&again);
    assert_eq!(again["digest"], first["digest"]);
    assert_eq!(again["blobs_uploaded"], 0, "{again}");
    assert_eq!(again["exported"], false, "{again}");
    // Without the layer map (another machine): exported, but the registry has every blob.
    let fresh = tempfile::tempdir().unwrap();
    let other = push("runner-test/immut-a:1", fresh.path());
    assert_eq!(other.status.code(), Some(0), "{}", text(&other));
    let other = json_line(&other);
    assert_eq!(
        other["digest"], first["digest"],
        "deterministic compression"
    );
    assert_eq!(other["blobs_uploaded"], 0, "{other}");

    // Another image to the same immutable tag: refused, exit 1, and the tag is unchanged.
    let moved = push("runner-test/immut-b:1", env.data.path());
    assert_eq!(moved.status.code(), Some(1), "{}", text(&moved));
    assert!(
        String::from_utf8_lossy(&moved.stderr).contains("immutable"),
        "{}",
        text(&moved)
    );
    // Which digest does the tag name now?
    let rt = tokio::runtime::Runtime::new().unwrap();
    let registry = runner::publish::registry::Registry::new(
        ECR_HOST,
        &runner::publish::registry::Endpoints::from_args(&[reg.ecr_endpoint()]).unwrap(),
        std::sync::Arc::new(runner::publish::auth::Static(
            runner::publish::auth::decode_basic("QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu").unwrap(),
        )),
        Default::default(),
    )
    .unwrap();
    let m = rt
        .block_on(registry.get_manifest("immut", "v1"))
        .unwrap()
        .unwrap();
    assert_eq!(Some(m.digest.as_str()), first["digest"].as_str());
}

#[test]
fn an_expired_or_refused_ecr_token_is_refreshed() {
    use runner::publish::auth::{CredentialSource, Credentials};
    use runner::publish::ecr::EcrCredentials;
    use runner::publish::registry::{Endpoints, Registry as Client};
    use runner::secrets::Secret;
    use std::sync::Arc;
    use std::time::SystemTime;
    stack();
    let reg = Registry::start(true);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sdk = runner::aws_config::load_sdk_config(&moto().settings()).await;
        let stale = Credentials::Basic {
            username: "AWS".into(),
            password: Arc::new(Secret::new("yesterdays-token")),
        };
        // 1. A cached token past its expiry is not used: a fresh one is fetched first.
        let ecr = Arc::new(EcrCredentials::new(
            aws_sdk_ecr::Client::new(&sdk),
            "123456789012",
        ));
        ecr.seed(stale.clone(), SystemTime::now() - Duration::from_secs(60))
            .await;
        match ecr.credentials(false).await.unwrap() {
            Credentials::Basic { password, .. } => assert_eq!(password.expose(), ECR_PASSWORD),
            Credentials::Anonymous => panic!("anonymous"),
        }
        // 2. A token the registry refuses (revoked, clock skew) is refreshed once, and
        //    the push goes through.
        let ecr = Arc::new(EcrCredentials::new(
            aws_sdk_ecr::Client::new(&sdk),
            "123456789012",
        ));
        ecr.seed(stale, SystemTime::now() + Duration::from_secs(3600))
            .await;
        let client = Client::new(
            ECR_HOST,
            &Endpoints::from_args(&[reg.ecr_endpoint()]).unwrap(),
            ecr,
            Default::default(),
        )
        .unwrap();
        let digest = client
            .push_blob_bytes("refresh", b"blob after a refresh")
            .await
            .unwrap();
        assert!(client.blob_exists("refresh", &digest).await.unwrap());
        assert_eq!(client.stats.credential_refreshes.load(Ordering::Relaxed), 1);
    });
}

#[test]
fn a_push_interrupted_by_killing_the_registry_completes_after_restart() {
    let env = Env::new();
    let reg = std::sync::Arc::new(Registry::start(false));
    // Three layers of 16 MiB that gzip cannot shrink: the push takes long enough to be
    // cut in the middle of the second.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM runner/busybox:latest\n\
         RUN dd if=/dev/urandom of=/a bs=1048576 count=16 2>/dev/null\n\
         RUN dd if=/dev/urandom of=/b bs=1048576 count=16 2>/dev/null\n\
         RUN dd if=/dev/urandom of=/c bs=1048576 count=16 2>/dev/null\n",
    )
    .unwrap();
    let b = Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", "runner-test/big:1"])
        .arg(ctx.path())
        .output()
        .unwrap();
    assert!(b.status.success(), "{}", text(&b));
    let proxy = Proxy::start(reg.port);
    // Kill the registry once 24 MiB have gone through, restart it 1.5 s later.
    let (sent, reg2) = (proxy.sent.clone(), reg.clone());
    let killer = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while sent.load(Ordering::Relaxed) < 24 << 20 {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        reg2.kill();
        std::thread::sleep(Duration::from_millis(1500));
        reg2.restart();
        true
    });
    let target = format!("127.0.0.1:{}/big:1", proxy.port);
    let out = env
        .runner()
        .args([
            "push",
            "runner-test/big:1",
            &target,
            "--json",
            "--compression-level",
            "1",
        ])
        .output()
        .unwrap();
    assert!(
        killer.join().unwrap(),
        "the push never sent 24 MiB: {}",
        text(&out)
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let pushed = json_line(&out);
    // Everything the manifest names is in the registry with the right digest.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = runner::publish::registry::Registry::new(
        &reg.addr(),
        &Default::default(),
        std::sync::Arc::new(runner::publish::auth::Static(
            runner::publish::auth::Credentials::Anonymous,
        )),
        Default::default(),
    )
    .unwrap();
    rt.block_on(async {
        let m = client
            .get_manifest("big", pushed["digest"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        let m: Value = serde_json::from_slice(&m.bytes).unwrap();
        for l in m["layers"].as_array().unwrap() {
            // get_blob checks the bytes against the digest.
            let blob = client
                .get_blob(
                    "big",
                    l["digest"].as_str().unwrap(),
                    l["size"].as_u64().unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(blob.len() as u64, l["size"].as_u64().unwrap());
        }
    });
    // What completed before the kill was not sent again: far less than twice the image.
    let through = proxy.sent.load(Ordering::Relaxed);
    let blobs = pushed["bytes_uploaded"].as_u64().unwrap();
    eprintln!(
        "interrupted push: {} chunk resumes, {} blob restarts, {through} bytes through the proxy for {blobs} bytes of blobs",
        pushed["uploads_resumed"], pushed["uploads_restarted"]
    );
    assert!(
        pushed["uploads_resumed"].as_u64().unwrap() + pushed["uploads_restarted"].as_u64().unwrap()
            >= 1,
        "the upload was not interrupted: {pushed}"
    );
    // Bounded re-sending: at most what went out before the cut plus one full push.
    assert!(
        through < (24 << 20) + blobs + (8 << 20),
        "more than one push's worth was sent again: {through} bytes for {blobs}"
    );
}

/// A bare config repository seeded with a kustomization that deploys `image-app`.
fn config_repo() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("deploy.git");
    let seed = dir.path().join("seed");
    let git = |args: &[&str], cwd: &Path| {
        let o = Command::new("git")
            .args([
                "-c",
                "init.defaultBranch=main",
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@localhost",
            ])
            .args(args)
            .current_dir(cwd)
            .output()
            .unwrap();
        assert!(o.status.success(), "git {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    git(
        &["init", "-q", "--bare", &bare.display().to_string()],
        dir.path(),
    );
    git(&["init", "-q", &seed.display().to_string()], dir.path());
    std::fs::write(
        seed.join("kustomization.yaml"),
        format!("# deployed by Argo CD\nresources: []\nimages:\n  - name: image-app\n    newName: {ECR_HOST}/image-app\n    newTag: \"0.0.0\"  # moved by runner\n"),
    )
    .unwrap();
    git(&["add", "-A"], &seed);
    git(&["commit", "-qm", "seed"], &seed);
    git(
        &["push", "-q", &bare.display().to_string(), "HEAD:main"],
        &seed,
    );
    let head = git(&["rev-parse", "main"], &bare);
    (dir, head)
}

fn main_of(dir: &Path) -> String {
    let o = Command::new("git")
        .args(["rev-parse", "main"])
        .current_dir(dir.join("deploy.git"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn gitops_is_refused_for_an_unsigned_digest_and_done_for_a_signed_one() {
    let env = Env::new();
    let reg = Registry::start(true);
    let (repo_dir, seeded) = config_repo();
    let gitops = format!(
        "gitops:\n  repo: {}\n  forge: none\n  files: [kustomization.yaml]\n  require-signature: true\n",
        repo_dir.path().join("deploy.git").display()
    );
    let app = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("fixtures/image-app"), app.path());
    let base = "name: image-app\nbuild:\n  image: runner/busybox:latest\nimage:\n  repository: 123456789012.dkr.ecr.us-east-1.amazonaws.com/image-app\n  tags: [gated]\n  create-repository: true\n";
    let build = || env.build(app.path(), &reg);
    let gitops_stage = |o: &Output| stage(o, "gitops");

    // No signing key: the pushed digest is unsigned, so no deployment.
    std::fs::write(app.path().join("runner.yml"), format!("{base}{gitops}")).unwrap();
    let out = build();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let st = gitops_stage(&out);
    assert_eq!(st["ok"], false);
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("require-signature"),
        "{st}"
    );
    assert_eq!(
        main_of(repo_dir.path()),
        seeded,
        "the config repository moved"
    );

    // Signed by the project's key: verified in the registry, then deployed.
    std::fs::copy(env.key(), app.path().join("cosign.key")).unwrap();
    std::fs::write(
        app.path().join("runner.yml"),
        format!("{base}sign:\n  key: cosign.key\n{gitops}"),
    )
    .unwrap();
    let out = build();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let st = gitops_stage(&out);
    assert_eq!(st["ok"], true, "{st}");
    assert_ne!(main_of(repo_dir.path()), seeded);
    let show = Command::new("git")
        .args(["show", "main:kustomization.yaml"])
        .current_dir(repo_dir.path().join("deploy.git"))
        .output()
        .unwrap();
    let file = String::from_utf8_lossy(&show.stdout);
    assert!(file.contains("# deployed by Argo CD"), "{file}");
    assert!(
        file.contains("@sha256:") || file.contains("digest: sha256:"),
        "{file}"
    );
}
