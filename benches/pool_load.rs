//! Load driver for `runner server` (the agent pool's HTTP API): simulated protocol
//! clients, no agents, no containers. Started by `benches/pool/run.sh`, which brings up
//! one server on SQLite and one on a throwaway PostgreSQL and passes both here, so every
//! measurement runs on both stores in one run, side by side.
//!
//! ```text
//! cargo bench --bench pool_load -- --clk-tck 100 \
//!     --target sqlite http://127.0.0.1:P1 PID1 TOKEN1 \
//!     --target postgres http://127.0.0.1:P2 PID2 TOKEN2 \
//!     [--pickup-jobs 500] [--pickup-clients 8] [--jobs 5000] [--clients 50] \
//!     [--idle 1000,10000] [--idle-window-secs 30] [--only pickup,throughput,scale]
//! ```
//!
//! - pickup: `--pickup-clients` idle clients long-poll `POST /v1/agent/claim`; jobs are
//!   submitted one at a time; latency = from sending `POST /v1/jobs` to a client holding
//!   the claim's answer. p50/p99/max.
//! - throughput: `--jobs` jobs submitted first, then `--clients` clients loop claim →
//!   complete until the queue is empty: jobs claimed and completed per second.
//! - scale: N idle clients long-poll one server; once all wait, the server's CPU (from
//!   `/proc/<pid>/stat` over `--idle-window-secs`, one full long-poll cycle) and RSS
//!   (`/proc/<pid>/status`), then the pickup latency of 20 jobs submitted one by one.
//!
//! Jobs use a git source (no blob upload, no buildspec parse): this measures the queue.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Clone)]
struct Target {
    name: String,
    url: String,
    pid: u32,
    /// An admin token of that server's store.
    token: String,
}

struct Opts {
    clk_tck: f64,
    targets: Vec<Target>,
    pickup_jobs: usize,
    pickup_clients: usize,
    jobs: usize,
    clients: usize,
    idle: Vec<usize>,
    idle_window: Duration,
    only: Vec<String>,
}

