//! docker's credential helpers for registry auth: `credHelpers` (per host) and
//! `credsStore` in the `config.json` of DOCKER_CONFIG. A helper script on PATH
//! (`docker-credential-test`) answers docker's protocol with the credentials the real
//! registry's htpasswd accepts, and records the host it was asked about.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use crate::support::output_text as text;
use crate::support::stack;
use crate::support_registry::{Registry, ECR_PASSWORD, ECR_USER};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

/// Writes `docker-credential-test` into `bin`: the protocol's `get`, logging the host.
fn helper(bin: &Path, log: &Path) {
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread -r host\necho \"$host\" >> '{}'\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{ECR_USER}\",\"Secret\":\"{ECR_PASSWORD}\"}}\\n' \"$host\"\n",
        log.display()
    );
    let p = bin.join("docker-credential-test");
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn push(reg: &Registry, config_dir: &Path, bin: &Path, name: &str) -> Output {
    let data = tempfile::tempdir().unwrap();
    let local = format!("runner-test/{name}:1");
    let content = format!("cred helper {name}");
    crate::support::docker_import(&local, &[("hello.txt", content.as_bytes())]);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args([
            "push",
            &local,
            &format!("{}/{name}:1", reg.addr()),
            "--json",
        ])
        .env("RUNNER_DATA_DIR", data.path())
        .env("DOCKER_CONFIG", config_dir)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env_remove("RUNNER_REGISTRY_USER")
        .env_remove("RUNNER_REGISTRY_PASSWORD")
        .env_remove("RUNNER_REGISTRY_ENDPOINTS")
        .output()
        .unwrap();
    let _ = Command::new("docker").args(["rmi", &local]).output();
    out
}

#[test]
fn cred_helpers_and_creds_store_authenticate_pushes() {
    stack();
    let reg = Registry::start(true);
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = dir.path().join("asked.log");
    helper(&bin, &log);

    // credHelpers for this host (and a placeholder auths entry without credentials, as
    // docker login writes next to a helper).
    let per_host = dir.path().join("per-host");
    std::fs::create_dir(&per_host).unwrap();
    std::fs::write(
        per_host.join("config.json"),
        format!(
            r#"{{"auths":{{"{0}":{{}}}},"credHelpers":{{"{0}":"test","other.example":"missing"}}}}"#,
            reg.addr()
        ),
    )
    .unwrap();
    let out = push(&reg, &per_host, &bin, "cred-helper");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let asked = std::fs::read_to_string(&log).unwrap();
    assert!(
        asked.lines().all(|l| l == reg.addr()) && !asked.is_empty(),
        "{asked}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(ECR_PASSWORD)
            && !String::from_utf8_lossy(&out.stderr).contains(ECR_PASSWORD)
    );

    // credsStore for every host.
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    std::fs::write(store.join("config.json"), r#"{"credsStore":"test"}"#).unwrap();
    let out = push(&reg, &store, &bin, "cred-store");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // A helper that is not installed: said, with what to do.
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(
        broken.join("config.json"),
        format!(r#"{{"credHelpers":{{"{}":"absent"}}}}"#, reg.addr()),
    )
    .unwrap();
    let out = push(&reg, &broken, &bin, "cred-absent");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("docker-credential-absent")
            && String::from_utf8_lossy(&out.stderr).contains("on PATH"),
        "{}",
        text(&out)
    );
}
