//! The agent pool end to end, as real processes on the real Docker engine: `runner server`
//! on SQLite, `runner agent`s, `runner submit --wait` and `runner jobs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support_pool::{
    attempts, eventually, log_lines, project, project_containers, source, wait_for_log, Containers,
    Pool, Proxy,
};
use serde_json::Value;
use std::process::Stdio;
use std::time::Instant;

const TOKEN: &str = "pool-tok-Zq81xKv3Lm";

#[test]
fn submit_wait_runs_on_an_agent_with_exit_code_artifacts_and_a_masked_log() {
    let pool = Pool::start(30);
    let secrets = tempfile::tempdir().unwrap();
    let secrets_file = secrets.path().join("secrets.json");
    std::fs::write(
        &secrets_file,
        serde_json::json!({"parameters": {"/pool/token": TOKEN}}).to_string(),
    )
    .unwrap();
    let _agent = pool.agent("a1", &["--secrets-file", secrets_file.to_str().unwrap()]);
    let name = project("roundtrip");
    let _containers = Containers(name.clone());
    let src = source(&[
        (
            "buildspec.yml",
            r#"version: 0.2
env:
  parameter-store:
    TOKEN: /pool/token
phases:
  build:
    commands:
      - echo "hello from the pool"
      - echo "token is $TOKEN"
      - mkdir -p out/sub && echo "artifact body" > out/sub/a.txt
artifacts:
  files:
    - out/sub/a.txt
"#,
        ),
        (
            "fail.yml",
            "version: 0.2\nphases:\n  build:\n    commands:\n      - echo failing now\n      - exit 7\n",
        ),
    ]);

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
    assert!(stdout.contains("hello from the pool"), "{stdout}");
    assert!(stdout.contains("token is "), "{stdout}");
    assert!(!stdout.contains(TOKEN) && !stderr.contains(TOKEN));
    let id = stderr
        .lines()
        .find_map(|l| l.strip_prefix("runner: job ")?.split_whitespace().next())
        .unwrap_or_else(|| panic!("no job id in {stderr}"))
        .to_string();

    let job = pool.job(&id);
    assert_eq!(job["state"], "succeeded");
    assert_eq!(job["exit_code"], 0);
    assert_eq!(attempts(&job), vec![(1, "a1".into(), "succeeded".into())]);

    // The whole log is there, in order, and masked.
    let events = pool.log_events(&id, None);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert!(kinds.contains(&"build_started"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "build_ended").count(), 1);
    let ended = events.iter().find(|e| e["event"] == "build_ended").unwrap();
    assert_eq!(ended["status"], "SUCCEEDED");
    let lines = log_lines(&events);
    assert!(
        lines.contains(&"hello from the pool".to_string()),
        "{lines:?}"
    );
    let token_line = lines.iter().find(|l| l.starts_with("token is ")).unwrap();
    assert_ne!(token_line, &format!("token is {TOKEN}"));
    for (path, bytes) in pool.stored_bytes() {
        assert!(
            !bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
            "the server stored the secret's value in {}",
            path.display()
        );
    }

    // Artifacts: listed, downloadable, same bytes.
    let list = pool
        .cli()
        .args(["jobs", "artifacts", &id, "--json"])
        .output()
        .unwrap();
    assert!(list.status.success());
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    let names: Vec<&str> = list["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    let name_a = names
        .iter()
        .find(|n| n.ends_with("out/sub/a.txt"))
        .unwrap_or_else(|| panic!("no artifact a.txt in {names:?}"));
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
    assert_eq!(
        std::fs::read_to_string(dl.path().join(name_a)).unwrap(),
        "artifact body\n"
    );

    // A failing build: --wait exits 1 like `runner build`.
    let out = pool
        .cli()
        .args(["submit", "--wait", "--buildspec", "fail.yml", "--source"])
        .arg(src.path())
        .args(["--project", &name])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("failing now"), "{stdout}");
}

