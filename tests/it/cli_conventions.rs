//! One set of conventions across commands: `--json` everywhere results are printed, the
//! variables read listed in `--help`, shell completions, `runner version`, and `-v` /
//! RUST_LOG diagnostics on standard error (none by default).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output};

/// The variables the CLI reads, removed so that the machine's own do not leak in.
const VARS: &[&str] = &[
    "RUNNER_IMAGE",
    "RUNNER_DATA_DIR",
    "RUNNER_ADVISORIES",
    "RUNNER_REGISTRY_ENDPOINTS",
    "RUNNER_REGISTRY_TIMEOUT",
    "RUNNER_SIGN_KEY",
    "COSIGN_PASSWORD",
    "RUST_LOG",
];

fn runner() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
    for v in VARS {
        c.env_remove(v);
    }
    c
}

fn run(c: &mut Command) -> Output {
    c.output().unwrap_or_else(|e| panic!("runner: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

/// Standard output as one JSON value, or fail with what was printed.
fn json_of(what: &str, out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: stdout is not one JSON value ({e})\nstdout: {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

/// An HTTP server on loopback answering every GET with `body` (for `db update`).
fn serve(body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut s) = stream else { continue };
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                if line == "\r\n" {
                    break;
                }
                line.clear();
            }
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        }
    });
    format!("http://{addr}")
}

/// An OSV dump with one record.
fn osv_zip() -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        z.start_file(
            "RUSTSEC-0000-0001.json",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        z.write_all(br#"{"id":"RUSTSEC-0000-0001","affected":[]}"#)
            .unwrap();
        z.finish().unwrap();
    }
    buf.into_inner()
}

