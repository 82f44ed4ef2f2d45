//! A remote engine through `DOCKER_HOST=tcp://127.0.0.1:PORT` with `DOCKER_TLS_VERIFY`
//! and `DOCKER_CERT_PATH`: the engine's API behind a TLS-terminating proxy (stunnel, with
//! certificates made here by openssl) that requires a client certificate signed by the
//! test's CA, as `dockerd --tlsverify` does. A second dockerd beside the shared one (its
//! own bridge, iptables rules and data root) is too invasive for a shared machine, so
//! the proxy stands in for the engine's TLS listener. (socat cannot: its OpenSSL server
//! refuses the TLS session resumption rustls attempts on the second connection.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use crate::support::{KillOnDrop, Project};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`, `ca-key.pem`) in `dir`.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
        ],
    );
}

/// `<stem>.pem` / `<stem>-key.pem` signed by the CA in `dir`, with `ext` (a SAN or usage).
fn make_cert(dir: &Path, stem: &str, cn: &str, ext: &str) {
    let key = format!("{stem}-key.pem");
    let csr = format!("{stem}.csr");
    let cert = format!("{stem}.pem");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    std::fs::write(dir.join(format!("{stem}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &format!("{stem}.ext"),
        ],
    );
}

struct TlsEngine {
    port: u16,
    _proxy: KillOnDrop,
    /// ca.pem (the engine's CA), cert.pem and key.pem (a client certificate it accepts).
    certs: tempfile::TempDir,
    /// The same client certificate with another CA's ca.pem.
    wrong_ca: tempfile::TempDir,
}

fn tls_engine() -> TlsEngine {
    let certs = tempfile::tempdir().unwrap();
    let d = certs.path();
    make_ca(d, "runner-test engine CA");
    make_cert(
        d,
        "server",
        "127.0.0.1",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    make_cert(d, "client", "runner", "extendedKeyUsage=clientAuth\n");
    std::fs::copy(d.join("client.pem"), d.join("cert.pem")).unwrap();
    std::fs::copy(d.join("client-key.pem"), d.join("key.pem")).unwrap();

    let wrong_ca = tempfile::tempdir().unwrap();
    make_ca(wrong_ca.path(), "some other CA");
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(d.join(f), wrong_ca.path().join(f)).unwrap();
    }

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = d.join("stunnel.conf");
    std::fs::write(
        &conf,
        format!(
            "foreground = yes\npid =\n[docker]\naccept = 127.0.0.1:{port}\nconnect = /var/run/docker.sock\ncert = {}\nkey = {}\nCAfile = {}\nverifyChain = yes\nrequireCert = yes\n",
            d.join("server.pem").display(),
            d.join("server-key.pem").display(),
            d.join("ca.pem").display()
        ),
    )
    .unwrap();
    let proxy = Command::new("stunnel")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("stunnel (`bash scripts/setup.sh` installs stunnel4)");
    let proxy = KillOnDrop(proxy);
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "stunnel did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    TlsEngine {
        port,
        _proxy: proxy,
        certs,
        wrong_ca,
    }
}

#[test]
fn a_build_runs_on_a_tls_engine_through_docker_host_and_a_wrong_ca_is_refused() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo remote-engine-ok\n",
    );
    let engine = tls_engine();
    let host = format!("tcp://127.0.0.1:{}", engine.port);

    let run = |cert_path: &Path| {
        let mut c = p.runner();
        c.args([
            "build",
            "--json",
            "--image",
            "runner/busybox:latest",
            "--source",
        ])
        .arg(p.path())
        .env("DOCKER_HOST", &host)
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", cert_path);
        crate::support::Run::from(c.output().unwrap())
    };

    let ok = run(engine.certs.path());
    assert_eq!(ok.code, 0, "{}", ok.debug());
    assert!(ok.has_line("remote-engine-ok"), "{}", ok.debug());
    assert_eq!(ok.status(), "SUCCEEDED", "{}", ok.debug());

    // The engine's certificate does not chain to the CA given: refused, and said so.
    let bad = run(engine.wrong_ca.path());
    assert_eq!(bad.code, 2, "{}", bad.debug());
    assert!(
        bad.stderr
            .contains(&format!("cannot reach the Docker engine at {host} (TLS)")),
        "{}",
        bad.debug()
    );
    assert!(
        bad.stderr.contains("certificate") && bad.stderr.contains("DOCKER_CERT_PATH"),
        "{}",
        bad.debug()
    );

    // No client certificate files: said before connecting.
    let empty = tempfile::tempdir().unwrap();
    std::fs::copy(
        engine.certs.path().join("ca.pem"),
        empty.path().join("ca.pem"),
    )
    .unwrap();
    let missing = run(empty.path());
    assert_eq!(missing.code, 2, "{}", missing.debug());
    assert!(
        missing.stderr.contains("cert.pem is missing"),
        "{}",
        missing.debug()
    );
}
