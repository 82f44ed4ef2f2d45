//! The web page of `runner server`: server-rendered HTML (reading works with JavaScript
//! off), one small committed script (`live.js`) for the live log and the buttons.
//!
//! ```text
//! GET  /signin, POST /signin (token)     sign in: a session cookie (HttpOnly, SameSite=Strict,
//!                                        Secure under TLS or X-Forwarded-Proto: https)
//! POST /signout
//! GET  /jobs?project=&branch=&state=&page=   the job list, newest first, 25 a page
//! GET  /jobs/{id}?attempt=               a job: phases, release, tests, findings, artifacts, log
//! GET  /jobs/{id}/live?attempt=&after=   server-sent events: `log` (HTML lines), `timeline`,
//!                                        `results` (tests and findings), `state`, `end`
//! GET  /jobs/{id}/log.txt?attempt=       the log as text (download)
//! GET  /jobs/{id}/artifacts/{name}       an artifact (download)
//! POST /jobs/{id}/cancel, /jobs/{id}/retry
//! GET  /agents                           agents: online, labels, running job, last seen
//! GET  /queue                            pauses, queued jobs by label set and their wait
//! POST /queue/pause, /queue/resume       (admin) pause or resume (all, or a label set)
//! GET  /stats?project=&window=           delivery metrics: figures and an SVG chart each
//! GET  /badge/{project}.svg?branch=      status badge of the last finished job (public)
//! ```
//!
//! Sessions live in the job store (a random id in the cookie, its SHA-256 as the row's
//! key; see `Store::create_web_session`), so every replica on one database knows them, a
//! sign-out ends one everywhere at once, and they outlive a restart. A session lasts
//! [`super::ServerConfig::session_ttl`], and dies with its token's row. Only
//! `submit` and `admin` tokens sign in (an `agent` token reads nothing in the API either);
//! both may cancel and retry, as in the API. Every POST needs the session's CSRF token
//! (a hidden form field) and, when the browser sends one, an `Origin` of this host.

mod ansi;
mod events;
mod html;
mod queue;
mod results;
mod stats;

use super::{AppState, St};
use crate::pool::protocol::{JobState, Role};
use crate::pool::store::{self, StoreError, WebFilter, WebJob};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use events::JobLog;
use html::{esc, url_part, url_path, Viewer};
use serde::Deserialize;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

const COOKIE: &str = "runner_session";
/// A sign-in session's lifetime unless configured ([`super::ServerConfig::session_ttl`]).
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
const PER_PAGE: u32 = 25;
/// A branch filter looks at this many of the newest candidate jobs at most.
const BRANCH_SCAN: u32 = 5000;
/// The job page shows at most this many log lines (the download has them all).
const PAGE_LINES: usize = 20_000;
const STATES: [&str; 6] = [
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "error",
];

#[derive(Clone)]
struct Session {
    role: Role,
    csrf: String,
}

/// Where the sign-in sessions live: the job store, so every replica sees a sign-in and
/// a sign-out at once, and sessions outlive a restart.
pub(super) struct WebState {
    store: store::Store,
    /// A session's lifetime (and the cookie's `Max-Age`).
    ttl: Duration,
}

type Web = Extension<Arc<WebState>>;

