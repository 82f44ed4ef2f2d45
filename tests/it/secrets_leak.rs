//! The leak suite: a build prints its secrets every way a shell can, and no value may appear
//! in anything runner prints or stores, while the build itself receives the real values.

use crate::support::{Project, Run};

const TOKEN: &str = "tok-8f3Kq9ZpL2mNw4";
const DB_PASSWORD: &str = "pw-X7!v$9'q\"Lm#2";
const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\nMVpOjBXdEKmYRtuSFNmWJlaZ09PaNd3\n-----END PRIVATE KEY-----";

fn secrets_file() -> String {
    serde_json::json!({
        "parameters": { "/app/token": TOKEN },
        "secrets": {
            "prod/db": { "user": "admin", "password": DB_PASSWORD },
            "tls/key": PEM,
        }
    })
    .to_string()
}

const BUILDSPEC: &str = r#"version: 0.2
env:
  parameter-store:
    TOKEN: /app/token
  secrets-manager:
    DB_PASSWORD: prod/db:password
    TLS_KEY: tls/key
phases:
  install:
    commands:
      - echo "token is $TOKEN"
      - echo "password is $DB_PASSWORD" >&2
  build:
    commands:
      - printf 'split:%s' "${TOKEN%????????}"; sleep 0.3; printf '%s\n' "${TOKEN#${TOKEN%????????}}"
      - printf '%s' "${TOKEN%????????}" >&2; echo "${TOKEN#${TOKEN%????????}}"
      - env | sort
      - set -x; echo "$TOKEN"; test -n "$DB_PASSWORD"; set +x
      - printf '{"password":"%s","token":"%s"}\n' "$DB_PASSWORD" "$TOKEN"
      - |
        cat <<EOF
        heredoc: $TOKEN
        $TLS_KEY
        EOF
      - echo "$TLS_KEY"
      - printf '%s' "$TOKEN" | base64
      - printf 'admin:%s' "$DB_PASSWORD" | base64
      - echo "failing with $TOKEN" && false
    finally:
      - printf '%s' "$TOKEN" | sha256sum
      - printf '%s' "$DB_PASSWORD" | sha256sum
      - printf '%s' "$TLS_KEY" | sha256sum
      - mkdir -p out && echo "$TOKEN" > out/token.txt
artifacts:
  name: out-$TOKEN
  files:
    - out/token.txt
"#;

fn sha256(text: &str) -> String {
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("sha256sum: {e}"));
    use std::io::Write;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Every form of every secret that must never appear.
fn forbidden() -> Vec<String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut v = vec![
        TOKEN.to_string(),
        DB_PASSWORD.to_string(),
        PEM.to_string(),
        b64.encode(TOKEN),
        b64.encode(format!("admin:{DB_PASSWORD}")),
        serde_json::to_string(DB_PASSWORD)
            .unwrap_or_default()
            .trim_matches('"')
            .to_string(),
    ];
    for line in PEM.lines().filter(|l| !l.starts_with("-----")) {
        v.push(line.to_string());
    }
    v
}

