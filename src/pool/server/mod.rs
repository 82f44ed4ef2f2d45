//! `runner server`: the HTTP API (axum) over the job store (see [`crate::pool::protocol`]
//! for the routes). Stateless apart from the store and the blobs, so several replicas
//! can share one PostgreSQL; each runs its own lease reaper (conditional updates make
//! that safe) and its own wake-up hub (fed by `LISTEN` on PostgreSQL).
//!
//! Every request under `/v1/` is checked in this order: protocol version header (400),
//! token (401), role (403), body size (413), JSON (400), then the operation's own
//! answers (404 unknown job, 409 fenced, 422 refused source or buildspec).

pub mod blobs;
mod metrics;
pub mod notify;
mod queue;
mod stats;
mod web;
pub mod webhooks;

use crate::pool::archive::{self, is_sha256_hex};
use crate::pool::protocol::{
    self, ApiError, ArtifactEntry, Assignment, Claim, Complete, Fence, Heartbeat, JobList,
    JobState, LogAppend, Role, SourceSpec, SubmitJob,
};
use crate::pool::store::hub::{Baton, Notice};
use crate::pool::store::{NewJob, Store, StoreError};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
pub use blobs::{BlobError, BlobStore, ReceiveError};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
pub use webhooks::GithubConfig;

/// The server's settings (the CLI edge fills them from flags and env).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// A claim's lease.
    pub lease: Duration,
    /// A fresh claim's lease until the agent confirms it (its first heartbeat or log
    /// append; capped at `lease`): a claim whose answer never reached a running agent
    /// (it stopped, or crashed, as the answer came) is queued again this soon, without
    /// counting as a lost attempt.
    pub confirm: Duration,
    /// A job's log is cut past this many bytes (and says so).
    pub log_limit: u64,
    /// JSON request bodies.
    pub json_limit: usize,
    /// One log append.
    pub log_append_limit: usize,
    /// Source archives and artifacts.
    pub blob_limit: usize,
    pub archive_limits: archive::Limits,
    /// How often the lease reaper runs.
    pub reap_every: Duration,
    /// How long a claim may wait for the job store before it answers "no job" (204)
    /// having taken nothing: under overload agents poll again instead of seeing errors.
    pub claim_budget: Duration,
    /// How often agents' last-seen times (kept in memory) are written to the store.
    pub agents_flush_every: Duration,
    /// The web page's session cookie is `Secure` (set when the server serves TLS).
    pub secure_cookies: bool,
    /// A web page sign-in session's lifetime.
    pub session_ttl: Duration,
    /// GitHub webhooks and commit statuses (`POST /v1/webhooks/github` answers 404
    /// without).
    pub github: Option<GithubConfig>,
    /// Job state changes pushed to receivers (see [`notify`]).
    pub notify: notify::NotifyConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            lease: Duration::from_secs(protocol::DEFAULT_LEASE_SECS),
            confirm: Duration::from_secs(protocol::CONFIRM_SECS),
            log_limit: 64 * 1024 * 1024,
            json_limit: 1024 * 1024,
            log_append_limit: 1024 * 1024,
            blob_limit: 512 * 1024 * 1024,
            archive_limits: archive::Limits::default(),
            reap_every: Duration::from_secs(1),
            claim_budget: Duration::from_secs(5),
            agents_flush_every: Duration::from_secs(5),
            secure_cookies: false,
            session_ttl: web::SESSION_TTL,
            github: None,
            notify: notify::NotifyConfig::default(),
        }
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}; pick a free address with --listen")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("the server stopped: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}; pass a PEM certificate chain with --tls-cert and its key with --tls-key")]
    Tls(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Notify(#[from] notify::NotifyError),
}

struct AppState {
    store: Store,
    blobs: BlobStore,
    config: ServerConfig,
    metrics: metrics::Metrics,
    /// Token hash → role and when it was looked up; trusted for
    /// [`crate::pool::store::TOKEN_CACHE_SECS`], so a revocation reaches every replica.
    tokens: Mutex<HashMap<String, (Role, std::time::Instant)>>,
    /// The queue's pauses, as this replica last read them (see [`queue`]).
    pauses: queue::Pauses,
}

type St = State<Arc<AppState>>;

/// An error answer.
#[derive(Debug)]
pub struct Answer {
    status: StatusCode,
    body: ApiError,
}

impl Answer {
    fn new(status: StatusCode, error: impl Into<String>) -> Answer {
        Answer {
            status,
            body: ApiError {
                error: error.into(),
                diagnostics: Vec::new(),
            },
        }
    }
    fn bad(error: impl Into<String>) -> Answer {
        Answer::new(StatusCode::BAD_REQUEST, error)
    }
    fn not_found(what: &str) -> Answer {
        Answer::new(StatusCode::NOT_FOUND, format!("no such {what}"))
    }
    fn refused(error: impl Into<String>, diagnostics: Vec<String>) -> Answer {
        Answer {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: ApiError {
                error: error.into(),
                diagnostics,
            },
        }
    }
    fn internal(e: impl std::fmt::Display) -> Answer {
        tracing::error!("{e}");
        Answer::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<StoreError> for Answer {
    fn from(e: StoreError) -> Answer {
        match e {
            StoreError::NotFound => Answer::not_found("job"),
            StoreError::Fenced { .. } => Answer::new(StatusCode::CONFLICT, e.to_string()),
            StoreError::Conflict(m) => Answer::new(StatusCode::CONFLICT, m),
            StoreError::Invalid(m) => Answer::refused(m, Vec::new()),
            e if e.is_overload() => {
                tracing::warn!("{e}");
                Answer::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            other => Answer::internal(other),
        }
    }
}

impl From<BlobError> for Answer {
    fn from(e: BlobError) -> Answer {
        match e {
            BlobError::BadName(_) => Answer::bad(e.to_string()),
            other => Answer::internal(other),
        }
    }
}

impl From<ReceiveError> for Answer {
    fn from(e: ReceiveError) -> Answer {
        match e {
            ReceiveError::TooLarge { .. } => Answer::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large; the server refuses it",
            ),
            ReceiveError::Body(_) => Answer::bad(e.to_string()),
            ReceiveError::Blob(b) => b.into(),
        }
    }
}

/// Refuses an upload whose declared length is over the cap before reading any of it.
fn check_length(headers: &HeaderMap, limit: u64) -> Res<()> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > limit => Err(ReceiveError::TooLarge { limit }.into()),
        _ => Ok(()),
    }
}

/// A blob as a response body, streamed.
fn blob_response(read: blobs::BlobRead) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, read.size.to_string()),
        ],
        read.body,
    )
        .into_response()
}