fn parse_args() -> Opts {
    let mut o = Opts {
        clk_tck: 100.0,
        targets: Vec::new(),
        pickup_jobs: 500,
        pickup_clients: 8,
        jobs: 5000,
        clients: 50,
        idle: vec![1000, 10000],
        idle_window: Duration::from_secs(30),
        only: vec!["pickup".into(), "throughput".into(), "scale".into()],
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let next = |i: &mut usize| -> String {
        *i += 1;
        args.get(*i)
            .cloned()
            .unwrap_or_else(|| panic!("{} needs a value", args[*i - 1]))
    };
    while i < args.len() {
        match args[i].as_str() {
            "--clk-tck" => o.clk_tck = next(&mut i).parse().unwrap(),
            "--target" => {
                let name = next(&mut i);
                let url = next(&mut i);
                let pid = next(&mut i).parse().unwrap();
                let token = next(&mut i);
                o.targets.push(Target {
                    name,
                    url,
                    pid,
                    token,
                });
            }
            "--pickup-jobs" => o.pickup_jobs = next(&mut i).parse().unwrap(),
            "--pickup-clients" => o.pickup_clients = next(&mut i).parse().unwrap(),
            "--jobs" => o.jobs = next(&mut i).parse().unwrap(),
            "--clients" => o.clients = next(&mut i).parse().unwrap(),
            "--idle" => {
                o.idle = next(&mut i)
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().unwrap())
                    .collect()
            }
            "--idle-window-secs" => {
                o.idle_window = Duration::from_secs(next(&mut i).parse().unwrap())
            }
            "--only" => o.only = next(&mut i).split(',').map(str::to_string).collect(),
            // `cargo bench` passes `--bench`.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
        i += 1;
    }
    assert!(
        !o.targets.is_empty(),
        "--target NAME URL PID ADMIN-TOKEN is required"
    );
    o
}

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

struct Claimed {
    job: String,
    attempt: u64,
    lease: String,
}

impl Api {
    fn new(base: &str, token: &str) -> Api {
        Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(usize::MAX)
                .build()
                .unwrap(),
            base: base.to_string(),
            token: token.to_string(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("runner-protocol", "1")
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert!(
            status.is_success(),
            "{path}: {status} {}",
            String::from_utf8_lossy(&bytes)
        );
        (status, value)
    }

    async fn submit(&self) -> String {
        let body = json!({"source": {"kind": "git", "url": "https://example.invalid/r.git", "revision": "main"}});
        let (_, v) = self.call(Method::POST, "/v1/jobs", Some(body)).await;
        v["id"].as_str().unwrap().to_string()
    }

    async fn claim(&self, agent: &str, wait: u64) -> Option<Claimed> {
        let body = json!({"agent": agent, "labels": {}, "wait_secs": wait});
        let (status, v) = self.call(Method::POST, "/v1/agent/claim", Some(body)).await;
        (status == StatusCode::OK).then(|| Claimed {
            job: v["job_id"].as_str().unwrap().to_string(),
            attempt: v["attempt"].as_u64().unwrap(),
            lease: v["lease"].as_str().unwrap().to_string(),
        })
    }

    async fn complete(&self, c: &Claimed) {
        let body =
            json!({"lease": c.lease, "conclusion": "succeeded", "exit_code": 0, "log_chunks": 0});
        self.call(
            Method::POST,
            &format!("/v1/agent/jobs/{}/{}/complete", c.job, c.attempt),
            Some(body),
        )
        .await;
    }

    async fn waiting(&self) -> usize {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("runner_claims_waiting "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Until `n` claims long-poll the server (or a timeout).
    async fn until_waiting(&self, n: usize, timeout: Duration) -> usize {
        let start = Instant::now();
        loop {
            let w = self.waiting().await;
            if w >= n || start.elapsed() > timeout {
                return w;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `(p50, p99, max)` in ms.
fn percentiles(v: &mut [Duration]) -> (f64, f64, f64) {
    v.sort();
    let at = |q: f64| {
        let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
        ms(v[i])
    };
    (at(0.50), at(0.99), ms(v[v.len() - 1]))
}

/// Idle long-polling clients: each claims with `wait` 30 s, reports what it got (job id,
/// when) and completes it; exits after `stop` once its claim answers.
fn spawn_idle(
    api: &Api,
    n: usize,
    prefix: &str,
    stop: &Arc<AtomicBool>,
    got: &mpsc::UnboundedSender<(String, Instant)>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|i| {
            let api = api.clone();
            let stop = stop.clone();
            let got = got.clone();
            let agent = format!("{prefix}-{i}");
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(c) = api.claim(&agent, 30).await {
                        let _ = got.send((c.job.clone(), Instant::now()));
                        api.complete(&c).await;
                    }
                }
            })
        })
        .collect()
}

/// Submits `jobs` jobs one at a time and measures each one's pickup.
async fn pickups(
    api: &Api,
    jobs: usize,
    got: &mut mpsc::UnboundedReceiver<(String, Instant)>,
) -> Vec<Duration> {
    let mut lat = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        let t0 = Instant::now();
        let id = api.submit().await;
        // Jobs left over from an earlier measurement's drain may come first.
        loop {
            let (job, t1) = tokio::time::timeout(Duration::from_secs(60), got.recv())
                .await
                .expect("a job was not picked up within 60 s")
                .unwrap();
            if job == id {
                lat.push(t1 - t0);
                break;
            }
        }
        // Let the claimant complete and go back to waiting.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    lat
}

/// Wakes every idle client with one job each so they all see `stop` and exit.
async fn drain(
    api: &Api,
    n: usize,
    stop: &Arc<AtomicBool>,
    handles: Vec<tokio::task::JoinHandle<()>>,
) {
    stop.store(true, Ordering::Relaxed);
    submit_many(api, n, 50).await;
    for h in handles {
        let _ = tokio::time::timeout(Duration::from_secs(40), h).await;
    }
}

/// Submits `n` jobs, `concurrency` at a time.
async fn submit_many(api: &Api, n: usize, concurrency: usize) {
    let left = Arc::new(AtomicU64::new(n as u64));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let api = api.clone();
        let left = left.clone();
        set.spawn(async move {
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                api.submit().await;
            }
        });
    }
    set.join_all().await;
}

async fn pickup(t: &Target, o: &Opts) -> Value {
    let api = Api::new(&t.url, &t.token);
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handles = spawn_idle(&api, o.pickup_clients, "pickup", &stop, &tx);
    let w = api
        .until_waiting(o.pickup_clients, Duration::from_secs(30))
        .await;
    assert!(w >= o.pickup_clients, "only {w} clients waiting");
    let mut lat = pickups(&api, o.pickup_jobs, &mut rx).await;
    drain(&api, o.pickup_clients, &stop, handles).await;
    let (p50, p99, max) = percentiles(&mut lat);
    println!(
        "pickup     {:<9} {} jobs, {} idle clients: p50 {p50:.1} ms  p99 {p99:.1} ms  max {max:.1} ms",
        t.name, o.pickup_jobs, o.pickup_clients
    );
    json!({"store": t.name, "measure": "pickup", "jobs": o.pickup_jobs,
           "clients": o.pickup_clients, "p50_ms": p50, "p99_ms": p99, "max_ms": max})
}

async fn throughput(t: &Target, o: &Opts) -> Value {
    let api = Api::new(&t.url, &t.token);
    // Submit first (`clients` at a time), timed on its own.
    let t0 = Instant::now();
    submit_many(&api, o.jobs, o.clients).await;
    let submit_secs = t0.elapsed().as_secs_f64();
    // Claim → complete until the queue is empty.
    let done = Arc::new(AtomicU64::new(0));
    let t1 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..o.clients {
        let api = api.clone();
        let done = done.clone();
        set.spawn(async move {
            let agent = format!("worker-{i}");
            while let Some(c) = api.claim(&agent, 0).await {
                api.complete(&c).await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    set.join_all().await;
    let secs = t1.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    // (Jobs left queued by an earlier drain are claimed too.)
    assert!(
        n >= o.jobs as u64,
        "every submitted job claimed and completed"
    );
    let rate = n as f64 / secs;
    let submit_rate = o.jobs as f64 / submit_secs;
    println!(
        "throughput {:<9} {n} jobs, {} clients: {rate:.0} claims+completes/s ({secs:.2} s); submits {submit_rate:.0}/s",
        t.name, o.clients
    );
    json!({"store": t.name, "measure": "throughput", "jobs": n, "clients": o.clients,
           "per_sec": rate, "secs": secs, "submits_per_sec": submit_rate})
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the `(comm)`: state is field 3; utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

async fn scale(t: &Target, o: &Opts, n: usize) -> Value {
    let api = Api::new(&t.url, &t.token);
    let rss_before = status_kib(t.pid, "VmRSS:");
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Ramp up in steps so the connects do not all land at once.
    let mut handles = Vec::with_capacity(n);
    let ramp = Instant::now();
    for chunk in 0..n.div_ceil(250) {
        let k = 250.min(n - chunk * 250);
        handles.extend(spawn_idle(&api, k, &format!("idle{n}-{chunk}"), &stop, &tx));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let w = api.until_waiting(n, Duration::from_secs(120)).await;
    let ramp_secs = ramp.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (c0, i0) = (cpu_ticks(t.pid), Instant::now());
    tokio::time::sleep(o.idle_window).await;
    let (c1, i1) = (cpu_ticks(t.pid), Instant::now());
    let cpu_pct = (c1 - c0) as f64 / o.clk_tck / (i1 - i0).as_secs_f64() * 100.0;
    let rss = status_kib(t.pid, "VmRSS:");
    let open_fds = fds(t.pid);
    let waiting = api.waiting().await;
    let mut lat = pickups(&api, 20, &mut rx).await;
    let (p50, p99, max) = percentiles(&mut lat);
    println!(
        "scale      {:<9} {n} idle clients ({w} waiting after {ramp_secs:.1} s ramp, {waiting} during the window): \
         server CPU {cpu_pct:.1}% of one core, RSS {} MiB (was {} MiB), {open_fds} fds; \
         pickup of 20 jobs p50 {p50:.1} ms max {max:.1} ms",
        t.name,
        rss / 1024,
        rss_before / 1024
    );
    drain(&api, n, &stop, handles).await;
    json!({"store": t.name, "measure": "scale", "idle_clients": n, "waiting": waiting,
           "cpu_pct_one_core": cpu_pct, "rss_mib": rss as f64 / 1024.0,
           "rss_before_mib": rss_before as f64 / 1024.0, "fds": open_fds,
           "pickup_p50_ms": p50, "pickup_p99_ms": p99, "pickup_max_ms": max})
}

#[tokio::main]
async fn main() {
    let o = parse_args();
    let mut results = Vec::new();
    let has = |m: &str| o.only.iter().any(|x| x == m);
    if has("pickup") {
        for t in &o.targets {
            results.push(pickup(t, &o).await);
        }
    }
    if has("throughput") {
        for t in &o.targets {
            results.push(throughput(t, &o).await);
        }
    }
    if has("scale") {
        for &n in &o.idle {
            for t in &o.targets {
                results.push(scale(t, &o, n).await);
            }
        }
    }
    println!("JSON {}", Value::Array(results));
}
