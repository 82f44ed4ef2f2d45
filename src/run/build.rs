//! One build: provision a container, run the phases with CodeBuild's semantics, collect
//! artifacts and reports, and always remove the container.

use super::cache_steps;
use super::cancel::{Cancel, CancelReason};
use super::ctx::{Ctx, Progress};
use super::runtime_steps::{self, RuntimeStep};
use super::shells::{inject_secrets, Shells};
use crate::artifacts::{self, CollectOptions};
use crate::buildspec::model::{Artifacts, Command, OnFailure, PhaseName, Version};
use crate::cache::{CacheStore, HostMount};
use crate::docker::gate::{DockerMode, Scope as GateScope};
use crate::docker::{
    BuildContainer, CommandExit, ContainerSpec, DockerEngine, DockerError, DockerGate, DockerShell,
};
use crate::event::{
    ArtifactSummary, BuildResult, BuildStatus, CacheSummary, Event, Level, PhaseStatus, Reporter,
    Stream,
};
use crate::plan::{BuildPlan, CachePlan, PlannedPhase, SourceMode, CA_BUNDLE_MOUNT};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

/// Options that are about where results go, not about the build itself.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Write artifacts here (a directory per artifact identifier).
    pub artifacts_dir: Option<PathBuf>,
    /// Write each artifact as `<identifier>.zip` instead of a directory.
    pub zip_artifacts: bool,
    /// Where to put temporary files (copies of the source in copy mode).
    pub scratch_dir: Option<PathBuf>,
    pub log_file: Option<String>,
    /// Where `cache:` entries are kept; `None` turns the cache off.
    pub cache_store: Option<Arc<dyn CacheStore>>,
    /// Where the per-project locks and the cache volumes' state are kept (runner's
    /// `<data dir>/cache-volumes`). `None`: no state on this machine, so neither cache
    /// volumes nor a privileged project's /var/lib/docker volume.
    pub local_cache_dir: Option<PathBuf>,
    /// Keep the cache paths in engine volumes between builds (CodeBuild's
    /// LOCAL_CUSTOM_CACHE); `false`: restore from the archive every time.
    pub cache_volumes: bool,
    /// The caller already made sure the image is on the engine (the CLI does, to exit 2
    /// before a build starts); skip the check in PROVISIONING.
    pub image_checked: bool,
    /// AWS credentials served to the build (an endpoint per build, for its lifetime).
    pub build_credentials: Option<Arc<crate::build_credentials::BuildCredentials>>,
    /// What builds get for running `docker` (`None`: the gate for privileged builds).
    pub docker: Option<DockerMode>,
    /// The host engine's unix socket the Docker gate forwards to.
    pub engine_socket: Option<PathBuf>,
    /// `(registry host, endpoint URL)`: registries mapped elsewhere
    /// (`--registry-endpoint`), mapped the same way for `docker` inside the build.
    pub registries: Vec<(String, String)>,
}

