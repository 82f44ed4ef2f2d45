//! `runner server` spoken to over its wire protocol (reqwest), as a real process, on
//! SQLite and on PostgreSQL (a throwaway cluster, see support_pg.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support_pg;
use reqwest::{Method, StatusCode};
use runner::pool::archive;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
enum Db {
    Sqlite,
    Pg,
}

/// One store (a SQLite file or a PostgreSQL database) plus blobs and a data dir.
struct Env {
    _dir: tempfile::TempDir,
    db: String,
    blobs: PathBuf,
    data: PathBuf,
}

impl Env {
    async fn new(db: Db) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let db = match db {
            Db::Sqlite => dir.path().join("jobs.db").display().to_string(),
            Db::Pg => support_pg::database().await,
        };
        let blobs = dir.path().join("blobs");
        let data = dir.path().join("data");
        Env {
            _dir: dir,
            db,
            blobs,
            data,
        }
    }

    fn runner(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
        c.arg("--data-dir").arg(&self.data);
        c.env_remove("RUNNER_DATABASE_URL");
        c
    }

    fn token(&self, role: &str) -> String {
        let out = self
            .runner()
            .args([
                "server",
                "token",
                "create",
                "--role",
                role,
                "--database",
                &self.db,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        stdout.lines().last().unwrap().trim().to_string()
    }

    fn server(&self, extra: &[&str]) -> Server {
        let mut cmd = self.runner();
        cmd.arg("server").arg("--blobs").arg(&self.blobs);
        self.start(cmd, extra)
    }

    /// `runner server` on this store with `cmd`'s blob settings.
    fn start(&self, mut cmd: Command, extra: &[&str]) -> Server {
        let mut child = cmd
            .args(["--listen", "127.0.0.1:0", "--database", &self.db])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        Server { child, url }
    }
}

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A protocol client.
struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

struct Resp {
    status: StatusCode,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl Api {
    fn new(server: &Server, token: Option<&str>) -> Api {
        Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            base: server.url.clone(),
            token: token.map(str::to_string),
        }
    }

    async fn raw(&self, method: Method, path: &str, version: Option<&str>, body: Vec<u8>) -> Resp {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(v) = version {
            r = r.header("runner-protocol", v);
        }
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        let resp = r.body(body).send().await.unwrap();
        Resp {
            status: resp.status(),
            body: resp.bytes().await.unwrap().to_vec(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let body = body
            .map(|b| serde_json::to_vec(&b).unwrap())
            .unwrap_or_default();
        self.raw(method, path, Some("1"), body).await
    }
    async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(body)).await
    }
    async fn put(&self, path: &str, body: Vec<u8>) -> Resp {
        self.raw(Method::PUT, path, Some("1"), body).await
    }
}

const BUILDSPEC: &str = "version: 0.2\nphases:\n  build:\n    commands:\n      - echo hi\n";

/// Packs a source tree with this buildspec and uploads it; its sha256.
async fn upload_source(api: &Api, buildspec: &str) -> String {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("buildspec.yml"), buildspec).unwrap();
    let packed = archive::pack(src.path(), archive::Limits::default()).unwrap();
    let r = api
        .put(&format!("/v1/blobs/{}", packed.sha256), packed.bytes)
        .await;
    assert!(
        r.status == StatusCode::CREATED || r.status == StatusCode::OK,
        "{}",
        r.status
    );
    packed.sha256
}

async fn submit(api: &Api, sha: &str, extra: Value) -> String {
    let mut body = json!({"source": {"kind": "archive", "sha256": sha}});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    let r = api.post("/v1/jobs", body).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()["id"].as_str().unwrap().to_string()
}

async fn claim(api: &Api, agent: &str, wait: u64) -> Option<Value> {
    let r = api
        .post(
            "/v1/agent/claim",
            json!({"agent": agent, "labels": {}, "wait_secs": wait}),
        )
        .await;
    match r.status {
        StatusCode::OK => Some(r.json()),
        StatusCode::NO_CONTENT => None,
        s => panic!("claim: {s} {}", String::from_utf8_lossy(&r.body)),
    }
}

fn attempt_path(a: &Value, what: &str) -> String {
    format!(
        "/v1/agent/jobs/{}/{}/{what}",
        a["job_id"].as_str().unwrap(),
        a["attempt"]
    )
}

async fn job(api: &Api, id: &str) -> Value {
    let r = api.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    r.json()
}

/// Polls until `f` holds (the reaper runs every second); panics after a minute.
async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < Duration::from_secs(60), "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn blob_files(dir: &Path) -> usize {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .count()
}

// ---------------------------------------------------------------- round trip