#[test]
fn a_killed_agents_job_runs_again_on_the_other_and_completes_once() {
    let pool = Pool::start(4);
    let name = project("kill9");
    let _containers = Containers(name.clone());
    let src = source(&[(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo begin\n      - sleep 6\n      - echo done\n",
    )]);
    let mut a1 = pool.agent("a1", &[]);
    // Follow it the way a script would.
    let follower = pool
        .cli()
        .args(["submit", "--wait", "--source"])
        .arg(src.path())
        .args(["--project", &name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = eventually("the job to be queued", 60, || {
        let out = pool.cli().args(["jobs", "list", "--json"]).output().ok()?;
        let list: Value = serde_json::from_slice(&out.stdout).ok()?;
        list["jobs"]
            .as_array()?
            .iter()
            .find(|j| j["project"] == name.as_str())
            .and_then(|j| j["id"].as_str().map(str::to_string))
    });
    wait_for_log(&pool, &id, "begin");
    let job = pool.job(&id);
    assert_eq!(attempts(&job)[0].1, "a1");
    let _a2 = pool.agent("a2", &[]);
    a1.kill9();

    let out = follower.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("following attempt 2"), "{stderr}");

    let job = pool.job(&id);
    assert_eq!(job["state"], "succeeded");
    assert_eq!(job["attempt"], 2);
    assert_eq!(
        attempts(&job),
        vec![
            (1, "a1".into(), "lost".into()),
            (2, "a2".into(), "succeeded".into())
        ]
    );
    // Attempt 2's log is complete: one build, from start to end.
    let events = pool.log_events(&id, Some(2));
    let lines = log_lines(&events);
    assert_eq!(lines, vec!["begin", "done"]);
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "build_ended")
            .count(),
        1
    );
}

#[test]
fn sigterm_drains_the_running_job_and_takes_no_new_one() {
    let pool = Pool::start(30);
    let name = project("drain");
    let _containers = Containers(name.clone());
    let src = source(&[(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo begin\n      - sleep 3\n      - echo finished\n",
    )]);
    let mut agent = pool.agent("drainer", &[]);
    let first = pool.submit(src.path(), &name, &[]);
    wait_for_log(&pool, &first, "begin");
    agent.sigterm();
    agent.wait_for("draining");
    let second = pool.submit(src.path(), &name, &[]);
    let status = agent.wait_exit(120);
    assert!(status.success(), "{status:?}\n{}", agent.stderr.text());

    let job = pool.job(&first);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(log_lines(&pool.log_events(&first, None)).contains(&"finished".to_string()));
    let job = pool.job(&second);
    assert_eq!(job["state"], "queued", "{job}");
    assert_eq!(job["attempt"], 0, "{job}");
    assert!(attempts(&job).is_empty(), "{job}");
}

