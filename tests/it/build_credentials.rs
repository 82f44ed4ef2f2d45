//! AWS credentials for the build (issue #15 item 3): the `aws` CLI inside the build gets
//! runner's credentials (or an assumed role's) from the container-credentials endpoint and
//! reaches moto through runner's endpoint overrides; the secret key shows nowhere; the
//! endpoint refuses requests without the token and is gone after the build.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use crate::support::{Project, Run};
use crate::support_awscli::awscli_image;
use crate::support_moto::moto;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

/// A 40-character secret key no other test uses, so finding it anywhere is a leak.
fn secret_key() -> String {
    format!("bcS{:032x}Zq7Tw", rand_u128())
}

fn rand_u128() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    let a = h.finish() as u128;
    let mut h2 = std::collections::hash_map::RandomState::new().build_hasher();
    h2.write_u64(std::process::id() as u64);
    (a << 64) | h2.finish() as u128
}

/// `runner build` with runner's own AWS settings pointing at moto (no profile, no IMDS).
fn runner_with_aws(p: &Project, secret: &str) -> Command {
    let mut c = p.runner();
    c.env("AWS_ACCESS_KEY_ID", "AKIARUNNERTESTKEY001")
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_ENDPOINT_URL", &moto().endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/runner-test")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/runner-test")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("RUNNER_BUILD_CREDENTIALS")
        .env_remove("RUNNER_BUILD_ROLE");
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_ENDPOINT_URL_") {
            c.env_remove(name);
        }
    }
    c.args(["build", "--json", "--timeout", "10", "--image"])
        .arg(awscli_image())
        .arg("--source")
        .arg(p.path());
    c
}

fn sha256_hex(text: &str) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Every file under `dir` (runner's data directory: logs, state, caches).
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(path),
                Ok(t) if t.is_file() => out.push(path),
                _ => {}
            }
        }
    }
    out
}

/// Python inside the build: GET the endpoint with the given Authorization header (or
/// none) and print the status.
const PROBE: &str = r#"python3 - "$1" <<'PY'
import os, sys, urllib.request, urllib.error
req = urllib.request.Request(os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"])
if sys.argv[1] != "-":
    req.add_header("Authorization", sys.argv[1])
try:
    print("probe", sys.argv[1][:5], urllib.request.urlopen(req, timeout=10).status)
except urllib.error.HTTPError as e:
    print("probe", sys.argv[1][:5], e.code)
PY"#;

/// Python inside the build: what an SDK gets from the endpoint (with the token), printed:
/// the secret key's SHA-256, the key itself (runner must mask it), the key id's prefix.
const CREDS: &str = r#"import hashlib, json, os, urllib.request
req = urllib.request.Request(os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"])
req.add_header("Authorization", os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"])
doc = json.load(urllib.request.urlopen(req, timeout=10))
print("key-sha=" + hashlib.sha256(doc["SecretAccessKey"].encode()).hexdigest())
print("key=" + doc["SecretAccessKey"])
print("id=" + doc["AccessKeyId"][:4])
print("token=" + ("set" if doc.get("Token") else "none"))
print("expiration=" + ("set" if doc.get("Expiration") else "none"))
"#;

const BUILDSPEC: &str = r#"version: 0.2
phases:
  build:
    commands:
      - aws sts get-caller-identity --query Arn --output text
      - aws ssm get-parameter --name /t/plain --query Parameter.Value --output text
      - echo "uri=$AWS_CONTAINER_CREDENTIALS_FULL_URI"
      - echo "endpoint=$AWS_ENDPOINT_URL"
      - python3 creds.py
      - bash probe.sh -
      - bash probe.sh wrong-token
      - bash probe.sh "$AWS_CONTAINER_AUTHORIZATION_TOKEN"
      - echo "container=$HOSTNAME"
      - while [ ! -e inspected ]; do sleep 0.2; done
      - env | sort
"#;

#[test]
fn aws_cli_in_the_build_gets_runners_credentials_and_endpoints_and_the_key_leaks_nowhere() {
    let p = Project::new();
    p.write("buildspec.yml", BUILDSPEC)
        .write("probe.sh", PROBE)
        .write("creds.py", CREDS);
    let secret = secret_key();
    let mut cmd = runner_with_aws(&p, &secret);
    cmd.args(["--build-credentials", "runner"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn runner");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // Read events as they come; when the build names its container, inspect it while
    // the build waits, then let it go on.
    let mut lines = Vec::new();
    let mut inspect = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read runner output");
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            if let Some(id) = v["line"]
                .as_str()
                .and_then(|l| l.strip_prefix("container="))
            {
                let out = Command::new("docker")
                    .args(["inspect", id])
                    .output()
                    .expect("docker inspect");
                assert!(out.status.success(), "docker inspect {id} failed");
                inspect = String::from_utf8_lossy(&out.stdout).into_owned();
                std::fs::write(p.path().join("inspected"), "").expect("signal the build");
            }
        }
        lines.push(line);
    }
    let status = child.wait().expect("wait runner");
    let stderr = err_thread.join().unwrap_or_default();
    let run = Run::from(std::process::Output {
        status,
        stdout: (lines.join("\n") + "\n").into_bytes(),
        stderr: stderr.into_bytes(),
    });
    assert_eq!(run.code, 0, "{}", run.debug());

    // The CLI inside authenticated with runner's credentials and reached moto's STS and
    // SSM through the endpoint override (moto listens on the host's loopback).
    assert!(
        run.has_line("arn:aws:sts::123456789012:user/moto"),
        "{}",
        run.debug()
    );
    assert!(run.has_line("plain-value"), "{}", run.debug());
    let logs = run.logs();
    let uri = logs
        .iter()
        .find_map(|l| l.strip_prefix("uri="))
        .expect("uri line")
        .to_string();
    assert!(uri.starts_with("http://169.254.170.2:"), "{uri}");
    let endpoint = logs
        .iter()
        .find_map(|l| l.strip_prefix("endpoint="))
        .expect("endpoint line");
    assert!(
        endpoint.starts_with("http://169.254.170.2:"),
        "loopback endpoint forwarded: {endpoint}"
    );
    // What the build is served is a session (STS GetSessionToken), never runner's
    // long-term key; printed, the session's key is masked.
    assert!(
        logs.iter().any(|l| l.starts_with("key-sha=")),
        "{}",
        run.debug()
    );
    assert!(
        !run.has_line(&format!("key-sha={}", sha256_hex(&secret))),
        "runner's long-term key was served"
    );
    assert!(run.has_line("key=***"), "{}", run.debug());
    assert!(run.has_line("token=set"), "{}", run.debug());
    assert!(run.has_line("expiration=set"), "{}", run.debug());
    // The endpoint refuses a request without the token (401) or with a wrong one (403).
    assert!(run.has_line("probe - 401"), "{}", run.debug());
    assert!(run.has_line("probe wrong 403"), "{}", run.debug());
    assert!(
        logs.iter()
            .any(|l| l.starts_with("probe ") && l.ends_with(" 200")),
        "{}",
        run.debug()
    );

    // The secret key is in no output, not in docker inspect, not in any file runner wrote.
    assert!(!inspect.is_empty(), "the build container was not inspected");
    for (what, text) in [
        ("stdout", &run.stdout),
        ("stderr", &run.stderr),
        ("docker inspect", &inspect),
    ] {
        assert!(!text.contains(&secret), "the secret key appears in {what}");
    }
    assert!(
        !inspect.contains("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
        "the token is in the container's Env"
    );
    let files = files_under(p.data.path());
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "log")),
        "no log file written"
    );
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&secret),
            "the secret key appears in {}",
            f.display()
        );
    }

    // After the build the endpoint no longer answers.
    let authority = uri
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let addr: std::net::SocketAddr = authority.parse().expect("ip:port");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the credentials endpoint still answers after the build"
    );
}

