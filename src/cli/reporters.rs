//! Which reporter a build prints through, from its flags and the environment it runs in
//! (a terminal, CI, a GitHub Actions step): read here, at the edge, once.

use super::args::{BuildArgs, ReporterKind};
use crate::report::{GithubOptions, TerminalOptions};

/// `--reporter`, `--json`, else github inside a GitHub Actions step.
pub(super) fn reporter_kind(args: &BuildArgs) -> ReporterKind {
    if args.json {
        return ReporterKind::Json;
    }
    args.reporter.unwrap_or_else(|| {
        if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
            ReporterKind::Github
        } else {
            ReporterKind::Terminal
        }
    })
}

/// The files a GitHub Actions step reads back, from the variables the runner sets.
pub(super) fn github_options(args: &BuildArgs) -> GithubOptions {
    let path = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
    };
    let canonical =
        |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    GithubOptions {
        step_summary: path("GITHUB_STEP_SUMMARY"),
        output: path("GITHUB_OUTPUT"),
        env: path("GITHUB_ENV"),
        workspace: path("GITHUB_WORKSPACE").map(|w| canonical(&w)),
        source: Some(canonical(&args.source)),
        sarif: args.sarif.clone(),
        artifacts_dir: args.artifacts.as_deref().map(canonical),
    }
}

/// Colour and progress from the environment, the way users expect.
pub(super) fn terminal_options(quiet: bool) -> TerminalOptions {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    TerminalOptions {
        color: std::io::stdout().is_terminal() && !no_color && !dumb,
        progress: std::io::stderr().is_terminal() && !ci && !dumb,
        quiet,
    }
}
