//! A hostile registry and hostile key files: `runner verify` and `runner sign` must fail
//! with a clear error, promptly, reading a bounded number of bytes.
//!
//! The registries are small HTTP servers on 127.0.0.1 in this process: one that sends a
//! manifest (or a signature layer) without end, one that declares a 4 GiB manifest, one
//! that accepts connections and never answers, one that trickles its answer. Every
//! `runner` runs under a generous outer limit (`OUTER`) so a hang fails the test instead of
//! blocking the suite; nothing asserts how long anything took.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a `runner` may take before the test kills it and fails.
const OUTER: Duration = Duration::from_secs(60);
/// How long a server lives at most, whatever happens to the test.
const SERVER_LIFE: Duration = Duration::from_secs(120);
/// The most a server sends on one answer: far beyond every limit, small enough that the
/// old client (which read everything) did not exhaust the machine.
const SEND_AT_MOST: u64 = 256 << 20;
/// What a client that stops reading at its limit can have taken: the limit plus what the
/// loopback sockets buffer.
const READ_BOUND: u64 = 64 << 20;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const ZERO_DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Manifests: 200, no Content-Length, bytes until the client goes away.
    EndlessManifest,
    /// Manifests: 200 with `Content-Length: 4 GiB`, then bytes.
    HugeManifest,
    /// A small image manifest, a `.sig` manifest naming one layer, and that layer's blob
    /// without end.
    EndlessSignature,
    /// The same, the signature layer's blob trickled (a byte every 250 ms).
    TrickleSignature,
    /// The same with 101 signature layers in the `.sig` manifest.
    ManySignatures,
    /// Reads the request, never answers.
    Silent,
    /// Answers the headers, then one body byte every 250 ms.
    Trickle,
    /// Has no blobs, opens upload sessions, then never answers a PATCH (nor anything
    /// else).
    StallUpload,
}

