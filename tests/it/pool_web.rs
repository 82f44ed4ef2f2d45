//! The web page of `runner server`, over HTTP against the real server process: sign-in,
//! CSRF, the job list's filters and pages, a job page, the badge, escaping. Jobs are
//! driven through the agent protocol by the test itself (no containers), so each page
//! shows exactly the events the test sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support_pool::Pool;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

/// `runner server token create --role ROLE` on the pool's store.
pub fn token(pool: &Pool, role: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("--data-dir")
        .arg(pool.dir.path().join("server-data"))
        .args(["server", "token", "create", "--role", role])
        .args(["--database", &pool.database])
        .env_remove("RUNNER_DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string()
}

pub fn form(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// A browser-like client: no redirects followed, the session cookie kept by hand.
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
    pub cookie: Option<String>,
}

impl Browser {
    pub fn new(pool: &Pool) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            base: pool.url.clone(),
            cookie: None,
        }
    }

    async fn send(&self, r: reqwest::RequestBuilder) -> Resp {
        let r = match &self.cookie {
            Some(c) => r.header("cookie", format!("runner_session={c}")),
            None => r,
        };
        let resp = r.send().await.unwrap();
        Resp {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    /// A form POST; `origin`: the Origin header a browser would send.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)], origin: Option<&str>) -> Resp {
        let mut r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(fields));
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        self.send(r).await
    }

    pub async fn sign_in(&mut self, token: &str) -> Resp {
        let origin = self.base.clone();
        let r = self
            .post(
                "/signin",
                &[("token", token), ("next", "/jobs")],
                Some(&origin),
            )
            .await;
        if let Some(c) = r.headers.get(SET_COOKIE) {
            let c = c.to_str().unwrap();
            let v = c.split(';').next().unwrap();
            self.cookie = v.strip_prefix("runner_session=").map(str::to_string);
        }
        r
    }

    /// The CSRF token of a page's forms.
    pub async fn csrf(&self) -> String {
        let page = self.get("/jobs").await.body;
        let at = page.find("name=\"csrf\" value=\"").unwrap() + 19;
        page[at..at + 64].to_string()
    }
}

/// The protocol, for submitting jobs and playing the agent.
pub struct Api {
    http: reqwest::Client,
    base: String,
    submit: String,
    agent: String,
}