fn assert_clean(what: &str, text: &str) {
    for f in forbidden() {
        assert!(
            !text.contains(&f),
            "{what} leaks a secret form {:?}…",
            f.get(..6).unwrap_or("")
        );
    }
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

#[test]
fn no_secret_value_reaches_any_output_or_file() {
    let p = Project::new();
    p.write("buildspec.yml", BUILDSPEC);
    p.write("secrets.json", &secrets_file());
    let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let secrets_path = p.path().join("secrets.json").display().to_string();
    let artifacts = out.path().display().to_string();

    let json = p.build(&["--secrets-file", &secrets_path, "--artifacts", &artifacts]);
    let human = Run::from(
        p.runner()
            .args(["build", "--image", crate::support::IMAGE, "--source"])
            .arg(p.path())
            .args(["--secrets-file", &secrets_path])
            .output()
            .unwrap_or_else(|e| panic!("{e}")),
    );

    for run in [&json, &human] {
        // The build ran and failed where the buildspec says so, not before.
        assert_eq!(run.code, 1, "{}", run.debug());
        assert_clean("stdout", &run.stdout);
        assert_clean("stderr", &run.stderr);
        // The build itself received the real values.
        for value in [TOKEN, DB_PASSWORD, PEM] {
            assert!(
                run.stdout.contains(&sha256(value)),
                "the build did not see the real value"
            );
        }
        assert!(run.stdout.contains("***"));
    }
    let logs = json.logs();
    assert!(logs.iter().any(|l| l == "token is ***"), "{logs:?}");
    assert!(logs.iter().any(|l| l == "split:***"), "{logs:?}");
    assert!(logs.iter().any(|l| l == "TOKEN=***"), "{logs:?}");
    assert!(logs.iter().any(|l| l == "heredoc: ***"), "{logs:?}");

    let mut checked = 0;
    for file in files_under(p.data.path()) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap_or_default()).into_owned();
        assert_clean(&file.display().to_string(), &text);
        checked += 1;
    }
    assert!(checked >= 2, "the data directory holds the build logs");
    // The artifact itself is the build's output and holds what the build wrote; its name,
    // which runner reports, does not.
    for file in files_under(out.path()) {
        assert_clean("artifact path", &file.display().to_string());
    }
}

#[test]
fn a_missing_secret_stops_the_build_before_anything_runs_naming_only_references() {
    let p = Project::new();
    p.write("buildspec.yml", BUILDSPEC);
    p.write(
        "secrets.json",
        &serde_json::json!({ "parameters": { "/app/token": TOKEN } }).to_string(),
    );
    let before = crate::support::runner_containers(None);
    let run = p.build(&[
        "--secrets-file",
        &p.path().join("secrets.json").display().to_string(),
    ]);
    assert_eq!(run.code, 2, "{}", run.debug());
    assert!(run.events.is_empty(), "nothing ran: {}", run.stdout);
    assert!(run.stderr.contains("prod/db"), "{}", run.stderr);
    assert!(run.stderr.contains("tls/key"), "{}", run.stderr);
    assert!(run.stderr.contains("DB_PASSWORD"), "{}", run.stderr);
    assert_clean("stderr", &run.stderr);
    assert!(crate::support::runner_containers(None) <= before);
}

/// `runner build` end to end against moto: values reach the build, never the output; a
/// missing reference stops the build before a container starts.
#[test]
fn runner_build_resolves_through_aws_endpoints_and_masks() {
    let moto = crate::support_moto::moto();
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
env:
  parameter-store:
    SECURE: /t/secure
  secrets-manager:
    DB_PASSWORD: t/db:password
    DB_USER: t/db:username
phases:
  build:
    commands:
      - echo "secure=$SECURE user=$DB_USER password=$DB_PASSWORD"
      - printf '%s' "$SECURE" | sha256sum
"#,
    );
    // `runner build --json` against moto, as a developer with AWS settings would run it.
    let build_with_aws = |p: &Project| {
        let out = p
            .runner()
            .args([
                "build",
                "--json",
                "--image",
                crate::support::IMAGE,
                "--source",
            ])
            .arg(p.path())
            .env("AWS_ENDPOINT_URL", &moto.endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test-secret-key-of-runner")
            .env("AWS_REGION", "us-east-1")
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        Run::from(out)
    };
    let run = build_with_aws(&p);
    assert_eq!(run.code, 0, "{}", run.debug());
    assert!(
        run.has_line("secure=*** user=*** password=***"),
        "{}",
        run.debug()
    );
    assert!(run.stdout.contains(&sha256("secure-value")));
    for v in ["secure-value", "pw-1"] {
        assert!(!run.stdout.contains(v) && !run.stderr.contains(v));
    }

    p.write(
        "buildspec.yml",
        "version: 0.2\nenv:\n  parameter-store:\n    A: /t/does-not-exist\n  secrets-manager:\n    B: t/nope:key\nphases:\n  build:\n    commands:\n      - echo never\n",
    );
    let missing = build_with_aws(&p);
    assert_eq!(missing.code, 2, "{}", missing.debug());
    assert!(missing.events.is_empty());
    assert!(
        missing.stderr.contains("/t/does-not-exist") && missing.stderr.contains("t/nope"),
        "{}",
        missing.stderr
    );
}

