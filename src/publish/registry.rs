//! A client for the OCI distribution API (what ECR, Docker Hub and `docker-registry`
//! speak): manifests, blob existence checks, resumable blob uploads, with retries and
//! credentials that refresh when the registry refuses them.

use super::auth::{CredentialSource, Credentials};
use super::error::PublishError;
use super::reference::{is_loopback_host, sha256_digest};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncSeekExt;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Bytes per PATCH of a blob upload: what an interruption can cost.
pub const CHUNK: u64 = 8 << 20;
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Where each registry host is reached. Loopback hosts over plain HTTP, as Docker does;
/// every other host over TLS; overrides (`HOST=URL`) send a host's traffic elsewhere
/// (tests, VPC endpoints, proxies) while references keep the host's name.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    overrides: BTreeMap<String, String>,
}

impl Endpoints {
    /// From `HOST=URL` items (flags) plus `RUNNER_REGISTRY_ENDPOINTS` (comma-separated).
    pub fn from_args(items: &[String]) -> Result<Self, PublishError> {
        let mut overrides = BTreeMap::new();
        let env = std::env::var("RUNNER_REGISTRY_ENDPOINTS").unwrap_or_default();
        let env_items = env.split(',').map(str::trim).filter(|s| !s.is_empty());
        for item in env_items.chain(items.iter().map(String::as_str)) {
            let (host, url) = item
                .split_once('=')
                .ok_or_else(|| PublishError::BadEndpoint(item.to_string()))?;
            let url = url.trim_end_matches('/');
            if host.is_empty() || !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(PublishError::BadEndpoint(item.to_string()));
            }
            overrides.insert(host.to_string(), url.to_string());
        }
        Ok(Self { overrides })
    }

    pub fn base_url(&self, registry: &str) -> String {
        if let Some(url) = self.overrides.get(registry) {
            return url.clone();
        }
        let host = if registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            registry
        };
        if is_loopback_host(registry) {
            format!("http://{host}")
        } else {
            format!("https://{host}")
        }
    }
}

/// How often and how patiently to retry: connection errors, 5xx and 429.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 8,
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    fn delay(&self, attempt: u32) -> Duration {
        let d = self.first_delay.saturating_mul(1u32 << attempt.min(16));
        d.min(self.max_delay)
    }
}

/// What a client did, for logs, `--json` and tests.
#[derive(Debug, Default)]
pub struct Stats {
    pub blobs_uploaded: AtomicU64,
    pub bytes_uploaded: AtomicU64,
    pub blobs_skipped: AtomicU64,
    pub uploads_resumed: AtomicU64,
    /// Uploads the registry no longer accepted after an interruption, started over.
    pub uploads_restarted: AtomicU64,
    pub credential_refreshes: AtomicU64,
}

#[derive(Default)]
struct AuthState {
    creds: Option<Credentials>,
    bearer: Option<String>,
}

pub struct Registry {
    registry: String,
    base: String,
    http: reqwest::Client,
    source: Arc<dyn CredentialSource>,
    state: tokio::sync::Mutex<AuthState>,
    retry: RetryPolicy,
    pub stats: Stats,
}

/// A manifest as the registry stored it.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub digest: String,
}

