//! What a caller asks for: a build (or a batch) of a source tree, with every setting and
//! credential already read at the caller's edge. Nothing here comes from clap or from
//! the process environment.

use crate::aws_config::AwsSettings;
use crate::plan::SourceMode;
use crate::publish::auth::RegistryAuth;
use crate::publish::registry::{Endpoints, Limits};
use crate::secrets::{NamedSecrets, Secret};
use std::path::PathBuf;

/// Whether build containers trust the host's CA bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostCa {
    Never,
    /// When the host has one.
    #[default]
    Auto,
    /// Required: preparing fails when the host has none.
    Always,
}

/// Where the buildspec's `cache:` entries are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheChoice {
    /// Neither restored nor saved.
    Off,
    /// A local directory (default `<data dir>/cache`); least recently used entries are
    /// evicted above `max_bytes`.
    Local {
        dir: Option<PathBuf>,
        max_bytes: u64,
    },
    /// `s3://bucket/prefix`, shared by a pool of runners.
    S3(String),
}

/// Credentials and endpoints the pipeline uses; the caller reads them (flags,
/// environment, a job from a server) and the pipeline never looks elsewhere.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// Where each registry host is reached when pushing the project's image.
    pub registry_endpoints: Endpoints,
    /// Credentials for non-ECR registries (ECR's come from `aws`).
    pub registry_auth: RegistryAuth,
    /// Timeouts and size caps of the registry client (RUNNER_REGISTRY_TIMEOUT);
    /// default [`Limits::default`].
    pub registry_limits: Limits,
    /// The GitOps targets' tokens, asked for by name (a target's `token-env`, then
    /// RUNNER_GITOPS_TOKEN, then the forge's own variable).
    pub gitops_tokens: NamedSecrets,
    /// AWS settings for the S3 cache and ECR (on top of the SDK's standard chain).
    pub aws: AwsSettings,
    /// The signing key's path, overriding `sign.key` in the project file (a key kept
    /// outside the source tree).
    pub sign_key: Option<String>,
    /// The signing key's password.
    pub key_password: Option<Secret>,
    /// Values runner itself holds (its own AWS secret key, session token) that must never
    /// appear in the output: masked like the build's secrets.
    pub masked: Vec<(String, Secret)>,
    /// AWS credentials and endpoint overrides served to the build (default: none).
    pub build_aws: crate::build_credentials::BuildAwsSettings,
}

/// A build of `source` as `runner build` would run it.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The source directory (becomes CODEBUILD_SRC_DIR).
    pub source: PathBuf,
    /// runner's data directory: build numbers, logs, caches, the layer map.
    pub data_dir: PathBuf,
    /// The OSV advisory dumps, unless the project file names them (default
    /// `<data dir>/advisories`).
    pub advisories: Option<PathBuf>,
    /// Blob uploads at once when pushing the image (default 3).
    pub push_concurrency: Option<usize>,
    /// Default: the project file's `build.buildspec`, else `buildspec.yml` in the source.
    pub buildspec: Option<PathBuf>,
    /// Default: `runner.yml` in the source when present.
    pub project_file: Option<PathBuf>,
    /// Default: the project file's `name`, else the source directory's name.
    pub project: Option<String>,
    /// Default: the project file's `build.image`, else the standard image
    /// (`standard_image::STANDARD_IMAGE`).
    pub image: Option<String>,
    /// When the standard image is the build's image and not on the engine: build it
    /// (the CLI's default) or fail with the instruction to (this default).
    pub standard_image: crate::standard_image::StandardImage,
    /// `KEY=VALUE` overrides (win over `env_files`).
    pub env: Vec<String>,
    /// Dotenv files of overrides.
    pub env_files: Vec<PathBuf>,
    /// Resolve the buildspec's secret references from this JSON file instead of AWS.
    pub secrets_file: Option<PathBuf>,
    pub source_mode: Option<SourceMode>,
    pub timeout_minutes: Option<f64>,
    pub host_ca: HostCa,
    pub cache: CacheChoice,
    /// Keep the cache paths in engine volumes between builds.
    pub cache_volumes: bool,
    pub privileged: bool,
    /// What a build gets for running `docker` (`--docker`); default: the project file's
    /// `docker:`, else the gate for privileged builds.
    pub docker: Option<crate::docker::gate::DockerMode>,
    /// Collect artifacts here (a directory per artifact identifier).
    pub artifacts: Option<PathBuf>,
    pub zip: bool,
    /// Run the buildspec's `batch` section, this many builds at once.
    pub batch: Option<usize>,
    /// Buildspec warnings are errors.
    pub strict: bool,
    /// AWS_REGION inside the build.
    pub region: String,
    /// CODEBUILD_INITIATOR, e.g. `runner/alice`.
    pub initiator: String,
    pub credentials: Credentials,
    /// CODEBUILD_BUILD_NUMBER as assigned elsewhere (an agent's job: the server numbers a
    /// project's builds); `None` takes the next number from the data directory.
    pub build_number: Option<u64>,
    /// `runner build --fail-on`: the scan gates fail on any finding at or above this
    /// severity, over the policy file's thresholds.
    pub fail_on: Option<crate::scan::model::Severity>,
    /// The Docker engine (default: the local socket).
    pub engine: crate::docker::EngineEndpoint,
    /// Variables runner sets like its own `CODEBUILD_*` ones (a webhook job's
    /// `CODEBUILD_WEBHOOK_*` and `CODEBUILD_SOURCE_VERSION`); they win over everything.
    pub trigger_variables: Vec<(String, String)>,
    /// Untrusted source (a fork's pull request): no secrets are resolved, none of the
    /// request's credentials or secrets file reach the build, and no release stage
    /// (image push, signing, GitOps) runs.
    pub untrusted: bool,
}

impl BuildRequest {
    /// A request with runner's defaults: local cache with volumes, 5 GiB cache limit,
    /// the host's CA bundle when it has one, `us-east-1`.
    pub fn new(source: impl Into<PathBuf>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            source: source.into(),
            data_dir: data_dir.into(),
            advisories: None,
            push_concurrency: None,
            buildspec: None,
            project_file: None,
            project: None,
            image: None,
            standard_image: Default::default(),
            env: Vec::new(),
            env_files: Vec::new(),
            secrets_file: None,
            source_mode: None,
            timeout_minutes: None,
            host_ca: HostCa::Auto,
            cache: CacheChoice::Local {
                dir: None,
                max_bytes: 5120 * 1024 * 1024,
            },
            cache_volumes: true,
            privileged: false,
            docker: None,
            artifacts: None,
            zip: false,
            batch: None,
            strict: false,
            region: "us-east-1".into(),
            initiator: "runner/local".into(),
            credentials: Credentials::default(),
            build_number: None,
            fail_on: None,
            engine: crate::docker::EngineEndpoint::Local,
            trigger_variables: Vec::new(),
            untrusted: false,
        }
    }
}
