//! Snapshot tests over `fixtures/scan/secrets/cases` (ruff style: one fixture per rule
//! group with true positives and look-alikes, a committed `.snap.json` per fixture;
//! `UPDATE_SNAPSHOTS=1 cargo test` rewrites them) plus loader, walker and baseline tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::*;
use crate::scan::model::{SecretFinding, Severity};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scan/secrets")
}

fn scanner() -> &'static SecretScanner {
    static SCANNER: std::sync::OnceLock<SecretScanner> = std::sync::OnceLock::new();
    SCANNER.get_or_init(|| SecretScanner::default_rules().expect("default rule pack compiles"))
}

fn case_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures().join("cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(files.len() >= 20, "fixtures missing: {files:?}");
    files
}

fn snapshot_of(findings: &[SecretFinding]) -> serde_json::Value {
    serde_json::Value::Array(
        findings
            .iter()
            .map(|f| {
                serde_json::json!({
                    "rule_id": f.rule_id,
                    "line": f.location.line,
                    "column": f.location.column,
                    "redacted": f.redacted,
                    "severity": f.severity,
                })
            })
            .collect(),
    )
}

fn scan_case(s: &SecretScanner, path: &Path) -> (String, Vec<SecretFinding>) {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let data = std::fs::read(path).unwrap();
    let findings = s.scan_bytes(&name, &data, None);
    (String::from_utf8(data).unwrap(), findings)
}

#[test]
fn snapshots_match() {
    let s = scanner();
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1");
    let snap_dir = fixtures().join("snapshots");
    let mut mismatches = Vec::new();
    for path in case_files() {
        let (_, findings) = scan_case(s, &path);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let snap_path = snap_dir.join(format!("{name}.snap.json"));
        let actual = serde_json::to_string_pretty(&snapshot_of(&findings)).unwrap() + "\n";
        if update {
            std::fs::create_dir_all(&snap_dir).unwrap();
            std::fs::write(&snap_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&snap_path).unwrap_or_default();
        if expected != actual {
            mismatches.push(format!("--- {}\n+++ actual\n{actual}", snap_path.display()));
        }
    }
    assert!(
        mismatches.is_empty(),
        "snapshots differ (review, then UPDATE_SNAPSHOTS=1 cargo test):\n{}",
        mismatches.join("\n")
    );
}

/// Every rule of the default pack is exercised by at least one fixture.
#[test]
fn every_rule_has_a_true_positive() {
    let s = scanner();
    let mut seen = BTreeSet::new();
    for path in case_files() {
        for f in scan_case(s, &path).1 {
            seen.insert(f.rule_id);
        }
    }
    let missing: Vec<&str> = s
        .rules()
        .iter()
        .map(|r| r.id.as_str())
        .filter(|id| !seen.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "rules without a fixture hit: {missing:?}"
    );
}

/// Look-alikes must stay silent: whole files (lockfiles, hashes), the lines after a
/// `false` marker comment, and lines holding known placeholder shapes.
#[test]
fn look_alikes_are_not_reported() {
    let s = scanner();
    let silent_files = [
        "package-lock.json",
        "yarn.lock",
        "Cargo.lock",
        "poetry.lock",
        "go.sum",
        "hashes.txt",
        "not-docker.json",
    ];
    let silent_markers = [
        "_hash",
        "checksum",
        "${",
        "{{",
        "<your",
        "changeme",
        "your_api_key_here",
        "request_id",
        "secret_id",
        "os.environ",
        "settings.",
        "get_api_key",
        "gitleaks:allow",
        "runner:allow",
        "MAX_TOKENS",
        "tokenizer",
        "os.Getenv",
        "cfg.Password",
        "passwordEnv",
        "data:image",
        "etag",
        "sha256:",
        "tokenUrl",
        "\"id\"",
        "password_file",
        "dummy",
        "xxxx",
        "SHA256",
        "$API_TOKEN",
        "EXAMPLE",
        "devstoreaccount1",
        "sk_test_4eC39",
        "no-colon",
        "pk_live_",
    ];
    let mut checked_lines = 0;
    for path in case_files() {
        let (text, findings) = scan_case(s, &path);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if silent_files.contains(&name.as_str()) {
            assert!(findings.is_empty(), "{name}: {findings:#?}");
            checked_lines += text.lines().count();
            continue;
        }
        let lines: Vec<&str> = text.lines().collect();
        let false_from = lines
            .iter()
            .position(|l| {
                l.contains("# false") || l.contains("// false") || l.contains("<!-- false")
            })
            .map_or(usize::MAX, |i| i + 1);
        for f in &findings {
            let line_no = f.location.line.unwrap() as usize;
            let line = lines[line_no - 1];
            assert!(
                line_no < false_from,
                "{name}:{line_no} is a look-alike but was reported: {f:?}"
            );
            for m in silent_markers {
                assert!(!line.contains(m), "{name}:{line_no} ({m}) reported: {f:?}");
            }
        }
        checked_lines += lines.len();
    }
    assert!(checked_lines > 200);
}

#[test]
fn findings_are_redacted_and_fingerprinted() {
    let s = scanner();
    let mut total = 0;
    for path in case_files() {
        let (text, findings) = scan_case(s, &path);
        for f in findings {
            total += 1;
            assert!(
                f.redacted == "***"
                    || (f.redacted.ends_with("***") && f.redacted.chars().count() == 7),
                "{f:?}"
            );
            assert_eq!(f.fingerprint.len(), 64);
            assert!(f.fingerprint.bytes().all(|b| b.is_ascii_hexdigit()));
            // The redacted text never contains 5+ consecutive characters of the line's secret.
            let shown = f.redacted.trim_end_matches('*');
            assert!(shown.len() <= 4);
            if f.rule_id == "private-key" || f.rule_id == "docker-config-auth" {
                assert_eq!(f.redacted, "***");
            }
            assert!(text.lines().count() >= f.location.line.unwrap() as usize);
        }
    }
    assert!(total >= 50, "{total}");
}

#[test]
fn private_key_reports_start_line() {
    let s = scanner();
    let pem = "intro\n\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx2n8Qq1Hj5ZpYt3K0v9wLmNcRbTeUfGdHiJkLaMbNcOdPeQf\nRgShTiUjVkWlXmYnZoApBqCrDsEtFuGvHwIxJyKzL0M1N2O3P4Q5R6S7T8U9V0W1\n-----END RSA PRIVATE KEY-----\n";
    let f = s.scan_bytes("k.pem", pem.as_bytes(), None);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].rule_id, "private-key");
    assert_eq!(f[0].location.line, Some(3));
    assert_eq!(f[0].location.column, Some(1));
    assert_eq!(f[0].redacted, "***");
    assert!(f[0].verified_format);
    // A public key of the same shape is not reported.
    let public = pem.replace("RSA PRIVATE KEY", "PUBLIC KEY");
    assert!(s.scan_bytes("k.pub", public.as_bytes(), None).is_empty());
}

