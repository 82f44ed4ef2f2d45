//! `runner build`: gather the facts at the edge, plan, run, report, exit.

use super::args::{BuildArgs, HostCa};
use super::exit::ExitStatus;
use crate::aws_config::AwsSettings;
use crate::buildspec::{self, model::BuildSpec};
use crate::cache::{CacheStore, LocalStore, S3Location, S3Store};
use crate::datadir;
use crate::docker::DockerEngine;
use crate::event::{Event, Fanout, Level, SharedReporter};
use crate::plan::{self, BuildPlan, PlanInput};
use crate::project::{parse_project, ProjectConfig, PROJECT_FILE};
use crate::report::MaskingReporter;
use crate::report::{JsonReporter, LogFileReporter, TerminalOptions, TerminalReporter};
use crate::run::{self, BatchOptions, BatchTaskPlan, Cancel, CancelReason, Canceller, RunOptions};
use crate::secrets::local::LocalSecrets;
use crate::secrets::{Masker, Secret};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A problem found before anything runs: printed as `error: ...`, exit 2.
struct SetupError(String);

impl<E: std::fmt::Display> From<E> for SetupError {
    fn from(e: E) -> Self {
        SetupError(e.to_string())
    }
}

pub async fn run(args: BuildArgs) -> ExitStatus {
    match run_inner(args).await {
        Ok(status) => status,
        Err(SetupError(msg)) => {
            eprintln!("error: {msg}");
            ExitStatus::Setup
        }
    }
}

/// Reads and validates a buildspec; prints its diagnostics on standard error.
fn load_buildspec(path: &Path, strict: bool) -> Result<BuildSpec, SetupError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        SetupError(format!(
            "cannot read buildspec {display}: {e} (pass --buildspec FILE, or put buildspec.yml in the source directory)"
        ))
    })?;
    let mut parsed = buildspec::parse(&text);
    if strict {
        buildspec::apply_strict(&mut parsed.diagnostics);
    }
    for d in &parsed.diagnostics {
        eprintln!("{}", buildspec::render(&display, d));
    }
    match parsed.spec {
        Some(spec) if !buildspec::has_errors(&parsed.diagnostics) => Ok(spec),
        _ => Err(SetupError(format!(
            "{display} is not a valid buildspec (see the errors above)"
        ))),
    }
}

/// Context shared by every build of one invocation.
struct Facts {
    source: PathBuf,
    config: ProjectConfig,
    project: String,
    git: crate::source::GitInfo,
    overrides: Vec<(String, String)>,
    host_ca: Option<String>,
    data: PathBuf,
}

fn gather(args: &BuildArgs) -> Result<Facts, SetupError> {
    let source = std::fs::canonicalize(&args.source).map_err(|e| {
        SetupError(format!(
            "source directory {} not found: {e}",
            args.source.display()
        ))
    })?;
    if !source.is_dir() {
        return Err(SetupError(format!(
            "--source {} is not a directory",
            source.display()
        )));
    }
    let config = load_project(args, &source)?;
    let project = args
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
    for file in &args.env_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| SetupError(format!("cannot read --env-file {}: {e}", file.display())))?;
        overrides.extend(plan::parse_env_file(&file.display().to_string(), &text)?);
    }
    for e in &args.env {
        overrides.push(plan::parse_env_assignment("--env", e)?);
    }
    let host_ca = match args.host_ca {
        HostCa::Never => None,
        HostCa::Auto => Path::new(HOST_CA_BUNDLE)
            .is_file()
            .then(|| HOST_CA_BUNDLE.to_string()),
        HostCa::Always => {
            if !Path::new(HOST_CA_BUNDLE).is_file() {
                return Err(SetupError(format!(
                    "--host-ca always: the host has no CA bundle at {HOST_CA_BUNDLE}"
                )));
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
        data: datadir::data_dir(),
    })
}

/// Resolved secret variables: name → value.
type Secrets = Vec<(String, Secret)>;

/// Resolves the buildspec's parameter-store and secrets-manager references before anything
/// runs: from `--secrets-file`, else through AWS. Errors name references, never values.
async fn resolve_secrets(
    args: &BuildArgs,
    spec: &BuildSpec,
    buildspec: &Path,
) -> Result<Vec<(String, Secret)>, SetupError> {
    if spec.env.parameter_store.is_empty() && spec.env.secrets_manager.is_empty() {
        return Ok(Vec::new());
    }
    let resolved = match &args.secrets_file {
        Some(file) => LocalSecrets::load(file)?.resolve(&spec.env),
        None => crate::secrets::aws::resolve_aws(&spec.env).await,
    };
    resolved.map_err(|e| {
        SetupError(format!(
            "{}: the build needs secrets that could not be resolved, so nothing ran:\n{e}",
            buildspec.display()
        ))
    })
}

