//! Bad numbers and addresses on the command line: refused by the flag parser (exit 2, a
//! message naming the flag and the rule), never a panic (exit 101) and never retried.

use std::process::Command;

fn runner(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(args)
        .env_remove("RUNNER_REGISTRY_ENDPOINTS")
        .env_remove("RUNNER_IMAGE")
        .output()
        .unwrap_or_else(|e| panic!("runner: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

const TIMEOUT_RULE: &str =
    "must be a number of minutes above 0 and at most 2160 (CodeBuild's limit), e.g. 30 or 0.5";
const NO_SUCH_DIR: &str = "/nonexistent/runner-cli-input";

#[test]
fn bad_numbers_exit_2_with_the_rule() {
    let cases: &[(&[&str], &str)] = &[
        (&["build", "--timeout", "1e30"], TIMEOUT_RULE),
        (&["build", "--timeout", "inf"], TIMEOUT_RULE),
        (&["build", "--timeout", "nan"], TIMEOUT_RULE),
        (&["build", "--timeout", "0"], TIMEOUT_RULE),
        (&["build", "--timeout=-1"], TIMEOUT_RULE),
        (&["build", "--timeout", "2161"], TIMEOUT_RULE),
        (&["build", "--concurrency", "0"], "0 is not in 1..=100"),
        (&["build", "--concurrency", "101"], "101 is not in 1..=100"),
        (&["build", "--cache-size", "0"], "0 is not in 1..=16777216"),
        (
            &["push", "--compression-level", "10", "a", "h.io/b"],
            "10 is not in 1..=9",
        ),
        (
            &["push", "--compression-level", "0", "a", "h.io/b"],
            "0 is not in 1..=9",
        ),
    ];
    // A real project, so that a value the parser let through would reach the build (where
    // 1e30 and inf used to panic).
    let src = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        src.path().join("buildspec.yml"),
        "version: 0.2\nphases:\n  build:\n    commands:\n      - true\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let src = src.path().to_string_lossy().to_string();
    for (args, rule) in cases {
        let mut args = args.to_vec();
        if args[0] == "build" {
            args.extend(["--source", &src, "--image", "runner/busybox:latest"]);
        }
        let (code, stderr) = runner(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: invalid value") && stderr.contains(rule),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn ports_out_of_range_are_refused_before_any_connection() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["push", "runner/busybox:latest", "127.0.0.1:99999/app"],
            "`127.0.0.1:99999/app`: port `99999` is not a TCP port (1 to 65535)",
        ),
        (
            &["push", "a", "127.0.0.1:5000/app", "--registry-endpoint", "127.0.0.1:5000=http://127.0.0.1:99999"],
            "`http://127.0.0.1:99999` is not an http:// or https:// URL with a host: invalid port number",
        ),
        (
            &["push", "a", "127.0.0.1:5000/app", "--registry-endpoint", "127.0.0.1:99999=http://127.0.0.1:5000"],
            "`127.0.0.1:99999`: port `99999` is not a TCP port",
        ),
        (
            &["push", "a", "127.0.0.1:5000/app", "--registry-endpoint", "127.0.0.1:5000"],
            "expected HOST=URL",
        ),
        (
            &["sign", "127.0.0.1:99999/app:1", "--key", "cosign.key"],
            "port `99999` is not a TCP port",
        ),
        (
            &["verify", "localhost:0/app:1", "--key", "cosign.pub"],
            "port `0` is not a TCP port",
        ),
        (
            &["build", "--source", NO_SUCH_DIR, "--registry-endpoint", "h.io=ftp://127.0.0.1:5000"],
            "the scheme is ftp",
        ),
        (
            &["gitops", "bump", "--repo", "x", "--image", "x", "--digest", "x", "--forge-url", "http://127.0.0.1:99999"],
            "invalid port number",
        ),
    ];
    for (args, rule) in cases {
        let (code, stderr) = runner(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: invalid value") && stderr.contains(rule),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn good_values_pass_the_parser() {
    // Each gets past the flags and stops at the missing source directory.
    for args in [
        &["--timeout", "0.05"][..],
        &["--timeout", "2160"],
        &["--concurrency", "100"],
        &["--cache-size", "1"],
        &[
            "--registry-endpoint",
            "127.0.0.1:5000=http://127.0.0.1:65535",
        ],
        &["--registry-endpoint", "[::1]:5000=http://[::1]:5001"],
    ] {
        let mut all = vec!["build", "--source", NO_SUCH_DIR];
        all.extend(args);
        let (code, stderr) = runner(&all);
        assert!(!stderr.contains("invalid value"), "{args:?}: {stderr}");
        assert!(stderr.contains(NO_SUCH_DIR), "{args:?}: {stderr}");
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
    }
}
