//! Real "ECR login, docker build, docker push" buildspecs from the shared corpus
//! (`../shared/corpus/buildspecs/`, used in place, never copied) run unmodified against
//! the local stand-ins (issue #15): moto for ECR and STS, a local registry behind moto's
//! ECR token (`--registry-endpoint` maps ECR's host to it), Docker through runner's gate
//! (`--privileged`), AWS credentials through `--build-credentials runner`, the
//! standard-test image. Only runner-side settings differ per buildspec: variables
//! (`--env`, as a CodeBuild project would set them), region, endpoints. The source
//! directory is a small fixture standing in for each repository (its Dockerfile FROM a
//! local base image, since nothing can be pulled here).
//!
//! Each test checks that `runner build` exits 0 and that what the registry holds under the
//! pushed tag is the image the engine built: the registry's manifest digest is the
//! engine's RepoDigest of that image, and the manifest's config is the engine's image ID.
//!
//! The other corpus buildspecs of this kind, and why they are not in the passing set
//! (none for a lack in runner):
//! - clareliguori/gimme-pizza-slack-command: `$(aws ecr get-login)` with the email flag,
//!   which Docker 17.06+ refuses (a test below shows it fails as on CodeBuild today).
//! - wlstmd/wsi-api-repo: `runtime-versions: python: 3.8`; the standard image has 3.11,
//!   so INSTALL fails with CodeBuild's message (as on a CodeBuild image without 3.8).
//! - 711brown/ecs-demo-php-simple-app: `runtime-versions: php: 7.3`; no PHP in the image.
//! - cleophasmashiri/nx-module-federation-demo: literal `<your-account-id>` placeholders
//!   (a shell redirect from a missing file) and a Docker Hub login and push.
//! - stokilo/aws-spring-cdk-ci-cd: `mvn clean install` of the Spring project first
//!   (Maven Central plugins; not a small fixture).
//! - ACS7th/k8s-lotus-market: pushes `$IMAGE_REPO_NAME:<tag>`, a name it never built or
//!   tagged (it tags next-app/mongo-db/spring-app): fails on CodeBuild as well.
//! - 11stcorp/street-builder, Codeseys-Labs/chimera: download installers (AWS CLI v2
//!   zip, bun) from the internet during INSTALL.
//! - abdihakim-said/cloudmart-enterprise-devsecops: `nodejs: 14` (the image has 18) and
//!   kubectl downloaded from S3 during INSTALL.
//! - aws-samples/aws-codepipeline-devsecops-amazoneks: apt and Trivy repositories,
//!   aws-iam-authenticator from S3, Security Hub and EKS calls.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use crate::runtime_versions::standard_test_image;
use crate::support::{Project, Run};
use crate::support_moto::moto;
use crate::support_registry::{Registry, ECR_USER};
use std::path::PathBuf;
use std::process::Command;

/// moto's account (what `sts get-caller-identity` and ECR's token name by default).
const ACCOUNT: &str = "123456789012";

fn corpus(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus/buildspecs")
        .join(name);
    assert!(p.is_file(), "corpus buildspec {} is missing", p.display());
    p
}

fn docker(args: &[&str]) -> (bool, String) {
    let o = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("docker {args:?}: {e}"));
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).trim().to_string(),
    )
}

fn unique(prefix: &str) -> String {
    let n: u64 = rand::random();
    format!("{prefix}-{:x}", n & 0xffff_ffff)
}

fn ecr_host(account: &str, region: &str) -> String {
    format!("{account}.dkr.ecr.{region}.amazonaws.com")
}

/// One corpus buildspec's run: the buildspec, the runner-side settings, the registry.
struct Case {
    buildspec: &'static str,
    region: &'static str,
    /// The project's service role (`--build-role`); its account is the one ECR's token
    /// and `sts get-caller-identity` name inside the build.
    role_account: Option<&'static str>,
    env: Vec<(String, String)>,
    registry: Registry,
}

impl Case {
    fn new(
        buildspec: &'static str,
        region: &'static str,
        role_account: Option<&'static str>,
    ) -> Self {
        let account = role_account.unwrap_or(ACCOUNT);
        // The registry accepts exactly what moto's ECR token gives that account.
        let password = format!("{account}-auth-token");
        Case {
            buildspec,
            region,
            role_account,
            env: Vec::new(),
            registry: Registry::start_with(Some((ECR_USER, &password))),
        }
    }

    fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    fn password(&self) -> String {
        format!("{}-auth-token", self.role_account.unwrap_or(ACCOUNT))
    }