impl From<BytesRejection> for Answer {
    fn from(r: BytesRejection) -> Answer {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Answer::new(status, "request body too large; the server refuses it")
        } else {
            Answer::new(status, r.body_text())
        }
    }
}

type Res<T> = Result<T, Answer>;

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Res<T> {
    serde_json::from_slice(body).map_err(|e| Answer::bad(format!("malformed JSON body: {e}")))
}

/// Checks the protocol version and the token's role.
async fn auth(state: &AppState, headers: &HeaderMap, need: Role) -> Res<Role> {
    match headers.get(protocol::VERSION_HEADER).map(|v| v.to_str()) {
        Some(Ok(v)) if v.trim() == protocol::VERSION.to_string() => {}
        Some(v) => {
            let v = v.unwrap_or("?");
            return Err(Answer::bad(format!(
                "protocol version `{v}` is not supported: this server speaks version {}; \
                 use a runner of the same release",
                protocol::VERSION
            )));
        }
        None => {
            return Err(Answer::bad(format!(
                "the `{}` header is missing: this server speaks protocol version {}",
                protocol::VERSION_HEADER,
                protocol::VERSION
            )))
        }
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(Answer::new(
            StatusCode::UNAUTHORIZED,
            "no token: pass --token (or RUNNER_TOKEN); create one with `runner server token create`",
        ));
    };
    let hash = crate::pool::store::token_hash(token);
    let fresh = std::time::Duration::from_secs(crate::pool::store::TOKEN_CACHE_SECS);
    let cached = state
        .tokens
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&hash)
        .filter(|(_, at)| at.elapsed() < fresh)
        .map(|(role, _)| *role);
    let role = match cached {
        Some(r) => r,
        None => match state.store.find_token(token).await? {
            Some(r) => {
                state
                    .tokens
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(hash, (r, std::time::Instant::now()));
                r
            }
            None => {
                // Revoked (or never created): forget a stale entry.
                state
                    .tokens
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&hash);
                return Err(Answer::new(
                    StatusCode::UNAUTHORIZED,
                    "unknown token; create one with `runner server token create`",
                ));
            }
        },
    };
    if role == need || role == Role::Admin {
        Ok(role)
    } else {
        Err(Answer::new(
            StatusCode::FORBIDDEN,
            format!(
                "a token of role `{}` cannot do this; it needs a `{}` token",
                crate::pool::store::role_str(role),
                crate::pool::store::role_str(need)
            ),
        ))
    }
}

