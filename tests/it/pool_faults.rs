//! The agent pool under real faults, as real processes on the real Docker engine:
//! `kill -9` of the server mid-run (SQLite and PostgreSQL), a PostgreSQL restart mid-run,
//! two server replicas on one PostgreSQL with agents split between them, the round trip
//! on PostgreSQL, and a claim long-poll abandoned by its client.
//!
//! Builds print numbered lines slowly, so "the log is complete" means every line, in
//! order, once, including the ones printed while the server or the database was down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support_pg;
use crate::support_pool::{attempts, log_lines, project, source, wait_for_log, Containers, Pool};
use serde_json::Value;
use std::io::Write;
use std::time::Duration;

/// A buildspec printing `line 1` … `line N`, one every `pause` seconds.
fn numbered_buildspec(n: u32, pause: &str) -> String {
    format!(
        "version: 0.2\nphases:\n  build:\n    commands:\n      \
         - for i in $(seq 1 {n}); do echo \"line $i\"; sleep {pause}; done\n"
    )
}

/// How long the server or the database stays down: longer than the client's own retries
/// of one call (≈6 s), so the agent's retry loops (log chunks, completion, claims) are
/// what carries the build through, and shorter than the lease (30 s).
const OUTAGE: Duration = Duration::from_secs(9);

/// Lines of the slow build: 60 × 0.25 s, so the outage falls inside it.
const LINES: u32 = 60;

fn numbered(n: u32) -> Vec<String> {
    (1..=n).map(|i| format!("line {i}")).collect()
}

fn pg_database() -> String {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(support_pg::database())
}

fn wait_final(pool: &Pool, id: &str) -> Value {
    pool.wait_job(id, &format!("job {id} to end"), 240, |j| {
        j["state"] != "running" && j["state"] != "queued"
    })
}

/// The job ran once, on `agent`, succeeded, and attempt 1's log is exactly `lines` with
/// one end of build.
fn assert_ran_once_with_log(pool: &Pool, id: &str, agent: &str, lines: &[String]) {
    let job = wait_final(pool, id);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["exit_code"], 0, "{job}");
    assert_eq!(
        attempts(&job),
        vec![(1, agent.to_string(), "succeeded".to_string())],
        "{job}"
    );
    let events = pool.log_events(id, Some(1));
    assert_eq!(log_lines(&events), lines, "job {id}'s log is not complete");
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "build_ended")
            .count(),
        1,
        "{events:?}"
    );
}

/// How many times the agents' output says they claimed `id`.
fn claims_of(id: &str, stderr: &[String]) -> usize {
    let needle = format!("claimed job {id} ");
    stderr.iter().map(|s| s.matches(&needle).count()).sum()
}

// ------------------------------------------------------------------ round trip on PG

#[test]
fn pool_faults_round_trip_with_artifacts_on_postgres() {
    let pool = Pool::start_on(30, Some(pg_database()));
    assert!(pool.database.starts_with("postgres://"));
    let _agent = pool.agent("pg1", &[]);
    let name = project("pgtrip");
    let _containers = Containers(name.clone());
    let src = source(&[(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo hello from postgres\n      \
         - mkdir -p out && echo \"artifact on pg\" > out/a.txt\nartifacts:\n  files:\n    - out/a.txt\n",
    )]);
    let out = pool
        .cli()
        .args(["submit", "--wait", "--source"])
        .arg(src.path())
        .args(["--project", &name])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("hello from postgres"), "{stdout}");
    let id = stderr
        .lines()
        .find_map(|l| l.strip_prefix("runner: job ")?.split_whitespace().next())
        .unwrap_or_else(|| panic!("no job id in {stderr}"))
        .to_string();
    assert_ran_once_with_log(&pool, &id, "pg1", &["hello from postgres".to_string()]);

    let dl = tempfile::tempdir().unwrap();
    let got = pool
        .cli()
        .args(["jobs", "artifacts", &id, "--download"])
        .arg(dl.path())
        .output()
        .unwrap();
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let files: Vec<_> = walkdir::WalkDir::new(dl.path())
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.file_name() == "a.txt")
        .collect();
    assert_eq!(files.len(), 1, "artifacts downloaded: {files:?}");
    assert_eq!(
        std::fs::read_to_string(files[0].path()).unwrap(),
        "artifact on pg\n"
    );
}

// ------------------------------------------------------------ server kill -9 mid-run