#[test]
fn columns_count_characters_and_layer_is_kept() {
    let s = scanner();
    let token = "ghp_Zq8RmT4vXk2LpN7sWc9YbH3jFd6GaQe1Uo5I";
    let text = format!("# héllo\nclé = \"{token}\"\n");
    let f = s.scan_bytes("etc/app.conf", text.as_bytes(), Some("sha256:abc"));
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].location.line, Some(2));
    assert_eq!(f[0].location.column, Some(8));
    assert_eq!(f[0].location.layer.as_deref(), Some("sha256:abc"));
    assert_eq!(f[0].redacted, "ghp_***");
    assert_eq!(f[0].severity, Severity::Critical);
    let with_allow = format!("token = \"{token}\" # runner:allow\n");
    assert!(s.scan_bytes("a", with_allow.as_bytes(), None).is_empty());
}

#[test]
fn binary_content_is_skipped() {
    let s = scanner();
    let mut data = b"\x00\x01binary".to_vec();
    data.extend_from_slice(b"\nghp_Zq8RmT4vXk2LpN7sWc9YbH3jFd6GaQe1Uo5I\n");
    assert!(s.scan_bytes("bin", &data, None).is_empty());
    data.remove(0);
    data.remove(0);
    assert_eq!(s.scan_bytes("txt", &data, None).len(), 1);
}

#[test]
fn specific_rule_wins_over_generic() {
    let s = scanner();
    let text = "GITHUB_TOKEN=ghp_Zq8RmT4vXk2LpN7sWc9YbH3jFd6GaQe1Uo5I\n";
    let f = s.scan_bytes("a.env", text.as_bytes(), None);
    assert_eq!(
        f.iter().map(|f| f.rule_id.as_str()).collect::<Vec<_>>(),
        ["github-pat"]
    );
}

// ---------------------------------------------------------------------------------
// gitleaks TOML loader
// ---------------------------------------------------------------------------------

const GITLEAKS_CFG: &str = r#"
title = "custom"
[extend]
useDefault = true