/// Runs one build to the end and returns its result. Never leaves a container behind.
pub async fn run_build(
    engine: &DockerEngine,
    plan: &BuildPlan,
    opts: &RunOptions,
    reporter: &dyn Reporter,
    mut cancel: Cancel,
) -> BuildResult {
    let started = Instant::now();
    // The build's credentials endpoint, alive until the container is gone; what the shell
    // needs of it is exported over stdin like the secrets.
    let credentials = match &opts.build_credentials {
        Some(c) => Some(c.start(engine).await),
        None => None,
    };
    let with_credentials;
    let plan = match &credentials {
        Some(Ok(session)) => {
            with_credentials = super::credentials::plan_with(plan, session);
            &with_credentials
        }
        _ => plan,
    };
    let progress = Mutex::new(Progress::default());
    let ctx = Ctx::new(plan, reporter, &progress);
    ctx.emit(Event::BuildStarted {
        build_id: plan.build_id.clone(),
        build_number: plan.build_number,
        project: plan.project.clone(),
        image: plan.image.clone(),
        buildspec: plan.buildspec_display.clone(),
        source: plan.source_dir_host.clone(),
        batch_identifier: plan.batch_identifier.clone(),
    });
    ctx.phase_start(PhaseName::Submitted);
    ctx.phase_end(PhaseName::Submitted, PhaseStatus::Succeeded, None);
    for n in &plan.notices {
        ctx.notice(Level::Warning, n.clone());
    }
    if let Some(Err(e)) = &credentials {
        ctx.notice(
            Level::Error,
            format!("the build gets no AWS credentials: {e}"),
        );
    }

    let mut container: Option<BuildContainer> = None;
    // The build's Docker gate: stopped after the container, removing what it created.
    let mut gate: Option<DockerGate> = None;
    // Dropped after FINALIZING, once the container no longer uses what they guard.
    let mut leases = cache_steps::Leases::default();
    let interrupted = tokio::select! {
        r = drive(&ctx, engine, opts, &mut container, &mut gate, &mut leases) => match r {
            Ok(()) => None,
            Err(e) => Some(Interruption::Fault(e)),
        },
        reason = cancel.cancelled() => Some(Interruption::Cancelled(reason)),
        _ = tokio::time::sleep(plan.timeout) => Some(Interruption::TimedOut),
    };
    // The phase that was running when the build was interrupted ends with the reason.
    let status = match &interrupted {
        None => None,
        // The buildspec asked for something the image cannot do: the build's fault.
        Some(Interruption::Fault(e @ DockerError::RunAs(_))) => {
            ctx.notice(Level::Error, e.to_string());
            Some((
                PhaseStatus::Failed,
                BuildStatus::Failed,
                format!("CLIENT_ERROR: {e}"),
            ))
        }
        Some(Interruption::Fault(e)) => {
            ctx.notice(Level::Error, e.to_string());
            Some((PhaseStatus::Fault, BuildStatus::Fault, e.to_string()))
        }
        Some(Interruption::Cancelled(CancelReason::Stopped)) => Some((
            PhaseStatus::Stopped,
            BuildStatus::Stopped,
            "BUILD_STOPPED: the build was stopped".to_string(),
        )),
        Some(Interruption::TimedOut) => Some((
            PhaseStatus::TimedOut,
            BuildStatus::TimedOut,
            format!(
                "BUILD_TIMED_OUT: build timed out after {}s",
                plan.timeout.as_secs()
            ),
        )),
    };
    if let Some((phase_status, _, context)) = &status {
        if let Some(phase) = ctx.current_phase() {
            ctx.phase_end(phase, *phase_status, Some(context.clone()));
        }
    }

    ctx.phase_start(PhaseName::Finalizing);
    if let Some(c) = container.as_mut() {
        c.remove().await;
    }
    if let Some(g) = gate.take() {
        if let Err(e) = g.stop(engine).await {
            ctx.notice(
                Level::Warning,
                format!("could not remove what the build created through docker: {e}"),
            );
        }
    }
    drop(leases);
    // The endpoint ends with the build.
    drop(credentials);
    ctx.phase_end(PhaseName::Finalizing, PhaseStatus::Succeeded, None);
    ctx.phase_start(PhaseName::Completed);
    ctx.phase_end(PhaseName::Completed, PhaseStatus::Succeeded, None);

    let build_status = match status {
        Some((_, s, _)) => s,
        None if ctx.failed() => BuildStatus::Failed,
        None => BuildStatus::Succeeded,
    };
    let (phases, exported, artifacts, cache) = match progress.into_inner() {
        Ok(p) => (p.phases, p.exported, p.artifacts, p.cache),
        Err(_) => Default::default(),
    };
    let result = BuildResult {
        build_id: plan.build_id.clone(),
        build_number: plan.build_number,
        batch_identifier: plan.batch_identifier.clone(),
        status: build_status,
        phases,
        exported_variables: exported,
        artifacts,
        cache,
        duration_ms: started.elapsed().as_millis() as u64,
        log_file: opts.log_file.clone(),
    };
    reporter.event(&Event::BuildEnded(result.clone()));
    result
}

enum Interruption {
    Fault(DockerError),
    Cancelled(CancelReason),
    TimedOut,
}