#[test]
fn a_cancel_reaches_the_agent_and_removes_the_build_container() {
    let pool = Pool::start(30);
    let name = project("cancel");
    let _containers = Containers(name.clone());
    let src = source(&[(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo sleeping\n      - sleep 300\n",
    )]);
    let _agent = pool.agent("canceller", &[]);
    let follower = pool
        .cli()
        .args(["submit", "--wait", "--source"])
        .arg(src.path())
        .args(["--project", &name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = eventually("the job to be queued", 60, || {
        let out = pool.cli().args(["jobs", "list", "--json"]).output().ok()?;
        let list: Value = serde_json::from_slice(&out.stdout).ok()?;
        list["jobs"]
            .as_array()?
            .iter()
            .find(|j| j["project"] == name.as_str())
            .and_then(|j| j["id"].as_str().map(str::to_string))
    });
    wait_for_log(&pool, &id, "sleeping");
    assert!(!project_containers(&name).is_empty());

    let asked = Instant::now();
    let out = pool.cli().args(["jobs", "cancel", &id]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job = pool.wait_job(&id, "the job to end", 120, |j| j["state"] != "running");
    eprintln!(
        "cancel → job {} after {} ms",
        job["state"],
        asked.elapsed().as_millis()
    );
    assert_eq!(job["state"], "cancelled", "{job}");
    assert_eq!(job["exit_code"], 130, "{job}");
    assert!(
        project_containers(&name).is_empty(),
        "the build container is still there"
    );
    let out = follower.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_second_sigterm_stops_the_build_ships_its_log_and_gives_the_job_back() {
    let pool = Pool::start(30);
    let name = project("abort");
    let _containers = Containers(name.clone());
    let src = source(&[(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo begin\n      - sleep 300\n",
    )]);
    let mut agent = pool.agent("aborter", &[]);
    let id = pool.submit(src.path(), &name, &[]);
    wait_for_log(&pool, &id, "begin");
    agent.sigterm();
    agent.wait_for("draining");
    agent.sigterm();
    let status = agent.wait_exit(120);
    assert!(status.success(), "{status:?}\n{}", agent.stderr.text());
    assert!(
        project_containers(&name).is_empty(),
        "the build container is still there"
    );

    // Back in the queue at once (not after a lease expiry), attempt 1 kept as released.
    let job = pool.job(&id);
    assert_eq!(job["state"], "queued", "{job}");
    assert_eq!(
        attempts(&job),
        vec![(1, "aborter".into(), "released".into())]
    );
    // Its log was shipped before the release, up to the stop.
    let events = pool.log_events(&id, Some(1));
    assert!(log_lines(&events).contains(&"begin".to_string()));
    assert!(events
        .iter()
        .any(|e| e["event"] == "notice"
            && e["message"].as_str().unwrap_or("").contains("given back")));
}

#[test]
fn a_partitioned_agents_late_log_and_completion_are_refused() {
    let pool = Pool::start(4);
    let name = project("zombie");
    let _containers = Containers(name.clone());
    let src = source(&[(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo begin\n      - sleep 8\n      - echo done\n",
    )]);
    let proxy = Proxy::start(&pool.url);
    let zombie = pool.agent_via(&proxy.url, "zombie", &[]);
    let id = pool.submit(src.path(), &name, &[]);
    wait_for_log(&pool, &id, "begin");
    assert_eq!(attempts(&pool.job(&id))[0].1, "zombie");
    proxy.cut();
    // The lease runs out; the job runs again on a healthy agent and succeeds.
    let _healthy = pool.agent("healthy", &[]);
    let job = pool.wait_job(&id, "the job to finish", 120, |j| {
        j["state"] != "running" && j["state"] != "queued"
    });
    assert_eq!(job["state"], "succeeded", "{job}");
    // The zombie comes back with a finished build: its log and completion are refused.
    proxy.heal();
    zombie.wait_for("lost the lease of job");
    let job = pool.job(&id);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["exit_code"], 0, "{job}");
    assert_eq!(
        attempts(&job),
        vec![
            (1, "zombie".into(), "lost".into()),
            (2, "healthy".into(), "succeeded".into())
        ]
    );
    let late = log_lines(&pool.log_events(&id, Some(1)));
    assert!(
        !late.contains(&"done".to_string()),
        "a zombie's late line was stored: {late:?}"
    );
    assert_eq!(
        log_lines(&pool.log_events(&id, Some(2))),
        vec!["begin", "done"]
    );
}

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_git_source_is_cloned_by_the_agent_at_the_revision() {
    let pool = Pool::start(30);
    let name = project("git");
    let _containers = Containers(name.clone());
    let repo = source(&[(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo first revision\n",
    )]);
    git(repo.path(), &["init", "-q", "-b", "main"]);
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-q", "-m", "one"]);
    let first = git(repo.path(), &["rev-parse", "HEAD"]);
    std::fs::write(
        repo.path().join("buildspec.yml"),
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo second revision\n",
    )
    .unwrap();
    git(repo.path(), &["commit", "-q", "-am", "two"]);
    let _agent = pool.agent("gitter", &[]);
    let url = format!("file://{}", repo.path().display());
    let out = pool
        .cli()
        .args(["submit", "--wait", "--git", &url, "--revision", &first])
        .args(["--project", &name])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.contains(&"first revision"), "{stdout}");
    assert!(!lines.contains(&"second revision"), "{stdout}");

    // A revision that does not exist: the job ends in error (exit 2) with git's reason.
    let out = pool
        .cli()
        .args([
            "submit",
            "--wait",
            "--git",
            &url,
            "--revision",
            "no-such-rev",
        ])
        .args(["--project", &name])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("git checkout no-such-rev failed"),
        "{stdout}"
    );
}

/// Build numbers are the server's, per project (CodeBuild's `buildNumber`), not each
/// agent's: a project's second build runs on a fresh agent (its own, empty data
/// directory) and is still build 2, while another project's first build is 1. Before,
/// every agent counted from its own data directory, so this second build was 1 again.
#[test]
fn build_numbers_come_from_the_server_per_project() {
    let pool = Pool::start(30);
    let name = project("numbers");
    let other = format!("{name}-b");
    let _containers = Containers(name.clone());
    let _other_containers = Containers(other.clone());
    let src = source(&[(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo \"number=$CODEBUILD_BUILD_NUMBER id=$CODEBUILD_BUILD_ID\"\n",
    )]);
    let number_of = |id: &str| -> (u64, String) {
        let job = pool.wait_job(id, "the job to end", 180, |j| {
            j["state"] != "queued" && j["state"] != "running"
        });
        assert_eq!(job["state"], "succeeded", "{job}");
        let lines = log_lines(&pool.log_events(id, None));
        let line = lines
            .iter()
            .find(|l| l.starts_with("number="))
            .unwrap_or_else(|| panic!("{lines:?}"))
            .clone();
        (job["build_number"].as_u64().unwrap_or(0), line)
    };

    let mut first_agent = pool.agent("first", &[]);
    let one = pool.submit(src.path(), &name, &[]);
    let (n1, line1) = number_of(&one);
    first_agent.kill9();

    let _fresh = pool.agent("fresh", &[]);
    let two = pool.submit(src.path(), &name, &[]);
    let b1 = pool.submit(src.path(), &other, &[]);
    let (n2, line2) = number_of(&two);
    let (nb, lineb) = number_of(&b1);
    assert_eq!((n1, n2, nb), (1, 2, 1));
    assert!(
        line1.starts_with(&format!("number=1 id={name}:")),
        "{line1}"
    );
    assert!(
        line2.starts_with(&format!("number=2 id={name}:")),
        "{line2}"
    );
    assert!(
        lineb.starts_with(&format!("number=1 id={other}:")),
        "{lineb}"
    );
    let out = pool.cli().args(["jobs", "show", &two]).output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("build:     #2"), "{shown}");

    // `runner jobs logs` prints what `runner build` prints: CodeBuild's `[Container]`
    // lines with CodeBuild's timestamp (not RFC 3339), the output, the summary.
    let out = pool.cli().args(["jobs", "logs", &two]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let entering = text
        .lines()
        .find(|l| l.ends_with(" Entering phase BUILD"))
        .unwrap_or_else(|| panic!("{text}"));
    let stamp = entering
        .strip_prefix("[Container] ")
        .and_then(|r| r.strip_suffix(" Entering phase BUILD"))
        .unwrap_or_else(|| panic!("{entering}"));
    let shape: String = stamp
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "9999/99/99 99:99:99.999999", "{entering}");
    assert!(text.lines().any(|l| l == line2), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("Build SUCCEEDED in ")),
        "{text}"
    );
    // --timestamps: every line carries the recorded RFC 3339 time.
    let out = pool
        .cli()
        .args(["jobs", "logs", "--timestamps", &two])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let output_line = text
        .lines()
        .find(|l| l.ends_with(&line2))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        output_line.contains('T') && output_line.contains("Z "),
        "{output_line}"
    );
}