fn random_hex() -> String {
    let b: [u8; 32] = rand::random();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Equal without an early exit (the CSRF token).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl WebState {
    /// A new session signed in with `token`: its id (for the cookie) and role; `None`
    /// when the token is unknown.
    async fn create(&self, token: &str) -> Res<Option<(String, Role)>> {
        let id = random_hex();
        let role = self
            .store
            .create_web_session(&id, token, &random_hex(), self.ttl)
            .await?;
        Ok(role.map(|r| (id, r)))
    }

    /// The request's session (by the cookie): its key (the id's hash) and contents.
    async fn find(&self, headers: &HeaderMap) -> Res<Option<(String, Session)>> {
        let Some(id) = cookie(headers, COOKIE) else {
            return Ok(None);
        };
        let key = store::token_hash(&id);
        let found = self.store.find_web_session(&key).await?;
        Ok(found.map(|s| {
            (
                key,
                Session {
                    role: s.role,
                    csrf: s.csrf,
                },
            )
        }))
    }

    async fn remove(&self, key: &str) -> Res<()> {
        self.store.delete_web_session(key).await?;
        Ok(())
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A page's failure, as HTML.
#[derive(Debug)]
enum WebError {
    /// Not signed in: to the sign-in form, then back to `next`.
    SignIn(String),
    Status(StatusCode, String),
}

impl WebError {
    fn new(status: StatusCode, message: impl Into<String>) -> WebError {
        WebError::Status(status, message.into())
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::SignIn(next) => {
                Redirect::to(&format!("/signin?next={}", url_part(&next))).into_response()
            }
            WebError::Status(status, message) => {
                let body = format!(
                    "<h1>{}</h1><p class=\"error\">{}</p><p><a href=\"/jobs\">Jobs</a></p>",
                    status.as_u16(),
                    esc(&message)
                );
                (status, Html(html::page(&message, None, &body, false))).into_response()
            }
        }
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> WebError {
        match e {
            StoreError::NotFound => WebError::new(StatusCode::NOT_FOUND, "no such job"),
            StoreError::Conflict(m) => WebError::new(StatusCode::CONFLICT, m),
            e if e.is_overload() => WebError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            e => {
                tracing::error!("web page: {e}");
                WebError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }
}

impl From<super::BlobError> for WebError {
    fn from(e: super::BlobError) -> WebError {
        tracing::error!("web page: {e}");
        WebError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

type Res<T> = Result<T, WebError>;

fn role_may_read(role: Role) -> bool {
    matches!(role, Role::Submit | Role::Admin)
}

/// The signed-in session, or a redirect to the sign-in form.
async fn signed_in(web: &WebState, headers: &HeaderMap, uri: &Uri) -> Res<Session> {
    match web.find(headers).await? {
        Some((_, s)) => Ok(s),
        None => Err(WebError::SignIn(
            uri.path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/jobs".into()),
        )),
    }
}

/// A POST from a page of this server: `Origin` (when sent) names this host (the `Host`
/// header, or HTTP/2's `:authority`), and the browser does not call it cross-site.
fn same_origin(headers: &HeaderMap, uri: &Uri) -> Res<()> {
    let refuse = || {
        WebError::new(
            StatusCode::FORBIDDEN,
            "this form was posted from another site; reload the page and try again",
        )
    };
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site == "cross-site" {
            return Err(refuse());
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()))
            .ok_or_else(refuse)?;
        let origin = origin.to_str().map_err(|_| refuse())?;
        let origin_host = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .ok_or_else(refuse)?;
        if !origin_host.eq_ignore_ascii_case(host) {
            return Err(refuse());
        }
    }
    Ok(())
}

/// A state-changing POST: same origin, a session, its CSRF token.
async fn checked_post(
    web: &WebState,
    headers: &HeaderMap,
    uri: &Uri,
    csrf: Option<&str>,
) -> Res<(String, Session)> {
    same_origin(headers, uri)?;
    let Some((key, session)) = web.find(headers).await? else {
        return Err(WebError::new(
            StatusCode::FORBIDDEN,
            "not signed in; sign in and try again",
        ));
    };
    match csrf {
        Some(t) if same(t, &session.csrf) => Ok((key, session)),
        _ => Err(WebError::new(
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or stale; reload the page and try again",
        )),
    }
}

fn viewer(s: &Session) -> Viewer<'_> {
    Viewer {
        role: store::role_str(s.role),
        csrf: &s.csrf,
    }
}

/// The routes, merged into the API router.
/// `store`: where sessions live; `session_ttl`: their lifetime.
pub(super) fn routes(store: store::Store, session_ttl: Duration) -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/jobs") }))
        .route("/signin", get(signin_form).post(signin))
        .route("/signout", post(signout))
        .route("/jobs", get(jobs_page))
        .route("/jobs/{id}", get(job_page))
        .route("/jobs/{id}/live", get(live))
        .route("/jobs/{id}/log.txt", get(log_text))
        .route("/jobs/{id}/artifacts/{*name}", get(artifact))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/jobs/{id}/retry", post(retry))
        .route("/agents", get(agents_page))
        .route("/queue", get(queue::page))
        .route("/queue/pause", post(queue::pause))
        .route("/queue/resume", post(queue::resume))
        // delivery metrics (dora)
        .route("/stats", get(stats::page))
        .route("/badge/{file}", get(badge))
        .route("/static/web.css", get(css))
        .route("/static/live.js", get(script))
        .layer(axum::middleware::map_response(security_headers))
        .layer(Extension(Arc::new(WebState {
            store,
            ttl: session_ttl,
        })))
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

async fn css() -> Response {
    static CSS: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("{}{}", include_str!("web.css"), ansi::css()));
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        CSS.as_str(),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("live.js"),
    )
        .into_response()
}

// ---- sign-in ----

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// A local path to go back to after signing in (never another site).
fn local_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/jobs".into(),
    }
}

fn signin_html(next: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\">{}</p>", esc(e)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Sign in</h1>{error}<form method=\"post\" action=\"/signin\" class=\"signin\">\
         <label>Token <input type=\"password\" name=\"token\" autocomplete=\"off\" required></label>\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <button type=\"submit\">Sign in</button></form>\
         <p class=\"muted\">A <code>submit</code> or <code>admin</code> token from \
         <code>runner server token create</code>.</p>",
        esc(next)
    );
    html::page("Sign in", None, &body, false)
}

async fn signin_form(Query(q): Query<NextQuery>) -> Html<String> {
    Html(signin_html(&local_next(q.next.as_deref()), None))
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
    next: Option<String>,
}