    /// `runner build` of the corpus buildspec on `p`, runner's own AWS settings pointing at
    /// moto, the ECR host `host` mapped to the case's registry.
    fn run(&self, p: &Project, host: &str) -> Run {
        let mut c = p.runner();
        c.env("AWS_ACCESS_KEY_ID", "AKIARUNNERCORPUS0001")
            .env(
                "AWS_SECRET_ACCESS_KEY",
                "corpus-docker-test-secret-key-0000000000",
            )
            .env("AWS_ENDPOINT_URL", &moto().endpoint)
            .env("AWS_REGION", self.region)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent/runner-test")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/runner-test")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("RUNNER_BUILD_CREDENTIALS")
            .env_remove("RUNNER_BUILD_ROLE")
            .env_remove("RUNNER_DOCKER")
            .env_remove("RUNNER_REGISTRY_ENDPOINTS");
        for (name, _) in std::env::vars() {
            if name.starts_with("AWS_ENDPOINT_URL_") {
                c.env_remove(name);
            }
        }
        c.args(["build", "--json", "--privileged", "--timeout", "15"])
            .args(["--build-credentials", "runner", "--region", self.region])
            .args(["--image", standard_test_image()])
            .arg("--buildspec")
            .arg(corpus(self.buildspec))
            .arg("--source")
            .arg(p.path());
        if let Some(account) = self.role_account {
            c.args([
                "--build-role",
                &format!("arn:aws:iam::{account}:role/codebuild-service-role"),
            ]);
        }
        c.args([
            "--registry-endpoint",
            &format!("{host}={}", self.registry.url()),
        ]);
        for (k, v) in &self.env {
            c.args(["--env", &format!("{k}={v}")]);
        }
        Run::from(c.output().unwrap_or_else(|e| panic!("run runner: {e}")))
    }

    /// The registry's manifest for `repo:tag`: its digest and its config's digest.
    fn manifest(&self, repo: &str, tag: &str) -> (String, String) {
        let url = format!("{}/v2/{repo}/manifests/{tag}", self.registry.url());
        let auth = format!("{ECR_USER}:{}", self.password());
        let accept = "Accept: application/vnd.docker.distribution.manifest.v2+json";
        let out = Command::new("curl")
            .args(["-sf", "-D", "-", "-u", &auth, "-H", accept, &url])
            .output()
            .unwrap_or_else(|e| panic!("curl: {e}"));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("the registry has no {repo}:{tag}: {text}"));
        let digest = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("docker-content-digest")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no Docker-Content-Digest for {repo}:{tag}: {head}"));
        let doc: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("manifest {body}: {e}"));
        let config = doc["config"]["digest"]
            .as_str()
            .unwrap_or_else(|| panic!("manifest without config: {body}"))
            .to_string();
        (digest, config)
    }

    /// The pushed `host/repo:tag` is in the registry as the engine built it; the engine's
    /// tags of it are removed afterwards (the image stays only as long as the test).
    fn assert_pushed(&self, run: &Run, host: &str, repo: &str, tag: &str) {
        let (digest, config) = self.manifest(repo, tag);
        // The engine knows the pushed image by the name inside the build or the mapped one.
        let names = [
            format!("{host}/{repo}:{tag}"),
            format!("{}/{repo}:{tag}", self.registry.addr()),
        ];
        let found = names.iter().find_map(|n| {
            let (ok, out) = docker(&[
                "image",
                "inspect",
                "-f",
                "{{.Id}} {{range .RepoDigests}}{{.}} {{end}}",
                n,
            ]);
            ok.then_some(out)
        });
        let inspected =
            found.unwrap_or_else(|| panic!("the engine has no {names:?}: {}", run.debug()));
        let mut fields = inspected.split_whitespace();
        let id = fields.next().unwrap_or_default().to_string();
        let repo_digests: Vec<&str> = fields.collect();
        assert_eq!(
            id, config,
            "the registry's {repo}:{tag} is not the image the engine built"
        );
        let want = format!("{}/{repo}@{digest}", self.registry.addr());
        let want_host = format!("{host}/{repo}@{digest}");
        assert!(
            repo_digests.iter().any(|d| *d == want || *d == want_host),
            "engine RepoDigests {repo_digests:?} lack {want}: {}",
            run.debug()
        );
    }
}

/// Removes the given image names from the engine (what the build tagged).
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = docker(&["rmi", n]);
        }
    }
}

fn git_commit(p: &Project) -> String {
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .arg("-C")
            .arg(p.path())
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("git: {e}"));
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "fixture"]);
    git(&["rev-parse", "HEAD"])
}

fn assert_succeeded(run: &Run) {
    assert_eq!(run.code, 0, "{}", run.debug());
    assert_eq!(run.status(), "SUCCEEDED", "{}", run.debug());
}

