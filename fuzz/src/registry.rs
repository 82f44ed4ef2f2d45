//! Registry responses: a registry on 127.0.0.1 (a thread in this process) answers the
//! real client (`publish::registry`, `sign::cosign`) with what the fuzz input says.
//!
//! Input: chunks separated by `0xFF` (never in UTF-8 text). Chunk 0 is control: byte 0
//! picks the operation (verify signatures, verify attestations, with a predicate type,
//! resolve a tag and read its layers), each later byte the status of one request in order.
//! Chunks 1.. are bodies: the n-th manifest request gets body n-1, a blob request gets
//! the body whose sha256 it names, the token endpoint gets the last body. Bodies may
//! name later bodies so a fuzzer can build a consistent signature manifest without
//! computing hashes: `@D<n>` is the `sha256:` digest of body n, `@B<n>` its base64,
//! `@S<n>` a base64 signature of it by the harness's key, `@E<n>` a signature of its
//! DSSE encoding (in-toto payload type).
//!
//! A body that starts with `Bearer ` or `Basic ` is the `WWW-Authenticate` challenge of
//! every 401. The token realm is always this server: the harness puts its own realm
//! first and removes `realm` from the fuzzed parameters, so no request leaves loopback.

use base64::Engine as _;
use runner::publish::auth::{Credentials, Static};
use runner::publish::registry::{Endpoints, Registry, RetryPolicy};
use runner::publish::ImageRef;
use runner::sign::{cosign, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const B64: base64::engine::general_purpose::GeneralPurpose =
    base64::engine::general_purpose::STANDARD;
const IMAGE_DIGEST: &str =
    "sha256:6745aaad46d795c9836632e1fb62f24b7e7f4c843144da8e47a5465c411a14be";
const STATUSES: [u16; 12] = [200, 200, 200, 200, 401, 404, 500, 429, 400, 403, 204, 201];
const MAX_BODY: usize = 1 << 20;

#[derive(Default)]
struct Script {
    statuses: Vec<u16>,
    bodies: Vec<Vec<u8>>,
    challenge: Option<String>,
    requests: usize,
    manifests: usize,
}

struct Harness {
    port: u16,
    /// One client for every input (building one loads the platform's certificates: slow).
    /// What it keeps between inputs, a bearer token, changes nothing the server answers.
    registry: Registry,
    script: Arc<Mutex<Script>>,
    runtime: tokio::runtime::Runtime,
    key: SigningKey,
    public: VerifyingKey,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        let script = Arc::new(Mutex::new(Script::default()));
        let served = Arc::clone(&script);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = serve(conn, &served, port);
            }
        });
        let key = SigningKey::generate().expect("generate a P-256 key");
        let public = key.verifying_key().expect("public key");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let host = format!("127.0.0.1:{port}");
        let source = Arc::new(Static(Credentials::Anonymous));
        let retry = RetryPolicy {
            attempts: 2,
            first_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
            max_retry_after: Duration::ZERO,
        };
        let registry =
            Registry::new(&host, &Endpoints::default(), source, retry).expect("registry client");
        Harness {
            port,
            registry,
            script,
            runtime,
            key,
            public,
        }
    })
}

fn digest(b: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(b))
}

/// Replaces the placeholders of body `i` that name a later body.
fn substitute(i: usize, body: &[u8], done: &[Option<Vec<u8>>], key: &SigningKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut k = 0;
    while k < body.len() {
        if body[k] == b'@' && k + 2 < body.len() {
            let n = usize::from(body[k + 2].wrapping_sub(b'0'));
            if let Some(Some(target)) = done.get(n).filter(|_| n > i) {
                let text = match body[k + 1] {
                    b'D' => Some(digest(target)),
                    b'B' => Some(B64.encode(target)),
                    b'S' => key.sign(target).ok().map(|s| B64.encode(s)),
                    b'E' => key
                        .sign(&cosign::pae("application/vnd.in-toto+json", target))
                        .ok()
                        .map(|s| B64.encode(s)),
                    _ => None,
                };
                if let Some(t) = text {
                    out.extend_from_slice(t.as_bytes());
                    k += 3;
                    continue;
                }
            }
        }
        out.push(body[k]);
        k += 1;
    }
    out
}

