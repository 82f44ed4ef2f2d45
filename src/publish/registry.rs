//! A client for the OCI distribution API (what ECR, Docker Hub and `docker-registry`
//! speak): manifests, blob existence checks, resumable blob uploads, with retries and
//! credentials that refresh when the registry refuses them.

use super::auth::{CredentialSource, Credentials};
use super::error::PublishError;
use super::reference::{is_loopback_host, sha256_digest};
use crate::http_limits::CappedReadError;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
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
    /// From `--registry-endpoint HOST=URL` items; a later item for a host wins.
    pub fn from_args(items: &[String]) -> Result<Self, PublishError> {
        Self::from_items(items.iter().map(|i| ("--registry-endpoint", i.as_str())))
    }

    /// From `(origin, HOST=URL)` items, each checked by [`parse_endpoint`]; a later item
    /// for a host wins. `origin` says where an item came from (a flag, a variable) for the
    /// error about it.
    pub fn from_items<'a>(
        items: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, PublishError> {
        let mut overrides = BTreeMap::new();
        for (origin, item) in items {
            let (host, url) = parse_endpoint(item).map_err(|reason| PublishError::BadEndpoint {
                origin: origin.to_string(),
                item: item.to_string(),
                reason,
            })?;
            overrides.insert(host.to_string(), url.to_string());
        }
        Ok(Self { overrides })
    }

    /// The `(host, URL)` overrides (for the build's Docker gate, which maps the same
    /// registries inside the build).
    pub fn overrides(&self) -> impl Iterator<Item = (&str, &str)> {
        self.overrides.iter().map(|(h, u)| (h.as_str(), u.as_str()))
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

/// Why a `HOST=URL` registry endpoint is refused.
#[derive(Debug, thiserror::Error)]
pub enum BadEndpoint {
    #[error("expected HOST=URL, e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com=http://127.0.0.1:5001")]
    Form,
    #[error(transparent)]
    Host(#[from] crate::project::BadValue),
    #[error("`{url}` is not an http:// or https:// URL with a host: {reason}")]
    Url { url: String, reason: String },
}

/// One `HOST=URL` endpoint: a registry host (with a TCP port, if any) and an http:// or
/// https:// URL (with a host and a TCP port) to send its traffic to. Gives the host and
/// the URL without a trailing `/`.
pub fn parse_endpoint(item: &str) -> Result<(&str, &str), BadEndpoint> {
    let (host, url) = item.split_once('=').ok_or(BadEndpoint::Form)?;
    if host.is_empty() || host.contains('/') {
        return Err(BadEndpoint::Form);
    }
    crate::project::host_port(host)?;
    check_http_url(url)?;
    Ok((host, url.trim_end_matches('/')))
}

/// `s` is an http:// or https:// URL with a host and a TCP port.
pub fn check_http_url(s: &str) -> Result<(), BadEndpoint> {
    let bad = |reason: String| BadEndpoint::Url {
        url: s.to_string(),
        reason,
    };
    let url = reqwest::Url::parse(s).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!("the scheme is {}", url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host".into()));
    }
    if url.port() == Some(0) {
        return Err(bad("port 0".into()));
    }
    Ok(())
}

/// How long to wait for a registry and how much of its answers to read. A registry is
/// input like any other: it may send a manifest without end, accept a connection and
/// never answer, or trickle a byte a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Establishing a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// The longest silence while waiting for an answer or reading a body, and while
    /// sending an upload: a stalled or trickling registry is detected after this.
    pub idle_timeout: Duration,
    /// The whole of a small request (`/v2/`, manifests, tokens, upload sessions), body
    /// included. Blob uploads and downloads have no total deadline, only `idle_timeout`.
    pub request_timeout: Duration,
    /// A manifest or an index.
    pub max_manifest: u64,
    /// A token endpoint's answer.
    pub max_token: u64,
    /// What is read of an error answer's body (the rest is left unread).
    pub max_error_body: u64,
    /// One signature layer (a simple-signing payload) of a `.sig` manifest.
    pub max_signature: u64,
    /// One attestation layer (a DSSE envelope, an SBOM can be large) of a `.att` manifest.
    pub max_attestation: u64,
    /// All the layers of one `.sig` or `.att` manifest together, and how many it may have.
    pub max_attachments_total: u64,
    pub max_attachment_layers: usize,
    /// An image configuration blob.
    pub max_config: u64,
}

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// What the distribution registry and the OCI specification allow for a manifest.
pub const MAX_MANIFEST: u64 = 4 << 20;
pub const MAX_TOKEN: u64 = 1 << 20;
pub const MAX_ERROR_BODY: u64 = 64 << 10;
pub const MAX_SIGNATURE: u64 = 1 << 20;
pub const MAX_ATTESTATION: u64 = 32 << 20;
pub const MAX_ATTACHMENTS_TOTAL: u64 = 128 << 20;
/// cosign's limit on signatures or attestations per image.
pub const MAX_ATTACHMENT_LAYERS: usize = 100;
pub const MAX_CONFIG: u64 = 16 << 20;
/// How many times a request that timed out is sent in all: once more after a stall.
const TIMEOUT_ATTEMPTS: u32 = 2;

impl Default for Limits {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_manifest: MAX_MANIFEST,
            max_token: MAX_TOKEN,
            max_error_body: MAX_ERROR_BODY,
            max_signature: MAX_SIGNATURE,
            max_attestation: MAX_ATTESTATION,
            max_attachments_total: MAX_ATTACHMENTS_TOTAL,
            max_attachment_layers: MAX_ATTACHMENT_LAYERS,
            max_config: MAX_CONFIG,
        }
    }
}

