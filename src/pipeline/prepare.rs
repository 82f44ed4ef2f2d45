//! Everything that can fail before a container starts: the facts about the source, the
//! project file, the buildspec(s) and their diagnostics, the secrets, the masker, the
//! engine and the image(s), the cache store, the plan(s), the build number, the log
//! file, the scan policy and rules.

use super::request::{BuildRequest, CacheChoice, Credentials, HostCa};
use crate::build_credentials::BuildCredentials;
use crate::buildspec::{self, model::BuildSpec};
use crate::cache::{CacheError, CacheStore, LocalStore, S3Location, S3Store};
use crate::datadir;
use crate::docker::{DockerEngine, DockerError};
use crate::event::{Diagnostic, Event, Level, Reporter};
use crate::plan::{self, BuildPlan, EnvError, PlanError, PlanInput};
use crate::project::{parse_project, ProjectConfig, ScanConfig, PROJECT_FILE};
use crate::report::LogFileReporter;
use crate::run::{BatchTaskPlan, RunOptions};
use crate::scan::osv::AdvisoryDb;
use crate::scan::policy::Policy;
use crate::scan::secrets::{SecretScanner, SecretsError};
use crate::secrets::local::{LocalFileError, LocalSecrets};
use crate::secrets::{Masker, ResolveError, Secret};
use crate::source::GitInfo;
use crate::standard_image::{self, StandardImageError, STANDARD_IMAGE};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why a build could not be set up. Nothing ran; diagnostics with positions were
/// reported as [`Event::Diagnostic`]s before this.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("source directory {} not found: {source}", path.display())]
    SourceMissing {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--source {} is not a directory", .0.display())]
    SourceNotDirectory(PathBuf),
    #[error("cannot read project file {}: {source}", path.display())]
    ProjectFileUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a valid project file (see the errors above)", .0.display())]
    ProjectFileInvalid(PathBuf),
    #[error("cannot read --env-file {}: {source}", path.display())]
    EnvFileUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error("--host-ca always: the host has no CA bundle at {HOST_CA_BUNDLE}")]
    NoHostCa,
    #[error("cannot read buildspec {}: {source} (pass --buildspec FILE, or put buildspec.yml in the source directory)", path.display())]
    BuildspecUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a valid buildspec (see the errors above)", .0.display())]
    BuildspecInvalid(PathBuf),
    #[error(transparent)]
    SecretsFile(#[from] LocalFileError),
    #[error("{}: the build needs secrets that could not be resolved, so nothing ran:\n{source}", buildspec.display())]
    Secrets {
        buildspec: PathBuf,
        source: ResolveError,
    },
    /// No image named and the default image cannot be had.
    #[error(transparent)]
    StandardImage(#[from] StandardImageError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("the cache check ended abnormally: {0}")]
    CacheCheck(String),
    #[error("cannot write the build number under {}: {source} (set RUNNER_DATA_DIR to a writable directory)", data.display())]
    BuildNumber {
        data: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("cannot read policy {}: {source}", path.display())]
    PolicyUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a valid policy (see the errors above)")]
    PolicyInvalid(String),
    #[error(transparent)]
    SecretRules(#[from] SecretsError),
    #[error(transparent)]
    BuildCredentials(#[from] crate::build_credentials::BuildCredentialsError),
    #[error("--batch: {} has no batch section", .0.display())]
    NoBatchSection(PathBuf),
    #[error("batch task {identifier}: buildspec {buildspec:?} must be a path inside the source directory")]
    BatchBuildspecOutside {
        identifier: String,
        buildspec: String,
    },
}

/// A build (or batch) ready to run: every fallible step before the first container is
/// done. Run it with [`super::execute`].
pub struct Prepared {
    pub(super) engine: DockerEngine,
    pub(super) masker: Masker,
    /// The values the masker masks (resolved secrets and runner's own credentials), for a
    /// caller whose log host masks too (a GitHub Actions step's `::add-mask::`).
    pub(super) mask_values: Vec<Secret>,
    pub(super) run_opts: RunOptions,
    pub(super) work: Work,
}

pub(super) enum Work {
    Single(Box<Single>),
    Batch(Batch),
}

/// One build, its gates and what happens after it.
pub(super) struct Single {
    pub plan: BuildPlan,
    pub log: Option<Arc<LogFileReporter>>,
    /// Notices for the build's own reporters (they exist only once it runs).
    pub notices: Vec<Event>,
    pub scan: Option<ScanConfig>,
    pub policy: Policy,
    pub advisories: AdvisoryDb,
    /// Compiled once, for the source and the image.
    pub secret_scanner: Option<Arc<SecretScanner>>,
    pub source: PathBuf,
    pub config: ProjectConfig,
    pub project: String,
    pub git: GitInfo,
    /// The buildspec relative to the source (provenance).
    pub buildspec_rel: String,
    pub data: PathBuf,
    pub push_concurrency: Option<usize>,
    pub credentials: Credentials,
}

pub(super) struct Batch {
    /// Every planned build, in the buildspec's order.
    pub tasks: Vec<BatchTaskPlan>,
    pub fast_fail: bool,
    pub concurrency: usize,
}

impl Prepared {
    /// The plans that will run: one, or a batch's in the buildspec's order.
    pub fn plans(&self) -> Vec<&BuildPlan> {
        match &self.work {
            Work::Single(s) => vec![&s.plan],
            Work::Batch(b) => b.tasks.iter().map(|t| &t.plan).collect(),
        }
    }

    /// Every secret value the build's masker hides (those too short or trivial to mask
    /// left out, as the masker leaves them), so a caller can tell its own log host to hide
    /// them too before anything prints.
    pub fn mask_values(&self) -> &[Secret] {
        &self.mask_values
    }

    pub fn is_batch(&self) -> bool {
        matches!(self.work, Work::Batch(_))
    }

    /// The build's log file in the data directory (single builds).
    pub fn log_file(&self) -> Option<&Path> {
        match &self.work {
            Work::Single(s) => s.log.as_ref().map(|l| l.path()),
            Work::Batch(_) => None,
        }
    }
}

/// An untrusted source (a fork's pull request): none of the request's secrets or
/// credentials reach the build, the buildspec's secret references stay unresolved, no
/// release stage (image push, signing, GitOps) runs, and nothing shared with trusted
/// builds can be written: no Docker (the gate lets a build retag shared image names) and
/// no cache (neither restored nor saved, so a fork cannot plant content the next trusted
/// build restores).
fn withhold_secrets(req: &mut BuildRequest, facts: &mut Facts, reporter: &dyn Reporter) {
    req.docker = Some(crate::docker::gate::DockerMode::None);
    req.privileged = false;
    facts.config.privileged = None;
    req.cache = super::CacheChoice::Off;
    req.cache_volumes = false;
    req.secrets_file = None;
    req.credentials = super::Credentials {
        registry_endpoints: req.credentials.registry_endpoints.clone(),
        registry_limits: req.credentials.registry_limits,
        ..Default::default()
    };
    facts.config.build_role = None;
    let releases = facts.config.publish.is_some()
        || facts.config.sign.is_some()
        || !facts.config.gitops.is_empty();
    facts.config.publish = None;
    facts.config.sign = None;
    facts.config.gitops.clear();
    let mut message =
        "untrusted source (a fork's pull request): the build gets no secrets, no Docker and no cache".to_string();
    if releases {
        message.push_str(" and runs no release stage (image push, signing, GitOps)");
    }
    diagnostic(reporter, Diagnostic::general(Level::Info, message));
}

/// Context shared by every build of one request.
struct Facts {
    source: PathBuf,
    config: ProjectConfig,
    project: String,
    git: GitInfo,
    overrides: Vec<(String, String)>,
    host_ca: Option<String>,
}

fn diagnostic(reporter: &dyn Reporter, d: Diagnostic) {
    reporter.event(&Event::Diagnostic(d));
}

/// Makes sure the standard image is on the engine, reporting the build's steps.
async fn default_image(
    engine: &DockerEngine,
    req: &BuildRequest,
    reporter: &dyn Reporter,
) -> Result<(), StandardImageError> {
    let mut announced = false;
    standard_image::ensure(engine, &req.standard_image, |step| {
        if !announced {
            announced = true;
            diagnostic(
                reporter,
                Diagnostic::general(
                    Level::Info,
                    format!("no build image named: building the default image {STANDARD_IMAGE} (first use; several minutes)"),
                ),
            );
        }
        diagnostic(
            reporter,
            Diagnostic::general(Level::Info, format!("{STANDARD_IMAGE}: {step}")),
        );
    })
    .await
}

/// Sets the request up; reports diagnostics (buildspec, project file, policy, masking,
/// cache) to `reporter` as [`Event::Diagnostic`]s as they are found. Starts no container.
pub async fn prepare(
    mut req: BuildRequest,
    reporter: &dyn Reporter,
) -> Result<Prepared, PrepareError> {
    let mut facts = gather(&req, reporter)?;
    if req.untrusted {
        withhold_secrets(&mut req, &mut facts, reporter);
    }
    let buildspec_path = req.buildspec.clone().unwrap_or_else(|| {
        facts
            .source
            .join(facts.config.buildspec.as_deref().unwrap_or("buildspec.yml"))
    });
    let spec = load_buildspec(&buildspec_path, req.strict, reporter)?;
    let secrets = if req.batch.is_some() || req.untrusted {
        Vec::new()
    } else {
        resolve_secrets(&req, &spec, &buildspec_path).await?
    };
    let named = req.image.clone().or_else(|| facts.config.image.clone());
    let engine = DockerEngine::connect_to(&req.engine).await?;
    // Nothing names an image: the standard image, built on first use if the caller says so.
    let image = match named {
        Some(image) => image,
        None => {
            default_image(&engine, &req, reporter).await?;
            STANDARD_IMAGE.to_string()
        }
    };
    // A missing image is a setup problem, found before any build starts.
    engine.ensure_image(&image).await?;
    let mut run_opts = RunOptions {
        artifacts_dir: req.artifacts.clone(),
        zip_artifacts: req.zip,
        scratch_dir: Some(req.data_dir.join("tmp")),
        log_file: None,
        // The default image is checked just above, batch tasks' own images below.
        image_checked: true,
        cache_store: cache_store(&req, reporter).await?,
        local_cache_dir: Some(req.data_dir.join("cache-volumes")),
        cache_volumes: req.cache_volumes,
        build_credentials: None,
        docker: req.docker.or(facts.config.docker),
        engine_socket: req.engine.unix_socket(),
        registries: req
            .credentials
            .registry_endpoints
            .overrides()
            .map(|(h, u)| (h.to_string(), u.to_string()))
            .collect(),
    };
    // Resolved before the masker is made: what the build is served is masked too.
    run_opts.build_credentials = build_credentials(&mut req, &facts).await?;

    if let Some(concurrency) = req.batch {
        let (batch, (masker, mask_values)) = prepare_batch(
            &req,
            &facts,
            spec,
            &buildspec_path,
            &image,
            &engine,
            concurrency,
            reporter,
        )
        .await?;
        return Ok(Prepared {
            engine,
            masker,
            mask_values,
            run_opts,
            work: Work::Batch(batch),
        });
    }
    if spec.batch.is_some() {
        diagnostic(
            reporter,
            Diagnostic::general(
                Level::Info,
                "the buildspec has a batch section; pass --batch to run it as a batch",
            ),
        );
    }

    let (masker, mask_values) = masker_for(&secrets, &req.credentials, reporter);
    let plan = make_plan(
        &req,
        &facts,
        PlanRequest {
            spec: &spec,
            secrets,
            buildspec_display: buildspec_path.display().to_string(),
            image,
            extra_overrides: &[],
            batch_identifier: None,
            privileged: privileged(&req, &facts),
        },
    )?;
    let log_file = log_path(&req.data_dir, &facts.project, &plan);
    let log = match LogFileReporter::create(&log_file) {
        Ok(l) => Some(Arc::new(l)),
        Err(e) => {
            diagnostic(
                reporter,
                Diagnostic::general(
                    Level::Warning,
                    format!("no log file at {}: {e}", log_file.display()),
                ),
            );
            None
        }
    };
    run_opts.log_file = log.as_ref().map(|l| l.path().display().to_string());

    // The scans' policy, advisories and rules; the gates themselves run in `execute`.
    let scan = facts.config.scan.clone();
    let mut notices = Vec::new();
    let (policy, advisories, secret_scanner) = match &scan {
        Some(cfg) => {
            let policy_path = cfg.policy.as_ref().map(|p| facts.source.join(p));
            let mut policy = load_policy(policy_path.as_deref(), reporter)?;
            if let Some(severity) = req.fail_on {
                policy.fail_on(severity);
            }
            // The project file's choice, else the caller's (RUNNER_ADVISORIES).
            let explicit = cfg
                .advisories
                .as_ref()
                .map(|a| facts.source.join(a))
                .or_else(|| req.advisories.clone());
            let dir = crate::run::scans::advisories_dir(explicit.as_deref(), &req.data_dir);
            let (db, note) = crate::run::scans::open_advisories(dir.as_deref());
            // How old the advisory data is; a warning past the policy's limit.
            let age = dir
                .as_deref()
                .filter(|_| note.is_none())
                .and_then(|d| crate::scan::osv::data_age(d, time::OffsetDateTime::now_utc()));
            if let Some(message) = note {
                notices.push(Event::Notice {
                    level: Level::Warning,
                    message,
                });
            }
            if let Some(age) = age {
                notices.push(Event::Notice {
                    level: Level::Info,
                    message: age.describe(),
                });
                if let Some(message) = age.stale_warning(policy.max_data_age_hours) {
                    notices.push(Event::Notice {
                        level: Level::Warning,
                        message,
                    });
                }
            }
            let scanner = Arc::new(SecretScanner::default_rules()?);
            (policy, db, Some(scanner))
        }
        None => (Policy::default(), AdvisoryDb::empty(), None),
    };
    let buildspec_rel = buildspec_path
        .strip_prefix(&facts.source)
        .unwrap_or(&buildspec_path)
        .display()
        .to_string();
    Ok(Prepared {
        engine,
        masker,
        mask_values,
        run_opts,
        work: Work::Single(Box::new(Single {
            plan,
            log,
            notices,
            scan,
            policy,
            advisories,
            secret_scanner,
            source: facts.source,
            config: facts.config,
            project: facts.project,
            git: facts.git,
            buildspec_rel,
            data: req.data_dir.clone(),
            push_concurrency: req.push_concurrency,
            credentials: req.credentials,
        })),
    })
}

/// Reads and validates a buildspec; reports its diagnostics.
fn load_buildspec(
    path: &Path,
    strict: bool,
    reporter: &dyn Reporter,
) -> Result<BuildSpec, PrepareError> {
    let display = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|source| PrepareError::BuildspecUnreadable {
            path: path.to_path_buf(),
            source,
        })?;
    let mut parsed = buildspec::parse(&text);
    if strict {
        buildspec::apply_strict(&mut parsed.diagnostics);
    }
    for d in &parsed.diagnostics {
        diagnostic(reporter, Diagnostic::located(&display, d));
    }
    match parsed.spec {
        Some(spec) if !buildspec::has_errors(&parsed.diagnostics) => Ok(spec),
        _ => Err(PrepareError::BuildspecInvalid(path.to_path_buf())),
    }
}

fn gather(req: &BuildRequest, reporter: &dyn Reporter) -> Result<Facts, PrepareError> {
    let source =
        std::fs::canonicalize(&req.source).map_err(|source| PrepareError::SourceMissing {
            path: req.source.clone(),
            source,
        })?;
    if !source.is_dir() {
        return Err(PrepareError::SourceNotDirectory(source));
    }
    let config = load_project(req, &source, reporter)?;
    let project = req
        .project
        .clone()
        .or_else(|| config.name.clone())
        .unwrap_or_else(|| {
            source
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "project".into())
        });
    let mut overrides = Vec::new();
    for file in &req.env_files {
        let text =
            std::fs::read_to_string(file).map_err(|source| PrepareError::EnvFileUnreadable {
                path: file.clone(),
                source,
            })?;
        overrides.extend(plan::parse_env_file(&file.display().to_string(), &text)?);
    }
    for e in &req.env {
        overrides.push(plan::parse_env_assignment("--env", e)?);
    }
    let host_ca = match req.host_ca {
        HostCa::Never => None,
        HostCa::Auto => Path::new(HOST_CA_BUNDLE)
            .is_file()
            .then(|| HOST_CA_BUNDLE.to_string()),
        HostCa::Always => {
            if !Path::new(HOST_CA_BUNDLE).is_file() {
                return Err(PrepareError::NoHostCa);
            }
            Some(HOST_CA_BUNDLE.to_string())
        }
    };
    Ok(Facts {
        config,
        git: crate::source::git_info(&source),
        source,
        project,
        overrides,
        host_ca,
    })
}

/// Reads the project file: the request's, else `runner.yml` in the source when present.
fn load_project(
    req: &BuildRequest,
    source: &Path,
    reporter: &dyn Reporter,
) -> Result<ProjectConfig, PrepareError> {
    let path = match &req.project_file {
        Some(p) => p.clone(),
        None => {
            let p = source.join(PROJECT_FILE);
            if !p.is_file() {
                return Ok(ProjectConfig::default());
            }
            p
        }
    };
    let display = path.display().to_string();
    let text =
        std::fs::read_to_string(&path).map_err(|source| PrepareError::ProjectFileUnreadable {
            path: path.clone(),
            source,
        })?;
    let (config, diags) = parse_project(&text);
    for d in &diags {
        diagnostic(reporter, Diagnostic::located(&display, d));
    }
    config.ok_or(PrepareError::ProjectFileInvalid(path))
}

/// Loads a policy file (or the built-in one) with `run::scans`' loader; its diagnostics
/// are reported.
fn load_policy(path: Option<&Path>, reporter: &dyn Reporter) -> Result<Policy, PrepareError> {
    let file =
        crate::run::scans::read_policy(path).map_err(|e| PrepareError::PolicyUnreadable {
            path: e.path,
            source: e.source,
        })?;
    for d in &file.diagnostics {
        diagnostic(reporter, Diagnostic::located(&file.name, d));
    }
    file.policy.ok_or(PrepareError::PolicyInvalid(file.name))
}

/// Resolved secret variables: name → value.
type Secrets = Vec<(String, Secret)>;

/// Resolves the buildspec's parameter-store and secrets-manager references: from the
/// request's secrets file, else through AWS. Errors name references, never values.
async fn resolve_secrets(
    req: &BuildRequest,
    spec: &BuildSpec,
    buildspec: &Path,
) -> Result<Secrets, PrepareError> {
    if spec.env.parameter_store.is_empty() && spec.env.secrets_manager.is_empty() {
        return Ok(Vec::new());
    }
    let resolved = match &req.secrets_file {
        Some(file) => LocalSecrets::load(file)?.resolve(&spec.env),
        None => crate::secrets::aws::resolve_aws(&spec.env).await,
    };
    resolved.map_err(|source| PrepareError::Secrets {
        buildspec: buildspec.to_path_buf(),
        source,
    })
}

/// The credentials served to the build, when the request asks for them (runner.yml's
/// `build-role` applies only then; `--build-role` wins over it); their values join the
/// masked ones.
async fn build_credentials(
    req: &mut BuildRequest,
    facts: &Facts,
) -> Result<Option<Arc<BuildCredentials>>, PrepareError> {
    let mut settings = req.credentials.build_aws.clone();
    if settings.serve && settings.role_arn.is_none() {
        settings.role_arn = facts.config.build_role.clone();
    }
    let session = format!("runner-{}", datadir::safe_name(&facts.project));
    let session: String = session.chars().take(64).collect();
    let Some(creds) = BuildCredentials::prepare(&settings, &req.credentials.aws, &session).await?
    else {
        return Ok(None);
    };
    req.credentials.masked.extend(creds.masked_values().await);
    Ok(Some(Arc::new(creds)))
}

/// Masks the build's secrets and the values runner itself holds; reports values too
/// short to mask. Returns the values masked beside the masker.
fn masker_for(
    secrets: &[(String, Secret)],
    creds: &Credentials,
    reporter: &dyn Reporter,
) -> (Masker, Vec<Secret>) {
    let all = || secrets.iter().chain(creds.masked.iter());
    let masker = Masker::new(all().map(|(n, s)| (n.as_str(), s)));
    let skipped: std::collections::HashSet<&str> =
        masker.skipped().iter().map(|s| s.name.as_str()).collect();
    let values = all()
        .filter(|(n, _)| !skipped.contains(n.as_str()))
        .map(|(_, s)| s.clone())
        .collect();
    for skipped in masker.skipped() {
        diagnostic(
            reporter,
            Diagnostic::general(
                Level::Warning,
                format!(
                    "secret {} is not masked in the output ({})",
                    skipped.name, skipped.reason
                ),
            ),
        );
    }
    (masker, values)
}

/// The cache store the request asks for. A bad S3 location is an error; a local store
/// that cannot be had turns the cache off with a warning.
async fn cache_store(
    req: &BuildRequest,
    reporter: &dyn Reporter,
) -> Result<Option<Arc<dyn CacheStore>>, PrepareError> {
    match &req.cache {
        CacheChoice::Off => Ok(None),
        CacheChoice::S3(url) => {
            let location = S3Location::parse(url)?;
            let store = S3Store::connect(location, req.credentials.aws.clone()).await?;
            let store = tokio::task::spawn_blocking(move || store.check().map(|()| store))
                .await
                .map_err(|e| PrepareError::CacheCheck(e.to_string()))??;
            Ok(Some(Arc::new(store)))
        }
        CacheChoice::Local { dir, max_bytes } => {
            let dir = dir.clone().unwrap_or_else(|| req.data_dir.join("cache"));
            match LocalStore::new(dir) {
                Ok(store) => Ok(Some(Arc::new(store.with_max_bytes(*max_bytes)))),
                Err(e) => {
                    diagnostic(
                        reporter,
                        Diagnostic::general(Level::Warning, format!("the build cache is off: {e}")),
                    );
                    Ok(None)
                }
            }
        }
    }
}

fn privileged(req: &BuildRequest, facts: &Facts) -> bool {
    req.privileged || facts.config.privileged.unwrap_or(false)
}

struct PlanRequest<'a> {
    spec: &'a BuildSpec,
    secrets: Secrets,
    buildspec_display: String,
    image: String,
    extra_overrides: &'a [(String, String)],
    batch_identifier: Option<String>,
    privileged: bool,
}

