//! Delivery metrics (DORA) against the real server: a scripted history through the real
//! API — signed GitHub deliveries to `/v1/webhooks/github` (pushes with their commits'
//! times, pull requests, the config repository's merges) and jobs claimed, logged and
//! completed over the agent protocol with the GitOps stage's pull request in the log —
//! gives the four figures, asserted exactly in `runner jobs stats --json` and `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support_pool::{project, Pool};
use reqwest::StatusCode;
use serde_json::{json, Value};

const SECRET: &str = "whsec-dora-5Tq8";
const HOUR: i64 = 3_600_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn rfc3339(ms: i64) -> String {
    runner::pool::store::rfc3339(ms)
}

fn ms(rfc3339: &str) -> i64 {
    runner::pool::store::parse_rfc3339_ms(rfc3339).unwrap()
}

/// A server taking acme/shop's webhooks as `project`.
fn server(project: &str, database: Option<String>) -> Pool {
    Pool::start_with(
        30,
        database,
        &[
            "--github-webhook-secret",
            SECRET,
            "--github-repo",
            &format!("acme/shop={project}"),
        ],
    )
}

async fn deliver(pool: &Pool, event: &str, delivery: &str, body: &Value) -> (StatusCode, Value) {
    let body = body.to_string();
    let sig = runner::pool::server::webhooks::signature::sign(SECRET.as_bytes(), body.as_bytes());
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/webhooks/github", pool.url))
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", delivery)
        .header("X-Hub-Signature-256", sig)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A push to acme/shop's `main` whose head commit was made at `commit_ms`: the job's id.
async fn push(pool: &Pool, n: u32, commit_ms: i64, message: &str) -> String {
    let sha = format!("{n:040x}");
    // GitHub sends seconds and the committer's offset.
    let t = time::OffsetDateTime::from_unix_timestamp(commit_ms / 1000)
        .unwrap()
        .to_offset(time::macros::offset!(+02:00));
    let timestamp = t
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let body = json!({
        "ref": "refs/heads/main", "before": format!("{:040x}", n + 1000), "after": sha,
        "repository": {"full_name": "acme/shop", "clone_url": "https://github.com/acme/shop.git",
                       "default_branch": "main"},
        "head_commit": {"id": sha, "timestamp": timestamp, "message": message},
        "sender": {"id": 1}
    });
    let (status, answer) = deliver(pool, "push", &format!("push-{n}"), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["id"].as_str().unwrap().to_string()
}

/// A pull request opened on acme/shop (its build is not the main line's): the job's id.
async fn pull_request_opened(pool: &Pool, n: i64) -> String {
    let side = |r: &str| {
        json!({"ref": r, "sha": "e".repeat(40),
        "repo": {"full_name": "acme/shop", "clone_url": "https://github.com/acme/shop.git"}})
    };
    let body = json!({
        "action": "opened", "number": n,
        "pull_request": {"merged": false, "head": side("topic"), "base": side("main")},
        "repository": {"full_name": "acme/shop", "clone_url": "https://github.com/acme/shop.git"},
        "sender": {"id": 1}
    });
    let (status, answer) = deliver(pool, "pull_request", &format!("pr-{n}"), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["id"].as_str().unwrap().to_string()
}

/// The config repository's pull request `n` merged at `merged_ms`.
async fn merged(pool: &Pool, n: i64, merged_ms: i64) {
    let side = |r: &str| {
        json!({"ref": r, "sha": "c".repeat(40),
        "repo": {"full_name": "acme/shop-config", "clone_url": "https://github.com/acme/shop-config.git"}})
    };
    let body = json!({
        "action": "closed", "number": n,
        "pull_request": {"merged": true, "merged_at": rfc3339(merged_ms),
                         "merge_commit_sha": "d".repeat(40),
                         "head": side(&format!("runner/bump-{n}")), "base": side("main")},
        "repository": {"full_name": "acme/shop-config",
                       "clone_url": "https://github.com/acme/shop-config.git"},
        "sender": {"id": 1}
    });
    let (status, answer) = deliver(pool, "pull_request", &format!("merge-{n}"), &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["recorded"], true, "{answer}");
}

/// Runs job `id` as an agent would report it: claims it, ships its events (with the
/// GitOps stage's pull request `pr`, if any), completes it. Its finish (ms).
async fn run_job(pool: &Pool, id: &str, ok: bool, pr: Option<i64>) -> i64 {
    let http = reqwest::Client::new();
    let call = |path: String, body: Value| {
        http.post(format!("{}{path}", pool.url))
            .bearer_auth(pool.agent_token())
            .header("runner-protocol", "1")
            .json(&body)
            .send()
    };
    let r = call(
        "/v1/agent/claim".into(),
        json!({"agent": "fake-agent", "labels": {}, "wait_secs": 5}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let a: Value = r.json().await.unwrap();
    assert_eq!(a["job_id"], id, "the job claimed is the one queued");
    let (attempt, lease) = (a["attempt"].as_u64().unwrap(), a["lease"].as_str().unwrap());
    let mut events = vec![
        json!({"event": "phase_started", "phase": "BUILD"}),
        json!({"event": "phase_ended", "phase": "BUILD",
               "status": if ok { "SUCCEEDED" } else { "FAILED" }, "duration_ms": 5}),
    ];
    if ok {
        events.push(json!({"event": "stage", "stage": "push", "ok": true, "message": "pushed",
            "detail": {"reference": "registry.example/shop:1", "digest": format!("sha256:{}", "f".repeat(64))}}));
    }
    if let Some(n) = pr {
        events.push(json!({"event": "stage", "stage": "gitops", "ok": true,
            "message": format!("GitOps: pull request https://github.com/acme/shop-config/pull/{n}"),
            "detail": {"status": "changed", "pull_request": {"number": n, "action": "created",
                "url": format!("https://github.com/Acme/shop-config/pull/{n}")}}}));
    }
    let data: String = events.iter().map(|e| format!("{e}\n")).collect();
    let base = format!("/v1/agent/jobs/{id}/{attempt}");
    let r = call(
        format!("{base}/log"),
        json!({"lease": lease, "seq": 0, "data": data}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = call(
        format!("{base}/complete"),
        json!({"lease": lease, "conclusion": if ok { "succeeded" } else { "failed" },
               "exit_code": if ok { 0 } else { 1 }, "log_chunks": 1}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["state"], if ok { "succeeded" } else { "failed" });
    ms(view["finished_at"].as_str().unwrap())
}

/// The first moment after `t` (ms) on this clock: a scripted time that is not in the
/// future when the server looks.
fn after(t: i64) -> i64 {
    loop {
        let now = now_ms();
        if now > t {
            return now;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// What a scripted history's figures are, by hand.
struct Scripted {
    /// When the script started (ms).
    t0: i64,
    /// The first deployment's merge, its lead time (ms).
    m1: i64,
    c1: i64,
    /// The fix's deployment (ms).
    m2: i64,
    lead: f64,
    restore: f64,
}

/// Scripts project `name`'s history on `pool`: a change deployed, a pull request's
/// failed build, a main-line failure, a fix deployed, and a merge nobody's job opened.
async fn script(pool: &Pool) -> Scripted {
    let t0 = now_ms();
    // Commits made 5 h, 4 h and 3 h ago (GitHub sends whole seconds).
    let (c1, c2, c3) = (
        (t0 - 5 * HOUR) / 1000 * 1000,
        (t0 - 4 * HOUR) / 1000 * 1000,
        (t0 - 3 * HOUR) / 1000 * 1000,
    );

    // 1. A change built; its GitOps pull request #101 merged: the first deployment.
    let j1 = push(pool, 1, c1, "add the basket").await;
    let f1 = run_job(pool, &j1, true, Some(101)).await;
    let m1 = after(f1);
    merged(pool, 101, m1).await;
    // 2. A pull request's build fails: not the main line's, so no failure.
    let side = pull_request_opened(pool, 7).await;
    run_job(pool, &side, false, None).await;
    // 3. The next change's build fails: the first deployment failed.
    let j2 = push(pool, 2, c2, "break the basket").await;
    let failure = run_job(pool, &j2, false, None).await;
    // 4. The fix is built and deployed through pull request #102: restored.
    let j3 = push(pool, 3, c3, "fix the basket").await;
    let f3 = run_job(pool, &j3, true, Some(102)).await;
    let m2 = after(f3.max(failure));
    merged(pool, 102, m2).await;
    // A pull request merged in the config repository that no job opened is no deployment.
    merged(pool, 103, after(m2)).await;
    after(m2);

    Scripted {
        t0,
        m1,
        c1,
        m2,
        lead: ((m1 - c1) as f64 + (m2 - c3) as f64) / 2.0 / 1000.0,
        restore: (m2 - failure) as f64 / 1000.0,
    }
}

async fn history(database: Option<String>) {
    let name = project("dora");
    let pool = server(&name, database);
    let Scripted {
        t0,
        m1,
        c1,
        m2,
        lead,
        restore,
    } = script(&pool).await;

    // `runner jobs stats --json` over a 2-day window ending an hour from now.
    let to = rfc3339(t0 + HOUR);
    let out = pool
        .cli()
        .args([
            "jobs",
            "stats",
            "--json",
            "--project",
            &name,
            "--window",
            "2d",
            "--to",
            &to,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "jobs stats: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["to"], to);
    assert_eq!(report["from"], rfc3339(t0 + HOUR - 48 * HOUR));
    assert_eq!(
        report["projects"],
        json!([{
            "project": name,
            "deployments": 2,
            "deployments_per_day": 1.0,
            "lead_time_seconds": lead,
            "changes": 2,
            "failed_deployments": 1,
            "change_failure_rate": 0.5,
            "time_to_restore_seconds": restore,
            "restored": 1,
            "unrestored": 0
        }]),
        "{report:#}"
    );

    // The same figures over the default window (30 days ending now) in /metrics.
    let text = reqwest::get(format!("{}/metrics", pool.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let gauge = |metric: &str| -> String {
        let prefix = format!("{metric}{{project=\"{name}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .to_string()
    };
    assert_eq!(gauge("runner_dora_deployments"), "2");
    assert_eq!(
        gauge("runner_dora_deployments_per_day"),
        (2.0_f64 / 30.0).to_string()
    );
    assert_eq!(gauge("runner_dora_lead_time_seconds"), lead.to_string());
    assert_eq!(gauge("runner_dora_failed_deployments"), "1");
    assert_eq!(gauge("runner_dora_change_failure_rate"), "0.5");
    assert_eq!(
        gauge("runner_dora_time_to_restore_seconds"),
        restore.to_string()
    );
    assert!(
        text.contains("runner_dora_window_seconds 2592000\n"),
        "{text}"
    );

    // A window that ends before the fix's deployment: one deployment, failed, not
    // restored yet.
    let out = pool
        .cli()
        .args([
            "jobs",
            "stats",
            "--json",
            "--project",
            &name,
            "--from",
            &rfc3339(t0 - HOUR),
            "--to",
            &rfc3339(m2),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &report["projects"][0];
    assert_eq!(p["deployments"], 1, "{report:#}");
    assert_eq!(p["change_failure_rate"], 1.0);
    assert_eq!(p["lead_time_seconds"], (m1 - c1) as f64 / 1000.0);
    assert_eq!(p["time_to_restore_seconds"], Value::Null);
    assert_eq!(p["unrestored"], 1);

    // The human table names the project and its figures.
    let out = pool
        .cli()
        .args([
            "jobs",
            "stats",
            "--project",
            &name,
            "--window",
            "2d",
            "--to",
            &to,
        ])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && table.contains(&name) && table.contains("50%"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_history_gives_the_four_figures_sqlite() {
    history(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_history_gives_the_four_figures_postgres() {
    history(Some(crate::support_pg::database().await)).await;
}

/// The web page's `/stats` in headless Chromium: the four charts render (SVG with bars,
/// coloured through SVG attributes under the page's CSP), with JavaScript on and off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_browser_shows_the_delivery_charts() {
    use crate::pool_web_browser::Chromium;
    use crate::support_pool::eventually;
    let name = project("dora-web");
    let pool = server(&name, None);
    script(&pool).await;
    tokio::task::block_in_place(|| {
        let chrome = Chromium::start();
        let mut cdp = chrome.page();
        cdp.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
        );
        let page = format!("/stats?project={name}&window=7d");
        cdp.navigate(&format!("{}{page}", pool.url));
        eventually("the sign-in form", 30, || {
            (cdp.eval("location.pathname") == "/signin"
                && cdp.eval("!!document.querySelector('form.signin')") == true)
                .then_some(())
        });
        cdp.eval(&format!(
            "document.querySelector('input[name=token]').value = {}; \
             document.querySelector('form.signin').submit(); 1",
            json!(pool.submit_token())
        ));
        eventually("the stats page after signing in", 30, || {
            (cdp.eval("location.pathname + location.search") == page.as_str()
                && cdp.eval("document.readyState") == "complete")
                .then_some(())
        });
        // Four charts, each drawn: a box of its size, bars that have a height.
        assert_eq!(cdp.eval("document.querySelectorAll('svg.chart').length"), 4);
        for class in ["deployments", "lead-time", "failure-rate", "restore"] {
            let drawn = cdp.eval(&format!(
                "(() => {{ const s = document.querySelector('svg.chart.{class}'); \
                 const r = s.getBoundingClientRect(); \
                 const bars = [...s.querySelectorAll('rect.bar')]; \
                 return r.width > 100 && r.height > 50 && bars.length > 0 && \
                 bars.some(b => b.getBBox().height > 1); }})()"
            ));
            assert_eq!(drawn, true, "chart {class} is not drawn");
        }
        // A bar's colour is its SVG attribute (an inline style would break the CSP).
        assert_eq!(
            cdp.eval(
                "getComputedStyle(document.querySelector('svg.chart.deployments rect.bar')).fill"
            ),
            "rgb(45, 164, 78)"
        );
        let row = cdp.eval("document.querySelector('tr.project').textContent");
        let row = row.as_str().unwrap_or_default();
        assert!(row.contains(&name) && row.contains("50%"), "{row}");
        cdp.screenshot("stats-page.png");

        // With JavaScript off the page is the same HTML.
        cdp.call(
            "Emulation.setScriptExecutionDisabled",
            json!({"value": true}),
        );
        cdp.navigate(&format!("{}{page}", pool.url));
        let html = eventually("the page without scripts", 30, || {
            let h = cdp.html()?;
            h.contains("svg class=\"chart restore\"").then_some(h)
        });
        assert_eq!(html.matches("<svg class=\"chart ").count(), 4, "{html}");
        assert!(html.contains("<a href=\"/stats\">Delivery</a>"), "{html}");
    });
}

fn git(dir: &std::path::Path, date_ms: i64, args: &[&str]) {
    let date = rfc3339(date_ms / 1000 * 1000);
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_AUTHOR_DATE", &date)
        .env("GIT_COMMITTER_DATE", &date)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `runner submit` of a git work tree sends its commit's time (the lead time) and whether
/// it is a revert (a failure of the deployment before it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_submit_reads_the_commit_time_and_reverts_from_git() {
    let name = project("dora-submit");
    let pool = server(&name, None);
    let t0 = now_ms();
    let (c1, c2) = ((t0 - 2 * HOUR) / 1000 * 1000, (t0 - HOUR) / 1000 * 1000);
    let src = crate::support_pool::source(&[(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo hi\n",
    )]);
    git(src.path(), c1, &["init", "-q", "-b", "main"]);
    git(src.path(), c1, &["add", "-A"]);
    git(src.path(), c1, &["commit", "-qm", "add the basket"]);
    let j1 = pool.submit(src.path(), &name, &[]);
    let f1 = run_job(&pool, &j1, true, Some(201)).await;
    let m1 = after(f1);
    merged(&pool, 201, m1).await;
    git(
        src.path(),
        c2,
        &[
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "Revert \"add the basket\"",
        ],
    );
    let j2 = pool.submit(src.path(), &name, &[]);
    run_job(&pool, &j2, true, None).await;
    after(m1);

    let out = pool
        .cli()
        .args(["jobs", "stats", "--json", "--project", &name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &report["projects"][0];
    assert_eq!(p["deployments"], 1, "{report:#}");
    assert_eq!(
        p["lead_time_seconds"],
        (m1 - c1) as f64 / 1000.0,
        "{report:#}"
    );
    assert_eq!(
        p["change_failure_rate"], 1.0,
        "the revert failed the deployment"
    );
    assert_eq!(p["unrestored"], 1);
}