/// The router over a store and a blob store.
pub fn router(store: Store, blobs: BlobStore, config: ServerConfig) -> Router {
    let json_limit = DefaultBodyLimit::max(config.json_limit);
    let log_limit = DefaultBodyLimit::max(config.log_append_limit + 64 * 1024);
    let blob_limit = DefaultBodyLimit::max(config.blob_limit);
    let state = Arc::new(AppState {
        store,
        blobs,
        config,
        metrics: metrics::Metrics::default(),
        tokens: Mutex::new(HashMap::new()),
        pauses: queue::Pauses::default(),
    });
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics_route))
        .route(
            "/v1/blobs/{sha}",
            put(put_blob).head(head_blob).layer(blob_limit),
        )
        .route("/v1/jobs", post(submit).get(list_jobs).layer(json_limit))
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/jobs/{id}/cancel", post(cancel_job))
        .route("/v1/jobs/{id}/retry", post(retry_job))
        .route("/v1/jobs/{id}/log", get(read_log))
        .route("/v1/jobs/{id}/artifacts", get(list_artifacts))
        .route("/v1/jobs/{id}/artifacts/{*name}", get(get_artifact))
        .route("/v1/agent/claim", post(claim).layer(json_limit))
        .route("/v1/agent/blobs/{sha}", get(agent_blob))
        .route(
            "/v1/agent/jobs/{id}/{attempt}/heartbeat",
            post(heartbeat).layer(json_limit),
        )
        .route("/v1/agent/jobs/{id}/{attempt}/watch", get(watch))
        .route(
            "/v1/agent/jobs/{id}/{attempt}/log",
            post(append_log).layer(log_limit),
        )
        .route(
            "/v1/agent/jobs/{id}/{attempt}/artifacts/{*name}",
            put(put_artifact).layer(blob_limit),
        )
        .route(
            "/v1/agent/jobs/{id}/{attempt}/complete",
            post(complete).layer(json_limit),
        )
        .route(
            "/v1/agent/jobs/{id}/{attempt}/release",
            post(release).layer(json_limit),
        )
        .route(
            "/v1/webhooks/github",
            post(webhooks::github).layer(DefaultBodyLimit::max(webhooks::BODY_LIMIT)),
        )
        // delivery metrics (dora)
        .route("/v1/stats", get(stats::stats))
        .merge(web::routes(state.store.clone(), state.config.session_ttl))
        .merge(notify::routes())
        // Queue pause and resume.
        .merge(queue::routes())
        .fallback(|| async { Answer::not_found("route") })
        .with_state(state)
}

/// Serves until `shutdown` resolves, with the lease reaper and (PostgreSQL) the `LISTEN`
/// task running. `tls`: PEM certificate chain and key files.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
    blobs: BlobStore,
    config: ServerConfig,
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    store.listen().await?;
    let mut config = config;
    config.secure_cookies |= tls.is_some();
    let reap_every = config.reap_every;
    let flush_every = config.agents_flush_every;
    // Commit statuses (ops): on before anything records job changes, so the start-up
    // reconciliation's events carry theirs too.
    let statuses =
        webhooks::statuses::start(&store, config.github.as_ref(), config.notify.retry_policy());
    let mut senders = notify::start(&store, &config.notify)?;
    senders.extend(statuses);
    let app = router(store.clone(), blobs, config);
    let reaper = tokio::spawn(reap(store.clone(), reap_every));
    let flusher = tokio::spawn(flush_agents(store.clone(), flush_every));
    let result = match tls {
        None => axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(ServeError::Io),
        Some((cert, key)) => serve_tls(listener, app, &cert, &key, shutdown).await,
    };
    reaper.abort();
    flusher.abort();
    for s in senders {
        s.abort();
    }
    if let Err(e) = store.flush_agents().await {
        tracing::warn!("cannot record the agents' last-seen times: {e}");
    }
    result
}

async fn flush_agents(store: Store, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = store.flush_agents().await {
            tracing::warn!("cannot record the agents' last-seen times: {e}");
        }
    }
}