[[rules]]
id = "acme-key"
description = "ACME key"
regex = '''acme_(?:key|tok)\s*=\s*"?([a-z0-9]{16})"?'''
secretGroup = 1
entropy = 3
keywords = ["ACME_"]
tags = ["acme"]
  [rules.allowlist]
  stopwords = ["deadbeef"]
  [[rules.allowlists]]
  condition = "AND"
  regexTarget = "line"
  regexes = ['''fixture''']
  paths = ['''^test/''']

[[rules]]
id = "pem-file"
description = "a key file"
path = '''\.pem$'''

[allowlist]
paths = ['''^vendor/''']

[[allowlists]]
targetRules = ["acme-key"]
regexes = ['''^0000''']
"#;

#[test]
fn gitleaks_config_loads_with_semantics() {
    let s = SecretScanner::from_rule_pack(GITLEAKS_CFG).unwrap();
    assert_eq!(s.rules().len(), 2);
    assert!(
        s.warnings().iter().any(|w| w.contains("[extend]")),
        "{:?}",
        s.warnings()
    );
    let hit = |path: &str, text: &str| s.scan_bytes(path, text.as_bytes(), None);

    let good = "acme_key = \"k3j9x0q7m2p5v8w1\"\n";
    let f = hit("src/a.py", good);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].rule_id, "acme-key");
    assert_eq!(f[0].severity, Severity::High);
    assert!(!f[0].verified_format);
    assert_eq!(f[0].location.column, Some(13));
    // Keyword is matched case-insensitively; without it the regex never runs.
    assert_eq!(
        hit("a", "ACME_KEY check: acme_key = \"k3j9x0q7m2p5v8w1\"").len(),
        1
    );
    assert!(hit("a", "acmekey = \"k3j9x0q7m2p5v8w1\"").is_empty());
    // Entropy: a low-entropy secret is dropped.
    assert!(hit("a", "acme_key = \"aaaaaaaabbbbbbbb\"").is_empty());
    // Rule stopword.
    assert!(hit("a", "acme_key = \"x1deadbeefq9z7w3\"").is_empty());
    // AND allowlist needs both the path and the line regex.
    assert!(hit("test/a.py", "acme_key = \"k3j9x0q7m2p5v8w1\" # fixture").is_empty());
    assert_eq!(hit("test/a.py", good).len(), 1);
    assert_eq!(
        hit("src/a.py", "acme_key = \"k3j9x0q7m2p5v8w1\" # fixture").len(),
        1
    );
    // Targeted global allowlist and global path allowlist.
    assert!(hit("a", "acme_key = \"0000x0q7m2p5v8w1\"").is_empty());
    assert!(hit("vendor/a.py", good).is_empty());
    assert!(s.path_allowed("vendor/x"));
    // Path-only rule: the file itself is the finding.
    let f = hit("certs/server.pem", "anything");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].rule_id, "pem-file");
    assert_eq!(f[0].redacted, "***");
}

#[test]
fn gitleaks_config_errors_name_the_rule() {
    let bad_regex = "[[rules]]\nid = \"look-behind\"\nregex = '''(?<=x)abc'''\n";
    let err = SecretScanner::from_rule_pack(bad_regex)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("look-behind") && err.contains("not supported"),
        "{err}"
    );

    let dup = "[[rules]]\nid = \"a\"\nregex = 'x'\n[[rules]]\nid = \"a\"\nregex = 'y'\n";
    assert!(
        matches!(SecretScanner::from_rule_pack(dup), Err(SecretsError::DuplicateRuleId(id)) if id == "a")
    );

    let no_id = "[[rules]]\nregex = 'x'\n";
    assert!(matches!(
        SecretScanner::from_rule_pack(no_id),
        Err(SecretsError::MissingRuleId)
    ));

    let empty = "[[rules]]\nid = \"e\"\n";
    assert!(matches!(
        SecretScanner::from_rule_pack(empty),
        Err(SecretsError::EmptyRule { .. })
    ));

    let group = "[[rules]]\nid = \"g\"\nregex = '(a)(b)'\nsecretGroup = 3\n";
    let err = SecretScanner::from_rule_pack(group)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`g`") && err.contains("secretGroup 3"),
        "{err}"
    );

    let cond = "[[rules]]\nid = \"c\"\nregex = 'x'\n[rules.allowlist]\ncondition = \"XOR\"\n";
    let err = SecretScanner::from_rule_pack(cond).unwrap_err().to_string();
    assert!(err.contains("XOR") && err.contains("OR, AND"), "{err}");

    let toml_err = SecretScanner::from_rule_pack("[[rules]\n")
        .unwrap_err()
        .to_string();
    assert!(toml_err.contains("not valid TOML"), "{toml_err}");
}

