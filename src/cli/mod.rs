//! The `runner` command line: argument definitions, dispatch, and exit codes.
//!
//! Architecture invariant: the only place that prints to the user outside reporters and
//! the only place that turns outcomes into exit codes.

mod agent;
mod args;
mod build;
mod cache;
mod config;
mod exit;
mod gitops;
mod image;
mod jobs;
mod logging;
mod reporters;
mod scan;
mod server;
mod settings;
mod standard_image;
mod submit;
mod validate;

pub use args::{Cli, Command};
pub use exit::ExitStatus;

use clap::{CommandFactory, Parser};
use std::path::PathBuf;
use std::sync::OnceLock;

/// `--data-dir` / RUNNER_DATA_DIR as parsed, set once at start.
static DATA_DIR: OnceLock<PathBuf> = OnceLock::new();

/// The data directory: `--data-dir` / RUNNER_DATA_DIR, else the XDG default.
pub(crate) fn data_dir() -> PathBuf {
    DATA_DIR.get().cloned().unwrap_or_else(config::data_dir)
}

/// Entry point of the binary.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    logging::init(cli.verbose);
    if let Some(d) = cli.data_dir.filter(|d| !d.as_os_str().is_empty()) {
        let _ = DATA_DIR.set(d);
    }
    let status = match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Key(cmd) => image::key(cmd),
        Command::Build(args) => block_on(build::run(*args)),
        Command::Push(args) => block_on(image::push(args)),
        Command::Sign(args) => block_on(image::sign(args)),
        Command::Verify(args) => block_on(image::verify(args)),
        Command::Gitops(cmd) => block_on(gitops::run(cmd)),
        Command::Scan(cmd) => block_on(scan::run(cmd)),
        Command::Db(cmd) => block_on(scan::db(cmd)),
        Command::Cache(cmd) => block_on(cache::run(cmd)),
        Command::Server(args) => block_on(server::run(args)),
        Command::Agent(args) => block_on(agent::run(args)),
        Command::Submit(args) => block_on(submit::run(args)),
        Command::Jobs(cmd) => block_on(jobs::run(cmd)),
        Command::Version { json } => version(json),
        Command::Completions { shell } => completions(shell),
    };
    status.into()
}

/// `runner completions SHELL`: the script on standard output.
fn completions(shell: clap_complete::Shell) -> ExitStatus {
    use std::io::Write;
    // Generated into memory: clap_complete panics on a failed write (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "runner", &mut script);
    let mut out = std::io::stdout().lock();
    match out.write_all(&script).and_then(|()| out.flush()) {
        Ok(()) => ExitStatus::Success,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitStatus::Success,
        Err(e) => {
            eprintln!("error: cannot write the completion script: {e}");
            ExitStatus::Setup
        }
    }
}

/// `runner version [--json]`.
fn version(json: bool) -> ExitStatus {
    let version = env!("CARGO_PKG_VERSION");
    // Set by the build environment when it knows the commit (e.g. CI); absent otherwise.
    let commit = option_env!("RUNNER_GIT_COMMIT");
    if json {
        println!(
            "{}",
            serde_json::json!({
                "name": "runner",
                "version": version,
                "commit": commit,
                "advisory_data": advisory_data_json(),
            })
        );
    } else {
        match commit {
            Some(c) => println!("runner {version} ({c})"),
            None => println!("runner {version}"),
        }
    }
    ExitStatus::Success
}

/// Where the advisory data is (RUNNER_ADVISORIES, else `<data dir>/advisories`), when it
/// was fetched and how old it is; `null` fields when there is none.
fn advisory_data_json() -> serde_json::Value {
    let dir = std::env::var_os("RUNNER_ADVISORIES")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| data_dir().join("advisories"));
    let age = crate::scan::osv::data_age(&dir, time::OffsetDateTime::now_utc());
    serde_json::json!({
        "dir": dir.display().to_string(),
        "fetched_at": age.as_ref().map(|a| a.fetched_at.clone()),
        "age_seconds": age.as_ref().map(|a| a.age_seconds),
        "basis": age.as_ref().map(|a| a.basis),
    })
}

fn block_on(fut: impl std::future::Future<Output = ExitStatus>) -> ExitStatus {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    match rt {
        Ok(rt) => rt.block_on(fut),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitStatus::Setup
        }
    }
}
