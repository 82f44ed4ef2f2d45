//! Moto servers (AWS mock) for the AWS tests (secrets, S3 cache): each started once per
//! test process by `moto_helper.py` on a free loopback port, seeded, and stopped when
//! this process exits (the helper serves until its stdin closes).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use runner::secrets::aws::{AwsSettings, Credentials};

pub struct Moto {
    pub endpoint: String,
    /// Everything the helper printed (endpoint, ARNs, version ids, access keys).
    pub fixtures: serde_json::Value,
    /// Kept alive so the helper's stdin stays open until the process exits.
    _child: Mutex<Child>,
}

impl Moto {
    pub fn fixture(&self, key: &str) -> String {
        self.fixtures[key]
            .as_str()
            .unwrap_or_else(|| panic!("moto fixture {key} missing: {}", self.fixtures))
            .to_string()
    }

    /// Settings pointing the SDK at this server with the given keys.
    pub fn settings_with(&self, key: &str, secret: &str) -> AwsSettings {
        AwsSettings {
            endpoint_url: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            credentials: Some(Credentials::new(key, secret, None, None, "tests")),
            ..AwsSettings::default()
        }
    }

    /// Settings pointing the SDK at this server as the default (unrestricted) account.
    pub fn settings(&self) -> AwsSettings {
        self.settings_with("test", "test")
    }

    /// Runs a boto3 S3 call against this server: `script` is Python with `s3` (a
    /// client), `bucket`, `key` and `data` (stdin's bytes) defined; what it prints is
    /// returned.
    pub fn boto3_s3(&self, script: &str, bucket: &str, key: &str, data: &[u8]) -> String {
        let prelude = "import sys, boto3\n\
            s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
            aws_access_key_id='test', aws_secret_access_key='test')\n\
            bucket, key = sys.argv[2], sys.argv[3]\n\
            data = sys.stdin.buffer.read()\n";
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(format!("{prelude}{script}"))
            .args([&self.endpoint, bucket, key])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn python3");
        child.stdin.take().unwrap().write_all(data).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "boto3 script failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// The plain server: parameters and secrets of `moto_helper.py seed_plain`.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| start("plain"))
}

/// A second server with IAM enforcement on (see `moto_helper.py seed_auth`).
pub fn moto_with_auth() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| start("auth"))
}

/// A server with one empty bucket (`moto_helper.py s3`; fixture `bucket`).
pub fn moto_s3() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| start("s3"))
}

fn start(mode: &str) -> Moto {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/moto_helper.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn python3 (needed for the moto tests)");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read moto helper output");
    let fixtures: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|_| {
        panic!(
            "moto helper did not start (is moto installed? `pip install 'moto[server]'`); \
             run `python3 {} {mode}` to see why",
            script.display()
        )
    });
    let endpoint = fixtures["endpoint"]
        .as_str()
        .expect("endpoint in helper output")
        .to_string();
    Moto {
        endpoint,
        fixtures,
        _child: Mutex::new(child),
    }
}

/// `http://127.0.0.1:<port>` where nothing listens.
pub fn closed_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}
