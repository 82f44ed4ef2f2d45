use crate::plan::SourceMode;
use crate::project::{registry_port, timeout_minutes, BadValue};
use crate::publish::registry::{check_http_url, parse_endpoint, BadEndpoint};
use clap::builder::RangedU64ValueParser;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Why a flag's value is refused (clap prints it and exits 2).
#[derive(Debug, thiserror::Error)]
pub enum BadFlag {
    #[error(transparent)]
    Value(#[from] BadValue),
    #[error(transparent)]
    Endpoint(#[from] BadEndpoint),
}

/// `--registry-endpoint HOST=URL`: checked as RUNNER_REGISTRY_ENDPOINTS's items are.
fn endpoint(s: &str) -> Result<String, BadFlag> {
    parse_endpoint(s)?;
    Ok(s.to_string())
}

/// An http:// or https:// URL with a host and a TCP port.
fn http_url(s: &str) -> Result<String, BadFlag> {
    check_http_url(s)?;
    Ok(s.to_string())
}

/// An image reference whose registry port is a TCP port.
fn image_reference(s: &str) -> Result<String, BadFlag> {
    registry_port(s)?;
    Ok(s.to_string())
}

/// `--timeout`: minutes, above 0 and at most 2160.
fn timeout(s: &str) -> Result<f64, BadFlag> {
    Ok(timeout_minutes(s)?)
}

/// Run AWS CodeBuild buildspecs on your own machine, in Docker containers.
///
/// runner reads a CodeBuild buildspec.yml (version 0.2 or 0.1) and runs its phases the way
/// CodeBuild does: one shell for the whole build, the CODEBUILD_* variables, phase
/// transition rules, `finally` blocks, exported variables, artifacts and test reports.
#[derive(Debug, Parser)]
#[command(
    name = "runner",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(after_help = "\
Exit codes:
  0    the build SUCCEEDED (validate: no errors)
  1    the build FAILED or TIMED_OUT (validate: errors found)
  2    bad input or setup: unreadable or invalid buildspec, bad flag, no Docker engine
  3    FAULT: the runner or the Docker engine broke during the build
  130  STOPPED by Ctrl-C or SIGTERM (the build container is removed)

Environment:
  NO_COLOR        no colours
  CI              no progress spinner
  DOCKER_HOST     the Docker engine to use
  RUST_LOG        diagnostics on standard error (tracing's filter syntax, e.g.
                  runner=debug,aws_config=debug); wins over -v
  RUNNER_DATA_DIR where build logs and build numbers are kept
                  (default $XDG_DATA_HOME/runner, else ~/.local/share/runner)")]
pub struct Cli {
    /// Diagnostics on standard error: -v runner's, -vv also its libraries' debug
    /// (AWS SDK credential chain, HTTP, Docker), -vvv trace. RUST_LOG wins when set.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Where build logs, build numbers, the cache and advisory data are kept
    /// [default: $XDG_DATA_HOME/runner, else ~/.local/share/runner].
    #[arg(long, value_name = "DIR", global = true, env = "RUNNER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a buildspec in a container, as CodeBuild would
    ///
    /// Example:
    ///   runner build --buildspec buildspec.yml --source . --image runner/debian:bookworm --artifacts out/
    #[command(verbatim_doc_comment)]
    Build(Box<BuildArgs>),
    /// Check buildspecs without running anything; prints file:line:col diagnostics
    ///
    /// Unknown keys are warnings (CodeBuild ignores them) unless --strict is given.
    /// Example:
    ///   runner validate buildspec.yml ci/*.yml
    #[command(verbatim_doc_comment)]
    Validate(ValidateArgs),
    /// Cosign-compatible signing keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Push a local image to a registry (ECR or any OCI registry); prints the digest
    ///
    /// Layers already in the registry are not uploaded again; an interrupted upload is
    /// resumed. ECR hosts (<account>.dkr.ecr.<region>.amazonaws.com) are authorized with
    /// the AWS SDK's credential chain (AWS_ENDPOINT_URL_ECR / AWS_ENDPOINT_URL apply).
    /// Registries on loopback are spoken to over plain HTTP, all others over TLS.
    /// Example:
    ///   runner push app:dev 123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1.4.0
    #[command(verbatim_doc_comment)]
    Push(PushArgs),
    /// Sign the digest an image reference resolves to (cosign's format and layout)
    ///
    /// The key's password is read from COSIGN_PASSWORD.
    /// Example:
    ///   runner sign 127.0.0.1:5000/app:1.4.0 --key cosign.key
    #[command(verbatim_doc_comment)]
    Sign(SignArgs),
    /// Check that an image carries a valid signature by a key (and attestations)
    ///
    /// Exits 0 only when a signature by the key is attached to the digest the reference
    /// resolves to (and every --attestation type asked for is there, signed by it);
    /// 1 with the reason otherwise; 2 when the registry or key cannot be read.
    /// Example:
    ///   runner verify 127.0.0.1:5000/app@sha256:... --key cosign.pub --attestation slsaprovenance1
    #[command(verbatim_doc_comment)]
    Verify(VerifyArgs),
    /// Scan for leaked secrets and vulnerable dependencies, offline.
    ///
    /// Exit codes: 0 clean or within the policy, 1 the policy is violated, 2 could not
    /// scan. Vulnerabilities are matched against OSV dumps (<ecosystem>/all.zip) in
    /// --advisories, RUNNER_ADVISORIES or <data dir>/advisories (`runner db update`).
    #[command(subcommand)]
    Scan(ScanCommand),
    /// The offline vulnerability database.
    #[command(subcommand)]
    Db(DbCommand),
    /// Deploy through a config repository (Argo CD, Flux): move an image to a new digest.
    #[command(subcommand)]
    Gitops(GitopsCommand),
    /// The build cache kept on this machine.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Run the agent pool's server: a job queue agents long-poll (SQLite or PostgreSQL)
    ///
    /// Example:
    ///   runner server --listen 127.0.0.1:8420
    ///   runner server token create --role agent
    #[command(verbatim_doc_comment)]
    Server(super::server::ServerArgs),
    /// Take jobs from a server and run them on this machine's Docker engine
    ///
    /// Example:
    ///   runner agent --server http://127.0.0.1:8420 --token "$AGENT_TOKEN" --labels os=linux
    #[command(verbatim_doc_comment)]
    Agent(super::agent::AgentArgs),
    /// Send a build to a server's queue; with --wait, follow it and exit with its code
    ///
    /// Example:
    ///   runner submit --server http://127.0.0.1:8420 --token "$TOKEN" --source . --wait
    #[command(verbatim_doc_comment)]
    Submit(super::submit::SubmitArgs),
    /// Jobs on a server: list, show, logs, cancel, retry, watch, stats, artifacts
    #[command(subcommand)]
    Jobs(super::jobs::JobsCommand),
    /// Print runner's version
    Version {
        /// One JSON object on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script
    ///
    /// Example:
    ///   runner completions bash > /etc/bash_completion.d/runner
    ///   runner completions zsh > "${fpath[1]}/_runner"
    ///   runner completions fish > ~/.config/fish/completions/runner.fish
    #[command(verbatim_doc_comment)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Reset a project's local caches (CodeBuild's InvalidateProjectCache)
    ///
    /// Removes its cache volumes (the `cache.paths` kept between builds) and its Docker
    /// layer cache volume (privileged builds). The next build restores from the archive,
    /// or starts cold. Archives in the store are kept (they are shared, by key).
    ///
    /// Exit codes: 0 reset (or nothing to reset), 1 a build of the project is running
    /// (nothing was removed), 2 the engine cannot be reached.
    /// Example:
    ///   runner cache invalidate sample-app
    #[command(verbatim_doc_comment)]
    Invalidate {
        /// The project's name (runner.yml `name:`, `--project`, or the source directory's name).
        project: String,
        /// One JSON object on standard output.
        #[arg(long)]
        json: bool,
    },
}

/// `runner build --fail-on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "lowercase")]
pub enum FailOn {
    Low,
    Medium,
    High,
    Critical,
}

impl From<FailOn> for crate::scan::model::Severity {
    fn from(f: FailOn) -> Self {
        use crate::scan::model::Severity;
        match f {
            FailOn::Low => Severity::Low,
            FailOn::Medium => Severity::Medium,
            FailOn::High => Severity::High,
            FailOn::Critical => Severity::Critical,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScanFormat {
    Table,
    Json,
    Sarif,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SbomFormat {
    Cyclonedx,
    Spdx,
}

/// Options every scan takes.
#[derive(Debug, Args, Clone)]
pub struct ScanCommon {
    /// Output: a table for people, JSON, or SARIF 2.1.0 for GitHub code scanning.
    #[arg(long, value_enum, default_value_t = ScanFormat::Table)]
    pub format: ScanFormat,
    /// The same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// The policy that decides pass or fail [default: the built-in scanners/policy.yml].
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Write the report here instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

impl ScanCommon {
    /// `--format`, with `--json` standing for `--format json`.
    pub fn effective_format(&self) -> ScanFormat {
        if self.json {
            ScanFormat::Json
        } else {
            self.format
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ScanCommand {
    /// Secrets in a directory: 34 rule kinds (cloud keys, tokens, private keys, generic
    /// high-entropy assignments), .gitignore honoured, findings redacted
    ///
    /// `gitleaks:allow` or `runner:allow` on a line accepts it; --baseline accepts the
    /// findings listed in a file (write one with --write-baseline).
    /// Example:
    ///   runner scan secrets . --format sarif -o secrets.sarif
    #[command(verbatim_doc_comment)]
    Secrets {
        path: PathBuf,
        /// Accept the findings in this baseline file.
        #[arg(long, value_name = "FILE")]
        baseline: Option<PathBuf>,
        /// Write the current findings as a baseline and exit 0.
        #[arg(long, value_name = "FILE")]
        write_baseline: Option<PathBuf>,
        /// Rules in gitleaks' TOML format instead of the built-in pack.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Scan files .gitignore excludes too.
        #[arg(long)]
        no_gitignore: bool,
        #[command(flatten)]
        common: ScanCommon,
    },
    /// Vulnerable packages in lockfiles (Cargo.lock, package-lock.json, yarn.lock,
    /// pnpm-lock.yaml, requirements.txt, poetry.lock, Pipfile.lock, uv.lock, go.mod,
    /// Gemfile.lock, composer.lock)
    ///
    /// Example:
    ///   runner scan deps . --advisories ../osv
    #[command(verbatim_doc_comment)]
    Deps {
        path: PathBuf,
        #[arg(long, value_name = "DIR", env = "RUNNER_ADVISORIES")]
        advisories: Option<PathBuf>,
        #[command(flatten)]
        common: ScanCommon,
    },
    /// OS and language packages and secrets in an image on the engine (or a `docker
    /// save` tarball), with whiteouts applied
    ///
    /// Example:
    ///   runner scan image app:dev --sbom cyclonedx -o sbom.json
    #[command(verbatim_doc_comment)]
    Image {
        /// An image on the engine, or a path to a `docker save` tar / OCI layout.
        image: String,
        #[arg(long, value_name = "DIR", env = "RUNNER_ADVISORIES")]
        advisories: Option<PathBuf>,
        /// Print an SBOM instead of findings.
        #[arg(long, value_enum)]
        sbom: Option<SbomFormat>,
        #[command(flatten)]
        common: ScanCommon,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Download fresh OSV dumps (<base-url>/<ecosystem>/all.zip) into the advisory directory
    ///
    /// Each file is checked and replaced atomically; a failed download keeps the old one.
    /// Example:
    ///   runner db update --ecosystem crates.io --ecosystem PyPI
    #[command(verbatim_doc_comment)]
    Update {
        /// [default: <data dir>/advisories]
        #[arg(long, value_name = "DIR", env = "RUNNER_ADVISORIES")]
        dir: Option<PathBuf>,
        #[arg(
            long,
            default_value = "https://osv-vulnerabilities.storage.googleapis.com",
            value_parser = http_url
        )]
        base_url: String,
        /// Repeatable [default: crates.io, PyPI, npm, Go, RubyGems, Packagist, Debian, Alpine].
        #[arg(long = "ecosystem")]
        ecosystems: Vec<String>,
        /// One JSON object on standard output: what was downloaded, where.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GitopsCommand {
    /// Pin IMAGE to DIGEST in a config repository and open (or update) a pull request
    ///
    /// Edits kustomize `images:`, Helm values, raw manifests (containers and
    /// initContainers), Flux `$imagepolicy` setters and Argo CD Image Updater's
    /// `.argocd-source-*.yaml`, changing only the value (comments, quoting and order
    /// stay). One branch per target, so a later bump updates the same pull request; no
    /// change, no commit. The token comes from RUNNER_GITOPS_TOKEN, else GITHUB_TOKEN /
    /// GITLAB_TOKEN / GITEA_TOKEN; it is never printed.
    /// Example:
    ///   runner gitops bump --repo https://github.com/org/deploy.git --image 123456789012.dkr.ecr.us-east-1.amazonaws.com/app --digest sha256:... --file apps/app/kustomization.yaml
    #[command(verbatim_doc_comment)]
    Bump(GitopsBumpArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ForgeArg {
    Github,
    Gitlab,
    Gitea,
    None,
}

#[derive(Debug, Args)]
pub struct GitopsBumpArgs {
    /// Config repository: URL or local path.
    #[arg(long)]
    pub repo: String,
    /// Image repository to move (e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/app).
    #[arg(long)]
    pub image: String,
    /// New digest (sha256:...).
    #[arg(long)]
    pub digest: String,
    /// New tag (default: keep the tag already written).
    #[arg(long)]
    pub tag: Option<String>,
    /// File to edit, relative to the repository root (repeatable; default: every YAML file).
    #[arg(long = "file")]
    pub files: Vec<String>,
    /// Head branch (default: runner/bump/<image>-<hash>; equal to --base: push directly).
    #[arg(long)]
    pub branch: Option<String>,
    /// The branch the pull request targets.
    #[arg(long, default_value = "main")]
    pub base: String,
    /// Forge to open the pull request on (default: guessed from the repository host).
    #[arg(long, value_enum)]
    pub forge: Option<ForgeArg>,
    /// Forge API base URL (GitHub Enterprise: https://HOST/api/v3).
    #[arg(long, value_parser = http_url)]
    pub forge_url: Option<String>,
    /// Extra Helm value path holding the image (repeatable), e.g. api.image.
    #[arg(long = "key")]
    pub helm_keys: Vec<String>,
    /// Label for the pull request (repeatable).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Rebuild the bump branch from the base and force-push it (with lease).
    #[arg(long)]
    pub force_push: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a new key pair: cosign.key (encrypted with COSIGN_PASSWORD) and cosign.pub
    ///
    /// The files are those `cosign generate-key-pair` writes; cosign reads them and
    /// runner reads cosign's. Existing files are never overwritten.
    /// Example:
    ///   COSIGN_PASSWORD=... runner key generate --output-dir keys/
    #[command(verbatim_doc_comment)]
    Generate {
        #[arg(long, value_name = "DIR", default_value = ".")]
        output_dir: PathBuf,
        #[command(flatten)]
        password: KeyPassword,
        /// One JSON object on standard output: the files written.
        #[arg(long)]
        json: bool,
    },
}

/// The password of a cosign key.
#[derive(Debug, Args, Clone, Default)]
pub struct KeyPassword {
    /// The key's password (may be empty). Prefer the variable: a flag's value is visible
    /// to other users of the machine.
    #[arg(
        long = "key-password",
        value_name = "PASSWORD",
        env = "COSIGN_PASSWORD",
        hide_env_values = true
    )]
    pub key_password: Option<String>,
}

/// Where registries are and how to reach them (shared by push, sign, verify).
#[derive(Debug, Args, Clone, Default)]
pub struct RegistryArgs {
    /// Send a registry host's traffic to another address (tests, VPC endpoints, proxies),
    /// e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com=http://127.0.0.1:5001.
    /// Repeatable; also --registry-endpoints.
    #[arg(long = "registry-endpoint", value_name = "HOST=URL", value_parser = endpoint)]
    pub registry_endpoint: Vec<String>,
    /// Comma-separated HOST=URL overrides; --registry-endpoint wins for the same host.
    #[arg(
        long = "registry-endpoints",
        value_name = "HOST=URL,...",
        env = "RUNNER_REGISTRY_ENDPOINTS"
    )]
    pub registry_endpoints: Option<String>,
    /// Longest silence from the registry, and the deadline of its small requests, in
    /// seconds (above 0, at most 86400).
    #[arg(
        long = "registry-timeout",
        value_name = "SECONDS",
        env = "RUNNER_REGISTRY_TIMEOUT"
    )]
    pub registry_timeout: Option<String>,
    /// AWS region for ECR (default: the one in the registry host).
    #[arg(long)]
    pub region: Option<String>,
    /// One JSON object on standard output instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image on the local engine (name:tag or ID).
    pub local_image: String,
    /// Where it goes: REGISTRY/REPOSITORY[:TAG].
    #[arg(value_parser = image_reference)]
    pub repository: String,
    /// Create the ECR repository when it does not exist.
    #[arg(long)]
    pub create_repository: bool,
    /// gzip level of the layers, 1 (fast) to 9 (small).
    #[arg(long, default_value_t = 6, value_parser = RangedU64ValueParser::<u32>::new().range(1..=9))]
    pub compression_level: u32,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The image: REGISTRY/REPOSITORY:TAG or @sha256:DIGEST.
    #[arg(value_parser = image_reference)]
    pub image: String,
    /// The private key (cosign.key).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Annotation in the signed payload's `optional` section. Repeatable.
    #[arg(long = "annotation", short = 'a', value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Sign as a Sigstore bundle attached through the OCI referrers API (or the
    /// `sha256-<hex>` referrers tag), as cosign 3 / `--new-bundle-format` does, instead
    /// of a `.sig` tag.
    #[arg(long = "new-bundle-format", visible_alias = "bundle")]
    pub new_bundle_format: bool,
    #[command(flatten)]
    pub password: KeyPassword,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The image: REGISTRY/REPOSITORY:TAG or @sha256:DIGEST.
    #[arg(value_parser = image_reference)]
    pub image: String,
    /// The public key (cosign.pub).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Also require an attestation of this predicate type, signed by the key:
    /// slsaprovenance1, slsaprovenance, cyclonedx, spdxjson or a URI. Repeatable.
    #[arg(long = "attestation", value_name = "TYPE")]
    pub attestations: Vec<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReporterKind {
    /// CodeBuild-style lines for people.
    Terminal,
    /// One JSON event per line.
    Json,
    /// For a GitHub Actions step.
    Github,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HostCa {
    /// Trust the host's CA bundle when the host has one at /etc/ssl/certs/ca-certificates.crt.
    Auto,
    /// Always trust it (fail if the host has none).
    Always,
    /// Never mount it.
    Never,
}

impl From<HostCa> for crate::pipeline::HostCa {
    fn from(flag: HostCa) -> Self {
        match flag {
            HostCa::Never => Self::Never,
            HostCa::Auto => Self::Auto,
            HostCa::Always => Self::Always,
        }
    }
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The buildspec to run (default: the project file's `build.buildspec`, else
    /// buildspec.yml in the source directory).
    #[arg(long, short = 'b', value_name = "FILE")]
    pub buildspec: Option<PathBuf>,
    /// The source directory; it becomes CODEBUILD_SRC_DIR in the container.
    #[arg(long, short = 's', value_name = "DIR", default_value = ".")]
    pub source: PathBuf,
    /// When no image is named and runner/standard:bookworm is not built yet, say how
    /// to build it (`scripts/images.sh standard`) instead of building it now.
    #[arg(long)]
    pub no_build_image: bool,
    /// The project file (default: runner.yml in the source directory, when present).
    #[arg(long, value_name = "FILE")]
    pub project_file: Option<PathBuf>,
    /// Collect the buildspec's artifacts here: one directory per artifact identifier.
    #[arg(long, short = 'a', value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
    /// Write each artifact as <identifier>.zip instead of a directory.
    #[arg(long)]
    pub zip: bool,
    /// Set a variable for the build (overrides the buildspec, like start-build's
    /// environmentVariablesOverride). Repeatable.
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read variables from a dotenv file (KEY=VALUE lines); --env wins over it.
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// How the source reaches the container [default: mount, or the project file's].
    #[arg(long, value_enum)]
    pub source_mode: Option<SourceMode>,
    /// Stop the build after this many minutes [default: 60, CodeBuild's, or the project
    /// file's].
    #[arg(long, value_name = "MINUTES", value_parser = timeout)]
    pub timeout: Option<f64>,
    /// The project name (CODEBUILD_BUILD_ID is <project>:<uuid>); default: the project
    /// file's `name`, else the source directory's name.
    #[arg(long)]
    pub project: Option<String>,
    /// Run the buildspec's `batch` section (each task in its own container).
    #[arg(long)]
    pub batch: bool,
    /// With --batch: how many builds run at once, 1 to 100 (CodeBuild's most builds in a batch).
    #[arg(long, default_value_t = 2, value_parser = RangedU64ValueParser::<usize>::new().range(1..=100))]
    pub concurrency: usize,
    /// Treat buildspec warnings (unknown keys) as errors.
    #[arg(long)]
    pub strict: bool,
    /// One JSON event per line on standard output instead of the human log (the same as
    /// --reporter json).
    #[arg(long, conflicts_with = "reporter")]
    pub json: bool,
    /// How the build is reported [default: github when GITHUB_ACTIONS=true, else
    /// terminal]. github: workflow commands (groups, ::add-mask:: for every secret,
    /// annotations), the job summary in $GITHUB_STEP_SUMMARY, the step's outputs in
    /// $GITHUB_OUTPUT and the exported variables in $GITHUB_ENV.
    #[arg(long, value_enum, value_name = "KIND")]
    pub reporter: Option<ReporterKind>,
    /// With the github reporter: write the scans' findings to this file as SARIF 2.1.0
    /// (the `sarif-file` output; an empty log when nothing was scanned).
    #[arg(long, value_name = "FILE")]
    pub sarif: Option<PathBuf>,
    /// Fail the scan gates on any finding at or above this severity, a secret or a
    /// vulnerability, in place of the scan policy's thresholds (`secrets.fail-on`,
    /// `vulnerabilities.fail-on-severity`); its allow list and other settings still apply.
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub fail_on: Option<FailOn>,
    /// Leave the build's own output out of the terminal (it stays in the log file).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    #[command(flatten)]
    pub settings: BuildSettings,
}

/// The build settings `runner build` and `runner agent` share: what a build runs in, its
/// cache, Docker, registries, signing key and AWS. One definition, so both read them the
/// same way (see `cli::settings`).
#[derive(Debug, Args)]
#[command(next_help_heading = "Build settings (runner build and runner agent)")]
pub struct BuildSettings {
    /// The build image (must be on the engine, or pullable); default: `build.image` in
    /// the project file, else the standard image runner/standard:bookworm (built on
    /// first use).
    #[arg(long, short = 'i', value_name = "IMAGE", env = "RUNNER_IMAGE")]
    pub image: Option<String>,
    /// Resolve env.parameter-store and env.secrets-manager from this JSON file instead of
    /// AWS (for working without AWS access):
    /// {"parameters": {"/app/token": "…"}, "secrets": {"prod/db": {"password": "…"}}}.
    /// Without it, references are resolved through the AWS SDK's standard credential
    /// chain, region and endpoint settings (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SSM,
    /// AWS_ENDPOINT_URL_SECRETS_MANAGER).
    #[arg(long, value_name = "FILE")]
    pub secrets_file: Option<PathBuf>,
    /// Make build containers trust the host's CA bundle (for networks that re-sign TLS)
    /// and point SSL_CERT_FILE, REQUESTS_CA_BUNDLE, PIP_CERT, NODE_EXTRA_CA_CERTS,
    /// CARGO_HTTP_CAINFO, GIT_SSL_CAINFO, CURL_CA_BUNDLE and AWS_CA_BUNDLE at it.
    #[arg(long, value_enum, default_value_t = HostCa::Auto)]
    pub host_ca: HostCa,
    /// Where the buildspec's `cache:` entries are kept [default: <data dir>/cache].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Keep `cache:` entries in S3 instead (s3://bucket/prefix), shared by a pool of
    /// runners; uses the AWS SDK's credential chain, region and endpoint settings
    /// (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL).
    #[arg(long, value_name = "S3_URL", conflicts_with = "cache_dir")]
    pub cache_s3: Option<String>,
    /// Size limit of the local cache in MiB (1 to 16777216, 16 TiB); least recently used
    /// entries are evicted.
    #[arg(long, value_name = "MIB", default_value_t = 5120, value_parser = RangedU64ValueParser::<u64>::new().range(1..=16_777_216))]
    pub cache_size: u64,
    /// Neither restore nor save the buildspec's cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Restore `cache:` from its archive on every build. By default the cache paths live
    /// in engine volumes kept per project on this machine (CodeBuild's LOCAL_CUSTOM_CACHE):
    /// a build whose key matches what they hold uses them as they are, with nothing to
    /// extract. The archive is saved either way (for other machines, and --cache-s3).
    #[arg(long)]
    pub no_cache_volumes: bool,
    /// Builds ask for privileged mode (for buildspecs that run docker themselves, as on
    /// CodeBuild; also runner.yml's `privileged: true`): by default they get Docker
    /// through runner's gate (see --docker).
    #[arg(long)]
    pub privileged: bool,
    /// What a privileged build gets for running `docker`: `gate` (the host engine through runner's
    /// filter: only its own containers, no privileged ones; the default for privileged
    /// builds), `privileged` (a real privileged container, for images that start their
    /// own Docker daemon) or `none`. Default: runner.yml's `docker:`.
    #[arg(long, value_enum, value_name = "MODE", env = "RUNNER_DOCKER")]
    pub docker: Option<crate::docker::gate::DockerMode>,
    /// Send a registry host's traffic to another address when pushing the project's
    /// image (see `runner push --help`). Repeatable; also RUNNER_REGISTRY_ENDPOINTS.
    #[arg(long = "registry-endpoint", value_name = "HOST=URL", value_parser = endpoint)]
    pub registry_endpoint: Vec<String>,
    /// Comma-separated HOST=URL overrides; --registry-endpoint wins for the same host.
    #[arg(
        long = "registry-endpoints",
        value_name = "HOST=URL,...",
        env = "RUNNER_REGISTRY_ENDPOINTS"
    )]
    pub registry_endpoints: Option<String>,
    /// Longest silence from the registry when pushing the project's image (and pulling
    /// its cache-from images), and the deadline of its small requests, in seconds (above
    /// 0, at most 86400).
    #[arg(
        long = "registry-timeout",
        value_name = "SECONDS",
        env = "RUNNER_REGISTRY_TIMEOUT"
    )]
    pub registry_timeout: Option<String>,
    /// The cosign key that signs the project's image, in place of the project file's
    /// `sign.key` (a key kept outside the source tree, e.g. a CI secret).
    #[arg(long, value_name = "FILE", env = "RUNNER_SIGN_KEY")]
    pub sign_key: Option<String>,
    #[command(flatten)]
    pub password: KeyPassword,
    /// AWS_REGION / AWS_DEFAULT_REGION inside the build(s).
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,
    /// AWS credentials for the build, as CodeBuild serves its service role: `runner`
    /// serves runner's own (its credential chain) through the container-credentials
    /// endpoint, with runner's AWS_ENDPOINT_URL* passed in; `none` (the default) serves
    /// nothing. On an agent the jobs come from a server, so serving the agent's
    /// credentials to them is an explicit choice.
    #[arg(
        long,
        value_enum,
        env = "RUNNER_BUILD_CREDENTIALS",
        default_value = "none",
        value_name = "SOURCE"
    )]
    pub build_credentials: BuildCredentialsSource,
    /// Serve the build this role's credentials (STS AssumeRole with runner's own);
    /// implies --build-credentials runner and wins over runner.yml's build.build-role.
    #[arg(long, env = "RUNNER_BUILD_ROLE", value_name = "ARN")]
    pub build_role: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BuildCredentialsSource {
    /// runner's own credential chain (or --build-role's role).
    Runner,
    /// No credentials and no endpoint overrides for the build.
    None,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Buildspec files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Treat warnings (unknown keys) as errors.
    #[arg(long)]
    pub strict: bool,
    /// Print the diagnostics as one JSON object per file.
    #[arg(long)]
    pub json: bool,
}