/// Everything between SUBMITTED and FINALIZING. Returns `Err` only for faults of the
/// runner or the engine; a failing command is a failed phase, not an error.
async fn drive(
    ctx: &Ctx<'_>,
    engine: &DockerEngine,
    opts: &RunOptions,
    container: &mut Option<BuildContainer>,
    gate: &mut Option<DockerGate>,
    leases: &mut cache_steps::Leases,
) -> Result<(), DockerError> {
    ctx.phase_start(PhaseName::Provisioning);
    let mut spec = provision(ctx, engine, opts, leases).await?;
    if DockerMode::effective(opts.docker, ctx.plan.privileged) == DockerMode::Gate {
        let g = gate.insert(start_gate(ctx.plan, opts).await?);
        spec.docker_socket = Some(g.socket().display().to_string());
    }
    let c: &BuildContainer = container.insert(BuildContainer::start(engine, &spec).await?);
    ctx.phase_end(PhaseName::Provisioning, PhaseStatus::Succeeded, None);

    ctx.phase_start(PhaseName::DownloadSource);
    let mut shells = Shells::new(c);
    let cache = download_source(ctx, engine, opts, &mut shells, leases).await?;
    ctx.phase_end(PhaseName::DownloadSource, PhaseStatus::Succeeded, None);

    let upload = run_phases(ctx, &mut shells).await?;
    // CodeBuild evaluates artifact names in the build's shell (`name: app-$(date +%F)`).
    let artifacts = match (&ctx.plan.artifacts, upload) {
        (Some(a), true) => Some(expand_artifact_names(ctx, &mut shells, a).await?),
        _ => None,
    };
    if let Some(shell) = shells.current.take() {
        shell.shell.close().await;
    }

    if upload {
        ctx.phase_start(PhaseName::UploadArtifacts);
        // The host reads what the build left (source tree, cache volumes) only once no
        // process of the build is left to change it under the reader: a background
        // process swapping files for links to host paths must find nobody reading.
        c.stop_build_processes().await?;
        let (status, context) = upload_artifacts(ctx, c, opts, artifacts.as_ref()).await;
        if let Some(cache) = &cache {
            save_cache(ctx, c, opts, cache, leases, status).await;
        }
        ctx.phase_end(PhaseName::UploadArtifacts, status, context);
    }
    Ok(())
}

/// PROVISIONING up to the container's start: containers left behind removed, the image
/// checked, the project's volumes taken (leases), and the container's mounts decided.
async fn provision(
    ctx: &Ctx<'_>,
    engine: &DockerEngine,
    opts: &RunOptions,
    leases: &mut cache_steps::Leases,
) -> Result<ContainerSpec, DockerError> {
    let plan = ctx.plan;
    // Containers of this project that an earlier runner left behind (stopped between
    // creating and starting one) and that no live runner owns.
    if let Err(e) = engine.remove_stale_containers(&plan.project).await {
        ctx.notice(
            Level::Warning,
            format!("could not remove containers left behind by earlier builds: {e}"),
        );
    }
    // And what their builds created through the Docker gate (containers, networks,
    // volumes) when runner was killed before removing it.
    if let Err(e) = engine.remove_stale_gate_objects(&plan.project).await {
        ctx.notice(
            Level::Warning,
            format!("could not remove docker objects left behind by earlier builds: {e}"),
        );
    }
    let docker_mode = DockerMode::effective(opts.docker, plan.privileged);
    if !opts.image_checked {
        engine.ensure_image(&plan.image).await?;
    }
    let mut binds = Vec::new();
    if plan.source_mode == SourceMode::Mount {
        binds.push((plan.source_dir_host.clone(), plan.src_dir.clone(), false));
    }
    if let Some(ca) = &plan.host_ca_bundle {
        binds.push((ca.clone(), CA_BUNDLE_MOUNT.to_string(), true));
    }
    if docker_mode == DockerMode::Privileged && opts.cache_store.is_some() {
        // Docker layer cache for buildspecs that run their own dockerd (privileged mode,
        // as on CodeBuild): /var/lib/docker lives in a volume per project, so the next
        // build's `docker build` reuses the layers. One build at a time: two daemons
        // must never share a data root.
        leases.docker = match &opts.local_cache_dir {
            Some(dir) => cache_steps::take_docker_volume(ctx, dir),
            None => None,
        };
        if leases.docker.is_some() {
            binds.push((
                docker_volume(&plan.project),
                "/var/lib/docker".to_string(),
                false,
            ));
        }
    }
    let mut volumes = Vec::new();
    if let (Some(cache), Some(_)) = (&plan.cache, &opts.cache_store) {
        let paths = cache_steps::volume_paths(plan, cache);
        leases.volumes = match &opts.local_cache_dir {
            Some(dir) if opts.cache_volumes && !paths.is_empty() => {
                cache_steps::take_volumes(ctx, engine, dir, cache, &paths).await
            }
            _ => None,
        };
        match &leases.volumes {
            // Named volumes that outlive the container (CodeBuild's LOCAL_CUSTOM_CACHE).
            Some(lease) => binds.extend(
                lease
                    .volumes()
                    .iter()
                    .map(|(path, name)| (name.clone(), path.clone(), false)),
            ),
            // Anonymous volumes, removed with the container.
            None => volumes = paths,
        }
    }
    Ok(ContainerSpec {
        image: plan.image.clone(),
        name: container_name(plan),
        build_id: plan.build_id.clone(),
        project: plan.project.clone(),
        working_dir: plan.src_dir.clone(),
        binds,
        volumes,
        privileged: docker_mode == DockerMode::Privileged,
        docker_socket: None,
    })
}

