//! End-to-end tests of the GitOps write-back against real git (a bare repository served
//! by `git daemon` on loopback, real pushes, real hooks), the strict GitHub stand-in
//! (tests/it/forge_github.py, validating against GitHub's OpenAPI description) and
//! `kubectl kustomize`.
//!
//! Needs: git, python3 with `jsonschema`, npm (scripts/octokit-openapi.sh fetches
//! @octokit/openapi once into ~/.cache/runner-test), kubectl (Debian: kubernetes-client).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::KillOnDrop;
use crate::support_github::GitHubStandIn;
use runner::gitops::bump::{BumpStatus, Secret};
use runner::gitops::edit::{edit_content, Target};
use runner::gitops::forge::{ForgeKind, PrAction};
use runner::gitops::{bump, BumpOutcome, BumpRequest, GitopsConfig, GitopsError};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const TOKEN: &str = "ghs_TESTtoken0123456789abcdefSECRET";
const D1: &str = "sha256:1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a";
const D2: &str = "sha256:2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b";
const SHOP: &str = "ghcr.io/acme/shop";

// ---------------------------------------------------------------- helpers

fn fixtures() -> PathBuf {
    Path::new(ROOT).join("fixtures/gitops")
}

pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "seed")
        .env("GIT_AUTHOR_EMAIL", "seed@example.com")
        .env("GIT_COMMITTER_NAME", "seed")
        .env("GIT_COMMITTER_EMAIL", "seed@example.com")
        .output()
        .expect("git on PATH");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "port {port} never opened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A bare config repository `acme/config.git` seeded from fixtures/gitops and served by
/// `git daemon --enable=receive-pack`.
struct Remote {
    _tmp: tempfile::TempDir,
    bare: PathBuf,
    root: PathBuf,
    url: String,
    _daemon: KillOnDrop,
}

impl Remote {
    fn start() -> Remote {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("srv");
        let bare = root.join("acme/config.git");
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "--quiet", "--bare", "-b", "main"]);
        let seed = tmp.path().join("seed");
        copy_dir(&fixtures(), &seed);
        git(&seed, &["init", "--quiet", "-b", "main"]);
        git(&seed, &["add", "-A"]);
        git(&seed, &["commit", "--quiet", "-m", "seed"]);
        let bare_s = bare.to_string_lossy().to_string();
        git(&seed, &["push", "--quiet", &bare_s, "main"]);
        // A commit by "another client", kept aside for the race test.
        std::fs::write(seed.join("NOTES.md"), "edited by someone else\n").unwrap();
        git(&seed, &["add", "NOTES.md"]);
        git(&seed, &["commit", "--quiet", "-m", "someone else's change"]);
        git(
            &seed,
            &["push", "--quiet", &bare_s, "HEAD:refs/heads/competitor"],
        );
        // Runs before every service request; tests replace it (see `access_hook`).
        let access = root.join("access-hook.sh");
        std::fs::write(&access, "#!/bin/sh\nexit 0\n").unwrap();
        Command::new("chmod")
            .arg("+x")
            .arg(&access)
            .status()
            .unwrap();
        let port = free_port();
        let daemon = Command::new("git")
            .args([
                "daemon",
                &format!("--access-hook={}", access.display()),
                "--reuseaddr",
                "--export-all",
                "--enable=receive-pack",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={}", root.display()),
                &root.display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon");
        wait_port(port);
        Remote {
            _tmp: tmp,
            bare,
            root,
            url: format!("git://127.0.0.1:{port}/acme/config.git"),
            _daemon: KillOnDrop(daemon),
        }
    }

    fn hook(&self, name: &str, body: &str) {
        let p = self.bare.join("hooks").join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        git(
            &self.bare,
            &["config", "receive.denyNonFastForwards", "true"],
        );
        Command::new("chmod").arg("+x").arg(&p).status().unwrap();
    }

    /// Script run by git daemon before each service (`$1` = upload-pack/receive-pack).
    fn access_hook(&self, body: &str) {
        let p = self.root.join("access-hook.sh");
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\ncd '{}' || exit 1\n{body}\nexit 0\n",
                self.bare.display()
            ),
        )
        .unwrap();
    }

    fn rev(&self, r: &str) -> String {
        git(&self.bare, &["rev-parse", r])
    }

    fn show(&self, r: &str, file: &str) -> String {
        git(&self.bare, &["show", &format!("{r}:{file}")])
    }

    /// `main` is `other` plus exactly one commit: re-applied on top, nothing forced.
    fn assert_one_commit_on_top_of(&self, other: &str) {
        let other = self.rev(other);
        git(
            &self.bare,
            &["merge-base", "--is-ancestor", &other, "refs/heads/main"],
        );
        assert_eq!(
            self.count(&format!("{other}..main")),
            1,
            "re-applied on top, nothing forced"
        );
    }

    fn count(&self, range: &str) -> usize {
        git(&self.bare, &["rev-list", "--count", range])
            .parse()
            .unwrap()
    }

    /// One more commit on `main`, made by `change` in a fresh clone (links are committed
    /// as links).
    fn commit(&self, change: impl FnOnce(&Path)) {
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("work");
        let bare = self.bare.to_string_lossy().to_string();
        git(
            tmp.path(),
            &["clone", "--quiet", &bare, &work.to_string_lossy()],
        );
        change(&work);
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "--quiet", "-m", "hostile change"]);
        git(&work, &["push", "--quiet", "origin", "HEAD:main"]);
    }
}