async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    cert: &Path,
    key: &Path,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
        .await
        .map_err(|e| ServeError::Tls(format!("{} / {}: {e}", cert.display(), key.display())))?;
    let std_listener = listener.into_std()?;
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(Duration::from_secs(2)));
    });
    axum_server::from_tcp_rustls(std_listener, tls)
        .handle(handle)
        .serve(app.into_make_service())
        .await?;
    Ok(())
}

async fn reap(store: Store, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.expire_leases().await {
            Ok(expired) => {
                for e in &expired {
                    metrics::LEASE_EXPIRIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!(job = %e.id, attempt = e.attempt, ended = ?e.ended, "lease expired");
                }
            }
            Err(e) => tracing::warn!("lease reaper: {e}"),
        }
    }
}

async fn metrics_route(State(st): St) -> Res<Response> {
    let counts = st
        .store
        .counts(
            st.config
                .lease
                .max(Duration::from_secs(protocol::MAX_WAIT_SECS))
                * 2,
        )
        .await?;
    let hub = st.store.hub();
    let mut text = st.metrics.render(&counts, hub.waiting(), hub.followers());
    let pending = st.store.pending_deliveries().await?;
    text.push_str(&metrics::render_outbox(
        &pending,
        crate::pool::store::now_ms(),
    ));
    text.push_str(&stats::metrics_text(&st.store).await?);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

// ---- blobs ----

async fn head_blob(
    State(st): St,
    headers: HeaderMap,
    UrlPath(sha): UrlPath<String>,
) -> Res<StatusCode> {
    auth(&st, &headers, Role::Submit).await?;
    if !is_sha256_hex(&sha) {
        return Err(Answer::bad(format!(
            "`{sha}` is not a SHA-256 (64 lower-case hex digits)"
        )));
    }
    Ok(if st.blobs.exists(&sha).await? {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    })
}

async fn put_blob(
    State(st): St,
    headers: HeaderMap,
    UrlPath(sha): UrlPath<String>,
    body: axum::body::Body,
) -> Res<StatusCode> {
    auth(&st, &headers, Role::Submit).await?;
    if !is_sha256_hex(&sha) {
        return Err(Answer::bad(format!(
            "`{sha}` is not a SHA-256 (64 lower-case hex digits)"
        )));
    }
    let limit = st.config.blob_limit as u64;
    check_length(&headers, limit)?;
    // Streamed into a temporary file while hashed; removed unless stored below.
    let incoming = st.blobs.receive(body, limit).await?;
    if incoming.sha256 != sha {
        return Err(Answer::bad(format!(
            "the body's SHA-256 is {}, not {sha}; upload it again",
            incoming.sha256
        )));
    }
    let limits = st.config.archive_limits;
    let reader = incoming.reader().map_err(Answer::internal)?;
    let size = incoming.size;
    let checked = tokio::task::spawn_blocking(move || {
        archive::validate_from(std::io::BufReader::new(reader), size, limits)
    })
    .await
    .map_err(Answer::internal)?;
    if let Err(e) = checked {
        return Err(Answer::refused(e.to_string(), vec![e.to_string()]));
    }
    if st.blobs.exists(&sha).await? {
        return Ok(StatusCode::OK);
    }
    st.blobs.store(incoming).await?;
    Ok(StatusCode::CREATED)
}

async fn agent_blob(
    State(st): St,
    headers: HeaderMap,
    UrlPath(sha): UrlPath<String>,
) -> Res<Response> {
    auth(&st, &headers, Role::Agent).await?;
    let read = st
        .blobs
        .open(&sha)
        .await?
        .ok_or_else(|| Answer::not_found("blob"))?;
    Ok(blob_response(read))
}

// ---- jobs (submit role) ----

fn check_labels(labels: &std::collections::BTreeMap<String, String>) -> Res<()> {
    if labels.len() > protocol::MAX_LABELS {
        return Err(Answer::bad(format!(
            "at most {} labels",
            protocol::MAX_LABELS
        )));
    }
    for (k, v) in labels {
        if !protocol::valid_label_part(k) || !protocol::valid_label_part(v) {
            return Err(Answer::bad(format!(
                "label `{k}={v}`: keys and values are 1-63 characters of letters, digits, `.`, `_`, `-`"
            )));
        }
    }
    Ok(())
}

/// Reads and parses the buildspec from the archive: `Err` with diagnostics if refused.
fn check_buildspec(
    blob: &mut blobs::LocalBlob,
    buildspec: Option<&str>,
    limits: archive::Limits,
) -> Res<()> {
    use std::io::{Seek, SeekFrom};
    let refuse = |e: archive::ArchiveError| Answer::refused(e.to_string(), vec![e.to_string()]);
    let size = blob.size;
    let mut read_file = |path: &Path| -> Res<Option<Vec<u8>>> {
        blob.file
            .seek(SeekFrom::Start(0))
            .map_err(Answer::internal)?;
        archive::read_file_from(std::io::BufReader::new(&blob.file), size, path, limits)
            .map_err(refuse)
    };
    let path = match buildspec {
        Some(p) => p.to_string(),
        None => {
            let project = read_file(Path::new(crate::project::PROJECT_FILE))?;
            let from_project = project.and_then(|p| {
                let text = String::from_utf8(p).ok()?;
                crate::project::parse_project(&text).0?.buildspec
            });
            from_project.unwrap_or_else(|| "buildspec.yml".to_string())
        }
    };
    let Some(content) = read_file(Path::new(&path))? else {
        return Err(Answer::refused(
            format!("the source has no `{path}`; add it or name the buildspec with --buildspec"),
            vec![format!("{path}:1:1: error: file not found in the source")],
        ));
    };
    let text = match crate::buildspec::yaml::utf8_text(&content) {
        Ok(t) => t.to_string(),
        Err(d) => {
            return Err(Answer::refused(
                format!("`{path}` is not a valid buildspec"),
                vec![crate::buildspec::diagnostic::render(&path, &d)],
            ))
        }
    };
    let parsed = crate::buildspec::parse::parse(&text);
    if parsed.spec.is_none() {
        let diagnostics: Vec<String> = parsed
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| crate::buildspec::diagnostic::render(&path, d))
            .collect();
        return Err(Answer::refused(
            format!("`{path}` is not a valid buildspec; fix it and submit again"),
            diagnostics,
        ));
    }
    Ok(())
}