impl Limits {
    /// The same limits with every timeout at most `timeout` (idle and per request set
    /// to it): what `RUNNER_REGISTRY_TIMEOUT` means.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Self {
            connect_timeout: self.connect_timeout.min(timeout),
            idle_timeout: timeout,
            request_timeout: timeout,
            ..self
        }
    }
}

/// What kind of request, for its timeouts: small ones have a total deadline (`Small`:
/// `request_timeout`; `Fetch`: a blob read into memory, its own); blob transfers only
/// the idle timeout (an upload's through a watchdog on its body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Small,
    Fetch(Duration),
    Download,
    Upload,
}

/// The slowest transfer a blob read into memory is given time for, beyond
/// `request_timeout`: its deadline grows by a second per MiB of its limit.
const MIN_FETCH_RATE: u64 = 1 << 20;

/// When an upload's body last gave bytes to the connection.
struct Progress {
    start: Instant,
    last_ms: AtomicU64,
}

impl Progress {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        self.start
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// A request body that records its progress, from a stream of chunks.
fn progress_body<S>(stream: S, progress: &Arc<Progress>) -> reqwest::Body
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + Sync + 'static,
{
    use futures_util::StreamExt as _;
    let p = Arc::clone(progress);
    reqwest::Body::wrap_stream(stream.inspect(move |_| p.touch()))
}

/// `bytes` as a body in chunks, so its progress can be watched.
fn chunked_body(bytes: &bytes::Bytes, progress: &Arc<Progress>) -> reqwest::Body {
    const PIECE: usize = 256 * 1024;
    let mut pieces = Vec::with_capacity(bytes.len() / PIECE + 1);
    let mut at = 0;
    while at < bytes.len() {
        let end = (at + PIECE).min(bytes.len());
        pieces.push(Ok(bytes.slice(at..end)));
        at = end;
    }
    progress_body(futures_util::stream::iter(pieces), progress)
}

/// Why one PATCH of an upload failed.
struct PatchFailure {
    detail: String,
    /// The registry went silent (rather than refusing or breaking the connection).
    timed_out: bool,
}

impl PatchFailure {
    fn other(detail: impl ToString) -> Self {
        Self {
            detail: detail.to_string(),
            timed_out: false,
        }
    }
}

/// Why a request got no (complete) answer.
enum SendError {
    Http(reqwest::Error),
    /// The upload body made no progress for the idle timeout.
    Stalled,
}

impl SendError {
    fn is_timeout(&self) -> bool {
        match self {
            SendError::Http(e) => e.is_timeout(),
            SendError::Stalled => true,
        }
    }