/// Masks the build's secrets and the AWS credentials runner itself holds; warns about
/// values too short to mask.
fn masker_for(secrets: &[(String, Secret)]) -> Masker {
    // Real secret access keys are 40 characters and session tokens far longer; shorter
    // values are local stand-ins' dummies (`test`), and masking them would blank every
    // "test" in the log.
    let own: Vec<(String, Secret)> = ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
        .iter()
        .filter_map(|n| {
            std::env::var(n)
                .ok()
                .filter(|v| v.len() >= 16)
                .map(|v| (n.to_string(), Secret::new(v)))
        })
        .collect();
    let masker = Masker::new(
        secrets
            .iter()
            .chain(own.iter())
            .map(|(n, s)| (n.as_str(), s)),
    );
    for skipped in masker.skipped() {
        eprintln!(
            "warning: secret {} is not masked in the output ({})",
            skipped.name, skipped.reason
        );
    }
    masker
}

/// The cache store: S3 with `--cache-s3`, else local (`--cache-dir`, else the data
/// directory); none with `--no-cache`. A bad S3 location is a setup error.
async fn cache_store(
    args: &BuildArgs,
    facts: &Facts,
) -> Result<Option<Arc<dyn CacheStore>>, SetupError> {
    if args.no_cache {
        return Ok(None);
    }
    if let Some(url) = &args.cache_s3 {
        let location = S3Location::parse(url)?;
        let store = S3Store::connect(location, AwsSettings::default()).await?;
        let store = tokio::task::spawn_blocking(move || store.check().map(|()| store))
            .await
            .map_err(|e| SetupError(e.to_string()))??;
        return Ok(Some(Arc::new(store)));
    }
    Ok(local_cache_store(args, facts))
}

fn local_cache_store(args: &BuildArgs, facts: &Facts) -> Option<Arc<dyn CacheStore>> {
    let dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| facts.data.join("cache"));
    match LocalStore::new(dir.clone()) {
        Ok(store) => Some(Arc::new(
            store.with_max_bytes(args.cache_size.saturating_mul(1024 * 1024)),
        )),
        Err(e) => {
            eprintln!("warning: the build cache is off: {e}");
            None
        }
    }
}

fn privileged(args: &BuildArgs, facts: &Facts) -> bool {
    args.privileged || facts.config.privileged.unwrap_or(false)
}

/// Reads the project file: `--project-file`, else `runner.yml` in the source when present.
fn load_project(args: &BuildArgs, source: &Path) -> Result<ProjectConfig, SetupError> {
    let path = match &args.project_file {
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
    let text = std::fs::read_to_string(&path)
        .map_err(|e| SetupError(format!("cannot read project file {display}: {e}")))?;
    let (config, diags) = parse_project(&text);
    for d in &diags {
        eprintln!("{}", buildspec::render(&display, d));
    }
    config.ok_or_else(|| {
        SetupError(format!(
            "{display} is not a valid project file (see the errors above)"
        ))
    })
}

struct PlanRequest<'a> {
    spec: &'a BuildSpec,
    secrets: Vec<(String, Secret)>,
    buildspec_display: String,
    image: String,
    extra_overrides: &'a [(String, String)],
    batch_identifier: Option<String>,
    privileged: bool,
}

fn make_plan(
    args: &BuildArgs,
    facts: &Facts,
    req: PlanRequest<'_>,
) -> Result<BuildPlan, SetupError> {
    let uuid = datadir::new_uuid();
    let number = datadir::next_build_number(&facts.data, &facts.project).map_err(|e| {
        SetupError(format!(
            "cannot write the build number under {}: {e} (set RUNNER_DATA_DIR to a writable directory)",
            facts.data.display()
        ))
    })?;
    let mut overrides = facts.overrides.clone();
    // A batch task's own variables sit under the command line's overrides.
    let mut merged: Vec<(String, String)> = req.extra_overrides.to_vec();
    merged.append(&mut overrides);
    let input = PlanInput {
        project: facts.project.clone(),
        buildspec_display: req.buildspec_display,
        source_dir: facts.source.display().to_string(),
        image: req.image,
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
        secrets: req.secrets,
        project_variables: facts.config.variables.clone(),
        overrides: merged,
        trust_host_ca: facts.host_ca.clone(),
        region: args.region.clone(),
        source_mode: args
            .source_mode
            .or(facts.config.source_mode)
            .unwrap_or_default(),
        timeout: Duration::from_secs_f64(
            (args
                .timeout
                .or(facts.config.timeout_minutes)
                .unwrap_or(60.0)
                * 60.0)
                .max(1.0),
        ),
        batch_identifier: req.batch_identifier,
        privileged: req.privileged,
        initiator: format!(
            "runner/{}",
            std::env::var("USER").unwrap_or_else(|_| "local".into())
        ),
    };
    Ok(plan::plan(req.spec, &input)?)
}