async fn submit(
    State(st): St,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Res<(StatusCode, Json<protocol::JobView>)> {
    auth(&st, &headers, Role::Submit).await?;
    let job: SubmitJob = parse_json(&body?)?;
    check_labels(&job.labels)?;
    if job.trigger.is_some() {
        return Err(Answer::bad(
            "`trigger` is set by the server for webhook jobs; leave it out",
        ));
    }
    if let Some(e) = job
        .env
        .iter()
        .find(|e| !e.contains('=') || e.starts_with('='))
    {
        return Err(Answer::bad(format!("env `{e}` is not KEY=VALUE")));
    }
    let max_attempts = job.max_attempts.unwrap_or(3);
    if !(1..=100).contains(&max_attempts) {
        return Err(Answer::bad("max_attempts must be between 1 and 100"));
    }
    let project = job.project.clone().unwrap_or_else(|| "job".to_string());
    if project.is_empty() || project.len() > 255 || project.chars().any(char::is_control) {
        return Err(Answer::bad("project: 1-255 printable characters"));
    }
    match &job.source {
        SourceSpec::Archive { sha256 } => {
            if !is_sha256_hex(sha256) {
                return Err(Answer::bad(format!(
                    "source.sha256 `{sha256}` is not a SHA-256 (64 lower-case hex digits)"
                )));
            }
            let Some(mut blob) = st.blobs.local(sha256).await? else {
                return Err(Answer::refused(
                    format!("source archive {sha256} is not stored; PUT /v1/blobs/{sha256} first"),
                    Vec::new(),
                ));
            };
            let limits = st.config.archive_limits;
            let buildspec = job.buildspec.clone();
            tokio::task::spawn_blocking(move || {
                check_buildspec(&mut blob, buildspec.as_deref(), limits)
            })
            .await
            .map_err(Answer::internal)??;
        }
        SourceSpec::Git { url, revision } => {
            if url.trim().is_empty() || revision.trim().is_empty() {
                return Err(Answer::bad("a git source needs a url and a revision"));
            }
        }
    }
    let change = match &job.commit {
        None => crate::pool::store::JobChange::default(),
        Some(c) => crate::pool::store::JobChange {
            commit_ms: Some(
                crate::pool::store::parse_rfc3339_ms(&c.time).ok_or_else(|| {
                    Answer::bad(format!(
                        "commit.time `{}` is not an RFC 3339 time (e.g. 2026-01-02T03:04:05Z)",
                        c.time
                    ))
                })?,
            ),
            revert: c.revert,
            side: c.side_branch,
        },
    };
    let spec = serde_json::to_string(&job).map_err(Answer::internal)?;
    let new = NewJob {
        id: crate::datadir::new_uuid(),
        project,
        labels: job.labels.clone(),
        spec,
        max_attempts,
        change,
    };
    let view = st.store.submit(&new).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    limit: Option<u32>,
}

async fn list_jobs(
    State(st): St,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Res<Json<JobList>> {
    auth(&st, &headers, Role::Submit).await?;
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            serde_json::from_value::<JobState>(serde_json::Value::String(s.to_string()))
                .map_err(|_| Answer::bad(format!("unknown state `{s}`")))?,
        ),
    };
    let jobs = st
        .store
        .list(state, q.limit.unwrap_or(100).clamp(1, 1000))
        .await?;
    Ok(Json(JobList { jobs }))
}

