//! A registry that rate-limits: a stand-in in front of the real registry answers the
//! first request with 429 or 503 and a `Retry-After`, then passes everything through.
//! runner waits what the registry asks (within its limit) and the push completes; a
//! registry asking for longer than runner waits is reported at once, saying so.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use crate::support::output_text as text;
use crate::support::stack;
use crate::support_registry::Registry;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Answers the first request with `status` and `Retry-After: retry_after`, then
/// forwards every connection to `upstream`. `refused` counts the refusals.
struct Limiter {
    port: u16,
    refused: Arc<AtomicUsize>,
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

fn limiter(upstream: u16, status: &'static str, retry_after: &'static str) -> Limiter {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let refused = Arc::new(AtomicUsize::new(0));
    let r = refused.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut client) = conn else { continue };
            if r.load(Ordering::SeqCst) == 0 {
                // Read the request head, refuse it, close.
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && client.read(&mut b).unwrap_or(0) == 1 {
                    head.push(b[0]);
                }
                r.fetch_add(1, Ordering::SeqCst);
                let _ = write!(
                    client,
                    "HTTP/1.1 {status}\r\nRetry-After: {retry_after}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = client.shutdown(Shutdown::Both);
                continue;
            }
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || pipe(client, server));
            std::thread::spawn(move || pipe(s2, c2));
        }
    });
    Limiter { port, refused }
}

fn push(port: u16, name: &str) -> Output {
    let data = tempfile::tempdir().unwrap();
    let local = format!("runner-test/{name}:1");
    let content = format!("retry test {name}");
    crate::support::docker_import(&local, &[("hello.txt", content.as_bytes())]);
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args([
            "push",
            &local,
            &format!("127.0.0.1:{port}/{name}:1"),
            "--json",
        ])
        .env("RUNNER_DATA_DIR", data.path())
        .env("DOCKER_CONFIG", data.path())
        .env("RUST_LOG", "runner=warn")
        .env("NO_COLOR", "1")
        .env_remove("RUNNER_REGISTRY_USER")
        .env_remove("RUNNER_REGISTRY_ENDPOINTS")
        .output()
        .unwrap();
    let _ = Command::new("docker").args(["rmi", &local]).output();
    out
}

#[test]
fn a_429_with_retry_after_is_waited_out_and_the_push_completes() {
    stack();
    let reg = Registry::start(false);
    let l = limiter(reg.port, "429 Too Many Requests", "1");
    let out = push(l.port, "retry-429");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(l.refused.load(Ordering::SeqCst), 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The wait runner chose is what the registry asked (1 s), not its own shorter backoff.
    assert!(
        stderr.contains("Retry-After honoured")
            && stderr.contains("status=429")
            && stderr.contains("retry_after=Some(1.0)")
            && stderr.contains("wait_secs=1.0"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_503_asking_for_longer_than_runner_waits_is_reported_at_once() {
    stack();
    let reg = Registry::start(false);
    let l = limiter(reg.port, "503 Service Unavailable", "3600");
    let out = push(l.port, "retry-503");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("asks to retry after 3600 s (Retry-After)"),
        "{}",
        text(&out)
    );
    assert_eq!(l.refused.load(Ordering::SeqCst), 1);
}