fn serve(conn: TcpStream, script: &Mutex<Script>, port: u16) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut sink = vec![0u8; length.min(MAX_BODY)];
    reader.read_exact(&mut sink)?;

    let path = request_line.split(' ').nth(1).unwrap_or("/").to_string();
    let (status, body, challenge) = {
        let mut s = script.lock().unwrap_or_else(|e| e.into_inner());
        let status = s.statuses.get(s.requests).copied().unwrap_or(200);
        s.requests += 1;
        let body = if path.starts_with("/token") {
            s.bodies.last().cloned()
        } else if path.contains("/manifests/") {
            // Only an answered request moves on to the next manifest body.
            let b = s.bodies.get(s.manifests).cloned();
            if (200..300).contains(&status) {
                s.manifests += 1;
            }
            b
        } else if let Some((_, d)) = path.split_once("/blobs/") {
            s.bodies.iter().find(|b| digest(b) == d).cloned()
        } else {
            Some(Vec::new())
        };
        (status, body, s.challenge.clone())
    };
    let (status, body) = match body {
        Some(b) => (status, b),
        None => (
            404,
            b"{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\"}]}".to_vec(),
        ),
    };
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nDocker-Content-Digest: {}\r\nConnection: close\r\n",
        body.len(),
        digest(&body),
    );
    if status == 401 {
        let params = challenge.unwrap_or_else(|| "Bearer ".into());
        let (scheme, rest) = params.split_at(params.find(' ').map_or(params.len(), |i| i + 1));
        head.push_str(&format!(
            "WWW-Authenticate: {scheme}realm=\"http://127.0.0.1:{port}/token\",{rest}\r\n"
        ));
    }
    head.push_str("\r\n");
    let mut conn = conn;
    conn.write_all(head.as_bytes())?;
    conn.write_all(&body)?;
    conn.flush()
}

pub fn registry_responses(data: &[u8]) {
    let mut chunks = data.split(|&b| b == 0xFF);
    let control = chunks.next().unwrap_or_default();
    let raw: Vec<&[u8]> = chunks.take(10).collect();
    let h = harness();

    let mut done: Vec<Option<Vec<u8>>> = vec![None; raw.len()];
    for i in (0..raw.len()).rev() {
        done[i] = Some(substitute(i, raw[i], &done, &h.key));
    }
    let bodies: Vec<Vec<u8>> = done.into_iter().flatten().collect();
    let challenge = bodies.iter().find_map(|b| {
        let text = std::str::from_utf8(b).ok()?;
        if !(text.starts_with("Bearer ") || text.starts_with("Basic ")) {
            return None;
        }
        // Header-safe, and never a realm of the input's choosing.
        let mut clean: String = text
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .collect();
        while clean.contains("realm") {
            clean = clean.replace("realm", "");
        }
        Some(clean)
    });
    {
        let mut s = h.script.lock().unwrap_or_else(|e| e.into_inner());
        *s = Script {
            statuses: control
                .iter()
                .skip(1)
                .map(|b| STATUSES[usize::from(*b) % STATUSES.len()])
                .collect(),
            bodies,
            challenge,
            requests: 0,
            manifests: 0,
        };
    }

    let registry = &h.registry;
    let host = format!("127.0.0.1:{}", h.port);
    let Ok(image) = ImageRef::parse(&format!("{host}/team/app:v1")) else {
        return;
    };
    let op = control.first().copied().unwrap_or(0) % 4;
    h.runtime.block_on(async {
        match op {
            0 => {
                let _ = cosign::verify(registry, &image, IMAGE_DIGEST, &h.public).await;
            }
            1 => {
                let _ =
                    cosign::verify_attestations(registry, &image, IMAGE_DIGEST, &h.public, None)
                        .await;
            }
            2 => {
                let slsa = cosign::predicate_type_uri("slsaprovenance1");
                let _ = cosign::verify_attestations(
                    registry,
                    &image,
                    IMAGE_DIGEST,
                    &h.public,
                    Some(&slsa),
                )
                .await;
            }
            _ => {
                if cosign::resolve(registry, &image).await.is_ok() {
                    let _ = cosign::read_layers(
                        registry,
                        "team/app",
                        "latest",
                        cosign::SIMPLE_SIGNING,
                        registry.limits().max_signature,
                    )
                    .await;
                }
            }
        }
    });
}
