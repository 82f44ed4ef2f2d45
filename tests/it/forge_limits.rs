//! A forge is untrusted input: `runner gitops bump` against a forge stand-in on loopback
//! that answers the pull-request list without end (or announces a huge body) fails with a
//! message naming the limit, having read about the limit and no more.
//!
//! The stand-in counts the bytes it managed to send before the client hung up: the client
//! cannot have held more than that, so a bound on it is a bound on what was read.
//! Needs: git.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::gitops_e2e::git;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "ghs_FORGElimitsTOKEN0123456789SECRET";
const DIGEST: &str = "sha256:1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a";
/// What the stand-in sends at most on one connection (a client without a cap reads it all).
const MAX_SEND: u64 = 128 << 20;
/// The client's cap on a successful answer (src/gitops/forge/mod.rs `MAX_ANSWER`).
const MAX_ANSWER: u64 = 8 << 20;
/// Room for what the loopback socket buffers hold beyond what the client read.
const SLACK: u64 = 24 << 20;

#[derive(Clone, Copy)]
enum Answer {
    /// 200, no Content-Length, a JSON array that never ends.
    Endless,
    /// 200 announcing a 1 TiB body, then nothing.
    HugeLength,
    /// 500 with a body that never ends.
    EndlessError,
}

/// Serves the pull-request list (GET .../pulls) as `answer`; anything else gets a short
/// 500. At most 8 connections, each bounded by MAX_SEND and a minute of silence. Returns
/// the API base and the bytes sent on the list request(s).
fn stand_in(answer: Answer) -> (String, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let api = format!("http://{}", l.local_addr().unwrap());
    let sent = Arc::new(AtomicU64::new(0));
    let sent2 = sent.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().take(8) {
            let Ok(s) = conn else { break };
            serve(s, answer, &sent2);
        }
    });
    (api, sent)
}

fn serve(mut s: TcpStream, answer: Answer, sent: &AtomicU64) {
    let limit = Some(Duration::from_secs(60));
    if s.set_read_timeout(limit).is_err() || s.set_write_timeout(limit).is_err() {
        return;
    }
    let Ok(clone) = s.try_clone() else { return };
    let mut r = BufReader::new(clone);
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; len.min(1 << 20)];
    let _ = r.read_exact(&mut body);
    let is_list = line.starts_with("GET /api/v3/repos/acme/config/pulls?");
    if !is_list {
        let msg = r#"{"message":"the stand-in only answers the pull-request list"}"#;
        let _ = write!(
            s,
            "HTTP/1.1 500 X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
            msg.len()
        );
        return;
    }
    let head = match answer {
        Answer::Endless => "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n[",
        Answer::HugeLength => "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1099511627776\r\nConnection: close\r\n\r\n",
        Answer::EndlessError => "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n[",
    };
    if s.write_all(head.as_bytes()).is_err() {
        return;
    }
    if let Answer::HugeLength = answer {
        // Nothing more: wait until the client hangs up (or a minute passes).
        let _ = s.read(&mut [0; 1]);
        return;
    }
    let item = r#"{"number":1,"html_url":"http://forge.invalid/acme/config/pull/1"},"#;
    let chunk = item.repeat((64 << 10) / item.len());
    while sent.load(Ordering::Relaxed) < MAX_SEND {
        match s.write(chunk.as_bytes()) {
            Ok(n) if n > 0 => {
                sent.fetch_add(n as u64, Ordering::Relaxed);
            }
            _ => return,
        }
    }
}

/// A bare config repository `<tmp>/acme/config.git` pinning ghcr.io/acme/shop:1.0.0.
fn config_repo(tmp: &Path) -> String {
    let bare = tmp.join("acme/config.git");
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "--quiet", "--bare", "-b", "main"]);
    let seed = tmp.join("seed");
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::write(
        seed.join("deployment.yaml"),
        "kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        - name: web\n          image: ghcr.io/acme/shop:1.0.0\n",
    )
    .unwrap();
    git(&seed, &["init", "--quiet", "-b", "main"]);
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "--quiet", "-m", "seed"]);
    let bare_s = bare.to_string_lossy().to_string();
    git(&seed, &["push", "--quiet", &bare_s, "main"]);
    bare_s
}

/// `runner gitops bump` against the stand-in: (success, stderr, bytes the stand-in sent).
fn bump(answer: Answer) -> (bool, String, u64) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = config_repo(tmp.path());
    let (api, sent) = stand_in(answer);
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["gitops", "bump", "--repo", &repo])
        .args(["--image", "ghcr.io/acme/shop", "--digest", DIGEST])
        .args(["--forge", "github", "--forge-url", &api])
        .env_remove("RUNNER_GITOPS_TOKEN")
        .env("GITHUB_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !stderr.contains(TOKEN) && !String::from_utf8_lossy(&out.stdout).contains(TOKEN),
        "{stderr}"
    );
    let sent = sent.load(Ordering::Relaxed);
    eprintln!("the stand-in sent {sent} bytes; runner said: {stderr}");
    (out.status.success(), stderr, sent)
}

#[test]
fn an_endless_pull_request_list_is_refused_at_the_limit() {
    let (ok, err, sent) = bump(Answer::Endless);
    assert!(!ok, "{err}");
    assert!(
        err.contains("GitHub API GET /repos/acme/config/pulls")
            && err.contains("larger than the limit of 8 MiB"),
        "{err}"
    );
    assert!(
        sent < MAX_ANSWER + SLACK,
        "the client read on: the stand-in sent {sent} bytes; {err}"
    );
}

#[test]
fn a_huge_content_length_is_refused_before_reading() {
    let (ok, err, _) = bump(Answer::HugeLength);
    assert!(!ok, "{err}");
    assert!(
        err.contains("GitHub API GET /repos/acme/config/pulls")
            && err.contains("larger than the limit of 8 MiB"),
        "{err}"
    );
}

#[test]
fn an_endless_error_answer_is_quoted_from_its_start_only() {
    let (ok, err, sent) = bump(Answer::EndlessError);
    assert!(!ok, "{err}");
    assert!(
        err.contains("GitHub API GET /repos/acme/config/pulls answered 500")
            && err.contains(r#"{"number":1,"html_url""#),
        "{err}"
    );
    assert!(err.len() < 4096, "{err}");
    assert!(
        sent < MAX_ANSWER + SLACK,
        "the client read on: the stand-in sent {sent} bytes; {err}"
    );
}