const DEBIAN: &str = "runner/debian:bookworm";
/// Over 57 bytes (so `base64` wraps it), with the characters quoting changes: `"`, `\`, `$`,
/// `'` and a space.
const LONG: &str = "lg-9fK2qZ8pW3xV7nB4mT6yR1cH5jD0sLaEuGiOwQ \"quoted\" \\back $dollar 'single'";
/// The part of `LONG` that no quoting changes.
const LONG_CORE: &str = "9fK2qZ8pW3xV7nB4mT6yR1cH5jD0sLaEuGiOwQ";
const SHORT: &str = "st-Hq7Zk2Vx9Lp4";
const SPLIT: &str = "sp-Wq3Rt8Yu1Io5";

/// Prints the secrets as hex (contiguous, upper case, `xxd -p` layout, `od`), wrapped
/// base64, shell-quoted, with a colour change inside, as UTF-16, and across the 4 MiB splits
/// of a 9 MB line of SPLIT repeated (wherever the splits fall, they cut some copy in two).
const FORMS_BUILDSPEC: &str = r#"version: 0.2
env:
  shell: bash
  parameter-store:
    LONG: /t/long
    SHORT: /t/short
    SPLIT: /t/split
phases:
  build:
    commands:
      - printf '%s' "$LONG" | od -An -tx1 -v | tr -d ' \n'; echo
      - printf '%s' "$LONG" | od -An -tx1 -v | tr -d ' \n' | tr a-f A-F; echo
      - printf 'key=%s\n' "$LONG" | od -An -tx1 -v | tr -d ' \n' | fold -w 60; echo
      - printf 'k:%s\n' "$LONG" | od -An -tx1 -v
      - printf 'user:%s' "$LONG" | base64
      - printf '%s' "$LONG" | base64 -w 64
      - printf '%q\n' "$LONG"
      - printf '%q\n' "$LONG"$'\t'
      - declare -p LONG
      - echo "${LONG@Q}"
      - printf '%s\033[31m%s\033[0m\n' "${SHORT:0:6}" "${SHORT:6}"
      - printf '%s' "$LONG" | iconv -f UTF-8 -t UTF-16LE; echo
      - printf '%s' "$LONG" | iconv -f UTF-8 -t UTF-16BE; echo
      - yes "$SPLIT" | head -n 600000 | tr -d '\n'; echo
      - printf '%s' "$LONG" | sha256sum
      - printf '%s' "$SHORT" | sha256sum
      - printf '%s' "$SPLIT" | sha256sum
"#;

/// `text` without ANSI CSI escape sequences (what a terminal shows).
fn strip_csi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('\x40'..='\x7e').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn hex(bytes: &[u8], sep: &str) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(sep)
}

/// What must not be visible of LONG, SHORT and SPLIT in any output: the values and the part no
/// quoting changes; their UTF-16; every 8-character run of their hex (both cases) and of
/// the base64 characters that depend on LONG alone; every 4-byte run of its `od` form.
/// Each with what it is.
fn forbidden_forms() -> Vec<(&'static str, String)> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    let mut v = vec![
        ("LONG", LONG.to_string()),
        ("LONG's unquoted part", LONG_CORE.to_string()),
        ("SHORT", SHORT.to_string()),
        ("SPLIT", SPLIT.to_string()),
    ];
    for value in [LONG, SHORT] {
        v.push(("UTF-16LE", value.chars().flat_map(|c| [c, '\0']).collect()));
        v.push(("UTF-16BE", value.chars().flat_map(|c| ['\0', c]).collect()));
    }
    let windows = |what: &'static str, text: &str, len: usize| -> Vec<(&'static str, String)> {
        text.as_bytes()
            .windows(len)
            .map(|w| (what, String::from_utf8_lossy(w).into_owned()))
            .collect()
    };
    let lower = hex(LONG.as_bytes(), "");
    v.extend(windows("hex", &lower, 8));
    v.extend(windows("HEX", &lower.to_uppercase(), 8));
    v.extend(windows("od", &hex(LONG.as_bytes(), " "), 11));
    // The base64 characters that depend on LONG alone, at each of the 3 byte offsets.
    for (offset, first) in [(0usize, 0usize), (1, 2), (2, 3)] {
        let mut padded = vec![0u8; offset];
        padded.extend_from_slice(LONG.as_bytes());
        let enc = b64.encode(&padded);
        let end = padded.len() * 8 / 6;
        v.extend(windows("base64", &enc[first..end], 8));
    }
    v
}