impl Api {
    pub fn new(pool: &Pool) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: pool.url.clone(),
            submit: token(pool, "submit"),
            agent: pool.agent_token().to_string(),
        }
    }

    async fn call(&self, token: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.base);
        let r = match body {
            Some(b) => self.http.post(url).json(&b),
            None => self.http.get(url),
        };
        let resp = r
            .bearer_auth(token)
            .header("runner-protocol", "1")
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let v = resp.json().await.unwrap_or(Value::Null);
        (status, v)
    }

    /// A git job of `project` on `branch` (queued; no agent runs it unless the test does).
    pub async fn submit(&self, project: &str, branch: &str) -> String {
        let (s, v) = self
            .call(
                &self.submit,
                "/v1/jobs",
                Some(
                    json!({"source": {"kind": "git", "url": "https://example.com/r.git",
                                       "revision": branch}, "project": project}),
                ),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    pub async fn job(&self, id: &str) -> Value {
        let (s, v) = self
            .call(&self.submit, &format!("/v1/jobs/{id}"), None)
            .await;
        assert_eq!(s, StatusCode::OK);
        v
    }

    /// Claims the oldest queued job, sends `events` as its log and completes it.
    pub async fn run(&self, events: &[Value], conclusion: &str, exit_code: i32) -> String {
        self.run_with(events, &[], conclusion, exit_code).await
    }

    /// As [`Api::run`], uploading `artifacts` (name, bytes) before completing.
    pub async fn run_with(
        &self,
        events: &[Value],
        artifacts: &[(&str, &[u8])],
        conclusion: &str,
        exit_code: i32,
    ) -> String {
        let (s, a) = self
            .call(
                &self.agent,
                "/v1/agent/claim",
                Some(json!({"agent": "web-test-agent", "labels": {}, "wait_secs": 5})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{a}");
        let id = a["job_id"].as_str().unwrap().to_string();
        let base = format!("/v1/agent/jobs/{id}/{}", a["attempt"]);
        let lease = a["lease"].clone();
        let data = events
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        let (s, _) = self
            .call(
                &self.agent,
                &format!("{base}/log"),
                Some(json!({"lease": lease, "seq": 0, "data": data})),
            )
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        for (name, bytes) in artifacts {
            let r = self
                .http
                .put(format!(
                    "{}{base}/artifacts/{name}?lease={}",
                    self.base,
                    lease.as_str().unwrap()
                ))
                .bearer_auth(&self.agent)
                .header("runner-protocol", "1")
                .body(bytes.to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::NO_CONTENT);
        }
        let (s, v) = self
            .call(
                &self.agent,
                &format!("{base}/complete"),
                Some(json!({"lease": lease, "conclusion": conclusion,
                            "exit_code": exit_code, "log_chunks": 1})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        id
    }
}

fn rows(body: &str) -> usize {
    body.matches("<tr class=\"job\"").count()
}

#[tokio::test]
async fn web_pages_need_a_sign_in_with_a_known_reader_token() {
    let pool = Pool::start(30);
    let api = Api::new(&pool);
    let id = api.submit("signin-proj", "main").await;
    let mut b = Browser::new(&pool);
    for path in [
        "/jobs",
        &format!("/jobs/{id}"),
        "/agents",
        &format!("/jobs/{id}/log.txt"),
    ] {
        let r = b.get(path).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
        let to = r.headers[LOCATION].to_str().unwrap();
        assert!(to.starts_with("/signin?next="), "{path} → {to}");
        assert!(!r.body.contains("signin-proj"));
    }
    // A wrong token: refused, no cookie.
    let r = b.sign_in("rnr_0000000000000000").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers.get(SET_COOKIE).is_none());
    assert!(b.cookie.is_none());
    // A forged cookie is no session.
    b.cookie = Some("f".repeat(64));
    assert_eq!(b.get("/jobs").await.status, StatusCode::SEE_OTHER);
    b.cookie = None;
    // An agent token reads nothing.
    let r = b.sign_in(pool.agent_token()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(b.cookie.is_none());
    // A submit token: a session cookie, HttpOnly and SameSite=Strict.
    let r = b.sign_in(&api.submit).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let c = r.headers[SET_COOKIE].to_str().unwrap();
    assert!(
        c.contains("HttpOnly") && c.contains("SameSite=Strict"),
        "{c}"
    );
    assert!(
        !c.contains(&api.submit),
        "the cookie never carries the token"
    );
    let r = b.get("/jobs").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("signin-proj"));
    assert!(r.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    // Signing out ends the session.
    let csrf = b.csrf().await;
    let origin = b.base.clone();
    let r = b.post("/signout", &[("csrf", &csrf)], Some(&origin)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(b.get("/jobs").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn web_posts_without_the_csrf_token_or_from_another_origin_change_nothing() {
    let pool = Pool::start(30);
    let api = Api::new(&pool);
    let id = api.submit("csrf-proj", "main").await;
    let mut b = Browser::new(&pool);
    b.sign_in(&api.submit).await;
    let csrf = b.csrf().await;
    let origin = b.base.clone();
    let cancel = format!("/jobs/{id}/cancel");

    let r = b.post(&cancel, &[], Some(&origin)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no form token");
    let r = b
        .post(&cancel, &[("csrf", &"0".repeat(64))], Some(&origin))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a wrong form token");
    let r = b
        .post(&cancel, &[("csrf", &csrf)], Some("http://evil.example"))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "another origin");
    let mut other = Browser::new(&pool);
    let r = other.post(&cancel, &[("csrf", &csrf)], Some(&origin)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no session");
    other.sign_in(&api.submit).await;
    let r = other.post(&cancel, &[("csrf", &csrf)], Some(&origin)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "another session's token");
    assert_eq!(api.job(&id).await["state"], "queued", "nothing changed");

    let r = b.post(&cancel, &[("csrf", &csrf)], Some(&origin)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(api.job(&id).await["state"], "cancelled");
    // Retry from the page queues it again.
    let r = b
        .post(
            &format!("/jobs/{id}/retry"),
            &[("csrf", &csrf)],
            Some(&origin),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(api.job(&id).await["state"], "queued");
}

#[tokio::test]
async fn web_job_list_filters_by_project_branch_and_status_and_pages() {
    list_filters(Pool::start(30)).await;
}

#[tokio::test]
async fn web_job_list_filters_and_pages_on_postgres() {
    let db = crate::support_pg::database().await;
    list_filters(Pool::start_on(30, Some(db))).await;
}

async fn list_filters(pool: Pool) {
    let api = Api::new(&pool);
    for _ in 0..28 {
        api.submit("list-a", "main").await;
    }
    let mut dev = Vec::new();
    for _ in 0..3 {
        dev.push(api.submit("list-b", "dev").await);
    }
    let mut b = Browser::new(&pool);
    b.sign_in(&api.submit).await;
    let csrf = b.csrf().await;
    let origin = b.base.clone();
    b.post(
        &format!("/jobs/{}/cancel", dev[0]),
        &[("csrf", &csrf)],
        Some(&origin),
    )
    .await;

    let p1 = b.get("/jobs").await.body;
    assert_eq!(rows(&p1), 25);
    assert!(p1.contains("rel=\"next\" href=\"/jobs?page=2\""), "{p1}");
    let p2 = b.get("/jobs?page=2").await.body;
    assert_eq!(rows(&p2), 6);
    assert!(!p2.contains("rel=\"next\""));
    assert!(p2.contains("rel=\"prev\""));

    let by_project = b.get("/jobs?project=list-b").await.body;
    assert_eq!(rows(&by_project), 3);
    assert!(!by_project.contains(">list-a<"));
    let by_branch = b.get("/jobs?branch=dev").await.body;
    assert_eq!(rows(&by_branch), 3);
    assert_eq!(rows(&b.get("/jobs?branch=main").await.body), 25);
    assert_eq!(rows(&b.get("/jobs?branch=main&page=2").await.body), 3);
    assert_eq!(rows(&b.get("/jobs?branch=nope").await.body), 0);
    let cancelled = b.get("/jobs?state=cancelled").await.body;
    assert_eq!(rows(&cancelled), 1);
    assert!(cancelled.contains(&dev[0]));
    assert_eq!(
        rows(
            &b.get("/jobs?project=list-b&branch=dev&state=queued")
                .await
                .body
        ),
        2
    );
    assert_eq!(
        b.get("/jobs?state=bogus").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn web_job_page_shows_phases_log_release_and_escapes_everything() {
    let pool = Pool::start(30);
    let api = Api::new(&pool);
    let project = "esc<script>alert('p')</script>";
    let id = api.submit(project, "main").await;
    let events = [
        json!({"event": "phase_started", "phase": "INSTALL"}),
        json!({"event": "phase_ended", "phase": "INSTALL", "status": "SUCCEEDED", "duration_ms": 400}),
        json!({"event": "phase_started", "phase": "BUILD"}),
        json!({"event": "command_started", "phase": "BUILD", "command": "make"}),
        json!({"event": "log", "stream": "stdout", "line": "\u{1b}[31mred line\u{1b}[0m"}),
        json!({"event": "log", "stream": "stdout", "line": "<script>alert('log')</script>"}),
        json!({"event": "phase_ended", "phase": "BUILD", "status": "SUCCEEDED", "duration_ms": 1600}),
        json!({"event": "stage", "stage": "push", "ok": true, "message": "pushed",
                  "detail": {"reference": "registry.example/app:1", "digest": "sha256:0123abcd"},
                  "duration_ms": 5}),
        json!({"event": "stage", "stage": "gitops", "ok": true, "message": "opened",
                  "detail": {"pull_request": {"url": "https://github.com/o/config/pull/7"}},
                  "duration_ms": 5}),
    ];
    let artifact: &[u8] = b"artifact <body>";
    assert_eq!(
        api.run_with(&events, &[("dist/app <1>.txt", artifact)], "succeeded", 0)
            .await,
        id
    );
    let mut b = Browser::new(&pool);
    let download = format!("/jobs/{id}/artifacts/dist/app%20%3C1%3E.txt");
    assert_eq!(b.get(&download).await.status, StatusCode::SEE_OTHER);
    b.sign_in(&api.submit).await;
    let page = b.get(&format!("/jobs/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let h = page.body;
    // Phases with bars: BUILD took 4x INSTALL, the longest is the full width.
    assert!(
        h.contains("<th>INSTALL</th>") && h.contains("<th>BUILD</th>"),
        "{h}"
    );
    assert!(
        h.contains("width=\"250\"") && h.contains("width=\"1000\""),
        "{h}"
    );
    // The log, with its colour as a class.
    assert!(h.contains("<span class=\"f1\">red line</span>"), "{h}");
    assert!(h.contains("$ make"));
    // Release facts.
    assert!(h.contains("sha256:0123abcd"));
    assert!(h.contains("href=\"https://github.com/o/config/pull/7\""));
    // Escaped: no script from the log or the project name survives as markup.
    assert!(h.contains("&lt;script&gt;alert(&#39;log&#39;)&lt;/script&gt;"));
    assert!(h.contains("esc&lt;script&gt;alert(&#39;p&#39;)&lt;/script&gt;"));
    assert!(!h.contains("<script>alert"), "{h}");
    let list = b.get("/jobs").await.body;
    assert!(list.contains("esc&lt;script&gt;"));
    assert!(!list.contains("<script>alert"));
    // The text download has the raw line, as text.
    let txt = b.get(&format!("/jobs/{id}/log.txt")).await;
    assert!(txt.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert!(txt.body.contains("<script>alert('log')</script>"));
    assert!(txt.body.contains("red line") && !txt.body.contains('\u{1b}'));
    // Artifacts: listed (name escaped) and downloadable.
    assert!(h.contains("dist/app &lt;1&gt;.txt"), "{h}");
    assert!(h.contains(&format!("href=\"{download}\"")), "{h}");
    let r = b.get(&download).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.as_bytes(), artifact);
    assert!(r.headers["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    // The agents page shows the agent that ran it, with its labels and last contact.
    let agents = b.get("/agents").await.body;
    assert!(agents.contains("<td>web-test-agent</td>"), "{agents}");
    assert!(agents.contains("s-online"), "{agents}");
    // The badge escapes the project name too.
    let badge = b.get(&format!("/badge/{}.svg", enc(project))).await.body;
    assert!(
        badge.contains("esc&lt;script&gt;") && !badge.contains("<script>"),
        "{badge}"
    );
}

pub fn enc(s: &str) -> String {
    form(&[("x", s)])[2..].to_string()
}

#[tokio::test]
async fn web_badge_colour_follows_the_last_finished_job() {
    let pool = Pool::start(30);
    let api = Api::new(&pool);
    let b = Browser::new(&pool); // badges need no sign-in
    let colour = |svg: &str| {
        let at = svg.find("class=\"status\"").unwrap();
        let fill = svg[..at].rfind("fill=\"").unwrap() + 6;
        svg[fill..fill + 7].to_string()
    };
    let badge = |q: &'static str| {
        let b = &b;
        async move {
            let r = b.get(&format!("/badge/badge-proj.svg{q}")).await;
            assert_eq!(r.status, StatusCode::OK);
            assert!(r.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("image/svg+xml"));
            r.body
        }
    };
    assert!(badge("").await.contains("unknown"));
    api.submit("badge-proj", "main").await;
    api.run(&[], "succeeded", 0).await;
    let green = badge("").await;
    assert!(green.contains("passing"));
    assert_eq!(colour(&green), "#2da44e");
    api.submit("badge-proj", "dev").await;
    api.run(&[], "failed", 1).await;
    let red = badge("").await;
    assert!(red.contains("failing"));
    assert_eq!(colour(&red), "#cf222e");
    // Per branch: main is still passing, dev fails.
    assert_eq!(colour(&badge("?branch=main").await), "#2da44e");
    assert_eq!(colour(&badge("?branch=dev").await), "#cf222e");
    assert!(badge("?branch=other").await.contains("unknown"));
    // A fix on dev turns both green again.
    api.submit("badge-proj", "dev").await;
    api.run(&[], "succeeded", 0).await;
    assert_eq!(colour(&badge("").await), "#2da44e");
    assert_eq!(colour(&badge("?branch=dev").await), "#2da44e");
}

#[tokio::test]
async fn web_live_log_streams_a_job_opened_while_queued_until_it_ends() {
    let pool = Pool::start(30);
    let api = Api::new(&pool);
    let id = api.submit("live-proj", "main").await;
    let mut b = Browser::new(&pool);
    // Not signed in: no stream.
    let live = format!("/jobs/{id}/live?attempt=0&after=0");
    assert_eq!(b.get(&live).await.status, StatusCode::SEE_OTHER);
    b.sign_in(&api.submit).await;
    let page = b.get(&format!("/jobs/{id}")).await.body;
    assert!(page.contains(&format!(
        "data-live=\"/jobs/{id}/live?attempt=0&amp;after=0\""
    )));
    let mut resp = b
        .http
        .get(format!("{}{live}", b.base))
        .header(
            "cookie",
            format!("runner_session={}", b.cookie.clone().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    // The first event is the state it was opened in; the job runs only after that.
    let mut text = String::new();
    while !text.contains("\"state\":\"queued\"") {
        text.push_str(&String::from_utf8_lossy(
            &resp.chunk().await.unwrap().unwrap(),
        ));
    }
    let events = [
        json!({"event": "phase_started", "phase": "BUILD"}),
        json!({"event": "log", "stream": "stdout", "line": "<img src=x onerror=alert(1)>"}),
        json!({"event": "phase_ended", "phase": "BUILD", "status": "FAILED", "duration_ms": 10}),
        json!({"event": "report", "group": "live<tests>", "format": "JUNITXML", "files": [],
               "total": 2, "passed": 1, "failed": 1, "errored": 0, "skipped": 0,
               "duration_secs": 0.1, "note": null, "errors": [],
               "failures": [{"suite": "s", "name": "t", "message": "boom", "error": false}]}),
    ];
    api.run(&events, "failed", 1).await;
    while !text.contains("event: end") {
        match resp.chunk().await.unwrap() {
            Some(c) => text.push_str(&String::from_utf8_lossy(&c)),
            None => break,
        }
    }
    assert!(text.contains("event: log"), "{text}");
    assert!(
        text.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{text}"
    );
    assert!(!text.contains("<img"), "{text}");
    assert!(text.contains("event: timeline"), "{text}");
    // The tests table follows live too, escaped.
    assert!(text.contains("event: results"), "{text}");
    assert!(text.contains("live&lt;tests&gt;"), "{text}");
    assert!(text.contains("\"state\":\"failed\""), "{text}");
    assert!(text.contains("event: end"), "{text}");
}

/// A self-signed certificate for 127.0.0.1 (openssl): (cert, key).
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let conf = dir.join("openssl.cnf");
    std::fs::write(
        &conf,
        "[req]\nprompt = no\ndistinguished_name = dn\nx509_extensions = ext\n\
         [dn]\nCN = runner-test\n\
         [ext]\nbasicConstraints = critical, CA:FALSE\n\
         subjectAltName = IP:127.0.0.1, DNS:localhost\n\
         keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n",
    )
    .unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-config"])
        .arg(&conf)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (needed for the TLS test)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

#[tokio::test]
async fn web_session_cookie_is_secure_under_tls_or_behind_an_https_proxy() {
    // Plain HTTP: no Secure flag (the browser would drop the cookie); behind a proxy that
    // says the client used HTTPS: Secure.
    let pool = Pool::start(30);
    let api = Api::new(&pool);
    let mut b = Browser::new(&pool);
    let r = b.sign_in(&api.submit).await;
    assert!(!r.headers[SET_COOKIE].to_str().unwrap().contains("Secure"));
    let r = b
        .send(
            b.http
                .post(format!("{}/signin", b.base))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("x-forwarded-proto", "https")
                .body(form(&[("token", &api.submit)])),
        )
        .await;
    assert!(r.headers[SET_COOKIE].to_str().unwrap().contains("; Secure"));

    // A server with --tls-cert/--tls-key on the same store.
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("--data-dir")
        .arg(pool.dir.path().join("tls-data"))
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--database",
            &pool.database,
        ])
        .arg("--blobs")
        .arg(pool.dir.path().join("blobs"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env_remove("RUNNER_DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let https = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let pem = std::fs::read(&cert).unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .post(format!("{https}/signin"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", &https)
        .body(form(&[("token", &api.submit)]))
        .send()
        .await
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let c = r.headers()[SET_COOKIE].to_str().unwrap();
    assert!(
        c.contains("; Secure") && c.contains("HttpOnly") && c.contains("SameSite=Strict"),
        "{c}"
    );
}

// ---- sessions in the store: every replica knows them, they outlive a restart ----

#[tokio::test]
async fn web_sessions_are_shared_by_replicas_on_sqlite() {
    sessions_across_replicas(Pool::start(30)).await;
}

#[tokio::test]
async fn web_sessions_are_shared_by_replicas_on_postgres() {
    let db = crate::support_pg::database().await;
    sessions_across_replicas(Pool::start_on(30, Some(db))).await;
}

/// Signed in on replica A, the same cookie reads a page and posts a CSRF-checked
/// action on replica B; signing out on B ends the session on A too.
async fn sessions_across_replicas(pool: Pool) {
    let api = Api::new(&pool);
    let id = api.submit("replica-proj", "main").await;
    let replica = pool.replica();
    let mut a = Browser::new(&pool);
    let r = a.sign_in(&api.submit).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let csrf = a.csrf().await;
    let mut b = Browser::new(&pool);
    b.base = replica.url.clone();
    b.cookie = a.cookie.clone();
    assert!(b.cookie.is_some());

    let r = b.get("/jobs").await;
    assert_eq!(r.status, StatusCode::OK, "replica B knows A's session");
    assert!(r.body.contains("replica-proj"));
    assert_eq!(
        b.csrf().await,
        csrf,
        "the same session, the same form token"
    );
    let origin = b.base.clone();
    let r = b
        .post(
            &format!("/jobs/{id}/cancel"),
            &[("csrf", &csrf)],
            Some(&origin),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(api.job(&id).await["state"], "cancelled");

    // Signing out on B ends the session everywhere.
    let r = b.post("/signout", &[("csrf", &csrf)], Some(&origin)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    for (who, browser) in [("A", &a), ("B", &b)] {
        let r = browser.get("/jobs").await;
        assert_eq!(
            r.status,
            StatusCode::SEE_OTHER,
            "replica {who} after sign-out"
        );
        assert!(!r.body.contains("replica-proj"));
    }
    let a_origin = a.base.clone();
    let r = a
        .post(
            &format!("/jobs/{id}/retry"),
            &[("csrf", &csrf)],
            Some(&a_origin),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "a signed-out session posts nothing"
    );
    assert_eq!(api.job(&id).await["state"], "cancelled");
}

#[tokio::test]
async fn a_web_session_survives_a_server_restart() {
    let mut pool = Pool::start(30);
    let api = Api::new(&pool);
    let id = api.submit("restart-proj", "main").await;
    let mut b = Browser::new(&pool);
    b.sign_in(&api.submit).await;
    let csrf = b.csrf().await;
    pool.kill9_server();
    pool.restart_server();
    // A new client (the old one's pooled connection went with the killed process), the
    // same cookie.
    let cookie = b.cookie.take();
    let mut b = Browser::new(&pool);
    b.cookie = cookie;
    let r = b.get("/jobs").await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "still signed in after the restart"
    );
    assert!(r.body.contains("restart-proj"));
    let origin = b.base.clone();
    let r = b
        .post(
            &format!("/jobs/{id}/cancel"),
            &[("csrf", &csrf)],
            Some(&origin),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(api.job(&id).await["state"], "cancelled");
}

#[tokio::test]
async fn an_expired_web_session_is_refused() {
    let pool = Pool::start_with(30, None, &["--web-session-secs", "1"]);
    let api = Api::new(&pool);
    let id = api.submit("expiry-proj", "main").await;
    let mut b = Browser::new(&pool);
    let r = b.sign_in(&api.submit).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let c = r.headers[SET_COOKIE].to_str().unwrap();
    assert!(c.contains("Max-Age=1;") || c.ends_with("Max-Age=1"), "{c}");
    // Past the lifetime the server refuses the cookie (a browser would have dropped it).
    std::thread::sleep(Duration::from_millis(2500));
    let r = b.get("/jobs").await;
    assert_eq!(
        r.status,
        StatusCode::SEE_OTHER,
        "an expired session reads nothing"
    );
    assert!(r.headers[LOCATION].to_str().unwrap().starts_with("/signin"));
    assert!(!r.body.contains("expiry-proj"));
    let r = b.get(&format!("/jobs/{id}")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "nor a job page");
}
