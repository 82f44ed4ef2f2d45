//! GitHub webhooks on `runner server`, against the real server process, real git
//! repositories, a real agent running the busybox image, and the strict GitHub stand-in
//! (tests/it/forge_github.py, validating every request against GitHub's OpenAPI
//! description) receiving the commit statuses.
//!
//! Needs: git, python3 with `jsonschema`, npm (scripts/octokit-openapi.sh fetches
//! @octokit/openapi once into ~/.cache/runner-test).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support_github::GitHubStandIn;
use crate::support_pool::{eventually, log_lines, project, Pool};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

const SECRET: &str = "whsec-7Qm2Lx9Vb-test";
const STATUS_TOKEN: &str = "ghs_STATUStoken0123456789abcdef";
const PUBLIC: &str = "https://runner.example";
const SECRET_VALUE: &str = "s3cr3t-V4lue-9Qx";

/// The strict GitHub stand-in.
struct GitHub {
    _standin: GitHubStandIn,
    api: String,
}

impl GitHub {
    fn start() -> GitHub {
        GitHub::start_on(0)
    }

    /// The stand-in on `port` (0: a free one).
    fn start_on(port: u16) -> GitHub {
        let standin = GitHubStandIn::start(STATUS_TOKEN, port, &[]);
        GitHub {
            api: standin.api(),
            _standin: standin,
        }
    }