/// The strict GitHub stand-in.
struct GitHub {
    _standin: GitHubStandIn,
    api: String,
}

impl GitHub {
    fn start(remote: &Remote) -> GitHub {
        let standin =
            GitHubStandIn::start(TOKEN, 0, &["--git-root".as_ref(), remote.root.as_os_str()]);
        GitHub {
            api: standin.api(),
            _standin: standin,
        }
    }

    async fn get(&self, path: &str) -> serde_json::Value {
        reqwest::get(format!("{}{path}", self.api))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn recorded(&self) -> Vec<serde_json::Value> {
        self.get("/_recorded")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn pulls(&self) -> Vec<serde_json::Value> {
        self.get("/_pulls")
            .await
            .get("acme/config")
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    async fn count(&self, method: &str, path_end: &str) -> usize {
        self.recorded()
            .await
            .iter()
            .filter(|r| {
                r["method"] == method && r["path"].as_str().unwrap_or("").ends_with(path_end)
            })
            .count()
    }
}

fn config(remote: &Remote, gh: Option<&GitHub>) -> GitopsConfig {
    let mut c = GitopsConfig::new(remote.url.clone());
    match gh {
        Some(g) => {
            c.forge = Some(ForgeKind::Github);
            // A bare host: the client appends /api/v3 like for GitHub Enterprise.
            c.forge_url = Some(g.api.clone());
            c.labels = vec!["deploy".into()];
        }
        None => c.forge = Some(ForgeKind::None),
    }
    c
}

fn request(config: GitopsConfig, image: &str, digest: &str, tag: Option<&str>) -> BumpRequest {
    BumpRequest {
        config,
        image: image.into(),
        digest: digest.into(),
        tag: tag.map(str::to_string),
        token: Some(Secret::new(TOKEN)),
    }
}

async fn run(req: &BumpRequest) -> BumpOutcome {
    match bump(req).await {
        Ok(o) => o,
        Err(e) => panic!("bump failed: {e}"),
    }
}

/// The CLI's `bump` command. Integrator: in the runner crate this is
/// `Command::new(env!("CARGO_BIN_EXE_runner")).args(["gitops", "bump"])`.
fn bump_cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
    c.args(["gitops", "bump"]);
    c
}

/// Run the CLI's bump with only the given token variables set.
fn cli(args: &[&str], token_env: &[(&str, &str)]) -> (bool, String, String) {
    let mut c = bump_cmd();
    c.args(args);
    for k in [
        "RUNNER_GITOPS_TOKEN",
        "GITHUB_TOKEN",
        "GITLAB_TOKEN",
        "GITEA_TOKEN",
    ] {
        c.env_remove(k);
    }
    for (k, v) in token_env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_is_created_then_idempotent_then_updated_not_duplicated() {
    let remote = Remote::start();
    let gh = GitHub::start(&remote);
    let mut cfg = config(&remote, Some(&gh));
    cfg.files = vec![
        "apps/shop/overlays/prod/kustomization.yaml".into(),
        "charts/api/values.yaml".into(),
    ];

    let first = run(&request(cfg.clone(), SHOP, D1, Some("1.1.0"))).await;
    assert_eq!(first.status, BumpStatus::Pushed);
    assert!(
        first.branch.starts_with("runner/bump/shop-"),
        "{}",
        first.branch
    );
    let mut want = cfg.files.clone();
    want.sort();
    assert_eq!(first.changed_files, want);
    let pr = first.pull_request.clone().expect("a PR");
    assert_eq!((pr.number, pr.action), (1, PrAction::Created));
    let tip1 = remote.rev(&format!("refs/heads/{}", first.branch));
    assert_eq!(Some(tip1.clone()), first.commit);
    let k = remote.show(&first.branch, "apps/shop/overlays/prod/kustomization.yaml");
    assert!(
        k.contains("  newTag: \"1.1.0\" # bumped by runner\n  digest: sha256:1a1a"),
        "{k}"
    );
    assert_eq!(
        remote.rev("refs/heads/main"),
        remote.rev("refs/heads/main^0")
    );
    let prs = gh.pulls().await;
    assert_eq!(prs.len(), 1);
    assert_eq!(prs[0]["labels"], serde_json::json!(["deploy"]));

    // Same digest again: no commit, no new PR.
    let again = run(&request(cfg.clone(), SHOP, D1, Some("1.1.0"))).await;
    assert_eq!(again.status, BumpStatus::AlreadyProposed);
    assert_eq!(again.commit, None);
    assert_eq!(remote.rev(&format!("refs/heads/{}", first.branch)), tip1);
    assert_eq!(
        again.pull_request.as_ref().map(|p| (p.number, p.action)),
        Some((1, PrAction::Existing))
    );
    assert_eq!(gh.count("POST", "/pulls").await, 1, "no second create");

    // New digest: one more commit on the same branch, the PR is updated, not duplicated.
    let third = run(&request(cfg.clone(), SHOP, D2, Some("1.2.0"))).await;
    assert_eq!(third.status, BumpStatus::Pushed);
    assert_eq!(third.branch, first.branch);
    assert_eq!(
        third.pull_request.as_ref().map(|p| (p.number, p.action)),
        Some((1, PrAction::Updated))
    );
    assert_eq!(remote.count(&format!("main..{}", first.branch)), 2);
    assert_eq!(gh.pulls().await.len(), 1);
    assert_eq!(gh.count("PATCH", "/pulls/1").await, 1);
    assert!(gh.pulls().await[0]["title"]
        .as_str()
        .unwrap()
        .contains("1.2.0"));
    // Every request the client sent was valid for GitHub's schema (no 4xx other than none).
    for r in gh.recorded().await {
        assert!(r["status"].as_u64().unwrap() < 400, "stand-in refused {r}");
        assert_eq!(r["auth"], "Bearer ***");
    }

    // The base already pins it (after "merging"): nothing at all.
    let merged = remote.rev(&format!("refs/heads/{}", first.branch));
    git(&remote.bare, &["update-ref", "refs/heads/main", &merged]);
    let noop = run(&request(cfg.clone(), SHOP, D2, Some("1.2.0"))).await;
    assert_eq!(noop.status, BumpStatus::UpToDate);
    assert_eq!(noop.pull_request, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_bumps_of_one_branch_both_land_with_one_pr() {
    let remote = Remote::start();
    let gh = GitHub::start(&remote);
    // Slow pushes so that both clones happen before either push lands.
    remote.hook("pre-receive", "cat >/dev/null\nsleep 1.5");
    let mut cfg = config(&remote, Some(&gh));
    cfg.branch = Some("runner/bump/platform".into());
    cfg.files = vec!["manifests/workloads.yaml".into()];
    let a = request(cfg.clone(), SHOP, D1, Some("1.1.0"));
    let b = request(cfg.clone(), "ghcr.io/acme/other", D2, Some("2.4.0"));
    let (ra, rb) = tokio::join!(bump(&a), bump(&b));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(
        (ra.status, rb.status),
        (BumpStatus::Pushed, BumpStatus::Pushed)
    );
    assert!(
        ra.push_attempts + rb.push_attempts >= 3,
        "one of them must have been rejected and re-applied: {ra:?} {rb:?}"
    );
    println!("notes: {:?} {:?}", ra.notes, rb.notes);
    let f = remote.show("runner/bump/platform", "manifests/workloads.yaml");
    assert_eq!(
        f.matches("ghcr.io/acme/shop:1.1.0@sha256:1a1a").count(),
        5,
        "shop lost:\n{f}"
    );
    assert_eq!(
        f.matches("ghcr.io/acme/other:2.4.0@sha256:2b2b").count(),
        1,
        "other lost:\n{f}"
    );
    assert_eq!(
        remote.count("main..runner/bump/platform"),
        2,
        "0 lost, 0 duplicated commits"
    );
    let prs = gh.pulls().await;
    assert_eq!(prs.len(), 1, "one PR per branch: {prs:?}");
    let mut numbers = [
        ra.pull_request.unwrap().number,
        rb.pull_request.unwrap().number,
    ];
    numbers.sort();
    assert_eq!(numbers, [1, 1]);

    // Direct pushes to the base (no forge): both land too.
    let mut direct = config(&remote, None);
    direct.files = vec!["charts/api/values.yaml".into()];
    let a = request(direct.clone(), SHOP, D2, None);
    let b = request(direct.clone(), "docker.io/prom/statsd-exporter", D1, None);
    let before = remote.rev("refs/heads/main");
    let (ra, rb) = tokio::join!(bump(&a), bump(&b));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!((ra.branch.as_str(), rb.branch.as_str()), ("main", "main"));
    assert!(ra.push_attempts + rb.push_attempts >= 3);
    assert_eq!(remote.count(&format!("{before}..main")), 2);
    let v = remote.show("main", "charts/api/values.yaml");
    assert!(v.contains("tag: \"1.0.0@sha256:2b2b"), "{v}");
    assert!(v.contains("tag: v0.26.0@sha256:1a1a"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_rejected_once_as_non_fast_forward_then_reapplied() {
    let remote = Remote::start();
    // Between our clone and our first push, another client's commit lands on main: the
    // push sees a remote main that is not an ancestor and git refuses it (fetch first).
    remote.access_hook(
        "if [ \"$1\" = receive-pack ] && [ ! -e raced ]; then touch raced; git update-ref refs/heads/main refs/heads/competitor; fi",
    );
    let mut cfg = config(&remote, None);
    cfg.files = vec!["flux/deployment.yaml".into()];
    let out = run(&request(cfg, SHOP, D1, None)).await;
    assert_eq!(out.status, BumpStatus::Pushed);
    assert_eq!(out.push_attempts, 2, "{out:?}");
    assert!(
        out.notes.iter().any(|n| n.contains("[rejected]")
            && (n.contains("fetch first") || n.contains("non-fast-forward"))),
        "{:?}",
        out.notes
    );
    remote.assert_one_commit_on_top_of("refs/heads/competitor");
    assert!(remote
        .show("main", "flux/deployment.yaml")
        .contains("ghcr.io/acme/shop:1.0.0@sha256:1a1a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_rejected_once_as_another_client_wins_then_reapplied() {
    let remote = Remote::start();
    // On the first push another client's commit lands first (the hook moves main under
    // the push, exactly what a concurrent push does), so this push is refused.
    remote.hook(
        "pre-receive",
        "cat >/dev/null\nif [ ! -e raced ]; then touch raced; env -u GIT_QUARANTINE_PATH git update-ref refs/heads/main refs/heads/competitor; fi",
    );
    let mut cfg = config(&remote, None);
    cfg.files = vec!["apps/shop/base/deployment.yaml".into()];
    let out = run(&request(cfg, SHOP, D1, None)).await;
    assert_eq!(out.status, BumpStatus::Pushed);
    assert_eq!(out.push_attempts, 2, "{out:?}");
    assert!(
        out.notes.iter().any(|n| n.contains("rejected")),
        "{:?}",
        out.notes
    );
    remote.assert_one_commit_on_top_of("refs/heads/competitor");
    assert_eq!(remote.show("main", "NOTES.md"), "edited by someone else");
    let d = remote.show("main", "apps/shop/base/deployment.yaml");
    assert!(
        d.contains("image: ghcr.io/acme/shop:1.0.0@sha256:1a1a"),
        "{d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walks_the_repo_and_changes_only_matching_values() {
    let remote = Remote::start();
    let before = remote.rev("refs/heads/main");
    let out = run(&request(config(&remote, None), SHOP, D1, Some("1.1.0"))).await;
    let mut files = out.changed_files.clone();
    files.sort();
    assert_eq!(
        files,
        [
            "apps/shop/base/deployment.yaml",
            "apps/shop/overlays/prod/kustomization.yaml",
            "apps/shop/overlays/staging/kustomization.yaml",
            "argocd/.argocd-source-shop-kustomize.yaml",
            "argocd/.argocd-source-shop.yaml",
            "charts/api/values.yaml",
            "flux/deployment.yaml",
            "flux/kustomization.yaml",
            "manifests/workloads.yaml",
        ]
    );
    let diff = git(&remote.bare, &["diff", "--unified=0", &before, "main"]);
    for line in diff.lines().filter(|l| {
        (l.starts_with('+') || l.starts_with('-')) && !l.starts_with("+++") && !l.starts_with("---")
    }) {
        assert!(
            !line.contains("acme/other") && !line.contains("nginx") && !line.contains("statsd"),
            "unrelated line changed: {line}"
        );
        if line.starts_with('+') {
            assert!(
                line.contains("1a1a1a1a") || line.contains("1.1.0"),
                "unexpected change: {line}"
            );
        }
    }
    // Comments and quoting survive.
    let d = remote.show("main", "apps/shop/base/deployment.yaml");
    assert!(d.contains("image: ghcr.io/acme/shop:1.1.0@sha256:1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a   # same image, runs migrations"));
    assert!(d.contains("image: \"ghcr.io/acme/shop:1.1.0@"));
    // The Flux setter comment survives.
    assert!(remote.show("main", "flux/deployment.yaml").contains("@sha256:1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a # {\"$imagepolicy\": \"flux-system:shop\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_never_printed() {
    let remote = Remote::start();
    let gh = GitHub::start(&remote);
    let env = [("GITHUB_TOKEN", TOKEN)];
    // Success, human and JSON output.
    for json in [false, true] {
        let mut args = vec![
            "--repo",
            &remote.url,
            "--image",
            SHOP,
            "--digest",
            D1,
            "--forge",
            "github",
            "--forge-url",
            &gh.api,
        ];
        if json {
            args.push("--json");
        }
        let (ok, out, err) = cli(&args, &env);
        assert!(ok, "{out}{err}");
        assert!(
            out.contains("pull request") || out.contains("\"pull_request\""),
            "{out}"
        );
        assert!(!out.contains(TOKEN) && !err.contains(TOKEN));
    }
    // Forge rejects the token: error names the status, not the token.
    let (ok, out, err) = cli(
        &[
            "--repo",
            &remote.url,
            "--image",
            SHOP,
            "--digest",
            D2,
            "--forge",
            "github",
            "--forge-url",
            &gh.api,
        ],
        &[("GITHUB_TOKEN", "ghs_WRONGtoken_but_still_secret_42")],
    );
    assert!(!ok);
    assert!(err.contains("401"), "{err}");
    assert!(
        !err.contains("ghs_WRONGtoken_but_still_secret_42") && !out.contains("ghs_WRONGtoken"),
        "{err}"
    );
    // Git over HTTPS fails (nothing listens): the token is not in the message, nor in the URL.
    let port = free_port();
    let url = format!("https://x-access-token:{TOKEN}@127.0.0.1:{port}/acme/config.git");
    let (ok, out, err) = cli(
        &[
            "--repo", &url, "--image", SHOP, "--digest", D1, "--forge", "none",
        ],
        &env,
    );
    assert!(!ok);
    assert!(err.contains("error:"), "{err}");
    assert!(!err.contains(TOKEN) && !out.contains(TOKEN), "{err}");
    // No token for a forge: says what to set.
    let (ok, _, err) = cli(
        &[
            "--repo",
            &remote.url,
            "--image",
            SHOP,
            "--digest",
            D1,
            "--forge",
            "github",
        ],
        &[],
    );
    assert!(!ok);
    assert!(err.contains("GITHUB_TOKEN"), "{err}");
    // Nothing of the token reached the repository.
    let log = git(&remote.bare, &["log", "--all", "-p"]);
    assert!(!log.contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stand_in_is_strict() {
    let remote = Remote::start();
    let gh = GitHub::start(&remote);
    let c = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", gh.api);
    let auth = ("Authorization", format!("Bearer {TOKEN}"));
    let r = c
        .get(url("/repos/acme/config/pullz"))
        .header(auth.0, &auth.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "unknown operation");
    let r = c.get(url("/repos/acme/config/pulls")).send().await.unwrap();
    assert_eq!(r.status(), 401, "no Authorization");
    let r = c
        .post(url("/repos/acme/config/pulls"))
        .header(auth.0, &auth.1)
        .json(&serde_json::json!({"title": 7, "head": "main", "base": "main"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422, "title must be a string");
    let r = c
        .get(url("/repos/acme/config/pulls?state=merged"))
        .header(auth.0, &auth.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422, "state enum");
    let body = serde_json::json!({"title": "t", "head": "competitor", "base": "main"});
    let r = c
        .post(url("/repos/acme/config/pulls"))
        .header(auth.0, &auth.1)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c
        .post(url("/api/v3/repos/acme/config/pulls"))
        .header(auth.0, &auth.1)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("A pull request already exists for acme:competitor."));
    let body = serde_json::json!({"title": "t", "head": "no-such-branch", "base": "main"});
    let r = c
        .post(url("/repos/acme/config/pulls"))
        .header(auth.0, &auth.1)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422, "head must exist");
}

fn rendered_images(dir: &Path) -> Vec<String> {
    let out = Command::new("kubectl")
        .args(["kustomize"])
        .arg(dir)
        .output()
        .expect("kubectl (apt-get install -y kubernetes-client)");
    assert!(
        out.status.success(),
        "kubectl kustomize: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .filter_map(|l| l.trim().trim_start_matches("- ").strip_prefix("image: "))
        .map(|s| s.trim_matches('"').to_string())
        .collect()
}

#[test]
fn kustomization_edits_agree_with_kubectl_kustomize() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixtures(), tmp.path());
    for (overlay, tag) in [
        ("apps/shop/overlays/prod", Some("1.1.0")),
        ("apps/shop/overlays/staging", None),
        // No images: at all: added like `kustomize edit set image` (file named explicitly).
        ("apps/shop/base", Some("1.2.0")),
    ] {
        let dir = tmp.path().join(overlay);
        let before = rendered_images(&dir);
        let kfile = dir.join("kustomization.yaml");
        let src = std::fs::read_to_string(&kfile).unwrap();
        let mut target = Target::new(SHOP, tag, D1).unwrap();
        target.add_missing = true;
        let fe = edit_content(&format!("{overlay}/kustomization.yaml"), &src, &target).unwrap();
        assert!(fe.changed(), "{overlay}: {:?}", fe.notes);
        std::fs::write(&kfile, &fe.new_content).unwrap();
        let after = rendered_images(&dir);
        assert_eq!(before.len(), after.len());
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if b.starts_with(&format!("{SHOP}:")) || b.starts_with(&format!("{SHOP}@")) {
                let old_tag = b
                    .trim_start_matches(&format!("{SHOP}:"))
                    .split('@')
                    .next()
                    .unwrap();
                let want = format!("{SHOP}:{}@{D1}", tag.unwrap_or(old_tag));
                assert_eq!(a, &want, "{overlay}");
                moved += 1;
            } else {
                assert_eq!(a, b, "{overlay}: unrelated image changed");
            }
        }
        assert_eq!(moved, 2, "{overlay}: initContainer and container");
    }
}

#[tokio::test]
async fn explicit_missing_file_and_bad_input_are_errors_not_panics() {
    let remote = Remote::start();
    let mut cfg = config(&remote, None);
    cfg.files = vec!["nope.yaml".into()];
    let e = bump(&request(cfg.clone(), SHOP, D1, None))
        .await
        .unwrap_err();
    assert!(matches!(e, GitopsError::FileNotFound { .. }), "{e}");
    cfg.files = vec!["../etc/passwd".into()];
    assert!(matches!(
        bump(&request(cfg.clone(), SHOP, D1, None))
            .await
            .unwrap_err(),
        GitopsError::InvalidRequest(_)
    ));
    let e = bump(&request(config(&remote, None), SHOP, "sha256:xyz", None))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("64"), "{e}");
    let e = bump(&request(config(&remote, None), "<ECR>:<TAG>", D1, None))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not an image reference"), "{e}");
    let mut c = config(&remote, None);
    c.base = "does-not-exist".into();
    let e = bump(&request(c, SHOP, D1, None)).await.unwrap_err();
    assert!(e.to_string().contains("--base"), "{e}");
}

/// `git http-backend` behind Basic auth (tests/it/git_http.py).
struct HttpRemote {
    _child: KillOnDrop,
    url: String,
    log: PathBuf,
}

impl HttpRemote {
    fn start(remote: &Remote, dir: &Path) -> HttpRemote {
        let log = dir.join("http.log");
        let mut child = Command::new("python3")
            .arg(Path::new(ROOT).join("tests/it/git_http.py"))
            .arg("--root")
            .arg(&remote.root)
            .args(["--token", TOKEN, "--port", "0"])
            .arg("--log")
            .arg(&log)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 tests/it/git_http.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().trim_start_matches("PORT ").to_string();
        HttpRemote {
            _child: KillOnDrop(child),
            url: format!("http://127.0.0.1:{port}/acme/config.git"),
            log,
        }
    }
}

#[test]
fn https_token_goes_through_the_credential_helper_not_argv() {
    let remote = Remote::start();
    let tmp = tempfile::tempdir().unwrap();
    let http = HttpRemote::start(&remote, tmp.path());
    // A `git` shim that records every argv the runner passes.
    let real_git = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let shim = tmp.path().join("bin");
    std::fs::create_dir_all(&shim).unwrap();
    let argv_log = tmp.path().join("argv.log");
    std::fs::write(
        shim.join("git"),
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            argv_log.display(),
            real_git.trim()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(shim.join("git"))
        .status()
        .unwrap();
    let path = format!(
        "{}:{}",
        shim.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run_cli = |token: &str| {
        let out = bump_cmd()
            .args([
                "--repo",
                &http.url,
                "--image",
                SHOP,
                "--digest",
                D1,
                "--forge",
                "none",
                "--file",
                "charts/api/values.yaml",
            ])
            .env("PATH", &path)
            .env("RUNNER_GITOPS_TOKEN", token)
            .env_remove("GITHUB_TOKEN")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, out, err) = run_cli("ghs_wrong_token_value_1234");
    assert!(!ok);
    assert!(err.contains("refused by the remote"), "{err}");
    assert!(
        !err.contains("ghs_wrong_token_value_1234") && !out.contains("ghs_wrong_token_value_1234")
    );
    let (ok, out, err) = run_cli(TOKEN);
    assert!(ok, "{out}{err}");
    assert!(out.contains("pushed"), "{out}");
    assert!(!out.contains(TOKEN) && !err.contains(TOKEN));
    let argv = std::fs::read_to_string(&argv_log).unwrap();
    assert!(argv.contains("push"), "{argv}");
    assert!(!argv.contains(TOKEN), "token in git argv: {argv}");
    let log = std::fs::read_to_string(&http.log).unwrap();
    assert!(
        log.contains("POST /acme/config.git/git-receive-pack auth=valid"),
        "{log}"
    );
    assert!(remote
        .show("main", "charts/api/values.yaml")
        .contains("@sha256:1a1a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_push_rebuilds_the_branch_from_the_base_only_when_configured() {
    let remote = Remote::start();
    let mut cfg = config(&remote, None);
    cfg.branch = Some("runner/bump/shop".into());
    cfg.files = vec!["flux/deployment.yaml".into()];
    let first = run(&request(cfg.clone(), SHOP, D1, None)).await;
    assert_eq!(first.status, BumpStatus::Pushed);
    // The base moves on.
    let competitor = remote.rev("refs/heads/competitor");
    git(
        &remote.bare,
        &["update-ref", "refs/heads/main", &competitor],
    );
    // Without force: the new commit goes on top of the existing branch.
    let second = run(&request(cfg.clone(), SHOP, D2, None)).await;
    assert_eq!(remote.count("main..runner/bump/shop"), 2);
    assert_eq!(second.status, BumpStatus::Pushed);
    // With force: rebuilt from the (new) base, one commit, pushed with a lease.
    cfg.force_push = true;
    let third = run(&request(cfg, SHOP, D1, Some("1.3.0"))).await;
    assert_eq!(third.status, BumpStatus::Pushed);
    assert_eq!(remote.count("main..runner/bump/shop"), 1);
    git(
        &remote.bare,
        &["merge-base", "--is-ancestor", "main", "runner/bump/shop"],
    );
    assert!(remote
        .show("runner/bump/shop", "flux/deployment.yaml")
        .contains("shop:1.3.0@sha256:1a1a"));
}

/// A deployment pinning SHOP at 1.0.0 (for files outside the repository and odd encodings).
const DEPLOYMENT: &str =
    "kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        - name: web\n          image: ghcr.io/acme/shop:1.0.0\n";

fn bump_args<'a>(remote: &'a Remote, files: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--repo",
        &remote.url,
        "--image",
        SHOP,
        "--digest",
        D1,
        "--forge",
        "none",
    ];
    for f in files {
        args.extend(["--file", f]);
    }
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_in_the_config_repository_are_never_followed() {
    let remote = Remote::start();
    // A file of "this machine", outside the clone, that the repository links to.
    let host = tempfile::tempdir().unwrap();
    let host_file = host.path().join("deployment.yaml");
    std::fs::write(&host_file, DEPLOYMENT).unwrap();
    remote.commit(|w| {
        std::os::unix::fs::symlink(&host_file, w.join("apps/evil.yaml")).unwrap();
        std::os::unix::fs::symlink(host.path(), w.join("apps/linked")).unwrap();
    });
    let main = remote.rev("refs/heads/main");
    for (file, link) in [
        ("apps/evil.yaml", "apps/evil.yaml"),
        ("apps/linked/deployment.yaml", "apps/linked"),
    ] {
        // The library: an error naming the file and the link.
        let mut cfg = config(&remote, None);
        cfg.files = vec![file.into()];
        match bump(&request(cfg, SHOP, D1, None)).await {
            Err(GitopsError::Symlink { file: f, link: l }) => {
                assert_eq!((f.as_str(), l.as_str()), (file, link))
            }
            other => panic!("{file}: {other:?}"),
        }
        // The CLI: exits non-zero with that message.
        let (ok, stdout, stderr) = cli(&bump_args(&remote, &[file]), &[]);
        assert!(!ok, "{file}: {stdout}");
        assert!(
            stderr.contains(&format!("error: {file}: `{link}` is a symbolic link")),
            "{stderr}"
        );
        assert!(!stdout.contains("nothing to do"), "{stdout}");
        assert_eq!(
            std::fs::read_to_string(&host_file).unwrap(),
            DEPLOYMENT,
            "{file}"
        );
        assert_eq!(remote.rev("refs/heads/main"), main, "nothing pushed");
    }
    // Walking every YAML file skips the links (and says so) and edits the real files.
    let out = run(&request(config(&remote, None), SHOP, D1, None)).await;
    assert_eq!(out.status, BumpStatus::Pushed);
    assert!(!out
        .changed_files
        .iter()
        .any(|f| f.contains("evil") || f.contains("linked")));
    assert!(
        out.notes
            .iter()
            .any(|n| n.starts_with("apps/evil.yaml: a symbolic link, skipped")),
        "{:?}",
        out.notes
    );
    assert_eq!(std::fs::read_to_string(&host_file).unwrap(), DEPLOYMENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_cannot_be_read_is_an_error_never_already_at() {
    let remote = Remote::start();
    remote.commit(|w| {
        // A byte order mark is valid YAML: edited, and kept (the parser would read the
        // first key as "\u{feff}images").
        std::fs::create_dir_all(w.join("apps/bom")).unwrap();
        std::fs::write(
            w.join("apps/bom/kustomization.yaml"),
            "\u{feff}images:\n  - name: ghcr.io/acme/shop\n    newTag: 1.0.0\n",
        )
        .unwrap();
        // A broken file that does not mention the image: walking skips it with a note.
        std::fs::write(w.join("apps/junk.yaml"), "a: [\n").unwrap();
    });
    let bom = "apps/bom/kustomization.yaml";
    let (ok, stdout, stderr) = cli(&bump_args(&remote, &[bom]), &[]);
    assert!(ok && stdout.contains("pushed"), "{stdout}{stderr}");
    assert_eq!(
        remote.show("main", bom),
        format!(
            "\u{feff}images:\n  - name: ghcr.io/acme/shop\n    newTag: 1.0.0\n    digest: {D1}"
        )
    );

    // The image after a NUL byte, and under 10,000 levels of nesting (block and flow).
    remote.commit(|w| {
        std::fs::write(w.join("apps/nul.yaml"), format!("# \0\n{DEPLOYMENT}")).unwrap();
        std::fs::write(
            w.join("apps/deep-block.yaml"),
            "- ".repeat(10_000) + "ghcr.io/acme/shop:1.0.0\n",
        )
        .unwrap();
        std::fs::write(
            w.join("apps/deep-flow.yaml"),
            "[".repeat(10_000) + "ghcr.io/acme/shop:1.0.0" + &"]".repeat(10_000),
        )
        .unwrap();
    });
    let main = remote.rev("refs/heads/main");
    for (file, why) in [
        ("apps/nul.yaml", "line 1, column 3: a NUL byte"),
        ("apps/deep-block.yaml", "nested more than 200 levels deep"),
        ("apps/deep-flow.yaml", "recursion limit exceeded"),
    ] {
        let (ok, stdout, stderr) = cli(&bump_args(&remote, &[file]), &[]);
        assert!(!ok, "{file}: {stdout}");
        assert!(
            stderr.contains(&format!("error: {file}: ")) && stderr.contains(why),
            "{file}: {stderr}"
        );
    }
    // Walking: the files that mention the image make it an error naming them, and
    // nothing is pushed (no half-done bump, no "already at").
    let (ok, stdout, stderr) = cli(&bump_args(&remote, &[]), &[]);
    assert!(!ok, "{stdout}");
    assert!(!stdout.contains("nothing to do"), "{stdout}");
    for f in [
        "apps/nul.yaml:1:3: a NUL byte",
        "apps/deep-block.yaml:",
        "apps/deep-flow.yaml:",
    ] {
        assert!(stderr.contains(f), "{f}: {stderr}");
    }
    assert!(!stderr.contains("junk"), "{stderr}");
    assert_eq!(remote.rev("refs/heads/main"), main, "nothing pushed");
    let e = bump(&request(config(&remote, None), SHOP, D1, None))
        .await
        .unwrap_err();
    match e {
        GitopsError::Unreadable { files, .. } => assert_eq!(files.len(), 3, "{files:?}"),
        other => panic!("{other}"),
    }
    // Once fixed, the walk goes through; the unrelated broken file is a note.
    remote.commit(|w| {
        for f in ["nul", "deep-block", "deep-flow"] {
            std::fs::remove_file(w.join(format!("apps/{f}.yaml"))).unwrap();
        }
    });
    let out = run(&request(config(&remote, None), SHOP, D2, None)).await;
    assert_eq!(out.status, BumpStatus::Pushed);
    assert!(out.changed_files.contains(&bom.to_string()));
    assert!(
        out.notes
            .iter()
            .any(|n| n.starts_with("apps/junk.yaml: skipped: YAML syntax error")),
        "{:?}",
        out.notes
    );
}
