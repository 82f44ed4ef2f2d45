//! An agent pool on one machine, as real processes: a `runner server` (SQLite and blobs in
//! a temporary directory), `runner agent`s with their own data directories, and the
//! `runner submit` / `runner jobs` commands pointed at them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::{stack, IMAGE};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn runner() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
    for v in [
        "RUNNER_DATABASE_URL",
        "RUNNER_SERVER",
        "RUNNER_TOKEN",
        "RUNNER_IMAGE",
        "RUNNER_AGENT_NAME",
        "RUNNER_AGENT_LABELS",
        "RUST_LOG",
    ] {
        c.env_remove(v);
    }
    c.env("NO_COLOR", "1").env("CI", "true");
    c
}

/// Lines a child wrote to a pipe, collected by a thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn collect(pipe: impl std::io::Read + Send + 'static) -> Lines {
        let lines = Lines::default();
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                l.0.lock().unwrap().push(line);
            }
        });
        lines
    }

    pub fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

/// Polls `f` every 100 ms until it gives a value; fails the test after `secs`.
pub fn eventually<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "gave up after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub struct Pool {
    pub dir: tempfile::TempDir,
    pub url: String,
    server: Child,
    _server_out: Lines,
    agent_token: String,
    submit_token: String,
    /// The store: a SQLite file in `dir`, or a `postgres://` URL.
    pub database: String,
    lease_secs: u64,
    /// More `runner server` flags (kept for restarts and replicas).
    server_args: Vec<String>,
}

impl Pool {
    /// A server with leases of `lease_secs`.
    pub fn start(lease_secs: u64) -> Pool {
        Pool::start_on(lease_secs, None)
    }

    /// A server with leases of `lease_secs` on `database` (a `postgres://` URL), or on a
    /// SQLite file in the pool's directory when `None`.
    pub fn start_on(lease_secs: u64, database: Option<String>) -> Pool {
        Pool::start_with(lease_secs, database, &[] as &[&str])
    }