/// Starts the build's Docker gate (see `docker::gate`), forwarding to the engine's
/// socket; the source directory is the one host path the build may bind-mount.
async fn start_gate(plan: &BuildPlan, opts: &RunOptions) -> Result<DockerGate, DockerError> {
    let Some(engine_socket) = &opts.engine_socket else {
        return Err(DockerError::Gate(
            "the Docker engine is not reached through a local unix socket (DOCKER_HOST), \
             which the gate forwards to; run the build with `--docker none`, or \
             `--docker privileged` with an image that starts its own daemon"
                .to_string(),
        ));
    };
    let source = (plan.source_mode == SourceMode::Mount)
        .then(|| (plan.src_dir.clone(), plan.source_dir_host.clone()));
    let scope = GateScope {
        build_id: plan.build_id.clone(),
        owner: crate::docker::owner_label(),
        project: plan.project.clone(),
        source,
        registries: opts
            .registries
            .iter()
            .filter_map(|(h, url)| {
                crate::docker::gate::policy::endpoint_host(url).map(|to| (h.clone(), to))
            })
            .collect(),
    };
    // Unix socket paths are short (108 bytes): a long data directory falls back to /tmp.
    let parent = match &opts.scratch_dir {
        Some(d) if d.as_os_str().len() < 60 => d.join("docker-gate"),
        _ => PathBuf::from("/tmp/runner-docker-gate"),
    };
    DockerGate::start(engine_socket, &parent, scope).await
}

/// The cache a build restored, for saving it after a successful build.
struct RestoredCache<'p> {
    plan: &'p CachePlan,
    store: &'p Arc<dyn CacheStore>,
    state: cache_steps::CacheState,
    mounts: Vec<HostMount>,
}

/// DOWNLOAD_SOURCE: the source copied in (copy mode), then the cache restored before
/// INSTALL, as on CodeBuild.
async fn download_source<'p>(
    ctx: &Ctx<'p>,
    engine: &DockerEngine,
    opts: &'p RunOptions,
    shells: &mut Shells<'_>,
    leases: &mut cache_steps::Leases,
) -> Result<Option<RestoredCache<'p>>, DockerError> {
    let plan = ctx.plan;
    let c = shells.container;
    if plan.source_mode == SourceMode::Copy {
        c.upload_dir(std::path::Path::new(&plan.source_dir_host), &plan.src_dir)
            .await?;
    }
    let (Some(cache), Some(store)) = (&plan.cache, &opts.cache_store) else {
        return Ok(None);
    };
    let mounts = cache_steps::host_mounts(plan, c).await?;
    let state = cache_steps::restore(
        ctx,
        shells,
        (engine, c),
        store,
        cache,
        &mounts,
        leases.volumes.as_mut(),
    )
    .await?;
    Ok(Some(RestoredCache {
        plan: cache,
        store,
        state,
        mounts,
    }))
}

/// In UPLOAD_ARTIFACTS: only a successful build saves its cache (a failed one may have
/// left it half made), and records what its volumes hold.
async fn save_cache(
    ctx: &Ctx<'_>,
    c: &BuildContainer,
    opts: &RunOptions,
    cache: &RestoredCache<'_>,
    leases: &cache_steps::Leases,
    upload: PhaseStatus,
) {
    if ctx.failed() || upload != PhaseStatus::Succeeded {
        ctx.record_cache(CacheSummary {
            action: "save",
            key: cache.state.key.clone(),
            hit: false,
            matched_key: None,
            files: 0,
            bytes: 0,
            compressed_bytes: 0,
            source: None,
            duration_ms: 0,
            note: Some("the build failed; the cache is saved only after a successful build".into()),
        });
        return;
    }
    let scratch = opts.scratch_dir.clone().unwrap_or_else(std::env::temp_dir);
    let lease = leases.volumes.as_ref();
    let saved = cache_steps::save(
        ctx,
        c,
        cache.store,
        cache.plan,
        &cache.state,
        (&cache.mounts, lease),
        &scratch,
    )
    .await;
    cache_steps::commit_volumes(ctx, lease, &cache.state, saved);
}

