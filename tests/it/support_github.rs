//! The strict GitHub stand-in (tests/it/forge_github.py): every request is validated
//! against GitHub's published OpenAPI description (@octokit/openapi, fetched once into
//! ~/.cache/runner-test by scripts/octokit-openapi.sh). Needs python3 with `jsonschema`
//! and npm.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use crate::support::KillOnDrop;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A running stand-in: accepts `token`, listens on `port` (0: a free one), and takes
/// `extra` arguments (`--git-root DIR` for the repositories it serves). Killed on drop.
pub struct GitHubStandIn {
    _child: KillOnDrop,
    pub port: u16,
}

impl GitHubStandIn {
    pub fn start(token: &str, port: u16, extra: &[&OsStr]) -> GitHubStandIn {
        let out = Command::new("bash")
            .arg(Path::new(ROOT).join("scripts/octokit-openapi.sh"))
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "octokit-openapi.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let spec = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let mut child = Command::new("python3")
            .arg(Path::new(ROOT).join("tests/it/forge_github.py"))
            .args(["--spec", &spec, "--token", token])
            .args(["--port", &port.to_string()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 tests/it/forge_github.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let child = KillOnDrop(child);
        let port: u16 = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!("stand-in did not start: {line:?} (pip install jsonschema?)")
            });
        GitHubStandIn {
            _child: child,
            port,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn api(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