#[test]
fn multiline_detection() {
    use super::rules::looks_multiline;
    assert!(looks_multiline(r"-----BEGIN[\s\S-]*KEY"));
    assert!(looks_multiline(r"(?is)a.b"));
    assert!(looks_multiline(r"a\nb"));
    assert!(!looks_multiline(r"(?i)ab\s*c"));
    assert!(!looks_multiline(r"(?-s)ab"));
}

// ---------------------------------------------------------------------------------
// Directory walk and baseline
// ---------------------------------------------------------------------------------

const TOKEN_A: &str = "ghp_Zq8RmT4vXk2LpN7sWc9YbH3jFd6GaQe1Uo5I";
const TOKEN_B: &str = "npm_Hq3ZpW8xLm2KcV7tRb9NfJ4sGd6YaE1uQo5T";

fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("src/deep")).unwrap();
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::write(root.join(".gitignore"), "ignored.txt\n").unwrap();
    std::fs::write(root.join("src/deep/b.txt"), format!("x\ntoken={TOKEN_B}\n")).unwrap();
    std::fs::write(root.join("a.env"), format!("GH={TOKEN_A}\n")).unwrap();
    std::fs::write(root.join(".env"), format!("NPM={TOKEN_B}\n")).unwrap();
    std::fs::write(root.join("ignored.txt"), format!("GH={TOKEN_A}\n")).unwrap();
    std::fs::write(root.join(".git/config"), format!("GH={TOKEN_A}\n")).unwrap();
    std::fs::write(
        root.join("blob.bin"),
        [b"\x00\x00".as_slice(), TOKEN_A.as_bytes()].concat(),
    )
    .unwrap();
    std::fs::write(
        root.join("big.txt"),
        format!("{}\n{TOKEN_A}\n", "a".repeat(4096)),
    )
    .unwrap();
    dir
}

#[test]
fn scan_dir_walks_filters_and_sorts() {
    let dir = tree();
    let s = scanner();
    let opts = ScanOptions {
        max_file_size: 1024,
        threads: 2,
        ..ScanOptions::default()
    };
    let out = s.scan_dir(dir.path(), &opts).unwrap();
    let got: Vec<(String, Option<u32>, String)> = out
        .findings
        .iter()
        .map(|f| (f.location.path.clone(), f.location.line, f.rule_id.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (".env".to_string(), Some(1), "npm-access-token".to_string()),
            ("a.env".to_string(), Some(1), "github-pat".to_string()),
            (
                "src/deep/b.txt".to_string(),
                Some(2),
                "npm-access-token".to_string()
            ),
        ]
    );
    // .gitignore, a.env, .env, src/deep/b.txt scanned; blob.bin and big.txt skipped.
    assert_eq!(out.files_scanned, 4);
    assert_eq!(out.skipped_files, 2);
    assert!(out.bytes_scanned > 0);

    let all = ScanOptions {
        respect_gitignore: false,
        max_file_size: 1 << 20,
        threads: 1,
        ..ScanOptions::default()
    };
    let out = s.scan_dir(dir.path(), &all).unwrap();
    let paths: BTreeSet<String> = out
        .findings
        .iter()
        .map(|f| f.location.path.clone())
        .collect();
    assert!(
        paths.contains("ignored.txt") && paths.contains("big.txt"),
        "{paths:?}"
    );
    assert!(!paths.iter().any(|p| p.starts_with(".git/")), "{paths:?}");

    // A single file can be scanned too; a missing path is an error.
    let one = s.scan_dir(&dir.path().join("a.env"), &opts).unwrap();
    assert_eq!(one.findings.len(), 1);
    assert_eq!(one.findings[0].location.path, "a.env");
    assert!(s.scan_dir(&dir.path().join("missing"), &opts).is_err());
}