/// The engine volume that keeps a privileged project's /var/lib/docker between builds.
pub fn docker_volume(project: &str) -> String {
    let safe: String = project
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(60)
        .collect();
    format!("runner-docker-cache-{safe}")
}

fn container_name(plan: &BuildPlan) -> String {
    let project: String = plan
        .project
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let uuid = plan.build_id.rsplit(':').next().unwrap_or("build");
    format!("runner-{project}-{}", &uuid[..uuid.len().min(12)])
}

/// Runs INSTALL … POST_BUILD with CodeBuild's transition rules. Returns whether
/// UPLOAD_ARTIFACTS runs (it does not after an INSTALL or PRE_BUILD failure).
async fn run_phases(ctx: &Ctx<'_>, shells: &mut Shells<'_>) -> Result<bool, DockerError> {
    let plan = ctx.plan;
    let mut skip_rest = false;
    for phase in &plan.phases {
        if skip_rest {
            continue;
        }
        let succeeded = run_phase_with_retries(ctx, shells, phase).await?;
        if !succeeded && phase.on_failure != OnFailure::Continue {
            match phase.name {
                // INSTALL or PRE_BUILD failed: straight to FINALIZING.
                PhaseName::Install | PhaseName::PreBuild => return Ok(false),
                // BUILD failed: POST_BUILD still runs (with CODEBUILD_BUILD_SUCCEEDING=0);
                // POST_BUILD failed: on to UPLOAD_ARTIFACTS.
                _ => {}
            }
        }
        if phase.name == PhaseName::PostBuild {
            skip_rest = true;
        }
    }
    if plan.version == Version::V0_2 && !plan.exported_variables.is_empty() {
        let exported = read_exported(ctx, shells).await?;
        if let Ok(mut p) = ctx.progress.lock() {
            p.exported = exported;
        }
    }
    Ok(true)
}

async fn read_exported(
    ctx: &Ctx<'_>,
    shells: &mut Shells<'_>,
) -> Result<Vec<(String, String)>, DockerError> {
    let user = shells.current.as_ref().and_then(|s| s.user.clone());
    let shell = &mut shells.for_user(ctx, user.as_deref()).await?.shell;
    let mut out = Vec::new();
    for name in &ctx.plan.exported_variables {
        let (_, value) = shell
            .capture(&format!("printf '%s' \"${{{name}-}}\""))
            .await?;
        out.push((name.clone(), String::from_utf8_lossy(&value).into_owned()));
    }
    Ok(out)
}

async fn run_phase_with_retries(
    ctx: &Ctx<'_>,
    shells: &mut Shells<'_>,
    phase: &PlannedPhase,
) -> Result<bool, DockerError> {
    let (attempts, regex) = match &phase.on_failure {
        OnFailure::Retry { count, regex } => (
            count.saturating_add(1),
            regex
                .as_deref()
                .and_then(|r| regex_lite::Regex::new(r).ok()),
        ),
        _ => (1, None),
    };
    let mut attempt = 1;
    loop {
        let mut output = Vec::new();
        let record = regex.is_some();
        let ok = run_phase(ctx, shells, phase, record.then_some(&mut output)).await?;
        if ok || attempt >= attempts {
            return Ok(ok);
        }
        if let Some(re) = &regex {
            if !output.iter().any(|l| re.is_match(l)) {
                return Ok(false);
            }
        }
        attempt += 1;
        ctx.notice(
            Level::Warning,
            format!(
                "retrying phase {} (attempt {attempt} of {attempts})",
                phase.name
            ),
        );
        // A retried phase starts from a clean slate: the failure no longer counts.
        if let Ok(mut p) = ctx.progress.lock() {
            p.failed = p
                .phases
                .iter()
                .any(|s| s.status == PhaseStatus::Failed && s.phase != phase.name);
        }
    }
}