async fn signin(
    State(st): St,
    Extension(web): Web,
    headers: HeaderMap,
    uri: Uri,
    Form(f): Form<SignIn>,
) -> Res<Response> {
    same_origin(&headers, &uri)?;
    let next = local_next(f.next.as_deref());
    let token = f.token.trim();
    let role = if token.is_empty() {
        None
    } else {
        st.store.find_token(token).await?
    };
    let refuse = |status: StatusCode, message: &str| {
        (status, Html(signin_html(&next, Some(message)))).into_response()
    };
    let unknown = || {
        refuse(
            StatusCode::UNAUTHORIZED,
            "unknown token; create one with `runner server token create --role submit`",
        )
    };
    let Some(role) = role else {
        return Ok(unknown());
    };
    if !role_may_read(role) {
        return Ok(refuse(
            StatusCode::FORBIDDEN,
            "an agent token cannot sign in; use a submit or admin token",
        ));
    }
    // The token could have gone since it was read: the session is stored only with it.
    let Some((id, _)) = web.create(token).await? else {
        return Ok(unknown());
    };
    let secure = st.config.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        web.ttl.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    let mut r = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn signout(
    Extension(web): Web,
    headers: HeaderMap,
    uri: Uri,
    Form(f): Form<CsrfForm>,
) -> Res<Response> {
    let (key, _) = checked_post(&web, &headers, &uri, f.csrf.as_deref()).await?;
    web.remove(&key).await?;
    let mut r = Redirect::to("/signin").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("runner_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(r)
}

// ---- the job list ----

/// A job's branch, from its submission: `RUNNER_BRANCH` in its env (`NAME` or
/// `refs/heads/NAME`; `CODEBUILD_*` names are reserved for runner), else a git source's
/// revision unless it is a commit id.
pub fn job_branch(spec: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(spec).ok()?;
    let from_env = v.get("env").and_then(|e| e.as_array()).and_then(|env| {
        env.iter().filter_map(|e| e.as_str()).find_map(|e| {
            e.strip_prefix("RUNNER_BRANCH=")
                .map(|r| r.strip_prefix("refs/heads/").unwrap_or(r).to_string())
        })
    });
    if from_env.is_some() {
        return from_env;
    }
    let src = v.get("source")?;
    if src.get("kind")?.as_str()? != "git" {
        return None;
    }
    let rev = src.get("revision")?.as_str()?;
    let is_commit = (7..=64).contains(&rev.len()) && rev.bytes().all(|b| b.is_ascii_hexdigit());
    (!is_commit && !rev.is_empty())
        .then(|| rev.strip_prefix("refs/heads/").unwrap_or(rev).to_string())
}

/// The branch as it appears inside the spec's JSON text (for the store's LIKE filter).
fn spec_needle(branch: &str) -> String {
    let quoted = serde_json::to_string(branch).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(&quoted)
        .to_string()
}

#[derive(Deserialize, Default)]
struct ListQuery {
    project: Option<String>,
    branch: Option<String>,
    state: Option<String>,
    page: Option<u64>,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// One page of jobs and whether another follows.
async fn find_jobs(
    st: &AppState,
    project: Option<&str>,
    branch: Option<&str>,
    states: &[&str],
    page: u64,
) -> Res<(Vec<WebJob>, bool)> {
    let skip = (page - 1).saturating_mul(u64::from(PER_PAGE));
    match branch {
        None => {
            let filter = WebFilter {
                project,
                states,
                ..WebFilter::default()
            };
            let mut jobs = st.store.web_jobs(&filter, PER_PAGE + 1, skip).await?;
            let more = jobs.len() > PER_PAGE as usize;
            jobs.truncate(PER_PAGE as usize);
            Ok((jobs, more))
        }
        Some(b) => {
            let needle = spec_needle(b);
            let filter = WebFilter {
                project,
                states,
                spec_contains: Some(&needle),
                ..WebFilter::default()
            };
            let candidates = st.store.web_jobs(&filter, BRANCH_SCAN, 0).await?;
            let mut matching = candidates
                .into_iter()
                .filter(|j| job_branch(&j.spec).as_deref() == Some(b))
                .skip(usize::try_from(skip).unwrap_or(usize::MAX));
            let jobs: Vec<WebJob> = matching.by_ref().take(PER_PAGE as usize).collect();
            let more = matching.next().is_some();
            Ok((jobs, more))
        }
    }
}

fn list_url(project: Option<&str>, branch: Option<&str>, state: Option<&str>, page: u64) -> String {
    let mut q = Vec::new();
    if let Some(p) = project {
        q.push(format!("project={}", url_part(p)));
    }
    if let Some(b) = branch {
        q.push(format!("branch={}", url_part(b)));
    }
    if let Some(s) = state {
        q.push(format!("state={}", url_part(s)));
    }
    if page > 1 {
        q.push(format!("page={page}"));
    }
    if q.is_empty() {
        "/jobs".into()
    } else {
        format!("/jobs?{}", q.join("&"))
    }
}

fn took(j: &WebJob) -> String {
    match j.finished_ms {
        Some(f) => html::duration(u64::try_from(f - j.created_ms).unwrap_or(0)),
        None => String::new(),
    }
}

async fn jobs_page(
    State(st): St,
    Extension(web): Web,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<ListQuery>,
) -> Res<Html<String>> {
    let session = signed_in(&web, &headers, &uri).await?;
    let project = non_empty(&q.project);
    let branch = non_empty(&q.branch);
    let state = non_empty(&q.state);
    let states: Vec<&str> = match state {
        None => Vec::new(),
        Some(s) => match STATES.iter().find(|k| **k == s) {
            Some(k) => vec![*k],
            None => {
                return Err(WebError::new(
                    StatusCode::BAD_REQUEST,
                    format!("unknown state `{s}`; use one of {}", STATES.join(", ")),
                ))
            }
        },
    };
    let page = q.page.unwrap_or(1).max(1);
    let (jobs, more) = find_jobs(&st, project, branch, &states, page).await?;

    let mut b = String::from("<h1>Jobs</h1>");
    let _ = write!(
        b,
        "<form method=\"get\" action=\"/jobs\" class=\"filters\">\
         <label>Project <input name=\"project\" value=\"{}\"></label>\
         <label>Branch <input name=\"branch\" value=\"{}\"></label>\
         <label>Status <select name=\"state\"><option value=\"\">any</option>",
        esc(project.unwrap_or("")),
        esc(branch.unwrap_or(""))
    );
    for s in STATES {
        let sel = if Some(s) == state { " selected" } else { "" };
        let _ = write!(b, "<option value=\"{s}\"{sel}>{s}</option>");
    }
    b.push_str("</select></label><button type=\"submit\">Filter</button></form>");
    let rows: Vec<html::Row> = jobs
        .iter()
        .map(|j| html::Row {
            class: "job",
            attrs: format!(" data-id=\"{}\"", esc(&url_part(&j.id))),
            cells: vec![
                html::state_label(j.state.as_str()),
                format!(
                    "<a href=\"{}\">{}</a>",
                    esc(&list_url(Some(&j.project), None, None, 1)),
                    esc(&j.project)
                ),
                esc(&job_branch(&j.spec).unwrap_or_default()),
                job_link(&j.id),
                j.attempt.to_string(),
                esc(j.agent.as_deref().unwrap_or("")),
                esc(&html::time(j.created_ms)),
                esc(&took(j)),
            ],
        })
        .collect();
    b.push_str(&html::table(
        "jobs",
        &[
            "Status", "Project", "Branch", "Job", "Attempt", "Agent", "Created", "Took",
        ],
        &rows,
        "No jobs.",
    ));
    b.push_str("<nav class=\"pages\">");
    if page > 1 {
        let _ = write!(
            b,
            "<a rel=\"prev\" href=\"{}\">← Newer</a> ",
            esc(&list_url(project, branch, state, page - 1))
        );
    }
    let _ = write!(b, "<span class=\"page\">Page {page}</span>");
    if more {
        let _ = write!(
            b,
            " <a rel=\"next\" href=\"{}\">Older →</a>",
            esc(&list_url(project, branch, state, page + 1))
        );
    }
    b.push_str("</nav>");
    Ok(Html(html::page("Jobs", Some(&viewer(&session)), &b, false)))
}

/// A link to a job page, named by the id's first 8 characters.
fn job_link(id: &str) -> String {
    format!(
        "<a class=\"jobid\" href=\"/jobs/{}\">{}</a>",
        esc(&url_part(id)),
        esc(id.get(..8).unwrap_or(id))
    )
}

/// A link to a job page, named by its project and the id's first 8 characters.
fn job_link_named(id: &str, project: &str) -> String {
    format!(
        "<a href=\"/jobs/{}\">{} {}</a>",
        esc(&url_part(id)),
        esc(project),
        esc(id.get(..8).unwrap_or(id))
    )
}

// ---- a job ----

#[derive(Deserialize)]
struct AttemptQuery {
    attempt: Option<u32>,
}

/// Every chunk of an attempt's log from `after` on: the rendered log and the next seq.
async fn read_all(
    st: &AppState,
    id: &str,
    attempt: u32,
) -> Res<(JobLog, Vec<events::Line>, u64, bool)> {
    let mut log = JobLog::default();
    let mut lines = Vec::new();
    let mut after = 0;
    let mut truncated;
    loop {
        let page = st
            .store
            .read_log(id, Some(attempt), after, 500)
            .await?
            .ok_or(StoreError::NotFound)?;
        truncated = page.truncated;
        if page.chunks.is_empty() {
            break;
        }
        for c in &page.chunks {
            lines.extend(log.feed(&c.data));
        }
        after = page.next;
    }
    Ok((log, lines, after, truncated))
}

async fn job_page(
    State(st): St,
    Extension(web): Web,
    headers: HeaderMap,
    uri: Uri,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<AttemptQuery>,
) -> Res<Html<String>> {
    let session = signed_in(&web, &headers, &uri).await?;
    let job = st
        .store
        .get(&id)
        .await?
        .ok_or_else(|| WebError::new(StatusCode::NOT_FOUND, "no such job"))?;
    let filter = WebFilter {
        id: Some(&id),
        ..WebFilter::default()
    };
    let spec = st
        .store
        .web_jobs(&filter, 1, 0)
        .await?
        .pop()
        .map(|j| j.spec)
        .unwrap_or_default();
    let attempt = q.attempt.unwrap_or(job.attempt);
    let (log, lines, next, truncated) = read_all(&st, &id, attempt).await?;
    let artifacts = st.store.artifacts(&id).await?;
    let uid = url_part(&id);
    let state = job.state.as_str();

    let mut b = String::new();
    let _ = write!(
        b,
        "<h1><a href=\"{}\">{}</a> <span class=\"muted\">{}</span> {}</h1>",
        esc(&list_url(Some(&job.project), None, None, 1)),
        esc(&job.project),
        esc(&job.id),
        html::state_label(state).replacen("<span ", "<span id=\"state\" ", 1),
    );
    b.push_str("<dl class=\"facts\">");
    let mut fact = |k: &str, v: &str| {
        if !v.is_empty() {
            let _ = write!(b, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
        }
    };
    fact("Branch", &job_branch(&spec).unwrap_or_default());
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&spec) {
        let src = &v["source"];
        match src["kind"].as_str() {
            Some("git") => fact(
                "Source",
                &format!(
                    "{} @ {}",
                    src["url"].as_str().unwrap_or(""),
                    src["revision"].as_str().unwrap_or("")
                ),
            ),
            Some("archive") => fact(
                "Source",
                &format!("archive {}", src["sha256"].as_str().unwrap_or("")),
            ),
            _ => {}
        }
    }
    fact(
        "Attempt",
        &format!("{} of at most {}", job.attempt, job.max_attempts),
    );
    fact("Created", &job.created_at);
    fact("Finished", job.finished_at.as_deref().unwrap_or(""));
    fact(
        "Exit code",
        &job.exit_code.map(|c| c.to_string()).unwrap_or_default(),
    );
    fact("Message", job.message.as_deref().unwrap_or(""));
    b.push_str("</dl><div class=\"actions\">");
    let csrf = esc(&session.csrf);
    let may_act = role_may_read(session.role);
    if may_act && !job.state.is_final() {
        let disabled = if job.cancel_requested {
            " disabled"
        } else {
            ""
        };
        let _ = write!(
            b,
            "<form method=\"post\" action=\"/jobs/{uid}/cancel\" class=\"action\" id=\"cancel\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\"{disabled}>{}</button></form>",
            if job.cancel_requested {
                "Cancelling…"
            } else {
                "Cancel"
            }
        );
    }
    if may_act && job.state.is_final() {
        let _ = write!(
            b,
            "<form method=\"post\" action=\"/jobs/{uid}/retry\" class=\"action\" id=\"retry\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\">Retry</button></form>"
        );
    }
    b.push_str("</div>");

    if job.attempts.len() > 1 {
        b.push_str("<h2>Attempts</h2><table class=\"attempts\"><tbody>");
        for a in &job.attempts {
            let _ = write!(
                b,
                "<tr><td><a href=\"/jobs/{uid}?attempt={n}\">#{n}</a></td><td>{}</td>\
                 <td>{}</td><td>{}</td></tr>",
                esc(&a.agent),
                esc(&a.started_at),
                esc(a.outcome.as_deref().unwrap_or("running")),
                n = a.attempt,
            );
        }
        b.push_str("</tbody></table>");
    }

    let _ = write!(
        b,
        "<h2>Phases</h2><div id=\"timeline\">{}</div>",
        log.timeline_html()
    );
    let release = log.release_html();
    if !release.is_empty() {
        let _ = write!(b, "<h2>Release</h2><div class=\"release\">{release}</div>");
    }
    let _ = write!(b, "<div id=\"results\">{}</div>", log.results.html());
    if let Some(list) = artifacts.filter(|a| !a.artifacts.is_empty()) {
        b.push_str("<h2>Artifacts</h2><ul class=\"artifacts\">");
        for a in &list.artifacts {
            let _ = write!(
                b,
                "<li><a href=\"/jobs/{uid}/artifacts/{}\">{}</a> <span class=\"muted\">{} bytes</span></li>",
                esc(&url_path(&a.name)),
                esc(&a.name),
                a.size
            );
        }
        b.push_str("</ul>");
    }
    let _ = write!(
        b,
        "<h2>Log <a class=\"download\" href=\"/jobs/{uid}/log.txt?attempt={attempt}\">download</a></h2>"
    );
    if truncated {
        b.push_str("<p class=\"error\">The log hit the server's limit and was cut there.</p>");
    }
    let shown = lines.len().saturating_sub(PAGE_LINES);
    if shown > 0 {
        let _ = write!(
            b,
            "<p class=\"muted\">{shown} earlier lines are in the download.</p>"
        );
    }
    let live = if job.state.is_final() || attempt != job.attempt {
        String::new()
    } else {
        format!(" data-live=\"/jobs/{uid}/live?attempt={attempt}&amp;after={next}\"")
    };
    let _ = write!(b, "<div id=\"logbox\"><pre id=\"log\"{live}>");
    for l in &lines[shown..] {
        b.push_str(&l.html);
    }
    b.push_str("</pre></div>");
    Ok(Html(html::page(
        &format!("{} {}", job.project, state),
        Some(&viewer(&session)),
        &b,
        true,
    )))
}

async fn log_text(
    State(st): St,
    Extension(web): Web,
    headers: HeaderMap,
    uri: Uri,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<AttemptQuery>,
) -> Res<Response> {
    signed_in(&web, &headers, &uri).await?;
    let job = st
        .store
        .get(&id)
        .await?
        .ok_or_else(|| WebError::new(StatusCode::NOT_FOUND, "no such job"))?;
    let attempt = q.attempt.unwrap_or(job.attempt);
    let (_, lines, _, _) = read_all(&st, &id, attempt).await?;
    let mut text = String::new();
    for l in lines {
        text.push_str(&l.text);
        text.push('\n');
    }
    let name: String = job
        .id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}-attempt-{attempt}.log\""),
            ),
        ],
        text,
    )
        .into_response())
}

