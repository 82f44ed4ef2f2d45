//! `runner jobs` (agent pool): not implemented yet.

use super::exit::ExitStatus;

#[derive(Debug, clap::Subcommand)]
pub enum JobsCommand {
    /// List jobs
    List,
}

pub async fn run(_cmd: JobsCommand) -> ExitStatus {
    eprintln!("error: `runner jobs` is not implemented yet");
    ExitStatus::Setup
}
