//! Dependency scanning: lockfile discovery, one parser per lockfile kind, and the scan
//! that matches every locked package against the advisory database.

pub mod cargo_lock;
pub mod composer_lock;
pub mod discover;
pub mod gemfile_lock;
pub mod go_mod;
pub mod lockfile;
pub mod package_lock;
pub mod pipfile_lock;
pub mod pnpm_lock;
pub mod poetry_lock;
pub mod purl;
pub mod requirements;
pub mod scan;
pub mod uv_lock;
pub mod yarn_lock;

pub use lockfile::{LockfileKind, ParseError, Parsed, SkippedEntry};
pub use scan::{scan_dir, DepsError, DepsOutcome, LockfileReport, SkippedLockfile};

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod snapshot_tests;