fn make_plan(
    req: &BuildRequest,
    facts: &Facts,
    p: PlanRequest<'_>,
) -> Result<BuildPlan, PrepareError> {
    let uuid = datadir::new_uuid();
    let number = match req.build_number {
        Some(n) => n,
        None => datadir::next_build_number(&req.data_dir, &facts.project).map_err(|source| {
            PrepareError::BuildNumber {
                data: req.data_dir.clone(),
                source,
            }
        })?,
    };
    // A batch task's own variables sit under the request's overrides.
    let mut overrides: Vec<(String, String)> = p.extra_overrides.to_vec();
    overrides.extend(facts.overrides.iter().cloned());
    let input = PlanInput {
        project: facts.project.clone(),
        buildspec_display: p.buildspec_display,
        source_dir: facts.source.display().to_string(),
        image: p.image,
        build_uuid: uuid,
        build_number: number,
        start_time_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0),
        resolved_source_version: facts.git.commit.clone(),
        source_version: facts
            .git
            .branch
            .clone()
            .or_else(|| facts.git.commit.clone()),
        source_repo_url: facts.git.origin.clone(),
        secrets: p.secrets,
        project_variables: facts.config.variables.clone(),
        overrides,
        trust_host_ca: facts.host_ca.clone(),
        region: req.region.clone(),
        source_mode: req
            .source_mode
            .or(facts.config.source_mode)
            .unwrap_or_default(),
        timeout: Duration::from_secs_f64(
            (req.timeout_minutes
                .or(facts.config.timeout_minutes)
                .unwrap_or(60.0)
                * 60.0)
                .max(1.0),
        ),
        batch_identifier: p.batch_identifier,
        privileged: p.privileged,
        initiator: req.initiator.clone(),
        trigger_variables: req.trigger_variables.clone(),
    };
    Ok(plan::plan(p.spec, &input)?)
}