impl Registry {
    pub fn new(
        registry: &str,
        endpoints: &Endpoints,
        source: Arc<dyn CredentialSource>,
        retry: RetryPolicy,
    ) -> Result<Self, PublishError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("runner/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| PublishError::Protocol {
                registry: registry.to_string(),
                what: "client setup".into(),
                status: 0,
                detail: e.to_string(),
            })?;
        Ok(Self {
            registry: registry.to_string(),
            base: endpoints.base_url(registry),
            http,
            source,
            state: tokio::sync::Mutex::new(AuthState::default()),
            retry,
            stats: Stats::default(),
        })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    async fn authorize(&self, req: RequestBuilder) -> Result<RequestBuilder, PublishError> {
        let mut st = self.state.lock().await;
        if let Some(token) = &st.bearer {
            return Ok(req.bearer_auth(token));
        }
        if st.creds.is_none() {
            st.creds = Some(self.source.credentials(false).await?);
        }
        Ok(match &st.creds {
            Some(Credentials::Basic { username, password }) => {
                req.basic_auth(username, Some(password.expose()))
            }
            _ => req,
        })
    }

    /// Reacts to a 401: fresh credentials, and a bearer token when the registry asks
    /// for one (`WWW-Authenticate: Bearer realm=...`).
    async fn reauthorize(&self, challenge: Option<String>) -> Result<(), PublishError> {
        self.stats
            .credential_refreshes
            .fetch_add(1, Ordering::Relaxed);
        let creds = self.source.credentials(true).await?;
        let mut st = self.state.lock().await;
        st.bearer = None;
        st.creds = Some(creds.clone());
        let Some(challenge) = challenge else {
            return Ok(());
        };
        let Some(params) = challenge.strip_prefix("Bearer ") else {
            return Ok(());
        };
        let params = parse_challenge(params);
        let Some(realm) = params.get("realm") else {
            return Ok(());
        };
        let mut req = self.http.get(realm);
        let query: Vec<(&str, &String)> = ["service", "scope"]
            .iter()
            .filter_map(|k| params.get(*k).map(|v| (*k, v)))
            .collect();
        req = req.query(&query);
        if let Credentials::Basic { username, password } = &creds {
            req = req.basic_auth(username, Some(password.expose()));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.unreachable(realm, 1, &e))?;
        if !resp.status().is_success() {
            return Err(PublishError::Unauthorized {
                registry: self.registry.clone(),
                status: resp.status().as_u16(),
            });
        }
        let body: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| self.protocol("token", 200, e))?;
        st.bearer = body
            .get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|t| t.as_str())
            .map(str::to_string);
        Ok(())
    }

    fn unreachable(&self, url: &str, attempts: u32, e: &reqwest::Error) -> PublishError {
        PublishError::Unreachable {
            registry: self.registry.clone(),
            url: url.to_string(),
            attempts,
            detail: crate::aws_config::error_chain(e),
        }
    }

    fn protocol(&self, what: &str, status: u16, detail: impl ToString) -> PublishError {
        PublishError::Protocol {
            registry: self.registry.clone(),
            what: what.to_string(),
            status,
            detail: detail.to_string(),
        }
    }

    /// Sends a request built by `build`, retrying connection failures, 5xx and 429, and
    /// refreshing credentials once on 401. `build` is called again for every attempt.
    async fn send<F>(&self, what: &str, url: &str, build: F) -> Result<Response, PublishError>
    where
        F: Fn(&reqwest::Client, &str) -> RequestBuilder,
    {
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            let req = self.authorize(build(&self.http, url)).await?;
            match req.send().await {
                Err(e) => {
                    attempt += 1;
                    if attempt >= self.retry.attempts {
                        return Err(self.unreachable(url, attempt, &e));
                    }
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                }
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                    if refreshed {
                        return Err(PublishError::Unauthorized {
                            registry: self.registry.clone(),
                            status: 401,
                        });
                    }
                    refreshed = true;
                    self.reauthorize(challenge(&resp)).await?;
                }
                Ok(resp)
                    if resp.status().is_server_error()
                        || resp.status() == StatusCode::TOO_MANY_REQUESTS =>
                {
                    attempt += 1;
                    if attempt >= self.retry.attempts {
                        let status = resp.status().as_u16();
                        let body = resp.text().await.unwrap_or_default();
                        return Err(self.protocol(what, status, snippet(&body)));
                    }
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                }
                Ok(resp) => return Ok(resp),
            }
        }
    }

    /// Checks that the registry speaks the distribution API and accepts the credentials.
    pub async fn ping(&self) -> Result<(), PublishError> {
        let url = self.url("/v2/");
        let resp = self.send("GET /v2/", &url, |c, u| c.get(u)).await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.protocol("GET /v2/", resp.status().as_u16(), "not a registry"))
        }
    }

    pub async fn blob_exists(&self, repo: &str, digest: &str) -> Result<bool, PublishError> {
        Ok(self.blob_size(repo, digest).await?.is_some())
    }

    /// The size of a blob the registry has, or `None`.
    pub async fn blob_size(&self, repo: &str, digest: &str) -> Result<Option<u64>, PublishError> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self.send("HEAD blob", &url, |c, u| c.head(u)).await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(
                resp.headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(self.protocol(&format!("HEAD blob {digest}"), s.as_u16(), "")),
        }
    }

    pub async fn get_blob(&self, repo: &str, digest: &str) -> Result<Vec<u8>, PublishError> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self.send("GET blob", &url, |c, u| c.get(u)).await?;
        match resp.status() {
            s if s.is_success() => {
                let bytes = resp
                    .bytes()
                    .await
                    .map_err(|e| self.protocol("GET blob body", 200, e))?;
                let actual = sha256_digest(&bytes);
                if actual != digest {
                    return Err(PublishError::DigestMismatch {
                        digest: digest.to_string(),
                        actual,
                    });
                }
                Ok(bytes.to_vec())
            }
            StatusCode::NOT_FOUND => Err(PublishError::NotFound {
                reference: format!("{}/{repo}@{digest}", self.registry),
            }),
            s => Err(self.protocol(&format!("GET blob {digest}"), s.as_u16(), "")),
        }
    }

    async fn start_upload(&self, repo: &str) -> Result<String, PublishError> {
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let resp = self
            .send("POST upload", &url, |c, u| {
                c.post(u).header("Content-Length", "0")
            })
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            let s = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            return Err(self.protocol("POST blob upload", s, snippet(&body)));
        }
        location(&resp).ok_or_else(|| self.protocol("POST blob upload", 202, "no Location header"))
    }

    /// Uploads a small blob in one request (POST, then PUT with the bytes).
    pub async fn push_blob_bytes(&self, repo: &str, bytes: &[u8]) -> Result<String, PublishError> {
        let digest = sha256_digest(bytes);
        if self.blob_exists(repo, &digest).await? {
            self.stats.blobs_skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(digest);
        }
        let loc = self.start_upload(repo).await?;
        let url = self.url(&with_query(&loc, "digest", &digest));
        let body = bytes::Bytes::copy_from_slice(bytes);
        let resp = self
            .send("PUT blob", &url, |c, u| {
                c.put(u)
                    .header("Content-Type", "application/octet-stream")
                    .body(body.clone())
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            let s = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            return Err(self.protocol("PUT blob", s, snippet(&body)));
        }
        self.stats.blobs_uploaded.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_uploaded
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(digest)
    }

    /// Uploads a blob from a file, unless the registry already has it, in chunks of
    /// `CHUNK` bytes (one PATCH each). After a broken connection or a registry restart it
    /// asks the registry how much arrived (the distribution API's upload status) and
    /// resumes from there; when the registry no longer accepts the upload (distribution
    /// refuses one whose last chunk was cut), the blob starts over. Blobs that completed
    /// are never sent again. Returns whether bytes were sent.
    pub async fn push_blob_file(
        &self,
        repo: &str,
        digest: &str,
        path: &Path,
        size: u64,
    ) -> Result<bool, PublishError> {
        if self.blob_exists(repo, digest).await? {
            self.stats.blobs_skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        // The registry may forget an upload whole (a restart while the last chunk or the
        // final PUT was in flight): then the blob starts over, a few times at most.
        let mut restarts = 0u32;
        loop {
            match self.upload_once(repo, digest, path, size).await? {
                true => break,
                false if restarts < 3 => {
                    restarts += 1;
                    self.stats.uploads_restarted.fetch_add(1, Ordering::Relaxed);
                    if self.blob_exists(repo, digest).await? {
                        break;
                    }
                }
                false => {
                    return Err(self.protocol(
                        &format!("PUT blob {digest}"),
                        404,
                        "the registry kept refusing the finished upload (BLOB_UPLOAD_INVALID)",
                    ))
                }
            }
        }
        self.stats.blobs_uploaded.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes_uploaded.fetch_add(size, Ordering::Relaxed);
        Ok(true)
    }

    /// One upload session: chunks, then the final PUT. `Ok(false)` when the registry no
    /// longer knows the session at the final PUT.
    async fn upload_once(
        &self,
        repo: &str,
        digest: &str,
        path: &Path,
        size: u64,
    ) -> Result<bool, PublishError> {
        let mut loc = self.start_upload(repo).await?;
        let mut offset = 0u64;
        let mut failures = 0u32;
        while offset < size {
            let end = (offset + CHUNK).min(size);
            match self.patch_range(&loc, path, offset, end).await {
                Ok(next) => {
                    loc = next;
                    offset = end;
                    failures = 0;
                }
                Err(detail) => {
                    failures += 1;
                    if failures >= self.retry.attempts {
                        return Err(PublishError::Unreachable {
                            registry: self.registry.clone(),
                            url: self.url(&loc),
                            attempts: failures,
                            detail,
                        });
                    }
                    tokio::time::sleep(self.retry.delay(failures)).await;
                    match self.upload_status(&loc).await {
                        Ok(Some((next, received))) if received <= size => {
                            loc = next;
                            offset = received;
                            self.stats.uploads_resumed.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {
                            loc = self.start_upload(repo).await?;
                            offset = 0;
                            self.stats.uploads_restarted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {} // still unreachable: try the same chunk after a pause
                    }
                }
            }
        }
        let url = self.url(&with_query(&loc, "digest", digest));
        let resp = self
            .send("PUT blob", &url, |c, u| {
                c.put(u).header("Content-Length", "0")
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => {
                let body = resp.text().await.unwrap_or_default();
                Err(self.protocol(&format!("PUT blob {digest}"), s.as_u16(), snippet(&body)))
            }
        }
    }

    /// One PATCH of `path[offset..end]`. Errors are strings: the caller decides.
    async fn patch_range(
        &self,
        loc: &str,
        path: &Path,
        offset: u64,
        end: u64,
    ) -> Result<String, String> {
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| e.to_string())?;
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| e.to_string())?;
        let len = end - offset;
        let reader = tokio::io::AsyncReadExt::take(file, len);
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
            reader,
            256 * 1024,
        ));
        let url = self.url(loc);
        let mut req = self
            .http
            .request(Method::PATCH, &url)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", len.to_string())
            .body(body);
        if len > 0 {
            req = req.header("Content-Range", format!("{}-{}", offset, end - 1));
        }
        let req = self.authorize(req).await.map_err(|e| e.to_string())?;
        let resp = req
            .send()
            .await
            .map_err(|e| crate::aws_config::error_chain(&e))?;
        if resp.status() == StatusCode::ACCEPTED {
            location(&resp).ok_or_else(|| "no Location header after PATCH".to_string())
        } else if resp.status() == StatusCode::UNAUTHORIZED {
            self.reauthorize(challenge(&resp))
                .await
                .map_err(|e| e.to_string())?;
            Err("credentials refreshed".into())
        } else {
            Err(format!("PATCH answered {}", resp.status()))
        }
    }

    /// Asks how much of an upload arrived: `Some((location, bytes_received))`, or `None`
    /// when the registry no longer knows the upload.
    async fn upload_status(&self, loc: &str) -> Result<Option<(String, u64)>, PublishError> {
        let url = self.url(loc);
        let req = self.authorize(self.http.get(&url)).await?;
        let resp = req
            .send()
            .await
            .map_err(|e| self.unreachable(&url, 1, &e))?;
        match resp.status() {
            StatusCode::NO_CONTENT => {
                let received = resp
                    .headers()
                    .get("Range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|r| r.split_once('-'))
                    .and_then(|(_, end)| end.parse::<u64>().ok())
                    .map_or(0, |end| end + 1);
                let next = location(&resp).unwrap_or_else(|| loc.to_string());
                Ok(Some((next, received)))
            }
            _ => Ok(None),
        }
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String, PublishError> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let body = bytes::Bytes::copy_from_slice(bytes);
        let mt = media_type.to_string();
        let resp = self
            .send("PUT manifest", &url, |c, u| {
                c.put(u)
                    .header("Content-Type", mt.as_str())
                    .body(body.clone())
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            let s = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            if body.contains("TAG_INVALID") || body.contains("ImageTagAlreadyExists") {
                return Err(PublishError::TagImmutable {
                    repository: format!("{}/{repo}", self.registry),
                    tag: reference.to_string(),
                });
            }
            return Err(self.protocol(&format!("PUT manifest {reference}"), s, snippet(&body)));
        }
        Ok(sha256_digest(bytes))
    }

    /// The manifest a tag or digest names, or `None` when there is none.
    pub async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<Manifest>, PublishError> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self
            .send("GET manifest", &url, |c, u| {
                c.get(u).header("Accept", MANIFEST_ACCEPT)
            })
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let media_type = resp
                    .headers()
                    .get("Content-Type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(OCI_MANIFEST)
                    .to_string();
                let bytes = resp
                    .bytes()
                    .await
                    .map_err(|e| self.protocol("GET manifest body", 200, e))?;
                let digest = sha256_digest(&bytes);
                if reference.starts_with("sha256:") && digest != reference {
                    return Err(PublishError::DigestMismatch {
                        digest: reference.to_string(),
                        actual: digest,
                    });
                }
                Ok(Some(Manifest {
                    media_type,
                    bytes: bytes.to_vec(),
                    digest,
                }))
            }
            s => {
                let body = resp.text().await.unwrap_or_default();
                Err(self.protocol(
                    &format!("GET manifest {reference}"),
                    s.as_u16(),
                    snippet(&body),
                ))
            }
        }
    }
}

