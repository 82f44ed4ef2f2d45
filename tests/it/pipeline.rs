//! The pipeline API as an agent or a GitHub Actions step would drive it: a request built
//! in code, `prepare` then `execute` with an in-memory reporter, the outcome read as
//! values. Diagnostics must arrive as events, not on standard error.

use crate::support::{repo_root, runner_containers, Project, IMAGE};
use crate::support_registry::Registry;
use runner::event::{BuildStatus, Event, Level, Recorder};
use runner::pipeline::{self, BuildRequest, CacheChoice, Outcome, PrepareError, Release, Verdict};
use runner::run::Canceller;
use std::sync::Arc;

const TOKEN: &str = "tok-pipeline-7Hq2Lx9Vb";

fn request(p: &Project) -> BuildRequest {
    let mut req = BuildRequest::new(p.path(), p.data.path());
    req.image = Some(IMAGE.into());
    req.cache = CacheChoice::Off;
    req.cache_volumes = false;
    req.host_ca = pipeline::HostCa::Never;
    req
}

fn events(rec: &Recorder) -> Vec<Event> {
    rec.0.lock().map(|e| e.clone()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_reports_diagnostics_as_events_and_execute_runs_the_build() {
    let p = Project::new();
    p.write(
        "secrets.json",
        &serde_json::json!({"parameters": {"/app/token": TOKEN, "/app/pin": "123"}}).to_string(),
    );
    p.write(
        "buildspec.yml",
        "version: 0.2\nenv:\n  parameter-store:\n    TOKEN: /app/token\n    PIN: /app/pin\nphases:\n  build:\n    colour: red\n    commands:\n      - echo \"token $TOKEN\"\n",
    );
    let mut req = request(&p);
    req.secrets_file = Some(p.path().join("secrets.json"));
    let rec = Arc::new(Recorder::default());

    let prepared = pipeline::prepare(req, rec.as_ref())
        .await
        .unwrap_or_else(|e| panic!("prepare: {e}"));
    // Before execute: only diagnostics, and no container for the planned build.
    let before = events(&rec);
    let diags: Vec<_> = before
        .iter()
        .map(|e| match e {
            Event::Diagnostic(d) => d.clone(),
            other => panic!("prepare emitted {other:?}"),
        })
        .collect();
    assert!(
        diags.iter().any(|d| d.level == Level::Warning
            && d.file
                .as_deref()
                .is_some_and(|f| f.ends_with("buildspec.yml"))
            && d.line == Some(8)
            && d.message.contains("colour")),
        "{diags:?}"
    );
    assert!(
        diags.iter().any(|d| d.level == Level::Warning
            && d.file.is_none()
            && d.message
                .starts_with("secret PIN is not masked in the output")),
        "{diags:?}"
    );
    let plans = prepared.plans();
    assert_eq!(plans.len(), 1);
    let build_id = plans[0].build_id.clone();
    assert_eq!(runner_containers(Some(&build_id)), 0);
    let log_file = prepared
        .log_file()
        .map(|l| l.to_path_buf())
        .unwrap_or_else(|| panic!("no log file"));

    let (_keep, cancel) = Canceller::new();
    let outcome = pipeline::execute(prepared, rec.clone(), cancel).await;
    assert_eq!(outcome.verdict(), Verdict::Succeeded, "{outcome:?}");
    match &outcome {
        Outcome::Build {
            result,
            release: Release::None,
        } => {
            assert_eq!(result.status, BuildStatus::Succeeded);
            assert_eq!(result.build_id, build_id);
        }
        other => panic!("{other:?}"),
    }
    let all = events(&rec);
    let logs: Vec<&str> = all
        .iter()
        .filter_map(|e| match e {
            Event::Log { line, .. } => Some(line.as_str()),
            _ => None,
        })
        .collect();
    // Every reporter execute is given sits behind the build's masker.
    assert!(logs.contains(&"token ***"), "{logs:?}");
    assert!(!format!("{all:?}").contains(TOKEN));
    let text = std::fs::read_to_string(&log_file).unwrap_or_default();
    assert!(
        text.contains("Entering phase BUILD") && text.contains("token ***"),
        "{text}"
    );
    assert_eq!(runner_containers(Some(&build_id)), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_fails_in_prepare_and_nothing_runs() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo hi\n",
    );
    let mut req = request(&p);
    req.image = Some("runner/does-not-exist:pipeline".into());
    let rec = Recorder::default();
    match pipeline::prepare(req, &rec).await {
        Err(PrepareError::Docker(e)) => {
            assert!(e.to_string().contains("is not on this machine"), "{e}")
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("prepared with a missing image"),
    }
    assert!(events(&rec).is_empty());
    // No build number was taken: nothing was planned.
    assert!(!p.data.path().join("projects").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_outcome_lists_every_planned_build() {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        r#"version: 0.2
batch:
  build-graph:
    - identifier: a
    - identifier: b
      depend-on:
        - a
phases:
  build:
    commands:
      - test "$CODEBUILD_BATCH_BUILD_IDENTIFIER" != a
"#,
    );
    let mut req = request(&p);
    req.batch = Some(2);
    let rec = Arc::new(Recorder::default());
    let prepared = pipeline::prepare(req, rec.as_ref())
        .await
        .unwrap_or_else(|e| panic!("prepare: {e}"));
    assert!(prepared.is_batch());
    assert_eq!(prepared.plans().len(), 2);
    let (_keep, cancel) = Canceller::new();
    let outcome = pipeline::execute(prepared, rec.clone(), cancel).await;
    assert_eq!(outcome.verdict(), Verdict::Failed);
    let Outcome::Batch(summary) = &outcome else {
        panic!("{outcome:?}")
    };
    let rows: Vec<(&str, Option<BuildStatus>)> = summary
        .builds
        .iter()
        .map(|b| (b.identifier.as_str(), b.status))
        .collect();
    assert_eq!(rows, [("a", Some(BuildStatus::Failed)), ("b", None)]);
    // The summary is the batch's last event, for every reporter.
    assert_eq!(
        events(&rec).last(),
        Some(&Event::BatchEnded(summary.clone()))
    );
}

/// A project whose image goes to `registry` (`127.0.0.1:PORT`), with a file naming `job`.
fn image_project(job: &str, registry: &str) -> Project {
    let p = Project::new();
    p.write(
        "buildspec.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo built\n",
    );
    p.write("job.txt", &format!("{job}-{}\n", std::process::id()));
    p.write(
        "Dockerfile",
        &format!("FROM {IMAGE}\nCOPY job.txt /job.txt\n"),
    );
    p.write(
        "runner.yml",
        &format!("name: creds-{job}\nimage:\n  repository: {registry}/creds-{job}\n  tags: [v1]\n"),
    );
    p
}

/// Two jobs in one process at once, each with its own registry credentials, each pushing
/// to a registry that accepts only its own user: both pushes land. Credentials come from
/// the request, not from the process environment (which can hold only one user).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_pipelines_push_with_their_own_registry_credentials() {
    use runner::publish::auth::RegistryAuth;
    use runner::publish::connect::{connect, ConnectOptions};
    use runner::publish::ImageRef;
    use runner::secrets::Secret;

    let (user_a, pass_a) = ("job-a-user", "job-a-Pw-7f3K9q");
    let (user_b, pass_b) = ("job-b-user", "job-b-Pw-2Lm8Zx");
    let reg_a = Registry::start_with(Some((user_a, pass_a)));
    let reg_b = Registry::start_with(Some((user_b, pass_b)));
    let (a, b) = (
        image_project("a", &reg_a.addr()),
        image_project("b", &reg_b.addr()),
    );
    let job = |p: &Project, user: &str, password: &str| {
        let mut req = request(p);
        req.credentials.registry_auth = RegistryAuth::basic(user, Secret::new(password));
        async move {
            let rec = Arc::new(Recorder::default());
            let prepared = pipeline::prepare(req, rec.as_ref())
                .await
                .unwrap_or_else(|e| panic!("prepare: {e}"));
            let (_keep, cancel) = Canceller::new();
            let outcome = pipeline::execute(prepared, rec.clone(), cancel).await;
            (outcome, events(&rec))
        }
    };
    let ((out_a, ev_a), (out_b, ev_b)) =
        tokio::join!(job(&a, user_a, pass_a), job(&b, user_b, pass_b));

    let (mut pushed, mut local_images) = (Vec::new(), Vec::new());
    for (outcome, events, reg, job) in [(&out_a, &ev_a, &reg_a, "a"), (&out_b, &ev_b, &reg_b, "b")]
    {
        let Outcome::Build {
            result,
            release: Release::Released(released),
        } = outcome
        else {
            panic!("job {job}: {outcome:?}\n{events:?}")
        };
        assert_eq!(result.status, BuildStatus::Succeeded);
        assert!(
            released
                .reference
                .starts_with(&format!("{}/creds-{job}@sha256:", reg.addr())),
            "{released:?}"
        );
        for (password, user) in [(pass_a, user_a), (pass_b, user_b)] {
            assert!(
                !format!("{events:?}").contains(password),
                "{user}'s password in the events"
            );
        }
        pushed.push((reg, job, released.digest.clone()));
        local_images.push(released.local_image.clone());
    }
    // The test's own images, off the shared engine.
    for image in &local_images {
        let _ = std::process::Command::new("docker")
            .args(["rmi", image])
            .output();
    }

    // Each registry holds its job's image for its own user and refuses the other job's.
    for (reg, job, digest) in pushed {
        let image = ImageRef::parse(&format!("{}/creds-{job}", reg.addr()))
            .unwrap_or_else(|e| panic!("{e}"));
        let fetch = |user: &str, password: &str| {
            let opts = ConnectOptions {
                auth: RegistryAuth::basic(user, Secret::new(password)),
                ..Default::default()
            };
            let (image, digest) = (image.clone(), digest.clone());
            async move {
                let connected = connect(&image, &opts, false).await?;
                connected
                    .registry
                    .get_manifest(&image.repository, &digest)
                    .await
            }
        };
        let (own, other) = if job == "a" {
            ((user_a, pass_a), (user_b, pass_b))
        } else {
            ((user_b, pass_b), (user_a, pass_a))
        };
        match fetch(own.0, own.1).await {
            Ok(Some(m)) => assert_eq!(m.digest, digest),
            other => panic!("job {job}'s image with its own user: {other:?}"),
        }
        assert!(
            fetch(other.0, other.1).await.is_err(),
            "registry {job} let the other job's user in"
        );
    }
}

/// A config repository with `deploy.yaml` pinning `image:v0`, served over smart HTTP by
/// `git http-backend` (tests/it/git_http.py) accepting only `token`; it logs whether each
/// request carried valid credentials.
struct ConfigRepo {
    root: tempfile::TempDir,
    url: String,
    child: std::process::Child,
}

impl ConfigRepo {
    fn start(token: &str, image: &str) -> ConfigRepo {
        use std::io::BufRead;
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let git = |dir: &std::path::Path, args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(["-c", "user.name=seed", "-c", "user.email=seed@localhost"])
                .args(args)
                .current_dir(dir)
                .output()
                .unwrap_or_else(|e| panic!("git: {e}"));
            assert!(out.status.success(), "git {args:?}: {out:?}");
        };
        let bare = root.path().join("srv/acme/config.git");
        let seed = root.path().join("seed");
        for d in [&bare, &seed] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{e}"));
        }
        git(&bare, &["init", "--quiet", "--bare", "-b", "main"]);
        std::fs::write(seed.join("deploy.yaml"), format!("image: {image}:v0\n"))
            .unwrap_or_else(|e| panic!("{e}"));
        git(&seed, &["init", "--quiet", "-b", "main"]);
        git(&seed, &["add", "-A"]);
        git(&seed, &["commit", "--quiet", "-m", "seed"]);
        git(&seed, &["push", "--quiet", &bare.to_string_lossy(), "main"]);
        let mut child = std::process::Command::new("python3")
            .arg(repo_root().join("tests/it/git_http.py"))
            .arg("--root")
            .arg(root.path().join("srv"))
            .args(["--token", token, "--port", "0", "--log"])
            .arg(root.path().join("http.log"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("python3 tests/it/git_http.py: {e}"));
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        let port = line.trim().trim_start_matches("PORT ").to_string();
        ConfigRepo {
            url: format!("http://127.0.0.1:{port}/acme/config.git"),
            root,
            child,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("http.log")).unwrap_or_default()
    }

    fn deploy_yaml(&self) -> String {
        let out = std::process::Command::new("git")
            .args(["show", "main:deploy.yaml"])
            .current_dir(self.root.path().join("srv/acme/config.git"))
            .output()
            .unwrap_or_else(|e| panic!("git show: {e}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for ConfigRepo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two jobs in one process at once, each with its own GitOps token, each deploying to a
/// config repository that accepts only its own token: both bumps land, and every request
/// either repository saw carried its own token (git first asks without credentials).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_pipelines_deploy_with_their_own_gitops_tokens() {
    use runner::secrets::{NamedSecrets, Secret};

    let registry = Registry::start(false);
    let (token_a, token_b) = ("ghs_jobA_Tok3n_9f8e7d6c", "ghs_jobB_Tok3n_1a2b3c4d");
    let image = |job: &str| format!("{}/tok-{job}", registry.addr());
    let (repo_a, repo_b) = (
        ConfigRepo::start(token_a, &image("a")),
        ConfigRepo::start(token_b, &image("b")),
    );
    let project = |job: &str, repo: &ConfigRepo| {
        let p = image_project(job, &registry.addr());
        p.write(
            "runner.yml",
            &format!(
                "name: tok-{job}\nimage:\n  repository: {}\n  tags: [v1]\ngitops:\n  repo: {}\n  forge: none\n  files: [deploy.yaml]\n",
                image(job),
                repo.url
            ),
        );
        p
    };
    let (a, b) = (project("a", &repo_a), project("b", &repo_b));
    let job = |p: &Project, token: &str| {
        let mut req = request(p);
        req.credentials.gitops_tokens =
            NamedSecrets::from_pairs([("RUNNER_GITOPS_TOKEN".to_string(), Secret::new(token))]);
        async move {
            let rec = Arc::new(Recorder::default());
            let prepared = pipeline::prepare(req, rec.as_ref())
                .await
                .unwrap_or_else(|e| panic!("prepare: {e}"));
            let (_keep, cancel) = Canceller::new();
            let outcome = pipeline::execute(prepared, rec.clone(), cancel).await;
            (outcome, events(&rec))
        }
    };
    let ((out_a, ev_a), (out_b, ev_b)) = tokio::join!(job(&a, token_a), job(&b, token_b));

    let mut local_images = Vec::new();
    for (outcome, events, repo, job) in
        [(&out_a, &ev_a, &repo_a, "a"), (&out_b, &ev_b, &repo_b, "b")]
    {
        let Outcome::Build {
            release: Release::Released(released),
            ..
        } = outcome
        else {
            panic!(
                "job {job}: {outcome:?}\n{events:?}\nserver log:\n{}",
                repo.log()
            )
        };
        local_images.push(released.local_image.clone());
        let pinned = format!("{}:v1@{}", image(job), released.digest);
        assert!(
            repo.deploy_yaml().contains(&pinned),
            "job {job}: {}",
            repo.deploy_yaml()
        );
        let log = repo.log();
        assert!(
            log.contains("POST /acme/config.git/git-receive-pack auth=valid"),
            "{log}"
        );
        assert!(
            !log.contains("auth=invalid"),
            "a wrong token was sent: {log}"
        );
        for token in [token_a, token_b] {
            assert!(
                !format!("{events:?}").contains(token),
                "a token in the events"
            );
        }
    }
    for image in &local_images {
        let _ = std::process::Command::new("docker")
            .args(["rmi", image])
            .output();
    }
}
