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
}

impl Pool {
    /// A server with leases of `lease_secs`.
    pub fn start(lease_secs: u64) -> Pool {
        stack();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("jobs.db").display().to_string();
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
        let mut server = runner()
            .arg("--data-dir")
            .arg(dir.path().join("server-data"))
            .args(["server", "--listen", "127.0.0.1:0", "--database", &db])
            .arg("--blobs")
            .arg(dir.path().join("blobs"))
            .args(["--lease-secs", &lease_secs.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(server.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from the server: {line:?}"))
            .to_string();
        let server_out = Lines::collect(out);
        Pool {
            dir,
            url,
            server,
            _server_out: server_out,
            agent_token,
            submit_token,
        }
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