    async fn get(&self, path: &str) -> Value {
        reqwest::get(format!("{}{path}", self.api))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// A server taking acme/shop's webhooks as `project` (statuses to `github` if given).
fn server(project: &str, github: Option<&GitHub>) -> Pool {
    server_on(project, github, None)
}

/// As [`server`], on `database` (a `postgres://` URL) or SQLite.
fn server_on(project: &str, github: Option<&GitHub>, database: Option<String>) -> Pool {
    let mut args = vec![
        "--github-webhook-secret".to_string(),
        SECRET.to_string(),
        "--github-repo".to_string(),
        format!("acme/shop={project}"),
        "--public-url".to_string(),
        PUBLIC.to_string(),
    ];
    if let Some(g) = github {
        args.extend([
            "--github-api-url".to_string(),
            g.api.clone(),
            "--github-status-token".to_string(),
            STATUS_TOKEN.to_string(),
        ]);
    }
    Pool::start_with(30, database, &args)
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

const BUILDSPEC: &str = "version: 0.2\nenv:\n  parameter-store:\n    TOKEN: /app/token\nphases:\n  build:\n    commands:\n      - echo \"branch=$RUNNER_BRANCH event=$CODEBUILD_WEBHOOK_EVENT trigger=$CODEBUILD_WEBHOOK_TRIGGER head=$CODEBUILD_WEBHOOK_HEAD_REF base=$CODEBUILD_WEBHOOK_BASE_REF actor=$CODEBUILD_WEBHOOK_ACTOR_ACCOUNT_ID version=$CODEBUILD_SOURCE_VERSION\"\n      - if [ -n \"$TOKEN\" ]; then echo secret-present; else echo secret-absent; fi\n      - echo \"docker=${DOCKER_HOST:-none}\"\n";

/// A repository with a buildspec (and `extra` files) committed on `main`: (dir, sha).
fn repo(extra: &[(&str, &str)]) -> (tempfile::TempDir, String) {
    let d = tempfile::tempdir().unwrap();
    git(d.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(d.path().join("buildspec.yml"), BUILDSPEC).unwrap();
    for (name, text) in extra {
        std::fs::write(d.path().join(name), text).unwrap();
    }
    git(d.path(), &["add", "-A"]);
    git(d.path(), &["commit", "-q", "-m", "first"]);
    let sha = git(d.path(), &["rev-parse", "HEAD"]);
    (d, sha)
}

fn push_payload(clone_url: &str, sha: &str) -> String {
    json!({
        "ref": "refs/heads/main",
        "before": "0".repeat(40),
        "after": sha,
        "deleted": false,
        "repository": {"full_name": "acme/shop", "clone_url": clone_url},
        "sender": {"id": 4242}
    })
    .to_string()
}

fn pr_payload(action: &str, head: (&str, &str, &str), merged: bool) -> String {
    let (head_repo, head_url, head_sha) = head;
    json!({
        "action": action,
        "number": 12,
        "pull_request": {
            "merged": merged,
            "merged_at": if merged { Some("2026-03-04T05:06:07Z") } else { None },
            "merge_commit_sha": "9".repeat(40),
            "head": {"ref": "feature", "sha": head_sha,
                     "repo": {"full_name": head_repo, "clone_url": head_url}},
            "base": {"ref": "main", "sha": "1".repeat(40),
                     "repo": {"full_name": "acme/shop", "clone_url": "https://github.com/acme/shop.git"}}
        },
        "repository": {"full_name": "acme/shop", "clone_url": "https://github.com/acme/shop.git"},
        "sender": {"id": 777}
    })
    .to_string()
}

/// POSTs a delivery signed with `secret`.
async fn deliver(
    pool: &Pool,
    event: &str,
    delivery: &str,
    body: &str,
    secret: &str,
) -> (StatusCode, Value) {
    deliver_to(&pool.url, event, delivery, body, secret).await
}

/// POSTs a delivery signed with `secret` to the server at `url`.
async fn deliver_to(
    url: &str,
    event: &str,
    delivery: &str,
    body: &str,
    secret: &str,
) -> (StatusCode, Value) {
    let sig = runner::pool::server::webhooks::signature::sign(secret.as_bytes(), body.as_bytes());
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/webhooks/github"))
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", delivery)
        .header("X-Hub-Signature-256", sig)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// The project's jobs, as `runner jobs list --json` shows them.
fn jobs_of(pool: &Pool, project: &str) -> Vec<Value> {
    let out = pool
        .cli()
        .args(["jobs", "list", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = v.get("jobs").cloned().unwrap_or(v);
    list.as_array()
        .unwrap()
        .iter()
        .filter(|j| j["project"] == project)
        .cloned()
        .collect()
}

/// An agent that resolves the buildspec's `/app/token` from a secrets file.
fn agent(pool: &Pool, name: &str) -> (tempfile::TempDir, crate::support_pool::Agent) {
    let secrets = tempfile::tempdir().unwrap();
    let secrets_file = secrets.path().join("secrets.json");
    std::fs::write(
        &secrets_file,
        json!({"parameters": {"/app/token": SECRET_VALUE}}).to_string(),
    )
    .unwrap();
    let agent = pool.agent(
        &format!("{name}-a"),
        &["--secrets-file", secrets_file.to_str().unwrap()],
    );
    (secrets, agent)
}

fn finished(pool: &Pool, id: &str) -> Value {
    pool.wait_job(id, "the job to finish", 180, |j| {
        !matches!(j["state"].as_str(), Some("queued" | "running"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_push_creates_one_job_and_a_redelivery_creates_none_sqlite() {
    push_once(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_push_creates_one_job_and_a_redelivery_creates_none_postgres() {
    push_once(Some(crate::support_pg::database().await)).await;
}

async fn push_once(database: Option<String>) {
    let name = project("hook-push");
    let pool = server_on(&name, None, database);
    let (src, sha) = repo(&[]);
    let body = push_payload(&src.path().display().to_string(), &sha);
    let (status, job) = deliver(&pool, "push", "d-push-1", &body, SECRET).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(job["project"], name.as_str());
    let (status, again) = deliver(&pool, "push", "d-push-1", &body, SECRET).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["duplicate"], "d-push-1");
    // Another replica on the same store refuses it too.
    let replica = pool.replica();
    let (status, again) = deliver_to(&replica.url, "push", "d-push-1", &body, SECRET).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    // An unknown event is answered and ignored.
    let (status, _) = deliver(&pool, "issues", "d-issue-1", "{}", SECRET).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let jobs = jobs_of(&pool, &name);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["id"], job["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_or_missing_signature_is_401_and_creates_nothing() {
    let name = project("hook-badsig");
    let pool = server(&name, None);
    let (src, sha) = repo(&[]);
    let body = push_payload(&src.path().display().to_string(), &sha);
    let (status, answer) = deliver(&pool, "push", "d-bad-1", &body, "not-the-secret").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/webhooks/github", pool.url))
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", "d-bad-2")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(jobs_of(&pool, &name).is_empty());
    // A submitter cannot pose as a webhook (the trigger is the server's to set).
    let submit = crate::pool_web::token(&pool, "submit");
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/jobs", pool.url))
        .bearer_auth(&submit)
        .header("Runner-Protocol", "1")
        .json(&json!({
            "source": {"kind": "git", "url": src.path().display().to_string(), "revision": sha},
            "project": name,
            "trigger": {"variables": {}, "untrusted": false}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(jobs_of(&pool, &name).is_empty());
    // The same delivery id, correctly signed, is still new: nothing was recorded for it.
    let (status, _) = deliver(&pool, "push", "d-bad-1", &body, SECRET).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_are_posted_at_start_and_end_and_the_build_sees_the_webhook_variables() {
    let github = GitHub::start();
    let name = project("hook-status");
    let pool = server(&name, Some(&github));
    let (_secrets, _agent) = agent(&pool, &name);
    let (src, sha) = repo(&[]);
    let body = push_payload(&src.path().display().to_string(), &sha);
    let (status, job) = deliver(&pool, "push", "d-status-1", &body, SECRET).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let done = finished(&pool, &id);
    assert_eq!(done["state"], "succeeded", "{done}");
    let lines = log_lines(&pool.log_events(&id, None));
    let want = format!(
        "branch=main event=PUSH trigger=branch/main head=refs/heads/main base= actor=4242 version={sha}"
    );
    assert!(lines.iter().any(|l| l.contains(&want)), "{lines:?}");

    let key = format!("acme/shop@{sha}");
    let statuses = eventually("the final commit status", 60, || {
        let all = futures_block(github.get("/_statuses"));
        let list = all[&key].as_array().cloned().unwrap_or_default();
        (list.last().map(|s| s["state"] == "success") == Some(true)).then_some(list)
    });
    assert_eq!(statuses[0]["state"], "pending", "{statuses:?}");
    for s in &statuses {
        assert_eq!(s["context"], format!("runner/{name}"));
        assert_eq!(s["target_url"], format!("{PUBLIC}/jobs/{id}"));
    }
    assert!(
        statuses
            .iter()
            .all(|s| s["state"] == "pending" || s["state"] == "success"),
        "{statuses:?}"
    );
    // Every status request was accepted by the strict stand-in.
    let recorded = github.get("/_recorded").await;
    let posts: Vec<&Value> = recorded
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"] == format!("/repos/acme/shop/statuses/{sha}"))
        .collect();
    assert_eq!(posts.len(), statuses.len(), "{recorded}");
    assert!(posts.iter().all(|p| p["status"] == 201), "{recorded}");
}

/// Runs `f` to completion from a synchronous closure inside the test's runtime.
fn futures_block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_pull_requests_job_gets_no_secret_and_runs_no_release_stage() {
    let name = project("hook-fork");
    let pool = server(&name, None);
    let (_secrets, _agent) = agent(&pool, &name);
    // The project publishes an image (to a registry nobody listens on): a trusted build
    // runs the image stage, an untrusted one must not.
    // It also asks for privileged mode (Docker through the gate): a fork's build gets no
    // Docker at all, since the gate lets a build retag image names other builds use.
    let runner_yml = "build:\n  privileged: true\nimage:\n  repository: 127.0.0.1:9/acme/shop\n  tags: [\"build-{build-number}\"]\n";
    let (src, sha) = repo(&[("runner.yml", runner_yml)]);
    let url = src.path().display().to_string();

    // The same commit from a fork's pull request.
    let (status, fork_job) = deliver(
        &pool,
        "pull_request",
        "d-fork-1",
        &pr_payload("opened", ("eve/shop", &url, &sha), false),
        SECRET,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{fork_job}");
    let fork_id = fork_job["id"].as_str().unwrap().to_string();
    let fork = finished(&pool, &fork_id);
    let events = pool.log_events(&fork_id, None);
    let lines = log_lines(&events);
    assert_eq!(fork["state"], "succeeded", "{fork} {lines:?}");
    assert!(lines.iter().any(|l| l == "secret-absent"), "{lines:?}");
    assert!(lines.iter().any(|l| l == "docker=none"), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains(
            "branch=feature event=PULL_REQUEST_CREATED trigger=pr/12 head=refs/heads/feature base=refs/heads/main actor=777 version=pr/12"
        )),
        "{lines:?}"
    );
    let stages: Vec<&Value> = events.iter().filter(|e| e["event"] == "stage").collect();
    assert!(
        stages.is_empty(),
        "a fork's job ran release stages: {stages:?}"
    );

    // A push of the same commit to the repository itself is trusted: its build sees the
    // secret and runs the image stage (which fails here: no registry).
    let (status, push_job) = deliver(
        &pool,
        "push",
        "d-fork-push-1",
        &push_payload(&url, &sha),
        SECRET,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{push_job}");
    let push_id = push_job["id"].as_str().unwrap().to_string();
    finished(&pool, &push_id);
    let events = pool.log_events(&push_id, None);
    let lines = log_lines(&events);
    assert!(lines.iter().any(|l| l == "secret-present"), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l == "docker=unix:///var/run/docker.sock"),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains(SECRET_VALUE)),
        "the secret's value reached the log: {lines:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "stage" && e["stage"] == "image"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merged_pull_request_is_recorded_once_sqlite() {
    merged_once(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merged_pull_request_is_recorded_once_postgres() {
    merged_once(Some(crate::support_pg::database().await)).await;
}

async fn merged_once(database: Option<String>) {
    let name = project("hook-merged");
    let pool = server_on(&name, None, database);
    let body = pr_payload(
        "closed",
        (
            "acme/shop",
            "https://github.com/acme/shop.git",
            &"a".repeat(40),
        ),
        true,
    );
    let (status, answer) = deliver(&pool, "pull_request", "d-merged-1", &body, SECRET).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["recorded"], true, "{answer}");
    let (status, again) = deliver(&pool, "pull_request", "d-merged-1", &body, SECRET).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["recorded"], false, "{again}");
    // Closed without merging: nothing.
    let unmerged = pr_payload(
        "closed",
        (
            "acme/shop",
            "https://github.com/acme/shop.git",
            &"a".repeat(40),
        ),
        false,
    );
    let (status, _) = deliver(&pool, "pull_request", "d-closed-1", &unmerged, SECRET).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(jobs_of(&pool, &name).is_empty());

    let store = runner::pool::store::Store::open(&runner::pool::store::StoreConfig {
        url: pool.database.clone(),
    })
    .await
    .unwrap();
    let merged = store.merged_prs("acme/shop").await.unwrap();
    assert_eq!(
        merged,
        vec![runner::pool::store::MergedPr {
            repo: "acme/shop".into(),
            number: 12,
            merged_at: "2026-03-04T05:06:07Z".into(),
            merge_sha: Some("9".repeat(40)),
        }]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_status_api_never_holds_a_job_up() {
    let name = project("hook-noapi");
    // Statuses go to a port nobody listens on: every post fails and is retried.
    let pool = Pool::start_with(
        30,
        None,
        &[
            "--github-webhook-secret".to_string(),
            SECRET.to_string(),
            "--github-repo".to_string(),
            format!("acme/shop={name}"),
            "--github-api-url".to_string(),
            "http://127.0.0.1:9".to_string(),
            "--github-status-token".to_string(),
            STATUS_TOKEN.to_string(),
        ],
    );
    let (_secrets, _agent) = agent(&pool, &name);
    let (src, sha) = repo(&[]);
    let body = push_payload(&src.path().display().to_string(), &sha);
    let (status, job) = deliver(&pool, "push", "d-noapi-1", &body, SECRET).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let done = finished(&pool, job["id"].as_str().unwrap());
    assert_eq!(done["state"], "succeeded", "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_due_while_github_was_down_arrive_in_order_after_a_server_kill9_sqlite() {
    statuses_survive(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_due_while_github_was_down_arrive_in_order_after_a_server_kill9_postgres() {
    statuses_survive(Some(crate::support_pg::database().await)).await;
}

/// GitHub is down for a webhook job's whole run, the server is killed (`kill -9`) after
/// it, GitHub comes back on the same address and the server restarts: GitHub then gets
/// the job's statuses, each once, in order.
async fn statuses_survive(database: Option<String>) {
    // A free port for the stand-in, which is not running yet (outside the ephemeral
    // range, so no outgoing connection takes it meanwhile).
    let port = crate::pool_notify::listener_outside_ephemeral_range()
        .local_addr()
        .unwrap()
        .port();
    let name = project("hook-durable");
    let mut pool = Pool::start_with(
        30,
        database,
        &[
            "--github-webhook-secret".to_string(),
            SECRET.to_string(),
            "--github-repo".to_string(),
            format!("acme/shop={name}"),
            "--public-url".to_string(),
            PUBLIC.to_string(),
            "--github-api-url".to_string(),
            format!("http://127.0.0.1:{port}"),
            "--github-status-token".to_string(),
            STATUS_TOKEN.to_string(),
            "--notify-max-backoff-secs".to_string(),
            "1".to_string(),
        ],
    );
    let (_secrets, _agent) = agent(&pool, &name);
    let (src, sha) = repo(&[]);
    let body = push_payload(&src.path().display().to_string(), &sha);
    let (status, job) = deliver(&pool, "push", "d-durable-1", &body, SECRET).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let done = finished(&pool, &id);
    assert_eq!(done["state"], "succeeded", "{done}");

    pool.kill9_server();
    let github = GitHub::start_on(port);
    pool.restart_server();

    let key = format!("acme/shop@{sha}");
    let statuses = eventually("the final commit status after the restart", 60, || {
        let all = futures_block(github.get("/_statuses"));
        let list = all[&key].as_array().cloned().unwrap_or_default();
        (list.last().map(|s| s["state"] == "success") == Some(true)).then_some(list)
    });
    let seen: Vec<(String, String)> = statuses
        .iter()
        .map(|s| {
            (
                s["state"].as_str().unwrap_or_default().to_string(),
                s["description"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let want = [
        ("pending", "queued"),
        ("pending", "running"),
        ("success", "the build passed"),
    ]
    .map(|(a, b)| (a.to_string(), b.to_string()));
    assert_eq!(seen, want, "{statuses:?}");
    for s in &statuses {
        assert_eq!(s["context"], format!("runner/{name}"));
        assert_eq!(s["target_url"], format!("{PUBLIC}/jobs/{id}"));
    }
    let recorded = github.get("/_recorded").await;
    assert!(
        recorded
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == 201),
        "{recorded}"
    );
    // The restarted server counted the three posts, and nothing waits any more.
    let metrics = reqwest::get(format!("{}/metrics", pool.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "runner_notify_deliveries_total{receiver=\"github:statuses\",result=\"ok\"} 3\n"
        ),
        "{metrics}"
    );
    assert!(!metrics.contains("runner_notify_pending{"), "{metrics}");
    // A month on, the retention sweep deletes the delivered rows, their events and the
    // delivery id (in this dialect's SQL); the same delivery then makes a new job.
    let store = runner::pool::store::Store::open(&runner::pool::store::StoreConfig {
        url: pool.database.clone(),
    })
    .await
    .unwrap();
    let day = std::time::Duration::from_secs(24 * 3600);
    let month = runner::pool::store::now_ms() + 31 * day.as_millis() as i64;
    let pruned = store
        .prune(
            month,
            7 * day,
            30 * day,
            std::time::Duration::from_secs(3600),
        )
        .await
        .unwrap();
    assert_eq!(pruned.deliveries, 3, "{pruned:?}");
    assert_eq!(pruned.webhook_deliveries, 1, "{pruned:?}");
    assert!(pruned.events >= 3, "{pruned:?}");
    assert!(store.pending_deliveries().await.unwrap().is_empty());
    let (status, again) = deliver(&pool, "push", "d-durable-1", &body, SECRET).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
}
