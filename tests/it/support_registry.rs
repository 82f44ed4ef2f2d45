//! A real registry (Debian's `docker-registry`, CNCF distribution 2.8) per test that
//! needs one: on a free loopback port, optionally behind htpasswd auth that accepts
//! exactly what moto's ECR `GetAuthorizationToken` returns (`AWS` /
//! `123456789012-auth-token`). It can be killed and restarted on the same port and
//! storage, to interrupt a push for real.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
pub const ECR_USER: &str = "AWS";
pub const ECR_PASSWORD: &str = "123456789012-auth-token";
const BIN: &str = "/usr/bin/docker-registry";

pub struct Registry {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    /// Starts a registry; with `auth`, htpasswd with moto's ECR credentials.
    pub fn start(auth: bool) -> Self {
        Self::start_with(auth.then_some((ECR_USER, ECR_PASSWORD)))
    }

    /// Starts a registry; with `user`, htpasswd accepting only that user and password.
    pub fn start_with(user: Option<(&str, &str)>) -> Self {
        assert!(
            Path::new(BIN).exists(),
            "{BIN} is missing: run `bash scripts/setup.sh` (installs docker-registry)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: runner-tests-upload-state\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = user {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (apache2-utils; `bash scripts/setup.sh` installs it)");
            assert!(out.status.success());
            std::fs::write(dir.path().join("htpasswd"), &out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: runner-tests\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let r = Registry {
            port,
            dir,
            child: Mutex::new(None),
        };
        r.spawn();
        r
    }

    fn spawn(&self) {
        let child = Command::new(BIN)
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        *self.child.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry did not start on port {}", self.port);
    }

    /// SIGKILL: no goodbye to clients, partial uploads stay as they were.
    pub fn kill(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&self) {
        self.kill();
        self.spawn();
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// `--registry-endpoint` value sending the fake ECR host here.
    pub fn ecr_endpoint(&self) -> String {
        format!("{ECR_HOST}={}", self.url())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP proxy on a free port that forwards to `upstream` and counts the bytes clients
/// send; `on_bytes(n)` is called from the proxy's threads after each forwarded chunk.
pub struct Proxy {
    pub port: u16,
    pub sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, stop2) = (sent.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue; // upstream down: the client sees the connection close
                };
                let counter = s2.clone();
                let (c2, sv2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pipe(client, server, Some(counter)));
                std::thread::spawn(move || pipe(sv2, c2, None));
            }
        });
        Proxy { port, sent, stop }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, counter: Option<Arc<AtomicU64>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                if let Some(c) = &counter {
                    c.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}