/// 0shimax/aws-codepipeline-s3-ecr-ecs-example: `get-login-password | docker login`,
/// a build arg, the image in a subdirectory, an image definitions artifact.
#[test]
fn corpus_0shimax_get_login_password_build_tag_push() {
    let repo = unique("corpus-0shimax");
    let name = unique("grpc-infer");
    let case = Case::new(
        "0shimax__aws-codepipeline-s3-ecr-ecs-example__buildspec.yml",
        "us-east-1",
        None,
    )
    .env("AWS_ACCOUNT_ID", ACCOUNT)
    .env("AWS_DEFAULT_REGION", "us-east-1")
    .env("IMAGE_REPO_NAME", &repo)
    .env("IMAGE_NAME", &name)
    .env("IMAGE_TAG", "latest")
    .env("MODEL_PATH", "model/model.txt")
    .env("IMAGE_CONF_FILE_NAME", "imagedefinitions.json")
    .env("INFECTION_CONTAINER_NAME", "infer");
    let p = Project::new();
    p.write("codepipeline/model/model.txt", &format!("{repo}\n"));
    p.write("codepipeline/serve.sh", "#!/bin/sh\ncat /model\n");
    p.write(
        "codepipeline/Dockerfile",
        "FROM runner/busybox:latest\nARG MODEL_PATH\nCOPY ${MODEL_PATH} /model\nCOPY serve.sh /serve.sh\nCMD [\"/serve.sh\"]\n",
    );
    let host = ecr_host(ACCOUNT, "us-east-1");
    let _images = Images(vec![
        format!("{name}:latest"),
        format!("{host}/{repo}:latest"),
        format!("{}/{repo}:latest", case.registry.addr()),
    ]);
    let run = case.run(&p, &host);
    assert_succeeded(&run);
    assert!(run.has_line("Login Succeeded"), "{}", run.debug());
    case.assert_pushed(&run, &host, &repo, "latest");
}

/// aws-samples/aws-codebuild-samples dockerbuildspec.yml: `runtime-versions: docker: 18`,
/// `$(aws ecr get-login --no-include-email …)` (AWS CLI v1).
#[test]
fn corpus_aws_samples_get_login_build_tag_push() {
    let repo = unique("corpus-aws-samples");
    let case = Case::new(
        "aws-samples__aws-codebuild-samples__dockerbuildspec.yml",
        "us-east-1",
        None,
    )
    .env("AWS_ACCOUNT_ID", ACCOUNT)
    .env("AWS_DEFAULT_REGION", "us-east-1")
    .env("IMAGE_REPO_NAME", &repo)
    .env("IMAGE_TAG", "1.0");
    let p = Project::new();
    p.write("index.html", &format!("<h1>{repo}</h1>\n"));
    p.write(
        "Dockerfile",
        "FROM runner/busybox:latest\nCOPY index.html /www/index.html\nCMD [\"httpd\", \"-f\", \"-h\", \"/www\"]\n",
    );
    let host = ecr_host(ACCOUNT, "us-east-1");
    let _images = Images(vec![
        format!("{repo}:1.0"),
        format!("{host}/{repo}:1.0"),
        format!("{}/{repo}:1.0", case.registry.addr()),
    ]);
    let run = case.run(&p, &host);
    assert_succeeded(&run);
    assert!(run.has_line("Login Succeeded"), "{}", run.debug());
    case.assert_pushed(&run, &host, &repo, "1.0");
}

/// 2or3/php8-application: `docker: 18`, `get-login`, the account from
/// `sts get-caller-identity`, the commit (`CODEBUILD_RESOLVED_SOURCE_VERSION`) as the tag,
/// a repository name with a slash from the buildspec's own variables.
#[test]
fn corpus_2or3_get_login_caller_identity_commit_tag() {
    let case = Case::new("2or3__php8-application__buildspec.yaml", "us-east-1", None)
        .env("AWS_DEFAULT_REGION", "us-east-1");
    let p = Project::new();
    p.write(
        "docker/php/index.php",
        &format!("<?php echo '{}';\n", unique("php")),
    );
    p.write(
        "docker/php/Dockerfile",
        "FROM runner/busybox:latest\nCOPY index.php /var/www/index.php\n",
    );
    let commit = git_commit(&p);
    let repo = "2or3/collarks";
    let host = ecr_host(ACCOUNT, "us-east-1");
    let _images = Images(vec![
        format!("{host}/{repo}:{commit}"),
        format!("{}/{repo}:{commit}", case.registry.addr()),
    ]);
    let run = case.run(&p, &host);
    assert_succeeded(&run);
    case.assert_pushed(&run, &host, repo, &commit);
}