/// Runs one phase: its commands until one fails, then `finally`. Returns success.
async fn run_phase(
    ctx: &Ctx<'_>,
    shells: &mut Shells<'_>,
    phase: &PlannedPhase,
    mut record: Option<&mut Vec<String>>,
) -> Result<bool, DockerError> {
    let plan = ctx.plan;
    ctx.phase_start(phase.name);
    // INSTALL's runtime-versions: the image's selection commands run first, in the
    // build's shell, so what they export (PATH, JAVA_HOME) lasts into the later phases.
    let mut selection = Vec::new();
    if !phase.runtime_versions.is_empty() {
        match runtime_steps::select(ctx, shells.container, &phase.runtime_versions).await? {
            RuntimeStep::Run(commands) => selection = commands,
            RuntimeStep::Skipped => {}
            RuntimeStep::Fail(context) => {
                ctx.phase_end(phase.name, PhaseStatus::Failed, Some(context));
                return Ok(false);
            }
        }
    }
    let succeeding = if ctx.failed() { "0" } else { "1" };
    let mut failure: Option<String> = None;
    let lists: [&[Command]; 3] = [&selection, &phase.commands, &phase.finally];
    for (i, list) in lists.iter().enumerate() {
        let is_finally = i == 2;
        if !is_finally && failure.is_some() {
            continue;
        }
        for cmd in list.iter() {
            ctx.emit(Event::CommandStarted {
                phase: phase.name,
                command: cmd.text.clone(),
            });
            let t = Instant::now();
            let exit = match plan.version {
                Version::V0_2 => {
                    let open = shells.for_user(ctx, phase.run_as.as_deref()).await?;
                    if open.succeeding != Some(succeeding) {
                        open.shell
                            .capture(&format!("export CODEBUILD_BUILD_SUCCEEDING={succeeding}"))
                            .await?;
                        open.succeeding = Some(succeeding);
                    }
                    run_logged(ctx, &mut open.shell, &cmd.text, record.as_deref_mut()).await?
                }
                Version::V0_1 => {
                    // Version 0.1: every command in a fresh shell instance.
                    let mut env = plan.env.clone();
                    if let Some(slot) = env
                        .iter_mut()
                        .find(|(k, _)| k == "CODEBUILD_BUILD_SUCCEEDING")
                    {
                        slot.1 = succeeding.to_string();
                    }
                    let mut shell = shells
                        .container
                        .open_shell(&plan.shell, phase.run_as.as_deref(), &env, &plan.src_dir)
                        .await?;
                    inject_secrets(&mut shell, plan).await?;
                    let exit =
                        run_logged(ctx, &mut shell, &cmd.text, record.as_deref_mut()).await?;
                    shell.close().await;
                    exit
                }
            };
            let code = match exit {
                CommandExit::Status(c) | CommandExit::ShellEnded(c) => c,
            };
            ctx.emit(Event::CommandEnded {
                phase: phase.name,
                exit_code: code,
                duration_ms: t.elapsed().as_millis() as u64,
            });
            if code != 0 {
                if failure.is_none() {
                    failure = Some(format!(
                        "COMMAND_EXECUTION_ERROR: Error while executing command: {}. Reason: exit status {code}",
                        first_line(&cmd.text)
                    ));
                }
                break;
            }
        }
    }
    let ok = failure.is_none();
    let status = if ok {
        PhaseStatus::Succeeded
    } else {
        PhaseStatus::Failed
    };
    ctx.phase_end(phase.name, status, failure);
    Ok(ok)
}

async fn run_logged(
    ctx: &Ctx<'_>,
    shell: &mut DockerShell,
    command: &str,
    mut record: Option<&mut Vec<String>>,
) -> Result<CommandExit, DockerError> {
    let reporter = ctx.reporter;
    let mut on_line = |stream: Stream, line: &str| {
        if let Some(r) = record.as_deref_mut() {
            r.push(line.to_string());
        }
        reporter.event(&Event::Log {
            stream,
            line: line.to_string(),
        });
    };
    shell.run(command, &ctx.masker, &mut on_line).await
}

