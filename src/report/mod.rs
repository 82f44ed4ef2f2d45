//! Reporters: consumers of the engine's events. The terminal and the log file show
//! CodeBuild-style lines; JSON lines are for machines; the GitHub reporter adds workflow
//! commands, a job summary and step outputs.

mod format;
pub mod github;
mod json;
mod logfile;
mod mask;
mod terminal;

pub use format::{codebuild_line, timestamp};
pub use github::{GithubOptions, GithubReporter, StepStatus};
pub use json::JsonReporter;
pub use logfile::LogFileReporter;
pub use mask::{mask_event, MaskingReporter};
pub use terminal::{TerminalOptions, TerminalReporter};
