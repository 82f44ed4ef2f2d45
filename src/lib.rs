//! runner: AWS CodeBuild buildspecs on your own machine, in Docker containers.
//!
//! Modules in reading order: the pure core (`buildspec`, `plan`, `event`), then the
//! edges (`docker`, `source`, `datadir`), the engine (`run`) with what it produces
//! (`artifacts`, `reports`), the consumers (`report`) and the entry point (`cli`).
//! ARCHITECTURE.md has the map.

pub mod aws_config;
pub mod build_credentials;
pub mod buildspec;
pub mod cache;
pub mod event;
mod http_limits;
pub mod plan;

pub mod datadir;
pub mod docker;
pub mod project;
pub mod source;
pub mod standard_image;

pub mod artifacts;
pub mod gitops;
pub mod pipeline;
pub mod pool;
pub mod publish;
pub mod reports;
pub mod run;
pub mod runtimes;
pub mod scan;
pub mod secrets;
pub mod sign;

pub mod cli;
pub mod report;
