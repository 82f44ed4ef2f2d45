//! The `runner` command line: argument definitions, dispatch, and exit codes.
//!
//! Architecture invariant: the only place that prints to the user outside reporters and
//! the only place that turns outcomes into exit codes.

mod args;
mod build;
mod cache;
mod config;
mod exit;
mod gitops;
mod image;
mod scan;
mod validate;

pub use args::{Cli, Command};
pub use exit::ExitStatus;

use clap::Parser;

/// Entry point of the binary.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let status = match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Key(cmd) => image::key(&cmd),
        Command::Build(args) => block_on(build::run(*args)),
        Command::Push(args) => block_on(image::push(args)),
        Command::Sign(args) => block_on(image::sign(args)),
        Command::Verify(args) => block_on(image::verify(args)),
        Command::Gitops(cmd) => block_on(gitops::run(cmd)),
        Command::Scan(cmd) => block_on(scan::run(cmd)),
        Command::Db(cmd) => block_on(scan::db(cmd)),
        Command::Cache(cmd) => block_on(cache::run(cmd)),
    };
    status.into()
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
