//! The protocol client every pool command speaks through: `runner agent`, `runner submit`
//! and `runner jobs`. Sends `runner-protocol: 1` and the bearer token on every request,
//! decodes [`ApiError`] answers into [`ClientError`], and retries idempotent calls with
//! backoff when the server cannot be reached or answers 5xx.
//!
//! Not retried here: `claim` (a lost answer is recovered by the lease expiring) and
//! `submit` (a retry could queue the job twice).

use super::protocol::{
    ApiError, ArtifactList, Assignment, Claim, Complete, Fence, Heartbeat, JobList, JobView,
    LogAppend, LogPage, PauseQueue, QueueView, ResumeQueue, SubmitJob, VERSION, VERSION_HEADER,
};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::{Method, StatusCode, Url};
use std::time::Duration;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("server URL `{url}` is not usable: {reason} (pass --server http(s)://HOST:PORT)")]
    BadUrl { url: String, reason: String },
    #[error("the token cannot be sent in an HTTP header (a newline or control character?); check --token / RUNNER_TOKEN")]
    BadToken,
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    #[error("cannot reach the server at {url}: {detail} (is `runner server` running there?)")]
    Unreachable { url: String, detail: String },
    #[error(
        "the server refused the token (401): {0}; create one with `runner server token create`"
    )]
    Unauthorized(String),
    #[error("the token's role may not do this (403): {0}")]
    Forbidden(String),
    #[error("not found (404): {0}")]
    NotFound(String),
    /// 409: the attempt's lease is lost; the agent must abandon the job.
    #[error("the lease is lost (409): {0}")]
    Fenced(String),
    #[error("{}", refused(.status, .error, .diagnostics))]
    Refused {
        status: u16,
        error: String,
        diagnostics: Vec<String>,
    },
    #[error("the server failed ({status}): {error}")]
    Server { status: u16, error: String },
    #[error("unexpected answer from the server to {what}: {detail}")]
    Decode { what: String, detail: String },
}

fn refused(status: &u16, error: &str, diagnostics: &[String]) -> String {
    let mut s = format!("the server refused the request ({status}): {error}");
    for d in diagnostics {
        s.push('\n');
        s.push_str(d);
    }
    s
}

impl ClientError {
    /// Worth trying again: the server was not reached or failed on its side.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. } | ClientError::Server { .. }
        )
    }
}

/// How idempotent calls are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries in all (1: no retry).
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 6,
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The delay before try `n` (1-based, after the first failure).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32 << n.saturating_sub(1).min(16);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Ordinary calls give up after this long; long polls get their wait on top.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Uploads and downloads: no total limit, but no silence longer than this.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// A connection to one `runner server`.
#[derive(Clone)]
pub struct PoolClient {
    http: reqwest::Client,
    base: Url,
    retry: RetryPolicy,
}

impl std::fmt::Debug for PoolClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl PoolClient {
    /// A client of the server at `server` (`http(s)://host:port`, optionally with a path
    /// prefix) using `token`.
    pub fn new(server: &str, token: &str) -> Result<Self, ClientError> {
        let bad = |reason: &str| ClientError::BadUrl {
            url: server.to_string(),
            reason: reason.to_string(),
        };
        let mut base = Url::parse(server.trim()).map_err(|e| bad(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(bad("the scheme must be http or https"));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(bad("it has no host"));
        }
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        base.set_query(None);
        base.set_fragment(None);
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| ClientError::BadToken)?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        headers.insert(VERSION_HEADER, HeaderValue::from(VERSION));
        let http = reqwest::Client::builder()
            .user_agent(concat!("runner/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(IDLE_TIMEOUT)
            .build()
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        Ok(Self {
            http,
            base,
            retry: RetryPolicy::default(),
        })
    }

    /// The same client with another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The server's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `base` + the path segments (each percent-encoded as one segment).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(segments);
        }
        url
    }

