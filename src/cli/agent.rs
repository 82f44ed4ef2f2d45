//! `runner agent` (agent pool): not implemented yet.

use super::exit::ExitStatus;

#[derive(Debug, clap::Args)]
pub struct AgentArgs {}

pub async fn run(_args: AgentArgs) -> ExitStatus {
    eprintln!("error: `runner agent` is not implemented yet");
    ExitStatus::Setup
}
