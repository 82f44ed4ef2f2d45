//! Pausing and resuming the queue against the real server: a paused job stays queued
//! while agents poll (through a restart, and on another replica), a resume hands it to an
//! agent already waiting, a label-set pause holds only those jobs, running jobs go on,
//! only admin tokens may pause, and the queue page's buttons work with the CSRF token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::pool_web::{token, Browser};
use crate::support_pool::{project, source, Containers, Pool};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The protocol, with any token.
struct Http {
    http: reqwest::Client,
}

impl Http {
    fn new() -> Http {
        Http {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(90))
                // A fresh connection per call: the test restarts the server.
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
        }
    }

    async fn call(
        &self,
        base: &str,
        token: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{base}{path}");
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
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A queued git job with `labels` (no agent can run it: the test claims it).
    async fn submit(&self, base: &str, token: &str, labels: Value) -> String {
        let (s, v) = self
            .call(
                base,
                token,
                "/v1/jobs",
                Some(
                    json!({"source": {"kind": "git", "url": "https://example.com/r.git",
                                       "revision": "main"}, "project": "queue-proj",
                            "labels": labels}),
                ),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    /// A claim long-poll of `wait` seconds: the job id it got, or `None` (204).
    async fn claim(
        &self,
        base: &str,
        agent_token: &str,
        labels: Value,
        wait: u64,
    ) -> Option<String> {
        let (s, v) = self
            .call(
                base,
                agent_token,
                "/v1/agent/claim",
                Some(json!({"agent": "queue-test-agent", "labels": labels, "wait_secs": wait})),
            )
            .await;
        match s {
            StatusCode::OK => Some(v["job_id"].as_str().unwrap().to_string()),
            StatusCode::NO_CONTENT => None,
            other => panic!("claim answered {other}: {v}"),
        }
    }

    async fn state(&self, base: &str, token: &str, id: &str) -> String {
        let (_, v) = self
            .call(base, token, &format!("/v1/jobs/{id}"), None)
            .await;
        v["state"].as_str().unwrap().to_string()
    }

    /// `runner_claims_waiting` of the server at `base`.
    async fn claims_waiting(&self, base: &str) -> u64 {
        let text = self
            .http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("runner_claims_waiting "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Waits until a claim long-polls the server at `base` (so a resume finds it waiting).
async fn until_a_claim_waits(http: &Http, base: &str) {
    for _ in 0..300 {
        if http.claims_waiting(base).await >= 1 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no claim is waiting at {base}");
}

fn cli(pool: &Pool, token: &str, args: &[&str]) -> std::process::Output {
    pool.cli()
        .env("RUNNER_TOKEN", token)
        .args(["jobs"])
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn web_queue_pause_holds_a_job_through_a_restart_and_resume_hands_it_to_a_waiting_agent() {
    let mut pool = Pool::start(30);
    let admin = token(&pool, "admin");
    let submit = pool.submit_token().to_string();
    let agent = pool.agent_token().to_string();
    let http = Http::new();

    // Only an admin token pauses.
    for t in [&submit, &agent] {
        let (s, v) = http
            .call(&pool.url, t, "/v1/queue/pause", Some(json!({})))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        let (s, _) = http
            .call(&pool.url, t, "/v1/queue/resume", Some(json!({})))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }
    let out = cli(&pool, &submit, &["pause"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("admin"), "{err}");
    let (_, q) = http.call(&pool.url, &submit, "/v1/queue", None).await;
    assert_eq!(q["pauses"], json!([]), "nothing was paused: {q}");

    let out = cli(&pool, &admin, &["pause"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("paused: (every job)"));

    // A job queued now is not handed out, though an agent asks.
    let id = http.submit(&pool.url, &submit, json!({})).await;
    assert_eq!(http.claim(&pool.url, &agent, json!({}), 1).await, None);
    assert_eq!(http.state(&pool.url, &submit, &id).await, "queued");

    // The pause is in the database: a restarted server keeps it.
    pool.kill9_server();
    pool.restart_server();
    assert_eq!(http.claim(&pool.url, &agent, json!({}), 1).await, None);
    assert_eq!(http.state(&pool.url, &submit, &id).await, "queued");
    let (_, q) = http.call(&pool.url, &submit, "/v1/queue", None).await;
    assert_eq!(q["pauses"].as_array().unwrap().len(), 1, "{q}");
    assert_eq!(q["queued"][0]["count"], 1, "{q}");
    assert_eq!(q["queued"][0]["paused"], true, "{q}");
    let shown = cli(&pool, &submit, &["queue"]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("paused"));

    // An agent waits; the resume hands it the job within its long-poll (without the
    // wake-up it would answer "no job" when its 30 s are up).
    let waiting = {
        let (base, agent) = (pool.url.clone(), agent.clone());
        tokio::spawn(async move { Http::new().claim(&base, &agent, json!({}), 30).await })
    };
    until_a_claim_waits(&http, &pool.url).await;
    let out = cli(&pool, &admin, &["resume"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no pause"));
    assert_eq!(waiting.await.unwrap(), Some(id.clone()));
    assert_eq!(http.state(&pool.url, &submit, &id).await, "running");
}

#[tokio::test]
async fn web_queue_pause_of_a_label_set_holds_only_jobs_with_those_labels() {
    let pool = Pool::start(30);
    let admin = token(&pool, "admin");
    let submit = pool.submit_token().to_string();
    let agent = pool.agent_token().to_string();
    let http = Http::new();
    let (s, v) = http
        .call(
            &pool.url,
            &admin,
            "/v1/queue/pause",
            Some(json!({"labels": {"os": "linux"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let linux = http
        .submit(&pool.url, &submit, json!({"os": "linux", "size": "large"}))
        .await;
    let plain = http.submit(&pool.url, &submit, json!({})).await;
    let labels = json!({"os": "linux", "size": "large"});
    // The job without labels runs; the Linux one is held.
    assert_eq!(
        http.claim(&pool.url, &agent, labels.clone(), 1).await,
        Some(plain)
    );
    assert_eq!(http.claim(&pool.url, &agent, labels.clone(), 1).await, None);
    let (_, q) = http.call(&pool.url, &submit, "/v1/queue", None).await;
    assert_eq!(q["queued"][0]["labels"], labels, "{q}");
    assert_eq!(q["queued"][0]["paused"], true, "{q}");
    // Resuming another label set changes nothing; resuming this one releases it.
    http.call(
        &pool.url,
        &admin,
        "/v1/queue/resume",
        Some(json!({"labels": {"os": "windows"}})),
    )
    .await;
    assert_eq!(http.claim(&pool.url, &agent, labels.clone(), 1).await, None);
    let (s, v) = http
        .call(
            &pool.url,
            &admin,
            "/v1/queue/resume",
            Some(json!({"labels": {"os": "linux"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["pauses"], json!([]), "{v}");
    assert_eq!(http.claim(&pool.url, &agent, labels, 1).await, Some(linux));
}

#[tokio::test]
async fn web_queue_pause_lets_a_running_job_finish_and_a_real_agent_runs_the_next_after_resume() {
    let pool = Pool::start(30);
    let admin = token(&pool, "admin");
    let http = Http::new();
    let _agent = pool.agent("queue-agent", &[]);
    let name = project("web-queue");
    let _containers = Containers(name.clone());
    let src = source(&[(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo started\n      - sleep 3\n      - echo finished\n",
    )]);
    let first = pool.submit(src.path(), &name, &[]);
    pool.wait_job(&first, "the first job to run", 120, |j| {
        j["state"] == "running"
    });
    let (s, _) = http
        .call(&pool.url, &admin, "/v1/queue/pause", Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::OK);
    // Running jobs go on.
    let done = pool.wait_job(&first, "the first job to finish", 120, |j| {
        j["state"] != "queued" && j["state"] != "running"
    });
    assert_eq!(done["state"], "succeeded", "{done}");
    // The next stays queued while the agent polls (and so does a claim of our own).
    let second = pool.submit(src.path(), &name, &[]);
    assert_eq!(
        http.claim(&pool.url, pool.agent_token(), json!({}), 2)
            .await,
        None
    );
    assert_eq!(pool.job(&second)["state"], "queued");
    let (s, _) = http
        .call(&pool.url, &admin, "/v1/queue/resume", Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::OK);
    let done = pool.wait_job(&second, "the second job to finish", 120, |j| {
        j["state"] != "queued" && j["state"] != "running"
    });
    assert_eq!(done["state"], "succeeded", "{done}");
}

#[tokio::test]
async fn web_queue_pause_on_one_replica_holds_claims_on_another_and_resume_wakes_them() {
    let db = crate::support_pg::database().await;
    let pool = Pool::start_on(30, Some(db));
    let replica = pool.replica();
    let admin = token(&pool, "admin");
    let submit = pool.submit_token().to_string();
    let agent = pool.agent_token().to_string();
    let http = Http::new();
    // The replica has read the (empty) pauses before the pause.
    let (_, q) = http.call(&replica.url, &submit, "/v1/queue", None).await;
    assert_eq!(q["pauses"], json!([]));
    let (s, _) = http
        .call(&pool.url, &admin, "/v1/queue/pause", Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::OK);
    // The notice reaches the replica (its view says paused), then its claims hold.
    let mut seen = false;
    for _ in 0..300 {
        let (_, q) = http.call(&replica.url, &submit, "/v1/queue", None).await;
        if q["pauses"].as_array().map(Vec::len) == Some(1) {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen, "the replica never saw the pause");
    let id = http.submit(&pool.url, &submit, json!({})).await;
    assert_eq!(http.claim(&replica.url, &agent, json!({}), 1).await, None);
    assert_eq!(http.state(&pool.url, &submit, &id).await, "queued");
    // A claim waits on the replica; the resume on the first server wakes it.
    let waiting = {
        let (base, agent) = (replica.url.clone(), agent.clone());
        tokio::spawn(async move { Http::new().claim(&base, &agent, json!({}), 30).await })
    };
    until_a_claim_waits(&http, &replica.url).await;
    let (s, _) = http
        .call(&pool.url, &admin, "/v1/queue/resume", Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(waiting.await.unwrap(), Some(id));
}

#[tokio::test]
async fn web_queue_page_buttons_pause_and_resume_with_the_csrf_token_for_admins_only() {
    let pool = Pool::start(30);
    let admin = token(&pool, "admin");
    let submit = pool.submit_token().to_string();
    let http = Http::new();
    let id = http
        .submit(&pool.url, &submit, json!({"os": "linux"}))
        .await;
    let mut b = Browser::new(&pool);
    b.sign_in(&admin).await;
    let origin = b.base.clone();
    let page = b.get("/queue").await;
    assert_eq!(page.status, StatusCode::OK);
    let h = page.body;
    assert!(h.contains("<code>os=linux</code>"), "{h}");
    assert!(h.contains(&format!("href=\"/jobs/{id}\"")), "{h}");
    assert!(h.contains("action=\"/queue/pause\""), "{h}");
    assert!(h.contains("s-running\">running"), "{h}");
    let csrf = b.csrf().await;

    // Without the form's token, or from another site: nothing changes.
    let r = b.post("/queue/pause", &[], Some(&origin)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = b
        .post(
            "/queue/pause",
            &[("csrf", &csrf)],
            Some("http://evil.example"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let (_, q) = http.call(&pool.url, &submit, "/v1/queue", None).await;
    assert_eq!(q["pauses"], json!([]), "{q}");

    // A submit session sees the queue but has no buttons, and its posts are refused.
    let mut reader = Browser::new(&pool);
    reader.sign_in(&submit).await;
    let rp = reader.get("/queue").await.body;
    assert!(!rp.contains("action=\"/queue/pause\""), "{rp}");
    let rcsrf = reader.csrf().await;
    let r = reader
        .post(
            "/queue/pause",
            &[("csrf", &rcsrf), ("labels", "")],
            Some(&origin),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // The admin's button pauses one label set, with its token.
    let r = b
        .post(
            "/queue/pause",
            &[("csrf", &csrf), ("labels", "os=linux")],
            Some(&origin),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let (_, q) = http.call(&pool.url, &submit, "/v1/queue", None).await;
    assert_eq!(q["pauses"][0]["labels"], json!({"os": "linux"}), "{q}");
    let h = b.get("/queue").await.body;
    assert!(
        h.contains("<tr class=\"pause\"><td><code>os=linux</code>"),
        "{h}"
    );
    assert!(h.contains("tr class=\"qjob held\""), "{h}");
    assert!(h.contains("id=\"resume\""), "{h}");
    // Bad labels are refused with a message.
    let r = b
        .post(
            "/queue/pause",
            &[("csrf", &csrf), ("labels", "os")],
            Some(&origin),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Resume all.
    let r = b
        .post(
            "/queue/resume",
            &[("csrf", &csrf), ("scope", "all")],
            Some(&origin),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let (_, q) = http.call(&pool.url, &submit, "/v1/queue", None).await;
    assert_eq!(q["pauses"], json!([]), "{q}");
}