async fn artifact(
    State(st): St,
    Extension(web): Web,
    headers: HeaderMap,
    uri: Uri,
    UrlPath((id, name)): UrlPath<(String, String)>,
) -> Res<Response> {
    signed_in(&web, &headers, &uri).await?;
    let list = st
        .store
        .artifacts(&id)
        .await?
        .ok_or_else(|| WebError::new(StatusCode::NOT_FOUND, "no such job"))?;
    let entry = list
        .artifacts
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| WebError::new(StatusCode::NOT_FOUND, "no such artifact"))?;
    let read = st.blobs.open(&entry.sha256).await?.ok_or_else(|| {
        WebError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("artifact blob {} is missing", entry.sha256),
        )
    })?;
    let file: String = name
        .rsplit('/')
        .next()
        .unwrap_or("artifact")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, read.size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        read.body,
    )
        .into_response())
}

async fn cancel(
    State(st): St,
    Extension(web): Web,
    headers: HeaderMap,
    uri: Uri,
    UrlPath(id): UrlPath<String>,
    Form(f): Form<CsrfForm>,
) -> Res<Response> {
    let (_, session) = checked_post(&web, &headers, &uri, f.csrf.as_deref()).await?;
    if !role_may_read(session.role) {
        return Err(WebError::new(
            StatusCode::FORBIDDEN,
            "this token cannot cancel jobs",
        ));
    }
    st.store.cancel(&id).await?;
    Ok(Redirect::to(&format!("/jobs/{}", url_part(&id))).into_response())
}

