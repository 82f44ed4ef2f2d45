//! `runner submit` (agent pool): not implemented yet.

use super::exit::ExitStatus;

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {}

pub async fn run(_args: SubmitArgs) -> ExitStatus {
    eprintln!("error: `runner submit` is not implemented yet");
    ExitStatus::Setup
}
