//! Notifications instead of polling: a real `runner server` pushes every job state change
//! to receivers on loopback (HTTP servers in this test) as signed CloudEvents, through a
//! receiver outage, a receiver that never answers and a `kill -9` of the server; and
//! `runner jobs watch --json` prints the same events from the server-sent event stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support_pool::{eventually, project, source, Containers, Pool};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const SECRET: &str = "notify-secret-4fQ9";

/// One POST a receiver got.
#[derive(Debug, Clone)]
struct Delivery {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Delivery {
    fn event(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A webhook receiver on loopback: answers 200 to every POST and records it, or (`hang`)
/// accepts connections and never answers.
struct Receiver {
    addr: SocketAddr,
    hang: bool,
    got: Arc<Mutex<Vec<Delivery>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start(hang: bool) -> Receiver {
        let l = listener_outside_ephemeral_range();
        let addr = l.local_addr().unwrap();
        let mut r = Receiver {
            addr,
            hang,
            got: Arc::default(),
            stop: Arc::default(),
            thread: None,
        };
        r.serve(l);
        r
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn serve(&mut self, l: TcpListener) {
        l.set_nonblocking(true).unwrap();
        let (got, stop, hang) = (self.got.clone(), self.stop.clone(), self.hang);
        self.thread = Some(std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((s, _)) if hang => held.push(s),
                    Ok((s, _)) => {
                        if let Some(d) = read_request(s) {
                            got.lock().unwrap().push(d);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }));
    }

    /// Stops listening (connections are refused until [`Receiver::up`]).
    fn down(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    /// Listens again on the same address.
    fn up(&mut self) {
        self.stop.store(false, Ordering::SeqCst);
        let l = eventually("the receiver's port to be free again", 30, || {
            TcpListener::bind(self.addr).ok()
        });
        self.serve(l);
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }

    /// The events of `job`, deduplicated by id (a receiver's job: delivery is at least
    /// once), in the order they arrived.
    fn events_of(&self, job: &str) -> Vec<Value> {
        let mut seen = HashSet::new();
        self.deliveries()
            .iter()
            .map(Delivery::event)
            .filter(|e| e["data"]["job"] == job)
            .filter(|e| seen.insert(e["id"].as_str().unwrap().to_string()))
            .collect()
    }

    /// Waits until the `finished` event of `job` arrived; its events.
    fn wait_finished(&self, job: &str, secs: u64) -> Vec<Value> {
        eventually("the job's finished event at the receiver", secs, || {
            let events = self.events_of(job);
            events
                .iter()
                .any(|e| e["type"] == "dev.runner.job.finished")
                .then_some(events)
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}

/// A loopback listener on a port outside the kernel's ephemeral range. A test that stops
/// listening and listens again on the same port (an outage) would otherwise, with other
/// tests connecting out meanwhile, find the port taken as some connection's source port.
pub(crate) fn listener_outside_ephemeral_range() -> TcpListener {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (from, to) = if low > 12_000 {
        (10_000, low)
    } else {
        (61_000, u16::MAX)
    };
    for _ in 0..1000 {
        let port = from + rand::random::<u16>() % (to - from);
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            return l;
        }
    }
    TcpListener::bind("127.0.0.1:0").unwrap()
}

/// Reads one HTTP/1.1 request, answers 200 and closes.
fn read_request(s: TcpStream) -> Option<Delivery> {
    s.set_nonblocking(false).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    if !line.starts_with("POST ") {
        return None;
    }
    let mut headers = HashMap::new();
    loop {
        line.clear();
        r.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let len: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    let mut s = r.into_inner();
    s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .ok()?;
    Some(Delivery { headers, body })
}

/// `sha256=<hex>` of `body` under `secret`, computed by `openssl` (not by runner).
fn openssl_signature(secret: &str, body: &[u8]) -> String {
    let mut c = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret, "-r"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(body).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success());
    let hex = String::from_utf8(out.stdout).unwrap();
    format!("sha256={}", hex.split_whitespace().next().unwrap())
}

fn assert_signed(deliveries: &[Delivery]) {
    assert!(!deliveries.is_empty());
    for d in deliveries {
        let sig = d
            .headers
            .get("x-runner-signature-256")
            .expect("no signature");
        assert_eq!(*sig, openssl_signature(SECRET, &d.body), "bad signature");
        let mut tampered = d.body.clone();
        let n = tampered.len() / 2;
        tampered[n] ^= 1;
        assert_ne!(*sig, openssl_signature(SECRET, &tampered));
        assert_eq!(d.headers["x-runner-event-id"], d.event()["id"]);
        assert!(d.headers["content-type"].starts_with("application/cloudevents+json"));
    }
}

/// The `(type suffix, phase, phase status)` of events.
fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let t = e["type"].as_str().unwrap();
            let t = t.strip_prefix("dev.runner.job.").unwrap();
            match t {
                "phase" => format!(
                    "phase {} {}",
                    e["data"]["phase"].as_str().unwrap(),
                    e["data"]["phase_status"].as_str().unwrap()
                ),
                _ => format!("{t} {}", e["data"]["status"].as_str().unwrap()),
            }
        })
        .collect()
}

const BUILDSPEC: &str = "version: 0.2\nphases:\n  build:\n    commands:\n      - echo notified\n";

/// Checks what every event of a successful first run of `job` says.
fn assert_run(events: &[Value], job: &str, name: &str, pool: &Pool) {
    let k = kinds(events);
    // Phases the build has beyond the usual ones (e.g. none on this runner) would show
    // here: compare with the log's own phase events.
    let log_phases: Vec<String> = pool
        .log_events(job, None)
        .iter()
        .filter_map(|e| match e["event"].as_str()? {
            "phase_started" => Some(format!("phase {} started", e["phase"].as_str()?)),
            "phase_ended" => Some(format!(
                "phase {} {}",
                e["phase"].as_str()?,
                e["status"].as_str()?
            )),
            _ => None,
        })
        .collect();
    let mut want = vec!["queued queued".to_string(), "started running".to_string()];
    want.extend(log_phases);
    want.push("finished succeeded".to_string());
    assert_eq!(k, want);
    assert!(
        k.iter().filter(|k| k.starts_with("phase")).count() >= 2,
        "{k:?}"
    );
    let ids: HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len());
    for e in events {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["datacontenttype"], "application/json");
        assert!(e["source"].as_str().unwrap().starts_with("http://"));
        assert!(e["time"].as_str().unwrap().contains('T'));
        assert_eq!(e["subject"], job);
        assert_eq!(e["data"]["project"], name);
        assert_eq!(e["data"]["build_number"], 1);
        assert!(e["data"]["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/jobs/{job}")));
    }
    assert_eq!(events[0]["data"]["attempt"], 0);
    for e in &events[1..] {
        assert_eq!(e["data"]["attempt"], 1);
    }
    assert_eq!(events.last().unwrap()["data"]["exit_code"], 0);
}

/// `runner jobs watch --json --project P`, its stdout lines collected.
struct Watch {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Watch {
    fn start(pool: &Pool, name: &str) -> Watch {
        let mut child = pool
            .cli()
            .args(["jobs", "watch", "--json", "--project", name])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                l.lock().unwrap().push(line);
            }
        });
        Watch { child, lines }
    }

    fn events(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
            .collect()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_receiver_gets_every_change_of_a_job_once_in_order_signed_beside_a_hanging_receiver() {
    // The hanging receiver comes first and would hold each delivery 300 s: a server that
    // sent inline, or to its receivers one after the other, would not finish in time.
    let hanging = Receiver::start(true);
    let receiver = Receiver::start(false);
    let pool = Pool::start_with(
        30,
        None,
        &[
            "--notify",
            &hanging.url(),
            "--notify",
            &receiver.url(),
            "--notify-secret",
            SECRET,
            "--notify-timeout-secs",
            "300",
        ],
    );
    let name = project("notify");
    let _containers = Containers(name.clone());
    let watch = Watch::start(&pool, &name);
    // The stream is open before the job is submitted (it starts from "now").
    std::thread::sleep(Duration::from_millis(500));
    let _agent = pool.agent("n1", &[]);
    let src = source(&[("buildspec.yml", BUILDSPEC)]);
    let job = pool.submit(src.path(), &name, &[]);
    pool.wait_job(&job, "the job to succeed", 120, |j| {
        j["state"] == "succeeded"
    });

    let events = receiver.wait_finished(&job, 60);
    assert_run(&events, &job, &name, &pool);
    // Every delivery is signed, and a tampered body does not verify.
    assert_signed(&receiver.deliveries());

    // `runner jobs watch --json` printed the same events, in the same order.
    let watched = eventually("jobs watch to print the finished event", 60, || {
        let w = watch.events();
        w.iter()
            .any(|e| e["type"] == "dev.runner.job.finished")
            .then_some(w)
    });
    let watched: Vec<Value> = watched
        .into_iter()
        .filter(|e| e["data"]["job"] == job.as_str())
        .collect();
    assert_eq!(watched, events);
}

/// A receiver down while a job runs gets every event once it is up again; then, down
/// again, the server is killed with events undelivered and delivers them after restart.
fn outage_and_kill9(database: Option<String>) {
    let mut receiver = Receiver::start(false);
    let mut pool = Pool::start_with(
        30,
        database,
        &[
            "--notify",
            &receiver.url(),
            "--notify-secret",
            SECRET,
            "--notify-max-backoff-secs",
            "2",
        ],
    );
    let name = project("notify-outage");
    let _containers = Containers(name.clone());
    let _agent = pool.agent("o1", &[]);
    let src = source(&[("buildspec.yml", BUILDSPEC)]);

    receiver.down();
    let job = pool.submit(src.path(), &name, &[]);
    pool.wait_job(&job, "the job to succeed", 120, |j| {
        j["state"] == "succeeded"
    });
    assert!(receiver.deliveries().is_empty());
    receiver.up();
    let events = receiver.wait_finished(&job, 60);
    assert_run(&events, &job, &name, &pool);

    // Down again; a second job's events wait in the outbox when the server is killed.
    receiver.down();
    let job2 = pool.submit(src.path(), &name, &[]);
    pool.wait_job(&job2, "the second job to succeed", 120, |j| {
        j["state"] == "succeeded"
    });
    pool.kill9_server();
    receiver.up();
    pool.restart_server();
    let events2 = receiver.wait_finished(&job2, 60);
    let k = kinds(&events2);
    assert_eq!(k.first().unwrap(), "queued queued");
    assert_eq!(k.get(1).unwrap(), "started running");
    assert_eq!(k.last().unwrap(), "finished succeeded");
    assert_eq!(events2.last().unwrap()["data"]["build_number"], 2);
    assert_signed(&receiver.deliveries());
}

#[test]
fn every_event_arrives_after_a_receiver_outage_and_after_a_server_kill9() {
    outage_and_kill9(None);
}

/// The outbox on PostgreSQL: no agent, a job queued then cancelled, its two events
/// delivered after an outage and a `kill -9`.
#[test]
fn postgres_outbox_delivers_after_an_outage_and_a_server_kill9() {
    let db = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(crate::support_pg::database());
    let mut receiver = Receiver::start(false);
    let mut pool = Pool::start_with(
        30,
        Some(db),
        &[
            "--notify",
            &receiver.url(),
            "--notify-secret",
            SECRET,
            "--notify-max-backoff-secs",
            "2",
        ],
    );
    let name = project("notify-pg");
    let src = source(&[("buildspec.yml", BUILDSPEC)]);
    receiver.down();
    let job = pool.submit(src.path(), &name, &[]);
    let out = pool.cli().args(["jobs", "cancel", &job]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pool.kill9_server();
    receiver.up();
    pool.restart_server();
    let events = receiver.wait_finished(&job, 60);
    assert_eq!(kinds(&events), vec!["queued queued", "finished cancelled"]);
    assert_signed(&receiver.deliveries());

    // The event stream from the start, then resumed after its first event.
    let all = sse(&pool, &name, Some("0"), 2);
    assert_eq!(
        all.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
        events
    );
    let rest = sse(&pool, &name, Some(&all[0].0), 1);
    assert_eq!(rest, all[1..].to_vec());

    // On PostgreSQL a sequence number can commit after a higher one: a stream that has
    // sent the higher one still sends the late one (rows written here as the race would).
    let last: i64 = all[1].0.parse().unwrap();
    let mut stream = SseReader::open(&pool, &name, Some(&all[1].0));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let insert = |seq: i64, id: &str| {
        let body = serde_json::json!({"id": id, "type": "dev.runner.job.test",
            "data": {"project": name}})
        .to_string();
        rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&pool.database).await.unwrap();
            sqlx::query(
                "INSERT INTO notify_events (seq, id, job_id, project, body, created) \
                 VALUES ($1, $2, 'x', $3, $4, $5)",
            )
            .bind(seq)
            .bind(id)
            .bind(&name)
            .bind(&body)
            .bind(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64,
            )
            .execute(&mut c)
            .await
            .unwrap();
        });
    };
    insert(last + 1000, "higher");
    assert_eq!(stream.next().1["id"], "higher");
    insert(last + 500, "late");
    assert_eq!(stream.next().1["id"], "late");
}