async fn retry(
    State(st): St,
    Extension(web): Web,
    headers: HeaderMap,
    uri: Uri,
    UrlPath(id): UrlPath<String>,
    Form(f): Form<CsrfForm>,
) -> Res<Response> {
    let (_, session) = checked_post(&web, &headers, &uri, f.csrf.as_deref()).await?;
    if !role_may_read(session.role) {
        return Err(WebError::new(
            StatusCode::FORBIDDEN,
            "this token cannot retry jobs",
        ));
    }
    st.store.retry(&id).await?;
    Ok(Redirect::to(&format!("/jobs/{}", url_part(&id))).into_response())
}

// ---- live log ----

#[derive(Deserialize)]
struct LiveQuery {
    attempt: Option<u32>,
    after: Option<u64>,
}

struct Live {
    st: Arc<AppState>,
    id: String,
    attempt: u32,
    after: u64,
    events: tokio::sync::broadcast::Receiver<store::hub::Notice>,
    state: Option<JobState>,
    queue: VecDeque<SseEvent>,
    done: bool,
    /// The log read so far (for the phase timeline).
    log: JobLog,
}

impl Live {
    /// Reads what is new; false when there was nothing (then wait for a notice).
    async fn poll(&mut self) -> bool {
        let mut any = false;
        let page = match self
            .st
            .store
            .read_log(&self.id, Some(self.attempt), self.after, 200)
            .await
        {
            Ok(Some(p)) => p,
            Ok(None) | Err(_) => {
                self.queue
                    .push_back(SseEvent::default().event("end").data("gone"));
                self.done = true;
                return true;
            }
        };
        if !page.chunks.is_empty() {
            let phases = self.log.phases.clone();
            let (reports, scans) = (self.log.results.reports.len(), self.log.results.scans.len());
            let mut html = String::new();
            for c in &page.chunks {
                for l in self.log.feed(&c.data) {
                    html.push_str(&l.html);
                }
            }
            if self.log.phases != phases {
                self.queue.push_back(
                    SseEvent::default()
                        .event("timeline")
                        .data(self.log.timeline_html()),
                );
            }
            if (reports, scans) != (self.log.results.reports.len(), self.log.results.scans.len()) {
                self.queue.push_back(
                    SseEvent::default()
                        .event("results")
                        .data(self.log.results.html()),
                );
            }
            self.after = page.next;
            self.queue.push_back(
                SseEvent::default()
                    .event("log")
                    .id(self.after.to_string())
                    .data(html.trim_end_matches('\n')),
            );
            any = true;
        }
        let filter = WebFilter {
            id: Some(&self.id),
            ..WebFilter::default()
        };
        if let Ok(Some(j)) = self
            .st
            .store
            .web_jobs(&filter, 1, 0)
            .await
            .map(|mut v| v.pop())
        {
            if self.state != Some(j.state) {
                self.state = Some(j.state);
                let data = serde_json::json!({
                    "state": j.state.as_str(),
                    "final": j.state.is_final(),
                    "attempt": j.attempt,
                });
                self.queue
                    .push_back(SseEvent::default().event("state").data(data.to_string()));
                any = true;
            }
            if page.complete && j.attempt > self.attempt && j.state != JobState::Queued {
                // The next attempt started (the page was opened while the job was queued,
                // or its agent was lost): follow that one, as `runner jobs logs -f` does.
                if self.attempt > 0 {
                    let mark = format!(
                        "<span class=\"ln phase\">── attempt {} ──</span>",
                        j.attempt
                    );
                    self.queue
                        .push_back(SseEvent::default().event("log").data(mark));
                }
                self.attempt = j.attempt;
                self.after = 0;
                self.log = JobLog::default();
                self.queue.push_back(
                    SseEvent::default()
                        .event("timeline")
                        .data(self.log.timeline_html()),
                );
                any = true;
            } else if page.complete && j.state.is_final() {
                self.queue
                    .push_back(SseEvent::default().event("end").data(j.state.as_str()));
                self.done = true;
                any = true;
            }
        }
        any
    }
}