struct Hostile {
    port: u16,
    stop: Arc<AtomicBool>,
    /// Body bytes the server managed to send, over all connections.
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Hostile {
    fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr: {e}"))
            .port();
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("nonblocking: {e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop2, sent2) = (Arc::clone(&stop), Arc::clone(&sent));
        let thread = std::thread::spawn(move || {
            let born = Instant::now();
            let mut conns = Vec::new();
            while !stop2.load(Ordering::Relaxed) && born.elapsed() < SERVER_LIFE {
                match listener.accept() {
                    Ok((conn, _)) if conns.len() < 64 => {
                        let (stop, sent) = (Arc::clone(&stop2), Arc::clone(&sent2));
                        conns.push(std::thread::spawn(move || {
                            serve(conn, mode, &stop, &sent, born);
                        }));
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            stop2.store(true, Ordering::Relaxed);
            for c in conns {
                let _ = c.join();
            }
        });
        Hostile {
            port,
            stop,
            sent,
            thread: Some(thread),
        }
    }

    fn image(&self) -> String {
        format!("127.0.0.1:{}/app:v1", self.port)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn live(stop: &AtomicBool, born: Instant) -> bool {
    !stop.load(Ordering::Relaxed) && born.elapsed() < SERVER_LIFE
}

/// The method and path of the next request on `conn`, its head read whole (bounded).
fn read_request(
    conn: &mut TcpStream,
    stop: &AtomicBool,
    born: Instant,
) -> Option<(String, String)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 64 << 10 || !live(stop, born) {
            return None;
        }
        match conn.read(&mut byte) {
            Ok(0) => return None,
            Ok(_) => head.push(byte[0]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return None,
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut words = text.split_whitespace();
    Some((words.next()?.to_string(), words.next()?.to_string()))
}

fn silence(stop: &AtomicBool, born: Instant) {
    while live(stop, born) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn answer(conn: &mut TcpStream, content_type: &str, body: &[u8]) -> bool {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nDocker-Content-Digest: {}\r\n\r\n",
        body.len(),
        sha256(body)
    );
    conn.write_all(head.as_bytes()).is_ok() && conn.write_all(body).is_ok()
}

/// Sends `head`, then bytes until the client goes away (or `SEND_AT_MOST`).
fn endless(conn: &mut TcpStream, head: &str, sent: &AtomicU64, stop: &AtomicBool, born: Instant) {
    if conn.write_all(head.as_bytes()).is_err() {
        return;
    }
    let chunk = vec![b' '; 64 << 10];
    let mut total = 0u64;
    while total < SEND_AT_MOST && live(stop, born) {
        match conn.write(&chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                total += n as u64;
                sent.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
}

/// Sends `head`, then a byte every 250 ms while the client listens.
fn trickle(conn: &mut TcpStream, head: &str, sent: &AtomicU64, stop: &AtomicBool, born: Instant) {
    if conn.write_all(head.as_bytes()).is_err() {
        return;
    }
    while live(stop, born) {
        if conn.write_all(b" ").is_err() {
            return;
        }
        sent.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn sha256(bytes: &[u8]) -> String {
    runner::publish::reference::sha256_digest(bytes)
}

fn serve(mut conn: TcpStream, mode: Mode, stop: &AtomicBool, sent: &AtomicU64, born: Instant) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let image_manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"{}"}},"layers":[]}}"#,
        sha256(b"{}")
    );
    // A keep-alive connection serves a few requests at most.
    for _ in 0..16 {
        let Some((method, path)) = read_request(&mut conn, stop, born) else {
            return;
        };
        let endless_head = |length: &str| {
            format!("HTTP/1.1 200 OK\r\nContent-Type: {OCI_MANIFEST}\r\n{length}Connection: close\r\n\r\n")
        };
        match mode {
            Mode::EndlessManifest => {
                return endless(&mut conn, &endless_head(""), sent, stop, born);
            }
            Mode::HugeManifest => {
                let head = endless_head("Content-Length: 4294967296\r\n");
                return endless(&mut conn, &head, sent, stop, born);
            }
            Mode::EndlessSignature | Mode::TrickleSignature | Mode::ManySignatures => {
                if path.ends_with("/manifests/v1") || path.contains("/manifests/sha256:") {
                    if !answer(&mut conn, OCI_MANIFEST, image_manifest.as_bytes()) {
                        return;
                    }
                } else if path.contains("/manifests/sha256-") {
                    // Signature layers, no size declared: only the limit bounds them.
                    let layer = format!(
                        r#"{{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"{ZERO_DIGEST}","annotations":{{"dev.cosignproject.cosign/signature":"AAAA"}}}}"#
                    );
                    let count = if mode == Mode::ManySignatures { 101 } else { 1 };
                    let sig = format!(
                        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"{}"}},"layers":[{}]}}"#,
                        sha256(b"{}"),
                        vec![layer; count].join(",")
                    );
                    if !answer(&mut conn, OCI_MANIFEST, sig.as_bytes()) {
                        return;
                    }
                } else if mode == Mode::TrickleSignature {
                    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n";
                    return trickle(&mut conn, head, sent, stop, born);
                } else {
                    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n";
                    return endless(&mut conn, head, sent, stop, born);
                }
            }
            Mode::Silent => return silence(stop, born),
            Mode::StallUpload => {
                let reply = match (method.as_str(), path.as_str()) {
                    ("HEAD", p) if p.contains("/blobs/") => {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
                    }
                    ("POST", p) if p.ends_with("/blobs/uploads/") => {
                        "HTTP/1.1 202 Accepted\r\nLocation: /v2/app/blobs/uploads/stalled\r\nContent-Length: 0\r\n\r\n"
                    }
                    _ => return silence(stop, born),
                };
                if conn.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
            Mode::Trickle => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {OCI_MANIFEST}\r\nContent-Length: 100000\r\n\r\n"
                );
                return trickle(&mut conn, &head, sent, stop, born);
            }
        }
    }
}

/// A key pair in a temporary directory (password empty).
struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        runner::sign::generate_key_pair(dir.path(), b"").unwrap_or_else(|e| panic!("keys: {e}"));
        Keys { dir }
    }

    fn public(&self) -> PathBuf {
        self.dir.path().join("cosign.pub")
    }
}