#[test]
fn baseline_suppresses_known_findings_only() {
    let dir = tree();
    let s = scanner();
    let first = s.scan_dir(dir.path(), &ScanOptions::default()).unwrap();
    assert_eq!(first.findings.len(), 4);
    let file = dir.path().join("baseline.json");
    Baseline::from_findings(&first.findings[..2])
        .save(&file)
        .unwrap();
    let loaded = Baseline::load(&file).unwrap();
    assert_eq!(loaded.len(), 2);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(TOKEN_A) && !text.contains(TOKEN_B));

    // A new secret (and the one not in the baseline) is still reported.
    std::fs::write(
        dir.path().join("new.txt"),
        "k = ghp_Aa1Bb2Cc3Dd4Ee5Ff6Gg7Hh8Ii9Jj0KkLlMm\n",
    )
    .unwrap();
    let opts = ScanOptions {
        baseline: Some(loaded),
        ..ScanOptions::default()
    };
    let second = s.scan_dir(dir.path(), &opts).unwrap();
    assert_eq!(second.suppressed, 2);
    let paths: Vec<&str> = second
        .findings
        .iter()
        .map(|f| f.location.path.as_str())
        .collect();
    assert_eq!(paths, ["big.txt", "new.txt", "src/deep/b.txt"]);

    // Moving a secret to another line keeps its fingerprint.
    let moved = s.scan_bytes("a.env", format!("\n\nGH={TOKEN_A}\n").as_bytes(), None);
    assert_eq!(moved[0].fingerprint, first.findings[1].fingerprint);

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"version\": 1, \"findings\": [{\"fingerprint\": \"zz\", \"rule_id\": \"r\", \"path\": \"p\"}]}").unwrap();
    let err = Baseline::load(&bad).unwrap_err().to_string();
    assert!(
        err.contains("not a hex SHA-256") && err.contains("regenerate"),
        "{err}"
    );
}

#[test]
fn renderers_never_show_secrets() {
    let dir = tree();
    let out = scanner()
        .scan_dir(dir.path(), &ScanOptions::default())
        .unwrap();
    let table = render_table(&out);
    let json = render_json(&out);
    for text in [&table, &json] {
        assert!(!text.contains(TOKEN_A) && !text.contains(TOKEN_B));
    }
    assert!(
        table.contains("github-pat") && table.contains("a.env:1:4"),
        "{table}"
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["findings"].as_array().unwrap().len(), 4);
    assert_eq!(v["findings"][0]["redacted"], "npm_***");
}

#[test]
fn loads_upstream_gitleaks_config() {
    let text = std::fs::read_to_string(fixtures().join("gitleaks-upstream.toml")).unwrap();
    let s = SecretScanner::from_rule_pack(&text).unwrap();
    assert!(s.rules().len() > 150, "{}", s.rules().len());
    let data = std::fs::read(fixtures().join("cases/github.txt")).unwrap();
    let ids: BTreeSet<String> = s
        .scan_bytes("github.txt", &data, None)
        .into_iter()
        .map(|f| f.rule_id)
        .collect();
    assert!(ids.contains("github-pat"), "{ids:?}");
    // Its global allowlist skips lockfiles by path.
    assert!(s.path_allowed("web/package-lock.json"));
    assert!(!scanner().path_allowed("web/package-lock.json"));
}

#[test]
fn go_regex_translation() {
    use super::gitleaks::translate_go_regex as t;
    assert_eq!(t(r"a{2,3}b{4}c{5,}"), r"a{2,3}b{4}c{5,}");
    assert_eq!(t(r"\$?{{[^}]+}}"), r"\$?\{\{[^}]+\}\}");
    assert_eq!(t(r"\p{L}+\x{41}"), r"\p{L}+\x{41}");
    assert_eq!(t(r"\Qa.b{\E+"), r"a\.b\{+");
    assert_eq!(t(r"[]a{]"), r"[\]a{]");
    assert!(regex::Regex::new(&t(r"x{{y}}")).unwrap().is_match("x{{y}}"));
}

/// Arbitrary bytes around keywords never panic and never report from binary data.
#[test]
fn random_input_does_not_panic() {
    let s = scanner();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let pieces: [&[u8]; 10] = [
        b"password=",
        b"-----BEGIN RSA PRIVATE KEY-----",
        b"\"auth\": \"",
        b"://u:",
        b"@h",
        b"\n",
        b"ghp_",
        b"\xff\xfe",
        b"eyJ",
        b"AKIA",
    ];
    for round in 0..300 {
        let mut data = Vec::new();
        for _ in 0..(next() % 64) {
            if next() % 3 == 0 {
                data.extend_from_slice(pieces[(next() % 10) as usize]);
            } else {
                data.push(((next() % 94) + 33) as u8);
            }
        }
        let findings = s.scan_bytes("r", &data, None);
        for f in &findings {
            assert!(f.location.line.unwrap() >= 1 && f.location.column.unwrap() >= 1);
            assert!(f.redacted.chars().count() <= 7, "{}", f.redacted);
        }
        if round % 2 == 0 {
            data.insert(0, 0);
            assert!(s.scan_bytes("r", &data, None).is_empty());
        }
    }
}