#[test]
fn json_is_accepted_by_every_command_that_prints_results() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("buildspec.yml"),
        "version: 0.2\nphases:\n  build:\n    commands:\n      - true\n",
    )
    .unwrap();

    // validate: one object per file.
    let out = run(runner()
        .args(["validate", "--json"])
        .arg(d.join("buildspec.yml")));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for line in text(&out.stdout).lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("validate: {e}: {line}"));
    }

    // scan secrets / deps: --json stands for --format json.
    for kind in ["secrets", "deps"] {
        let out = run(runner().args(["scan", kind]).arg(d).arg("--json"));
        assert_eq!(out.status.code(), Some(0), "{kind}: {}", text(&out.stderr));
        let v = json_of(kind, &out);
        assert_eq!(v["passed"], Value::Bool(true), "{kind}: {v}");
    }
    // ... and not together with another format.
    let out = run(runner()
        .args(["scan", "secrets"])
        .arg(d)
        .args(["--json", "--format", "sarif"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // key generate: the files written (password from the flag here, not the variable).
    let keys = d.join("keys");
    let out = run(runner()
        .args(["key", "generate", "--json", "--key-password", ""])
        .arg("--output-dir")
        .arg(&keys));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = json_of("key generate", &out);
    assert_eq!(v["ok"], Value::Bool(true), "{v}");
    for (field, file) in [("private_key", "cosign.key"), ("public_key", "cosign.pub")] {
        let path = v[field].as_str().unwrap_or_else(|| panic!("{field}: {v}"));
        assert_eq!(std::path::Path::new(path), keys.join(file));
        assert!(keys.join(file).is_file(), "{file} not written");
    }
    // A failure is one JSON object too (no password: exit 2).
    let out = run(runner()
        .args(["key", "generate", "--json", "--output-dir"])
        .arg(d.join("other")));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(json_of("key generate", &out)["ok"], Value::Bool(false));

    // db update: what was downloaded and where (the data directory from --data-dir).
    let base = serve(osv_zip());
    let data = d.join("data");
    let out = run(runner()
        .args(["db", "update", "--json", "--ecosystem", "crates.io"])
        .args(["--base-url", &base])
        .arg("--data-dir")
        .arg(&data));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = json_of("db update", &out);
    let target = data.join("advisories").join("crates.io").join("all.zip");
    assert_eq!(v["ok"], Value::Bool(true), "{v}");
    assert_eq!(v["dir"].as_str(), data.join("advisories").to_str(), "{v}");
    assert_eq!(v["updated"][0]["ecosystem"], "crates.io", "{v}");
    assert_eq!(v["updated"][0]["records"], 1, "{v}");
    assert_eq!(v["updated"][0]["path"].as_str(), target.to_str(), "{v}");
    assert!(target.is_file());

    // version.
    let out = run(runner().args(["version", "--json"]));
    assert_eq!(out.status.code(), Some(0));
    let v = json_of("version", &out);
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v}");

    // push / sign / verify: a failure before any registry is reached is JSON as well.
    let out = run(runner()
        .args(["verify", "127.0.0.1:1/app:1", "--json", "--key"])
        .arg(d.join("missing.pub")));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(json_of("verify", &out)["ok"], Value::Bool(false));
}

#[test]
fn completions_name_the_subcommands() {
    let out = run(runner().args(["completions", "bash"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let script = text(&out.stdout);
    assert!(script.contains("complete"), "{script}");
    for sub in [
        "build",
        "validate",
        "push",
        "sign",
        "verify",
        "scan",
        "db",
        "gitops",
        "cache",
        "version",
        "completions",
    ] {
        assert!(script.contains(sub), "bash completion lacks {sub}");
    }
    for shell in ["zsh", "fish"] {
        let out = run(runner().args(["completions", shell]));
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("validate"), "{shell}");
    }
}

#[test]
fn help_lists_the_variables_read_and_hides_secret_values() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["build", "--help"],
            &[
                "RUNNER_IMAGE",
                "RUNNER_DATA_DIR",
                "RUNNER_REGISTRY_ENDPOINTS",
                "RUNNER_SIGN_KEY",
                "COSIGN_PASSWORD",
            ],
        ),
        (
            &["push", "--help"],
            &["RUNNER_REGISTRY_ENDPOINTS", "RUNNER_REGISTRY_TIMEOUT"],
        ),
        (&["sign", "--help"], &["COSIGN_PASSWORD"]),
        (&["key", "generate", "--help"], &["COSIGN_PASSWORD"]),
        (&["scan", "deps", "--help"], &["RUNNER_ADVISORIES"]),
        (&["db", "update", "--help"], &["RUNNER_ADVISORIES"]),
    ];
    for (args, names) in cases {
        let out = run(runner()
            .args(*args)
            .env("COSIGN_PASSWORD", "hunter2-not-shown")
            .env("RUNNER_IMAGE", "shown/image:1"));
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let help = text(&out.stdout);
        for name in *names {
            assert!(
                help.contains(&format!("[env: {name}")),
                "{args:?}: no {name}\n{help}"
            );
        }
        assert!(
            !help.contains("hunter2"),
            "{args:?} shows the password\n{help}"
        );
    }
}

#[test]
fn verbose_shows_runner_diagnostics_on_stderr_and_the_default_shows_none() {
    // A project nobody builds: invalidating it connects to the engine and removes nothing.
    let project = format!("cli-conventions-{}", std::process::id());
    let invalidate = |extra: &[&str], rust_log: Option<&str>| {
        let mut c = runner();
        c.args(["cache", "invalidate", &project, "--json"])
            .args(extra)
            .env("NO_COLOR", "1");
        if let Some(v) = rust_log {
            c.env("RUST_LOG", v);
        }
        let out = run(&mut c);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        // Diagnostics never reach standard output: it stays one JSON object.
        assert_eq!(json_of("cache invalidate", &out)["ok"], Value::Bool(true));
        text(&out.stderr)
    };
    const LINE: &str = "connected to the Docker engine";

    let quiet = invalidate(&[], None);
    assert!(quiet.is_empty(), "default run printed to stderr: {quiet}");

    let verbose = invalidate(&["-v"], None);
    let line = verbose
        .lines()
        .find(|l| l.contains(LINE))
        .unwrap_or_else(|| panic!("-v: no `{LINE}` line in {verbose}"));
    assert!(line.contains("INFO") && line.contains("runner"), "{line}");
    assert!(!verbose.contains('\u{1b}'), "NO_COLOR ignored: {verbose:?}");

    let from_env = invalidate(&[], Some("runner=info"));
    assert!(from_env.contains(LINE), "RUST_LOG: {from_env}");
}
