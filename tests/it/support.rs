//! Shared helpers: the local stack (Docker engine + base image) is checked once, and each
//! test gets a project in a temporary directory plus a way to run the real binary.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub const IMAGE: &str = "runner/busybox:latest";

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Makes sure the Docker engine answers and the base image exists, building it with the
/// project's own script when it is missing. Panics (failing the test) when the stack
/// cannot be had: a test that needs Docker must never pass without it.
pub fn stack() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let r = READY.get_or_init(|| {
        let info = Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output();
        match info {
            Ok(o) if o.status.success() => {}
            _ => {
                return Err(
                    "the Docker engine is not reachable: run `bash scripts/setup.sh`".into(),
                )
            }
        }
        let has = Command::new("docker")
            .args(["image", "inspect", IMAGE])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !has {
            let st = Command::new("bash")
                .arg(repo_root().join("scripts/images.sh"))
                .status()
                .map_err(|e| e.to_string())?;
            if !st.success() {
                return Err("scripts/images.sh failed".into());
            }
        }
        Ok(())
    });
    if let Err(e) = r {
        panic!("local stack unavailable: {e}");
    }
}

/// Containers that carry the runner's build-id label, optionally for one build.
pub fn runner_containers(build_id: Option<&str>) -> usize {
    let filter = match build_id {
        Some(id) => format!("label=io.runner.build-id={id}"),
        None => "label=io.runner.build-id".to_string(),
    };
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter", &filter])
        .output()
        .unwrap_or_else(|e| panic!("docker ps: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

pub struct Project {
    pub dir: tempfile::TempDir,
    pub data: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Self {
        stack();
        Project {
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")),
            data: tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, content: &str) -> &Self {
        let p = self.dir.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir: {e}"));
        }
        std::fs::write(&p, content).unwrap_or_else(|e| panic!("write {rel}: {e}"));
        self
    }

    /// `runner` with a private data directory, no colours, CI mode.
    pub fn runner(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
        c.env("RUNNER_DATA_DIR", self.data.path())
            .env("NO_COLOR", "1")
            .env("CI", "true")
            .env_remove("RUNNER_IMAGE")
            .current_dir(self.dir.path());
        c
    }

    /// `runner build --json` on `buildspec.yml` with the base image, plus `extra` flags.
    pub fn build(&self, extra: &[&str]) -> Run {
        let mut c = self.runner();
        c.args(["build", "--json", "--image", IMAGE, "--source"])
            .arg(self.dir.path())
            .args(extra);
        Run::from(c.output().unwrap_or_else(|e| panic!("run runner: {e}")))
    }
}

/// Removes the local cache volumes `runner build` kept for `project` (named after it).
pub fn remove_cache_volumes(project: &str) {
    let prefix = runner::cache::volume_prefix(project);
    let Ok(out) = Command::new("docker")
        .args(["volume", "ls", "-q", "--filter", &format!("name={prefix}")])
        .output()
    else {
        return;
    };
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    if !names.is_empty() {
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f"])
            .args(&names)
            .output();
    }
}

/// A helper process (a git server, a forge stand-in) killed and reaped when dropped.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes a project's cache volumes when dropped (for builds run with `--project NAME`).
pub struct CacheVolumes(pub String);

impl Drop for CacheVolumes {
    fn drop(&mut self) {
        remove_cache_volumes(&self.0);
    }
}

impl Drop for Project {
    /// Builds keep cache volumes named after the project (the directory's name).
    fn drop(&mut self) {
        if let Some(name) = self.dir.path().file_name() {
            remove_cache_volumes(&name.to_string_lossy());
        }
    }
}

/// The outcome of one `runner` invocation with `--json`.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub events: Vec<Value>,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        let events = stdout
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect();
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout,
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            events,
        }
    }
}

impl Run {
    /// The build's output lines, in order.
    pub fn logs(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["event"] == "log")
            .filter_map(|e| e["line"].as_str().map(str::to_string))
            .collect()
    }

    pub fn has_line(&self, line: &str) -> bool {
        self.logs().iter().any(|l| l == line)
    }

    /// The final `build_ended` event.
    pub fn result(&self) -> &Value {
        self.events
            .iter()
            .rev()
            .find(|e| e["event"] == "build_ended")
            .unwrap_or_else(|| {
                panic!(
                    "no build_ended event; stderr:\n{}\nstdout:\n{}",
                    self.stderr, self.stdout
                )
            })
    }

    pub fn status(&self) -> String {
        self.result()["status"].as_str().unwrap_or("").to_string()
    }

    /// The phases that ran, as `NAME=STATUS`, from the final result.
    pub fn phases(&self) -> Vec<String> {
        self.result()["phases"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        format!(
                            "{}={}",
                            p["phase"].as_str().unwrap_or("?"),
                            p["status"].as_str().unwrap_or("?")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn build_id(&self) -> String {
        self.result()["build_id"].as_str().unwrap_or("").to_string()
    }

    pub fn debug(&self) -> String {
        format!(
            "exit {}\nstderr:\n{}\nlogs:\n{}",
            self.code,
            self.stderr,
            self.logs().join("\n")
        )
    }
}

/// A finished process's exit code, standard output and standard error, for assertion
/// messages.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `docker import` of a root filesystem made of `files` (path, contents; mode 0644) as
/// image `tag`, on the real engine.
/// The previous run's image of that tag is removed first: `docker import` makes a new
/// image id every time (the creation time differs), so each run would otherwise leave a
/// dangling `<none>` image behind.
pub fn docker_import(tag: &str, files: &[(&str, &[u8])]) {
    use std::io::Write;
    let _ = Command::new("docker")
        .args(["image", "rm", "--force", tag])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, *data)
            .unwrap_or_else(|e| panic!("tar {path}: {e}"));
    }
    let tar = b.into_inner().unwrap_or_else(|e| panic!("tar: {e}"));
    let mut child = Command::new("docker")
        .args(["import", "-", tag])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("docker import {tag}: {e}"));
    child
        .stdin
        .take()
        .unwrap_or_else(|| panic!("docker import {tag}: no stdin"))
        .write_all(&tar)
        .unwrap_or_else(|e| panic!("docker import {tag}: {e}"));
    let status = child
        .wait()
        .unwrap_or_else(|e| panic!("docker import {tag}: {e}"));
    assert!(status.success(), "docker import {tag}");
}

/// A GitHub token of the right shape, made fresh so no file in the repository holds one.
pub fn fresh_github_token() -> String {
    let mut x: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
        | 1;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let body: String = (0..36)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            alphabet[(x % alphabet.len() as u64) as usize] as char
        })
        .collect();
    format!("ghp_{body}")
}