/// Artifact names with shell syntax (`$VAR`, `$(cmd)`) are expanded by the build shell,
/// as CodeBuild does; plain names are left alone.
async fn expand_artifact_names(
    ctx: &Ctx<'_>,
    shells: &mut Shells<'_>,
    artifacts: &Artifacts,
) -> Result<Artifacts, DockerError> {
    let mut out = artifacts.clone();
    let names = std::iter::once(&mut out.primary.name)
        .chain(out.secondary.iter_mut().map(|(_, a)| &mut a.name));
    let mut pending: Vec<&mut Option<String>> = names
        .filter(|n| {
            n.as_deref()
                .is_some_and(|n| n.contains('$') || n.contains('`'))
        })
        .collect();
    if pending.is_empty() || ctx.plan.version != Version::V0_2 {
        return Ok(out);
    }
    let user = shells.current.as_ref().and_then(|s| s.user.clone());
    let shell = &mut shells.for_user(ctx, user.as_deref()).await?.shell;
    for name in pending.iter_mut() {
        let Some(raw) = name.as_deref() else { continue };
        let quoted = raw.replace('\\', "\\\\").replace('"', "\\\"");
        let (code, value) = shell.capture(&format!("printf '%s' \"{quoted}\"")).await?;
        let value = String::from_utf8_lossy(&value).into_owned();
        // A name is written to disk and reported: it must not carry a secret.
        let leaks = ctx
            .plan
            .secret_env
            .iter()
            .any(|(_, v)| !v.is_empty() && value.contains(v.expose()));
        if leaks {
            ctx.notice(
                Level::Warning,
                format!("artifact name {raw:?} would contain a secret value; using it as written"),
            );
        } else if code == 0 && !value.is_empty() {
            **name = Some(value);
        } else {
            ctx.notice(
                Level::Warning,
                format!("artifact name {raw:?} could not be evaluated; using it as written"),
            );
        }
    }
    Ok(out)
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

async fn upload_artifacts(
    ctx: &Ctx<'_>,
    container: &BuildContainer,
    opts: &RunOptions,
    artifacts: Option<&Artifacts>,
) -> (PhaseStatus, Option<String>) {
    let plan = ctx.plan;
    let wants_reports = !plan.reports.is_empty();
    let wants_artifacts = plan.artifacts.is_some() && opts.artifacts_dir.is_some();
    if plan.artifacts.is_some() && opts.artifacts_dir.is_none() {
        ctx.notice(
            Level::Info,
            "the buildspec declares artifacts; pass --artifacts DIR to collect them",
        );
    }
    if !wants_reports && !wants_artifacts {
        return (PhaseStatus::Succeeded, None);
    }
    // The source tree as the build left it, on the host.
    let _scratch;
    let src_root = match plan.source_mode {
        SourceMode::Mount => PathBuf::from(&plan.source_dir_host),
        SourceMode::Copy => {
            let base = opts.scratch_dir.clone().unwrap_or_else(std::env::temp_dir);
            let _ = std::fs::create_dir_all(&base);
            let dir = match tempfile::Builder::new()
                .prefix("runner-src-")
                .tempdir_in(&base)
            {
                Ok(d) => d,
                Err(e) => {
                    return (
                        PhaseStatus::Fault,
                        Some(format!(
                            "CLIENT_ERROR: cannot create a scratch directory: {e}"
                        )),
                    )
                }
            };
            if let Err(e) = container.download_dir(&plan.src_dir, dir.path()).await {
                return (PhaseStatus::Failed, Some(format!("CLIENT_ERROR: {e}")));
            }
            let root = dir.path().join("src");
            _scratch = dir;
            root
        }
    };

    // An --artifacts directory inside the source must not feed its old copies back in.
    let reports = crate::reports::collect_reports_excluding(
        &plan.reports,
        &src_root,
        opts.artifacts_dir.as_deref(),
    );
    for result in reports {
        ctx.emit(Event::Report(result));
    }

    let (Some(artifacts), Some(out_dir)) = (artifacts, &opts.artifacts_dir) else {
        return (PhaseStatus::Succeeded, None);
    };
    let collect_opts = CollectOptions {
        zip: opts.zip_artifacts,
    };
    let mut error = None;
    for r in artifacts::collect_all(artifacts, &src_root, out_dir, &collect_opts) {
        match r {
            Ok(out) => {
                for w in &out.warnings {
                    ctx.notice(Level::Warning, format!("artifact {}: {w}", out.identifier));
                }
                let summary = ArtifactSummary {
                    identifier: out.identifier.clone(),
                    path: out.path.display().to_string(),
                    files: out.files.len(),
                    bytes: out.bytes,
                };
                ctx.record_artifact(summary);
            }
            Err(e) => {
                ctx.notice(Level::Error, e.to_string());
                error.get_or_insert_with(|| format!("CLIENT_ERROR: {e}"));
            }
        }
    }
    match error {
        None => (PhaseStatus::Succeeded, None),
        Some(e) => (PhaseStatus::Failed, Some(e)),
    }
}