/// The server's `/metrics` text.
fn metrics(pool: &Pool) -> String {
    let url = format!("{}/metrics", pool.url);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
}

/// The value of the series `name{labels}` in a `/metrics` text.
fn series(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

/// `/metrics` counts deliveries per receiver and result, and shows each receiver's
/// pending deliveries and the age of its oldest.
#[test]
fn metrics_show_deliveries_per_receiver_and_what_a_failing_receiver_has_pending() {
    let receiver = Receiver::start(false);
    let mut failing = Receiver::start(false);
    failing.down();
    let pool = Pool::start_with(
        30,
        None,
        &[
            "--notify",
            &receiver.url(),
            "--notify",
            &failing.url(),
            "--notify-secret",
            SECRET,
        ],
    );
    let name = project("notify-metrics");
    let src = source(&[("buildspec.yml", BUILDSPEC)]);
    // No agent: the job is queued, then cancelled (two events).
    let job = pool.submit(src.path(), &name, &[]);
    let out = pool.cli().args(["jobs", "cancel", &job]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        kinds(&receiver.wait_finished(&job, 60)),
        vec!["queued queued", "finished cancelled"]
    );
    let ok = format!("{{receiver=\"{}\",result=\"ok\"}}", receiver.url());
    let bad = format!("{{receiver=\"{}\",result=\"failed\"}}", failing.url());
    let pending = format!("{{receiver=\"{}\"}}", failing.url());
    let text = eventually(
        "the failing receiver's failed tries in /metrics",
        60,
        || {
            let text = metrics(&pool);
            (series(&text, &format!("runner_notify_deliveries_total{bad}"))? >= 1.0).then_some(text)
        },
    );
    assert_eq!(
        series(&text, &format!("runner_notify_deliveries_total{ok}")),
        Some(2.0),
        "{text}"
    );
    // Both of the failing receiver's events wait (the second behind the first); the
    // receiver that took them has none pending.
    assert_eq!(
        series(&text, &format!("runner_notify_pending{pending}")),
        Some(2.0),
        "{text}"
    );
    assert!(
        series(
            &text,
            &format!("runner_notify_oldest_pending_seconds{pending}")
        )
        .unwrap()
            >= 0.0,
        "{text}"
    );
    assert!(
        !text.contains(&format!(
            "runner_notify_pending{{receiver=\"{}\"}}",
            receiver.url()
        )),
        "{text}"
    );
    assert!(
        text.contains("# TYPE runner_notify_deliveries_total counter"),
        "{text}"
    );
}

/// `GET /v1/events?project=` (with `Last-Event-ID`): its first `n` events as (id, event).
fn sse(pool: &Pool, project: &str, last_event_id: Option<&str>, n: usize) -> Vec<(String, Value)> {
    let mut r = SseReader::open(pool, project, last_event_id);
    (0..n).map(|_| r.next()).collect()
}

/// An open `GET /v1/events` stream.
struct SseReader(BufReader<TcpStream>);

impl SseReader {
    fn open(pool: &Pool, project: &str, last_event_id: Option<&str>) -> SseReader {
        let addr = pool.url.strip_prefix("http://").unwrap();
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut req = format!(
            "GET /v1/events?project={project} HTTP/1.1\r\nHost: {addr}\r\n\
             Authorization: Bearer {}\r\nrunner-protocol: 1\r\nAccept: text/event-stream\r\n",
            pool.submit_token()
        );
        if let Some(id) = last_event_id {
            req.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        SseReader(BufReader::new(s))
    }

    /// The next event: (id, event).
    fn next(&mut self) -> (String, Value) {
        let (mut id, mut line) = (String::new(), String::new());
        let start = std::time::Instant::now();
        loop {
            // Keep-alive comments come every 15 s: give up after a minute without an event.
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "gave up after 60 s waiting for an event on the stream"
            );
            line.clear();
            assert!(self.0.read_line(&mut line).unwrap() > 0, "the stream ended");
            // Chunked framing lines are neither `id:` nor `data:`; skip them.
            if let Some(v) = line.trim_end().strip_prefix("id: ") {
                id = v.to_string();
            } else if let Some(v) = line.trim_end().strip_prefix("data: ") {
                return (id, serde_json::from_str(v).unwrap());
            }
        }
    }
}