/// A job printing LINES lines runs on agent a1 while `outage` happens (after its third
/// line), beside an idle agent a2 long-polling for lane=b jobs; afterwards the job's log
/// is complete, it was claimed once, and a2's claim loop still picks up a new job.
fn outage_mid_run(pool: &mut Pool, tag: &str, outage: impl FnOnce(&mut Pool)) {
    let name = project(tag);
    let _containers = Containers(name.clone());
    let src = source(&[("buildspec.yml", &numbered_buildspec(LINES, "0.25"))]);
    let a1 = pool.agent("a1", &[]);
    let first = pool.submit(src.path(), &name, &[]);
    wait_for_log(pool, &first, "line 3");
    // An idle agent long-polling when the outage starts (it only takes lane=b jobs).
    let a2 = pool.agent("a2", &["--labels", "lane=b"]);

    outage(pool);

    assert_ran_once_with_log(pool, &first, "a1", &numbered(LINES));
    let second = pool.submit(src.path(), &name, &["--labels", "lane=b"]);
    assert_ran_once_with_log(pool, &second, "a2", &numbered(LINES));
    let stderr = [a1.stderr.text(), a2.stderr.text()];
    eprintln!("agents' output:\n{}\n{}", stderr[0], stderr[1]);
    assert_eq!(claims_of(&first, &stderr), 1, "{stderr:?}");
    assert_eq!(claims_of(&second, &stderr), 1, "{stderr:?}");
}

fn server_kill9_mid_run(database: Option<String>) {
    let mut pool = Pool::start_on(30, database);
    outage_mid_run(&mut pool, "srvkill", |pool| {
        pool.kill9_server();
        // The build goes on printing while nobody listens.
        std::thread::sleep(OUTAGE);
        pool.restart_server();
    });
}

#[test]
fn pool_faults_server_kill9_mid_run_sqlite() {
    server_kill9_mid_run(None);
}

#[test]
fn pool_faults_server_kill9_mid_run_postgres() {
    server_kill9_mid_run(Some(pg_database()));
}

// ---------------------------------------------------------- PostgreSQL restart mid-run

#[test]
fn pool_faults_postgres_restart_mid_run() {
    let pg = support_pg::Private::start();
    let mut pool = Pool::start_on(30, Some(pg.url()));
    outage_mid_run(&mut pool, "pgrestart", |_| {
        pg.stop_fast();
        std::thread::sleep(OUTAGE);
        pg.start_again();
    });
}

// ------------------------------------------------------- two replicas, one PostgreSQL