    fn detail(&self) -> String {
        match self {
            SendError::Http(e) => crate::aws_config::error_chain(e),
            SendError::Stalled => "the upload made no progress".into(),
        }
    }
}

/// Sends `req`; for an upload, gives up when its body has not advanced for `idle`
/// (reqwest's read timeout would count the whole upload as one read).
async fn send_watched(
    req: RequestBuilder,
    progress: Option<&Arc<Progress>>,
    idle: Duration,
) -> Result<Response, SendError> {
    let Some(progress) = progress else {
        return req.send().await.map_err(SendError::Http);
    };
    let fut = req.send();
    tokio::pin!(fut);
    let tick = (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        tokio::select! {
            r = &mut fut => return r.map_err(SendError::Http),
            () = tokio::time::sleep(tick) => {
                if progress.idle_for() >= idle {
                    return Err(SendError::Stalled);
                }
            }
        }
    }
}

/// How often and how patiently to retry: connection errors, 5xx and 429.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// The longest `Retry-After` (of a 429 or 5xx) honoured; a registry asking for more
    /// is reported at once instead of being waited for.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 8,
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt`: exponential from `first_delay`, at most
    /// `max_delay`, jittered (a random point of its upper half) so that clients refused
    /// together do not come back together.
    fn delay(&self, attempt: u32) -> Duration {
        self.delay_at(attempt, rand::random::<f64>())
    }

    /// `delay` with the random draw `r` in [0, 1) given.
    fn delay_at(&self, attempt: u32, r: f64) -> Duration {
        let d = self.first_delay.saturating_mul(1u32 << attempt.min(16));
        d.min(self.max_delay).mul_f64(0.5 + 0.5 * r.clamp(0.0, 1.0))
    }
}

/// A `Retry-After` header: delay-seconds or an HTTP date (RFC 9110), as the wait from
/// `now` (a date in the past is no wait).
fn retry_after(resp: &Response, now: std::time::SystemTime) -> Option<Duration> {
    let v = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
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
    /// Reads time out after `limits.idle_timeout` of silence.
    http: reqwest::Client,
    /// For uploads: no read timeout (reqwest would count sending the body as waiting for
    /// the answer); a watchdog on the body's progress instead.
    upload_http: reqwest::Client,
    source: Arc<dyn CredentialSource>,
    state: tokio::sync::Mutex<AuthState>,
    retry: RetryPolicy,
    limits: Limits,
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
    /// A client with the default `Limits`.
    pub fn new(
        registry: &str,
        endpoints: &Endpoints,
        source: Arc<dyn CredentialSource>,
        retry: RetryPolicy,
    ) -> Result<Self, PublishError> {
        Self::with_limits(registry, endpoints, source, retry, Limits::default())
    }

    pub fn with_limits(
        registry: &str,
        endpoints: &Endpoints,
        source: Arc<dyn CredentialSource>,
        retry: RetryPolicy,
        limits: Limits,
    ) -> Result<Self, PublishError> {
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!("runner/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(limits.connect_timeout)
        };
        let setup = |e: reqwest::Error| PublishError::Protocol {
            registry: registry.to_string(),
            what: "client setup".into(),
            status: 0,
            detail: e.to_string(),
        };
        let http = builder()
            .read_timeout(limits.idle_timeout)
            .build()
            .map_err(setup)?;
        let upload_http = builder().build().map_err(setup)?;
        Ok(Self {
            registry: registry.to_string(),
            base: endpoints.base_url(registry),
            http,
            upload_http,
            source,
            state: tokio::sync::Mutex::new(AuthState::default()),
            retry,
            limits,
            stats: Stats::default(),
        })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Reads a whole body of at most `limit` bytes: refused up front when its
    /// Content-Length says more, and as soon as more arrives (never trusting the header;
    /// never holding more than `limit` bytes).
    async fn read_capped(
        &self,
        mut resp: Response,
        what: &str,
        limit: u64,
    ) -> Result<Vec<u8>, PublishError> {
        crate::http_limits::read_capped(&mut resp, limit)
            .await
            .map_err(|e| match e {
                CappedReadError::TooLarge => PublishError::TooLarge {
                    registry: self.registry.clone(),
                    what: what.to_string(),
                    limit,
                },
                CappedReadError::Transfer(e) => self.transfer_error(what, resp.url().as_str(), &e),
            })
    }

    /// The start of an error answer's body (at most `max_error_body` bytes, for at most
    /// `request_timeout`: an upload's answer has no deadline of its own), trimmed for a
    /// message. Whatever goes wrong reading it gives what arrived until then.
    async fn error_text(&self, mut resp: Response) -> String {
        let out = crate::http_limits::read_prefix(
            &mut resp,
            self.limits.max_error_body,
            self.limits.request_timeout,
        )
        .await;
        snippet(&String::from_utf8_lossy(&out))
    }

    /// A body read that failed: a timeout, or the connection broke.
    fn transfer_error(&self, what: &str, url: &str, e: &reqwest::Error) -> PublishError {
        if e.is_timeout() {
            self.timed_out(what, url, 1)
        } else {
            self.protocol(what, 200, crate::aws_config::error_chain(e))
        }
    }

    fn timed_out(&self, what: &str, url: &str, attempts: u32) -> PublishError {
        PublishError::Timeout {
            registry: self.registry.clone(),
            what: what.to_string(),
            url: url.to_string(),
            attempts,
            idle: self.limits.idle_timeout.as_secs_f64(),
            total: self.limits.request_timeout.as_secs_f64(),
        }
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
        let mut req = self.http.get(realm).timeout(self.limits.request_timeout);
        let query: Vec<(&str, &String)> = ["service", "scope"]
            .iter()
            .filter_map(|k| params.get(*k).map(|v| (*k, v)))
            .collect();
        req = req.query(&query);
        if let Credentials::Basic { username, password } = &creds {
            req = req.basic_auth(username, Some(password.expose()));
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                self.timed_out("the token request", realm, 1)
            } else {
                self.unreachable(realm, 1, &e)
            }
        })?;
        if !resp.status().is_success() {
            return Err(PublishError::Unauthorized {
                registry: self.registry.clone(),
                status: resp.status().as_u16(),
            });
        }
        let body = self
            .read_capped(resp, "the token answer", self.limits.max_token)
            .await?;
        let body: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| self.protocol("token", 200, e))?;
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

    /// Sends a small request built by `build` (with the per-request deadline).
    async fn send<F>(&self, what: &str, url: &str, build: F) -> Result<Response, PublishError>
    where
        F: Fn(&reqwest::Client, &str) -> RequestBuilder,
    {
        self.send_kind(what, url, Kind::Small, |c, u, _| build(c, u))
            .await
    }

    /// Sends a request built by `build`, retrying connection failures, 5xx and 429, and
    /// refreshing credentials once on 401. `build` is called again for every attempt,
    /// with the progress an upload's body must report (see `progress_body`). A request
    /// that timed out is sent once more at most.
    async fn send_kind<F>(
        &self,
        what: &str,
        url: &str,
        kind: Kind,
        build: F,
    ) -> Result<Response, PublishError>
    where
        F: Fn(&reqwest::Client, &str, &Arc<Progress>) -> RequestBuilder,
    {
        let mut refreshed = false;
        let mut attempt = 0;
        let mut timeouts = 0;
        // Scheme, host and path only: upload locations may carry session state in the query.
        let logged = url.split(['?', '#']).next().unwrap_or_default();
        tracing::debug!(what, url = logged, "registry request");
        loop {
            let progress = Progress::new();
            let (client, watched) = match kind {
                Kind::Upload => (&self.upload_http, Some(&progress)),
                Kind::Small | Kind::Fetch(_) | Kind::Download => (&self.http, None),
            };
            let mut req = build(client, url, &progress);
            match kind {
                Kind::Small => req = req.timeout(self.limits.request_timeout),
                Kind::Fetch(deadline) => req = req.timeout(deadline),
                Kind::Download | Kind::Upload => {}
            }
            let req = self.authorize(req).await?;
            progress.touch();
            match send_watched(req, watched, self.limits.idle_timeout).await {
                Err(e) => {
                    attempt += 1;
                    if e.is_timeout() {
                        timeouts += 1;
                        if timeouts >= TIMEOUT_ATTEMPTS {
                            return Err(self.timed_out(what, url, attempt));
                        }
                    }
                    if attempt >= self.retry.attempts {
                        return Err(PublishError::Unreachable {
                            registry: self.registry.clone(),
                            url: url.to_string(),
                            attempts: attempt,
                            detail: e.detail(),
                        });
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
                    let status = resp.status().as_u16();
                    let asked = retry_after(&resp, std::time::SystemTime::now());
                    if let Some(wait) = asked.filter(|w| *w > self.retry.max_retry_after) {
                        return Err(PublishError::RetryAfter {
                            registry: self.registry.clone(),
                            what: what.to_string(),
                            status,
                            seconds: wait.as_secs(),
                            limit: self.retry.max_retry_after.as_secs(),
                        });
                    }
                    attempt += 1;
                    if attempt >= self.retry.attempts {
                        let body = self.error_text(resp).await;
                        return Err(self.protocol(what, status, body));
                    }
                    let backoff = self.retry.delay(attempt);
                    let wait = asked.map_or(backoff, |asked| asked.max(backoff));
                    tracing::warn!(
                        registry = %self.registry,
                        what,
                        status,
                        retry_after = ?asked.map(|d| d.as_secs_f64()),
                        wait_secs = wait.as_secs_f64(),
                        "registry busy; retrying (Retry-After honoured, jittered backoff)"
                    );
                    tokio::time::sleep(wait).await;
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

    /// Streams a blob of exactly `size` bytes (its descriptor's) into `out`, one chunk in
    /// memory at a time, checked against its digest (what `out` received is garbage when
    /// this fails). More or fewer bytes than `size` are an error.
    pub async fn get_blob_into<W>(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
        out: &mut W,
    ) -> Result<(), PublishError>
    where
        W: tokio::io::AsyncWrite + Unpin,
    {
        use sha2::Digest as _;
        use tokio::io::AsyncWriteExt as _;
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let mut resp = self
            .send_kind("GET blob", &url, Kind::Download, |c, u, _| c.get(u))
            .await?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => {
                return Err(PublishError::NotFound {
                    reference: format!("{}/{repo}@{digest}", self.registry),
                })
            }
            s => return Err(self.protocol(&format!("GET blob {digest}"), s.as_u16(), "")),
        }
        let what = format!("blob {}/{repo}@{digest}", self.registry);
        let too_large = || PublishError::TooLarge {
            registry: self.registry.clone(),
            what: what.clone(),
            limit: size,
        };
        if resp.content_length().is_some_and(|n| n > size) {
            return Err(too_large());
        }
        let mut hasher = sha2::Sha256::new();
        let mut received = 0u64;
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    received += chunk.len() as u64;
                    if received > size {
                        return Err(too_large());
                    }
                    hasher.update(&chunk);
                    out.write_all(&chunk).await.map_err(|e| {
                        PublishError::io("write", format!("the download of {what}"), e)
                    })?;
                }
                Ok(None) => break,
                Err(e) => return Err(self.transfer_error(&what, &url, &e)),
            }
        }
        let actual = format!("sha256:{:x}", hasher.finalize());
        if actual != digest || received != size {
            return Err(PublishError::DigestMismatch {
                digest: digest.to_string(),
                actual: format!("{actual}, {received} of {size} bytes"),
            });
        }
        Ok(())
    }

    /// A blob of at most `max_size` bytes (its descriptor's size, or a limit), in memory,
    /// checked against its digest; within `request_timeout` plus a second per MiB of
    /// `max_size` (a trickle cannot hold it for long).
    pub async fn get_blob(
        &self,
        repo: &str,
        digest: &str,
        max_size: u64,
    ) -> Result<Vec<u8>, PublishError> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let deadline = self
            .limits
            .request_timeout
            .saturating_add(Duration::from_secs(max_size / MIN_FETCH_RATE));
        let resp = self
            .send_kind("GET blob", &url, Kind::Fetch(deadline), |c, u, _| c.get(u))
            .await?;
        match resp.status() {
            s if s.is_success() => {
                let what = format!("blob {}/{repo}@{digest}", self.registry);
                let bytes = self.read_capped(resp, &what, max_size).await?;
                let actual = sha256_digest(&bytes);
                if actual != digest {
                    return Err(PublishError::DigestMismatch {
                        digest: digest.to_string(),
                        actual,
                    });
                }
                Ok(bytes)
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
            let body = self.error_text(resp).await;
            return Err(self.protocol("POST blob upload", s, body));
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
            .send_kind("PUT blob", &url, Kind::Upload, |c, u, progress| {
                c.put(u)
                    .header("Content-Type", "application/octet-stream")
                    .header("Content-Length", body.len().to_string())
                    .body(chunked_body(&body, progress))
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            let s = resp.status().as_u16();
            let body = self.error_text(resp).await;
            return Err(self.protocol("PUT blob", s, body));
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
        // Failures in a row that were silences: a registry that stalls twice is not
        // waited for any longer.
        let mut stalls = 0u32;
        while offset < size {
            let end = (offset + CHUNK).min(size);
            match self.patch_range(&loc, path, offset, end).await {
                Ok(next) => {
                    loc = next;
                    offset = end;
                    failures = 0;
                    stalls = 0;
                }
                Err(PatchFailure { detail, timed_out }) => {
                    failures += 1;
                    stalls += u32::from(timed_out);
                    if stalls >= TIMEOUT_ATTEMPTS {
                        return Err(self.timed_out("PATCH blob upload", &self.url(&loc), failures));
                    }
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
                        Err(PublishError::Timeout { .. }) => {
                            stalls += 1;
                            if stalls >= TIMEOUT_ATTEMPTS {
                                return Err(self.timed_out(
                                    "GET upload status",
                                    &self.url(&loc),
                                    failures,
                                ));
                            }
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
                let body = self.error_text(resp).await;
                Err(self.protocol(&format!("PUT blob {digest}"), s.as_u16(), body))
            }
        }
    }

    /// One PATCH of `path[offset..end]`. Errors are described: the caller decides.
    async fn patch_range(
        &self,
        loc: &str,
        path: &Path,
        offset: u64,
        end: u64,
    ) -> Result<String, PatchFailure> {
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(PatchFailure::other)?;
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(PatchFailure::other)?;
        let len = end - offset;
        let reader = tokio::io::AsyncReadExt::take(file, len);
        let progress = Progress::new();
        let body = progress_body(
            tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024),
            &progress,
        );
        let url = self.url(loc);
        let mut req = self
            .upload_http
            .request(Method::PATCH, &url)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", len.to_string())
            .body(body);
        if len > 0 {
            req = req.header("Content-Range", format!("{}-{}", offset, end - 1));
        }
        let req = self.authorize(req).await.map_err(PatchFailure::other)?;
        progress.touch();
        let resp = send_watched(req, Some(&progress), self.limits.idle_timeout)
            .await
            .map_err(|e| PatchFailure {
                detail: e.detail(),
                timed_out: e.is_timeout(),
            })?;
        if resp.status() == StatusCode::ACCEPTED {
            location(&resp).ok_or_else(|| PatchFailure::other("no Location header after PATCH"))
        } else if resp.status() == StatusCode::UNAUTHORIZED {
            self.reauthorize(challenge(&resp))
                .await
                .map_err(PatchFailure::other)?;
            Err(PatchFailure::other("credentials refreshed"))
        } else {
            Err(PatchFailure::other(format!(
                "PATCH answered {}",
                resp.status()
            )))
        }
    }

    /// Asks how much of an upload arrived: `Some((location, bytes_received))`, or `None`
    /// when the registry no longer knows the upload.
    async fn upload_status(&self, loc: &str) -> Result<Option<(String, u64)>, PublishError> {
        let url = self.url(loc);
        let req = self
            .authorize(self.http.get(&url).timeout(self.limits.request_timeout))
            .await?;
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                self.timed_out("GET upload status", &url, 1)
            } else {
                self.unreachable(&url, 1, &e)
            }
        })?;
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
        Ok(self
            .put_manifest_subject(repo, reference, media_type, bytes)
            .await?
            .0)
    }

    /// Like `put_manifest`, and whether the registry answered with `OCI-Subject`: it
    /// indexed the manifest's `subject` for the referrers API (OCI distribution 1.1), so
    /// no referrers tag needs to be kept by the client.
    pub async fn put_manifest_subject(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(String, bool), PublishError> {
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
            let body = self.error_text(resp).await;
            if body.contains("TAG_INVALID") || body.contains("ImageTagAlreadyExists") {
                return Err(PublishError::TagImmutable {
                    repository: format!("{}/{repo}", self.registry),
                    tag: reference.to_string(),
                });
            }
            return Err(self.protocol(&format!("PUT manifest {reference}"), s, body));
        }
        let subject = resp.headers().contains_key("OCI-Subject");
        Ok((sha256_digest(bytes), subject))
    }

    /// The OCI 1.1 referrers API (`GET /v2/<name>/referrers/<digest>`): the image index
    /// listing the manifests whose `subject` is `digest`, or `None` when the registry
    /// does not offer the API (404, as distribution 2.8 answers; 400/405/501 from
    /// others), in which case the referrers tag schema (`sha256-<hex>`) is the fallback.
    pub async fn get_referrers(
        &self,
        repo: &str,
        digest: &str,
    ) -> Result<Option<Vec<u8>>, PublishError> {
        let url = self.url(&format!("/v2/{repo}/referrers/{digest}"));
        let resp = self
            .send("GET referrers", &url, |c, u| {
                c.get(u).header("Accept", OCI_INDEX)
            })
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND
            | StatusCode::BAD_REQUEST
            | StatusCode::METHOD_NOT_ALLOWED
            | StatusCode::NOT_IMPLEMENTED => Ok(None),
            s if s.is_success() => {
                let is_index = resp
                    .headers()
                    .get("Content-Type")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|t| t.starts_with(OCI_INDEX));
                let what = format!("the referrers of {}/{repo}@{digest}", self.registry);
                let bytes = self
                    .read_capped(resp, &what, self.limits.max_manifest)
                    .await?;
                // A 200 that is not an index is a registry serving something else at
                // that path (a catch-all page): the same as no API.
                Ok(is_index.then_some(bytes))
            }
            s => {
                let body = self.error_text(resp).await;
                Err(self.protocol(&format!("GET referrers {digest}"), s.as_u16(), body))
            }
        }
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
                let what = format!("the manifest {}/{repo}:{reference}", self.registry);
                let what = what.replace(":sha256:", "@sha256:");
                let bytes = self
                    .read_capped(resp, &what, self.limits.max_manifest)
                    .await?;
                let digest = sha256_digest(&bytes);
                if reference.starts_with("sha256:") && digest != reference {
                    return Err(PublishError::DigestMismatch {
                        digest: reference.to_string(),
                        actual: digest,
                    });
                }
                Ok(Some(Manifest {
                    media_type,
                    bytes,
                    digest,
                }))
            }
            s => {
                let body = self.error_text(resp).await;
                Err(self.protocol(&format!("GET manifest {reference}"), s.as_u16(), body))
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
        assert!(Endpoints::from_args(&["h:99999=http://x".into()]).is_err());
        assert!(Endpoints::from_args(&["h=http://x:99999".into()]).is_err());
        let e = Endpoints::from_items([("V", "h=http://a:1"), ("--f", "h=http://b:2")]).unwrap();
        assert_eq!(e.base_url("h"), "http://b:2");
        let err = Endpoints::from_items([("V", "h=http://a:0")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad V `h=http://a:0`: `http://a:0` is not an http:// or https:// URL with a host: port 0"
        );
    }

    #[test]
    fn retry_delays_grow_cap_and_jitter() {
        let r = RetryPolicy::default();
        assert!(r.delay(1) < r.delay(2));
        assert_eq!(r.delay_at(30, 1.0), r.max_delay);
        assert_eq!(r.delay_at(30, 0.0), r.max_delay / 2);
        assert_eq!(r.delay_at(1, 0.0), Duration::from_millis(250));
        assert_eq!(r.delay_at(1, 1.0), Duration::from_millis(500));
        for _ in 0..100 {
            let d = r.delay(3);
            assert!(
                d >= Duration::from_secs(1) && d <= Duration::from_secs(2),
                "{d:?}"
            );
        }
        let draws: std::collections::BTreeSet<Duration> = (0..20).map(|_| r.delay(3)).collect();
        assert!(draws.len() > 1, "no jitter: {draws:?}");
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let resp = |v: &str| {
            Response::from(
                axum::http::Response::builder()
                    .status(429)
                    .header("Retry-After", v)
                    .body(Vec::<u8>::new())
                    .unwrap(),
            )
        };
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(retry_after(&resp("7"), now), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(&resp("Wed, 21 Oct 2015 07:28:30 GMT"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(&resp("Wed, 21 Oct 2015 07:00:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&resp("soon"), now), None);
    }
}