/// The `WWW-Authenticate` challenge of a 401.
fn challenge(resp: &Response) -> Option<String> {
    resp.headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn location(resp: &Response) -> Option<String> {
    resp.headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn with_query(loc: &str, key: &str, value: &str) -> String {
    let sep = if loc.contains('?') { '&' } else { '?' };
    format!("{loc}{sep}{key}={value}")
}

fn snippet(body: &str) -> String {
    let t = body.trim();
    if t.len() > 300 {
        let mut end = 300;
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &t[..end])
    } else {
        t.to_string()
    }
}

/// `realm="https://auth",service="registry",scope="repository:a:pull"` → map.
fn parse_challenge(params: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = params.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            match q.split_once('"') {
                Some((v, n)) => (v.to_string(), n),
                None => (q.to_string(), ""),
            }
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v.trim().to_string(), n),
                None => (after.trim().to_string(), ""),
            }
        };
        out.insert(key, value);
        rest = next.trim_start_matches(',').trim();
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let m = parse_challenge(
            r#"realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(m["realm"], "https://auth.docker.io/token");
        assert_eq!(m["service"], "registry.docker.io");
        assert_eq!(m["scope"], "repository:library/busybox:pull");
    }

    #[test]
    fn endpoints_default_and_override() {
        let e = Endpoints::from_args(&[
            "123.dkr.ecr.us-east-1.amazonaws.com=http://127.0.0.1:5001/".into(),
        ])
        .unwrap();
        assert_eq!(
            e.base_url("123.dkr.ecr.us-east-1.amazonaws.com"),
            "http://127.0.0.1:5001"
        );
        assert_eq!(e.base_url("localhost:5000"), "http://localhost:5000");
        assert_eq!(e.base_url("ghcr.io"), "https://ghcr.io");
        assert!(Endpoints::from_args(&["nohost".into()]).is_err());
        assert!(Endpoints::from_args(&["h=ftp://x".into()]).is_err());
    }

    #[test]
    fn retry_delays_grow_and_cap() {
        let r = RetryPolicy::default();
        assert!(r.delay(1) < r.delay(2));
        assert_eq!(r.delay(30), r.max_delay);
    }
}