#[test]
fn build_role_is_assumed_through_sts_and_its_key_is_masked() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
phases:
  build:
    commands:
      - aws sts get-caller-identity --query Arn --output text
      - python3 creds.py
"#,
    );
    p.write("creds.py", CREDS);
    let secret = secret_key();
    let mut cmd = runner_with_aws(&p, &secret);
    cmd.args(["--build-role", "arn:aws:iam::123456789012:role/build-role"]);
    let run = Run::from(cmd.output().expect("run runner"));
    assert_eq!(run.code, 0, "{}", run.debug());
    let project = p
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let arn = format!("arn:aws:sts::123456789012:assumed-role/build-role/runner-{project}");
    assert!(run.has_line(&arn), "expected {arn}\n{}", run.debug());
    // Temporary credentials (ASIA…), whose secret key runner masks though it never had it
    // before the build.
    assert!(run.has_line("id=ASIA"), "{}", run.debug());
    assert!(run.has_line("key=***"), "{}", run.debug());
}

#[test]
fn with_build_credentials_none_nothing_is_served_or_passed_in() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
phases:
  build:
    commands:
      - echo "uri=[${AWS_CONTAINER_CREDENTIALS_FULL_URI-}] endpoint=[${AWS_ENDPOINT_URL-}] token=[${AWS_CONTAINER_AUTHORIZATION_TOKEN:+set}]"
      - aws sts get-caller-identity --cli-read-timeout 5 --cli-connect-timeout 5 || echo "no credentials"
"#,
    );
    let secret = secret_key();
    let mut cmd = runner_with_aws(&p, &secret);
    cmd.args(["--build-credentials", "none"]);
    let run = Run::from(cmd.output().expect("run runner"));
    assert_eq!(run.code, 0, "{}", run.debug());
    assert!(
        run.has_line("uri=[] endpoint=[] token=[]"),
        "{}",
        run.debug()
    );
    assert!(run.has_line("no credentials"), "{}", run.debug());
    assert!(!run.stdout.contains(&secret));
}