async fn round_trip(db: Db) {
    let env = Env::new(db).await;
    let (sub_t, agent_t) = (env.token("submit"), env.token("agent"));
    let server = env.server(&[]);
    let user = Api::new(&server, Some(&sub_t));
    let agent = Api::new(&server, Some(&agent_t));

    let sha = upload_source(&user, BUILDSPEC).await;
    assert_eq!(
        user.raw(Method::HEAD, &format!("/v1/blobs/{sha}"), Some("1"), vec![])
            .await
            .status,
        StatusCode::OK
    );
    let id = submit(&user, &sha, json!({"env": ["A=1"], "project": "demo"})).await;
    assert_eq!(job(&user, &id).await["state"], "queued");

    let a = claim(&agent, "agent-1", 5).await.expect("a job");
    assert_eq!(a["job_id"], id.as_str());
    assert_eq!(a["attempt"], 1);
    assert_eq!(a["env"], json!(["A=1"]));
    assert_eq!(a["project"], "demo");
    let lease = a["lease"].as_str().unwrap().to_string();
    // The source is there for the agent.
    let src = agent.get(&format!("/v1/agent/blobs/{sha}")).await;
    assert_eq!(archive::sha256_hex(&src.body), sha);

    let hb = agent
        .post(&attempt_path(&a, "heartbeat"), json!({"lease": lease}))
        .await;
    assert_eq!(hb.status, StatusCode::OK);
    assert_eq!(hb.json()["cancel"], false);
    for (seq, data) in [
        (0, "line one\n"),
        (1, "line two\n"),
        (1, "line two again\n"),
    ] {
        let r = agent
            .post(
                &attempt_path(&a, "log"),
                json!({"lease": lease, "seq": seq, "data": data}),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    }
    let r = agent
        .put(
            &format!(
                "{}?lease={lease}",
                attempt_path(&a, "artifacts/dist/out.txt")
            ),
            b"artifact".to_vec(),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::NO_CONTENT,
        "{}",
        String::from_utf8_lossy(&r.body)
    );

    let done = json!({"lease": lease, "conclusion": "succeeded", "exit_code": 0, "log_chunks": 2});
    let c1 = agent
        .post(&attempt_path(&a, "complete"), done.clone())
        .await;
    assert_eq!(c1.status, StatusCode::OK);
    assert_eq!(c1.json()["state"], "succeeded");
    // Idempotent: the same completion again is answered the same, nothing changes.
    let c2 = agent.post(&attempt_path(&a, "complete"), done).await;
    assert_eq!(c2.status, StatusCode::OK);
    assert_eq!(c2.json(), c1.json());
    // A different completion of the same attempt is refused.
    let c3 = agent
        .post(
            &attempt_path(&a, "complete"),
            json!({"lease": lease, "conclusion": "failed", "exit_code": 1, "log_chunks": 2}),
        )
        .await;
    assert_eq!(c3.status, StatusCode::CONFLICT);

    let view = job(&user, &id).await;
    assert_eq!(view["state"], "succeeded");
    assert_eq!(view["exit_code"], 0);
    assert_eq!(view["attempts"][0]["outcome"], "succeeded");
    let log = user.get(&format!("/v1/jobs/{id}/log?after=0")).await.json();
    assert_eq!(
        log["chunks"],
        json!([{"seq": 0, "data": "line one\n"}, {"seq": 1, "data": "line two\n"}])
    );
    assert_eq!(log["complete"], true);
    assert_eq!(log["next"], 2);
    let arts = user.get(&format!("/v1/jobs/{id}/artifacts")).await.json();
    assert_eq!(arts["artifacts"][0]["name"], "dist/out.txt");
    let bytes = user
        .get(&format!("/v1/jobs/{id}/artifacts/dist/out.txt"))
        .await;
    assert_eq!(bytes.body, b"artifact");

    let metrics = String::from_utf8(user.get("/metrics").await.body).unwrap();
    assert!(
        metrics.contains("runner_pickup_latency_seconds_count 1"),
        "{metrics}"
    );
    assert!(metrics.contains("runner_jobs_running 0"), "{metrics}");
    assert!(metrics.contains("runner_agents_online 1"), "{metrics}");
    assert_eq!(user.get("/healthz").await.body, b"ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_server_round_trip_sqlite() {
    round_trip(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_server_round_trip_postgres() {
    round_trip(Db::Pg).await;
}

// ---------------------------------------------------------------- leases and fencing

async fn lease_expiry(db: Db) {
    let env = Env::new(db).await;
    let (sub_t, agent_t) = (env.token("submit"), env.token("agent"));
    let server = env.server(&["--lease-secs", "2"]);
    let user = Api::new(&server, Some(&sub_t));
    let agent = Api::new(&server, Some(&agent_t));
    let sha = upload_source(&user, BUILDSPEC).await;
    let id = submit(&user, &sha, json!({})).await;

    let zombie = claim(&agent, "zombie", 5).await.unwrap();
    let zlease = zombie["lease"].as_str().unwrap().to_string();
    let r = agent
        .post(
            &attempt_path(&zombie, "log"),
            json!({"lease": zlease, "seq": 0, "data": "zombie 0\n"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // No heartbeat: the lease expires, the job is queued again, attempt 1 is `lost`.
    until("attempt 1 lost", async || {
        let v = job(&user, &id).await;
        v["state"] == "queued" && v["attempts"][0]["outcome"] == "lost"
    })
    .await;
    let second = claim(&agent, "healthy", 5).await.unwrap();
    assert_eq!(second["attempt"], 2);
    let lease2 = second["lease"].as_str().unwrap().to_string();

    // The zombie's late calls are refused and change nothing.
    let hb = agent
        .post(
            &attempt_path(&zombie, "heartbeat"),
            json!({"lease": zlease}),
        )
        .await;
    assert_eq!(hb.status, StatusCode::CONFLICT);
    let log = agent
        .post(
            &attempt_path(&zombie, "log"),
            json!({"lease": zlease, "seq": 1, "data": "late\n"}),
        )
        .await;
    assert_eq!(log.status, StatusCode::CONFLICT);
    let art = agent
        .put(
            &format!(
                "{}?lease={zlease}",
                attempt_path(&zombie, "artifacts/z.txt")
            ),
            b"zombie".to_vec(),
        )
        .await;
    assert_eq!(art.status, StatusCode::CONFLICT);
    let done = agent
        .post(
            &attempt_path(&zombie, "complete"),
            json!({"lease": zlease, "conclusion": "succeeded", "exit_code": 0, "log_chunks": 1}),
        )
        .await;
    assert_eq!(done.status, StatusCode::CONFLICT);
    // Even with the current attempt's number, the zombie's lease is not the current one.
    let forged = agent
        .post(
            &attempt_path(&second, "complete"),
            json!({"lease": zlease, "conclusion": "succeeded", "exit_code": 0, "log_chunks": 0}),
        )
        .await;
    assert_eq!(forged.status, StatusCode::CONFLICT);

    let v = job(&user, &id).await;
    assert_eq!(v["state"], "running");
    assert_eq!(v["attempt"], 2);
    let old_log = user
        .get(&format!("/v1/jobs/{id}/log?attempt=1"))
        .await
        .json();
    assert_eq!(old_log["chunks"], json!([{"seq": 0, "data": "zombie 0\n"}]));
    let arts = user.get(&format!("/v1/jobs/{id}/artifacts")).await.json();
    assert_eq!(arts["artifacts"], json!([]));
    assert_eq!(blob_files(&env.blobs), 1, "only the source is stored");

    // The healthy agent finishes.
    let hb = agent
        .post(
            &attempt_path(&second, "heartbeat"),
            json!({"lease": lease2}),
        )
        .await;
    assert_eq!(hb.status, StatusCode::OK);
    let fin = agent
        .post(
            &attempt_path(&second, "complete"),
            json!({"lease": lease2, "conclusion": "failed", "exit_code": 1, "log_chunks": 0}),
        )
        .await;
    assert_eq!(fin.status, StatusCode::OK);
    let v = job(&user, &id).await;
    assert_eq!(v["state"], "failed");
    assert_eq!(v["attempts"][1]["outcome"], "failed");

    // Past max_attempts a vanishing agent fails the job, saying why (it confirmed its
    // claim, so the job may have started there).
    let id2 = submit(&user, &sha, json!({"max_attempts": 1})).await;
    let z2 = claim(&agent, "zombie", 5).await.unwrap();
    let hb = agent
        .post(
            &attempt_path(&z2, "heartbeat"),
            json!({"lease": z2["lease"].as_str().unwrap()}),
        )
        .await;
    assert_eq!(hb.status, StatusCode::OK);
    until("agent lost once", async || {
        job(&user, &id2).await["state"] == "error"
    })
    .await;
    assert_eq!(job(&user, &id2).await["message"], "agent lost 1 time");
    let metrics = String::from_utf8(user.get("/metrics").await.body).unwrap();
    assert!(
        metrics.contains("runner_lease_expiries_total 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_server_lease_expiry_fences_the_zombie_sqlite() {
    lease_expiry(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_server_lease_expiry_fences_the_zombie_postgres() {
    lease_expiry(Db::Pg).await;
}

// ---------------------------------------------------------------- unconfirmed claims

/// A claim whose answer reached no running agent (it stopped as the answer came) is never
/// confirmed: the job goes back to the queue within the short unconfirmed lease (10 s, not
/// the 30 s lease), the attempt says `unconfirmed`, and it does not count against
/// `max_attempts` (1 here: counted, the job would fail as "agent lost").
async fn unconfirmed_claim(db: Db) {
    let env = Env::new(db).await;
    let (sub_t, agent_t) = (env.token("submit"), env.token("agent"));
    let server = env.server(&[]);
    let user = Api::new(&server, Some(&sub_t));
    let agent = Api::new(&server, Some(&agent_t));
    let sha = upload_source(&user, BUILDSPEC).await;
    let id = submit(&user, &sha, json!({"max_attempts": 1})).await;

    let ghost = claim(&agent, "ghost", 5).await.unwrap();
    assert_eq!(ghost["confirm_secs"], 10, "{ghost}");
    let glease = ghost["lease"].as_str().unwrap().to_string();
    until("the unconfirmed claim to be queued again", async || {
        let v = job(&user, &id).await;
        assert_ne!(
            v["state"], "error",
            "an unconfirmed claim counted as lost: {v}"
        );
        v["state"] == "queued"
    })
    .await;
    let v = job(&user, &id).await;
    assert_eq!(v["attempts"][0]["agent"], "ghost", "{v}");
    assert_eq!(v["attempts"][0]["outcome"], "unconfirmed", "{v}");
    // The ghost's lease is gone.
    let hb = agent
        .post(&attempt_path(&ghost, "heartbeat"), json!({"lease": glease}))
        .await;
    assert_eq!(hb.status, StatusCode::CONFLICT);

    // The next agent confirms, and its lease then lasts past the confirm window.
    let real = claim(&agent, "real", 5).await.unwrap();
    assert_eq!(real["attempt"], 2);
    let lease = real["lease"].as_str().unwrap().to_string();
    let hb = agent
        .post(&attempt_path(&real, "heartbeat"), json!({"lease": lease}))
        .await;
    assert_eq!(hb.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let fin = agent
        .post(
            &attempt_path(&real, "complete"),
            json!({"lease": lease, "conclusion": "succeeded", "exit_code": 0, "log_chunks": 0}),
        )
        .await;
    assert_eq!(
        fin.status,
        StatusCode::OK,
        "a confirmed claim kept its lease"
    );
    let v = job(&user, &id).await;
    assert_eq!(v["state"], "succeeded", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_server_an_unconfirmed_claim_is_queued_again_soon_sqlite() {
    unconfirmed_claim(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_server_an_unconfirmed_claim_is_queued_again_soon_postgres() {
    unconfirmed_claim(Db::Pg).await;
}

// ---------------------------------------------------------------- release, cancel, retry

async fn release_cancel_retry(db: Db) {
    let env = Env::new(db).await;
    let (sub_t, agent_t) = (env.token("submit"), env.token("agent"));
    let server = env.server(&[]);
    let user = Api::new(&server, Some(&sub_t));
    let agent = Api::new(&server, Some(&agent_t));
    let sha = upload_source(&user, BUILDSPEC).await;
    let id = submit(&user, &sha, json!({"max_attempts": 1})).await;
    let a = claim(&agent, "a", 5).await.unwrap();
    let lease = a["lease"].as_str().unwrap().to_string();
    let r = agent
        .post(&attempt_path(&a, "release"), json!({"lease": lease}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let v = job(&user, &id).await;
    assert_eq!(v["state"], "queued");
    assert_eq!(v["attempts"][0]["outcome"], "released");
    // A release does not count against max_attempts (1): the job runs again.
    let b = claim(&agent, "b", 5).await.unwrap();
    assert_eq!(b["attempt"], 2);
    let lease_b = b["lease"].as_str().unwrap().to_string();
    // Cancel reaches the running attempt through watch and heartbeat.
    let watcher = {
        let agent = Api::new(&server, Some(&agent_t));
        let path = format!("{}?lease={lease_b}&wait=20", attempt_path(&b, "watch"));
        tokio::spawn(async move { agent.get(&path).await.json() })
    };
    let c = user.post(&format!("/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(c.status, StatusCode::OK);
    assert_eq!(c.json()["cancel_requested"], true);
    assert_eq!(watcher.await.unwrap()["cancel"], true);
    let hb = agent
        .post(&attempt_path(&b, "heartbeat"), json!({"lease": lease_b}))
        .await;
    assert_eq!(hb.json()["cancel"], true);
    let fin = agent
        .post(
            &attempt_path(&b, "complete"),
            json!({"lease": lease_b, "conclusion": "cancelled", "exit_code": 130, "log_chunks": 0}),
        )
        .await;
    assert_eq!(fin.json()["state"], "cancelled");
    // Retry queues it again; attempt 3 follows.
    let r = user.post(&format!("/v1/jobs/{id}/retry"), json!({})).await;
    assert_eq!(r.json()["state"], "queued");
    assert_eq!(claim(&agent, "c", 5).await.unwrap()["attempt"], 3);
    let r = user.post(&format!("/v1/jobs/{id}/retry"), json!({})).await;
    assert_eq!(
        r.status,
        StatusCode::CONFLICT,
        "a running job cannot be retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_server_release_cancel_retry_sqlite() {
    release_cancel_retry(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_server_release_cancel_retry_postgres() {
    release_cancel_retry(Db::Pg).await;
}

// ---------------------------------------------------------------- restart after kill -9

async fn restart(db: Db) {
    let env = Env::new(db).await;
    let (sub_t, agent_t) = (env.token("submit"), env.token("agent"));
    let mut server = env.server(&[]);
    let (running, queued, lease, a) = {
        let user = Api::new(&server, Some(&sub_t));
        let agent = Api::new(&server, Some(&agent_t));
        let sha = upload_source(&user, BUILDSPEC).await;
        let running = submit(&user, &sha, json!({})).await;
        let queued = submit(&user, &sha, json!({})).await;
        let a = claim(&agent, "a", 5).await.unwrap();
        assert_eq!(a["job_id"], running.as_str());
        let lease = a["lease"].as_str().unwrap().to_string();
        let r = agent
            .post(
                &attempt_path(&a, "log"),
                json!({"lease": lease, "seq": 0, "data": "before\n"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        (running, queued, lease, a)
    };
    server.kill9();
    let server = env.server(&[]);
    let user = Api::new(&server, Some(&sub_t));
    let agent = Api::new(&server, Some(&agent_t));
    assert_eq!(job(&user, &running).await["state"], "running");
    assert_eq!(job(&user, &queued).await["state"], "queued");
    // The running attempt carries on under its lease.
    let hb = agent
        .post(&attempt_path(&a, "heartbeat"), json!({"lease": lease}))
        .await;
    assert_eq!(hb.status, StatusCode::OK);
    let r = agent
        .post(
            &attempt_path(&a, "log"),
            json!({"lease": lease, "seq": 1, "data": "after\n"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let fin = agent
        .post(
            &attempt_path(&a, "complete"),
            json!({"lease": lease, "conclusion": "succeeded", "exit_code": 0, "log_chunks": 2}),
        )
        .await;
    assert_eq!(fin.status, StatusCode::OK);
    let log = user.get(&format!("/v1/jobs/{running}/log")).await.json();
    assert_eq!(log["chunks"].as_array().unwrap().len(), 2);
    let next = claim(&agent, "b", 5).await.unwrap();
    assert_eq!(next["job_id"], queued.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_server_kill9_restart_keeps_jobs_sqlite() {
    restart(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_server_kill9_restart_keeps_jobs_postgres() {
    restart(Db::Pg).await;
}

// ---------------------------------------------------------------- replicas

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_server_replicas_wake_each_other_postgres() {
    let env = Env::new(Db::Pg).await;
    let (sub_t, agent_t) = (env.token("submit"), env.token("agent"));
    let a = env.server(&[]);
    let b = env.server(&[]);
    let user_a = Api::new(&a, Some(&sub_t));
    let sha = upload_source(&user_a, BUILDSPEC).await;
    // An agent long-polls replica B…
    let waiting = {
        let agent_b = Api::new(&b, Some(&agent_t));
        tokio::spawn(async move { claim(&agent_b, "on-b", 25).await })
    };
    let probe = Api::new(&b, None);
    until("the claim waits on B", async || {
        String::from_utf8(probe.get("/metrics").await.body)
            .unwrap()
            .contains("runner_claims_waiting 1")
    })
    .await;
    // …and a job submitted to replica A wakes it (B never polls: without NOTIFY the
    // claim would answer 204 after its 25 s).
    let id = submit(&user_a, &sha, json!({})).await;
    let got = waiting.await.unwrap().expect("B's agent got the job");
    assert_eq!(got["job_id"], id.as_str());
}

// ---------------------------------------------------------------- auth and bad input

async fn refusals(db: Db) {
    let env = Env::new(db).await;
    let (sub_t, agent_t) = (env.token("submit"), env.token("agent"));
    let server = env.server(&["--blob-limit-mib", "1"]);
    let user = Api::new(&server, Some(&sub_t));
    let agent = Api::new(&server, Some(&agent_t));
    let anon = Api::new(&server, None);
    let forged = Api::new(&server, Some("rnr_not-a-token"));
    let git = json!({"source": {"kind": "git", "url": "https://example.invalid/r.git", "revision": "main"}});

    // Roles.
    assert_eq!(
        agent.post("/v1/jobs", git.clone()).await.status,
        StatusCode::FORBIDDEN
    );
    let claim_body = json!({"agent": "x", "labels": {}, "wait_secs": 0});
    assert_eq!(
        user.post("/v1/agent/claim", claim_body.clone())
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        anon.post("/v1/jobs", git.clone()).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        forged.get("/v1/jobs").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        anon.post("/v1/agent/claim", claim_body).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Protocol version and JSON.
    let v2 = user.raw(Method::GET, "/v1/jobs", Some("2"), vec![]).await;
    assert_eq!(v2.status, StatusCode::BAD_REQUEST);
    assert!(v2.json()["error"].as_str().unwrap().contains("version 1"));
    assert_eq!(
        user.raw(Method::GET, "/v1/jobs", None, vec![]).await.status,
        StatusCode::BAD_REQUEST
    );
    let bad = user
        .raw(
            Method::POST,
            "/v1/jobs",
            Some("1"),
            b"{\"source\":".to_vec(),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.json()["error"]
        .as_str()
        .unwrap()
        .contains("malformed JSON"));

    // Unknown jobs.
    assert_eq!(
        user.get("/v1/jobs/nope").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        user.post("/v1/jobs/nope/cancel", json!({})).await.status,
        StatusCode::NOT_FOUND
    );
    let hb = agent
        .post("/v1/agent/jobs/nope/1/heartbeat", json!({"lease": "x"}))
        .await;
    assert_eq!(hb.status, StatusCode::NOT_FOUND);

    // An archive with a `..` entry is refused before it is stored.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.as_old_mut().name[..7].copy_from_slice(b"../evil");
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    let evil = zstd::encode_all(b.into_inner().unwrap().as_slice(), 3).unwrap();
    let evil_sha = archive::sha256_hex(&evil);
    let r = user.put(&format!("/v1/blobs/{evil_sha}"), evil).await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(r.json()["error"].as_str().unwrap().contains("../evil"));
    assert_eq!(
        user.raw(
            Method::HEAD,
            &format!("/v1/blobs/{evil_sha}"),
            Some("1"),
            vec![]
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(blob_files(&env.blobs), 0);
    // A body that does not match its name.
    let r = user
        .put(&format!("/v1/blobs/{}", "0".repeat(64)), b"x".to_vec())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // An invalid buildspec is refused at submit with file:line:col diagnostics.
    let sha = upload_source(
        &user,
        "version: 0.2\nphases:\n  build:\n    on-failure: SOMETIMES\n    commands:\n      - echo hi\n",
    )
    .await;
    let r = user
        .post(
            "/v1/jobs",
            json!({"source": {"kind": "archive", "sha256": sha}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let diags = r.json()["diagnostics"].clone();
    let first = diags[0].as_str().unwrap_or_default().to_string();
    assert!(
        first.starts_with("buildspec.yml:4:17: error: phases.build.on-failure"),
        "{diags}"
    );
    // A source that was never uploaded.
    let r = user
        .post(
            "/v1/jobs",
            json!({"source": {"kind": "archive", "sha256": "a".repeat(64)}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Oversize bodies.
    let big = vec![0u8; 2 * 1024 * 1024];
    let r = user
        .http
        .put(format!(
            "{}/v1/blobs/{}",
            user.base,
            archive::sha256_hex(&big)
        ))
        .header("runner-protocol", "1")
        .bearer_auth(&sub_t)
        .body(big)
        .send()
        .await;
    refused_mid_upload(r);
    // Without a Content-Length (chunked), the cap holds while the upload streams in, and
    // its temporary file is gone.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..32).map(|_| Ok(vec![7u8; 64 * 1024])).collect();
    let r = user
        .http
        .put(format!("{}/v1/blobs/{}", user.base, "b".repeat(64)))
        .header("runner-protocol", "1")
        .bearer_auth(&sub_t)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await;
    refused_mid_upload(r);
    assert_eq!(blob_files(&env.blobs.join(".incoming")), 0);
    let huge = json!({"source": {"kind": "git", "url": "u", "revision": "r"}, "env": ["A=".to_string() + &"x".repeat(1024 * 1024 + 1)]});
    assert_eq!(
        user.post("/v1/jobs", huge).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    // None of it left a job behind.
    let jobs = user.get("/v1/jobs").await.json();
    assert_eq!(jobs["jobs"], json!([]));
    assert_eq!(user.get("/healthz").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_server_refuses_bad_input_and_wrong_roles_sqlite() {
    refusals(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_server_refuses_bad_input_and_wrong_roles_postgres() {
    refusals(Db::Pg).await;
}

// ---------------------------------------------------------------- TLS

/// A self-signed certificate for 127.0.0.1 (an end-entity certificate the client trusts
/// as its only root) and its key, made by `openssl req -x509`.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let conf = dir.join("openssl.cnf");
    std::fs::write(
        &conf,
        "[req]\ndistinguished_name = dn\nx509_extensions = ext\nprompt = no\n\
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
            "-nodes",
            "-days",
            "2",
            "-config",
        ])
        .arg(&conf)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (needed for the TLS test)");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_server_serves_tls_with_the_given_certificate() {
    let env = Env::new(Db::Sqlite).await;
    let sub_t = env.token("submit");
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path());
    let server = env.server(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let https = server.url.clone();
    assert!(https.starts_with("https://127.0.0.1:"), "{https}");

    // A client trusting only that certificate: /healthz and an authenticated /v1/jobs.
    let pem = std::fs::read(&cert).unwrap();
    let trusting = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let api = Api {
        http: trusting.clone(),
        base: https.clone(),
        token: Some(sub_t.clone()),
    };
    assert_eq!(api.get("/healthz").await.body, b"ok");
    let jobs = api.get("/v1/jobs").await;
    assert_eq!(jobs.status, StatusCode::OK);
    assert_eq!(jobs.json()["jobs"], json!([]));
    let anon = Api {
        http: trusting,
        base: https.clone(),
        token: None,
    };
    assert_eq!(anon.get("/v1/jobs").await.status, StatusCode::UNAUTHORIZED);

    // Plain HTTP on the same port gets no answer.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let http = https.replacen("https://", "http://", 1);
    let refused = plain.get(format!("{http}/healthz")).send().await;
    assert!(
        refused.is_err(),
        "plain HTTP was answered: {:?}",
        refused.map(|r| r.status())
    );
    // Nor does a client that does not trust the certificate.
    let untrusting = plain.get(format!("{https}/healthz")).send().await;
    assert!(untrusting.is_err(), "an untrusted certificate was accepted");
}

// ---------------------------------------------------------------- log long-poll

/// `runner_followers_waiting` of the server's `/metrics`.
async fn followers(probe: &Api) -> String {
    let text = String::from_utf8(probe.get("/metrics").await.body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("runner_followers_waiting "))
        .unwrap_or("?")
        .to_string()
}

async fn log_follow(db: Db) {
    let env = Env::new(db).await;
    let (sub_t, agent_t) = (env.token("submit"), env.token("agent"));
    let server = env.server(&[]);
    let user = Api::new(&server, Some(&sub_t));
    let agent = Api::new(&server, Some(&agent_t));
    let probe = Api::new(&server, None);
    let sha = upload_source(&user, BUILDSPEC).await;
    let id = submit(&user, &sha, json!({})).await;
    let a = claim(&agent, "a", 5).await.unwrap();
    let lease = a["lease"].as_str().unwrap().to_string();
    // A follower's read is held for up to 30 s by the server; its client gives up after
    // 20 s, so only a wake-up by the append (or the end) can answer it in time.
    let follower = |after: u64| {
        let api = Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            base: server.url.clone(),
            token: Some(sub_t.clone()),
        };
        let path = format!("/v1/jobs/{id}/log?after={after}&wait=30");
        tokio::spawn(async move { api.get(&path).await.json() })
    };

    // Waiting on `after=0` of a running attempt with no log yet…
    let reader = follower(0);
    until("the reader waits", async || followers(&probe).await == "1").await;
    // …gets the chunk as soon as it is appended.
    let r = agent
        .post(
            &attempt_path(&a, "log"),
            json!({"lease": lease, "seq": 0, "data": "first\n"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let page = reader.await.unwrap();
    assert_eq!(page["chunks"], json!([{"seq": 0, "data": "first\n"}]));
    assert_eq!(page["next"], 1);
    assert_eq!(page["complete"], false);

    // A completion claiming more chunks than the server has is refused; nothing changes.
    let over = agent
        .post(
            &attempt_path(&a, "complete"),
            json!({"lease": lease, "conclusion": "succeeded", "exit_code": 0, "log_chunks": 3}),
        )
        .await;
    assert_eq!(over.status, StatusCode::UNPROCESSABLE_ENTITY);
    let msg = over.json()["error"].as_str().unwrap().to_string();
    assert!(msg.contains("1 of the 3 log chunks"), "{msg}");
    assert_eq!(job(&user, &id).await["state"], "running");

    // Waiting on `after=1` gets `complete: true` (no chunks) once the attempt ends.
    let reader = follower(1);
    until("the reader waits", async || followers(&probe).await == "1").await;
    let done = agent
        .post(
            &attempt_path(&a, "complete"),
            json!({"lease": lease, "conclusion": "succeeded", "exit_code": 0, "log_chunks": 1}),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK);
    let page = reader.await.unwrap();
    assert_eq!(page["chunks"], json!([]));
    assert_eq!(page["complete"], true);
    assert_eq!(page["next"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_server_log_wait_wakes_on_append_and_end_sqlite() {
    log_follow(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_server_log_wait_wakes_on_append_and_end_postgres() {
    log_follow(Db::Pg).await;
}

// ---------------------------------------------------------------- S3 blobs (moto)

/// `runner server` with `--blobs s3://bucket/prefix` on moto.
fn s3_server_cmd(env: &Env, blobs: &str) -> Command {
    let moto = crate::support_moto::moto_s3();
    let mut cmd = env.runner();
    cmd.args(["server", "--blobs", blobs, "--s3-endpoint", &moto.endpoint])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_server_s3_blobs_round_trip_on_moto() {
    let moto = crate::support_moto::moto_s3();
    let bucket = moto.fixture("bucket");
    let prefix = format!("pool-{}", rand::random::<u32>());
    let env = Env::new(Db::Sqlite).await;
    let (sub_t, agent_t) = (env.token("submit"), env.token("agent"));
    let server = env.start(s3_server_cmd(&env, &format!("s3://{bucket}/{prefix}")), &[]);
    let user = Api::new(&server, Some(&sub_t));
    let agent = Api::new(&server, Some(&agent_t));

    // The source goes to S3; submit reads its buildspec back from there.
    let sha = upload_source(&user, BUILDSPEC).await;
    let head = user
        .raw(Method::HEAD, &format!("/v1/blobs/{sha}"), Some("1"), vec![])
        .await;
    assert_eq!(head.status, StatusCode::OK);
    let id = submit(&user, &sha, json!({})).await;
    let a = claim(&agent, "a", 5).await.unwrap();
    assert_eq!(a["job_id"], id.as_str());
    let lease = a["lease"].as_str().unwrap().to_string();
    // The agent downloads it (streamed from S3).
    let src = agent.get(&format!("/v1/agent/blobs/{sha}")).await;
    assert_eq!(src.status, StatusCode::OK);
    assert_eq!(archive::sha256_hex(&src.body), sha);
    // An artifact goes to S3 and comes back.
    let art: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let r = agent
        .put(
            &format!("{}?lease={lease}", attempt_path(&a, "artifacts/out.bin")),
            art.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let fin = agent
        .post(
            &attempt_path(&a, "complete"),
            json!({"lease": lease, "conclusion": "succeeded", "exit_code": 0, "log_chunks": 0}),
        )
        .await;
    assert_eq!(fin.status, StatusCode::OK);
    let back = user.get(&format!("/v1/jobs/{id}/artifacts/out.bin")).await;
    assert_eq!(back.status, StatusCode::OK);
    assert!(back.body == art, "the artifact came back changed");
    // Both live in the bucket under the prefix, and nothing in the local blob directory.
    let keys = moto.boto3_s3(
        "r = s3.list_objects_v2(Bucket=bucket, Prefix=key)\n\
         print('\\n'.join(sorted(o['Key'] for o in r.get('Contents', []))))",
        &bucket,
        &prefix,
        b"",
    );
    let want = [
        format!("{prefix}/sha256/{}/{sha}", &sha[..2]),
        format!(
            "{prefix}/sha256/{}/{}",
            &archive::sha256_hex(&art)[..2],
            archive::sha256_hex(&art)
        ),
    ];
    for w in &want {
        assert!(keys.lines().any(|k| k == w), "{w} not in {keys}");
    }
    assert_eq!(blob_files(&env.blobs), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_server_s3_missing_bucket_is_a_startup_error() {
    let env = Env::new(Db::Sqlite).await;
    let mut cmd = s3_server_cmd(&env, "s3://no-such-bucket-runner-test/pool");
    cmd.args(["--listen", "127.0.0.1:0", "--database", &env.db]);
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("the server kept running with a missing bucket")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no-such-bucket-runner-test") && stderr.contains("create it"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"));
}

// ---------------------------------------------------------------- load shedding

/// A claim that cannot reach the store's writer in time (here: another process holds the
/// SQLite write lock) answers 204 "no job", having taken nothing; once the store is free
/// the same job is claimed normally, as attempt 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_server_overloaded_claim_answers_no_job_and_takes_nothing_sqlite() {
    use sqlx::ConnectOptions;
    let env = Env::new(Db::Sqlite).await;
    let (sub_t, agent_t) = (env.token("submit"), env.token("agent"));
    let server = env.server(&[]);
    let user = Api::new(&server, Some(&sub_t));
    let agent = Api::new(&server, Some(&agent_t));
    let sha = upload_source(&user, BUILDSPEC).await;
    let id = submit(&user, &sha, json!({})).await;

    // Hold the write lock from outside, as a stalled writer would.
    let mut locker = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&env.db)
        .connect()
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut locker)
        .await
        .unwrap();
    let r = agent
        .post(
            "/v1/agent/claim",
            json!({"agent": "a", "labels": {}, "wait_secs": 0}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::NO_CONTENT,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    drop(locker);

    let j = job(&user, &id).await;
    assert_eq!(j["state"], "queued");
    assert_eq!(j["attempt"], 0);
    let metrics = String::from_utf8(user.get("/metrics").await.body).unwrap();
    assert!(metrics.contains("runner_claims_shed_total 1"), "{metrics}");
    let a = claim(&agent, "a", 5).await.unwrap();
    assert_eq!(a["job_id"], id.as_str());
    assert_eq!(a["attempt"], 1);
}

/// An upload the server refuses (413) before the client has sent all of it: the client
/// reads the 413, or, when the server closed the connection while the client was still
/// writing, its write fails (a broken pipe). Either way it was refused; the caller checks
/// that nothing was stored.
fn refused_mid_upload(r: Result<reqwest::Response, reqwest::Error>) {
    match r {
        Ok(resp) => assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE),
        Err(e) => assert!(
            e.is_request() && format!("{e:?}").contains("BodyWrite"),
            "the upload failed otherwise than by the server closing it: {e:?}"
        ),
    }
}

// ---------------------------------------------------------------- token revocation

/// `runner server token revoke` ends a token on a running server (within the cache's few
/// seconds), by id or by name, and leaves the other tokens working; `token list` shows
/// ids, never a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_server_a_revoked_token_is_refused_by_the_running_server() {
    let env = Env::new(Db::Sqlite).await;
    let keep = env.token("submit");
    let leaked = env.token("submit");
    let server = env.server(&[]);
    let (keep_api, leaked_api) = (
        Api::new(&server, Some(&keep)),
        Api::new(&server, Some(&leaked)),
    );
    assert_eq!(leaked_api.get("/v1/jobs").await.status, StatusCode::OK);

    let cli = |args: &[&str]| {
        let out = env
            .runner()
            .args(["server", "token"])
            .args(args)
            .args(["--database", &env.db])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, list, _) = cli(&["list", "--json"]);
    assert_eq!(code, Some(0));
    assert!(!list.contains(&keep) && !list.contains(&leaked), "{list}");
    let rows: Vec<Value> = serde_json::from_str(&list).unwrap();
    assert_eq!(rows.len(), 2, "{list}");
    // The leaked token's id: the first 12 hex digits of its SHA-256.
    let id = {
        use sha2::Digest;
        let hex: String = sha2::Sha256::digest(leaked.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        hex[..12].to_string()
    };
    assert!(list.contains(&id), "{list}");
    let (code, _, err) = cli(&["revoke", "no-such-token"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, out, err) = cli(&["revoke", &id]);
    assert_eq!(code, Some(0), "{out}{err}");

    until(
        "the running server to refuse the revoked token",
        async || leaked_api.get("/v1/jobs").await.status == StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(keep_api.get("/v1/jobs").await.status, StatusCode::OK);
    let (_, list, _) = cli(&["list", "--json"]);
    let rows: Vec<Value> = serde_json::from_str(&list).unwrap();
    assert_eq!(rows.len(), 1, "{list}");
}
