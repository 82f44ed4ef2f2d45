//! `runner build`: flags and environment into a [`BuildRequest`], signals into a cancel
//! token, reporters picked, the pipeline's verdict into an exit code.

use super::args::{BuildArgs, ReporterKind};
use super::config;
use super::exit::ExitStatus;
use super::reporters::{github_options, reporter_kind, terminal_options};
use crate::event::SharedReporter;
use crate::pipeline::{self, BuildRequest, Credentials, Verdict};
use crate::report::{GithubReporter, JsonReporter, StepStatus, TerminalReporter};
use crate::run::{Cancel, CancelReason, Canceller};
use crate::secrets::Secret;
use std::sync::Arc;

pub async fn run(args: BuildArgs) -> ExitStatus {
    let github = match reporter_kind(&args) {
        ReporterKind::Github => Some(Arc::new(GithubReporter::new(
            std::io::stdout(),
            github_options(&args),
        ))),
        _ => None,
    };
    let reporter: SharedReporter = match (&github, reporter_kind(&args)) {
        (Some(g), _) => g.clone(),
        (None, ReporterKind::Json) => Arc::new(JsonReporter::new(std::io::stdout())),
        (None, _) => Arc::new(TerminalReporter::new(terminal_options(args.quiet))),
    };
    let (status, error) = build(args, reporter, github.as_deref()).await;
    if let Some(g) = &github {
        let step = match status {
            ExitStatus::Success => StepStatus::Succeeded,
            ExitStatus::Failed => StepStatus::Failed,
            ExitStatus::Fault => StepStatus::Fault,
            ExitStatus::Stopped => StepStatus::Cancelled,
            ExitStatus::Setup => StepStatus::Error,
        };
        g.finish(step, status.code(), error.as_deref());
    }
    if let Some(e) = error {
        eprintln!("error: {e}");
    }
    status
}

/// Runs the build; a setup problem comes back as its message (printed by the caller).
async fn build(
    args: BuildArgs,
    reporter: SharedReporter,
    github: Option<&GithubReporter<std::io::Stdout>>,
) -> (ExitStatus, Option<String>) {
    let setup = |e: &dyn std::fmt::Display| (ExitStatus::Setup, Some(e.to_string()));
    let mut request = match request(args) {
        Ok(r) => r,
        Err(e) => return setup(&e),
    };
    request.engine = match config::engine_endpoint() {
        Ok(e) => e,
        Err(e) => return setup(&e),
    };
    let prepared = match pipeline::prepare(request, reporter.as_ref()).await {
        Ok(p) => p,
        Err(e) => return setup(&e),
    };
    if let Some(g) = github {
        // Before the build prints anything: GitHub hides these values in the whole job.
        g.add_masks(prepared.mask_values());
    }
    let outcome = pipeline::execute(prepared, reporter, watch_signals()).await;
    if let pipeline::Outcome::ScanFailed(e) = &outcome {
        return setup(e);
    }
    let status = match outcome.verdict() {
        Verdict::Succeeded => ExitStatus::Success,
        Verdict::Failed => ExitStatus::Failed,
        Verdict::Fault => ExitStatus::Fault,
        Verdict::Stopped => ExitStatus::Stopped,
        Verdict::NotStarted => ExitStatus::Setup,
    };
    (status, None)
}

/// The request from the flags and the environment this process runs in (the only place
/// `runner build` reads it).
fn request(args: BuildArgs) -> Result<BuildRequest, crate::publish::PublishError> {
    let env = |name: &str| std::env::var(name).ok();
    let masked = config::own_masked_values();
    let credentials = Credentials {
        registry_endpoints: super::image::registry_endpoints(
            &args.registry_endpoint,
            args.registry_endpoints.as_deref(),
        )?,
        registry_auth: config::registry_auth(),
        registry_limits: super::image::registry_limits(args.registry_timeout.as_deref())?,
        gitops_tokens: config::gitops_tokens(),
        aws: Default::default(),
        // --sign-key / RUNNER_SIGN_KEY points at the key from outside the source tree.
        sign_key: args.sign_key,
        key_password: args.password.key_password.map(Secret::new),
        masked,
        build_aws: config::build_aws(args.build_credentials, args.build_role),
    };
    let cache = config::cache_choice(
        args.no_cache,
        args.cache_s3,
        args.cache_dir,
        args.cache_size,
    );
    Ok(BuildRequest {
        source: args.source,
        data_dir: super::data_dir(),
        advisories: config::advisories(),
        push_concurrency: config::push_concurrency(),
        buildspec: args.buildspec,
        project_file: args.project_file,
        project: args.project,
        image: args.image,
        standard_image: super::standard_image::choice(args.no_build_image),
        env: args.env,
        env_files: args.env_file,
        secrets_file: args.secrets_file,
        source_mode: args.source_mode,
        timeout_minutes: args.timeout,
        host_ca: args.host_ca.into(),
        cache,
        cache_volumes: !args.no_cache_volumes,
        privileged: args.privileged,
        docker: args.docker,
        artifacts: args.artifacts,
        zip: args.zip,
        batch: args.batch.then_some(args.concurrency),
        strict: args.strict,
        region: args.region,
        initiator: format!("runner/{}", env("USER").unwrap_or_else(|| "local".into())),
        credentials,
        build_number: None,
        fail_on: args.fail_on.map(Into::into),
        engine: Default::default(),
        trigger_variables: Vec::new(),
        untrusted: false,
    })
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
