//! `runner build`: flags and environment into a [`BuildRequest`], signals into a cancel
//! token, reporters picked, the pipeline's verdict into an exit code.

use super::args::{BuildArgs, ReporterKind};
use super::config;
use super::exit::ExitStatus;
use super::reporters::{github_options, reporter_kind, terminal_options};
use crate::event::SharedReporter;
use crate::pipeline::{self, BuildRequest, Verdict};
use crate::report::{GithubReporter, JsonReporter, StepStatus, TerminalReporter};
use crate::run::{Cancel, CancelReason, Canceller};
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
    let mut req = BuildRequest::new(args.source, super::data_dir());
    super::settings::apply(args.settings, &mut req)?;
    req.advisories = config::advisories();
    req.push_concurrency = config::push_concurrency();
    req.buildspec = args.buildspec;
    req.project_file = args.project_file;
    req.project = args.project;
    req.standard_image = super::standard_image::choice(args.no_build_image);
    req.env = args.env;
    req.env_files = args.env_file;
    req.source_mode = args.source_mode;
    req.timeout_minutes = args.timeout;
    req.artifacts = args.artifacts;
    req.zip = args.zip;
    req.batch = args.batch.then_some(args.concurrency);
    req.strict = args.strict;
    req.initiator = format!("runner/{}", env("USER").unwrap_or_else(|| "local".into()));
    req.fail_on = args.fail_on.map(Into::into);
    Ok(req)
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