/// hekonsek/awsom-spring-rest buildspec-docker.yml: `get-login`, the repository and
/// version from the repository's own `awsom` tool (a small stand-in script here), the
/// `imageDetail.json` artifact.
#[test]
fn corpus_hekonsek_get_login_repository_from_the_repos_tool() {
    let repo = unique("corpus-awsom");
    let case = Case::new(
        "hekonsek__awsom-spring-rest__buildspec-docker.yml",
        "us-east-1",
        None,
    )
    .env("AWS_DEFAULT_REGION", "us-east-1");
    let host = ecr_host(ACCOUNT, "us-east-1");
    let p = Project::new();
    // Stand-in for the repository's `awsom` CLI: `step ecr` prints the ECR repository
    // (and writes imageDetail.json, the build's artifact), `step version-current` the
    // version.
    p.write(
        "awsom",
        &format!(
            "#!/bin/sh\ncase \"$1 $2\" in\n\
             \"step ecr\") printf '{{\"ImageURI\":\"%s\"}}' '{host}/{repo}' > imageDetail.json; echo '{host}/{repo}' ;;\n\
             \"step version-current\") echo 0.1.0 ;;\n\
             *) echo \"awsom: unknown $*\" >&2; exit 1 ;;\nesac\n"
        ),
    );
    let _ = Command::new("chmod")
        .arg("+x")
        .arg(p.path().join("awsom"))
        .status();
    p.write("app.txt", &format!("{repo}\n"));
    p.write(
        "Dockerfile",
        "FROM runner/debian:bookworm\nCOPY app.txt /app/app.txt\nCMD [\"cat\", \"/app/app.txt\"]\n",
    );
    let _images = Images(vec![
        format!("{host}/{repo}:0.1.0"),
        format!("{}/{repo}:0.1.0", case.registry.addr()),
    ]);
    let run = case.run(&p, &host);
    assert_succeeded(&run);
    case.assert_pushed(&run, &host, &repo, "0.1.0");
}

/// sayofuta/dotnet buildspec-docker.yml: `docker: 18`, `get-login`, a repository URI
/// written into the buildspec with its own account (684956540993) and region
/// (ap-northeast-1). As on CodeBuild, the project's service role lives in that account:
/// `--build-role` of that account, so ECR's token (moto's, per account) and the login are
/// that account's.
#[test]
fn corpus_sayofuta_get_login_hardcoded_account_through_the_build_role() {
    let case = Case::new(
        "sayofuta__dotnet__buildspec-docker.yml",
        "ap-northeast-1",
        Some("684956540993"),
    )
    .env("AWS_DEFAULT_REGION", "ap-northeast-1");
    let p = Project::new();
    p.write("Program.cs", &format!("// {}\n", unique("dotnet")));
    p.write(
        "Dockerfile",
        "FROM runner/busybox:latest\nCOPY Program.cs /app/Program.cs\n",
    );
    let host = ecr_host("684956540993", "ap-northeast-1");
    let repo = "fsi-test";
    let _images = Images(vec![
        format!("{host}/{repo}:latest"),
        format!("{host}/{repo}:count"),
        format!("{}/{repo}:latest", case.registry.addr()),
        format!("{}/{repo}:count", case.registry.addr()),
    ]);
    let run = case.run(&p, &host);
    assert_succeeded(&run);
    case.assert_pushed(&run, &host, repo, "count");
}

/// clareliguori/gimme-pizza-slack-command buildspec-docker.yml is excluded from the
/// passing set, for a reason outside runner: `$(aws ecr get-login)` without
/// `--no-include-email` prints `docker login … -e none …`, and Docker 17.06 and later
/// (CodeBuild's current images included) have no `-e`. runner runs it as CodeBuild would
/// today: the build fails at that command, with the docker client's own message.
#[test]
fn corpus_clareliguori_get_login_with_email_fails_as_on_docker_17_06_and_later() {
    let host = ecr_host(ACCOUNT, "us-east-1");
    let case = Case::new(
        "clareliguori__gimme-pizza-slack-command__buildspec-docker.yml",
        "us-east-1",
        None,
    )
    .env("AWS_DEFAULT_REGION", "us-east-1")
    .env("ECR_REGISTRY", &host);
    let p = Project::new();
    p.write("Dockerfile", "FROM runner/busybox:latest\n");
    let _images = Images(vec!["gimme-pizza:latest".into()]);
    let run = case.run(&p, &host);
    assert_eq!(run.status(), "FAILED", "{}", run.debug());
    assert!(
        run.logs()
            .iter()
            .any(|l| l.contains("unknown shorthand flag: 'e'")),
        "{}",
        run.debug()
    );
    // It stopped there: nothing was built.
    assert!(!run.logs().iter().any(|l| l.contains("Successfully built")));
}