/// `runner ARGS` with a private data directory and no registry credentials, killed (and
/// the test failed) when it has not exited after `OUTER`.
fn runner(args: &[&str], env: &[(&str, &str)]) -> Output {
    let home = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
    c.args(args)
        .env("RUNNER_DATA_DIR", home.path())
        .env("DOCKER_CONFIG", home.path())
        .env("NO_COLOR", "1")
        .env("COSIGN_PASSWORD", "")
        .env_remove("RUNNER_REGISTRY_USER")
        .env_remove("RUNNER_REGISTRY_PASSWORD")
        .env_remove("RUNNER_REGISTRY_ENDPOINTS")
        .env_remove("RUNNER_REGISTRY_TIMEOUT")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap_or_else(|e| panic!("spawn runner: {e}"));
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() < OUTER => std::thread::sleep(Duration::from_millis(100)),
            Ok(None) => {
                let _ = child.kill();
                let out = child.wait_with_output();
                panic!(
                    "runner {args:?} had not exited after {OUTER:?} (killed): {:?}",
                    out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                );
            }
            Err(e) => panic!("wait for runner: {e}"),
        }
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("runner output: {e}"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn verify(server: &Hostile, keys: &Keys, env: &[(&str, &str)]) -> Output {
    let key = keys.public();
    runner(
        &[
            "verify",
            &server.image(),
            "--key",
            &key.display().to_string(),
        ],
        env,
    )
}

#[test]
fn a_manifest_without_end_is_refused_at_the_limit() {
    let keys = Keys::new();
    for mode in [Mode::EndlessManifest, Mode::HugeManifest] {
        let server = Hostile::start(mode);
        let out = verify(&server, &keys, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{mode:?}: {err}");
        assert!(
            err.contains(&format!("the manifest {}", server.image()))
                && err.contains("larger than the limit of 4194304 bytes (4 MiB)"),
            "{mode:?}: {err}"
        );
        let sent = server.sent.load(Ordering::Relaxed);
        assert!(
            sent < READ_BOUND,
            "{mode:?}: the client took {sent} bytes of a manifest limited to 4 MiB"
        );
    }
}

#[test]
fn a_signature_layer_without_end_is_refused_at_the_limit() {
    let keys = Keys::new();
    let server = Hostile::start(Mode::EndlessSignature);
    let out = verify(&server, &keys, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("blob 127.0.0.1:{}/app@{ZERO_DIGEST}", server.port))
            && err.contains("larger than the limit of 1048576 bytes (1 MiB)"),
        "{err}"
    );
    let sent = server.sent.load(Ordering::Relaxed);
    assert!(
        sent < READ_BOUND,
        "the client took {sent} bytes of a signature layer limited to 1 MiB"
    );
}

#[test]
fn a_signature_manifest_with_too_many_layers_is_refused() {
    let keys = Keys::new();
    let server = Hostile::start(Mode::ManySignatures);
    let out = verify(&server, &keys, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{}/app:sha256-", server.port))
            && err.contains(".sig lists 101 layers, more than the limit of 100"),
        "{err}"
    );
}

#[test]
fn a_registry_that_never_answers_or_trickles_times_out() {
    let keys = Keys::new();
    for mode in [Mode::Silent, Mode::Trickle, Mode::TrickleSignature] {
        let server = Hostile::start(mode);
        let out = verify(&server, &keys, &[("RUNNER_REGISTRY_TIMEOUT", "2")]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{mode:?}: {err}");
        assert!(
            err.contains(&format!(
                "registry 127.0.0.1:{} did not answer",
                server.port
            )) && err.contains("RUNNER_REGISTRY_TIMEOUT"),
            "{mode:?}: {err}"
        );
    }
}

#[test]
fn a_bad_registry_timeout_is_refused() {
    let keys = Keys::new();
    let server = Hostile::start(Mode::Silent);
    let out = verify(&server, &keys, &[("RUNNER_REGISTRY_TIMEOUT", "soon")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bad RUNNER_REGISTRY_TIMEOUT=`soon`"), "{err}");
}

#[test]
fn a_registry_that_stops_taking_an_upload_times_out() {
    crate::support::stack();
    let server = Hostile::start(Mode::StallUpload);
    let target = server.image();
    let out = runner(
        &["push", crate::support::IMAGE, &target],
        &[("RUNNER_REGISTRY_TIMEOUT", "2")],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "registry 127.0.0.1:{} did not answer",
            server.port
        )) && err.contains("RUNNER_REGISTRY_TIMEOUT"),
        "{err}"
    );
}

/// `runner build` pushes the project's image through the same registry limits as `runner
/// push`: `--registry-timeout` and RUNNER_REGISTRY_TIMEOUT reach the build's push stage,
/// which a registry that stops taking the upload then ends with the limit named.
#[test]
fn runner_build_pushes_within_the_registry_timeout() {
    crate::support::stack();
    let server = Hostile::start(Mode::StallUpload);
    let src = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let write = |name: &str, text: &str| {
        std::fs::write(src.path().join(name), text).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    write(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo built\n",
    );
    write(
        "Dockerfile",
        &format!("FROM {}\nCOPY buildspec.yml /\n", crate::support::IMAGE),
    );
    write(
        "runner.yml",
        &format!(
            "name: stalled-push\nbuild:\n  image: {}\nimage:\n  repository: 127.0.0.1:{}/app\n",
            crate::support::IMAGE,
            server.port
        ),
    );
    let source = src.path().display().to_string();
    let build = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["build", "--json", "--no-cache", "--source", &source];
        args.extend_from_slice(extra);
        runner(&args, env)
    };
    let push_stage = |out: &Output| -> serde_json::Value {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| e["event"] == "stage" && e["stage"] == "push")
            .unwrap_or_else(|| panic!("no push stage: {}", stderr(out)))
    };
    for (extra, env) in [
        (&["--registry-timeout", "2"][..], &[][..]),
        (&[][..], &[("RUNNER_REGISTRY_TIMEOUT", "2")][..]),
    ] {
        let out = build(extra, env);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{extra:?} {env:?}: {}",
            stderr(&out)
        );
        let push = push_stage(&out);
        let message = push["message"].as_str().unwrap_or_default();
        assert_eq!(push["ok"], false, "{push}");
        assert!(
            message.contains(&format!(
                "registry 127.0.0.1:{} did not answer",
                server.port
            )) && message.contains("limits: 2 s without a byte"),
            "{extra:?} {env:?}: {message}"
        );
    }
    let out = build(&["--registry-timeout", "soon"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bad RUNNER_REGISTRY_TIMEOUT=`soon`"), "{err}");
}

fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap_or_else(|e| panic!("mkfifo: {e}"));
    assert!(st.success(), "mkfifo {}", path.display());
}

#[test]
fn a_key_that_is_a_device_a_fifo_or_too_large_is_refused() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let fifo = dir.path().join("key.fifo");
    mkfifo(&fifo);
    let big = dir.path().join("big.pub");
    std::fs::write(&big, vec![b'A'; 1 << 20]).unwrap_or_else(|e| panic!("write: {e}"));
    let image = "127.0.0.1:9/app:v1";
    let cases = [
        ("/dev/zero".to_string(), "not a regular file"),
        (fifo.display().to_string(), "not a regular file"),
        (big.display().to_string(), "larger than 64 KiB"),
    ];
    for (key, why) in &cases {
        for cmd in ["verify", "sign"] {
            let out = runner(&[cmd, image, "--key", key], &[]);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{cmd} --key {key}: {err}");
            assert!(
                err.contains(&format!("cannot read key {key}: {why}")),
                "{cmd} --key {key}: {err}"
            );
        }
    }
}