fn log_path(facts: &Facts, plan: &BuildPlan) -> PathBuf {
    let uuid = plan.build_id.rsplit(':').next().unwrap_or("build");
    facts
        .data
        .join("logs")
        .join(datadir::safe_name(&facts.project))
        .join(format!("{}-{uuid}.log", plan.build_number))
}

fn reporters(
    args: &BuildArgs,
    log: Option<Arc<LogFileReporter>>,
    masker: &Masker,
) -> SharedReporter {
    let mut list: Vec<SharedReporter> = Vec::new();
    if args.json {
        list.push(Arc::new(JsonReporter::new(std::io::stdout())));
    } else {
        list.push(Arc::new(TerminalReporter::new(TerminalOptions::detect(
            args.quiet,
        ))));
    }
    if let Some(l) = log {
        list.push(l);
    }
    // Every reporter sits behind the masker.
    Arc::new(MaskingReporter::new(masker.clone(), Arc::new(Fanout(list))))
}

/// Ctrl-C or SIGTERM → cancel the build(s).
fn watch_signals() -> Cancel {
    let (canceller, cancel) = Canceller::new();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        canceller.cancel(CancelReason::Stopped);
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        canceller.cancel(CancelReason::Stopped);
    });
    cancel
}

async fn run_inner(args: BuildArgs) -> Result<ExitStatus, SetupError> {
    let endpoints = super::image::registry_endpoints(&args.registry_endpoint)?;
    let facts = gather(&args)?;
    let buildspec_path = args.buildspec.clone().unwrap_or_else(|| {
        facts
            .source
            .join(facts.config.buildspec.as_deref().unwrap_or("buildspec.yml"))
    });
    let spec = load_buildspec(&buildspec_path, args.strict)?;
    let secrets = if args.batch {
        Vec::new()
    } else {
        resolve_secrets(&args, &spec, &buildspec_path).await?
    };
    let image = args.image.clone().or_else(|| facts.config.image.clone()).ok_or_else(|| {
        SetupError(
            "no build image: pass --image IMAGE, set RUNNER_IMAGE, or set build.image in runner.yml; `bash scripts/images.sh` builds runner/busybox:latest locally"
                .into(),
        )
    })?;
    let engine = DockerEngine::connect().await?;
    // A missing image is a setup problem (exit 2), found before any build starts.
    engine.ensure_image(&image).await?;
    let cancel = watch_signals();
    let run_opts = RunOptions {
        artifacts_dir: args.artifacts.clone(),
        zip_artifacts: args.zip,
        scratch_dir: Some(facts.data.join("tmp")),
        log_file: None,
        // The default image is checked just above, batch tasks' own images in run_batch.
        image_checked: true,
        cache_store: cache_store(&args, &facts).await?,
        local_cache_dir: Some(facts.data.join("cache-volumes")),
        cache_volumes: !args.no_cache_volumes,
    };

    if args.batch {
        return run_batch(
            &args,
            &facts,
            &spec,
            &buildspec_path,
            &image,
            &engine,
            run_opts,
            cancel,
        )
        .await;
    }
    if spec.batch.is_some() {
        eprintln!("note: the buildspec has a batch section; pass --batch to run it as a batch");
    }

    let masker = masker_for(&secrets);
    let plan = make_plan(
        &args,
        &facts,
        PlanRequest {
            spec: &spec,
            secrets,
            buildspec_display: buildspec_path.display().to_string(),
            image,
            extra_overrides: &[],
            batch_identifier: None,
            privileged: privileged(&args, &facts),
        },
    )?;
    let log_file = log_path(&facts, &plan);
    let log = match LogFileReporter::create(&log_file) {
        Ok(l) => Some(Arc::new(l)),
        Err(e) => {
            eprintln!("warning: no log file at {}: {e}", log_file.display());
            None
        }
    };
    let mut run_opts = run_opts;
    run_opts.log_file = log.as_ref().map(|l| l.path().display().to_string());
    let reporter = reporters(&args, log, &masker);
    let started_on = run::now_rfc3339();

    // Scans of the source gate the build: nothing runs when the policy fails.
    let scan_cfg = facts.config.scan.clone();
    let (policy, advisories) = match &scan_cfg {
        Some(cfg) => {
            let policy_path = cfg.policy.as_ref().map(|p| facts.source.join(p));
            let (policy, warnings) =
                run::scans::load_policy(policy_path.as_deref()).map_err(SetupError)?;
            for w in warnings {
                eprintln!("{w}");
            }
            let explicit = cfg.advisories.as_ref().map(|a| facts.source.join(a));
            let dir = run::scans::advisories_dir(explicit.as_deref(), &facts.data);
            let (db, note) = run::scans::open_advisories(dir.as_deref());
            if let Some(n) = note {
                reporter.event(&Event::Notice {
                    level: Level::Warning,
                    message: n,
                });
            }
            (policy, db)
        }
        None => (Default::default(), crate::scan::osv::AdvisoryDb::empty()),
    };
    // The secret rules are compiled once, for the source and the image.
    let secret_scanner = match &scan_cfg {
        Some(_) => Some(Arc::new(
            crate::scan::secrets::SecretScanner::default_rules().map_err(SetupError::from)?,
        )),
        None => None,
    };
    if let (Some(cfg), Some(scanner)) = (&scan_cfg, &secret_scanner) {
        let started = std::time::Instant::now();
        let mut findings = run::scans::Findings::default();
        let source = facts.source.clone();
        let (secrets, deps) = (cfg.secrets, cfg.deps);
        let db = &advisories;
        if secrets {
            let (src, scanner) = (source.clone(), scanner.clone());
            let f = tokio::task::spawn_blocking(move || run::scans::scan_secrets(&src, &scanner))
                .await
                .map_err(|e| SetupError(e.to_string()))?
                .map_err(SetupError)?;
            findings.extend(f);
        }
        if deps {
            findings.extend(run::scans::scan_deps(&source, db).map_err(SetupError)?);
        }
        if (secrets || deps)
            && run::scans::judge(reporter.as_ref(), "source", &findings, &policy, started).is_err()
        {
            return Ok(ExitStatus::Failed);
        }
    }

    let result = run::run_build(&engine, &plan, &run_opts, reporter.as_ref(), cancel).await;
    let status = ExitStatus::from_build(result.status);
    if status != ExitStatus::Success {
        return Ok(status);
    }
    let Some(image_cfg) = &facts.config.publish else {
        if !facts.config.gitops.is_empty() {
            reporter.event(&Event::Notice {
                level: Level::Warning,
                message: "runner.yml has gitops: but no image: section; nothing to deploy".into(),
            });
        }
        return Ok(status);
    };
    let connect = crate::publish::connect::ConnectOptions {
        endpoints,
        // ECR's region is the one in the repository's host.
        aws: AwsSettings::default(),
        create_repository: image_cfg.create_repository,
        ..Default::default()
    };
    let buildspec_rel = buildspec_path
        .strip_prefix(&facts.source)
        .unwrap_or(&buildspec_path)
        .display()
        .to_string();
    // RUNNER_SIGN_KEY points at the key from outside the source tree (CI secrets, demos).
    let sign_cfg = facts.config.sign.clone().map(|mut s| {
        if let Ok(k) = std::env::var("RUNNER_SIGN_KEY") {
            s.key = k;
        }
        s
    });
    let input = run::ReleaseInput {
        source: &facts.source,
        image: image_cfg,
        sign: sign_cfg.as_ref(),
        key_password: std::env::var("COSIGN_PASSWORD").ok().map(Secret::new),
        project: &facts.project,
        build_id: &plan.build_id,
        build_number: plan.build_number,
        revision: facts.git.commit.as_deref(),
        branch: facts.git.branch.as_deref(),
        source_uri: facts.git.origin.as_deref(),
        buildspec: &buildspec_rel,
        build_image: &plan.image,
        started_on,
        connect,
        layer_map: facts.data.join("publish").join("layers.json"),
        work_dir: facts.data.join("tmp"),
        image_scanner: secret_scanner
            .as_deref()
            .filter(|_| scan_cfg.as_ref().is_some_and(|c| c.image)),
        policy: &policy,
        advisories: &advisories,
        gitops: &facts.config.gitops,
    };
    match run::release(&engine, &input, reporter.as_ref()).await {
        Ok(_) => Ok(ExitStatus::Success),
        Err(_) => Ok(ExitStatus::Failed),
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_batch(
    args: &BuildArgs,
    facts: &Facts,
    spec: &BuildSpec,
    buildspec_path: &Path,
    image: &str,
    engine: &DockerEngine,
    run_opts: RunOptions,
    cancel: Cancel,
) -> Result<ExitStatus, SetupError> {
    let Some(batch) = &spec.batch else {
        return Err(SetupError(format!(
            "--batch: {} has no batch section",
            buildspec_path.display()
        )));
    };
    let (defs, fast_fail) = plan::expand_batch(batch);
    for def in &defs {
        if let Some(img) = &def.image {
            engine.ensure_image(img).await?;
        }
    }
    let mut tasks = Vec::new();
    // Each distinct buildspec is read, and its secrets resolved, once.
    let mut specs: Vec<(PathBuf, BuildSpec, Secrets)> = Vec::new();
    let mut all_secrets: Vec<(String, Secret)> = Vec::new();
    for def in &defs {
        let path = match &def.buildspec {
            Some(rel) => {
                if Path::new(rel).is_absolute() || rel.split('/').any(|c| c == "..") {
                    return Err(SetupError(format!(
                        "batch task {}: buildspec {rel:?} must be a path inside the source directory",
                        def.identifier
                    )));
                }
                facts.source.join(rel)
            }
            None => buildspec_path.to_path_buf(),
        };
        let (task_spec, task_secrets) = match specs.iter().find(|(p, ..)| *p == path) {
            Some((_, s, sec)) => (s.clone(), sec.clone()),
            None => {
                let s = load_buildspec(&path, args.strict)?;
                let sec = resolve_secrets(args, &s, &path).await?;
                all_secrets.extend(sec.iter().cloned());
                specs.push((path.clone(), s.clone(), sec.clone()));
                (s, sec)
            }
        };
        let plan = make_plan(
            args,
            facts,
            PlanRequest {
                spec: &task_spec,
                secrets: task_secrets,
                buildspec_display: path.display().to_string(),
                image: def.image.clone().unwrap_or_else(|| image.to_string()),
                extra_overrides: &def.variables,
                batch_identifier: Some(def.identifier.clone()),
                privileged: def.privileged.unwrap_or(privileged(args, facts)),
            },
        )?;
        tasks.push(BatchTaskPlan {
            identifier: def.identifier.clone(),
            plan,
            depend_on: def.depend_on.clone(),
            ignore_failure: def.ignore_failure,
        });
    }
    let reporter = reporters(args, None, &masker_for(&all_secrets));
    reporter.event(&Event::Notice {
        level: Level::Info,
        message: format!(
            "batch: {} builds{}",
            tasks.len(),
            if fast_fail { ", fast-fail" } else { "" }
        ),
    });
    let mut user_stop = cancel.clone();
    let results = run::run_batch(
        engine,
        tasks,
        &BatchOptions {
            fast_fail,
            concurrency: args.concurrency,
        },
        &run_opts,
        reporter.clone(),
        cancel,
    )
    .await;
    let stopped_by_user = {
        use futures_util::FutureExt;
        user_stop.cancelled().now_or_never().is_some()
    };
    let mut lines = Vec::new();
    for def in &defs {
        let line = match results.iter().find(|(id, _, _)| *id == def.identifier) {
            Some((_, r, ignore)) => format!(
                "{}{}",
                r.status.as_str(),
                if *ignore { " (ignore-failure)" } else { "" }
            ),
            None => "NOT STARTED".to_string(),
        };
        lines.push(format!("  {:<24} {line}", def.identifier));
    }
    if !args.json {
        println!("\nBatch:\n{}", lines.join("\n"));
    }
    Ok(batch_status(&results, defs.len(), stopped_by_user))
}

/// A batch's exit status, independent of the order its builds finished in: STOPPED when
/// the user stopped it; else FAULT when a build that may not fail faulted; else FAILED
/// when one failed or timed out, or when a build never started (its dependency failed,
/// or fast-fail stopped the batch); else SUCCESS. Builds that fast-fail stopped count
/// through the failure that stopped them; builds with `ignore-failure` never count.
fn batch_status(
    results: &[(String, crate::event::BuildResult, bool)],
    planned: usize,
    stopped_by_user: bool,
) -> ExitStatus {
    use crate::event::BuildStatus;
    if stopped_by_user {
        return ExitStatus::Stopped;
    }
    let counted = || results.iter().filter(|(_, _, ignore)| !ignore);
    if counted().any(|(_, r, _)| r.status == BuildStatus::Fault) {
        return ExitStatus::Fault;
    }
    if counted().any(|(_, r, _)| r.status != BuildStatus::Succeeded) || results.len() < planned {
        return ExitStatus::Failed;
    }
    ExitStatus::Success
}
