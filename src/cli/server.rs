//! `runner server` (agent pool): not implemented yet.

use super::exit::ExitStatus;

#[derive(Debug, clap::Args)]
pub struct ServerArgs {}

pub async fn run(_args: ServerArgs) -> ExitStatus {
    eprintln!("error: `runner server` is not implemented yet");
    ExitStatus::Setup
}