async fn get_job(
    State(st): St,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Res<Json<protocol::JobView>> {
    auth(&st, &headers, Role::Submit).await?;
    st.store
        .get(&id)
        .await?
        .map(Json)
        .ok_or_else(|| Answer::not_found("job"))
}

async fn cancel_job(
    State(st): St,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Res<Json<protocol::JobView>> {
    auth(&st, &headers, Role::Submit).await?;
    Ok(Json(st.store.cancel(&id).await?))
}

async fn retry_job(
    State(st): St,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Res<Json<protocol::JobView>> {
    auth(&st, &headers, Role::Submit).await?;
    Ok(Json(st.store.retry(&id).await?))
}

#[derive(Deserialize)]
struct LogQuery {
    attempt: Option<u32>,
    after: Option<u64>,
    wait: Option<u64>,
}

async fn read_log(
    State(st): St,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<LogQuery>,
) -> Res<Json<protocol::LogPage>> {
    auth(&st, &headers, Role::Submit).await?;
    let wait = Duration::from_secs(q.wait.unwrap_or(0).min(protocol::MAX_WAIT_SECS));
    let deadline = tokio::time::Instant::now() + wait;
    let mut events = st.store.hub().subscribe();
    loop {
        let page = st
            .store
            .read_log(&id, q.attempt, q.after.unwrap_or(0), 500)
            .await?
            .ok_or_else(|| Answer::not_found("job"))?;
        if !page.chunks.is_empty() || page.complete || tokio::time::Instant::now() >= deadline {
            return Ok(Json(page));
        }
        if !wait_for_job(&mut events, &id, deadline).await {
            // Timed out: answer what there is (nothing new).
            let page = st
                .store
                .read_log(&id, q.attempt, q.after.unwrap_or(0), 500)
                .await?
                .ok_or_else(|| Answer::not_found("job"))?;
            return Ok(Json(page));
        }
    }
}

/// Waits for a notice about `job` until `deadline`; false on timeout.
async fn wait_for_job(
    events: &mut tokio::sync::broadcast::Receiver<Notice>,
    job: &str,
    deadline: tokio::time::Instant,
) -> bool {
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => return false,
            Ok(Ok(n)) if n.job() == Some(job) => return true,
            Ok(Ok(_)) => continue,
            // Missed notices: look again.
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => return true,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return false,
        }
    }
}

async fn list_artifacts(
    State(st): St,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Res<Json<protocol::ArtifactList>> {
    auth(&st, &headers, Role::Submit).await?;
    st.store
        .artifacts(&id)
        .await?
        .map(Json)
        .ok_or_else(|| Answer::not_found("job"))
}

async fn get_artifact(
    State(st): St,
    headers: HeaderMap,
    UrlPath((id, name)): UrlPath<(String, String)>,
) -> Res<Response> {
    auth(&st, &headers, Role::Submit).await?;
    let list = st
        .store
        .artifacts(&id)
        .await?
        .ok_or_else(|| Answer::not_found("job"))?;
    let entry = list
        .artifacts
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| Answer::not_found("artifact"))?;
    let read =
        st.blobs.open(&entry.sha256).await?.ok_or_else(|| {
            Answer::internal(format!("artifact blob {} is missing", entry.sha256))
        })?;
    Ok(blob_response(read))
}

// ---- agent role ----

async fn claim(
    State(st): St,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Res<Response> {
    auth(&st, &headers, Role::Agent).await?;
    let req: Claim = parse_json(&body?)?;
    check_labels(&req.labels)?;
    if req.agent.is_empty() || req.agent.len() > 255 || req.agent.chars().any(char::is_control) {
        return Err(Answer::bad("agent: 1-255 printable characters"));
    }
    st.store.touch_agent(&req.agent, &req.labels);
    let all_keys = protocol::claimable_keys(&req.labels);
    let wait = Duration::from_secs(req.wait_secs.min(protocol::MAX_WAIT_SECS));
    let deadline = tokio::time::Instant::now() + wait;
    let hub = st.store.hub().clone();
    let mut baton: Option<Baton> = None;
    let mut pause_changes = st.pauses.subscribe();
    loop {
        // The keys no pause holds (read from this replica's cache, kept current by the
        // hub's notices): a paused key is neither claimed nor waited on.
        pause_changes.borrow_and_update();
        let pauses = match st.pauses.current(&st.store).await {
            Ok(p) => p,
            Err(e) if e.is_overload() => {
                st.metrics.observe_shed();
                return Ok(StatusCode::NO_CONTENT.into_response());
            }
            Err(e) => return Err(e.into()),
        };
        let keys = queue::claimable(&all_keys, &pauses);
        // Registered before looking, so a job queued in between still wakes us.
        let registration = hub.register(&keys);
        let lease = crate::pool::store::new_lease_id();
        let claimed = if keys.is_empty() {
            None
        } else {
            match st
                .store
                .claim(
                    &req.agent,
                    &keys,
                    &lease,
                    st.config.confirm.min(st.config.lease),
                    Some(st.config.claim_budget),
                    baton.is_none(),
                )
                .await
            {
                Ok(c) => c,
                // Overload: the claim took nothing; "no job" makes the agent poll again (a
                // held wake-up passes on to another waiter when `baton` drops).
                Err(e) if e.is_overload() => {
                    st.metrics.observe_shed();
                    tracing::debug!("claim shed: {e}");
                    return Ok(StatusCode::NO_CONTENT.into_response());
                }
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(c) = claimed {
            if let Some(b) = baton.take() {
                b.used_for(Some(&c.key));
            }
            drop(registration);
            let latency = crate::pool::store::now_ms() - c.queued_ms;
            st.metrics.observe_pickup(latency);
            let spec: SubmitJob = serde_json::from_str(&c.spec).map_err(Answer::internal)?;
            let assignment = Assignment {
                job_id: c.id,
                attempt: c.attempt,
                lease,
                lease_secs: st.config.lease.as_secs(),
                confirm_secs: st.config.confirm.min(st.config.lease).as_secs(),
                source: spec.source,
                buildspec: spec.buildspec,
                project: c.project,
                build_number: c.build_number,
                env: spec.env,
                timeout_minutes: spec.timeout_minutes,
                trigger: spec.trigger,
            };
            return Ok(Json(assignment).into_response());
        }
        if let Some(b) = baton.take() {
            b.used_for(None);
        }
        loop {
            // A pause or a resume (on any replica) that changes what this agent may take
            // looks again at once; one about other labels leaves it waiting.
            let paused_or_resumed = async {
                if pause_changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                key = registration.woken() => {
                    baton = Some(Baton::new(hub.clone(), key));
                    break;
                }
                () = paused_or_resumed => {
                    let now = pause_changes.borrow_and_update().clone();
                    if now.is_none_or(|p| queue::claimable(&all_keys, &p) != keys) {
                        break;
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    return Ok(StatusCode::NO_CONTENT.into_response())
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct AttemptPath {
    id: String,
    attempt: u32,
}

async fn heartbeat(
    State(st): St,
    headers: HeaderMap,
    UrlPath(p): UrlPath<AttemptPath>,
    body: Result<Bytes, BytesRejection>,
) -> Res<Json<Heartbeat>> {
    auth(&st, &headers, Role::Agent).await?;
    let fence: Fence = parse_json(&body?)?;
    let cancel = st
        .store
        .heartbeat(&p.id, p.attempt, &fence.lease, st.config.lease)
        .await?;
    Ok(Json(Heartbeat {
        lease_secs: st.config.lease.as_secs(),
        cancel,
    }))
}

#[derive(Deserialize)]
struct WatchQuery {
    lease: String,
    wait: Option<u64>,
}

async fn watch(
    State(st): St,
    headers: HeaderMap,
    UrlPath(p): UrlPath<AttemptPath>,
    Query(q): Query<WatchQuery>,
) -> Res<Json<Heartbeat>> {
    auth(&st, &headers, Role::Agent).await?;
    let wait = Duration::from_secs(q.wait.unwrap_or(0).min(protocol::MAX_WAIT_SECS));
    let deadline = tokio::time::Instant::now() + wait;
    let mut events = st.store.hub().subscribe();
    let answer = |cancel: bool, expires: i64| {
        let left = (expires - crate::pool::store::now_ms()).max(0) / 1000;
        Json(Heartbeat {
            lease_secs: u64::try_from(left).unwrap_or(0),
            cancel,
        })
    };
    loop {
        let (cancel, expires) = st.store.watch_state(&p.id, p.attempt, &q.lease).await?;
        if cancel || tokio::time::Instant::now() >= deadline {
            return Ok(answer(cancel, expires));
        }
        if !wait_for_job(&mut events, &p.id, deadline).await {
            let (cancel, expires) = st.store.watch_state(&p.id, p.attempt, &q.lease).await?;
            return Ok(answer(cancel, expires));
        }
    }
}

async fn append_log(
    State(st): St,
    headers: HeaderMap,
    UrlPath(p): UrlPath<AttemptPath>,
    body: Result<Bytes, BytesRejection>,
) -> Res<StatusCode> {
    auth(&st, &headers, Role::Agent).await?;
    let append: LogAppend = parse_json(&body?)?;
    if append.data.len() > st.config.log_append_limit {
        return Err(Answer::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a log append carries at most {} bytes; send smaller chunks",
                st.config.log_append_limit
            ),
        ));
    }
    st.store
        .append_log(
            &p.id,
            p.attempt,
            &append.lease,
            append.seq,
            &append.data,
            st.config.log_limit,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct LeaseQuery {
    lease: String,
}

/// An artifact's name: a relative path without `..`, empty or odd components.
fn valid_artifact_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 1024
        && !name.starts_with('/')
        && !name.contains('\\')
        && !name.chars().any(char::is_control)
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

#[derive(Deserialize)]
struct ArtifactPath {
    id: String,
    attempt: u32,
    name: String,
}

async fn put_artifact(
    State(st): St,
    headers: HeaderMap,
    UrlPath(p): UrlPath<ArtifactPath>,
    Query(q): Query<LeaseQuery>,
    body: axum::body::Body,
) -> Res<StatusCode> {
    auth(&st, &headers, Role::Agent).await?;
    if !valid_artifact_name(&p.name) {
        return Err(Answer::bad(format!(
            "artifact name `{}` must be a relative path without `..`",
            p.name
        )));
    }
    // Fence first, so a zombie's upload stores nothing.
    st.store.watch_state(&p.id, p.attempt, &q.lease).await?;
    let limit = st.config.blob_limit as u64;
    check_length(&headers, limit)?;
    let incoming = st.blobs.receive(body, limit).await?;
    let entry = ArtifactEntry {
        name: p.name,
        size: incoming.size,
        sha256: incoming.sha256.clone(),
    };
    if !st.blobs.exists(&entry.sha256).await? {
        st.blobs.store(incoming).await?;
    }
    st.store
        .add_artifact(&p.id, p.attempt, &q.lease, &entry)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn complete(
    State(st): St,
    headers: HeaderMap,
    UrlPath(p): UrlPath<AttemptPath>,
    body: Result<Bytes, BytesRejection>,
) -> Res<Json<protocol::JobView>> {
    auth(&st, &headers, Role::Agent).await?;
    let c: Complete = parse_json(&body?)?;
    let view = st
        .store
        .complete(
            &p.id,
            p.attempt,
            &c.lease,
            c.conclusion,
            c.exit_code,
            c.message.as_deref(),
            c.log_chunks,
        )
        .await?;
    Ok(Json(view))
}

async fn release(
    State(st): St,
    headers: HeaderMap,
    UrlPath(p): UrlPath<AttemptPath>,
    body: Result<Bytes, BytesRejection>,
) -> Res<StatusCode> {
    auth(&st, &headers, Role::Agent).await?;
    let fence: Fence = parse_json(&body?)?;
    st.store.release(&p.id, p.attempt, &fence.lease).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::valid_artifact_name;

    #[test]
    fn artifact_names_stay_relative() {
        assert!(valid_artifact_name("dist/app.zip"));
        assert!(!valid_artifact_name("../x"));
        assert!(!valid_artifact_name("a/../../x"));
        assert!(!valid_artifact_name("/etc/passwd"));
        assert!(!valid_artifact_name("a//b"));
        assert!(!valid_artifact_name(""));
    }
}
