//! Executes build plans: one build (`build.rs`) or a batch of them (`batch.rs`).
//!
//! Architecture invariant: this module emits events and returns results; it never prints
//! and never decides exit codes (that is `cli`'s job).

mod batch;
mod build;
mod cache_steps;
mod cancel;
mod credentials;
mod ctx;
mod emit;
mod release;
mod runtime_steps;
pub mod scans;
mod shells;

pub use batch::{run_batch, BatchOptions, BatchTaskPlan};
pub use build::{docker_volume, run_build, RunOptions};
pub use cancel::{Cancel, CancelReason, Canceller};
pub use release::{expand_tag, now_rfc3339, release, ReleaseError, ReleaseInput, Released};