/// What a `cache-from` pull uses for layers: a blob is streamed within its descriptor's
/// size, never more.
#[test]
fn a_layer_longer_than_its_descriptor_is_refused_while_streaming() {
    use runner::publish::registry::{Endpoints, Registry};
    let server = Hostile::start(Mode::EndlessSignature);
    let registry = Registry::new(
        &format!("127.0.0.1:{}", server.port),
        &Endpoints::default(),
        Arc::new(runner::publish::auth::Static(
            runner::publish::auth::Credentials::Anonymous,
        )),
        Default::default(),
    )
    .unwrap_or_else(|e| panic!("client: {e}"));
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("runtime: {e}"));
    let mut out: Vec<u8> = Vec::new();
    let r = rt.block_on(registry.get_blob_into("app", ZERO_DIGEST, 3 << 20, &mut out));
    let err = match r {
        Err(e) => e.to_string(),
        Ok(()) => panic!("an endless blob was accepted"),
    };
    assert!(
        err.contains("larger than the limit of 3145728 bytes (3 MiB)"),
        "{err}"
    );
    assert!(out.len() <= 3 << 20, "{} bytes written", out.len());
    drop(rt);
    let sent = server.sent.load(Ordering::Relaxed);
    assert!(sent < READ_BOUND, "the client took {sent} bytes");
}

#[test]
fn a_docker_config_that_is_a_fifo_gives_no_credentials_instead_of_a_hang() {
    let keys = Keys::new();
    let docker = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    mkfifo(&docker.path().join("config.json"));
    let server = Hostile::start(Mode::EndlessSignature);
    let dir = docker.path().display().to_string();
    let out = verify(&server, &keys, &[("DOCKER_CONFIG", &dir)]);
    let err = stderr(&out);
    // Past the credentials, to the registry (whose signature layer is refused).
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("larger than the limit"), "{err}");
}