#[test]
fn pool_faults_two_replicas_share_one_postgres() {
    let pool = Pool::start_on(30, Some(pg_database()));
    let b = pool.replica();
    let name = project("replicas");
    let _containers = Containers(name.clone());
    let src = source(&[("buildspec.yml", &numbered_buildspec(5, "0.1"))]);
    // Agent a on replica A takes lane=a (and unlabelled) jobs, agent b on replica B
    // lane=b (and unlabelled) ones.
    let agent_a = pool.agent("on-a", &["--labels", "lane=a"]);
    let agent_b = pool.agent_via(&b.url, "on-b", &["--labels", "lane=b"]);
    // Jobs submitted to each replica for the agent on the other one, and for either.
    let mut jobs: Vec<(String, Option<&str>)> = Vec::new();
    for _ in 0..2 {
        jobs.push((
            pool.submit(src.path(), &name, &["--labels", "lane=b"]),
            Some("on-b"),
        ));
        jobs.push((
            pool.submit_at(&b.url, src.path(), &name, &["--labels", "lane=a"]),
            Some("on-a"),
        ));
    }
    jobs.push((pool.submit(src.path(), &name, &[]), None));
    jobs.push((pool.submit_at(&b.url, src.path(), &name, &[]), None));

    let stderr = || [agent_a.stderr.text(), agent_b.stderr.text()];
    for (id, agent) in &jobs {
        let job = wait_final(&pool, id);
        let ran_on = match agent {
            Some(a) => a.to_string(),
            None => attempts(&job)
                .first()
                .map(|a| a.1.clone())
                .unwrap_or_default(),
        };
        assert!(ran_on == "on-a" || ran_on == "on-b", "{job}");
        assert_ran_once_with_log(&pool, id, &ran_on, &numbered(5));
        // Both replicas tell the same story.
        let via_b: Value = serde_json::from_slice(
            &pool
                .cli_at(&b.url)
                .args(["jobs", "show", id, "--json"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        assert_eq!(attempts(&via_b), attempts(&job));
        assert_eq!(claims_of(id, &stderr()), 1, "{:?}", stderr());
    }
}

// ------------------------------------------------- a claim abandoned mid long-poll

/// An agent that stops while its claim long-polls (SIGTERM, a crash) closes the
/// connection; the server must not claim a job for it afterwards, or that job would be
/// assigned to nobody until its lease runs out. Speaks HTTP itself to hold a claim open
/// and close it.
#[test]
fn pool_faults_a_claim_abandoned_mid_long_poll_takes_no_job() {
    let pool = Pool::start(4);
    let name = project("abandon");
    let _containers = Containers(name.clone());
    let src = source(&[("buildspec.yml", &numbered_buildspec(2, "0"))]);
    let addr = pool.url.strip_prefix("http://").unwrap().to_string();
    let body = r#"{"agent":"ghost","labels":{},"wait_secs":30}"#;
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        conn,
        "POST /v1/agent/claim HTTP/1.1\r\nhost: {addr}\r\nrunner-protocol: 1\r\n\
         authorization: Bearer {}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        pool.agent_token(),
        body.len()
    )
    .unwrap();
    conn.flush().unwrap();
    // The claim is waiting (an empty queue); its client goes away.
    std::thread::sleep(Duration::from_secs(1));
    drop(conn);
    std::thread::sleep(Duration::from_secs(1));

    let id = pool.submit(src.path(), &name, &[]);
    let _real = pool.agent("real", &[]);
    let job = wait_final(&pool, &id);
    assert_eq!(
        attempts(&job),
        vec![(1, "real".to_string(), "succeeded".to_string())],
        "the abandoned claim took the job: {job}"
    );
}

// ------------------------------------------------------ SIGTERM to an idle agent

/// SIGTERM stops an idle agent at once: it drops its claim long-poll (default
/// `--poll-secs 30`) instead of waiting for the server to answer it. The 20 s bound only
/// catches a hang (before the fix the agent sat in its claim until the server answered,
/// up to 30 s). Then jobs submitted right around the signal: whatever the stopping agent
/// did with each (claimed before the signal and drained, never claimed, claimed and
/// released, or claimed by the server as it went and never confirmed), each job runs
/// exactly once: there, or on the other agent.
#[test]
fn pool_faults_sigterm_stops_an_idle_agent_at_once_and_loses_no_job() {
    let pool = Pool::start(30);
    let name = project("idle-stop");
    let _containers = Containers(name.clone());
    let src = source(&[("buildspec.yml", &numbered_buildspec(2, "0"))]);

    // Idle, nothing submitted: the agent exits without waiting for its claim's answer.
    let mut idle = pool.agent("idle", &[]);
    std::thread::sleep(Duration::from_millis(500));
    idle.sigterm();
    let status = idle.wait_exit(20);
    assert!(status.success(), "{status:?}\n{}", idle.stderr.text());

    // A job submitted just before, at, and just after the signal.
    let mut ids = Vec::new();
    let mut stopped = Vec::new();
    for (round, lead_ms) in [(0u32, 30u64), (1, 0), (2, 60)].into_iter() {
        let mut agent = pool.agent(&format!("stopping{round}"), &[]);
        let submitter = {
            let cli = pool.cli();
            let src = src.path().to_path_buf();
            let name = name.clone();
            std::thread::spawn(move || {
                let mut cli = cli;
                let out = cli
                    .args(["submit", "--source"])
                    .arg(&src)
                    .args(["--project", &name])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8(out.stdout).unwrap().trim().to_string()
            })
        };
        std::thread::sleep(Duration::from_millis(lead_ms));
        agent.sigterm();
        let status = agent.wait_exit(20);
        assert!(status.success(), "{status:?}\n{}", agent.stderr.text());
        ids.push(submitter.join().unwrap());
        stopped.push(agent.stderr.text());
    }
    let _other = pool.agent("other", &[]);
    for (id, stderr) in ids.iter().zip(&stopped) {
        let job = wait_final(&pool, id);
        assert_eq!(job["state"], "succeeded", "{job}\n{stderr}");
        let runs: Vec<_> = attempts(&job)
            .into_iter()
            .filter(|(_, _, outcome)| outcome != "released" && outcome != "unconfirmed")
            .collect();
        // Claimed before a signal, the job is drained (finished by that stopping agent,
        // maybe a later round's: a submit can land after its round's agent is gone); else
        // it runs on the other agent. Either way: one run.
        let last = job["attempt"].as_u64().unwrap();
        assert_eq!(runs.len(), 1, "{job}\n{stderr}");
        assert_eq!(runs[0].0, last, "{job}");
        assert_eq!(runs[0].2, "succeeded", "{job}");
        assert!(
            runs[0].1 == "other" || runs[0].1.starts_with("stopping"),
            "{job}"
        );
        let events = pool.log_events(id, None);
        assert_eq!(log_lines(&events), numbered(2), "{events:?}");
    }
}
