//! Reporters: consumers of the engine's events. The terminal and the log file show
//! CodeBuild-style lines; JSON lines are for machines; the GitHub reporter adds workflow
//! commands, a job summary and step outputs.

mod format;
pub mod github;
mod json;
mod logfile;
mod mask;
mod terminal;

pub use format::{
    build_summary, codebuild_line, codebuild_line_at, codebuild_line_json, codebuild_timestamp,
    timestamp,
};
pub use github::{GithubOptions, GithubReporter, StepStatus};
pub use json::JsonReporter;
pub use logfile::LogFileReporter;
pub use mask::{mask_event, MaskingReporter};
pub use terminal::{TerminalOptions, TerminalReporter};