/// Which forms of a secret `text` shows, each as "`what`: form".
fn forms_shown(what: &str, text: &str) -> Vec<String> {
    let forms = forbidden_forms();
    let search = aho_corasick::AhoCorasick::new(forms.iter().map(|(_, f)| f))
        .unwrap_or_else(|e| panic!("{e}"));
    // As a terminal shows it, and with the pieces of a split line joined.
    let shown = strip_csi(text);
    let joined = shown.replace('\n', "");
    let mut seen = std::collections::BTreeSet::new();
    for (how, t) in [("", &shown), (" (lines joined)", &joined)] {
        for m in search.find_overlapping_iter(t.as_str()) {
            seen.insert(format!("{}{how}", forms[m.pattern().as_usize()].0));
        }
    }
    seen.into_iter()
        .map(|form| format!("{what}: {form}"))
        .collect()
}

/// Hex, wrapped base64, shell quoting, a colour change inside a value, UTF-16 and a secret
/// straddling the 4 MiB split of a long line: none shows in the terminal, the log file or
/// `--json`.
#[test]
fn encoded_quoted_coloured_and_split_secrets_are_masked() {
    let have_image = std::process::Command::new("docker")
        .args(["image", "inspect", DEBIAN])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        have_image,
        "docker image {DEBIAN} is missing: run `bash scripts/setup.sh --debian`"
    );
    let p = Project::new();
    p.write("buildspec.yml", FORMS_BUILDSPEC);
    p.write(
        "secrets.json",
        &serde_json::json!({ "parameters": { "/t/long": LONG, "/t/short": SHORT, "/t/split": SPLIT } }).to_string(),
    );
    let secrets_path = p.path().join("secrets.json").display().to_string();
    let build = |json: bool| {
        let mut c = p.runner();
        c.arg("build");
        if json {
            c.arg("--json");
        }
        c.args(["--image", DEBIAN, "--source"])
            .arg(p.path())
            .args(["--secrets-file", &secrets_path]);
        Run::from(c.output().unwrap_or_else(|e| panic!("{e}")))
    };
    let json = build(true);
    let human = build(false);
    let mut leaks = Vec::new();
    for (name, run) in [("--json", &json), ("terminal", &human)] {
        assert_eq!(run.code, 0, "{}", run.debug().get(..4000).unwrap_or(""));
        leaks.extend(forms_shown(&format!("{name} stdout"), &run.stdout));
        leaks.extend(forms_shown(&format!("{name} stderr"), &run.stderr));
        // The build itself received the real values.
        for value in [LONG, SHORT, SPLIT] {
            assert!(
                run.stdout.contains(&sha256(value)),
                "the build did not see a value"
            );
        }
    }
    // `--json`, decoded (NUL and ESC are escaped in the JSON text).
    let logs = json.logs();
    leaks.extend(forms_shown("--json log lines", &logs.join("\n")));
    let mut checked = 0;
    for file in files_under(p.data.path()) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap_or_default()).into_owned();
        leaks.extend(forms_shown("log file", &text));
        checked += 1;
    }
    assert!(checked >= 2, "the data directory holds the build logs");
    assert!(leaks.is_empty(), "secrets shown: {leaks:#?}");
    // Something was masked in every command's output, the split line included.
    assert!(
        logs.iter().filter(|l| l.contains("***")).count() >= 13,
        "{logs:?}"
    );
    let pieces: Vec<&String> = logs.iter().filter(|l| l.len() > 100_000).collect();
    assert!(pieces.len() >= 2, "the long line was not split");
    assert!(
        pieces.iter().all(|l| l.bytes().all(|b| b == b'*')),
        "a piece of the split line is not all masked"
    );
}