async fn live(
    State(st): St,
    Extension(web): Web,
    headers: HeaderMap,
    uri: Uri,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<LiveQuery>,
) -> Res<Response> {
    signed_in(&web, &headers, &uri).await?;
    let job = st
        .store
        .get(&id)
        .await?
        .ok_or_else(|| WebError::new(StatusCode::NOT_FOUND, "no such job"))?;
    // A reconnecting EventSource says where it got to.
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let events = st.store.hub().subscribe();
    let attempt = q.attempt.unwrap_or(job.attempt);
    let after = resume.or(q.after).unwrap_or(0);
    // The phases so far, so the timeline sent on a phase change is whole.
    let mut log = JobLog::default();
    let mut from = 0;
    while from < after {
        let page = st
            .store
            .read_log(&id, Some(attempt), from, 500)
            .await?
            .ok_or(StoreError::NotFound)?;
        if page.chunks.is_empty() {
            break;
        }
        for c in page.chunks.iter().filter(|c| c.seq < after) {
            log.feed(&c.data);
        }
        from = page.next;
    }
    let live = Live {
        st: st.clone(),
        id,
        attempt,
        after,
        events,
        state: None,
        queue: VecDeque::new(),
        done: false,
        log,
    };
    let stream = futures_util::stream::unfold(live, |mut l| async move {
        loop {
            if let Some(e) = l.queue.pop_front() {
                return Some((Ok::<_, std::convert::Infallible>(e), l));
            }
            if l.done {
                return None;
            }
            if !l.poll().await {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
                super::wait_for_job(&mut l.events, &l.id, deadline).await;
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

// ---- agents ----

async fn agents_page(
    State(st): St,
    Extension(web): Web,
    headers: HeaderMap,
    uri: Uri,
) -> Res<Html<String>> {
    let session = signed_in(&web, &headers, &uri).await?;
    let agents = st.store.web_agents().await?;
    let running_filter = WebFilter {
        states: &["running"],
        ..WebFilter::default()
    };
    let running = st.store.web_jobs(&running_filter, 1000, 0).await?;
    let online_window = st
        .config
        .lease
        .max(Duration::from_secs(crate::pool::protocol::MAX_WAIT_SECS))
        * 2;
    let now = store::now_ms();
    let online_since = now - online_window.as_millis() as i64;
    let rows: Vec<html::Row> = agents
        .iter()
        .map(|(name, labels, last_seen)| {
            let online = *last_seen >= online_since;
            let jobs: String = running
                .iter()
                .filter(|j| j.agent.as_deref() == Some(name))
                .map(|j| format!("{} ", job_link_named(&j.id, &j.project)))
                .collect();
            let ago = (now - last_seen).max(0) / 1000;
            html::Row::new(
                "agent",
                vec![
                    esc(name),
                    if online {
                        "<span class=\"state s-online\">online</span>"
                    } else {
                        "<span class=\"state s-offline\">offline</span>"
                    }
                    .to_string(),
                    format!("<code>{}</code>", esc(labels)),
                    jobs,
                    format!(
                        "{} <span class=\"muted\">({ago} s ago)</span>",
                        esc(&html::time(*last_seen))
                    ),
                ],
            )
        })
        .collect();
    let mut b = String::from("<h1>Agents</h1>");
    b.push_str(&html::table(
        "agents",
        &["Agent", "Status", "Labels", "Running", "Last seen"],
        &rows,
        "No agent has asked for work yet.",
    ));
    Ok(Html(html::page(
        "Agents",
        Some(&viewer(&session)),
        &b,
        false,
    )))
}

// ---- badge ----

#[derive(Deserialize)]
struct BadgeQuery {
    branch: Option<String>,
}

/// The last finished job of a project (and branch): its state.
async fn last_status(st: &AppState, project: &str, branch: Option<&str>) -> Res<Option<JobState>> {
    let states = ["succeeded", "failed", "error"];
    let needle = branch.map(spec_needle);
    let filter = WebFilter {
        project: Some(project),
        states: &states,
        spec_contains: needle.as_deref(),
        ..WebFilter::default()
    };
    let mut offset = 0u64;
    while offset < u64::from(BRANCH_SCAN) {
        let jobs = st.store.web_jobs(&filter, 100, offset).await?;
        if jobs.is_empty() {
            break;
        }
        offset += jobs.len() as u64;
        // Newest by creation; the badge wants the newest by finish among them.
        let found = jobs
            .iter()
            .filter(|j| branch.is_none() || job_branch(&j.spec).as_deref() == branch)
            .max_by_key(|j| j.finished_ms.unwrap_or(0));
        if let Some(j) = found {
            return Ok(Some(j.state));
        }
    }
    Ok(None)
}

/// A shields-style SVG badge.
fn badge_svg(label: &str, status: &str, colour: &str) -> String {
    let w = |s: &str| 10 + 7 * s.chars().count();
    let (lw, sw) = (w(label), w(status));
    let total = lw + sw;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{total}\" height=\"20\" role=\"img\" \
         aria-label=\"{l}: {s}\"><title>{l}: {s}</title>\
         <rect width=\"{lw}\" height=\"20\" fill=\"#555\"/>\
         <rect x=\"{lw}\" width=\"{sw}\" height=\"20\" fill=\"{colour}\" class=\"status\"/>\
         <g fill=\"#fff\" font-family=\"Verdana,DejaVu Sans,sans-serif\" font-size=\"11\">\
         <text x=\"5\" y=\"14\">{l}</text><text x=\"{sx}\" y=\"14\">{s}</text></g></svg>",
        l = esc(label),
        s = esc(status),
        sx = lw + 5,
    )
}

async fn badge(
    State(st): St,
    UrlPath(file): UrlPath<String>,
    Query(q): Query<BadgeQuery>,
) -> Res<Response> {
    let Some(project) = file.strip_suffix(".svg") else {
        return Err(WebError::new(
            StatusCode::NOT_FOUND,
            "badges are at /badge/PROJECT.svg",
        ));
    };
    let branch = non_empty(&q.branch);
    let (status, colour) = match last_status(&st, project, branch).await? {
        Some(JobState::Succeeded) => ("passing", "#2da44e"),
        Some(JobState::Failed) => ("failing", "#cf222e"),
        Some(_) => ("error", "#9a6700"),
        None => ("unknown", "#6e7781"),
    };
    let label: String = project.chars().take(40).collect();
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache, max-age=0"),
        ],
        badge_svg(&label, status, colour),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_come_from_runner_branch_or_a_git_revision() {
        let git = |rev: &str| {
            format!(r#"{{"source":{{"kind":"git","url":"u","revision":"{rev}"}},"env":[]}}"#)
        };
        assert_eq!(job_branch(&git("main")).as_deref(), Some("main"));
        assert_eq!(job_branch(&git("refs/heads/dev")).as_deref(), Some("dev"));
        assert_eq!(job_branch(&git("0123abcd")), None);
        let hook = r#"{"source":{"kind":"archive","sha256":"x"},"env":["RUNNER_BRANCH=refs/heads/feat/x"]}"#;
        assert_eq!(job_branch(hook).as_deref(), Some("feat/x"));
        assert_eq!(spec_needle("a\"b"), "a\\\"b");
        assert_eq!(local_next(Some("//evil.example")), "/jobs");
        assert_eq!(local_next(Some("/jobs/1")), "/jobs/1");
        assert!(badge_svg("<x>", "passing", "#2da44e").contains("&lt;x&gt;"));
    }
}