fn log_path(data: &Path, project: &str, plan: &BuildPlan) -> PathBuf {
    let uuid = plan.build_id.rsplit(':').next().unwrap_or("build");
    data.join("logs")
        .join(datadir::safe_name(project))
        .join(format!("{}-{uuid}.log", plan.build_number))
}

/// Plans every build of the buildspec's `batch` section; each distinct buildspec is read,
/// and its secrets resolved, once.
#[allow(clippy::too_many_arguments)]
async fn prepare_batch(
    req: &BuildRequest,
    facts: &Facts,
    spec: BuildSpec,
    buildspec_path: &Path,
    image: &str,
    engine: &DockerEngine,
    concurrency: usize,
    reporter: &dyn Reporter,
) -> Result<(Batch, (Masker, Vec<Secret>)), PrepareError> {
    let Some(batch) = &spec.batch else {
        return Err(PrepareError::NoBatchSection(buildspec_path.to_path_buf()));
    };
    let (defs, fast_fail) = plan::expand_batch(batch);
    for def in &defs {
        if let Some(img) = &def.image {
            engine.ensure_image(img).await?;
        }
    }
    let mut tasks = Vec::new();
    // The buildspec read already; its secrets are resolved when a task first uses it.
    let mut specs: Vec<(PathBuf, BuildSpec, Option<Secrets>)> =
        vec![(buildspec_path.to_path_buf(), spec.clone(), None)];
    let mut all_secrets: Secrets = Vec::new();
    for def in &defs {
        let path = match &def.buildspec {
            Some(rel) => {
                if Path::new(rel).is_absolute() || rel.split('/').any(|c| c == "..") {
                    return Err(PrepareError::BatchBuildspecOutside {
                        identifier: def.identifier.clone(),
                        buildspec: rel.clone(),
                    });
                }
                facts.source.join(rel)
            }
            None => buildspec_path.to_path_buf(),
        };
        let index = match specs.iter().position(|(p, ..)| *p == path) {
            Some(i) => i,
            None => {
                let s = load_buildspec(&path, req.strict, reporter)?;
                specs.push((path.clone(), s, None));
                specs.len() - 1
            }
        };
        let (_, task_spec, resolved) = &mut specs[index];
        let task_secrets = match resolved {
            Some(sec) => sec.clone(),
            None => {
                let sec = resolve_secrets(req, task_spec, &path).await?;
                all_secrets.extend(sec.iter().cloned());
                *resolved = Some(sec.clone());
                sec
            }
        };
        let plan = make_plan(
            req,
            facts,
            PlanRequest {
                spec: task_spec,
                secrets: task_secrets,
                buildspec_display: path.display().to_string(),
                image: def.image.clone().unwrap_or_else(|| image.to_string()),
                extra_overrides: &def.variables,
                batch_identifier: Some(def.identifier.clone()),
                privileged: def.privileged.unwrap_or(privileged(req, facts)),
            },
        )?;
        tasks.push(BatchTaskPlan {
            identifier: def.identifier.clone(),
            plan,
            depend_on: def.depend_on.clone(),
            ignore_failure: def.ignore_failure,
        });
    }
    let masking = masker_for(&all_secrets, &req.credentials, reporter);
    Ok((
        Batch {
            tasks,
            fast_fail,
            concurrency,
        },
        masking,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Recorder;

    fn diagnostics(rec: &Recorder) -> Vec<Diagnostic> {
        rec.0
            .lock()
            .map(|events| {
                events
                    .iter()
                    .filter_map(|e| match e {
                        Event::Diagnostic(d) => Some(d.clone()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_bad_buildspec_fails_in_prepare_with_its_diagnostic() {
        let src = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let data = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            src.path().join("buildspec.yml"),
            "version: 0.2\nphases:\n  build:\n    commands: make all\n    colour: red\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let rec = Recorder::default();
        // No engine is asked for anything: the buildspec fails first, so this runs
        // without Docker and no container can have started.
        let mut req = BuildRequest::new(src.path(), data.path());
        req.image = Some("runner/does-not-matter:1".into());
        let err = match prepare(req, &rec).await {
            Ok(_) => panic!("a bad buildspec was prepared"),
            Err(e) => e,
        };
        assert!(
            matches!(&err, PrepareError::BuildspecInvalid(p) if p.ends_with("buildspec.yml")),
            "{err}"
        );
        let diags = diagnostics(&rec);
        let error = diags
            .iter()
            .find(|d| d.level == Level::Error)
            .unwrap_or_else(|| panic!("no error diagnostic in {diags:?}"));
        assert_eq!((error.line, error.col), (Some(4), Some(15)));
        assert!(
            error
                .file
                .as_deref()
                .is_some_and(|f| f.ends_with("buildspec.yml")),
            "{error:?}"
        );
        let rendered = error.render();
        assert!(
            rendered.rsplit("buildspec.yml:").next().is_some_and(|r| r
                .starts_with("4:15: error: phases.build.commands must be a list of commands")
                && r.contains("\n  = help: ")),
            "{rendered}"
        );
        // The unknown key is reported too, as a warning with its position.
        assert!(
            diags
                .iter()
                .any(|d| d.level == Level::Warning && d.line == Some(5)),
            "{diags:?}"
        );
        // Nothing but diagnostics: no build was planned, so no build number was taken.
        assert!(!data.path().join("projects").exists());
    }

    #[tokio::test]
    async fn a_bad_project_file_is_reported_as_diagnostics() {
        let src = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let data = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            src.path().join("runner.yml"),
            "build:\n  timeout-minutes: soon\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let rec = Recorder::default();
        let err = match prepare(BuildRequest::new(src.path(), data.path()), &rec).await {
            Ok(_) => panic!("a bad project file was prepared"),
            Err(e) => e,
        };
        assert!(matches!(err, PrepareError::ProjectFileInvalid(_)), "{err}");
        let diags = diagnostics(&rec);
        assert!(
            diags.iter().any(|d| d.level == Level::Error
                && d.line == Some(2)
                && d.message.starts_with("build.timeout-minutes")),
            "{diags:?}"
        );
    }
}