    /// As [`Pool::start_on`], the server run with more flags.
    pub fn start_with(
        lease_secs: u64,
        database: Option<String>,
        server_args: &[impl AsRef<str>],
    ) -> Pool {
        stack();
        let server_args: Vec<String> = server_args.iter().map(|a| a.as_ref().to_string()).collect();
        let dir = tempfile::tempdir().unwrap();
        let db = database.unwrap_or_else(|| dir.path().join("jobs.db").display().to_string());
        let token = |role: &str| {
            let out = runner()
                .arg("--data-dir")
                .arg(dir.path().join("server-data"))
                .args([
                    "server",
                    "token",
                    "create",
                    "--role",
                    role,
                    "--database",
                    &db,
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "token create: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .last()
                .unwrap()
                .trim()
                .to_string()
        };
        let agent_token = token("agent");
        let submit_token = token("submit");
        let (server, url, server_out) =
            spawn_server(dir.path(), &db, lease_secs, "127.0.0.1:0", &server_args);
        Pool {
            dir,
            url,
            server,
            _server_out: server_out,
            agent_token,
            submit_token,
            database: db,
            lease_secs,
            server_args,
        }
    }

    /// `kill -9` of the server (the pool's first replica).
    pub fn kill9_server(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }

    /// Starts the server again on the same address (after [`Pool::kill9_server`]).
    pub fn restart_server(&mut self) {
        let addr = self.url.strip_prefix("http://").unwrap().to_string();
        // The port was just freed: another process may not have taken it, but retry a
        // little in case the kernel has not released it yet.
        let (server, url, out) = eventually("the server to start again", 30, || {
            spawn_server_checked(
                self.dir.path(),
                &self.database,
                self.lease_secs,
                &addr,
                &self.server_args,
            )
        });
        assert_eq!(url, self.url);
        self.server = server;
        self._server_out = out;
    }

    /// Another `runner server` on the same store and blob directory (a replica).
    pub fn replica(&self) -> Replica {
        let (child, url, out) = spawn_server(
            self.dir.path(),
            &self.database,
            self.lease_secs,
            "127.0.0.1:0",
            &self.server_args,
        );
        Replica {
            child,
            url,
            _out: out,
        }
    }

    /// `runner` with a submit token, pointed at `url` (a replica).
    pub fn cli_at(&self, url: &str) -> Command {
        let mut c = runner();
        c.env("RUNNER_SERVER", url)
            .env("RUNNER_TOKEN", &self.submit_token);
        c
    }

    /// `runner agent --name NAME` with its own data directory, the base image, no cache.
    pub fn agent(&self, name: &str, extra: &[&str]) -> Agent {
        self.agent_via(&self.url, name, extra)
    }

    /// An agent that reaches the server at `url` (a [`Proxy`]).
    pub fn agent_via(&self, url: &str, name: &str, extra: &[&str]) -> Agent {
        let data = tempfile::tempdir().unwrap();
        let mut child = runner()
            .arg("--data-dir")
            .arg(data.path())
            .args(["agent", "--server", url, "--name", name])
            .args(["--image", IMAGE, "--no-cache", "--no-cache-volumes"])
            .args(extra)
            .env("RUNNER_TOKEN", &self.agent_token)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Lines::collect(child.stderr.take().unwrap());
        let agent = Agent {
            child,
            name: name.to_string(),
            _data: data,
            stderr,
        };
        agent.wait_for("waiting for jobs");
        agent
    }

    /// The agent role's token (for a test that speaks the protocol itself).
    pub fn agent_token(&self) -> &str {
        &self.agent_token
    }

    /// The submit role's token (for a test that speaks HTTP itself).
    pub fn submit_token(&self) -> &str {
        &self.submit_token
    }

    /// `runner` with RUNNER_SERVER and a submit token.
    pub fn cli(&self) -> Command {
        let mut c = runner();
        c.env("RUNNER_SERVER", &self.url)
            .env("RUNNER_TOKEN", &self.submit_token);
        c
    }

    /// `runner submit --source DIR --project PROJECT extra…` (not waiting): the job id.
    pub fn submit(&self, source: &Path, project: &str, extra: &[&str]) -> String {
        let out = self
            .cli()
            .args(["submit", "--source"])
            .arg(source)
            .args(["--project", project])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "submit: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// `runner submit` through the server at `url` (a replica): the job id.
    pub fn submit_at(&self, url: &str, source: &Path, project: &str, extra: &[&str]) -> String {
        let out = self
            .cli_at(url)
            .args(["submit", "--source"])
            .arg(source)
            .args(["--project", project])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "submit: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// `runner jobs show ID --json`.
    pub fn job(&self, id: &str) -> Value {
        let out = self
            .cli()
            .args(["jobs", "show", id, "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "jobs show: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Waits until the job satisfies `pred`; returns it.
    pub fn wait_job(
        &self,
        id: &str,
        what: &str,
        secs: u64,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually(what, secs, || {
            let j = self.job(id);
            pred(&j).then_some(j)
        })
    }

    /// `runner jobs logs ID --json [--attempt N]`: the events.
    pub fn log_events(&self, id: &str, attempt: Option<u32>) -> Vec<Value> {
        let mut c = self.cli();
        c.args(["jobs", "logs", id, "--json"]);
        if let Some(a) = attempt {
            c.args(["--attempt", &a.to_string()]);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "jobs logs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
            .collect()
    }

    /// Every byte the server stored (database, WAL, blobs), for leak checks.
    pub fn stored_bytes(&self) -> Vec<(PathBuf, Vec<u8>)> {
        walkdir::WalkDir::new(self.dir.path())
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .filter_map(|e| Some((e.path().to_path_buf(), std::fs::read(e.path()).ok()?)))
            .collect()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// `runner server --listen ADDR` on `db` with blobs in `dir/blobs`: the process, its URL
/// and its output.
fn spawn_server(
    dir: &Path,
    db: &str,
    lease_secs: u64,
    addr: &str,
    extra: &[String],
) -> (Child, String, Lines) {
    spawn_server_checked(dir, db, lease_secs, addr, extra).expect("the server did not start")
}

/// As [`spawn_server`], `None` when the server exits without saying where it listens.
fn spawn_server_checked(
    dir: &Path,
    db: &str,
    lease_secs: u64,
    addr: &str,
    extra: &[String],
) -> Option<(Child, String, Lines)> {
    let mut server = runner()
        .arg("--data-dir")
        .arg(dir.join("server-data"))
        .args(["server", "--listen", addr, "--database", db])
        .arg("--blobs")
        .arg(dir.join("blobs"))
        .args(["--lease-secs", &lease_secs.to_string()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let Some(url) = line.trim().strip_prefix("listening on ") else {
        let _ = server.kill();
        let _ = server.wait();
        return None;
    };
    let url = url.to_string();
    Some((server, url, Lines::collect(out)))
}

/// A second `runner server` on the pool's store; killed when dropped.
pub struct Replica {
    child: Child,
    pub url: String,
    _out: Lines,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The log lines (`log` events) of a list of events.
pub fn log_lines(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "log")
        .filter_map(|e| e["line"].as_str().map(str::to_string))
        .collect()
}

pub struct Agent {
    child: Child,
    pub name: String,
    _data: tempfile::TempDir,
    pub stderr: Lines,
}

impl Agent {
    /// Waits until the agent's stderr has a line containing `text`.
    pub fn wait_for(&self, text: &str) {
        eventually(&format!("agent {} to say {text:?}", self.name), 60, || {
            self.stderr.text().contains(text).then_some(())
        });
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn sigterm(&self) {
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Waits for the agent to exit on its own.
    pub fn wait_exit(&mut self, secs: u64) -> ExitStatus {
        let name = self.name.clone();
        eventually(&format!("agent {name} to exit"), secs, || {
            self.child.try_wait().unwrap()
        })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Build containers of `project` (any state).
pub fn project_containers(project: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=io.runner.project={project}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Removes the build containers of `project` when dropped (a killed agent leaves its own).
pub struct Containers(pub String);

impl Drop for Containers {
    fn drop(&mut self) {
        let ids = project_containers(&self.0);
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
    }
}

/// A unique project name for a test.
pub fn project(test: &str) -> String {
    let n: u32 = rand::random();
    format!("pool-{test}-{n:08x}")
}

/// A loopback TCP proxy the test can cut (a network partition between an agent and the
/// server): while cut, open connections are shut down and new ones closed at once.
pub struct Proxy {
    pub url: String,
    cut: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    /// A proxy in front of `server` (`http://127.0.0.1:PORT`).
    pub fn start(server: &str) -> Proxy {
        use std::net::{TcpListener, TcpStream};
        let target = server
            .strip_prefix("http://")
            .unwrap()
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c, k) = (cut.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if c.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(upstream) = TcpStream::connect(&target) else {
                    continue;
                };
                let pipe = |mut from: TcpStream, mut to: TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                };
                let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
                    continue;
                };
                if let (Ok(c3), Ok(u3)) = (client.try_clone(), upstream.try_clone()) {
                    k.lock().unwrap().extend([c3, u3]);
                }
                pipe(client, upstream);
                pipe(u2, c2);
            }
        });
        Proxy { url, cut, conns }
    }

    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn heal(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A source directory holding `files` (relative path, text).
pub fn source(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = d.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    d
}

/// A job's attempts as (number, agent, outcome).
pub fn attempts(job: &Value) -> Vec<(u64, String, String)> {
    job["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["attempt"].as_u64().unwrap(),
                a["agent"].as_str().unwrap_or("").to_string(),
                a["outcome"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Waits until the job's current attempt has printed `line` (the build is really running).
pub fn wait_for_log(pool: &Pool, id: &str, line: &str) {
    eventually(&format!("job {id} to print {line:?}"), 120, || {
        let job = pool.job(id);
        let attempt = job["attempt"].as_u64()? as u32;
        (attempt > 0
            && log_lines(&pool.log_events(id, Some(attempt)))
                .iter()
                .any(|l| l == line))
        .then_some(())
    });
}
