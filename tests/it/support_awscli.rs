//! An image with the `aws` CLI for tests that run it inside a build: FROM
//! runner/debian:bookworm, the AWS CLI from PyPI (Debian's awscli 2.9 predates
//! `AWS_ENDPOINT_URL`, which the builds need to reach moto). Built once per machine and
//! kept by tag; RUNNER_TEST_AWSCLI_IMAGE names another image with `aws` and `python3`
//! (the standard image, say) instead.

use std::process::Command;
use std::sync::OnceLock;

/// Bump when the Dockerfile changes.
const TAG: &str = "runner-test/awscli:1";

const DOCKERFILE: &str = "FROM runner/debian:bookworm
COPY host-ca.crt /tmp/host-ca.crt
RUN apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
      python3-pip ca-certificates >/dev/null \\
 && PIP_CERT=/tmp/host-ca.crt pip install -q --no-cache-dir --break-system-packages 'awscli>=1.32' \\
 && aws --version \\
 && rm -rf /var/lib/apt/lists/* /tmp/host-ca.crt /root/.cache
";

/// The image's name, built first when missing. Panics (failing the test) when it cannot
/// be had.
pub fn awscli_image() -> String {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    let r = IMAGE.get_or_init(|| {
        if let Ok(name) = std::env::var("RUNNER_TEST_AWSCLI_IMAGE") {
            if !name.trim().is_empty() {
                return Ok(name);
            }
        }
        crate::support::stack();
        let has = |image: &str| {
            Command::new("docker")
                .args(["image", "inspect", image])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        };
        if has(TAG) {
            return Ok(TAG.to_string());
        }
        if !has("runner/debian:bookworm") {
            return Err(
                "runner/debian:bookworm is missing: run `bash scripts/images.sh --debian`".into(),
            );
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        std::fs::write(dir.path().join("Dockerfile"), DOCKERFILE).map_err(|e| e.to_string())?;
        // pip reaches PyPI through the host's trust store (a proxy may re-sign TLS).
        let ca = std::path::Path::new("/etc/ssl/certs/ca-certificates.crt");
        let bundle = std::fs::read(ca).unwrap_or_default();
        std::fs::write(dir.path().join("host-ca.crt"), bundle).map_err(|e| e.to_string())?;
        let out = Command::new("docker")
            .args(["build", "--force-rm", "-t", TAG, "."])
            .current_dir(dir.path())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "building {TAG} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(TAG.to_string())
    });
    match r {
        Ok(name) => name.clone(),
        Err(e) => panic!("the awscli test image is unavailable: {e}"),
    }
}