    async fn send(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let resp = req.send().await.map_err(|e| ClientError::Unreachable {
            url: self.base.to_string(),
            detail: error_chain(&e),
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.bytes().await.unwrap_or_default();
        let api = serde_json::from_slice::<ApiError>(&body).unwrap_or_else(|_| ApiError {
            error: if body.is_empty() {
                format!("{what}: {status}")
            } else {
                String::from_utf8_lossy(&body[..body.len().min(2000)]).into_owned()
            },
            diagnostics: Vec::new(),
        });
        Err(match status {
            StatusCode::UNAUTHORIZED => ClientError::Unauthorized(api.error),
            StatusCode::FORBIDDEN => ClientError::Forbidden(api.error),
            StatusCode::NOT_FOUND => ClientError::NotFound(api.error),
            StatusCode::CONFLICT => ClientError::Fenced(api.error),
            s if s.is_server_error() => ClientError::Server {
                status: s.as_u16(),
                error: api.error,
            },
            s => ClientError::Refused {
                status: s.as_u16(),
                error: api.error,
                diagnostics: api.diagnostics,
            },
        })
    }

    /// Sends `req`, again after transient failures (a request whose body cannot be
    /// copied is sent once).
    async fn send_retrying(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let mut n = 0;
        loop {
            n += 1;
            let Some(this) = req.try_clone() else {
                return self.send(what, req).await;
            };
            match self.send(what, this).await {
                Err(e) if e.is_transient() && n < self.retry.attempts => {
                    tracing::debug!("{what}: {e}; trying again");
                    tokio::time::sleep(self.retry.delay(n)).await;
                }
                r => return r,
            }
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        what: &str,
        resp: reqwest::Response,
    ) -> Result<T, ClientError> {
        let body = resp.bytes().await.map_err(|e| ClientError::Decode {
            what: what.to_string(),
            detail: error_chain(&e),
        })?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            what: what.to_string(),
            detail: e.to_string(),
        })
    }

    fn get(&self, url: Url, timeout: Duration) -> reqwest::RequestBuilder {
        self.http.get(url).timeout(timeout)
    }

    // ---- for everyone ------------------------------------------------------------

    /// `GET /healthz`.
    pub async fn healthz(&self) -> Result<(), ClientError> {
        let url = self.url(&["healthz"]);
        self.send("healthz", self.get(url, CALL_TIMEOUT)).await?;
        Ok(())
    }

    // ---- submit role ---------------------------------------------------------------

    /// `HEAD /v1/blobs/{sha256}`: whether the server has the blob already.
    pub async fn has_blob(&self, sha256: &str) -> Result<bool, ClientError> {
        let url = self.url(&["v1", "blobs", sha256]);
        let r = self
            .send_retrying("blob check", {
                self.http
                    .request(Method::HEAD, url.clone())
                    .timeout(CALL_TIMEOUT)
            })
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(ClientError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `PUT /v1/blobs/{sha256}`: uploads a source archive.
    pub async fn put_blob(&self, sha256: &str, bytes: bytes::Bytes) -> Result<(), ClientError> {
        let url = self.url(&["v1", "blobs", sha256]);
        self.send_retrying("source upload", {
            self.http
                .put(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/zstd")
                .body(bytes.clone())
        })
        .await?;
        Ok(())
    }

    /// `POST /v1/jobs` (not retried: a lost answer must not queue the job twice).
    pub async fn submit(&self, job: &SubmitJob) -> Result<JobView, ClientError> {
        let url = self.url(&["v1", "jobs"]);
        let resp = self
            .send(
                "submit",
                self.http.post(url).json(job).timeout(CALL_TIMEOUT),
            )
            .await?;
        Self::json("submit", resp).await
    }

    /// `GET /v1/jobs?state=&limit=`.
    pub async fn list(
        &self,
        state: Option<&str>,
        limit: Option<u32>,
    ) -> Result<JobList, ClientError> {
        let mut url = self.url(&["v1", "jobs"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = state {
                q.append_pair("state", s);
            }
            if let Some(l) = limit {
                q.append_pair("limit", &l.to_string());
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let resp = self
            .send_retrying("job list", self.get(url.clone(), CALL_TIMEOUT))
            .await?;
        Self::json("job list", resp).await
    }

    /// `GET /v1/queue`.
    pub async fn queue(&self) -> Result<QueueView, ClientError> {
        let url = self.url(&["v1", "queue"]);
        let resp = self
            .send_retrying("queue", self.get(url.clone(), CALL_TIMEOUT))
            .await?;
        Self::json("queue", resp).await
    }

    /// `POST /v1/queue/pause` (retried: pausing twice is pausing once).
    pub async fn pause_queue(&self, req: &PauseQueue) -> Result<QueueView, ClientError> {
        let url = self.url(&["v1", "queue", "pause"]);
        let resp = self
            .send_retrying("pause", {
                self.http.post(url.clone()).json(req).timeout(CALL_TIMEOUT)
            })
            .await?;
        Self::json("pause", resp).await
    }

    /// `POST /v1/queue/resume` (retried: resuming twice is resuming once).
    pub async fn resume_queue(&self, req: &ResumeQueue) -> Result<QueueView, ClientError> {
        let url = self.url(&["v1", "queue", "resume"]);
        let resp = self
            .send_retrying("resume", {
                self.http.post(url.clone()).json(req).timeout(CALL_TIMEOUT)
            })
            .await?;
        Self::json("resume", resp).await
    }

    /// `GET /v1/stats?project=&from=&to=&window=`: the delivery metrics.
    pub async fn stats(
        &self,
        project: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        window: Option<&str>,
    ) -> Result<crate::pool::protocol::StatsReport, ClientError> {
        let mut url = self.url(&["v1", "stats"]);
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in [
                ("project", project),
                ("from", from),
                ("to", to),
                ("window", window),
            ] {
                if let Some(v) = v {
                    q.append_pair(k, v);
                }
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let resp = self
            .send_retrying("stats", self.get(url.clone(), CALL_TIMEOUT))
            .await?;
        Self::json("stats", resp).await
    }

    /// `GET /v1/jobs/{id}`.
    pub async fn job(&self, id: &str) -> Result<JobView, ClientError> {
        let url = self.url(&["v1", "jobs", id]);
        let resp = self
            .send_retrying("job", self.get(url.clone(), CALL_TIMEOUT))
            .await?;
        Self::json("job", resp).await
    }

    /// `POST /v1/jobs/{id}/cancel`.
    pub async fn cancel(&self, id: &str) -> Result<JobView, ClientError> {
        let url = self.url(&["v1", "jobs", id, "cancel"]);
        let resp = self
            .send_retrying("cancel", {
                self.http.post(url.clone()).timeout(CALL_TIMEOUT)
            })
            .await?;
        Self::json("cancel", resp).await
    }

    /// `POST /v1/jobs/{id}/retry` (not retried: it queues a new attempt).
    pub async fn retry(&self, id: &str) -> Result<JobView, ClientError> {
        let url = self.url(&["v1", "jobs", id, "retry"]);
        let resp = self
            .send("retry", self.http.post(url).timeout(CALL_TIMEOUT))
            .await?;
        Self::json("retry", resp).await
    }

    /// `GET /v1/jobs/{id}/log`: the chunks of `attempt` (default: the current one) after
    /// `after`, waiting up to `wait_secs` for new ones.
    pub async fn log(
        &self,
        id: &str,
        attempt: Option<u32>,
        after: Option<u64>,
        wait_secs: u64,
    ) -> Result<LogPage, ClientError> {
        let mut url = self.url(&["v1", "jobs", id, "log"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(a) = attempt {
                q.append_pair("attempt", &a.to_string());
            }
            if let Some(a) = after {
                q.append_pair("after", &a.to_string());
            }
            q.append_pair("wait", &wait_secs.to_string());
        }
        let timeout = CALL_TIMEOUT + Duration::from_secs(wait_secs);
        let resp = self
            .send_retrying("log", self.get(url.clone(), timeout))
            .await?;
        Self::json("log", resp).await
    }

    /// `GET /v1/events?project=`: the server-sent event stream of job state changes, from
    /// after `last_event_id` (default: from now on). The answer's body is the stream.
    pub async fn events(
        &self,
        project: Option<&str>,
        last_event_id: Option<&str>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut url = self.url(&["v1", "events"]);
        if let Some(p) = project {
            url.query_pairs_mut().append_pair("project", p);
        }
        let mut req = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        self.send("events", req).await
    }

    /// `GET /v1/jobs/{id}/artifacts`.
    pub async fn artifacts(&self, id: &str) -> Result<ArtifactList, ClientError> {
        let url = self.url(&["v1", "jobs", id, "artifacts"]);
        let resp = self
            .send_retrying("artifact list", self.get(url.clone(), CALL_TIMEOUT))
            .await?;
        Self::json("artifact list", resp).await
    }

    /// `GET /v1/jobs/{id}/artifacts/{name}`: the response, to be streamed by the caller.
    pub async fn artifact(&self, id: &str, name: &str) -> Result<reqwest::Response, ClientError> {
        let url = self.url(&["v1", "jobs", id, "artifacts", name]);
        self.send_retrying("artifact download", self.http.get(url.clone()))
            .await
    }

    // ---- agent role ----------------------------------------------------------------

    /// `POST /v1/agent/claim`: a job, or `None` when none came within `claim.wait_secs`.
    /// Not retried (the caller loops anyway).
    pub async fn claim(&self, claim: &Claim) -> Result<Option<Assignment>, ClientError> {
        let url = self.url(&["v1", "agent", "claim"]);
        let timeout = CALL_TIMEOUT + Duration::from_secs(claim.wait_secs);
        let resp = self
            .send("claim", self.http.post(url).json(claim).timeout(timeout))
            .await?;
        if resp.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        Self::json("claim", resp).await.map(Some)
    }

    /// `GET /v1/agent/blobs/{sha256}`: a source archive.
    pub async fn agent_blob(&self, sha256: &str) -> Result<bytes::Bytes, ClientError> {
        let url = self.url(&["v1", "agent", "blobs", sha256]);
        let resp = self
            .send_retrying("source download", self.http.get(url.clone()))
            .await?;
        resp.bytes().await.map_err(|e| ClientError::Unreachable {
            url: self.base.to_string(),
            detail: error_chain(&e),
        })
    }

    fn attempt_url(&self, id: &str, attempt: u32, tail: &[&str]) -> Url {
        let attempt = attempt.to_string();
        let mut segs = vec!["v1", "agent", "jobs", id, attempt.as_str()];
        segs.extend_from_slice(tail);
        self.url(&segs)
    }

    /// `POST …/heartbeat`: extends the lease (one try: the next beat comes soon).
    pub async fn heartbeat(
        &self,
        id: &str,
        attempt: u32,
        lease: &str,
    ) -> Result<Heartbeat, ClientError> {
        let url = self.attempt_url(id, attempt, &["heartbeat"]);
        let fence = Fence {
            lease: lease.to_string(),
        };
        let resp = self
            .send(
                "heartbeat",
                self.http.post(url).json(&fence).timeout(CALL_TIMEOUT),
            )
            .await?;
        Self::json("heartbeat", resp).await
    }

    /// `GET …/watch`: answers when a cancel is requested or after `wait_secs`.
    pub async fn watch(
        &self,
        id: &str,
        attempt: u32,
        lease: &str,
        wait_secs: u64,
    ) -> Result<Heartbeat, ClientError> {
        let mut url = self.attempt_url(id, attempt, &["watch"]);
        url.query_pairs_mut()
            .append_pair("lease", lease)
            .append_pair("wait", &wait_secs.to_string());
        let timeout = CALL_TIMEOUT + Duration::from_secs(wait_secs);
        let resp = self.send("watch", self.get(url, timeout)).await?;
        Self::json("watch", resp).await
    }

    /// `POST …/log` (idempotent by `seq`; retried).
    pub async fn append_log(
        &self,
        id: &str,
        attempt: u32,
        append: &LogAppend,
    ) -> Result<(), ClientError> {
        let url = self.attempt_url(id, attempt, &["log"]);
        self.send_retrying("log append", {
            self.http
                .post(url.clone())
                .json(append)
                .timeout(CALL_TIMEOUT)
        })
        .await?;
        Ok(())
    }

    /// `PUT …/artifacts/{name}?lease=` (retried).
    pub async fn put_artifact(
        &self,
        id: &str,
        attempt: u32,
        lease: &str,
        name: &str,
        bytes: bytes::Bytes,
    ) -> Result<(), ClientError> {
        let mut url = self.attempt_url(id, attempt, &["artifacts", name]);
        url.query_pairs_mut().append_pair("lease", lease);
        self.send_retrying("artifact upload", {
            self.http
                .put(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(bytes.clone())
        })
        .await?;
        Ok(())
    }

    /// `POST …/complete` (idempotent; retried).
    pub async fn complete(
        &self,
        id: &str,
        attempt: u32,
        complete: &Complete,
    ) -> Result<JobView, ClientError> {
        let url = self.attempt_url(id, attempt, &["complete"]);
        let resp = self
            .send_retrying("complete", {
                self.http
                    .post(url.clone())
                    .json(complete)
                    .timeout(CALL_TIMEOUT)
            })
            .await?;
        Self::json("complete", resp).await
    }

    /// `POST …/release` (idempotent; retried): gives the attempt back to the queue.
    pub async fn release(&self, id: &str, attempt: u32, lease: &str) -> Result<(), ClientError> {
        let url = self.attempt_url(id, attempt, &["release"]);
        let fence = Fence {
            lease: lease.to_string(),
        };
        self.send_retrying("release", {
            self.http
                .post(url.clone())
                .json(&fence)
                .timeout(CALL_TIMEOUT)
        })
        .await?;
        Ok(())
    }
}

/// An error with its causes, `a: b: c` (reqwest hides the useful part in the chain).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn urls_keep_the_prefix_and_encode_segments() {
        let c = PoolClient::new("http://127.0.0.1:8420/pool", "t").unwrap();
        assert_eq!(
            c.url(&["v1", "jobs", "j1", "artifacts", "out/a b.txt"])
                .as_str(),
            "http://127.0.0.1:8420/pool/v1/jobs/j1/artifacts/out%2Fa%20b.txt"
        );
        let c = PoolClient::new("https://h:1/", "t").unwrap();
        assert_eq!(c.url(&["healthz"]).as_str(), "https://h:1/healthz");
        assert_eq!(
            c.attempt_url("j", 2, &["log"]).as_str(),
            "https://h:1/v1/agent/jobs/j/2/log"
        );
    }

    #[test]
    fn bad_servers_and_tokens_are_refused_with_a_hint() {
        for bad in ["127.0.0.1:8420", "ftp://h/", "not a url", "http://"] {
            let e = PoolClient::new(bad, "t").unwrap_err();
            assert!(e.to_string().contains("--server"), "{bad}: {e}");
        }
        let e = PoolClient::new("http://h:1", "a\nb").unwrap_err();
        assert!(matches!(e, ClientError::BadToken));
        assert!(!e.to_string().contains("a\nb"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1), Duration::from_millis(200));
        assert_eq!(p.delay(2), Duration::from_millis(400));
        assert_eq!(p.delay(30), Duration::from_secs(5));
    }

    /// A one-shot HTTP server that answers every connection with `answer`, recording the
    /// requests it saw.
    async fn fake(answers: Vec<&'static str>) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            for answer in answers {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    got.extend_from_slice(&buf[..n]);
                    if n == 0 || got.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                seen.push(String::from_utf8_lossy(&got).into_owned());
                s.write_all(answer.as_bytes()).await.unwrap();
                let _ = s.shutdown().await;
            }
            seen
        });
        (format!("http://{addr}"), task)
    }

    #[tokio::test]
    async fn errors_are_decoded_and_5xx_retried_with_headers_on_every_try() {
        let (url, server) = fake(vec![
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            "HTTP/1.1 409 Conflict\r\ncontent-type: application/json\r\ncontent-length: 27\r\nconnection: close\r\n\r\n{\"error\":\"lease is gone!\"}\n",
        ])
        .await;
        let c = PoolClient::new(&url, "sekrit")
            .unwrap()
            .with_retry(RetryPolicy {
                attempts: 3,
                first_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(1),
            });
        let e = c.heartbeat("j", 1, "l").await.unwrap_err();
        // heartbeat is one try: the 503 comes back as a transient error.
        assert!(e.is_transient(), "{e}");
        let e = c
            .complete(
                "j",
                1,
                &Complete {
                    lease: "l".into(),
                    conclusion: crate::pool::protocol::Conclusion::Succeeded,
                    exit_code: 0,
                    message: None,
                    log_chunks: 0,
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&e, ClientError::Fenced(m) if m == "lease is gone!"),
            "{e}"
        );
        let seen = server.await.unwrap();
        assert_eq!(seen.len(), 2);
        for req in &seen {
            let lower = req.to_ascii_lowercase();
            assert!(lower.contains("authorization: bearer sekrit"), "{req}");
            assert!(lower.contains("runner-protocol: 1"), "{req}");
        }
    }

    #[tokio::test]
    async fn an_idempotent_call_is_retried_after_a_5xx() {
        let (url, server) = fake(vec![
            "HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n",
        ])
        .await;
        let c = PoolClient::new(&url, "t").unwrap().with_retry(RetryPolicy {
            attempts: 3,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        });
        c.release("j", 3, "l").await.unwrap();
        let seen = server.await.unwrap();
        assert_eq!(seen.len(), 2);
        assert!(seen[1].starts_with("POST /v1/agent/jobs/j/3/release "));
    }

    #[tokio::test]
    async fn an_unreachable_server_names_the_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let c = PoolClient::new(&format!("http://{addr}"), "t")
            .unwrap()
            .with_retry(RetryPolicy {
                attempts: 1,
                ..Default::default()
            });
        let e = c.job("x").await.unwrap_err();
        assert!(matches!(e, ClientError::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
    }
}
