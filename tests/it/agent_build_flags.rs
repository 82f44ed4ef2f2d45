//! `runner agent` gives its jobs what `runner build` gives a build when asked: Docker
//! through the gate (`--privileged --docker gate`) and the agent's AWS credentials through
//! the container-credentials endpoint (`--build-credentials runner`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use crate::support::{KillOnDrop, IMAGE};
use crate::support_moto::moto;
use crate::support_pool::{eventually, project, source, Containers, Pool};
use std::process::{Command, Stdio};

const KEY_ID: &str = "AKIAAGENTFLAGS000001";

/// The job prints what it got: the Docker socket the gate serves, and the key id the
/// credentials endpoint hands an SDK that presents the token (a session of the agent's
/// keys, from moto's STS).
const BUILDSPEC: &str = r#"version: 0.2
phases:
  build:
    commands:
      - echo "host=$DOCKER_HOST"
      - if [ -S /var/run/docker.sock ]; then echo socket=yes; else echo socket=no; fi
      - sh creds.sh
"#;

const CREDS: &str = r#"wget -q -O creds.json --header "Authorization: $AWS_CONTAINER_AUTHORIZATION_TOKEN" "$AWS_CONTAINER_CREDENTIALS_FULL_URI"
echo "key-id=$(tr -d ' ' < creds.json | grep -o '"AccessKeyId":"[A-Z0-9]*"' | cut -d '"' -f 4)"
"#;

#[test]
fn agent_serves_its_jobs_docker_through_the_gate_and_aws_credentials_when_asked() {
    let pool = Pool::start(30);
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("agent.log");
    let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
    c.arg("--data-dir")
        .arg(data.path())
        .args(["agent", "--server", &pool.url, "--name", "flags"])
        .args(["--image", IMAGE, "--no-cache", "--no-cache-volumes"])
        .args(["--privileged", "--docker", "gate"])
        .args(["--build-credentials", "runner"])
        .env("RUNNER_TOKEN", pool.agent_token())
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "agent-flags-test-secret-00000000000000000",
        )
        .env("AWS_ENDPOINT_URL", &moto().endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/runner-test")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/runner-test")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("RUNNER_SERVER")
        .env_remove("RUNNER_IMAGE")
        .env_remove("RUNNER_DOCKER")
        .env_remove("RUNNER_BUILD_CREDENTIALS")
        .env_remove("RUNNER_BUILD_ROLE")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let _agent = KillOnDrop(c.spawn().unwrap());
    eventually("the agent to wait for jobs", 60, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            !text.contains("error:"),
            "the agent refused its flags: {text}"
        );
        text.contains("waiting for jobs").then_some(())
    });

    let name = project("agent-flags");
    let _containers = Containers(name.clone());
    let src = source(&[("buildspec.yml", BUILDSPEC), ("creds.sh", CREDS)]);
    let out = pool
        .cli()
        .args(["submit", "--wait", "--source"])
        .arg(src.path())
        .args(["--project", &name])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let agent_log = std::fs::read_to_string(&log).unwrap_or_default();
    let all = format!("{stdout}\n{stderr}\nagent:\n{agent_log}");
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(stdout.contains("host=unix:///var/run/docker.sock"), "{all}");
    assert!(stdout.contains("socket=yes"), "{all}");
    // The key id of the session runner made from its own keys (served, never the secret).
    let key_id = stdout
        .lines()
        .find_map(|l| l.split("key-id=").nth(1))
        .unwrap_or_default()
        .trim();
    assert!(
        key_id.len() >= 16 && key_id.starts_with("A"),
        "no credentials served: {all}"
    );
}
